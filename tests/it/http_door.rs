//! The HTTP front door: one header family per door, named in `http_auth` — Envoy HTTP mode
//! (prefix), Nginx (`X-Original-*`), ingress-nginx (`X-Original-URL`) and Traefik/Caddy
//! (`X-Forwarded-*`) — and a check that also carries another family's headers refused, header
//! trust by source address, every identity header answered on every allow (Envoy's HTTP mode
//! shows jwtgate none of the client's), hosts as RFC 9110 has them, whole-segment path prefixes,
//! HTTP/2 cookie crumbs, and the same answers as the gRPC door for the same cases.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use common::*;
use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ROUTES: &str = r#"routes:
  - name: admin-ingress
    match: { context: { ingress: admin } }
    require: { roles: [admin] }
  - name: health
    match: { path_prefix: /health }
    auth: public
  - name: admin
    match: { path_prefix: /admin, methods: [POST, DELETE] }
    require: { roles: [admin] }
  - name: api
    match: { host: "*.example.com", path_prefix: /api }
    require: { scopes: [api.read] }
http_auth:
  envoy_prefix: /ext_authz
  doors:
    - { path: /auth/forwarded, original_request: forwarded }
    - { path: /auth/ingress, original_request: ingress_nginx }
    - { path: /auth/ingress-admin, original_request: ingress_nginx, context: { ingress: admin } }
"#;

struct World {
    issuer: Issuer,
    gk: Gatekeeper,
    http: reqwest::Client,
}

impl World {
    async fn start(extra: &str) -> Self {
        Self::start_yaml(|issuer| {
            format!(
                "{}{extra}",
                jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
            )
        })
        .await
    }

    /// With the providers (and more) that `yaml` writes for the issuer.
    async fn start_yaml(yaml: impl FnOnce(&Issuer) -> String) -> Self {
        let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
        let gk = Gatekeeper::start(&yaml(&issuer), &[]).await;
        gk.wait_ready().await;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self { issuer, gk, http }
    }

    fn token(&self, extra: Value) -> String {
        let mut c = claims(&self.issuer.url());
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("a"), c)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gk.http_addr)
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::from(req.send().await.unwrap()).await
    }
}

/// An HTTP door answer, flattened.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Option<Value>,
}

impl Reply {
    async fn from(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let body = serde_json::from_str(&r.text().await.unwrap()).ok();
        Self { status, headers, body }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn reason(&self) -> &str {
        self.body
            .as_ref()
            .and_then(|b| b["reason"].as_str())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn envoy_http_mode_checks_the_method_and_path_under_the_prefix() {
    let w = World::start(ROUTES).await;
    let reader = w.token(json!({"scope": "api.read"}));
    let auth = format!("Bearer {reader}");
    let r = w
        .send(
            "GET",
            "/ext_authz/api/items?x=1",
            &[("authorization", &auth), ("host", "shop.example.com")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-jwt-sub"), Some("alice"));
    assert!(r.header("x-jwtgate-trace-id").is_some());

    // The original method is this request's method.
    let r = w
        .send("DELETE", "/ext_authz/admin/x", &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.reason(), "missing role: admin");
    assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"));

    let r = w.send("POST", "/ext_authz/health", &[]).await;
    assert_eq!(r.status, 200, "public route");

    // Only exactly 200 allows in Envoy's HTTP mode; a client-sent identity header is cleared.
    let r = w.send("GET", "/ext_authz/health", &[("x-jwt-sub", "mallory")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-jwt-sub"), Some(""));
    assert_eq!(r.header("x-envoy-auth-headers-to-remove"), Some("x-jwt-sub"));

    let r = w
        .send("GET", "/ext_authz/api/items", &[("host", "shop.example.com")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"jwtgate\""));
    assert_eq!(r.body.as_ref().unwrap()["error"], "missing_token");
    assert_eq!(
        r.header("x-jwtgate-trace-id"),
        r.body.as_ref().unwrap()["trace_id"].as_str()
    );

    // Not under the prefix: not an authorization request at all.
    assert_eq!(w.send("GET", "/ext_authzzz/api", &[]).await.status, 404);
    assert_eq!(w.send("GET", "/api", &[]).await.status, 404);
}

#[tokio::test]
async fn nginx_mode_reads_x_original_headers_from_trusted_proxies() {
    let w = World::start(ROUTES).await;
    let admin = format!("Bearer {}", w.token(json!({"roles": ["admin"]})));
    let user = format!("Bearer {}", w.token(json!({"roles": ["user"]})));
    let nginx = |method: &'static str, uri: &'static str, auth: &str| {
        vec![
            ("x-original-method", method.to_string()),
            ("x-original-uri", uri.to_string()),
            ("authorization", auth.to_string()),
        ]
    };
    let send = async |h: Vec<(&str, String)>| {
        let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        w.send("GET", "/auth", &refs).await
    };
    let r = send(nginx("POST", "/admin/users", &admin)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-jwt-sub"), Some("alice"));
    let r = send(nginx("POST", "/admin/users", &user)).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(nginx("POST", "/admin/../admin/users", &user)).await;
    assert_eq!(r.status, 403, "normalised before matching");
    let mut h = nginx("GET", "/api/x", &admin);
    h.push(("x-original-host", "shop.example.com".into()));
    let r = send(h).await;
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (403, "missing scope: api.read"),
        "{r:?}"
    );
    // Without the method the request is unknown: never guessed.
    let r = w.send("GET", "/auth", &[("x-original-uri", "/admin")]).await;
    assert_eq!((r.status.as_u16(), r.reason()), (403, "original request unknown"));
    assert_eq!(r.body.as_ref().unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn forward_auth_mode_reads_x_forwarded_headers() {
    let w = World::start(ROUTES).await;
    let reader = format!("Bearer {}", w.token(json!({"scope": "api.read"})));
    let r = w
        .send(
            "GET",
            "/auth/forwarded",
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "shop.example.com"),
                ("x-forwarded-uri", "/api/items?page=2"),
                ("authorization", &reader),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-jwt-sub"), Some("alice"));
    let r = w
        .send(
            "GET",
            "/auth/forwarded",
            &[
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-host", "h"),
                ("x-forwarded-uri", "/admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    // /auth reads nginx's family: X-Forwarded-* there are another family's, refused.
    let r = w
        .send(
            "GET",
            "/auth",
            &[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/admin")],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (400, "ambiguous original request (x-forwarded-method)")
    );
}

#[tokio::test]
async fn original_request_headers_from_untrusted_peers_are_ignored() {
    let routes = ROUTES.replace(
        "  envoy_prefix: /ext_authz\n",
        "  envoy_prefix: /ext_authz\n  trusted_proxies: [\"10.0.0.0/8\"]\n",
    );
    let w = World::start(&routes).await;
    // Loopback is not trusted here: a caller cannot choose the path the policy is evaluated on.
    let r = w
        .send(
            "GET",
            "/auth",
            &[("x-original-method", "GET"), ("x-original-uri", "/health")],
        )
        .await;
    assert_eq!((r.status.as_u16(), r.reason()), (403, "original request unknown"));
    let r = w
        .send(
            "GET",
            "/auth/forwarded",
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/health")],
        )
        .await;
    assert_eq!(r.status, 403);
    // Envoy mode needs no trusted headers: the request itself is what is checked.
    assert_eq!(w.send("GET", "/ext_authz/health", &[]).await.status, 200);
}

/// One request described once, asked through gRPC, Envoy HTTP mode and Nginx mode.
struct Case {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    token: Option<String>,
    extra: Vec<(&'static str, &'static str)>,
}

/// What every door must agree on.
#[derive(Debug, PartialEq)]
struct Verdict {
    status: u16,
    reason: String,
    error: Option<String>,
    challenge: Option<String>,
    sub: Option<String>,
}

#[tokio::test]
async fn grpc_and_http_doors_answer_alike() {
    let w = World::start(ROUTES).await;
    let mut grpc = w.gk.client().await;
    let t = |v: Value| Some(w.token(v));
    let cases = vec![
        Case {
            method: "GET",
            host: "shop.example.com",
            path: "/api/items",
            token: t(json!({"scope": "api.read"})),
            extra: vec![],
        },
        Case {
            method: "GET",
            host: "shop.example.com",
            path: "/api/items",
            token: t(json!({})),
            extra: vec![],
        },
        Case {
            method: "GET",
            host: "shop.example.com",
            path: "/api/items",
            token: None,
            extra: vec![],
        },
        Case {
            method: "GET",
            host: "other.org",
            path: "/api/items",
            token: t(json!({"scope": "api.read"})),
            extra: vec![],
        },
        Case {
            method: "POST",
            host: "h",
            path: "/admin",
            token: t(json!({"roles": ["admin"]})),
            extra: vec![],
        },
        Case {
            method: "DELETE",
            host: "h",
            path: "//admin/./x",
            token: t(json!({"roles": ["x"]})),
            extra: vec![],
        },
        Case {
            method: "GET",
            host: "h",
            path: "/health",
            token: None,
            extra: vec![("x-jwt-sub", "mallory")],
        },
        Case {
            method: "GET",
            host: "shop.example.com",
            path: "/api",
            token: Some("a.b.c".into()),
            extra: vec![],
        },
        Case {
            method: "GET",
            host: "shop.example.com",
            path: "/api",
            token: t(json!({"exp": 1})),
            extra: vec![],
        },
        Case {
            method: "GET",
            host: "h",
            path: "/%zz",
            token: None,
            extra: vec![],
        },
        // Not a host (RFC 9110): refused, never matched loosely (nginx serves it as
        // shop.example.com).
        Case {
            method: "GET",
            host: "shop.example.com:x",
            path: "/api/items",
            token: t(json!({"scope": "api.read"})),
            extra: vec![],
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let auth = c.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = c.extra.clone();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }

        let mut req = check_request(c.path, &headers);
        let http = http_mut(&mut req);
        http.method = c.method.into();
        http.host = c.host.into();
        let a = check(&mut grpc, req).await.unwrap();
        let from_grpc = Verdict {
            status: a.http_status.map_or(200, |s| s as u16),
            reason: a.reason(),
            error: a.body.as_ref().map(|b| b["error"].as_str().unwrap().to_string()),
            challenge: a.headers.get("www-authenticate").cloned(),
            sub: a.headers.get("x-jwt-sub").cloned(),
        };

        let verdict = |r: Reply| Verdict {
            status: r.status.as_u16(),
            reason: r.reason().to_string(),
            error: r.body.as_ref().map(|b| b["error"].as_str().unwrap().to_string()),
            challenge: r.header("www-authenticate").map(str::to_owned),
            sub: r.header("x-jwt-sub").filter(|s| !s.is_empty()).map(str::to_owned),
        };
        let mut envoy_headers = headers.clone();
        envoy_headers.push(("host", c.host));
        let from_envoy = verdict(w.send(c.method, &format!("/ext_authz{}", c.path), &envoy_headers).await);
        let mut nginx_headers = headers.clone();
        nginx_headers.extend([
            ("x-original-method", c.method),
            ("x-original-uri", c.path),
            ("x-original-host", c.host),
        ]);
        let from_nginx = verdict(w.send("GET", "/auth", &nginx_headers).await);

        assert_eq!(from_grpc, from_envoy, "case {i}: gRPC vs Envoy HTTP mode");
        assert_eq!(from_grpc, from_nginx, "case {i}: gRPC vs Nginx mode");
    }
}

#[tokio::test]
async fn forward_token_false_answers_the_cookie_header_without_the_token_cookie() {
    let w = World::start(
        "    forward_token: false\n    sources: [{ header: authorization, prefix: \"Bearer \" }, { cookie: at }]\n",
    )
    .await;
    let t = w.token(json!({}));
    let nginx = [("x-original-method", "GET"), ("x-original-uri", "/api")];
    let cookies = format!("theme=dark; at={t}");
    let r = w
        .send("GET", "/auth", &[nginx[0], nginx[1], ("cookie", &cookies)])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cookie"), Some("theme=dark"), "the proxy copies this upstream");
    let only = format!("at={t}");
    let r = w.send("GET", "/auth", &[nginx[0], nginx[1], ("cookie", &only)]).await;
    assert_eq!(
        r.header("cookie"),
        Some(""),
        "nothing left: copied, it empties the header"
    );
    let bearer = format!("Bearer {t}");
    let r = w
        .send("GET", "/auth", &[nginx[0], nginx[1], ("authorization", &bearer)])
        .await;
    assert_eq!(r.header("authorization"), Some(""));
    assert_eq!(r.header("cookie"), None);
}

/// A provider whose identity headers are `x-jwt-sub`, `x-jwt-email` and `x-jwt-roles`, and routes
/// of every kind that allows without an identity.
const IDENTITY: &str = r#"    claims_to_headers: { sub: x-jwt-sub, email: x-jwt-email, roles: x-jwt-roles }
routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: profile, match: { path_prefix: /profile }, auth: optional }
  - { name: preview, match: { path_prefix: /preview }, require: { roles: [admin] }, mode: dry_run }
  - { name: api, match: { path_prefix: /api } }
defaults: { unmatched: public }
http_auth:
  envoy_prefix: /ext_authz
"#;

/// The provider `corp` with [`IDENTITY`]'s headers and routes.
async fn identity_world() -> World {
    World::start_yaml(|issuer| {
        format!(
            "  - name: corp\n    issuer: \"{}\"\n    jwks_uri: \"{}\"\n    audiences: [api]\n{IDENTITY}",
            issuer.url(),
            issuer.jwks_uri()
        )
    })
    .await
}

#[tokio::test]
async fn envoy_http_mode_answers_every_identity_header_the_check_never_showed() {
    // Envoy's HTTP mode sends only its allowed_headers: the client's forged X-Jwt-Sub never
    // reaches jwtgate, and Envoy keeps every upstream header the answer does not override or
    // list in x-envoy-auth-headers-to-remove. So every allow answers every identity header.
    let w = identity_world().await;
    let alice = format!("Bearer {}", w.token(json!({})));
    let all = ["x-jwt-sub", "x-jwt-email", "x-jwt-roles"];
    for (path, auth) in [
        ("/public/docs", None),
        ("/profile", None),
        ("/preview/x", None),
        ("/elsewhere", None),
        ("/preview/x", Some(alice.as_str())),
    ] {
        let mut headers = vec![("host", "api.example.com")];
        headers.extend(auth.map(|a| ("authorization", a)));
        let r = w.send("GET", &format!("/ext_authz{path}"), &headers).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let removed: Vec<&str> = r
            .header("x-envoy-auth-headers-to-remove")
            .unwrap_or_default()
            .split(", ")
            .collect();
        let set = if auth.is_some() { &all[1..] } else { &all[..] };
        for h in set {
            assert!(removed.contains(h), "{path}: {h} not removed: {r:?}");
            assert_eq!(r.header(h), Some(""), "{path}: {h} answered empty too");
        }
        if auth.is_some() {
            assert_eq!(r.header("x-jwt-sub"), Some("alice"), "{path}");
            assert!(!removed.contains(&"x-jwt-sub"), "{path}");
        }
    }
    // A claim the token lacks (email) and one it has (roles), on a route that needs a token.
    let admin = format!("Bearer {}", w.token(json!({"roles": ["admin", "user"]})));
    let r = w
        .send("GET", "/ext_authz/api/x", &[("authorization", &admin), ("host", "h")])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-jwt-roles"), Some("admin,user"));
    assert_eq!(r.header("x-envoy-auth-headers-to-remove"), Some("x-jwt-email"));
}

#[tokio::test]
async fn a_list_claim_whose_elements_hold_the_separator_is_not_sent() {
    let w = identity_world().await;
    // ["admin,user"] would read as ["admin","user"] to an upstream that splits the list.
    let tricky = format!("Bearer {}", w.token(json!({"roles": ["admin,user"]})));
    let r = w
        .send("GET", "/ext_authz/api/x", &[("authorization", &tricky), ("host", "h")])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-jwt-roles"), Some(""), "{r:?}");
    assert!(
        r.header("x-envoy-auth-headers-to-remove")
            .unwrap()
            .contains("x-jwt-roles"),
        "{r:?}"
    );
    assert_eq!(r.header("x-jwt-sub"), Some("alice"), "the other claims are sent");
}

#[tokio::test]
async fn a_check_with_another_familys_original_request_headers_is_refused_at_every_door() {
    let w = World::start(ROUTES).await;
    let metrics_before = scrape(w.gk.http_addr).await;
    // The forged family names a public path; the door's own family the protected one.
    // (method, door, headers, the header named in the refusal)
    type Case = (
        &'static str,
        &'static str,
        Vec<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: [Case; 5] = [
        (
            "GET",
            "/auth/forwarded",
            vec![
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/admin/secret"),
                ("x-original-uri", "/health"),
            ],
            "x-original-uri",
        ),
        (
            "GET",
            "/auth",
            vec![
                ("x-original-method", "POST"),
                ("x-original-uri", "/admin/secret"),
                ("x-forwarded-uri", "/health"),
            ],
            "x-forwarded-uri",
        ),
        (
            "GET",
            "/auth/ingress",
            vec![
                ("x-original-method", "POST"),
                ("x-original-url", "http://h/admin/secret"),
                ("x-forwarded-method", "GET"),
            ],
            "x-forwarded-method",
        ),
        (
            "POST",
            "/ext_authz/admin/secret",
            vec![("x-original-uri", "/health")],
            "x-original-uri",
        ),
        // Its own header twice: which one would the proxy have set?
        (
            "GET",
            "/auth/forwarded",
            vec![
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/admin/secret"),
                ("x-forwarded-uri", "/health"),
            ],
            "x-forwarded-uri",
        ),
    ];
    for (method, door, headers, named) in &cases {
        let r = w.send(method, door, headers).await;
        assert_eq!(r.status, 400, "{door} {headers:?}: {r:?}");
        assert_eq!(r.reason(), format!("ambiguous original request ({named})"), "{door}");
        assert_eq!(r.body.as_ref().unwrap()["error"], "invalid_request");
        assert_eq!(r.header("www-authenticate"), None, "not a credential problem");
        assert!(r.header("x-jwtgate-trace-id").is_some());
    }
    let metrics = scrape(w.gk.http_addr).await;
    let count = |m: &std::collections::BTreeMap<String, f64>| {
        m.iter()
            .filter(|(k, _)| k.contains("reason=\"ambiguous_original_request\""))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    assert_eq!(
        count(&metrics) - count(&metrics_before),
        cases.len() as f64,
        "{metrics:?}"
    );
}

#[tokio::test]
async fn what_ingress_nginx_sends_is_decided_on_its_original_url() {
    let w = World::start(ROUTES).await;
    let admin = format!("Bearer {}", w.token(json!({"roles": ["admin"], "scope": "api.read"})));
    // The controller's auth location (nginx.tmpl): X-Original-URL and -Method, X-Real-IP,
    // X-Forwarded-For, X-Request-ID, X-Auth-Request-Redirect, X-Sent-From; the client's other
    // headers as sent — here a forged X-Original-URI (set by the controller only with
    // `auth-method`) that the door never reads.
    let controller = |method: &'static str, url: &'static str| {
        vec![
            ("x-original-url", url),
            ("x-original-method", method),
            ("x-real-ip", "203.0.113.7"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-request-id", "0f8fad5b"),
            ("x-auth-request-redirect", "/x"),
            ("x-sent-from", "nginx-ingress-controller"),
            ("x-original-uri", "/health"),
        ]
    };
    let r = w
        .send(
            "GET",
            "/auth/ingress",
            &controller("POST", "http://shop.example.com/admin/users"),
        )
        .await;
    assert_eq!(r.status, 401, "the URL's /admin, not the forged /health: {r:?}");
    let mut h = controller("POST", "https://shop.example.com:8443/admin/users?x=1");
    h.push(("authorization", &admin));
    let r = w.send("GET", "/auth/ingress", &h).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-jwt-sub")),
        (200, Some("alice")),
        "{r:?}"
    );
    let mut h = controller("GET", "https://shop.example.com/api/items");
    h.push(("authorization", &admin));
    assert_eq!(
        w.send("GET", "/auth/ingress", &h).await.status,
        200,
        "host route *.example.com"
    );
    // $http_host is the client's: a host nginx would serve elsewhere is refused.
    let r = w
        .send(
            "GET",
            "/auth/ingress",
            &controller("GET", "http://shop.example.com:x/api/items"),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (400, "invalid host: port is not a number")
    );
    // `Host: shop.example.com:?` (nginx serves it as shop.example.com): the path is the URL's,
    // not moved into the query, and the host is refused.
    let r = w
        .send(
            "GET",
            "/auth/ingress",
            &controller("GET", "http://shop.example.com:?/admin/x"),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (400, "invalid host: port is not a number"),
        "{r:?}"
    );
    // A plain `auth-url` (no auth-method) used to find no X-Original-URI and answer 403.
    let r = w
        .send("GET", "/auth/ingress", &controller("GET", "http://h/health"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The URL's host is the client's Host header, which an absolute-form request line can make
    // another than the Ingress nginx serves: an Ingress's own door pins its policy by context.
    let r = w
        .send(
            "GET",
            "/auth/ingress-admin",
            &controller("GET", "http://www.example.com/health"),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.reason()), (401, "missing token"), "{r:?}");
    let mut h = controller("GET", "http://www.example.com/health");
    h.push(("authorization", &admin));
    assert_eq!(w.send("GET", "/auth/ingress-admin", &h).await.status, 200);
}

#[tokio::test]
async fn path_prefixes_hold_whole_segments_at_the_door() {
    let w = World::start(
        "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: legacy, match: { path_string_prefix: /static }, auth: public }
  - { name: rest, match: { path_prefix: / } }
http_auth: { envoy_prefix: /ext_authz }
",
    )
    .await;
    for (path, status) in [
        ("/public", 200),
        ("/public/x", 200),
        ("/public-admin/secret", 401),
        ("/publicity", 401),
        ("/static-files/x", 200),
    ] {
        let r = w.send("GET", &format!("/ext_authz{path}"), &[]).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {r:?}");
    }
}

#[tokio::test]
async fn http2_cookie_crumbs_rejoin_so_a_token_after_another_cookie_is_found() {
    let w = World::start(
        "    sources: [{ cookie: access_token }]
http_auth: { envoy_prefix: /ext_authz }
",
    )
    .await;
    let token = w.token(json!({}));
    // HTTP/2 sends each cookie as a header line of its own (RFC 9113 §8.2.3); they are one
    // cookie list again, joined with `; ` — not `,`, which made `theme=dark,access_token` one
    // cookie and lost the token.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(w.url("/ext_authz/api"))
        .header("cookie", "theme=dark")
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

#[tokio::test]
async fn auth_itself_can_be_the_prefix_envoys_http_mode_asks_under() {
    let w = World::start(
        "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: rest, match: { path_prefix: / } }
http_auth: { original_request: envoy }
",
    )
    .await;
    assert_eq!(w.send("GET", "/auth/public/x", &[]).await.status, 200);
    let r = w.send("DELETE", "/auth/admin", &[("x-original-uri", "/public")]).await;
    assert_eq!(
        (r.status.as_u16(), r.reason()),
        (400, "ambiguous original request (x-original-uri)")
    );
    assert_eq!(w.send("GET", "/auth/admin", &[]).await.status, 401);
}
