//! The verified-token cache through the real gRPC door: hits skip verification but not expiry,
//! revocation evicts at once, a key leaving the key set invalidates its entries, bad tokens are
//! remembered briefly, and `max_entries: 0` turns it off.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm;
use jwtgate_core::clock;
use jwtgate_core::revocation::{Revocation, Target};
use serde_json::json;

async fn start(extra_top: &str, keys: &str) -> (Issuer, Gatekeeper) {
    let issuer = Issuer::start(vec![
        jwk("rsa-a.pem", Algorithm::RS256, "a"),
        jwk("rsa-b.pem", Algorithm::RS256, "b"),
    ])
    .await;
    let provider = jwks_provider(
        "corp",
        &issuer.url(),
        &issuer.jwks_uri(),
        &format!("    clock_skew: 0s\n    keys: {{ {keys} }}\n"),
    );
    let gk = Gatekeeper::start(&format!("{provider}{extra_top}"), &[]).await;
    gk.wait_ready().await;
    (issuer, gk)
}

fn token(issuer: &Issuer, key: &str, kid: &str, extra: serde_json::Value) -> String {
    let mut c = claims(&issuer.url());
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign(&pem(key), Algorithm::RS256, Some(kid), c)
}

fn metrics(gk: &Gatekeeper) -> std::sync::Arc<jwtgate_core::metrics::Metrics> {
    gk.live().gate().load().metrics().clone()
}

#[tokio::test]
async fn a_seen_token_is_answered_from_the_cache() {
    let (issuer, gk) = start("", "").await;
    let mut client = gk.client().await;
    let t = token(&issuer, "rsa-a.pem", "a", json!({}));
    let hits = metrics(&gk).cache_hits();
    for _ in 0..5 {
        assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0);
    }
    assert_eq!(
        metrics(&gk).cache_hits() - hits,
        4,
        "first request verifies, the next four hit"
    );
    assert_eq!(gk.live().gate().load().cache().len(), 1);
    let text = reqwest::get(format!("http://{}/metrics", gk.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("jwtgate_token_cache_lookups_total{outcome=\"hit\"} 4"),
        "{text}"
    );
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let (issuer, gk) = start("", "").await;
    let mut client = gk.client().await;
    let t = token(&issuer, "rsa-a.pem", "a", json!({"exp": clock::now().unix + 2}));
    assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let a = check(&mut client, bearer(&t)).await.unwrap();
    assert_eq!(a.reason(), "token expired");
}

#[tokio::test]
async fn revocation_evicts_cached_tokens_at_once() {
    let (issuer, gk) = start("", "").await;
    let mut client = gk.client().await;
    let by_jti = token(&issuer, "rsa-a.pem", "a", json!({"jti": "j-1"}));
    let by_sub = token(
        &issuer,
        "rsa-a.pem",
        "a",
        json!({"sub": "bob", "iat": clock::now().unix - 10}),
    );
    let other = token(&issuer, "rsa-a.pem", "a", json!({"jti": "j-2"}));
    for t in [&by_jti, &by_sub, &other] {
        assert_eq!(check(&mut client, bearer(t)).await.unwrap().grpc_code, 0);
    }
    let gate = gk.live().gate().load_full();
    assert_eq!(gate.cache().len(), 3);
    let store = gk.running.as_ref().unwrap().store.clone();
    let revoke = |target| Revocation {
        target,
        expires_at: clock::now().unix + 600,
        created_at: clock::now().unix,
        reason: "test".into(),
    };
    store
        .revoke(revoke(Target::Token {
            issuer: issuer.url(),
            jti: "j-1".into(),
        }))
        .await
        .unwrap();
    store
        .revoke(revoke(Target::Subject {
            issuer: issuer.url(),
            subject: "bob".into(),
            issued_before: clock::now().unix,
        }))
        .await
        .unwrap();
    assert_eq!(
        gate.cache().len(),
        1,
        "both revoked tokens left the cache with the revocation"
    );
    for t in [&by_jti, &by_sub] {
        assert_eq!(check(&mut client, bearer(t)).await.unwrap().reason(), "token revoked");
    }
    assert_eq!(check(&mut client, bearer(&other)).await.unwrap().grpc_code, 0);
}

#[tokio::test]
async fn a_key_leaving_the_key_set_invalidates_its_cached_tokens() {
    let (issuer, gk) = start("", "refresh_interval: 1s, min_refetch_interval: 100ms").await;
    let mut client = gk.client().await;
    let old = token(&issuer, "rsa-a.pem", "a", json!({}));
    assert_eq!(check(&mut client, bearer(&old)).await.unwrap().grpc_code, 0);
    issuer.set_keys(vec![jwk("rsa-b.pem", Algorithm::RS256, "b")]);
    let start = Instant::now();
    loop {
        let a = check(&mut client, bearer(&old)).await.unwrap();
        if a.grpc_code != 0 {
            assert_eq!(a.reason(), "unknown signing key");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the cached token outlived its key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_tokens_are_remembered_briefly_and_cost_one_lookup() {
    let (issuer, gk) = start("cache: { negative_ttl: 5s }\n", "").await;
    let mut client = gk.client().await;
    let forged = token(&issuer, "rsa-b.pem", "a", json!({}));
    let text = || async {
        reqwest::get(format!("http://{}/metrics", gk.http_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(
            check(&mut client, bearer(&forged)).await.unwrap().reason(),
            "invalid signature"
        );
    }
    assert!(
        text()
            .await
            .contains("jwtgate_token_cache_lookups_total{outcome=\"refused_hit\"} 2")
    );
}

#[tokio::test]
async fn max_entries_zero_turns_the_cache_off() {
    let (issuer, gk) = start("cache: { max_entries: 0 }\n", "").await;
    let mut client = gk.client().await;
    let t = token(&issuer, "rsa-a.pem", "a", json!({}));
    for _ in 0..3 {
        assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0);
    }
    assert_eq!(metrics(&gk).cache_hits(), 0);
    assert!(!gk.live().gate().load().cache().enabled());
}

#[tokio::test]
async fn a_refresh_with_unchanged_keys_keeps_cached_tokens() {
    let (issuer, gk) = start("", "refresh_interval: 1s, min_refetch_interval: 100ms").await;
    let mut client = gk.client().await;
    let t = token(&issuer, "rsa-a.pem", "a", json!({}));
    assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0);
    let fetched = issuer.jwks_hits();
    let start = Instant::now();
    while issuer.jwks_hits() < fetched + 2 {
        assert!(start.elapsed() < Duration::from_secs(6), "no background refresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hits = metrics(&gk).cache_hits();
    assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0);
    assert_eq!(
        metrics(&gk).cache_hits(),
        hits + 1,
        "the same key object survives the refresh"
    );
}

/// A cached entry keeps only the claims route policies read; every decision and header must
/// still come out the same on a hit as on the first (verifying) request.
#[tokio::test]
async fn a_hit_decides_and_forwards_exactly_as_the_first_check() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
    let yaml = format!(
        r#"  - name: corp
    issuer: "{iss}"
    jwks_uri: "{jwks}"
    audiences: [api]
    roles_claim: realm_access.roles
    claims_to_headers: {{ sub: x-jwt-sub, org.id: x-org, groups: x-groups }}
    payload_header: x-jwt-payload
routes:
  - name: ops
    match: {{ path_prefix: /ops }}
    require: {{ scopes: [read], roles: {{ any_of: [ops] }}, claims: {{ org.tier: {{ one_of: [gold] }} }} }}
  - name: any
    match: {{ path_prefix: / }}
"#,
        iss = issuer.url(),
        jwks = issuer.jwks_uri()
    );
    let gk = Gatekeeper::start(&yaml, &[]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let good = token(
        &issuer,
        "rsa-a.pem",
        "a",
        json!({"scope": "read write", "realm_access": {"roles": ["ops"]}, "org": {"id": 7, "tier": "gold"},
               "groups": ["a", "b"], "unused": "x".repeat(500)}),
    );
    let no_role = token(
        &issuer,
        "rsa-a.pem",
        "a",
        json!({"scope": "read", "realm_access": {"roles": ["dev"]}, "org": {"id": 7, "tier": "gold"}}),
    );
    let ops = |t: &str| check_request("/ops/x", &[("authorization", &format!("Bearer {t}"))]);
    let first = check(&mut client, ops(&good)).await.unwrap();
    assert_eq!(first.grpc_code, 0, "{first:?}");
    assert_eq!(first.headers.get("x-jwt-sub").map(String::as_str), Some("alice"));
    assert_eq!(first.headers.get("x-org").map(String::as_str), Some("7"));
    assert_eq!(first.headers.get("x-groups").map(String::as_str), Some("a,b"));
    assert!(first.headers.contains_key("x-jwt-payload"));
    let hits = metrics(&gk).cache_hits();
    let again = check(&mut client, ops(&good)).await.unwrap();
    assert_eq!(metrics(&gk).cache_hits() - hits, 1, "the second check is a hit");
    assert_eq!(
        (again.grpc_code, &again.headers, &again.metadata),
        (0, &first.headers, &first.metadata)
    );

    let other_route = check(&mut client, bearer(&good)).await.unwrap();
    assert_eq!((other_route.grpc_code, &other_route.headers), (0, &first.headers));

    for round in ["miss", "hit"] {
        let denied = check(&mut client, ops(&no_role)).await.unwrap();
        assert_eq!(denied.http_status, Some(403), "{round}: {denied:?}");
    }
}
