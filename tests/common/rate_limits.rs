//! The rate-limit suite (the limitador pattern): one set of behaviours over a store, run for the
//! local store in `tests/it/rate_limits.rs` and for Redis in `tests/external/rate_limits.rs`.

use crate::common::redis_server::RedisServer;
use crate::common::*;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use serde_json::json;

/// jwtgate with one JWKS provider, these routes and this `rate_limits:` block.
pub struct Limited {
    pub issuer: Issuer,
    pub gk: Gatekeeper,
    /// The `providers:` list and everything after it.
    pub yaml: String,
    /// Kept running for the test's length.
    pub _backend: Backend,
}

pub const ROUTES: &str = "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: admin, match: { path_prefix: /admin }, require: { roles: [admin] } }
  - { name: beta, match: { path_prefix: /beta }, mode: dry_run }
  - { name: api, match: { path_prefix: /api } }
";

/// Where the counters live for one test.
pub enum Backend {
    Local,
    Redis(RedisServer),
}

impl Backend {
    pub async fn local() -> Self {
        Self::Local
    }

    pub async fn redis() -> Self {
        Self::Redis(RedisServer::start().await)
    }

    /// `store:` and, for Redis, the `redis:` block.
    pub fn yaml(&self) -> (String, String) {
        match self {
            Self::Local => ("local".into(), String::new()),
            Self::Redis(r) => ("redis".into(), format!("redis: {{ url: \"{}\" }}\n", r.url())),
        }
    }
}

impl Limited {
    pub async fn start(backend: Backend, rate_limits: &str) -> Self {
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

    pub fn token(&self, sub: &str, mut extra: serde_json::Value) -> String {
        extra["sub"] = json!(sub);
        rsa_token(&self.issuer.url(), extra)
    }

    /// `method path` with `sub`'s token (none for `None`), through the gRPC door.
    pub async fn check(&self, method: &str, path: &str, sub: Option<&str>) -> Answer {
        let token = sub.map(|s| format!("Bearer {}", self.token(s, json!({}))));
        let headers: Vec<(&str, &str)> = token.iter().map(|t| ("authorization", t.as_str())).collect();
        self.send(method, check_request(path, &headers)).await
    }

    pub async fn send(&self, method: &str, mut req: CheckRequest) -> Answer {
        http_mut(&mut req).method = method.into();
        check(&mut self.gk.client().await, req).await.unwrap()
    }

    /// How many of `n` checks are allowed.
    pub async fn allowed(&self, n: usize, method: &str, path: &str, sub: Option<&str>) -> usize {
        let mut ok = 0;
        for _ in 0..n {
            if self.check(method, path, sub).await.grpc_code == 0 {
                ok += 1;
            }
        }
        ok
    }

    pub async fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        scrape(self.gk.http_addr).await
    }
}

pub const PER_USER: &str = "  rules:\n    - { name: per-user, by: [\"claim:sub\"], limit: 100, per: 1m, burst: 5 }\n";

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

pub(crate) use suite;
