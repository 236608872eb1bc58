//! Rate limits through the real doors: one suite of behaviours, instantiated per store (the
//! limitador pattern) — exactly `burst` at once, refill at `limit` per `per`, per-subject
//! isolation, a global counter, absent key parts, `cost`, all or nothing across rules, route and
//! method matching, dry run, 401/403 before 429 — and the answers on both doors: 429 with
//! `Retry-After`, `RateLimit-Policy`, `RateLimit` and the JSON body, `RESOURCE_EXHAUSTED` as the
//! check's status, `RateLimit` on allows with `headers_on_allow`, counted in
//! `jwtgate_rate_limited_total{rule}`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::*;
use serde_json::json;

use crate::common::rate_limits::*;

mod redis {
    crate::common::rate_limits::suite!(Backend::redis());
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
