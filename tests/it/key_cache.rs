//! Key sets kept on disk (`key_cache.dir`), through the real binary and a real JWKS server on
//! loopback: every fetch writes the provider's last good JWKS (mode 0600); a replica restarted
//! while its issuer is down serves those keys (`state: "restored"`, ready, checks allowed) until
//! a fetch succeeds; `max_stale` counts from the original fetch, not from the restart; and a
//! stale, corrupted or foreign file is ignored with a warning that names it.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// A config in `dir` for the issuer's provider, with `keys` settings (indented lines).
fn config(dir: &Path, issuer: &Issuer, keys: &str) -> PathBuf {
    let file = dir.join("jwtgate.yaml");
    let yaml = format!(
        "{}    keys: {{ {keys} }}\n",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    );
    std::fs::write(&file, config_text(&yaml)).unwrap();
    file
}

fn cache_file(dir: &Path) -> PathBuf {
    dir.join("jwtgate-data/keys/corp.json")
}

async fn readyz(served: &ServeProcess) -> (u16, Value) {
    let r = reqwest::get(format!("http://{}/readyz", served.addr("http")))
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap())
}

/// Polls `/readyz` (bounded) until the provider's state is `state`.
async fn wait_state(served: &ServeProcess, state: &str, limit: Duration) -> (u16, Value) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (status, body) = readyz(served).await;
        if body["providers"][0]["state"] == state {
            return (status, body);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "state {state:?} not reached within {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn restored_gauge(served: &ServeProcess) -> f64 {
    scrape(served.addr("http")).await["jwtgate_key_set_restored{provider=\"corp\"}"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_issuer_is_down_serves_the_keys_kept_on_disk() {
    bounded(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().unwrap();
        let issuer = rsa_issuer().await;
        let file = config(dir.path(), &issuer, "max_stale: 1h");
        let token = rsa_token(&issuer.url(), json!({}));

        let first = ServeProcess::start(&file, &[]);
        first.wait_ready().await;
        assert_eq!(
            check(&mut first.client().await, bearer(&token))
                .await
                .unwrap()
                .grpc_code,
            0
        );
        let kept = cache_file(dir.path());
        for _ in 0..100 {
            if kept.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only jwtgate's user may read it");
        let entry: Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
        assert_eq!(entry["issuer"], issuer.url());
        drop(first);

        // The issuer goes down; a new replica starts.
        issuer.set_mode(Mode::Status(503));
        let second = ServeProcess::start(&file, &[]);
        let log = second.wait_for("issuer unreachable: serving the key set kept on disk until a fetch succeeds");
        assert_eq!(log["fields"]["provider"], "corp");
        let (status, body) = wait_state(&second, "restored", Duration::from_secs(5)).await;
        assert_eq!(status, 200, "ready on restored keys: {body}");
        assert!(
            body["providers"][0]["last_error"].as_str().unwrap().contains("503"),
            "{body}"
        );
        assert!(body["providers"][0]["age_seconds"].as_u64().unwrap() < 60, "{body}");
        assert_eq!(
            check(&mut second.client().await, bearer(&token))
                .await
                .unwrap()
                .grpc_code,
            0
        );
        assert_eq!(restored_gauge(&second).await, 1.0);

        // Back up: the next fetch replaces them.
        issuer.set_mode(Mode::Normal);
        let (status, _) = wait_state(&second, "fresh", Duration::from_secs(20)).await;
        assert_eq!(status, 200);
        assert_eq!(restored_gauge(&second).await, 0.0);
    })
    .await;
}

/// A cache file as jwtgate writes it, for `issuer`, fetched `age` seconds ago.
fn write_entry(dir: &Path, issuer: &Issuer, age: u64, issuer_named: &str) {
    let jwks = json!({ "keys": [jwk("rsa-a.pem", Algorithm::RS256, "rsa")] }).to_string();
    let entry = json!({
        "format": 1,
        "provider": "corp",
        "issuer": issuer_named,
        "source": format!("jwks_uri {}", issuer.jwks_uri()),
        "fetched_at": now() - age,
        "jwks": jwks,
    });
    let file = cache_file(dir);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, entry.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stale_counts_from_the_original_fetch_and_bad_files_are_ignored() {
    bounded(Duration::from_secs(90), async {
        let issuer = rsa_issuer().await;
        issuer.set_mode(Mode::Status(503));
        let token = rsa_token(&issuer.url(), json!({}));

        // Fetched 62 s ago, max_stale 66 s: served for the 4 s left, then expired.
        let dir = tempfile::tempdir().unwrap();
        let file = config(dir.path(), &issuer, "refresh_interval: 10s, max_stale: 66s");
        write_entry(dir.path(), &issuer, 62, &issuer.url());
        let served = ServeProcess::start(&file, &[]);
        let (status, body) = wait_state(&served, "restored", Duration::from_secs(5)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["providers"][0]["age_seconds"].as_u64().unwrap() >= 62, "{body}");
        assert_eq!(
            check(&mut served.client().await, bearer(&token))
                .await
                .unwrap()
                .grpc_code,
            0
        );
        let (status, _) = wait_state(&served, "expired", Duration::from_secs(10)).await;
        assert_eq!(status, 503, "not trusted beyond the file's own validity");
        let a = check(&mut served.client().await, bearer(&token)).await;
        assert_eq!(a.unwrap_err(), tonic::Code::Unavailable, "keys unavailable");
        drop(served);

        // Each bad file: ignored with a warning naming it and why; no keys, not ready.
        type Write<'a> = Box<dyn Fn(&Path) + 'a>;
        let cases: [(&str, Write); 3] = [
            (
                "older than max_stale",
                Box::new(|d| write_entry(d, &issuer, 3600, &issuer.url())),
            ),
            (
                "not a key cache file",
                Box::new(|d| {
                    std::fs::create_dir_all(cache_file(d).parent().unwrap()).unwrap();
                    std::fs::write(cache_file(d), "{\"format\": 1, \"provider\": \"co").unwrap();
                }),
            ),
            (
                "written for issuer",
                Box::new(|d| write_entry(d, &issuer, 10, "https://someone-else.example/")),
            ),
        ];
        for (reason, write) in cases {
            let dir = tempfile::tempdir().unwrap();
            let file = config(dir.path(), &issuer, "refresh_interval: 10s, max_stale: 66s");
            write(dir.path());
            let served = ServeProcess::start(&file, &[]);
            let warning = served.wait_for("ignoring the key cache file");
            let fields = &warning["fields"];
            assert!(
                fields["reason"].as_str().unwrap().contains(reason),
                "{reason}: {warning}"
            );
            assert!(
                fields["file"]
                    .as_str()
                    .unwrap()
                    .ends_with("jwtgate-data/keys/corp.json"),
                "{warning}"
            );
            let (status, body) = readyz(&served).await;
            assert_eq!(
                (status, body["providers"][0]["state"].as_str()),
                (503, Some("missing")),
                "{reason}"
            );
        }
    })
    .await;
}
