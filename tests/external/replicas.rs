//! Two real `jwtgate serve` processes sharing one real Redis: a revocation made with the CLI on
//! one replica is enforced by the other within a second (the measured time is printed).
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{bearer, check, mint_dev, repo};
use serde_json::json;

const ADMIN_TOKEN: &str = "replica-test-admin-token-0123456789";

/// A `jwtgate serve` child, killed on drop.
struct Replica {
    child: Child,
    log: PathBuf,
    grpc: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn start(redis_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "listen: {{ grpc: \"127.0.0.1:0\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}\nproviders:\n  - name: dev\n    issuer: \"https://dev.jwtgate.local/\"\n    jwks_file: {}\n    audiences: [demo-api]\nrevocation: {{ store: redis, url: \"{redis_url}\" }}\nadmin: {{ token: {{ env: JWTGATE_TEST_ADMIN }} }}\n",
            repo("examples/keys/jwks.json").display()
        );
        let file = dir.path().join("jwtgate.yaml");
        std::fs::write(&file, config).unwrap();
        let log = dir.path().join("jwtgate.log");
        let child = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["serve", "--config"])
            .arg(&file)
            .env("JWTGATE_LOG_FORMAT", "json")
            .env("JWTGATE_LOG", "info,jwtgate_core::revocation=debug")
            .env("JWTGATE_TEST_ADMIN", ADMIN_TOKEN)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = loop {
            let text = std::fs::read_to_string(&log).unwrap();
            if let Some(line) = text.lines().find(|l| l.contains("jwtgate listening")) {
                break serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
            assert!(Instant::now() < deadline, "jwtgate did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let addr = |k: &str| listening["fields"][k].as_str().unwrap().parse().unwrap();
        Self {
            grpc: addr("grpc"),
            admin: addr("admin"),
            child,
            log,
            _dir: dir,
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(replica: &Replica, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(args)
        .args(["--admin", &format!("http://{}", replica.admin)])
        .env("JWTGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `replica` every 5 ms until it denies `token` as revoked; the time it took.
async fn until_revoked(replica: &Replica, token: &str) -> Duration {
    let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{}", replica.grpc),
    )
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let a = check(&mut client, bearer(token)).await.unwrap();
        if a.grpc_code != 0 {
            assert_eq!((a.http_status, a.reason().as_str()), (Some(401), "token revoked"));
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "not revoked on the other replica within 1s; its log:\n{}",
            std::fs::read_to_string(&replica.log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn allowed(replica: &Replica, token: &str) -> bool {
    let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{}", replica.grpc),
    )
    .await
    .unwrap();
    check(&mut client, bearer(token)).await.unwrap().grpc_code == 0
}

#[tokio::test]
async fn a_revocation_on_one_replica_reaches_the_other_within_a_second() {
    let redis = RedisServer::start().await;
    let (a, b) = (Replica::start(&redis.url()), Replica::start(&redis.url()));
    let mint = |sub: &str| mint_dev(json!({ "sub": sub }));
    let (t1, t2, other) = (mint("alice"), mint("bob"), mint("carol"));
    for t in [&t1, &t2, &other] {
        assert!(allowed(&a, t).await && allowed(&b, t).await);
    }

    cli(&a, &["revoke", "token", "--token", &t1, "--reason", "logout"]);
    let by_token = until_revoked(&b, &t1).await;
    cli(
        &a,
        &[
            "revoke",
            "subject",
            "--issuer",
            "https://dev.jwtgate.local/",
            "--subject",
            "bob",
        ],
    );
    let by_subject = until_revoked(&b, &t2).await;
    eprintln!("propagation A→B after the CLI returned: token {by_token:?}, subject {by_subject:?}");
    assert!(
        allowed(&b, &other).await && allowed(&a, &other).await,
        "others unaffected"
    );
    assert!(
        !allowed(&a, &t1).await && !allowed(&a, &t2).await,
        "and A enforces its own"
    );
}
