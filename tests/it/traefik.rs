//! Traefik's ForwardAuth against jwtgate. Traefik is not packaged in this project's registries,
//! so this does not run it: it checks `examples/traefik/dynamic.yml` (the middleware points at
//! `/auth`, passes only the headers jwtgate reads, copies the identity header, does not trust
//! client-sent X-Forwarded-*), and sends jwtgate's HTTP door (`original_request: forwarded`)
//! exactly what Traefik's ForwardAuth sends (pkg/middlewares/auth/forward.go): X-Forwarded-Method,
//! -Proto, -Host, -Uri and -For, set by Traefik, beside the client's own headers — all of them
//! (no `authRequestHeaders`, with client-forged copies of every header in the Traefik row of
//! docs/proxy-boundary.md) or the example's list — and checks each decision.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use common::*;
use serde_json::{Value, json};

const ROUTES: &str = "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: admin, match: { path_prefix: /admin }, require: { roles: [admin] } }
  - { name: api, match: { path_prefix: /api, methods: [GET] } }
  - { name: login, match: { path: /login, methods: [POST] }, auth: public }
http_auth: { original_request: forwarded }
rate_limits:
  rules:
    - { name: login-per-ip, by: [client_ip], limit: 2, per: 1h, match: { routes: [login] } }
";

#[test]
fn the_traefik_example_points_forward_auth_at_the_http_door() {
    let text = std::fs::read_to_string(repo("examples/traefik/dynamic.yml")).unwrap();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    let fa = &config["http"]["middlewares"]["jwtgate"]["forwardAuth"];
    assert!(fa["address"].as_str().unwrap().ends_with("/auth"), "{fa}");
    assert_eq!(fa["trustForwardHeader"], false);
    // Every identity header, forged copies of the ones jwtgate does not name included.
    let copied = regex::Regex::new(fa["authResponseHeadersRegex"].as_str().unwrap()).unwrap();
    for h in ["X-Jwt-Sub", "X-Jwt-Email", "X-Jwt-Roles"] {
        assert!(copied.is_match(h), "{h}");
    }
    assert_eq!(config["http"]["routers"]["app"]["middlewares"], json!(["jwtgate"]));
    // Only what jwtgate reads of the client's request: never another family's original-request
    // headers, a certificate or an identity header.
    let passed: Vec<String> = fa["authRequestHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(passed.contains(&"authorization".to_owned()), "{passed:?}");
    for h in &passed {
        assert!(
            !h.starts_with("x-original-") && !h.starts_with("x-jwt-") && !h.starts_with("x-forwarded-"),
            "{h} passed"
        );
    }
}

/// What Traefik's ForwardAuth sends, without `authRequestHeaders`, for `method
/// https://app.example.com{uri}` from client 203.0.113.7 that sent `client` (all passed on): its
/// own X-Forwarded-* replace the client's copies (`trustForwardHeader: false`).
async fn forward_auth_all(gk: &Gatekeeper, method: &str, uri: &str, client: &[(&str, &str)]) -> reqwest::Response {
    let traefik = [
        ("x-forwarded-method", method),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.com"),
        ("x-forwarded-uri", uri),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    let mut req = reqwest::Client::new().get(format!("http://{}/auth", gk.http_addr));
    for (k, v) in client
        .iter()
        .filter(|(k, _)| !traefik.iter().any(|(t, _)| t.eq_ignore_ascii_case(k)))
    {
        req = req.header(*k, *v);
    }
    for (k, v) in traefik {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// A client-forged copy of every header in the Traefik row of docs/proxy-boundary.md.
const FORGED: [(&str, &str); 10] = [
    ("x-original-uri", "/public/x"),
    ("x-original-method", "GET"),
    ("x-original-host", "public.example"),
    ("x-original-url", "http://public.example/public/x"),
    ("x-forwarded-uri", "/public/y"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-real-ip", "6.6.6.6"),
    ("x-forwarded-tls-client-cert", "forged"),
    ("x-jwt-sub", "mallory"),
    ("x-jwt-email", "mallory@evil.example"),
];

/// What Traefik's ForwardAuth sends for `method https://host{uri}` from client 203.0.113.7, with
/// the example's `authRequestHeaders` (only `authorization` of the client's, here).
async fn forward_auth(gk: &Gatekeeper, method: &str, uri: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("http://{}/auth", gk.http_addr))
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-for", "203.0.113.7");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn what_traefik_sends_is_decided_on_the_original_request() {
    let issuer = rsa_issuer().await;
    let yaml = format!(
        "{}{ROUTES}",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    );
    let gk = Gatekeeper::start(&yaml, &[]).await;
    gk.wait_ready().await;
    let token = |extra: Value| format!("Bearer {}", rsa_token(&issuer.url(), extra));
    let user = token(json!({}));

    let r = forward_auth(&gk, "GET", "/api/items?page=2", Some(&user)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-jwt-sub"],
        "alice",
        "Traefik copies it over the client's copy"
    );

    let r = forward_auth(&gk, "GET", "/public/docs", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-jwt-sub"],
        "",
        "sent empty: Traefik replaces the forged copy"
    );

    let r = forward_auth(&gk, "GET", "/api/items", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"jwtgate\"");

    // The original method decides: POST is not in the api route's methods (no route: 403).
    let r = forward_auth(&gk, "POST", "/api/items", Some(&user)).await;
    assert_eq!(r.status(), 403);

    let r = forward_auth(&gk, "GET", "/public/../admin/users", Some(&user)).await;
    assert_eq!(r.status(), 403, "normalised to /admin: the admin role is missing");
    let admin = token(json!({"roles": ["admin"]}));
    assert_eq!(
        forward_auth(&gk, "GET", "/admin/users", Some(&admin)).await.status(),
        200
    );
}

#[tokio::test]
async fn forged_headers_beside_what_traefik_sets_never_choose_the_request_or_the_identity() {
    let issuer = rsa_issuer().await;
    let yaml = format!(
        "  - name: corp\n    issuer: \"{}\"\n    jwks_uri: \"{}\"\n    audiences: [api]\n    claims_to_headers: {{ sub: x-jwt-sub, email: x-jwt-email }}\n{ROUTES}",
        issuer.url(),
        issuer.jwks_uri()
    );
    let gk = Gatekeeper::start(&yaml, &[]).await;
    gk.wait_ready().await;
    let user = format!("Bearer {}", rsa_token(&issuer.url(), json!({})));

    // Another family's original-request headers beside Traefik's own: refused, never decided
    // (once, the client's X-Original-URI was checked instead of the /admin Traefik forwarded).
    let r = forward_auth_all(&gk, "GET", "/admin/secret", &FORGED).await;
    assert_eq!(r.status(), 400);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert_eq!(
        body["reason"], "ambiguous original request (x-original-method)",
        "{body}"
    );
    let metrics = scrape(gk.http_addr).await;
    assert!(
        metrics
            .iter()
            .any(|(k, v)| k.contains("reason=\"ambiguous_original_request\"") && *v >= 1.0),
        "counted: {metrics:?}"
    );
    // Without them, the request Traefik forwards is decided, and every identity header is
    // answered — the one the token lacks (email) empty — so Traefik's authResponseHeaders
    // replace every forged copy.
    let only_identity = [("x-jwt-sub", "mallory"), ("x-jwt-email", "mallory@evil.example")];
    let r = forward_auth_all(&gk, "GET", "/admin/secret", &only_identity).await;
    assert_eq!(r.status(), 401);
    let mut authed = only_identity.to_vec();
    authed.push(("authorization", &user));
    let r = forward_auth_all(&gk, "GET", "/api/items", &authed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        (
            r.headers()["x-jwt-sub"].as_bytes(),
            r.headers()["x-jwt-email"].as_bytes()
        ),
        (&b"alice"[..], &b""[..])
    );
    let r = forward_auth_all(&gk, "GET", "/public/docs", &only_identity).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        (
            r.headers()["x-jwt-sub"].as_bytes(),
            r.headers()["x-jwt-email"].as_bytes()
        ),
        (&b""[..], &b""[..])
    );

    // The example's authRequestHeaders keep the forged copies from jwtgate: decided as sent.
    let r = forward_auth(&gk, "GET", "/admin/secret", None).await;
    assert_eq!(r.status(), 401);

    // The client's address: the nearest untrusted hop Traefik appended, not the client's list.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let xff = format!("198.51.100.{i}, 203.0.113.7");
        let r = reqwest::Client::new()
            .get(format!("http://{}/auth", gk.http_addr))
            .header("x-forwarded-method", "POST")
            .header("x-forwarded-uri", "/login")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-for", xff)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}
