//! Opaque access tokens verified by introspection (RFC 7662) at a real OAuth 2.0 authorization
//! server: panva's `oidc-provider` (npm, `tests/idp/`), issuing opaque client-credentials tokens
//! and serving introspection and revocation on loopback. Checks go through the real gRPC door.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use crate::common::opaque_tokens::*;
use common::*;
use std::process::Command;
use std::time::Duration;

#[tokio::test]
async fn an_opaque_token_is_allowed_by_scope_and_refused_for_a_scope_it_lacks_from_the_cached_answer() {
    let idp = Idp::start();
    let (gk, mut client) = gatekeeper(&idp, "").await;
    let t = idp.token("read").await;
    let a = at(&mut client, "/api/x", &t).await.unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert_eq!(
        a.headers.get("x-client-id").map(String::as_str),
        Some("app"),
        "claims_to_headers reads the answer's members"
    );
    assert_eq!(idp.introspections().await, 1);

    // The cached answer is re-checked per route: no scope `admin`, whatever was allowed before.
    let a = at(&mut client, "/admin", &t).await.unwrap();
    assert_eq!((a.grpc_code, a.reason().as_str()), (7, "missing scope: admin"));
    assert_eq!(at(&mut client, "/api/y", &t).await.unwrap().grpc_code, 0);
    assert_eq!(
        idp.introspections().await,
        1,
        "one introspection for three checks (cache_ttl 60s)"
    );

    let admin = idp.token("read admin").await;
    assert_eq!(at(&mut client, "/admin", &admin).await.unwrap().grpc_code, 0);
    let m = scrape(gk.http_addr).await;
    assert_eq!(
        m.get(r#"jwtgate_introspections_total{direction="consumed",provider="legacy-oauth",outcome="active"}"#),
        Some(&2.0)
    );
    assert_eq!(
        m.get(r#"jwtgate_introspection_cache_lookups_total{provider="legacy-oauth",outcome="hit"}"#),
        Some(&2.0)
    );

    // Not a token the IdP issued: inactive, 401, remembered for negative_cache_ttl.
    let a = at(&mut client, "/api", "bm90LWEtdG9rZW4").await.unwrap();
    assert_eq!((a.grpc_code, a.reason().as_str()), (16, "token not active"));
    let (status, body) = gk.readyz().await;
    assert_eq!(status, 200, "an introspection-only provider is ready: {body}");
    assert_eq!(body["providers"][0]["state"], "introspection");
}

#[tokio::test]
async fn a_token_the_provider_revoked_is_refused_once_the_cached_answer_expires() {
    let idp = Idp::start();
    let (_gk, mut client) = gatekeeper(&idp, "      cache_ttl: 1s\n").await;
    let t = idp.token("read").await;
    assert_eq!(at(&mut client, "/api", &t).await.unwrap().grpc_code, 0);
    idp.revoke(&t).await;
    // Within cache_ttl the kept answer stands; after it, the IdP's word.
    eventually("the revoked token refused", Duration::from_secs(5), async || {
        at(&mut client, "/api", &t).await.unwrap().grpc_code == 16
    })
    .await;
    assert_eq!(at(&mut client, "/api", &t).await.unwrap().reason(), "token not active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_checks_of_a_new_token_cause_one_introspection() {
    let idp = Idp::start();
    let (_gk, client) = gatekeeper(&idp, "").await;
    let t = idp.token("read").await;
    idp.slow(300).await; // all 50 arrive while the first call is out
    let before = idp.introspections().await;
    let checks: Vec<_> = (0..50)
        .map(|_| {
            let (mut client, t) = (client.clone(), t.clone());
            tokio::spawn(async move { at(&mut client, "/api", &t).await.map(|a| a.grpc_code) })
        })
        .collect();
    for c in checks {
        assert_eq!(c.await.unwrap(), Ok(0));
    }
    assert_eq!(idp.introspections().await - before, 1, "single flight");
}

#[tokio::test]
async fn a_slow_or_down_provider_is_503_and_kept_actives_keep_working_until_their_ttl() {
    let mut idp = Idp::start();
    let (gk, mut client) = gatekeeper(&idp, "      timeout: 300ms\n").await;
    let kept = idp.token("read").await;
    assert_eq!(at(&mut client, "/api", &kept).await.unwrap().grpc_code, 0);

    idp.slow(1000).await;
    let fresh = idp.token("read").await;
    assert_eq!(
        at(&mut client, "/api", &fresh).await.map(|a| a.grpc_code),
        Err(tonic::Code::Unavailable),
        "slower than timeout: UNAVAILABLE, never a 401"
    );
    idp.stop();
    assert_eq!(
        at(&mut client, "/api", &fresh).await.map(|a| a.grpc_code),
        Err(tonic::Code::Unavailable),
        "down: UNAVAILABLE"
    );
    assert_eq!(
        at(&mut client, "/api", &kept).await.unwrap().grpc_code,
        0,
        "the kept answer still serves"
    );
    let m = scrape(gk.http_addr).await;
    assert!(
        m.get(r#"jwtgate_introspections_total{direction="consumed",provider="legacy-oauth",outcome="error"}"#)
            .is_some_and(|n| *n >= 2.0),
        "{m:?}"
    );
}

#[tokio::test]
async fn jwtgate_check_shows_an_introspected_tokens_fields() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.secret"), "jwtgate-secret\n").unwrap();
    std::fs::write(dir.path().join("jwtgate.yaml"), config_text(&config(&idp, ""))).unwrap();
    let token = idp.token("read").await;
    let explain = |path: &'static str| {
        let (dir, token) = (dir.path().to_owned(), token.clone());
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
                .args(["check", "--config"])
                .arg(dir.join("jwtgate.yaml"))
                .args(["--token", &token, "--path", path])
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8(out.stdout).unwrap())
        })
    };
    let (code, out) = explain("/api").await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("opaque token introspected at provider legacy-oauth: active, client_id=\"app\" scope=\"read\" aud=\"api\" exp="),
        "{out}"
    );
    let (code, out) = explain("/admin").await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("missing scope: admin"), "{out}");
}

#[tokio::test]
async fn with_discovery_one_provider_takes_both_kinds_and_finds_its_endpoint_there() {
    let idp = Idp::start();
    let provider = format!(
        "  - name: legacy-oauth\n    issuer: \"{url}\"\n    discovery: true\n    audiences: [api]\n    introspection:\n      client_id: jwtgate\n      client_secret_file: idp.secret\n",
        url = idp.url
    );
    let gk = Gatekeeper::start(&provider, &[("idp.secret", b"jwtgate-secret")]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let t = idp.token("read").await;
    assert_eq!(
        at(&mut client, "/api", &t).await.unwrap().grpc_code,
        0,
        "introspection_endpoint from discovery"
    );
    assert_eq!(idp.introspections().await, 1);
}

#[tokio::test]
async fn a_check_the_proxy_gives_up_on_leaves_its_call_running_for_the_next() {
    let idp = Idp::start();
    let (_gk, mut client) = gatekeeper(&idp, "      timeout: 2s\n").await;
    let t = idp.token("read").await;
    idp.slow(400).await;
    let before = idp.introspections().await;
    let mut impatient = tonic::Request::new(check_request("/api", &[("authorization", &format!("Bearer {t}"))]));
    impatient.set_timeout(Duration::from_millis(100));
    let gave_up = client.check(impatient).await.unwrap_err();
    assert!(
        matches!(gave_up.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
        "{gave_up:?}"
    );
    // The call it started is still out; this check joins it instead of starting another.
    assert_eq!(at(&mut client, "/api", &t).await.unwrap().grpc_code, 0);
    assert_eq!(idp.introspections().await - before, 1);
}

#[tokio::test]
async fn the_http_door_answers_opaque_tokens_as_the_grpc_door_does() {
    let idp = Idp::start();
    let text = format!("{}http_auth: {{ envoy_prefix: /ext_authz }}\n", config(&idp, ""));
    let gk = Gatekeeper::start(&text, &[("idp.secret", b"jwtgate-secret\n")]).await;
    gk.wait_ready().await;
    let t = idp.token("read").await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("http://{}/ext_authz{path}", gk.http_addr))
            .header("authorization", format!("Bearer {t}"))
            .send()
    };
    let allowed = get("/api").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-client-id"], "app");
    let refused = get("/admin").await.unwrap();
    assert_eq!(refused.status(), 403, "missing scope, from the kept answer");
    assert_eq!(idp.introspections().await, 1);
}
