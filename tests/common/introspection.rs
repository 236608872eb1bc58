//! The introspection endpoint's test harness: a JWKS issuer, a config with secret and token
//! clients, and HTTP calls to the endpoint.

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

pub const CLIENT_SECRET: &str = "billing-secret-0123456789";

pub const ROLE: &str = "introspect";

/// Config with the introspection listener, a Basic client, a token client (corp + `introspect`
/// role) and the static admin token.
pub fn config(issuer: &Issuer) -> String {
    format!(
        "listen: {{ grpc: \"127.0.0.1:0\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\", introspection: \"127.0.0.1:0\" }}\n\
         providers:\n{}\
         admin: {{ token: {{ file: admin-token.txt }} }}\n\
         introspection:\n  enabled: true\n  clients:\n    - {{ id: billing-worker, secret_file: billing.secret }}\n    - {{ provider: corp, role: {ROLE} }}\n",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    )
}

pub const FILES: &[(&str, &[u8])] = &[
    ("admin-token.txt", ADMIN_TOKEN.as_bytes()),
    ("billing.secret", b"billing-secret-0123456789\n"),
];

pub async fn start(issuer: &Issuer) -> Gatekeeper {
    let gk = Gatekeeper::start_text(tempfile::tempdir().unwrap(), &config(issuer), FILES).await;
    gk.wait_ready().await;
    gk
}

pub async fn issuer() -> Issuer {
    Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await
}

/// A corp token (`sub: alice, aud: api`, 600 s) with `extra` claims merged in.
pub fn token(issuer: &Issuer, extra: Value) -> String {
    let mut c = claims(&issuer.url());
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), c)
}

/// `POST /introspect` with `form` and an `authorization` header value: status, headers, body.
pub async fn post(
    gk: &Gatekeeper,
    authorization: Option<&str>,
    form: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/introspect", gk.introspection_addr.unwrap()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// Introspects `token` as the Basic client: the parsed body (status 200 asserted).
pub async fn introspect(gk: &Gatekeeper, token: &str) -> Value {
    let (status, headers, body) = post(
        gk,
        Some(&basic("billing-worker", CLIENT_SECRET)),
        &format!("token={token}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_str(&body).unwrap()
}

pub async fn check_code(gk: &Gatekeeper, token: &str) -> i32 {
    let mut client = gk.client().await;
    check(&mut client, bearer(token)).await.unwrap().grpc_code
}
