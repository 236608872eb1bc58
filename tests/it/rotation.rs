//! Key-set lifecycle through the real gRPC door against a real JWKS server on loopback: rotation,
//! removal, issuer outages, `kid` floods, hostile key endpoints, `Cache-Control`, file reloads.
//! Every wait is a bounded poll; no assertion depends on how fast this machine is.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tonic::transport::Channel;

fn rsa_a() -> Value {
    jwk("rsa-a.pem", Algorithm::RS256, "a")
}

fn rsa_b() -> Value {
    jwk("rsa-b.pem", Algorithm::RS256, "b")
}

fn token(issuer: &Issuer, key: &str, kid: &str) -> String {
    sign(&pem(key), Algorithm::RS256, Some(kid), claims(&issuer.url()))
}

async fn start(issuer: &Issuer, keys_yaml: &str) -> (Gatekeeper, AuthorizationClient<Channel>) {
    let extra = format!("    keys: {{ {keys_yaml} }}\n");
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), &extra), &[]).await;
    let client = gk.client().await;
    (gk, client)
}

async fn code(client: &mut AuthorizationClient<Channel>, token: &str) -> Result<i32, tonic::Code> {
    check(client, bearer(token)).await.map(|a| a.grpc_code)
}

async fn reason(client: &mut AuthorizationClient<Channel>, token: &str) -> String {
    check(client, bearer(token)).await.expect("a CheckResponse").reason()
}

#[tokio::test]
async fn a_new_key_is_accepted_on_its_first_request() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, mut client) = start(&issuer, "min_refetch_interval: 30s").await;
    gk.wait_ready().await;
    assert_eq!(code(&mut client, &token(&issuer, "rsa-a.pem", "a")).await, Ok(0));
    let hits = issuer.jwks_hits();

    issuer.set_keys(vec![rsa_a(), rsa_b()]);
    assert_eq!(
        code(&mut client, &token(&issuer, "rsa-b.pem", "b")).await,
        Ok(0),
        "first request with the new kid"
    );
    assert_eq!(issuer.jwks_hits(), hits + 1, "exactly one refetch for the new kid");
    // Known now: no further fetch.
    assert_eq!(code(&mut client, &token(&issuer, "rsa-b.pem", "b")).await, Ok(0));
    assert_eq!(issuer.jwks_hits(), hits + 1);
}

/// jwtgate serving key `a` (1 s refresh, 100 ms refetch window, 1 s refetch wait) with a
/// background refresh in flight that the issuer answers after `delay`, with the key set it had
/// when the refresh arrived.
async fn with_a_stale_refresh_in_flight(delay: Duration) -> (Issuer, Gatekeeper, AuthorizationClient<Channel>) {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, client) = start(
        &issuer,
        "refresh_interval: 1s, min_refetch_interval: 100ms, refetch_wait: 1s",
    )
    .await;
    gk.wait_ready().await;
    issuer.set_mode(Mode::Slow(delay));
    let hits = issuer.jwks_hits();
    eventually(
        "a background refresh to be in flight",
        Duration::from_secs(5),
        async || issuer.jwks_hits() > hits,
    )
    .await;
    (issuer, gk, client)
}

#[tokio::test]
async fn a_new_key_is_accepted_even_when_a_fetch_from_before_the_rotation_is_in_flight() {
    // The next background refresh is answered late, with the key set as it was when it arrived.
    let (issuer, _gk, mut client) = with_a_stale_refresh_in_flight(Duration::from_millis(800)).await;
    // Rotation while it is in flight: b's first token joins that fetch, which lacks b.
    issuer.set_keys(vec![rsa_a(), rsa_b()]);
    issuer.set_mode(Mode::Normal);
    assert_eq!(
        code(&mut client, &token(&issuer, "rsa-b.pem", "b")).await,
        Ok(0),
        "a fetch of its own after the stale one"
    );
}

#[tokio::test]
async fn a_rotation_fetch_slower_than_refetch_wait_answers_unavailable_then_the_key_serves() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, mut client) = start(&issuer, "min_refetch_interval: 100ms, refetch_wait: 100ms").await;
    gk.wait_ready().await;
    issuer.set_keys(vec![rsa_a(), rsa_b()]);
    issuer.set_mode(Mode::Slow(Duration::from_secs(3)));
    let b = token(&issuer, "rsa-b.pem", "b");
    let asked = Instant::now();
    let answer = check(&mut client, bearer(&b)).await.map(|a| (a.grpc_code, a.reason()));
    assert_eq!(
        answer.as_ref().map(|_| ()).map_err(|e| *e),
        Err(tonic::Code::Unavailable),
        "past refetch_wait the request is answered, not held for the fetch: {answer:?}"
    );
    assert!(asked.elapsed() < Duration::from_secs(2), "waited {:?}", asked.elapsed());
    // The fetch it started goes on and lands; b then verifies without another.
    issuer.set_mode(Mode::Normal);
    eventually("the slow fetch to bring b", Duration::from_secs(10), async || {
        gk.readyz().await.1["providers"][0]["kids"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "b"))
    })
    .await;
    assert_eq!(code(&mut client, &b).await, Ok(0));
}

#[tokio::test]
async fn a_rotation_whose_own_fetch_after_a_stale_one_is_late_answers_unavailable_not_unknown_key() {
    // A background refresh in flight, answered in 300 ms with the key set of before the rotation.
    let (issuer, _gk, mut client) = with_a_stale_refresh_in_flight(Duration::from_millis(300)).await;
    issuer.set_keys(vec![rsa_a(), rsa_b()]);
    // b's request joins it, finds no b, and asks for its own fetch: that one takes 3 s.
    issuer.set_mode(Mode::Slow(Duration::from_secs(3)));
    let answer = check(&mut client, bearer(&token(&issuer, "rsa-b.pem", "b")))
        .await
        .map(|a| (a.grpc_code, a.reason()));
    assert_eq!(
        answer.as_ref().map(|_| ()).map_err(|e| *e),
        Err(tonic::Code::Unavailable),
        "the key may exist: not a 401 for a valid token: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_of_a_rotation_all_wait_for_the_one_refetch() {
    // Found by the chaos soak: of two first requests for a new kid arriving together, one started
    // the refetch and the other, finding none running a moment before it began, was told the
    // window was spent and denied 2 ms before the key arrived.
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, _) = start(&issuer, "min_refetch_interval: 100ms, refetch_wait: 1s").await;
    gk.wait_ready().await;
    // One connection each, so that both server threads take requests at the same moment.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(gk.client().await);
    }
    let mut denied = Vec::new();
    for rotation in 0..24 {
        let kid = format!("b{rotation}");
        let t = token(&issuer, "rsa-b.pem", &kid);
        tokio::time::sleep(Duration::from_millis(150)).await; // past the last window
        issuer.set_keys(vec![rsa_a(), jwk("rsa-b.pem", Algorithm::RS256, &kid)]);
        let burst: Vec<_> = (0..32)
            .map(|i| {
                let (mut client, t) = (clients[i % clients.len()].clone(), t.clone());
                tokio::spawn(async move { code(&mut client, &t).await })
            })
            .collect();
        for task in burst {
            let outcome = task.await.unwrap();
            if outcome != Ok(0) {
                denied.push((rotation, outcome));
            }
        }
    }
    assert!(denied.is_empty(), "first requests of a rotation refused: {denied:?}");
}

#[tokio::test]
async fn tokens_of_a_retired_key_spend_no_refetch_so_the_next_rotation_is_seen_at_once() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, mut client) = start(&issuer, "min_refetch_interval: 1s").await;
    gk.wait_ready().await;
    let old = token(&issuer, "rsa-a.pem", "a");
    assert_eq!(code(&mut client, &old).await, Ok(0));

    // Rotation: b replaces a, learnt from b's first token; a is retired.
    issuer.set_keys(vec![rsa_b()]);
    assert_eq!(code(&mut client, &token(&issuer, "rsa-b.pem", "b")).await, Ok(0));
    tokio::time::sleep(Duration::from_millis(1100)).await; // the refetch window has passed
    let hits = issuer.jwks_hits();
    // A client still holding a token of the retired key: refused, and no refetch spent on it.
    assert_eq!(reason(&mut client, &old).await, "unknown signing key");
    assert_eq!(reason(&mut client, &old).await, "unknown signing key");
    assert_eq!(issuer.jwks_hits(), hits, "a retired kid fetches nothing");

    // So the next rotation's first token finds the window open.
    issuer.set_keys(vec![rsa_b(), jwk("ec-p256.pem", Algorithm::ES256, "c")]);
    let c = sign(&pem("ec-p256.pem"), Algorithm::ES256, Some("c"), claims(&issuer.url()));
    assert_eq!(code(&mut client, &c).await, Ok(0), "the new key on its first token");
    assert_eq!(issuer.jwks_hits(), hits + 1);
}

#[tokio::test]
async fn a_removed_key_stops_verifying_after_the_next_refresh() {
    let issuer = Issuer::start(vec![rsa_a(), rsa_b()]).await;
    let (gk, mut client) = start(&issuer, "refresh_interval: 1s, min_refetch_interval: 1s").await;
    gk.wait_ready().await;
    let old = token(&issuer, "rsa-a.pem", "a");
    assert_eq!(code(&mut client, &old).await, Ok(0));

    issuer.set_keys(vec![rsa_b()]);
    let hits = issuer.jwks_hits();
    eventually("a background refresh", Duration::from_secs(5), async || {
        issuer.jwks_hits() > hits
    })
    .await;
    eventually(
        "the removed key to stop verifying",
        Duration::from_secs(2),
        async || code(&mut client, &old).await == Ok(16),
    )
    .await;
    assert_eq!(reason(&mut client, &old).await, "unknown signing key");
    assert_eq!(code(&mut client, &token(&issuer, "rsa-b.pem", "b")).await, Ok(0));
}

#[tokio::test]
async fn known_keys_keep_working_while_the_issuer_is_down() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, mut client) = start(&issuer, "refresh_interval: 1s, min_refetch_interval: 100ms").await;
    gk.wait_ready().await;
    let t = token(&issuer, "rsa-a.pem", "a");

    // Failing with 500s, then gone altogether: every refresh fails.
    issuer.set_mode(Mode::Status(500));
    let hits = issuer.jwks_hits();
    eventually("a failed refresh", Duration::from_secs(5), async || {
        issuer.jwks_hits() > hits
    })
    .await;
    issuer.stop();
    eventually("the outage to show in /readyz", Duration::from_secs(5), async || {
        gk.readyz().await.1["providers"][0]["state"] == "stale"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // at least one refresh against a closed port

    assert_eq!(code(&mut client, &t).await, Ok(0), "last good keys still verify");
    let (status, body) = gk.readyz().await;
    assert_eq!(status, 200, "stale keys are usable keys: {body}");
    let p = &body["providers"][0];
    assert_eq!(p["state"], "stale");
    assert!(p["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert_eq!(p["kids"], json!(["a"]));
    // An unknown kid during the outage is refused, not waited on.
    let unknown = code(&mut client, &token(&issuer, "rsa-b.pem", "b")).await;
    assert!(matches!(unknown, Ok(16) | Err(tonic::Code::Unavailable)), "{unknown:?}");
}

#[tokio::test]
async fn stale_keys_expire_after_max_stale() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, mut client) = start(
        &issuer,
        "refresh_interval: 1s, min_refetch_interval: 100ms, max_stale: 2s",
    )
    .await;
    gk.wait_ready().await;
    let t = token(&issuer, "rsa-a.pem", "a");
    issuer.set_mode(Mode::Status(503));
    eventually("keys to expire", Duration::from_secs(6), async || {
        gk.readyz().await.0 == 503
    })
    .await;
    assert_eq!(gk.readyz().await.1["providers"][0]["state"], "expired");
    assert_eq!(
        code(&mut client, &t).await,
        Err(tonic::Code::Unavailable),
        "never a 401 for our own outage"
    );
    // The issuer comes back: keys and readiness return without a restart.
    issuer.set_mode(Mode::Normal);
    gk.wait_ready().await;
    assert_eq!(code(&mut client, &t).await, Ok(0));
}

#[tokio::test]
async fn a_random_kid_flood_costs_at_most_one_fetch_per_window() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, client) = start(&issuer, "min_refetch_interval: 60s").await;
    gk.wait_ready().await;
    let before = issuer.jwks_hits();

    let mut tasks = Vec::new();
    for worker in 0..8 {
        let mut client = client.clone();
        let iss = issuer.url();
        tasks.push(tokio::spawn(async move {
            let mut denied = 0;
            for i in 0..50 {
                let kid = format!("random-{worker}-{i}-{}", rand_suffix());
                let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some(&kid), claims(&iss));
                let a = check(&mut client, bearer(&t)).await.expect("a CheckResponse");
                assert_eq!(a.reason(), "unknown signing key");
                denied += 1;
            }
            denied
        }));
    }
    let mut denied = 0;
    for t in tasks {
        denied += t.await.unwrap();
    }
    assert_eq!(denied, 400);
    let fetched = issuer.jwks_hits() - before;
    assert!(fetched <= 1, "400 random kids caused {fetched} fetches in one window");
    // Good tokens were never disturbed.
    let mut client = client.clone();
    assert_eq!(code(&mut client, &token(&issuer, "rsa-a.pem", "a")).await, Ok(0));
}

#[tokio::test]
async fn a_sustained_kid_flood_fetches_once_per_window() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let (gk, mut client) = start(&issuer, "min_refetch_interval: 500ms").await;
    gk.wait_ready().await;
    let before = issuer.jwks_hits();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_millis(2000) {
        let t = token(&issuer, "rsa-a.pem", &format!("flood-{sent}"));
        assert_eq!(code(&mut client, &t).await, Ok(16));
        sent += 1;
    }
    let windows = started.elapsed().as_millis() as u64 / 500 + 1;
    let fetched = issuer.jwks_hits() - before;
    assert!(
        fetched <= windows,
        "{sent} requests, {fetched} fetches, {windows} windows"
    );
    assert!(fetched >= 1, "an unknown kid must trigger a refetch");
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// Starts jwtgate against an issuer that misbehaves from the first request; asserts it stays
/// unready with the reason in `/readyz`, answers UNAVAILABLE quickly, and recovers once the
/// issuer behaves.
async fn hostile_at_start(mode: Mode, error_fragment: &str) {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    issuer.set_mode(mode.clone());
    let (gk, mut client) = start(
        &issuer,
        "refresh_interval: 1s, min_refetch_interval: 100ms, fetch_timeout: 300ms",
    )
    .await;
    eventually("the failed fetch to be reported", Duration::from_secs(5), async || {
        gk.readyz().await.1["providers"][0]["last_error"].as_str().is_some()
    })
    .await;
    let (status, body) = gk.readyz().await;
    assert_eq!(status, 503, "{mode:?}: {body}");
    let p = &body["providers"][0];
    assert_eq!(p["state"], "missing", "{mode:?}: {body}");
    let err = p["last_error"].as_str().unwrap();
    assert!(
        err.contains(error_fragment),
        "{mode:?}: {err:?} should mention {error_fragment:?}"
    );

    let t = token(&issuer, "rsa-a.pem", "a");
    let asked = Instant::now();
    assert_eq!(code(&mut client, &t).await, Err(tonic::Code::Unavailable), "{mode:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{mode:?}: a request must not wait on a hung fetch"
    );

    issuer.set_mode(Mode::Normal);
    gk.wait_ready().await;
    assert_eq!(code(&mut client, &t).await, Ok(0), "{mode:?}: recovers");
}

#[tokio::test]
async fn a_hanging_key_endpoint_is_bounded_by_fetch_timeout() {
    hostile_at_start(Mode::Hang, "within 300ms").await;
}

#[tokio::test]
async fn a_huge_key_endpoint_is_bounded_in_size() {
    hostile_at_start(Mode::Huge, "over the 1048576-byte limit").await;
}

#[tokio::test]
async fn an_html_key_endpoint_is_refused() {
    hostile_at_start(Mode::Html, "HTML").await;
}

#[tokio::test]
async fn a_failing_key_endpoint_is_retried() {
    hostile_at_start(Mode::Status(500), "500").await;
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    hostile_at_start(Mode::RedirectElsewhere, "redirect").await;
}

#[tokio::test]
async fn bad_keys_in_the_jwks_are_skipped_and_the_rest_serve() {
    let mut no_kid = jwk("ec-p256.pem", Algorithm::ES256, "x");
    no_kid.as_object_mut().unwrap().remove("kid");
    let keys = vec![
        json!({"kty": "OKP", "crv": "X448", "kid": "x448", "x": "AAAA"}),
        json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}),
        json!({"kty": "unknown", "kid": "what"}),
        rsa_a(),
        jwk("rsa-b.pem", Algorithm::RS256, "dup"),
        jwk("rsa-a.pem", Algorithm::RS256, "dup"),
        no_kid,
    ];
    let issuer = Issuer::start(keys).await;
    let (gk, mut client) = start(&issuer, "").await;
    gk.wait_ready().await;
    let (_, body) = gk.readyz().await;
    assert_eq!(body["providers"][0]["kids"], json!(["a"]), "{body}");
    assert_eq!(
        body["providers"][0]["keys"], 2,
        "rsa-a and the kid-less P-256 key: {body}"
    );
    assert_eq!(code(&mut client, &token(&issuer, "rsa-a.pem", "a")).await, Ok(0));
    // A duplicated kid is ambiguous: neither copy is used.
    assert_eq!(
        reason(&mut client, &token(&issuer, "rsa-b.pem", "dup")).await,
        "unknown signing key"
    );
    // A token without kid is tried against the keys of its type.
    let t = sign(&pem("ec-p256.pem"), Algorithm::ES256, None, claims(&issuer.url()));
    assert_eq!(code(&mut client, &t).await, Ok(0));
}

#[tokio::test]
async fn cache_control_max_age_shortens_the_refresh() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    issuer.set_cache_control("public, max-age=1");
    let (gk, _client) = start(&issuer, "refresh_interval: 1h, min_refetch_interval: 500ms").await;
    gk.wait_ready().await;
    let hits = issuer.jwks_hits();
    eventually("a refresh driven by max-age=1", Duration::from_secs(4), async || {
        issuer.jwks_hits() >= hits + 2
    })
    .await;
}

#[tokio::test]
async fn a_jwks_file_is_reloaded_when_it_changes() {
    let a = json!({ "keys": [rsa_a()] }).to_string();
    let provider =
        "  - name: local\n    issuer: \"https://local.example/\"\n    jwks_file: keys.json\n    audiences: [api]\n";
    let gk = Gatekeeper::start(provider, &[("keys.json", a.as_bytes())]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let tok = |key: &str, kid: &str| sign(&pem(key), Algorithm::RS256, Some(kid), claims("https://local.example/"));
    assert_eq!(code(&mut client, &tok("rsa-a.pem", "a")).await, Ok(0));
    assert_eq!(code(&mut client, &tok("rsa-b.pem", "b")).await, Ok(16));

    let b = json!({ "keys": [rsa_b()] }).to_string();
    let tmp = gk.dir().join("keys.json.tmp");
    std::fs::write(&tmp, b).unwrap();
    std::fs::rename(&tmp, gk.dir().join("keys.json")).unwrap();
    eventually("the new file to be loaded", Duration::from_secs(5), async || {
        code(&mut client, &tok("rsa-b.pem", "b")).await == Ok(0)
    })
    .await;
    assert_eq!(reason(&mut client, &tok("rsa-a.pem", "a")).await, "unknown signing key");
}

#[tokio::test]
async fn discovery_providers_rotate_too() {
    let issuer = Issuer::start(vec![rsa_a()]).await;
    let provider = format!(
        "  - name: oidc\n    issuer: \"{}\"\n    discovery: true\n    audiences: [api]\n    keys: {{ min_refetch_interval: 30s }}\n",
        issuer.url()
    );
    let gk = Gatekeeper::start(&provider, &[]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    assert_eq!(code(&mut client, &token(&issuer, "rsa-a.pem", "a")).await, Ok(0));
    issuer.set_keys(vec![rsa_b()]);
    assert_eq!(code(&mut client, &token(&issuer, "rsa-b.pem", "b")).await, Ok(0));
    assert!(issuer.discovery_hits() >= 1);
}
