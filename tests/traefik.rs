//! Traefik's ForwardAuth against jwtgate. Traefik is not packaged in this project's registries,
//! so this does not run it: it checks `examples/traefik/dynamic.yml` (the middleware points at
//! `/auth`, copies the identity header, does not trust client-sent X-Forwarded-*), and sends
//! jwtgate's HTTP door exactly the headers Traefik's ForwardAuth sends (X-Forwarded-Method,
//! -Proto, -Host, -Uri, -For) and checks each decision.
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use common::*;
use serde_json::{Value, json};

const ROUTES: &str = "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: admin, match: { path_prefix: /admin }, require: { roles: [admin] } }
  - { name: api, match: { path_prefix: /api, methods: [GET] } }
";

#[test]
fn the_traefik_example_points_forward_auth_at_the_http_door() {
    let text = std::fs::read_to_string(repo("examples/traefik/dynamic.yml")).unwrap();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    let fa = &config["http"]["middlewares"]["jwtgate"]["forwardAuth"];
    assert!(fa["address"].as_str().unwrap().ends_with("/auth"), "{fa}");
    assert_eq!(fa["trustForwardHeader"], false);
    let copied: Vec<&str> = fa["authResponseHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(copied.contains(&"X-Jwt-Sub"), "{copied:?}");
    assert_eq!(config["http"]["routers"]["app"]["middlewares"], json!(["jwtgate"]));
}

/// What Traefik's ForwardAuth sends for `method https://host{uri}` from client 203.0.113.7.
async fn forward_auth(gk: &Gatekeeper, method: &str, uri: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("http://{}/auth", gk.http_addr))
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-jwt-sub", "mallory");
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
        "copied over the client's forged copy"
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
