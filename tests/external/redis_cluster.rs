//! Revocations and rate limits on a real 3-primary Redis Cluster (three `redis-server
//! --cluster-enabled yes` on loopback, joined by `redis-cli --cluster create`). Each replica is
//! seeded with a node that does *not* hold the slot it needs, so every command it gets right
//! was routed by slot: rate limits stay exact across two replicas, a revocation made on one
//! replica reaches the other through cluster-wide pub/sub, and a replica started later loads it
//! by scanning the slot's node.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::tools;
use common::*;
use jwtgate_core::clock;
use jwtgate_core::revocation::{Revocation, Target};
use serde_json::json;

/// Three primaries owning every slot between them.
struct Cluster {
    nodes: Vec<RedisServer>,
}

fn redis_cli(args: &[&str]) -> String {
    let cli = tools::REDIS_SERVER.path().with_file_name("redis-cli");
    let out = Command::new(&cli)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cli.display()));
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Cluster {
    async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
            nodes.push(RedisServer::start_with(&args).await);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(&args);
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            while !redis_cli(&["-p", &n.port.to_string(), "cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster not ok within 20s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Self { nodes }
    }

    /// The port of a node that does not hold `key`'s slot.
    fn not_owning(&self, key: &str) -> u16 {
        let port = self.nodes[0].port.to_string();
        let slot: u16 = redis_cli(&["-p", &port, "cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        let owner = self.nodes.iter().map(|n| n.port).find(|p| self.owns(*p, slot)).unwrap();
        self.nodes.iter().map(|n| n.port).find(|p| *p != owner).unwrap()
    }

    /// Whether the node at `port` holds `slot` (its `myself` line of `CLUSTER NODES`).
    fn owns(&self, port: u16, slot: u16) -> bool {
        let nodes = redis_cli(&["-p", &port.to_string(), "cluster", "nodes"]);
        let me = nodes.lines().find(|l| l.contains("myself")).unwrap();
        me.split_whitespace().skip(8).any(|range| {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            lo.parse::<u16>()
                .is_ok_and(|lo| hi.parse::<u16>().is_ok_and(|hi| (lo..=hi).contains(&slot)))
        })
    }

    /// The `redis:` block, seeded at `seed`.
    fn block(&self, seed: u16) -> String {
        let others: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.port != seed)
            .map(|n| format!("\"redis://127.0.0.1:{}\"", n.port))
            .collect();
        format!(
            "redis: {{ url: \"redis://127.0.0.1:{seed}\", cluster: true, nodes: [{}] }}\n",
            others.join(", ")
        )
    }
}

async fn replica(issuer: &Issuer, redis: &str, extra: &str) -> Gatekeeper {
    let yaml = format!(
        "{}{redis}revocation: {{ store: redis }}\n{extra}",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    );
    let gk = Gatekeeper::start(&yaml, &[]).await;
    gk.wait_ready().await;
    gk
}

#[tokio::test]
async fn rate_limits_on_a_cluster_are_exact_across_two_replicas() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::start().await;
        let issuer = rsa_issuer().await;
        let seed = cluster.not_owning("{jwtgate:rl}");
        let rules = "rate_limits:\n  store: redis\n  store_timeout: 1s\n  on_store_error: deny\n  rules:\n    - { name: per-user, by: [\"claim:sub\"], limit: 10, per: 1h }\n";
        let (a, b) = (
            replica(&issuer, &cluster.block(seed), rules).await,
            replica(&issuer, &cluster.block(seed), rules).await,
        );
        let token = rsa_token(&issuer.url(), json!({}));
        let limited = (429, "rate limit per-user exceeded".to_owned());
        assert_eq!(
            concurrently(&[&a, &b], &token, 100).await,
            std::collections::BTreeMap::from([((200, String::new()), 10), (limited, 90)]),
            "routed by slot from a node without it (a store error would be a 429 too, but all 100 would be)"
        );
        assert_eq!(scrape(a.http_addr).await["jwtgate_rate_limit_store_errors_total"], 0.0);
    })
    .await;
}

#[tokio::test]
async fn revocations_on_a_cluster_fan_out_and_a_new_replica_loads_them() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::start().await;
        let issuer = rsa_issuer().await;
        let seed = cluster.not_owning("{jwtgate}:r:x");
        let a = replica(&issuer, &cluster.block(seed), "").await;
        let other = cluster.nodes.iter().map(|n| n.port).find(|p| *p != seed).unwrap();
        let b = replica(&issuer, &cluster.block(other), "").await;
        let token = rsa_token(&issuer.url(), json!({"jti": "cluster-1"}));
        assert_eq!(check(&mut b.client().await, bearer(&token)).await.unwrap().grpc_code, 0);

        let revocation = Revocation {
            target: Target::Token {
                issuer: issuer.url(),
                jti: "cluster-1".into(),
            },
            expires_at: clock::now().unix + 600,
            created_at: clock::now().unix,
            reason: "test".into(),
        };
        a.running.as_ref().unwrap().store.revoke(revocation).await.unwrap();
        // Published on one node, received through another.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = check(&mut b.client().await, bearer(&token)).await.unwrap();
            if answer.reason() == "token revoked" {
                break;
            }
            assert!(Instant::now() < deadline, "not fanned out: {answer:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A replica started now scans the entry's node at start.
        let later = replica(&issuer, &cluster.block(seed), "").await;
        let answer = check(&mut later.client().await, bearer(&token)).await.unwrap();
        assert_eq!(answer.reason(), "token revoked", "{answer:?}");
    })
    .await;
}
