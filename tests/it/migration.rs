//! `docs/migration.md` walked through the real binary with its configs
//! (`examples/migration/`): every step validates; with both providers a legacy HS256 token and
//! an identity-provider token are both accepted, with the same identity headers, and counted
//! per provider in `/metrics`; saving step 3 over the config in force removes the legacy
//! provider while checks keep flowing, and none of them fails.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The dev secret, as the legacy provider's `JWT_SECRET`.
fn jwt_secret() -> String {
    std::fs::read_to_string(repo("examples/keys/dev-hmac-secret.txt"))
        .unwrap()
        .trim_end()
        .to_owned()
}

/// A step's config as served here: the file, plus ephemeral loopback listeners.
fn step(name: &str) -> String {
    let text = std::fs::read_to_string(repo(&format!("examples/migration/{name}"))).unwrap();
    format!("{text}listen: {{ grpc: \"127.0.0.1:0\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}\n")
}

#[test]
fn every_step_of_the_guide_validates() {
    for name in ["1-legacy.yaml", "2-both.yaml", "3-idp.yaml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .arg("validate-config")
            .arg(repo(&format!("examples/migration/{name}")))
            .env("JWT_SECRET", jwt_secret())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn legacy_token() -> String {
    let claims = json!({"iss": "legacy-monolith", "sub": "bob", "email": "bob@example.com", "role": "admin"});
    mint_cli("dev-hmac-secret.txt", "HS256", None, &claims, &["--ttl", "15m"])
}

fn idp_token() -> String {
    let claims = json!({"iss": "https://dev.jwtgate.local/", "aud": "demo-api", "sub": "alice", "email": "alice@example.com", "roles": ["admin"]});
    mint_cli("dev-rsa.pem", "RS256", Some("dev-rsa-1"), &claims, &[])
}

async fn metric(http: &str, series: &str) -> f64 {
    scrape(http).await.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn both_providers_serve_side_by_side_and_the_legacy_one_goes_by_reload_without_a_failed_check() {
    bounded(Duration::from_secs(60), async {
        // The step files name `../keys/jwks.json`: the same layout in a scratch directory.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::create_dir_all(dir.path().join("migration")).unwrap();
        std::fs::copy(repo("examples/keys/jwks.json"), dir.path().join("keys/jwks.json")).unwrap();
        let file = dir.path().join("migration/jwtgate.yaml");
        std::fs::write(&file, step("2-both.yaml")).unwrap();
        let secret = jwt_secret();
        let served = ServeProcess::start(&file, &[("JWT_SECRET", &secret)]);
        served.wait_ready().await;
        let http = served.addr("http");
        let mut client = served.client().await;

        let (legacy, idp) = (legacy_token(), idp_token());
        for (token, sub) in [(&legacy, "bob"), (&idp, "alice")] {
            for path in ["/api/orders", "/admin/users"] {
                let a = check(
                    &mut client,
                    check_request(path, &[("authorization", &format!("Bearer {token}"))]),
                )
                .await
                .unwrap();
                assert_eq!(a.grpc_code, 0, "{sub} {path}: {a:?}");
                assert_eq!(a.headers["x-user-id"], sub);
                assert_eq!(
                    a.headers["x-user-role"], "admin",
                    "the same header from either provider"
                );
            }
        }
        let counted = |provider: &str, route: &str| {
            format!(
                "jwtgate_decisions_total{{decision=\"allow\",reason=\"\",provider=\"{provider}\",route=\"{route}\"}}"
            )
        };
        for provider in ["legacy", "idp"] {
            assert_eq!(metric(&http, &counted(provider, "api")).await, 1.0, "{provider}");
            assert_eq!(metric(&http, &counted(provider, "admin")).await, 1.0, "{provider}");
        }
        assert_eq!(
            metric(
                &http,
                "jwtgate_tokens_verified_total{provider=\"legacy\",alg=\"HS256\"}"
            )
            .await,
            1.0,
            "one signature check per token, the second check was a cache hit"
        );
        assert_eq!(
            metric(&http, "jwtgate_tokens_verified_total{provider=\"idp\",alg=\"RS256\"}").await,
            1.0
        );

        // Checks with the IdP token keep flowing while step 3 is saved over the config.
        let flowing = {
            let idp = idp.clone();
            let mut client = client.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(3) {
                    let req = check_request("/api", &[("authorization", &format!("Bearer {idp}"))]);
                    match check(&mut client, req).await {
                        Ok(a) if a.grpc_code == 0 => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed)
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::write(&file, step("3-idp.yaml")).unwrap();
        let (ok, failed) = flowing.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} of {} checks failed, first: {}",
            failed.len(),
            ok as usize + failed.len(),
            failed[0]
        );
        assert!(ok > 10, "only {ok} checks ran");
        // The file is polled every second: the reload happened within the 2.5 s of checks.
        assert_eq!(
            metric(&http, "jwtgate_config_reloads_total{outcome=\"success\"}").await,
            1.0
        );
        assert_eq!(
            metric(&http, "jwtgate_key_fetches_total{provider=\"idp\",outcome=\"success\"}").await,
            1.0,
            "the idp's key set was kept across the reload, not loaded again"
        );

        let a = check(
            &mut client,
            check_request("/api", &[("authorization", &format!("Bearer {legacy}"))]),
        )
        .await
        .unwrap();
        assert_eq!((a.http_status, a.reason().as_str()), (Some(401), "unknown issuer"));
    })
    .await
}
