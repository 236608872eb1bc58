//! Redis as production runs it: TLS (`rediss://`) with a private CA and an ACL user whose
//! password comes from `JWTGATE_REDIS_PASSWORD`, for revocations and rate limits alike, through
//! the real binary and a real `redis-server --tls-port` with certificates the test makes. A CA
//! jwtgate does not trust is refused (nothing is sent in the clear instead).
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use crate::common::redis_tls::*;
use common::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

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
