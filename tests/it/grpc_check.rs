//! Envoy ext_authz over gRPC through the real front door: a tonic client generated from Envoy's
//! protos (via envoy-types) against jwtgate on loopback, keys served by a real JWKS server.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const ALL_ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

async fn setup() -> (Issuer, Gatekeeper) {
    let keys = vec![
        jwk("rsa-a.pem", Algorithm::RS256, "rsa"),
        jwk("ec-p256.pem", Algorithm::ES256, "p256"),
        jwk("ec-p384.pem", Algorithm::ES384, "p384"),
        jwk("ed25519.pem", Algorithm::EdDSA, "ed"),
    ];
    // Drop the RSA key's own `alg` so one RSA key serves RS* and PS*.
    let mut keys = keys;
    keys[0].as_object_mut().unwrap().remove("alg");
    let issuer = Issuer::start(keys).await;
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), ""), &[]).await;
    gk.wait_ready().await;
    (issuer, gk)
}

fn kid_for(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "p256",
        Algorithm::ES384 => "p384",
        Algorithm::EdDSA => "ed",
        _ => "rsa",
    }
}

#[tokio::test]
async fn every_asymmetric_algorithm_is_allowed_with_keys_from_a_jwks_server() {
    let (issuer, gk) = setup().await;
    let mut client = gk.client().await;
    for alg in ALL_ASYMMETRIC {
        let t = sign(&pem(key_for(alg)), alg, Some(kid_for(alg)), claims(&issuer.url()));
        let a = check(&mut client, bearer(&t)).await.unwrap();
        assert_eq!(a.grpc_code, 0, "{alg:?}: {a:?}");
        assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("alice"), "{alg:?}");
        let md = a.metadata.unwrap();
        assert_eq!(md["jwtgate"]["provider"], "corp");
        assert_eq!(md["jwtgate"]["sub"], "alice");
        assert_eq!(md["jwtgate"]["iss"], issuer.url());
    }
}

#[tokio::test]
async fn hmac_provider_accepts_each_hs_algorithm() {
    let secret = "s".repeat(64);
    let gk = Gatekeeper::start(
        "  - name: legacy\n    issuer: monolith\n    hmac_secret: { file: secret.txt }\n",
        &[("secret.txt", secret.as_bytes())],
    )
    .await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = sign(
            secret.as_bytes(),
            alg,
            Some("any-kid"),
            json!({"iss":"monolith","sub":"bob"}),
        );
        assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0, "{alg:?}");
        let wrong = sign(&"t".repeat(64).into_bytes(), alg, None, json!({"iss":"monolith"}));
        let a = check(&mut client, bearer(&wrong)).await.unwrap();
        assert_eq!((a.grpc_code, a.http_status), (16, Some(401)), "{alg:?}");
        assert_eq!(a.reason(), "invalid signature");
    }
}

#[tokio::test]
async fn oidc_discovery_finds_the_jwks() {
    let issuer = Issuer::start(vec![jwk("ec-p256.pem", Algorithm::ES256, "p256")]).await;
    let provider = format!(
        "  - name: oidc\n    issuer: \"{}\"\n    discovery: true\n    audiences: [api]\n",
        issuer.url()
    );
    let gk = Gatekeeper::start(&provider, &[]).await;
    gk.wait_ready().await;
    assert!(issuer.discovery_hits() >= 1);
    let mut client = gk.client().await;
    let t = sign(
        &pem("ec-p256.pem"),
        Algorithm::ES256,
        Some("p256"),
        claims(&issuer.url()),
    );
    assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0);
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let issuer = Issuer::start(vec![jwk("ec-p256.pem", Algorithm::ES256, "p256")]).await;
    issuer.state.lock().unwrap().discovery_issuer = Some("https://evil.example/".into());
    let provider = format!(
        "  - name: oidc\n    issuer: \"{}\"\n    discovery: true\n",
        issuer.url()
    );
    let gk = Gatekeeper::start(&provider, &[]).await;
    let mut client = gk.client().await;
    let t = sign(
        &pem("ec-p256.pem"),
        Algorithm::ES256,
        Some("p256"),
        claims(&issuer.url()),
    );
    assert_eq!(
        check(&mut client, bearer(&t)).await.unwrap_err(),
        tonic::Code::Unavailable
    );
    let (status, body) = gk.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["providers"][0]["state"], "missing");
    assert!(
        body["providers"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("different issuer")
    );
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn denial_carries_status_challenge_body_and_trace_id() {
    let (_issuer, gk) = setup().await;
    let mut client = gk.client().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let a = check(&mut client, check_request("/api", &[("traceparent", traceparent)]))
        .await
        .unwrap();
    assert_eq!((a.grpc_code, a.http_status), (16, Some(401)));
    assert_eq!(a.headers["www-authenticate"], "Bearer realm=\"jwtgate\"");
    assert_eq!(
        a.headers["x-jwtgate-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's W3C trace id is the trace id"
    );
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(
        a.body.unwrap(),
        json!({"error":"missing_token","reason":"missing token","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"})
    );
    // Without a traceparent (Envoy's request id is no trace id), a new W3C trace id.
    let a = check(&mut client, check_request("/api", &[])).await.unwrap();
    let id = a.headers["x-jwtgate-trace-id"].clone();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "req-1",
        "{id}"
    );
    assert_eq!(a.body.unwrap()["trace_id"], id.as_str());

    let a = check(&mut client, bearer("not.a.token")).await.unwrap();
    assert_eq!(a.http_status, Some(401));
    assert!(a.headers["www-authenticate"].contains("error=\"invalid_token\""));
    assert!(a.reason().starts_with("malformed token"));
}

#[tokio::test]
async fn client_sent_identity_headers_are_overwritten_or_removed() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    let extra = "    claims_to_headers: { sub: x-jwt-sub, email: x-jwt-email }\n    payload_header: x-jwt-payload\n";
    let provider = format!(
        "  - name: corp\n    issuer: \"{}\"\n    jwks_uri: \"{}\"\n{extra}",
        issuer.url(),
        issuer.jwks_uri()
    );
    let gk = Gatekeeper::start(&provider, &[]).await;
    let mut client = gk.client().await;
    let t = sign(
        &pem("rsa-a.pem"),
        Algorithm::RS256,
        Some("rsa"),
        json!({"iss": issuer.url(), "sub": "alice"}),
    );
    let req = check_request(
        "/api",
        &[
            ("authorization", &format!("Bearer {t}")),
            ("x-jwt-sub", "admin"),
            ("x-jwt-email", "admin@example.com"),
        ],
    );
    let a = check(&mut client, req).await.unwrap();
    assert_eq!(a.grpc_code, 0);
    assert_eq!(
        a.headers["x-jwt-sub"], "alice",
        "set with append=false, so Envoy overwrites"
    );
    assert_eq!(
        a.removed,
        vec!["x-jwt-email".to_string()],
        "no email claim: the client's copy is removed"
    );
    let payload = t.split('.').nth(1).unwrap();
    assert_eq!(a.headers["x-jwt-payload"], payload);
    // Whether or not the check showed a copy, an identity header without a value is removed:
    // every allow answers every identity header.
    let a = check(&mut client, bearer(&t)).await.unwrap();
    assert_eq!(
        (a.grpc_code, a.removed.clone()),
        (0, vec!["x-jwt-email".to_string()]),
        "{a:?}"
    );
}

#[tokio::test]
async fn a_host_that_is_not_one_is_refused_with_400_not_matched_loosely() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    let yaml = format!(
        "{}routes:\n  - {{ name: admin, match: {{ host: admin.example.com }}, require: {{ roles: [admin] }} }}\n  - {{ name: rest, match: {{ path_prefix: / }}, auth: public }}\n",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    );
    let gk = Gatekeeper::start(&yaml, &[]).await;
    let mut client = gk.client().await;
    let asked = |host: &str| {
        let mut req = check_request("/x", &[]);
        http_mut(&mut req).host = host.into();
        req
    };
    for host in [
        "admin.example.com:x",
        "admin.example.com:80:80",
        "admin%2eexample.com",
        "a..example.com",
    ] {
        let a = check(&mut client, asked(host)).await.unwrap();
        assert_eq!(
            (a.grpc_code, a.http_status),
            (3, Some(400)),
            "{host}: INVALID_ARGUMENT, 400: {a:?}"
        );
        assert!(a.reason().starts_with("invalid host"), "{host}: {a:?}");
        assert!(!a.headers.contains_key("www-authenticate"), "{a:?}");
    }
    let a = check(&mut client, asked("Admin.Example.com.:443")).await.unwrap();
    assert_eq!(a.http_status, Some(401), "the admin route: {a:?}");
    let a = check(&mut client, asked("www.example.com")).await.unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
}

#[tokio::test]
async fn forward_token_false_strips_the_token_header() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    let provider = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "    forward_token: false\n");
    let gk = Gatekeeper::start(&provider, &[]).await;
    let mut client = gk.client().await;
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()));
    let a = check(&mut client, bearer(&t)).await.unwrap();
    assert_eq!(a.grpc_code, 0);
    assert!(a.removed.contains(&"authorization".to_string()));
}

#[tokio::test]
async fn forward_token_false_also_cuts_the_token_out_of_the_cookie_or_the_query() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    let extra = "    forward_token: false\n    sources: [{ cookie: at }, { query: access_token }]\n";
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), extra), &[]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()));

    // Other cookies reach the upstream; the token's does not.
    let cookies = format!("theme=dark; at={t}; lang=en");
    let a = check(&mut client, check_request("/api", &[("cookie", &cookies)]))
        .await
        .unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert_eq!(a.headers["cookie"], "theme=dark; lang=en");
    assert!(a.removed_query.is_empty());
    // The token was the only cookie: the header goes.
    let a = check(&mut client, check_request("/api", &[("cookie", &format!("at={t}"))]))
        .await
        .unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert!(a.removed.contains(&"cookie".to_string()), "{a:?}");
    assert!(!a.headers.contains_key("cookie"));
    // From the query: Envoy removes the parameter.
    let a = check(&mut client, check_request(&format!("/api?x=1&access_token={t}"), &[]))
        .await
        .unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert_eq!(a.removed_query, ["access_token"]);
    assert!(!a.headers.contains_key("cookie") && !a.removed.contains(&"cookie".to_string()));
}

#[tokio::test]
async fn cookie_and_query_sources_work_only_where_enabled() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    let other = Issuer::start(vec![jwk("rsa-b.pem", Algorithm::RS256, "b")]).await;
    let sources = "    sources: [{ header: x-token, prefix: \"\" }, { cookie: at }, { query: access_token }]\n";
    let providers = format!(
        "{}{}",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), sources),
        jwks_provider("other", &other.url(), &other.jwks_uri(), "")
    );
    let gk = Gatekeeper::start(&providers, &[]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()));
    let cases = [
        check_request("/x", &[("x-token", &t)]),
        check_request("/x", &[("cookie", &format!("theme=dark; at={t}"))]),
        check_request(&format!("/x?a=1&access_token={t}"), &[]),
    ];
    for req in cases {
        assert_eq!(check(&mut client, req).await.unwrap().grpc_code, 0);
    }
    // `other` enables only the Authorization header: its token in a query parameter is refused.
    let t2 = sign(&pem("rsa-b.pem"), Algorithm::RS256, Some("b"), claims(&other.url()));
    let a = check(&mut client, check_request(&format!("/x?access_token={t2}"), &[]))
        .await
        .unwrap();
    assert_eq!(a.http_status, Some(401));
    assert_eq!(a.reason(), "token source not enabled for this issuer");
    assert_eq!(check(&mut client, bearer(&t2)).await.unwrap().grpc_code, 0);
}

#[tokio::test]
async fn header_map_is_accepted_instead_of_headers() {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let (issuer, gk) = setup().await;
    let mut client = gk.client().await;
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()));
    let mut req = check_request("/api", &[]);
    let http = http_mut(&mut req);
    http.header_map = Some(HeaderMap {
        headers: vec![HeaderValue {
            key: "Authorization".into(),
            value: String::new(),
            raw_value: format!("Bearer {t}").into_bytes(),
        }],
    });
    assert_eq!(check(&mut client, req).await.unwrap().grpc_code, 0);
}

#[tokio::test]
async fn cookie_crumbs_in_a_header_map_rejoin_as_one_cookie_list() {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    let extra = "    sources: [{ cookie: at }]\n";
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), extra), &[]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()));
    let mut req = check_request("/api", &[]);
    let http = http_mut(&mut req);
    let crumb = |v: String| HeaderValue {
        key: "cookie".into(),
        value: v,
        raw_value: Vec::new(),
    };
    http.header_map = Some(HeaderMap {
        headers: vec![crumb("theme=dark".into()), crumb(format!("at={t}"))],
    });
    assert_eq!(check(&mut client, req).await.unwrap().grpc_code, 0);
}

#[tokio::test]
async fn grpc_health_is_serving_only_with_usable_keys() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    issuer.set_mode(Mode::Status(500));
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), ""), &[]).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", gk.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = |s: i32| ServingStatus::try_from(s).unwrap();
    let ask = || HealthCheckRequest {
        service: "envoy.service.auth.v3.Authorization".into(),
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = health.check(ask()).await.unwrap().into_inner();
    assert_eq!(status(r.status), ServingStatus::NotServing);
    let (code, body) = gk.readyz().await;
    assert_eq!(code, 503);
    assert_eq!(body["ready"], false);
    assert!(body["providers"][0]["last_error"].as_str().unwrap().contains("500"));

    issuer.set_mode(Mode::Normal);
    gk.wait_ready().await; // the startup backoff retries within seconds
    let mut serving = false;
    for _ in 0..20 {
        let r = health.check(ask()).await.unwrap().into_inner();
        if status(r.status) == ServingStatus::Serving {
            serving = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(serving, "health turns SERVING once keys are loaded");
    let (code, body) = gk.readyz().await;
    assert_eq!(code, 200);
    assert_eq!(body["providers"][0]["state"], "fresh");
    assert_eq!(body["providers"][0]["kids"], json!(["rsa"]));
}

#[tokio::test]
async fn healthz_answers_while_keys_are_missing() {
    let issuer = Issuer::start(vec![]).await;
    issuer.set_mode(Mode::Status(503));
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), ""), &[]).await;
    let r = reqwest::get(format!("http://{}/healthz", gk.http_addr)).await.unwrap();
    assert_eq!(r.status(), 200);
}
