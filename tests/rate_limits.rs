//! Rate limits through the real doors: one suite of behaviours, instantiated per store (the
//! limitador pattern) — exactly `burst` at once, refill at `limit` per `per`, per-subject
//! isolation, a global counter, absent key parts, `cost`, all or nothing across rules, route and
//! method matching, dry run, 401/403 before 429 — and the answers on both doors: 429 with
//! `Retry-After`, `RateLimit-Policy`, `RateLimit` and the JSON body, `RESOURCE_EXHAUSTED` as the
//! check's status, `RateLimit` on allows with `headers_on_allow`, counted in
//! `jwtgate_rate_limited_total{rule}`.
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::*;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use jsonwebtoken::Algorithm;
use serde_json::json;

/// jwtgate with one JWKS provider, these routes and this `rate_limits:` block.
struct Limited {
    issuer: Issuer,
    gk: Gatekeeper,
    /// The `providers:` list and everything after it.
    yaml: String,
    /// Kept running for the test's length.
    _backend: Backend,
}

const ROUTES: &str = "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: admin, match: { path_prefix: /admin }, require: { roles: [admin] } }
  - { name: beta, match: { path_prefix: /beta }, mode: dry_run }
  - { name: api, match: { path_prefix: /api } }
";

/// Where the counters live for one test.
enum Backend {
    Local,
    Redis(RedisServer),
}

impl Backend {
    async fn local() -> Self {
        Self::Local
    }

    async fn redis() -> Self {
        Self::Redis(RedisServer::start().await)
    }

    /// `store:` and, for Redis, the `redis:` block.
    fn yaml(&self) -> (String, String) {
        match self {
            Self::Local => ("local".into(), String::new()),
            Self::Redis(r) => ("redis".into(), format!("redis: {{ url: \"{}\" }}\n", r.url())),
        }
    }
}

impl Limited {
    async fn start(backend: Backend, rate_limits: &str) -> Self {
        let issuer = rsa_issuer().await;
        let providers = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "");
        let (store, redis) = backend.yaml();
        let yaml = format!("{providers}{ROUTES}{redis}rate_limits:\n  store: {store}\n{rate_limits}");
        let gk = Gatekeeper::start(&yaml, &[]).await;
        gk.wait_ready().await;
        Self {
            issuer,
            gk,
            yaml,
            _backend: backend,
        }
    }

    fn token(&self, sub: &str, mut extra: serde_json::Value) -> String {
        extra["sub"] = json!(sub);
        rsa_token(&self.issuer.url(), extra)
    }

    /// `method path` with `sub`'s token (none for `None`), through the gRPC door.
    async fn check(&self, method: &str, path: &str, sub: Option<&str>) -> Answer {
        let token = sub.map(|s| format!("Bearer {}", self.token(s, json!({}))));
        let headers: Vec<(&str, &str)> = token.iter().map(|t| ("authorization", t.as_str())).collect();
        self.send(method, check_request(path, &headers)).await
    }

    async fn send(&self, method: &str, mut req: CheckRequest) -> Answer {
        http_mut(&mut req).method = method.into();
        check(&mut self.gk.client().await, req).await.unwrap()
    }

    /// How many of `n` checks are allowed.
    async fn allowed(&self, n: usize, method: &str, path: &str, sub: Option<&str>) -> usize {
        let mut ok = 0;
        for _ in 0..n {
            if self.check(method, path, sub).await.grpc_code == 0 {
                ok += 1;
            }
        }
        ok
    }

    async fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        scrape(self.gk.http_addr).await
    }
}

const PER_USER: &str = "  rules:\n    - { name: per-user, by: [\"claim:sub\"], limit: 100, per: 1m, burst: 5 }\n";

/// The suite, for a store named as `rate_limits.store` takes it.
macro_rules! suite {
    ($backend:expr) => {
        use super::*;

        #[tokio::test]
        async fn exactly_burst_is_allowed_at_once_then_429_with_its_headers_and_body() {
            let l = Limited::start($backend.await, PER_USER).await;
            assert_eq!(l.allowed(5, "GET", "/api/x", Some("alice")).await, 5);
            let a = l.check("GET", "/api/x", Some("alice")).await;
            assert_eq!((a.grpc_code, a.http_status), (8, Some(429)), "RESOURCE_EXHAUSTED, 429: {a:?}");
            let retry: u64 = a.headers["retry-after"].parse().unwrap();
            assert!((1..=1).contains(&retry), "one cell per 0.6 s: {retry}");
            assert_eq!(a.headers["ratelimit-policy"], "\"per-user\";q=100;w=60");
            assert_eq!(a.headers["ratelimit"], format!("\"per-user\";r=0;t={retry}"));
            assert!(!a.headers.contains_key("www-authenticate"), "a 429 is no challenge: {a:?}");
            let body = a.body.unwrap();
            assert_eq!(body["error"], "rate_limited");
            assert_eq!(body["reason"], "rate limit per-user exceeded");
            assert_eq!(body["trace_id"], a.headers["x-jwtgate-trace-id"].as_str());
            let m = l.metrics().await;
            assert_eq!(m["jwtgate_rate_limited_total{rule=\"per-user\"}"], 1.0);
            assert_eq!(
                m["jwtgate_decisions_total{decision=\"deny\",reason=\"rate_limited\",provider=\"corp\",route=\"api\"}"],
                1.0
            );
        }

        #[tokio::test]
        async fn cells_refill_at_limit_per_per() {
            // One cell every 500 ms, one at a time.
            let l = Limited::start(
                $backend.await,
                "  rules:\n    - { name: slow, limit: 2, per: 1s, burst: 1 }\n",
            )
            .await;
            assert_eq!(l.allowed(3, "GET", "/api/x", Some("alice")).await, 1);
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert_eq!(l.allowed(3, "GET", "/api/x", Some("alice")).await, 1, "one cell back");
        }

        #[tokio::test]
        async fn each_subject_has_its_own_counter_and_an_empty_key_is_one_for_all() {
            let rules = "  rules:\n    - { name: per-user, by: [\"claim:sub\"], limit: 100, per: 1m, burst: 2 }\n    - { name: global, limit: 100, per: 1m, burst: 5 }\n";
            let l = Limited::start($backend.await, rules).await;
            assert_eq!(l.allowed(3, "GET", "/api/x", Some("alice")).await, 2);
            assert_eq!(l.allowed(3, "GET", "/api/x", Some("bob")).await, 2, "bob is not alice");
            // alice's refused third took nothing from the global counter: 4 of 5 used.
            assert_eq!(l.allowed(3, "GET", "/api/x", Some("carol")).await, 1);
            let a = l.check("GET", "/api/x", Some("dave")).await;
            assert_eq!(a.headers["ratelimit-policy"], "\"global\";q=100;w=60");
        }

        #[tokio::test]
        async fn requests_without_a_key_part_share_the_absent_counter() {
            let rules = "  rules:\n    - { name: per-tenant, by: [\"claim:tenant\", \"header:x-api-key\"], limit: 100, per: 1m, burst: 2 }\n";
            let l = Limited::start($backend.await, rules).await;
            // Anonymous on a public route, and two subjects whose tokens carry no tenant.
            assert_eq!(l.allowed(1, "GET", "/public/a", None).await, 1);
            assert_eq!(l.allowed(1, "GET", "/api/a", Some("alice")).await, 1);
            assert_eq!(l.allowed(1, "GET", "/api/a", Some("bob")).await, 0, "leaving claims out escapes nothing");
            let acme = format!("Bearer {}", l.token("alice", json!({"tenant": "acme"})));
            let req = check_request("/api/a", &[("authorization", &acme)]);
            assert_eq!(l.send("GET", req).await.grpc_code, 0, "a tenant has its own counter");
        }

        #[tokio::test]
        async fn cost_takes_several_cells() {
            let rules = "  rules:\n    - { name: export, limit: 20, per: 1m, burst: 20, cost: 10 }\n";
            let l = Limited::start($backend.await, rules).await;
            assert_eq!(l.allowed(3, "GET", "/api/export", Some("alice")).await, 2);
        }

        #[tokio::test]
        async fn a_refused_request_charges_no_rule_and_rules_match_routes_and_methods() {
            let rules = "  rules:\n    - { name: wide, limit: 100, per: 1m, burst: 4 }\n    - { name: writes, limit: 100, per: 1m, burst: 1, match: { routes: [api], methods: [POST] } }\n";
            let l = Limited::start($backend.await, rules).await;
            assert_eq!(l.check("POST", "/api/x", Some("alice")).await.grpc_code, 0);
            let a = l.check("POST", "/api/x", Some("alice")).await;
            assert_eq!(a.http_status, Some(429));
            assert_eq!(a.body.unwrap()["reason"], "rate limit writes exceeded");
            // The refused POST took nothing from `wide`: 3 of its 4 are left, GETs skip `writes`.
            assert_eq!(l.allowed(4, "GET", "/api/x", Some("alice")).await, 3);
            // `writes` counts the api route only.
            let a = l.check("POST", "/public/x", None).await;
            assert_eq!(a.headers.get("ratelimit-policy").map(String::as_str), Some("\"wide\";q=100;w=60"));
        }

        #[tokio::test]
        async fn a_dry_run_route_counts_but_never_refuses() {
            let rules = "  rules:\n    - { name: beta, limit: 100, per: 1m, burst: 1, match: { routes: [beta] } }\n";
            let l = Limited::start($backend.await, rules).await;
            assert_eq!(l.allowed(3, "GET", "/beta/x", Some("alice")).await, 3);
            let m = l.metrics().await;
            assert_eq!(
                m["jwtgate_dry_run_denials_total{route=\"beta\",reason=\"rate_limited\"}"],
                2.0
            );
            assert_eq!(m["jwtgate_rate_limited_total{rule=\"beta\"}"], 2.0);
        }

        #[tokio::test]
        async fn a_refused_token_is_401_or_403_never_429() {
            let rules = "  rules:\n    - { name: global, limit: 100, per: 1m, burst: 1 }\n";
            let l = Limited::start($backend.await, rules).await;
            assert_eq!(l.allowed(2, "GET", "/api/x", Some("alice")).await, 1, "exhausted");
            let a = l.send("GET", bearer("not.a.token")).await;
            assert_eq!(a.http_status, Some(401), "{a:?}");
            let a = l.check("GET", "/admin/x", Some("alice")).await;
            assert_eq!(a.http_status, Some(403), "missing role before any limit: {a:?}");
        }

        #[tokio::test]
        async fn both_doors_answer_429_alike_and_allows_carry_ratelimit_when_asked() {
            let rules = "  headers_on_allow: true\n  rules:\n    - { name: per-user, by: [\"claim:sub\"], limit: 100, per: 1m, burst: 2 }\n";
            let l = Limited::start($backend.await, rules).await;
            let a = l.check("GET", "/api/x", Some("alice")).await;
            assert_eq!(a.grpc_code, 0);
            assert_eq!(a.response_headers["ratelimit"], "\"per-user\";r=1;t=1");
            assert_eq!(a.response_headers["ratelimit-policy"], "\"per-user\";q=100;w=60");
            let http = |sub: &str| {
                let token = l.token(sub, json!({}));
                let url = format!("http://{}/auth", l.gk.http_addr);
                async move {
                    reqwest::Client::new()
                        .get(url)
                        .header("authorization", format!("Bearer {token}"))
                        .header("x-original-uri", "/api/x")
                        .header("x-original-method", "GET")
                        .send()
                        .await
                        .unwrap()
                }
            };
            let r = http("alice").await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["ratelimit"], "\"per-user\";r=0;t=2");
            let r = http("alice").await;
            assert_eq!(r.status(), 429);
            let headers = r.headers().clone();
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            let g = l.check("GET", "/api/x", Some("alice")).await;
            for h in ["retry-after", "ratelimit-policy", "content-type"] {
                assert_eq!(headers[h].to_str().unwrap(), g.headers[h], "{h}");
            }
            assert_eq!(body["error"], g.body.as_ref().unwrap()["error"]);
            assert_eq!(body["reason"], g.body.as_ref().unwrap()["reason"]);
        }

        #[tokio::test]
        async fn a_reload_keeps_the_counters() {
            let l = Limited::start($backend.await, PER_USER).await;
            assert_eq!(l.allowed(5, "GET", "/api/x", Some("alice")).await, 5);
            // A changed config (another realm): a new gate, the same counters.
            let path = l.gk.dir().join("jwtgate.yaml");
            std::fs::write(&path, format!("{}realm: reloaded\n", config_text(&l.yaml))).unwrap();
            l.gk.live().reload(&path).unwrap();
            assert_eq!(l.allowed(1, "GET", "/api/x", Some("alice")).await, 0);
        }
    };
}

mod local {
    suite!(Backend::local());
}

mod redis {
    suite!(Backend::redis());
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

/// Two replicas sharing one Redis: together they allow exactly what one would.
#[tokio::test]
async fn two_replicas_sharing_redis_allow_exactly_burst_of_200_concurrent_requests() {
    bounded(Duration::from_secs(60), async {
        let redis = RedisServer::start().await;
        let issuer = rsa_issuer().await;
        let yaml = format!(
            "{}redis: {{ url: \"{}\" }}\nrate_limits:\n  store: redis\n  store_timeout: 1s\n  on_store_error: deny\n  rules:\n    - {{ name: per-user, by: [\"claim:sub\"], limit: 20, per: 1h, burst: 20 }}\n",
            jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), ""),
            redis.url()
        );
        let (a, b) = (Gatekeeper::start(&yaml, &[]).await, Gatekeeper::start(&yaml, &[]).await);
        a.wait_ready().await;
        b.wait_ready().await;
        let token = rsa_token(&issuer.url(), json!({}));
        let limited = (429, "rate limit per-user exceeded".to_owned());
        assert_eq!(
            concurrently(&[&a, &b], &token, 200).await,
            std::collections::BTreeMap::from([((200, String::new()), 20), (limited, 180)])
        );
    })
    .await;
}

/// A Redis that hangs or dies: every check still answers within `store_timeout` (plus the
/// check's own work), as `on_store_error` says, counted; counting resumes when Redis is back.
#[tokio::test]
async fn a_hung_or_dead_redis_follows_on_store_error_in_time_and_counting_resumes() {
    bounded(Duration::from_secs(60), async {
        let mut redis = RedisServer::start().await;
        let issuer = rsa_issuer().await;
        let gate = |on_error: &str| {
            format!(
                "{}redis: {{ url: \"{}\" }}\nrate_limits:\n  store: redis\n  store_timeout: 100ms\n  on_store_error: {on_error}\n  rules:\n    - {{ name: per-user, by: [\"claim:sub\"], limit: 2, per: 1h }}\n",
                jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), ""),
                redis.url()
            )
        };
        let (deny, allow) = (
            Gatekeeper::start(&gate("deny"), &[]).await,
            Gatekeeper::start(&gate("allow"), &[]).await,
        );
        deny.wait_ready().await;
        allow.wait_ready().await;
        let token = |sub: &str| rsa_token(&issuer.url(), json!({ "sub": sub }));
        let (mut d, mut al) = (deny.client().await, allow.client().await);
        assert_eq!(check(&mut d, bearer(&token("alice"))).await.unwrap().grpc_code, 0);

        redis.pause();
        for (client, expected) in [(&mut d, Some(429)), (&mut al, None)] {
            for _ in 0..3 {
                let started = std::time::Instant::now();
                let a = check(client, bearer(&token("bob"))).await.unwrap();
                assert_eq!(a.http_status, expected, "{a:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "blocked {:?} on a hung redis",
                    started.elapsed()
                );
            }
        }
        let errors = |gk: &Gatekeeper| {
            let url = format!("http://{}/metrics", gk.http_addr);
            async move {
                let text = reqwest::get(url).await.unwrap().text().await.unwrap();
                samples(&text)["jwtgate_rate_limit_store_errors_total"]
            }
        };
        assert_eq!(errors(&deny).await, 3.0);
        assert_eq!(errors(&allow).await, 3.0);
        redis.resume();

        // Killed and restarted empty: counting resumes once it is back (bounded wait).
        redis.restart().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let a = check(&mut d, bearer(&token("carol"))).await.unwrap();
            if a.grpc_code == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no recovery: {a:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // carol has used 1 of her 2; the third is refused by the rule, not by a store error.
        assert_eq!(check(&mut d, bearer(&token("carol"))).await.unwrap().grpc_code, 0);
        let a = check(&mut d, bearer(&token("carol"))).await.unwrap();
        assert_eq!(a.body.unwrap()["reason"], "rate limit per-user exceeded");
        assert_eq!(a.headers["retry-after"], "1800", "one of 2 per hour");
    })
    .await;
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
