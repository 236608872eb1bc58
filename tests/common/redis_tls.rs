//! The Redis-over-TLS tests' harness: a private CA, a TLS Redis with an ACL user, and jwtgate
//! configured for it.

use crate::common::certs::Ca;
use crate::common::redis_server::RedisServer;
use crate::common::*;
use std::path::Path;

pub const PASSWORD: &str = "correct-horse-battery-staple";

pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A CA, and a server certificate for 127.0.0.1 it signed, as PEM files in `dir`:
/// `ca.pem`, `server.pem`, `server.key`; plus `other-ca.pem`, a CA that signed nothing here.
pub fn certificates(dir: &Path) {
    let ca = Ca::new("jwtgate test CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), Ca::new("someone else's CA").pem()).unwrap();
    ca.server().write(dir, "server");
}

pub async fn readyz(served: &ServeProcess) -> serde_json::Value {
    let url = format!("http://{}/readyz", served.addr("http"));
    serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap()
}

/// jwtgate (the binary) with revocations and rate limits in the TLS Redis at `tls_port`,
/// trusting `ca`.
pub fn serve(dir: &Path, issuer: &Issuer, tls_port: u16, ca: &str) -> ServeProcess {
    std::fs::write(dir.join("admin.token"), ADMIN_TOKEN).unwrap();
    let yaml = format!(
        "{}redis: {{ url: \"rediss://127.0.0.1:{tls_port}/0\", ca_file: {ca}, username: jwtgate }}\nrevocation: {{ store: redis }}\nadmin: {{ token: {{ file: admin.token }} }}\nrate_limits:\n  store: redis\n  store_timeout: 500ms\n  on_store_error: allow\n  rules:\n    - {{ name: per-user, by: [\"claim:sub\"], limit: 2, per: 1h }}\n",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    );
    let file = dir.join("jwtgate.yaml");
    std::fs::write(&file, config_text(&yaml)).unwrap();
    ServeProcess::start(&file, &[("JWTGATE_REDIS_PASSWORD", PASSWORD)])
}

pub async fn tls_redis(dir: &Path) -> (RedisServer, u16) {
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
