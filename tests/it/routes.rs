//! Route policies through the real gRPC door: matching and normalisation (including bypass
//! spellings), every requirement kind allowed and denied, optional and public routes, unmatched
//! requests, dry run, and Envoy `context_extensions`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::collections::HashMap;

use common::*;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tonic::transport::Channel;

const ROUTES: &str = r#"routes:
  - name: health
    match: { path_prefix: /health }
    auth: public
  - name: admin
    match: { path_prefix: /admin }
    require: { providers: [corp], roles: [admin] }
  - name: ops
    match: { path_prefix: /ops }
    require: { roles: { any_of: [ops, sre] } }
  - name: beta
    match: { path_prefix: /beta }
    require: { roles: [beta] }
    mode: dry_run
  - name: api-write
    match: { path_prefix: /api, methods: [POST, PUT, DELETE] }
    require: { scopes: [api.write] }
  - name: api-read
    match: { path_prefix: /api }
    require: { scopes: [api.read] }
  - name: tenant
    match: { host: "*.tenants.example.com" }
    require: { claims: { tenant: { one_of: [acme, globex] }, email: { regex: '[^@]+@(acme|globex)\.com' } } }
  - name: profile
    match: { path: /profile }
    auth: optional
  - name: by-context
    match: { context: { policy: admin } }
    require: { roles: [admin] }
  - name: case-insensitive
    match: { path_prefix: /reports, case_insensitive: true }
    require: { scopes: [reports] }
  - name: everything-else
    match: { path_prefix: /open }
    auth: public
defaults: { unmatched: deny }
"#;

struct World {
    corp: Issuer,
    partner: Issuer,
    gk: Gatekeeper,
    client: AuthorizationClient<Channel>,
}

impl World {
    async fn start() -> Self {
        Self::with_routes(ROUTES).await
    }

    async fn with_routes(routes: &str) -> Self {
        let corp = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
        let partner = Issuer::start(vec![jwk("ec-p256.pem", Algorithm::ES256, "p")]).await;
        let providers = format!(
            "{}{}{routes}",
            jwks_provider(
                "corp",
                &corp.url(),
                &corp.jwks_uri(),
                "    roles_claim: realm_access.roles\n    claims_to_headers: { sub: x-jwt-sub, tenant: x-jwt-tenant }\n"
            )
            .replace("    claims_to_headers: { sub: x-jwt-sub }\n", ""),
            jwks_provider("partner", &partner.url(), &partner.jwks_uri(), ""),
        );
        let gk = Gatekeeper::start(&providers, &[]).await;
        gk.wait_ready().await;
        let client = gk.client().await;
        Self {
            corp,
            partner,
            gk,
            client,
        }
    }

    /// A corp token with these extra claims.
    fn corp(&self, extra: Value) -> String {
        let mut c = claims(&self.corp.url());
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("a"), c)
    }

    fn partner(&self, extra: Value) -> String {
        let mut c = claims(&self.partner.url());
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&pem("ec-p256.pem"), Algorithm::ES256, Some("p"), c)
    }

    async fn ask(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut headers: Vec<(&str, String)> = extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut req = check_request(path, &refs);
        let http = http_mut(&mut req);
        http.method = method.into();
        http.host = host.into();
        check(&mut self.client, req).await.expect("a CheckResponse")
    }

    async fn get(&mut self, path: &str, token: Option<&str>) -> Answer {
        self.ask("GET", "api.example.com", path, token, &[]).await
    }
}

fn assert_allowed(a: &Answer, what: &str) {
    assert_eq!(a.grpc_code, 0, "{what}: expected allow, got {a:?}");
}

fn assert_denied(a: &Answer, status: i32, reason: &str, what: &str) {
    assert_eq!(a.http_status, Some(status), "{what}: {a:?}");
    assert_eq!(a.reason(), reason, "{what}");
    let grpc = if status == 403 { 7 } else { 16 };
    assert_eq!(a.grpc_code, grpc, "{what}");
}

#[tokio::test]
async fn public_routes_need_no_token_and_strip_identity_headers() {
    let mut w = World::start().await;
    let a = w
        .ask("GET", "h", "/health/live", None, &[("x-jwt-sub", "mallory")])
        .await;
    assert_allowed(&a, "public");
    assert!(!a.headers.contains_key("x-jwt-sub"));
    assert!(
        a.removed.contains(&"x-jwt-sub".to_string()),
        "client's identity header removed: {a:?}"
    );
    // A bad token on a public route is not even looked at.
    assert_allowed(&w.get("/health", Some("garbage")).await, "public ignores tokens");
    assert!(
        w.get("/health", None).await.metadata.is_none(),
        "no identity on public routes"
    );
}

#[tokio::test]
async fn scopes_are_required_per_method() {
    let mut w = World::start().await;
    let reader = w.corp(json!({"scope": "api.read profile"}));
    let writer = w.corp(json!({"scp": ["api.read", "api.write"]}));
    assert_allowed(&w.get("/api/items", Some(&reader)).await, "reader GET");
    let a = w.ask("POST", "h", "/api/items", Some(&reader), &[]).await;
    assert_denied(&a, 403, "missing scope: api.write", "reader POST");
    let challenge = &a.headers["www-authenticate"];
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"api.write\""), "{challenge}");
    assert_eq!(a.body.as_ref().unwrap()["error"], "insufficient_scope");
    assert_allowed(
        &w.ask("DELETE", "h", "/api/items/1", Some(&writer), &[]).await,
        "writer DELETE",
    );
    let none = w.corp(json!({"scope": 7}));
    assert_denied(
        &w.get("/api", Some(&none)).await,
        403,
        "missing scope: api.read",
        "scope of wrong type",
    );
    assert_denied(&w.get("/api", None).await, 401, "missing token", "no token");
}

#[tokio::test]
async fn roles_all_of_and_any_of_from_the_providers_roles_claim() {
    let mut w = World::start().await;
    let admin = w.corp(json!({"realm_access": {"roles": ["admin", "user"]}}));
    let user = w.corp(json!({"realm_access": {"roles": ["user"]}}));
    let sre = w.corp(json!({"realm_access": {"roles": ["sre"]}}));
    let top_level = w.corp(json!({"roles": ["admin"]}));
    assert_allowed(&w.get("/admin/users", Some(&admin)).await, "admin");
    assert_denied(
        &w.get("/admin/users", Some(&user)).await,
        403,
        "missing role: admin",
        "user",
    );
    assert_denied(
        &w.get("/admin", Some(&top_level)).await,
        403,
        "missing role: admin",
        "roles read from realm_access.roles only",
    );
    assert_allowed(&w.get("/ops", Some(&sre)).await, "any_of");
    assert_denied(
        &w.get("/ops", Some(&user)).await,
        403,
        "missing role: ops sre",
        "any_of none",
    );
}

#[tokio::test]
async fn providers_are_any_of() {
    let mut w = World::start().await;
    let partner_admin = w.partner(json!({"roles": ["admin"], "realm_access": {"roles": ["admin"]}}));
    assert_denied(
        &w.get("/admin", Some(&partner_admin)).await,
        403,
        "token issuer not accepted here",
        "partner on corp-only route",
    );
    let partner_reader = w.partner(json!({"scope": "api.read"}));
    assert_allowed(&w.get("/api", Some(&partner_reader)).await, "any provider on api");
}

#[tokio::test]
async fn claim_tests_on_a_tenant_host() {
    let mut w = World::start().await;
    let acme = w.corp(json!({"tenant": "acme", "email": "a@acme.com"}));
    let initech = w.corp(json!({"tenant": "initech", "email": "a@acme.com"}));
    let bad_email = w.corp(json!({"tenant": "acme", "email": "a@acme.com.evil.org"}));
    let a = w
        .ask("GET", "acme.tenants.example.com", "/anything", Some(&acme), &[])
        .await;
    assert_allowed(&a, "acme");
    assert_eq!(a.headers["x-jwt-tenant"], "acme");
    let a = w
        .ask("GET", "acme.tenants.example.com:443", "/x", Some(&initech), &[])
        .await;
    assert_denied(&a, 403, "claim tenant not accepted", "initech");
    let a = w
        .ask("GET", "globex.tenants.example.com", "/x", Some(&bad_email), &[])
        .await;
    assert_denied(&a, 403, "claim email not accepted", "regex is anchored");
    let a = w.ask("GET", "tenants.example.com", "/x", Some(&acme), &[]).await;
    assert_denied(
        &a,
        403,
        "no route matches this request",
        "bare suffix is not a subdomain",
    );
}

#[tokio::test]
async fn optional_routes_verify_a_token_only_when_present() {
    let mut w = World::start().await;
    let a = w.ask("GET", "h", "/profile", None, &[("x-jwt-sub", "mallory")]).await;
    assert_allowed(&a, "anonymous");
    assert!(a.removed.contains(&"x-jwt-sub".to_string()));
    let t = w.corp(json!({}));
    let a = w.get("/profile", Some(&t)).await;
    assert_allowed(&a, "identified");
    assert_eq!(a.headers["x-jwt-sub"], "alice");
    assert_denied(
        &w.get("/profile", Some("not.a.token")).await,
        401,
        "malformed token: invalid base64url",
        "bad token",
    );
}

#[tokio::test]
async fn unmatched_requests_follow_defaults() {
    let mut w = World::start().await;
    let t = w.corp(json!({"scope": "api.read"}));
    let a = w.get("/nowhere", Some(&t)).await;
    assert_denied(&a, 403, "no route matches this request", "unmatched deny");
    assert_eq!(a.body.as_ref().unwrap()["error"], "access_denied");

    let mut w = World::with_routes(
        "routes:\n  - { name: api, match: { path_prefix: /api } }\ndefaults: { unmatched: public }\n",
    )
    .await;
    assert_allowed(&w.get("/nowhere", None).await, "unmatched public");
    assert_denied(
        &w.get("/api", None).await,
        401,
        "missing token",
        "matched route still enforced",
    );
}

#[tokio::test]
async fn no_routes_means_every_request_needs_a_valid_token() {
    let mut w = World::with_routes("").await;
    assert_denied(&w.get("/anything", None).await, 401, "missing token", "default route");
    let t = w.corp(json!({}));
    assert_allowed(&w.get("/anything", Some(&t)).await, "default route");
}

#[tokio::test]
async fn bypass_spellings_reach_the_route_they_spell() {
    let mut w = World::start().await;
    let user = w.corp(json!({"realm_access": {"roles": ["user"]}, "scope": "api.read"}));
    for path in [
        "/admin",
        "/admin/../admin",
        "//admin",
        "/%61dmin",
        "/./admin/x",
        "/open/../admin",
        "/admin?x=/open",
        "/%2e/admin",
    ] {
        let a = w.get(path, Some(&user)).await;
        assert_denied(&a, 403, "missing role: admin", path);
    }
    // An encoded slash is not a separator: this is one segment under /open, not /admin; and
    // `open%2F..%2Fadmin` is one segment of its own, under neither /open nor /admin.
    assert_allowed(
        &w.get("/open/x%2F..%2F..%2Fadmin", Some(&user)).await,
        "%2F stays encoded",
    );
    let a = w.get("/open%2F..%2Fadmin", Some(&user)).await;
    assert_eq!(a.reason(), "no route matches this request", "{a:?}");
    // Paths are case-sensitive by default: /ADMIN is a different path (no route here → deny)...
    assert_denied(
        &w.get("/ADMIN", Some(&user)).await,
        403,
        "no route matches this request",
        "/ADMIN",
    );
    // ...unless the route opts into case-insensitive matching.
    let a = w.get("/REPORTS/q1", Some(&user)).await;
    assert_denied(&a, 403, "missing scope: reports", "case-insensitive route");
    let a = w.get("/bad%zzpath", Some(&user)).await;
    assert_denied(&a, 403, "invalid request path: bad percent-encoding", "broken escape");
}

#[tokio::test]
async fn dry_run_allows_but_logs_and_counts_would_be_denials() {
    let mut w = World::start().await;
    let url = format!("http://{}/metrics", w.gk.http_addr);
    let metrics = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    let before = metrics().await;
    assert!(!before.contains("route=\"beta\""), "{before}");
    let user = w.corp(json!({"realm_access": {"roles": ["user"]}}));
    let a = w.get("/beta/feature", Some(&user)).await;
    assert_allowed(&a, "dry run allows");
    assert_eq!(a.headers["x-jwt-sub"], "alice", "identity still forwarded");
    assert_allowed(&w.get("/beta", None).await, "even without a token");
    let beta = w.corp(json!({"realm_access": {"roles": ["beta"]}}));
    assert_allowed(&w.get("/beta", Some(&beta)).await, "a passing request is not counted");
    let text = metrics().await;
    assert!(
        text.contains("jwtgate_dry_run_denials_total{route=\"beta\",reason=\"missing_role\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("jwtgate_dry_run_denials_total{route=\"beta\",reason=\"missing_token\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn context_extensions_pick_a_policy() {
    let mut w = World::start().await;
    let user = w.corp(json!({"realm_access": {"roles": ["user"]}}));
    let admin = w.corp(json!({"realm_access": {"roles": ["admin"]}}));
    let with_context = |mut req: CheckRequest| {
        req.attributes.as_mut().unwrap().context_extensions = HashMap::from([("policy".into(), "admin".into())]);
        req
    };
    let a = check(
        &mut w.client,
        with_context(check_request(
            "/somewhere",
            &[("authorization", &format!("Bearer {user}"))],
        )),
    )
    .await
    .unwrap();
    assert_denied(&a, 403, "missing role: admin", "context policy");
    let a = check(
        &mut w.client,
        with_context(check_request(
            "/somewhere",
            &[("authorization", &format!("Bearer {admin}"))],
        )),
    )
    .await
    .unwrap();
    assert_allowed(&a, "context policy");
}

/// Two providers that each bring a token (Envoy's `requires_all`): a user token from `corp`
/// in `authorization`, a device token from `device` in `x-device-token`.
#[tokio::test]
async fn all_of_providers_needs_a_valid_token_of_each_in_its_own_source() {
    let corp = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
    let device = Issuer::start(vec![jwk("ec-p256.pem", Algorithm::ES256, "d")]).await;
    let providers = format!(
        "{}{}routes:\n  - name: both\n    require: {{ providers: {{ all_of: [corp, device] }}, scopes: [api.read] }}\n",
        jwks_provider("corp", &corp.url(), &corp.jwks_uri(), ""),
        jwks_provider(
            "device",
            &device.url(),
            &device.jwks_uri(),
            "    sources: [{ header: x-device-token, prefix: \"\" }]\n    forward_token: false\n"
        )
        .replace(
            "claims_to_headers: { sub: x-jwt-sub }",
            "claims_to_headers: { sub: x-device-id }"
        ),
    );
    let gk = Gatekeeper::start(&providers, &[]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let token = |issuer: &Issuer, key: &str, alg, kid, extra: Value| {
        let mut c = claims(&issuer.url());
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&pem(key), alg, Some(kid), c)
    };
    let user = token(
        &corp,
        "rsa-a.pem",
        Algorithm::RS256,
        "a",
        json!({"sub": "alice", "scope": "api.read"}),
    );
    let thermostat = token(
        &device,
        "ec-p256.pem",
        Algorithm::ES256,
        "d",
        json!({"sub": "thermostat-7"}),
    );
    let mut ask = async |headers: &[(&str, &str)]| check(&mut client, check_request("/api", headers)).await.unwrap();
    let bearer_user = format!("Bearer {user}");

    let a = ask(&[("authorization", &bearer_user), ("x-device-token", &thermostat)]).await;
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert_eq!(a.headers["x-jwt-sub"], "alice", "the first provider's identity");
    assert_eq!(a.headers["x-device-id"], "thermostat-7", "and the second's");
    assert_eq!(
        a.removed,
        ["x-device-token"],
        "device's forward_token: false, corp's default"
    );

    // One token is not enough, whichever it is.
    let a = ask(&[("authorization", &bearer_user)]).await;
    assert_eq!((a.http_status, a.reason().as_str()), (Some(401), "missing token"));
    let a = ask(&[("x-device-token", &thermostat)]).await;
    assert_eq!((a.http_status, a.reason().as_str()), (Some(401), "missing token"));
    // Each source must hold its own provider's token: corp's token in the device header is not
    // the device's.
    let a = ask(&[("authorization", &bearer_user), ("x-device-token", &user)]).await;
    assert_eq!(
        a.http_status,
        Some(401),
        "corp's token is not read from x-device-token: {a:?}"
    );
    // A bad second token fails the request like a bad first one.
    let expired = token(
        &device,
        "ec-p256.pem",
        Algorithm::ES256,
        "d",
        json!({"exp": now() - 3600}),
    );
    let a = ask(&[("authorization", &bearer_user), ("x-device-token", &expired)]).await;
    assert_eq!((a.http_status, a.reason().as_str()), (Some(401), "token expired"));
    // The other requirements are the first token's.
    let no_scope = format!("Bearer {}", token(&corp, "rsa-a.pem", Algorithm::RS256, "a", json!({})));
    let a = ask(&[("authorization", &no_scope), ("x-device-token", &thermostat)]).await;
    assert_eq!(
        (a.http_status, a.reason().as_str()),
        (Some(403), "missing scope: api.read")
    );
}
