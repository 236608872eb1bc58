//! DPoP (RFC 9449) at the gate, through the real gRPC door: tokens and proofs made by panva's
//! `jose` (tests/idp/dpop.mjs), each broken proof member refused with its reason, the DPoP
//! challenge, `mode: optional`, the verified-token cache never skipping a proof, the replay
//! cache local and shared through a real Redis by two replicas, metrics, and `jwtgate check`.
#![allow(missing_docs, clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::process::Command;

use common::jose::Jose;
use common::redis_server::RedisServer;
use common::{Answer, Gatekeeper, check, now, scrape};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use serde_json::{Value, json};

const STRICT: &str = "https://strict.test";
const LENIENT: &str = "https://lenient.test";
const URL: &str = "https://api.example.com/orders";

fn providers(extra_dpop: &str) -> String {
    format!(
        "  - name: strict
    issuer: \"{STRICT}\"
    jwks_file: jwks.json
    audiences: [api]
    clock_skew: 5s
    claims_to_headers: {{ sub: x-jwt-sub }}
    dpop: {{ mode: required, proof_max_age: 60s{extra_dpop} }}
  - name: lenient
    issuer: \"{LENIENT}\"
    jwks_file: jwks.json
    audiences: [api]
    clock_skew: 5s
    dpop: {{ mode: optional, algorithms: [ES256] }}
"
    )
}

async fn start(jose: &Jose, extra_dpop: &str, extra_yaml: &str) -> Gatekeeper {
    let yaml = format!("{}{extra_yaml}", providers(extra_dpop));
    let gk = Gatekeeper::start(&yaml, &[("jwks.json", &jose.jwks())]).await;
    gk.wait_ready().await;
    gk
}

fn claims(iss: &str) -> Value {
    json!({ "iss": iss, "sub": "alice", "aud": "api" })
}

/// An Envoy CheckRequest for `method https://api.example.com{path}` with `headers`.
fn request(method: &str, scheme: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                time: None,
                http: Some(HttpRequest {
                    method: method.into(),
                    scheme: scheme.into(),
                    host: host.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<HashMap<_, _>>(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// `GET https://api.example.com/orders` with the token in the DPoP scheme and `proof`.
fn with_proof(token: &str, proof: &str) -> CheckRequest {
    let auth = format!("DPoP {token}");
    request(
        "GET",
        "https",
        "api.example.com",
        "/orders",
        &[("authorization", &auth), ("dpop", proof)],
    )
}

fn proof_for(jose: &Jose, token: &str, alg: &str, extra: Value) -> String {
    let mut input = json!({ "client": "a", "alg": alg, "htm": "GET", "htu": URL, "token": token });
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    jose.proof(input)
}

async fn decide(gk: &Gatekeeper, req: CheckRequest) -> Answer {
    check(&mut gk.client().await, req).await.unwrap()
}

fn assert_refused(a: &Answer, reason: &str, what: &str) {
    assert_eq!(a.http_status, Some(401), "{what}: {a:?}");
    assert_eq!(a.reason(), reason, "{what}");
}

#[tokio::test]
async fn valid_proofs_of_every_algorithm_are_allowed_with_the_identity() {
    let jose = Jose::new();
    let gk = start(&jose, "", "").await;
    for alg in ["ES256", "EdDSA", "RS256", "PS256"] {
        let token = jose.bound_token(claims(STRICT), "a", alg);
        let a = decide(&gk, with_proof(&token, &proof_for(&jose, &token, alg, json!({})))).await;
        assert_eq!(a.grpc_code, 0, "{alg}: {a:?}");
        assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("alice"), "{alg}");
    }
}

#[tokio::test]
async fn rfc_9449s_example_key_has_the_thumbprint_the_rfc_gives() {
    let jose = Jose::new();
    // RFC 9449 §4.1's example proof's `jwk`, and the `jkt` §6.1 binds it with.
    let jwk = json!({
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256"
    });
    let rfc = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    assert_eq!(jose.thumbprint(jwk.clone()), rfc, "jose agrees with the RFC");
    assert_eq!(
        jwtgate_core::dpop::thumbprint(jwk.as_object().unwrap()).as_deref(),
        Some(rfc),
        "jwtgate agrees with the RFC"
    );
}

#[tokio::test]
async fn every_broken_proof_member_is_refused_with_its_reason_and_a_dpop_challenge() {
    let jose = Jose::new();
    let gk = start(&jose, "", "").await;
    let token = jose.bound_token(claims(STRICT), "a", "ES256");
    let other = jose.bound_token(claims(STRICT), "b", "ES256");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong htm",
            proof_for(&jose, &token, "ES256", json!({"htm": "POST"})),
            "DPoP proof htm does not match the request method",
        ),
        (
            "htu with another host",
            proof_for(
                &jose,
                &token,
                "ES256",
                json!({"htu": "https://evil.example.com/orders"}),
            ),
            "DPoP proof htu does not match the request URI",
        ),
        (
            "htu with another path",
            proof_for(&jose, &token, "ES256", json!({"htu": "https://api.example.com/admin"})),
            "DPoP proof htu does not match the request URI",
        ),
        (
            "htu with another scheme",
            proof_for(&jose, &token, "ES256", json!({"htu": "http://api.example.com/orders"})),
            "DPoP proof htu does not match the request URI",
        ),
        (
            "iat too old",
            proof_for(&jose, &token, "ES256", json!({"iat": now() - 120})),
            "DPoP proof too old",
        ),
        (
            "iat in the future",
            proof_for(&jose, &token, "ES256", json!({"iat": now() + 60})),
            "DPoP proof issued in the future",
        ),
        (
            "wrong ath",
            proof_for(
                &jose,
                &token,
                "ES256",
                json!({"ath": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}),
            ),
            "DPoP proof ath does not match the access token",
        ),
        (
            "no ath",
            proof_for(&jose, "", "ES256", json!({"token": null})),
            "DPoP proof ath does not match the access token",
        ),
        (
            "jwk with its private part",
            proof_for(&jose, &token, "ES256", json!({"private": true})),
            "DPoP proof jwk contains a private key",
        ),
        (
            "alg none",
            proof_for(&jose, &token, "none", json!({})),
            "DPoP proof algorithm not allowed",
        ),
        (
            "HS256",
            proof_for(&jose, &token, "HS256", json!({})),
            "DPoP proof algorithm not allowed",
        ),
        (
            "signed by another key than its jwk",
            proof_for(&jose, &token, "ES256", json!({"signer": "b"})),
            "DPoP proof signature invalid",
        ),
        (
            "typ not dpop+jwt",
            proof_for(&jose, &token, "ES256", json!({"typ": "JWT"})),
            "DPoP proof typ is not dpop+jwt",
        ),
        (
            "cnf.jkt of another key",
            proof_for(&jose, &other, "ES256", json!({})),
            "DPoP proof key does not match the token's cnf.jkt",
        ),
        ("not a JWS", "not-a-proof".to_owned(), "DPoP proof malformed"),
    ];
    for (what, proof, reason) in &cases {
        // The cnf.jkt case sends the token bound to b with a's proof (of b's token's hash).
        let sent = if *what == "cnf.jkt of another key" {
            &other
        } else {
            &token
        };
        let a = decide(&gk, with_proof(sent, proof)).await;
        assert_refused(&a, reason, what);
        let challenge = a.headers.get("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("DPoP realm=") && challenge.contains("error=\"invalid_dpop_proof\""),
            "{what}: {challenge}"
        );
        assert!(
            challenge.contains("algs=\"ES256 ES384 EdDSA RS256 PS256\""),
            "{what}: {challenge}"
        );
    }
    // Two DPoP headers: Envoy joins repeated headers with a comma.
    let (p1, p2) = (
        proof_for(&jose, &token, "ES256", json!({})),
        proof_for(&jose, &token, "ES256", json!({})),
    );
    let a = decide(&gk, with_proof(&token, &format!("{p1},{p2}"))).await;
    assert_refused(&a, "more than one DPoP proof", "two DPoP headers");
    let auth = format!("DPoP {token}");
    let a = decide(
        &gk,
        request(
            "GET",
            "https",
            "api.example.com",
            "/orders",
            &[("authorization", &auth)],
        ),
    )
    .await;
    assert_refused(&a, "DPoP proof missing", "no DPoP header");
    // None of the refused proofs spent its jti: the first valid one is accepted.
    let a = decide(&gk, with_proof(&token, &p1)).await;
    assert_eq!(a.grpc_code, 0, "{a:?}");
}

#[tokio::test]
async fn the_query_is_ignored_and_the_uri_is_compared_normalised() {
    let jose = Jose::new();
    let gk = start(&jose, "", "").await;
    let token = jose.bound_token(claims(STRICT), "a", "ES256");
    let auth = format!("DPoP {token}");
    for (htu, host, path) in [
        (URL, "api.example.com", "/orders?page=2&sort=asc"),
        (
            "https://api.example.com/orders?page=1#top",
            "api.example.com",
            "/orders?page=2",
        ),
        ("HTTPS://API.example.com:443/./orders", "api.example.com", "/orders"),
        ("https://api.example.com/%6Frders", "api.example.com:443", "/orders"),
    ] {
        let proof = proof_for(&jose, &token, "ES256", json!({ "htu": htu }));
        let a = decide(
            &gk,
            request(
                "GET",
                "https",
                host,
                path,
                &[("authorization", &auth), ("dpop", &proof)],
            ),
        )
        .await;
        assert_eq!(a.grpc_code, 0, "htu {htu} for {host}{path}: {a:?}");
    }
}

#[tokio::test]
async fn a_reused_proof_is_refused_and_bound_tokens_need_their_proof_even_when_cached() {
    let jose = Jose::new();
    let gk = start(&jose, "", "").await;
    let token = jose.bound_token(claims(STRICT), "a", "ES256");
    let proof = proof_for(&jose, &token, "ES256", json!({}));
    assert_eq!(decide(&gk, with_proof(&token, &proof)).await.grpc_code, 0);
    let a = decide(&gk, with_proof(&token, &proof)).await;
    assert_refused(&a, "DPoP proof replayed", "the same proof again");
    let before = scrape(gk.http_addr).await;
    // The token's verification is cached now; its proof is still checked every time.
    let fresh = proof_for(&jose, &token, "ES256", json!({}));
    assert_eq!(decide(&gk, with_proof(&token, &fresh)).await.grpc_code, 0);
    let a = decide(
        &gk,
        with_proof(&token, &proof_for(&jose, &token, "ES256", json!({"htm": "DELETE"}))),
    )
    .await;
    assert_refused(
        &a,
        "DPoP proof htm does not match the request method",
        "cached token, bad proof",
    );
    let bearer = format!("Bearer {token}");
    let a = decide(
        &gk,
        request(
            "GET",
            "https",
            "api.example.com",
            "/orders",
            &[("authorization", &bearer)],
        ),
    )
    .await;
    assert_refused(
        &a,
        "DPoP-bound token sent as Bearer; send it with the DPoP scheme and a proof",
        "bound token as Bearer",
    );
    assert!(a.headers["www-authenticate"].starts_with("DPoP "), "{a:?}");
    let after = scrape(gk.http_addr).await;
    let hits = |m: &std::collections::BTreeMap<String, f64>| {
        m.get("jwtgate_token_cache_lookups_total{outcome=\"hit\"}")
            .copied()
            .unwrap_or(0.0)
    };
    assert!(
        hits(&after) - hits(&before) >= 3.0,
        "the token came from the cache: {after:?}"
    );
    let proofs = |outcome: &str| {
        after
            .get(&format!(
                "jwtgate_dpop_proofs_total{{provider=\"strict\",outcome=\"{outcome}\"}}"
            ))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!((proofs("valid"), proofs("replayed"), proofs("htm")), (2.0, 1.0, 1.0));
}

#[tokio::test]
async fn required_mode_refuses_plain_bearer_tokens_and_optional_mode_accepts_them() {
    let jose = Jose::new();
    let gk = start(&jose, "", "").await;
    let bearer = |t: &str| {
        request(
            "GET",
            "https",
            "api.example.com",
            "/orders",
            &[("authorization", &format!("Bearer {t}"))],
        )
    };
    let a = decide(&gk, bearer(&jose.token(claims(STRICT)))).await;
    assert_refused(
        &a,
        "DPoP required: send a DPoP-bound token with the DPoP scheme and a proof",
        "unbound bearer, required",
    );
    assert!(a.headers["www-authenticate"].contains("algs=\"ES256 ES384 EdDSA RS256 PS256\""));
    assert_eq!(
        decide(&gk, bearer(&jose.token(claims(LENIENT)))).await.grpc_code,
        0,
        "optional accepts bearer"
    );
    // Optional still refuses a bound token without its proof, and checks a proof that comes.
    let bound = jose.bound_token(claims(LENIENT), "a", "ES256");
    let a = decide(&gk, bearer(&bound)).await;
    assert_eq!(a.http_status, Some(401));
    assert!(a.headers["www-authenticate"].contains("algs=\"ES256\""), "{a:?}");
    assert_eq!(
        decide(&gk, with_proof(&bound, &proof_for(&jose, &bound, "ES256", json!({}))))
            .await
            .grpc_code,
        0
    );
    let a = decide(&gk, with_proof(&bound, &proof_for(&jose, &bound, "EdDSA", json!({})))).await;
    assert_refused(
        &a,
        "DPoP proof algorithm not allowed",
        "EdDSA not in this provider's algorithms",
    );
    // An unbound token in the DPoP scheme proves nothing about a key.
    let unbound = jose.token(claims(LENIENT));
    let a = decide(
        &gk,
        with_proof(&unbound, &proof_for(&jose, &unbound, "ES256", json!({}))),
    )
    .await;
    assert_refused(&a, "token is not DPoP-bound (no cnf.jkt)", "unbound in the DPoP scheme");
}

/// A provider with `dpop` but not `mtls_binding` cannot check a certificate binding: a token
/// bound only by `cnf["x5t#S256"]` is refused in either scheme, never taken as bearer (RFC 8705
/// §3).
#[tokio::test]
async fn a_dpop_provider_refuses_a_token_bound_only_to_a_certificate() {
    let jose = Jose::new();
    let gk = start(&jose, "", "").await;
    let mut c = claims(LENIENT);
    c["cnf"] = json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" });
    let cert_bound = jose.token(c);
    let a = decide(
        &gk,
        request(
            "GET",
            "https",
            "api.example.com",
            "/orders",
            &[("authorization", &format!("Bearer {cert_bound}"))],
        ),
    )
    .await;
    assert_refused(&a, "token is sender-constrained (cnf x5t#S256)", "x5t only, as Bearer");
    let m = scrape(gk.http_addr).await;
    assert!(
        m.keys()
            .any(|k| k.starts_with("jwtgate_decisions_total") && k.contains("reason=\"sender_constrained\"")),
        "{m:?}"
    );
}

#[tokio::test]
async fn a_proof_used_at_one_replica_is_refused_at_another_through_redis() {
    let redis = RedisServer::start().await;
    let jose = Jose::new();
    let shared = format!("redis:\n  url: \"{}\"\n", redis.url());
    let a = start(&jose, ", replay: redis", &shared).await;
    let b = start(&jose, ", replay: redis", &shared).await;
    let token = jose.bound_token(claims(STRICT), "a", "ES256");
    let proof = proof_for(&jose, &token, "ES256", json!({}));
    common::eventually(
        "both replicas reach redis",
        std::time::Duration::from_secs(5),
        async || {
            let p = proof_for(&jose, &token, "ES256", json!({}));
            decide(&a, with_proof(&token, &p)).await.grpc_code == 0
        },
    )
    .await;
    assert_eq!(
        decide(&a, with_proof(&token, &proof)).await.grpc_code,
        0,
        "first use at replica a"
    );
    let again = decide(&b, with_proof(&token, &proof)).await;
    assert_refused(&again, "DPoP proof replayed", "the same proof at replica b");
    assert_refused(
        &decide(&a, with_proof(&token, &proof)).await,
        "DPoP proof replayed",
        "again at a",
    );
    // With local replay caches, each replica knows only its own proofs.
    let (c, d) = (start(&jose, "", "").await, start(&jose, "", "").await);
    let proof = proof_for(&jose, &token, "ES256", json!({}));
    assert_eq!(decide(&c, with_proof(&token, &proof)).await.grpc_code, 0);
    assert_eq!(
        decide(&d, with_proof(&token, &proof)).await.grpc_code,
        0,
        "local caches are not shared"
    );
}

#[tokio::test]
async fn an_unreachable_shared_replay_cache_refuses_with_503_never_allows() {
    let mut redis = RedisServer::start().await;
    let jose = Jose::new();
    let gk = start(
        &jose,
        ", replay: redis",
        &format!("redis:\n  url: \"{}\"\n", redis.url()),
    )
    .await;
    let token = jose.bound_token(claims(STRICT), "a", "ES256");
    redis.stop();
    let r = check(
        &mut gk.client().await,
        with_proof(&token, &proof_for(&jose, &token, "ES256", json!({}))),
    )
    .await;
    match r {
        Ok(a) => assert_eq!(a.http_status, Some(503), "{a:?}"),
        Err(code) => assert_eq!(code, tonic::Code::Unavailable),
    }
}

#[tokio::test]
async fn jwtgate_check_explains_a_proof_with_dpop_method_and_url() {
    let jose = Jose::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jose.jwks()).unwrap();
    let config = dir.path().join("jwtgate.yaml");
    std::fs::write(&config, common::config_text(&providers(""))).unwrap();
    let token = jose.bound_token(claims(STRICT), "a", "ES256");
    let run = |proof: &str, method: &str, url: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["check", "--config"])
            .arg(&config)
            .args(["--token", &token, "--dpop", proof, "--method", method, "--url", url])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let proof = jose.proof(json!({ "client": "a", "alg": "ES256", "htm": "POST", "htu": URL, "token": token }));
    let (code, out) = run(&proof, "POST", "https://api.example.com/orders?x=1");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("pass  DPoP proof valid for this request and token"),
        "{out}"
    );
    let (code, out) = run(&proof, "POST", "https://api.example.com/other");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "FAIL  DPoP proof valid for this request and token: DPoP proof htu does not match the request URI"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn the_http_door_takes_the_scheme_and_the_xfcc_hash_from_trusted_proxies_only() {
    let jose = Jose::new();
    let yaml = format!(
        "{}  - name: mesh
    issuer: \"https://mesh.test\"
    jwks_file: jwks.json
    audiences: [api]
    mtls_binding: {{ mode: required }}
",
        providers("")
    );
    let trusting = Gatekeeper::start(
        &format!("{yaml}http_auth: {{ original_request: forwarded, client_cert_header: x-forwarded-client-cert }}\n"),
        &[("jwks.json", &jose.jwks())],
    )
    .await;
    let distrusting = Gatekeeper::start(
        &format!(
            "{yaml}http_auth: {{ trusted_proxies: [\"10.9.9.9/32\"], envoy_prefix: /ext_authz, client_cert_header: x-forwarded-client-cert }}\n"
        ),
        &[("jwks.json", &jose.jwks())],
    )
    .await;
    trusting.wait_ready().await;
    distrusting.wait_ready().await;
    let ca = common::certs::Ca::new("xfcc CA");
    let dir = tempfile::tempdir().unwrap();
    ca.client("svc").write(dir.path(), "svc");
    let x5t = jose.x5t(&dir.path().join("svc.pem"));
    let hash = common::jose::xfcc_hash(&x5t);
    let bound =
        jose.token(json!({ "iss": "https://mesh.test", "sub": "svc", "aud": "api", "cnf": { "x5t#S256": x5t } }));
    let http = reqwest::Client::new();
    let forward_auth = async |gk: &Gatekeeper, headers: &[(&str, String)]| {
        let mut r = http
            .get(format!("http://{}/auth", gk.http_addr))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/orders?x=1")
            .header("x-forwarded-host", "api.example.com");
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    };
    let xfcc = format!("By=spiffe://cluster/ns/api;Hash={hash};Subject=\"CN=svc\"");
    let (status, body) = forward_auth(
        &trusting,
        &[
            ("authorization", format!("Bearer {bound}")),
            ("x-forwarded-client-cert", xfcc.clone()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = forward_auth(&trusting, &[("authorization", format!("Bearer {bound}"))]).await;
    assert_eq!((status, body.contains("no client certificate")), (401, true), "{body}");
    // Bound to a DPoP key as well, which this provider (no `dpop`) cannot check: refused
    // (RFC 9449 §7.1), the right certificate notwithstanding.
    let both = jose.token(
        json!({ "iss": "https://mesh.test", "sub": "svc", "aud": "api", "cnf": { "x5t#S256": x5t, "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" } }),
    );
    let (status, body) = forward_auth(
        &trusting,
        &[
            ("authorization", format!("Bearer {both}")),
            ("x-forwarded-client-cert", xfcc.clone()),
        ],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token is sender-constrained (cnf.jkt)"), "{body}");
    // Envoy HTTP mode from a peer outside trusted_proxies: its XFCC is not believed.
    let resp = http
        .get(format!("http://{}/ext_authz/orders", distrusting.http_addr))
        .header("host", "api.example.com")
        .header("authorization", format!("Bearer {bound}"))
        .header("x-forwarded-client-cert", xfcc)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.unwrap().contains("no client certificate"));
    // DPoP's htu takes the trusted X-Forwarded-Proto: a proof for http:// passes only with it.
    let token = jose.bound_token(claims(STRICT), "a", "ES256");
    let proof = jose.proof(
        json!({ "client": "a", "alg": "ES256", "htm": "GET", "htu": "http://api.example.com/orders", "token": token }),
    );
    let dpop = |proto: Option<&str>| {
        let mut h = vec![("authorization", format!("DPoP {token}")), ("dpop", proof.clone())];
        if let Some(p) = proto {
            h.push(("x-forwarded-proto", p.to_owned()));
        }
        h
    };
    let (status, body) = forward_auth(&trusting, &dpop(None)).await;
    assert_eq!(
        (status, body.contains("htu does not match")),
        (401, true),
        "https assumed: {body}"
    );
    let (status, body) = forward_auth(&trusting, &dpop(Some("http"))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn jwtgate_check_explains_a_certificate_binding_with_client_cert() {
    let jose = Jose::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jose.jwks()).unwrap();
    let config = dir.path().join("jwtgate.yaml");
    let yaml = "  - name: mesh\n    issuer: \"https://mesh.test\"\n    jwks_file: jwks.json\n    audiences: [api]\n    mtls_binding: { mode: required }\nhttp_auth: { client_cert_header: none }\n";
    std::fs::write(&config, common::config_text(yaml)).unwrap();
    let ca = common::certs::Ca::new("check CA");
    ca.client("a").write(dir.path(), "a");
    ca.client("b").write(dir.path(), "b");
    let x5t = jose.x5t(&dir.path().join("a.pem"));
    let token =
        jose.token(json!({ "iss": "https://mesh.test", "sub": "svc", "aud": "api", "cnf": { "x5t#S256": x5t } }));
    let run = |cert: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["check", "--config"])
            .arg(&config)
            .args(["--token", &token, "--client-cert"])
            .arg(dir.path().join(cert))
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run("a.pem");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("pass  token bound to the client certificate (cnf x5t#S256)"),
        "{out}"
    );
    let (code, out) = run("b.pem");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  token bound to the client certificate (cnf x5t#S256): client certificate does not match"),
        "{out}"
    );
}

#[tokio::test]
async fn introspection_shows_the_binding_and_jwtgates_own_apis_refuse_bound_tokens_as_bearer() {
    use jwtgate_core::config::routes::Requirements;
    let jose = Jose::new();
    let gk = start(&jose, "", "").await;
    let gate = gk.live().gate().load_full();
    let bound = jose.bound_token(claims(LENIENT), "a", "ES256");
    let jkt = jose.call("thumbprint", &json!({ "client": "a", "alg": "ES256" }));
    let body: Value = serde_json::from_str(&gate.introspect(&bound).await.body().unwrap()).unwrap();
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "DPoP", "RFC 9449 §6.2: {body}");
    assert_eq!(body["cnf"], json!({ "jkt": jkt }), "{body}");
    let plain = jose.token(claims(LENIENT));
    let body: Value = serde_json::from_str(&gate.introspect(&plain).await.body().unwrap()).unwrap();
    assert_eq!(
        (body["token_type"].as_str(), body.get("cnf")),
        (Some("Bearer"), None),
        "{body}"
    );
    // The admin API's callers (Gate::authorize): a bound token has no proof there.
    let refused = gate.authorize(&bound, &Requirements::default()).await.unwrap_err();
    assert_eq!(
        refused.rejection.reason(),
        "DPoP-bound token sent as Bearer; send it with the DPoP scheme and a proof"
    );
    assert!(
        gate.authorize(&plain, &Requirements::default()).await.is_ok(),
        "optional: plain bearer is fine"
    );
    let strict = jose.token(claims(STRICT));
    let refused = gate.authorize(&strict, &Requirements::default()).await.unwrap_err();
    assert!(refused.rejection.reason().starts_with("DPoP required"), "{refused:?}");
}
