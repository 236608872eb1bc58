//! The HTTP front door: Envoy HTTP mode (prefix), Nginx (`X-Original-*`) and Traefik/Caddy
//! (`X-Forwarded-*`), header trust by source address, and the same answers as the gRPC door for
//! the same cases.
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ROUTES: &str = r#"routes:
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
"#;

struct World {
    issuer: Issuer,
    gk: Gatekeeper,
    http: reqwest::Client,
}

impl World {
    async fn start(extra: &str) -> Self {
        let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
        let providers = format!(
            "{}{extra}",
            jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
        );
        let gk = Gatekeeper::start(&providers, &[]).await;
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
            "/auth",
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
            "/auth",
            &[
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-host", "h"),
                ("x-forwarded-uri", "/admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
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
            "/auth",
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
    ];
    for (i, c) in cases.iter().enumerate() {
        let auth = c.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = c.extra.clone();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }

        let mut req = check_request(c.path, &headers);
        let http = req
            .attributes
            .as_mut()
            .unwrap()
            .request
            .as_mut()
            .unwrap()
            .http
            .as_mut()
            .unwrap();
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
