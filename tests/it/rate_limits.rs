//! Rate limits through the real doors: one suite of behaviours, instantiated per store (the
//! limitador pattern) — exactly `burst` at once, refill at `limit` per `per`, per-subject
//! isolation, a global counter, absent key parts, `cost`, all or nothing across rules, route and
//! method matching, dry run, 401/403 before 429 — and the answers on both doors: 429 with
//! `Retry-After`, `RateLimit-Policy`, `RateLimit` and the JSON body, `RESOURCE_EXHAUSTED` as the
//! check's status, `RateLimit` on allows with `headers_on_allow`, counted in
//! `jwtgate_rate_limited_total{rule}`. Here on the local store; on Redis, with two replicas sharing
//! it and a Redis that hangs or dies: `tests/external/rate_limits.rs`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::common::rate_limits::*;

mod local {
    crate::common::rate_limits::suite!(Backend::local());
}

/// `client_ip` is Envoy's `source.address` on gRPC, and on the HTTP door the address a trusted
/// proxy (loopback, the default) sent in the header the door names: X-Real-IP at `/auth`
/// (nginx's family), X-Forwarded-For at a `forwarded` door.
#[tokio::test]
async fn client_ip_is_envoys_source_address_or_the_trusted_forwarded_address() {
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
    let rules = "  rules:\n    - { name: per-ip, by: [client_ip], limit: 100, per: 1m, burst: 1 }\nhttp_auth: { doors: [{ path: /auth/forwarded, original_request: forwarded }] }\n";
    let l = Limited::start(Backend::Local, rules).await;
    let from = |ip: &str| {
        let mut req = check_request("/public/x", &[]);
        req.attributes.as_mut().unwrap().source = Some(Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        });
        req
    };
    assert_eq!(l.send("GET", from("10.0.0.1")).await.grpc_code, 0);
    assert_eq!(l.send("GET", from("10.0.0.1")).await.http_status, Some(429));
    assert_eq!(l.send("GET", from("10.0.0.2")).await.grpc_code, 0, "another client");

    // nginx's door: X-Real-IP, which nginx sets; a client's own X-Forwarded-For is not read.
    let nginx = |real_ip: &str| {
        let request = reqwest::Client::new()
            .get(format!("http://{}/auth", l.gk.http_addr))
            .header("x-original-uri", "/public/x")
            .header("x-original-method", "GET")
            .header("x-real-ip", real_ip)
            .header("x-forwarded-for", format!("192.0.2.{}", real_ip.len()));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(nginx("198.51.100.77").await, 200);
    assert_eq!(nginx("198.51.100.77").await, 429);
    assert_eq!(nginx("198.51.100.78").await, 200, "another client");
    let http_lines = |lines: &[&str]| {
        let url = format!("http://{}/auth/forwarded", l.gk.http_addr);
        let mut request = reqwest::Client::new()
            .get(url)
            .header("x-forwarded-uri", "/public/x")
            .header("x-forwarded-method", "GET");
        for line in lines {
            request = request.header("x-forwarded-for", *line);
        }
        async move { request.send().await.unwrap().status() }
    };
    let http = |forwarded_for: &str| http_lines(&[forwarded_for]);
    // The nearest address that is not a trusted proxy is the client: 198.51.100.7 either way.
    assert_eq!(http("198.51.100.7").await, 200);
    assert_eq!(http("203.0.113.1, 198.51.100.7, 127.0.0.1").await, 429);
    assert_eq!(http("198.51.100.8").await, 200, "another client");
    // Repeated lines are one list (RFC 9110 §5.3): the nearest untrusted address is in the last.
    assert_eq!(http_lines(&["198.51.100.8", "198.51.100.9, 127.0.0.1"]).await, 200);
    assert_eq!(
        http_lines(&["203.0.113.1", "198.51.100.9"]).await,
        429,
        "198.51.100.9 again"
    );
}

#[test]
fn a_bad_rule_is_refused_with_file_field_and_reason() {
    let base = config_text(&jwks_provider(
        "corp",
        "https://idp.example/",
        "https://idp.example/jwks",
        "",
    ));
    let cases = [
        (
            "  rules: [{ name: a, limit: 1, per: 1s, match: { routes: [nope] } }]",
            "rate_limits.rules[0].match.routes[0]: no route `nope`",
        ),
        (
            "  rules: [{ name: a, limit: 0, per: 1s }]",
            "rate_limits.rules[0].limit: must be between 1 and",
        ),
        (
            "  rules: [{ name: a, limit: 1, per: 1s, by: [\"claims:sub\"] }]",
            "rate_limits.rules[0].by[0]: `claims:sub` is not a key part",
        ),
        (
            "  rules: [{ name: a, limit: 1, per: 1s }, { name: a, limit: 2, per: 1s }]",
            "rate_limits.rules[1].name: `a` is used twice",
        ),
        (
            "  rules: [{ name: Per User, limit: 1, per: 1s }]",
            "rate_limits.rules[0].name: `Per User` must be",
        ),
        (
            "  rules: [{ name: a, limit: 5, per: 1s, burst: 2, cost: 3 }]",
            "rate_limits.rules[0].cost: must be between 1 and the rule's burst (2)",
        ),
        (
            "  store: memcached",
            "rate_limits.store: `memcached` is not one of local, redis",
        ),
        (
            "  on_store_error: maybe",
            "rate_limits.on_store_error: `maybe` is not one of allow, deny",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwtgate.yaml");
    for (block, expected) in cases {
        std::fs::write(&file, format!("{base}rate_limits:\n{block}\n")).unwrap();
        let stderr = refused(&["validate-config"], &file, &[]);
        assert!(
            stderr.contains(&format!("{}: {expected}", file.display())),
            "{block}: {stderr}"
        );
    }
}

#[test]
fn jwtgate_check_names_the_rule_a_request_is_within() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hs.secret"), "0123456789abcdef0123456789abcdef").unwrap();
    let file = dir.path().join("jwtgate.yaml");
    let yaml = "  - { name: legacy, issuer: legacy, hmac_secret: { file: hs.secret } }\nrate_limits:\n  rules:\n    - { name: per-user, by: [\"claim:sub\"], limit: 100, per: 1m, burst: 20 }\n";
    std::fs::write(&file, config_text(yaml)).unwrap();
    let token = sign(
        b"0123456789abcdef0123456789abcdef",
        Algorithm::HS256,
        None,
        json!({"iss": "legacy", "sub": "alice"}),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(["check", "--config"])
        .arg(&file)
        .args(["--token", &token, "--path", "/x"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("  pass  within rate limits (tightest: per-user, 19 left)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn three_thousand_unique_32_kib_keys_cost_counters_of_the_same_size_as_short_ones() {
    bounded(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hs.secret"), "0123456789abcdef0123456789abcdef").unwrap();
        let file = dir.path().join("jwtgate.yaml");
        let yaml = format!(
            "  - {{ name: legacy, issuer: legacy, hmac_secret: {{ file: hs.secret }} }}\n{ROUTES}rate_limits:\n  rules:\n    - {{ name: per-key, by: [\"header:x-api-key\"], limit: 100, per: 1m, burst: 5 }}\n"
        );
        std::fs::write(&file, config_text(&yaml)).unwrap();
        let served = ServeProcess::start(&file, &[]);
        served.wait_ready().await;
        let pid = served.pid();
        let send = |count: usize, start: usize| {
            let client = served.client();
            async move {
                let mut client = client.await;
                for i in start..start + count {
                    // Unique in its first bytes, 32 KiB long.
                    let value = format!("{i:08}{}", "k".repeat(32 * 1024 - 8));
                    let a = check(&mut client, check_request("/public/x", &[("x-api-key", &value)]))
                        .await
                        .unwrap();
                    assert_eq!(a.grpc_code, 0);
                }
            }
        };
        // Warm up: the allocator's arenas and the runtime's buffers reach their working size.
        send(300, 0).await;
        let before = rss_kib(pid);
        let mut tasks = Vec::new();
        for t in 0..4 {
            tasks.push(send(750, 1_000 + t * 750));
        }
        for t in tasks {
            t.await;
        }
        let after = rss_kib(pid);
        let grown_kib = after.saturating_sub(before);
        eprintln!("3,000 counters with 32 KiB keys: RSS {before} KiB -> {after} KiB (+{grown_kib} KiB)");
        // Kept verbatim they cost ≈ 94 MiB (32 KiB each); hashed, a counter is a few hundred bytes.
        assert!(grown_kib < 8 * 1024, "RSS grew by {grown_kib} KiB for 3,000 counters");
    })
    .await;
}
