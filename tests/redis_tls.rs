//! Redis as production runs it: TLS (`rediss://`) with a private CA and an ACL user whose
//! password comes from `JWTGATE_REDIS_PASSWORD`, for revocations and rate limits alike, through
//! the real binary and a real `redis-server --tls-port` with certificates the test makes. A CA
//! jwtgate does not trust is refused (nothing is sent in the clear instead).
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::certs::Ca;
use common::redis_server::RedisServer;
use common::*;
use serde_json::json;

const PASSWORD: &str = "correct-horse-battery-staple";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A CA, and a server certificate for 127.0.0.1 it signed, as PEM files in `dir`:
/// `ca.pem`, `server.pem`, `server.key`; plus `other-ca.pem`, a CA that signed nothing here.
fn certificates(dir: &Path) {
    let ca = Ca::new("jwtgate test CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), Ca::new("someone else's CA").pem()).unwrap();
    ca.server().write(dir, "server");
}

async fn readyz(served: &ServeProcess) -> serde_json::Value {
    let url = format!("http://{}/readyz", served.addr("http"));
    serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap()
}

/// jwtgate (the binary) with revocations and rate limits in the TLS Redis at `tls_port`,
/// trusting `ca`.
fn serve(dir: &Path, issuer: &Issuer, tls_port: u16, ca: &str) -> ServeProcess {
    std::fs::write(dir.join("admin.token"), ADMIN_TOKEN).unwrap();
    let yaml = format!(
        "{}redis: {{ url: \"rediss://127.0.0.1:{tls_port}/0\", ca_file: {ca}, username: jwtgate }}\nrevocation: {{ store: redis }}\nadmin: {{ token: {{ file: admin.token }} }}\nrate_limits:\n  store: redis\n  store_timeout: 500ms\n  on_store_error: allow\n  rules:\n    - {{ name: per-user, by: [\"claim:sub\"], limit: 2, per: 1h }}\n",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    );
    let file = dir.join("jwtgate.yaml");
    std::fs::write(&file, config_text(&yaml)).unwrap();
    ServeProcess::start(&file, &[("JWTGATE_REDIS_PASSWORD", PASSWORD)])
}

async fn tls_redis(dir: &Path) -> (RedisServer, u16) {
    certificates(dir);
    let tls_port = free_port();
    let path = |name: &str| dir.join(name).display().to_string();
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.pem"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.pem"),
        "--tls-auth-clients",
        "no",
        "--user",
        "jwtgate",
        "on",
        &format!(">{PASSWORD}"),
        "~*",
        "&*",
        "+@all",
    ])
    .await;
    (redis, tls_port)
}

#[tokio::test]
async fn revocations_and_rate_limits_work_over_tls_with_a_private_ca_and_an_acl_user() {
    bounded(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let (_redis, tls_port) = tls_redis(dir.path()).await;
        let issuer = rsa_issuer().await;
        let served = serve(dir.path(), &issuer, tls_port, "ca.pem");
        served.wait_ready().await;
        let ready = readyz(&served).await;
        assert_eq!(ready["revocation"]["connected"], true, "{ready}");
        assert_eq!(ready["rate_limits"]["connected"], true, "{ready}");

        let mut client = served.client().await;
        let token = rsa_token(&issuer.url(), json!({"jti": "j-1"}));
        // Counted in Redis: 2 allowed, then 429 (a failing store would allow: on_store_error).
        for _ in 0..2 {
            assert_eq!(check(&mut client, bearer(&token)).await.unwrap().grpc_code, 0);
        }
        assert_eq!(check(&mut client, bearer(&token)).await.unwrap().http_status, Some(429));

        // A revocation is written to Redis over TLS (the command fails if Redis does not confirm).
        let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["revoke", "token", "--jti", "j-1", "--issuer", &issuer.url()])
            .args(["--admin", &format!("http://{}", served.addr("admin"))])
            .args(["--admin-token", ADMIN_TOKEN])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let a = check(&mut client, bearer(&token)).await.unwrap();
        assert_eq!((a.http_status, a.reason()), (Some(401), "token revoked".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_refused() {
    bounded(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let (_redis, tls_port) = tls_redis(dir.path()).await;
        let issuer = rsa_issuer().await;
        let served = serve(dir.path(), &issuer, tls_port, "other-ca.pem");
        // Never ready: the shared revocations cannot be loaded (so no token is allowed).
        let url = format!("http://{}/readyz", served.addr("http"));
        let started = std::time::Instant::now();
        let ready = loop {
            if let Ok(r) = reqwest::get(&url).await {
                let status = r.status().as_u16();
                let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                if body["providers"][0]["state"] == "fresh" {
                    assert_eq!(status, 503, "{body}");
                    break body;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no /readyz with keys");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(ready["ready"], false, "{ready}");
        assert_eq!(ready["revocation"]["connected"], false, "{ready}");
        assert_eq!(ready["rate_limits"]["connected"], false, "{ready}");
        let error = ready["revocation"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(error.contains("certificate") || error.contains("tls"), "{ready}");
        assert!(!ready.to_string().contains(PASSWORD), "no secret in /readyz");
    })
    .await;
}

#[test]
fn a_bad_redis_block_is_refused_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello").unwrap();
    let base = config_text(&jwks_provider(
        "corp",
        "https://idp.example/",
        "https://idp.example/jwks",
        "",
    ));
    let cases = [
        (
            "redis: { url: \"http://r:6379\" }",
            "redis.url: must start with redis:// or rediss:// (TLS)",
        ),
        (
            "redis: { url: \"redis://r:6379\", ca_file: ca.pem }",
            "redis.ca_file: goes with a rediss:// (TLS) url",
        ),
        (
            "redis: { url: \"rediss://r:6380\", ca_file: missing.pem }",
            "redis.ca_file: cannot read",
        ),
        (
            "redis: { url: \"rediss://r:6380\", ca_file: not-a-cert.pem }",
            "holds no PEM certificate",
        ),
        (
            "redis: { url: \"redis://r:6379\", cluster: true, nodes: [\"rediss://s:6380\"] }",
            "redis.nodes[0]: must use the same scheme",
        ),
        (
            "redis: { url: \"redis://r:6379\", cluster: true }\nrevocation: { store: redis, key_prefix: \"jg:\" }",
            "revocation.key_prefix: `jg:` needs a hash tag",
        ),
        (
            "redis: { url: \"redis://r:6379\", nodes: [\"redis://s:6379\"] }",
            "redis.nodes: goes with `cluster: true`",
        ),
        (
            "rate_limits: { store: redis }",
            "rate_limits.store: `redis` needs `redis.url`",
        ),
        (
            "redis: { url: \"redis://r:6379\", password_file: nope }",
            "redis.password_file.file: cannot read",
        ),
    ];
    let file = dir.path().join("jwtgate.yaml");
    for (block, expected) in cases {
        std::fs::write(&file, format!("{base}{block}\n")).unwrap();
        let stderr = refused(&["validate-config"], &file, &[]);
        assert!(stderr.contains(expected), "{block}: {stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    }
}
