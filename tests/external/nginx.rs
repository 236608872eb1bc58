//! examples/nginx.conf under a real nginx: a real JWKS issuer and jwtgate in this process, an
//! echo application on loopback, and nginx running the example with only its placeholders
//! replaced. Checks what the example promises: identity headers come from jwtgate and never from
//! the client, 401/403 reach the client with their challenge, and 400/429/503 — which
//! `auth_request` alone turns into 500 — reach the client as 400/429/503. And the nginx row of
//! docs/proxy-boundary.md, with client-forged copies of every header in it: another family's
//! original-request headers change nothing, a host nginx serves from another server
//! (`admin.example.com:x`) is refused, a fresh X-Forwarded-For per request escapes no
//! `client_ip` limit, a forged certificate header does not stand in for the certificate.
//!
//! nginx comes from `$JWTGATE_NGINX`, else `nginx` on `PATH`, else `/usr/sbin/nginx`; with none
//! of them these tests fail: `bash tests/run.sh` installs Debian's nginx-light.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use common::tools;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::web::{Reply, echo_app, get, serve};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const ROUTES: &str = "routes:
  - name: admin-host
    match: { host: admin.example.com }
    require: { roles: [admin] }
  - name: public
    match: { path_prefix: /public }
    auth: public
  - name: profile
    match: { path_prefix: /profile }
    auth: optional
  - name: preview
    match: { path_prefix: /preview }
    require: { roles: [admin] }
    mode: dry_run
  - name: admin
    match: { path_prefix: /admin }
    require: { roles: [admin] }
  - name: api
    match: { path_prefix: /api }
  - name: login
    match: { path_prefix: /login }
    auth: public
  - name: rest
    match: { path_prefix: / }
rate_limits:
  headers_on_allow: true
  rules:
    - { name: login-per-ip, by: [client_ip], limit: 2, per: 1m, match: { routes: [login] } }
";

/// The example, the main-context wrapper around it, and the placeholders the example must have.
const EXAMPLE: &str = "examples/nginx.conf";
const WRAPPER: &str = "tests/fixtures/nginx/nginx.conf";
const PLACEHOLDERS: [&str; 3] = ["@JWTGATE@", "@LISTEN@", "@UPSTREAM@"];

/// examples/nginx.conf with its placeholders replaced; fails if the example lost one or grew
/// one that the test does not know.
fn render_example(jwtgate: SocketAddr, listen: SocketAddr, upstream: SocketAddr) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(EXAMPLE)).unwrap();
    for p in PLACEHOLDERS {
        assert!(text.contains(p), "{EXAMPLE} has no {p}");
    }
    let out = text
        .replace("@JWTGATE@", &jwtgate.to_string())
        .replace("@LISTEN@", &listen.to_string())
        .replace("@UPSTREAM@", &upstream.to_string());
    let left = regex::Regex::new("@[A-Z_]+@").unwrap();
    assert!(
        !left.is_match(&out),
        "{EXAMPLE}: unknown placeholder {:?}",
        left.find(&out).map(|m| m.as_str())
    );
    out
}

/// nginx running examples/nginx.conf in a temporary prefix; killed on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx and waits (at most 10 s) until it accepts connections.
    async fn start(jwtgate: SocketAddr, upstream: SocketAddr) -> Self {
        Self::start_with(jwtgate, upstream, &[], |site| site).await
    }

    /// Like [`Nginx::start`], with `files` written into the prefix and the rendered example
    /// changed by `edit` (e.g. TLS turned on).
    async fn start_with(
        jwtgate: SocketAddr,
        upstream: SocketAddr,
        files: &[(&str, &str)],
        edit: impl Fn(String) -> String,
    ) -> Self {
        let binary = tools::NGINX.path();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The port is chosen before nginx binds it: another process may take it in between.
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            for (name, content) in files {
                std::fs::write(dir.path().join(name), content).unwrap();
            }
            std::fs::write(
                dir.path().join("site.conf"),
                edit(render_example(jwtgate, addr, upstream)),
            )
            .unwrap();
            std::fs::copy(root.join(WRAPPER), dir.path().join("nginx.conf")).unwrap();
            let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
            let child = Command::new(&binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let mut nginx = Self { child, addr, dir };
            match nginx.wait_listening().await {
                Ok(()) => return nginx,
                Err(e) => last_error = e,
            }
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    async fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("nginx exited with {status}\n{}", self.logs()));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx not listening on {} after 10s\n{}",
                    self.addr,
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// nginx's stderr and error log, for failure messages.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- stderr:\n{}--- error.log:\n{}",
            read("stderr.log"),
            read("error.log")
        )
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `master_process off` in the wrapper: this one process is all of nginx.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stands in for jwtgate with statuses jwtgate cannot produce (yet): the original URI
/// `/status/NNN` is answered with NNN, and a 429 or 503 with `Retry-After: 7` (anything else,
/// 418).
async fn status_stub() -> SocketAddr {
    serve(Router::new().fallback(|headers: HeaderMap| async move {
        let code = headers
            .get("x-original-uri")
            .and_then(|v| v.to_str().ok())
            .and_then(|u| u.strip_prefix("/status/"))
            .and_then(|c| c.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::IM_A_TEAPOT);
        let mut response: Response = (code, "{\"error\":\"stub\"}").into_response();
        if matches!(code.as_u16(), 429 | 503) {
            response.headers_mut().insert("retry-after", "7".parse().unwrap());
        }
        if code.is_redirection() {
            response
                .headers_mut()
                .insert("location", "http://127.0.0.1:9/".parse().unwrap());
        }
        response
    }))
    .await
}

/// jwtgate with two providers — `corp` (keys served) and `down` (its JWKS endpoint answers 500,
/// so its keys are unavailable) — behind nginx running the example, in front of the echo app.
struct World {
    corp: Issuer,
    down: Issuer,
    _gk: Gatekeeper,
    nginx: Nginx,
    app_hits: Arc<AtomicUsize>,
}

impl World {
    async fn start() -> Self {
        let corp = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
        let down = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "a")]).await;
        down.set_mode(Mode::Status(500));
        let providers = format!(
            "{}{}{ROUTES}",
            jwks_provider("corp", &corp.url(), &corp.jwks_uri(), ""),
            jwks_provider("down", &down.url(), &down.jwks_uri(), "")
        );
        let gk = Gatekeeper::start(&providers, &[]).await;
        wait_provider_fresh(&gk, "corp").await;
        let app_hits = Arc::new(AtomicUsize::new(0));
        let app = echo_app(app_hits.clone()).await;
        let nginx = Nginx::start(gk.http_addr, app).await;
        Self {
            corp,
            down,
            _gk: gk,
            nginx,
            app_hits,
        }
    }

    fn token(&self, issuer: &Issuer, extra: Value) -> String {
        let mut c = claims(&issuer.url());
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("a"), c)
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        get(self.nginx.url(path), headers).await
    }

    fn app_hits(&self) -> usize {
        self.app_hits.load(Ordering::SeqCst)
    }
}

/// Waits (bounded) until one provider's keys are loaded; `/readyz` as a whole stays 503 while
/// another provider has none.
async fn wait_provider_fresh(gk: &Gatekeeper, provider: &str) {
    for _ in 0..100 {
        let (_, body) = gk.readyz().await;
        let fresh = body["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["provider"] == provider && p["state"] == "fresh");
        if fresh {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("provider {provider} has no keys after 5s");
}

#[tokio::test]
async fn allowed_request_reaches_the_app_with_the_identity_from_jwtgate() {
    let w = World::start().await;
    let auth = format!("Bearer {}", w.token(&w.corp, json!({})));
    let r = w.get("/api/items?page=2", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{r:?}\n{}", w.nginx.logs());
    assert_eq!(
        r.app_saw("x-jwt-sub"),
        ["alice"],
        "captured with auth_request_set: {r:?}"
    );
    let app: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(app["uri"], "/api/items?page=2");
    assert_eq!(app["method"], "GET");
    assert!(
        r.header("x-jwtgate-trace-id").is_some_and(|t| !t.is_empty()),
        "trace id passed to the client: {r:?}"
    );
    // jwtgate saw the original request, not the subrequest's URI: a public path needs no token.
    let r = w.get("/public/docs", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.app_saw("x-jwt-sub"), Vec::<String>::new());
    assert_eq!(w.app_hits(), 2);
}

#[tokio::test]
async fn a_client_sent_identity_header_never_reaches_the_app() {
    let w = World::start().await;
    let auth = format!("Bearer {}", w.token(&w.corp, json!({})));

    let r = w
        .get("/api/me", &[("authorization", &auth), ("x-jwt-sub", "mallory")])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.app_saw("x-jwt-sub"), ["alice"], "overwritten, not appended: {r:?}");

    // Public route: jwtgate answers an empty x-jwt-sub, and nginx then sends none at all.
    for headers in [
        vec![("x-jwt-sub", "mallory")],
        vec![("X-JWT-SUB", "mallory")],
        vec![("x-jwt-sub", "mallory"), ("authorization", auth.as_str())],
    ] {
        let r = w.get("/public/page", &headers).await;
        assert_eq!(r.status, 200, "{headers:?}: {r:?}");
        let seen = r.app_saw("x-jwt-sub");
        assert!(seen.iter().all(String::is_empty), "{headers:?}: app saw {seen:?}");
    }

    // Twice in one request: neither copy survives.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client
        .get(w.nginx.url("/api/me"))
        .header("authorization", &auth)
        .header("x-jwt-sub", "mallory")
        .header("x-jwt-sub", "eve")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["headers"]["x-jwt-sub"], json!(["alice"]), "{body}");
}

#[tokio::test]
async fn missing_or_bad_token_is_401_with_the_bearer_challenge() {
    let w = World::start().await;

    let r = w.get("/api/items", &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"jwtgate\""), "{r:?}");
    assert!(r.header("x-jwtgate-trace-id").is_some_and(|t| !t.is_empty()), "{r:?}");

    let forged = sign(&pem("rsa-b.pem"), Algorithm::RS256, Some("a"), claims(&w.corp.url()));
    for token in [forged.as_str(), "not.a.token"] {
        let auth = format!("Bearer {token}");
        let r = w
            .get("/api/items", &[("authorization", &auth), ("x-jwt-sub", "alice")])
            .await;
        assert_eq!(r.status, 401, "{token}: {r:?}");
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer realm=\"jwtgate\""), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    assert_eq!(w.app_hits(), 0, "denied requests never reach the app");
}

#[tokio::test]
async fn missing_role_is_403_at_the_client() {
    let w = World::start().await;
    let alice = format!("Bearer {}", w.token(&w.corp, json!({})));
    let r = w.get("/admin/users", &[("authorization", &alice)]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("x-jwtgate-trace-id").is_some_and(|t| !t.is_empty()), "{r:?}");
    assert_eq!(w.app_hits(), 0);

    let admin = format!("Bearer {}", w.token(&w.corp, json!({ "roles": ["admin"] })));
    let r = w.get("/admin/users", &[("authorization", &admin)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.app_saw("x-jwt-sub"), ["alice"]);
}

#[tokio::test]
async fn a_rate_limited_client_gets_429_with_retry_after_and_the_ratelimit_headers() {
    let w = World::start().await;
    // The example sends nginx's $remote_addr as X-Real-IP: the client's address is the key.
    for remaining in ["1", "0"] {
        let r = w.get("/login/start", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("ratelimit")
                .map(|v| v.split(';').nth(1).unwrap_or_default().to_owned()),
            Some(format!("r={remaining}")),
            "{r:?}"
        );
    }
    let r = w.get("/login/start", &[]).await;
    assert_eq!(r.status, 429, "mapped back by error_page: {r:?}\n{}", w.nginx.logs());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=30).contains(&retry),
        "one of 2 per minute back within 30s: {retry}"
    );
    assert_eq!(r.header("ratelimit-policy"), Some("\"login-per-ip\";q=2;w=60"));
    assert_eq!(
        r.header("ratelimit"),
        Some(format!("\"login-per-ip\";r=0;t={retry}").as_str())
    );
    assert!(r.header("x-jwtgate-trace-id").is_some_and(|t| !t.is_empty()), "{r:?}");
    assert_eq!(w.app_hits(), 2);
    // Other routes are not counted by the rule.
    assert_eq!(w.get("/public/docs", &[]).await.status, 200);
}

#[tokio::test]
async fn keys_unavailable_is_503_at_the_client_not_500() {
    let w = World::start().await;
    let auth = format!("Bearer {}", w.token(&w.down, json!({})));
    let r = w.get("/api/items", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 503, "mapped back by error_page: {r:?}\n{}", w.nginx.logs());
    assert!(r.header("x-jwtgate-trace-id").is_some_and(|t| !t.is_empty()), "{r:?}");
    assert_eq!(
        r.header("retry-after"),
        Some("5"),
        "jwtgate's Retry-After passed on: {r:?}"
    );
    assert_eq!(w.app_hits(), 0);
    assert!(
        w.nginx.logs().contains("auth request unexpected status: 503"),
        "nginx itself saw 503 and made it 500 first:\n{}",
        w.nginx.logs()
    );

    // The other provider is unaffected.
    let auth = format!("Bearer {}", w.token(&w.corp, json!({})));
    assert_eq!(w.get("/api/items", &[("authorization", &auth)]).await.status, 200);
}

#[tokio::test]
async fn statuses_auth_request_cannot_carry_are_mapped_back_and_others_fail_closed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = echo_app(hits.clone()).await;
    let nginx = Nginx::start(status_stub().await, app).await;

    for code in [429, 503] {
        let r = get(nginx.url(&format!("/status/{code}")), &[]).await;
        assert_eq!(r.status, code, "{r:?}\n{}", nginx.logs());
        assert_eq!(r.header("retry-after"), Some("7"), "{r:?}");
    }
    // jwtgate's 400 (a host that is not one, an ambiguous check) and 431 (too many header
    // lines) reach the client as they are.
    for code in [400, 431] {
        let r = get(nginx.url(&format!("/status/{code}")), &[]).await;
        assert_eq!((r.status, r.header("retry-after")), (code, None), "{r:?}");
    }
    // Anything else that is not 2xx/401/403 stays a 500, and without a stray Retry-After.
    for code in [302, 404, 500, 502] {
        let r = get(nginx.url(&format!("/status/{code}")), &[]).await;
        assert_eq!(r.status, 500, "{code}: {r:?}");
        assert_eq!(r.header("retry-after"), None, "{code}: {r:?}");
    }
    // The stub's 200 allows, and nginx's own pass-through cases still work.
    assert_eq!(get(nginx.url("/status/200"), &[]).await.status, 200);
    assert_eq!(get(nginx.url("/status/401"), &[]).await.status, 401);
    assert_eq!(get(nginx.url("/status/403"), &[]).await.status, 403);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "only the allowed request reached the app"
    );
}

#[tokio::test]
async fn jwtgate_unreachable_fails_closed_with_500() {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = echo_app(hits.clone()).await;
    // A loopback port with nothing listening.
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let nginx = Nginx::start(dead, app).await;
    let r = get(nginx.url("/public/page"), &[]).await;
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// The status of a request sent to nginx byte for byte: `target` (origin- or absolute-form) in
/// `version`, with `host` as the Host line's bytes (none when `None`).
async fn raw_status(nginx: &Nginx, target: &str, version: &str, host: Option<&[u8]>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(nginx.addr).await.unwrap();
    let mut req = format!("GET {target} {version}\r\n").into_bytes();
    if let Some(host) = host {
        req.extend_from_slice(b"Host: ");
        req.extend_from_slice(host);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn the_host_checked_is_the_host_nginx_serves_whatever_the_host_line_says() {
    let w = World::start().await;
    // nginx serves each of these as admin.example.com ($host) and forwards it so: jwtgate must
    // decide on admin.example.com too, not on the Host header's bytes (`:x`, `:80:80`, `:%30`,
    // a non-ASCII port, which a header read as absent once replaced by the check request's own
    // Host), nor on another Host than an absolute-form request line names.
    let cases: [(&str, &str, Option<&[u8]>); 7] = [
        ("/public/docs", "HTTP/1.1", Some(b"admin.example.com:x")),
        ("/public/docs", "HTTP/1.1", Some(b"admin.example.com:80:80")),
        ("/public/docs", "HTTP/1.1", Some(b"admin.example.com:%30")),
        ("/public/docs", "HTTP/1.1", Some(b"admin.example.com:\xc2\xb2")),
        ("/public/docs", "HTTP/1.1", Some(b"ADMIN.example.com.:8080")),
        (
            "http://admin.example.com/public/docs",
            "HTTP/1.1",
            Some(b"www.example.com"),
        ),
        ("http://admin.example.com/public/docs", "HTTP/1.0", None),
    ];
    for (target, version, host) in cases {
        let status = raw_status(&w.nginx, target, version, host).await;
        assert_eq!(
            status,
            401,
            "{target} {version} {:?}: the admin host's route\n{}",
            host.map(String::from_utf8_lossy),
            w.nginx.logs()
        );
    }
    assert_eq!(w.app_hits(), 0, "none of them reached the application");
    assert_eq!(
        raw_status(&w.nginx, "/public/docs", "HTTP/1.1", Some(b"www.example.com")).await,
        200
    );
}

#[tokio::test]
async fn other_families_headers_and_forged_identity_change_nothing_behind_nginx() {
    let w = World::start().await;
    let alice = format!("Bearer {}", w.token(&w.corp, json!({})));
    let forged = [
        ("x-forwarded-uri", "/public/x"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-host", "public.example"),
        ("x-original-url", "http://public.example/public/x"),
        ("x-forwarded-client-cert", "Hash=00"),
        ("x-jwt-sub", "mallory"),
    ];
    // The request checked is the one nginx forwards: /admin, not the forged /public/x.
    let r = w.get("/admin/users", &forged).await;
    assert_eq!(r.status, 401, "{r:?}\n{}", w.nginx.logs());
    let mut with_token = forged.to_vec();
    with_token.push(("authorization", &alice));
    let r = w.get("/admin/users", &with_token).await;
    assert_eq!(r.status, 403, "{r:?}");
    // No identity (public, optional without a token, dry run without one): none at the
    // application; an identity: jwtgate's.
    for path in ["/public/docs", "/profile", "/preview/x"] {
        let r = w.get(path, &forged).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(r.app_saw("x-jwt-sub").is_empty(), "{path}: {r:?}");
        assert!(r.app_saw("x-jwt-sub").iter().all(|v| v != "mallory"), "{path}");
    }
    for path in ["/profile", "/preview/x", "/api/x"] {
        let r = w.get(path, &with_token).await;
        assert_eq!(
            (r.status, r.app_saw("x-jwt-sub")),
            (200, vec!["alice".to_owned()]),
            "{path}: {r:?}"
        );
    }
    // `path_prefix` holds whole segments: /public-admin is not under /public (the last route,
    // `/`, wants a token).
    let r = w.get("/public-admin/users", &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
}

#[tokio::test]
async fn a_fresh_x_forwarded_for_per_request_escapes_no_client_ip_limit() {
    let w = World::start().await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let xff = format!("198.51.100.{i}");
        let r = w
            .get("/login/start", &[("x-forwarded-for", &xff), ("x-real-ip", &xff)])
            .await;
        statuses.push(r.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "the client is nginx's $remote_addr, whatever it sends"
    );
}

/// The example with TLS on and client certificates asked for (`ssl_verify_client optional`), in
/// front of jwtgate with a certificate-bound provider and a DPoP provider: tokens, proofs and
/// thumbprints from `jose`, requests from real curl over TLS.
#[tokio::test]
async fn sender_constrained_tokens_through_nginx_with_client_certificates_and_dpop() {
    let jose = common::jose::Jose::new();
    let yaml = format!(
        "{}http_auth: {{ client_cert_header: x-client-cert }}\n",
        common::jose::BOUND_PROVIDERS
    );
    let gk = Gatekeeper::start(&yaml, &[("jwks.json", &jose.jwks())]).await;
    gk.wait_ready().await;
    let app = echo_app(Arc::new(AtomicUsize::new(0))).await;
    let ca = common::certs::Ca::new("nginx test CA");
    let pki = tempfile::tempdir().unwrap();
    ca.server().write(pki.path(), "server");
    ca.client("workload-a").write(pki.path(), "a");
    ca.client("workload-b").write(pki.path(), "b");
    let read = |name: &str| std::fs::read_to_string(pki.path().join(name)).unwrap();
    let files = [
        ("server.pem", read("server.pem")),
        ("server.key", read("server.key")),
        ("ca.pem", ca.pem().to_owned()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let nginx = Nginx::start_with(gk.http_addr, app, &files, |site| {
        let listen = regex::Regex::new(r"listen ([0-9.:]+);").unwrap();
        listen
            .replace(&site, "listen $1 ssl;\n    ssl_certificate server.pem;\n    ssl_certificate_key server.key;\n    ssl_client_certificate ca.pem;\n    ssl_verify_client optional;")
            .into_owned()
    })
    .await;
    let base = format!("https://127.0.0.1:{}", nginx.addr.port());
    std::fs::write(pki.path().join("ca.pem"), ca.pem()).unwrap();
    let pki_dir = pki.path().to_owned();
    let curl = move |cert: Option<&str>, headers: Vec<String>, url: String| {
        let pki = &pki_dir;
        let curl = tools::CURL.path();
        let mut cmd = Command::new(curl);
        cmd.args([
            "-sS",
            "--max-time",
            "10",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--cacert",
        ])
        .arg(pki.join("ca.pem"));
        if let Some(name) = cert {
            cmd.arg("--cert")
                .arg(pki.join(format!("{name}.pem")))
                .arg("--key")
                .arg(pki.join(format!("{name}.key")));
        }
        for h in headers {
            cmd.args(["-H", &h]);
        }
        let out = cmd.arg(url).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };
    let call = |cert: Option<&'static str>, headers: Vec<String>, path: &str| {
        let url = format!("{base}{path}");
        let curl = curl.clone();
        async move {
            tokio::task::spawn_blocking(move || curl(cert, headers, url))
                .await
                .unwrap()
        }
    };
    let status = |head: &str| head.lines().next().unwrap_or_default().to_owned();
    // Certificate-bound: only with the certificate the token names.
    let x5t = jose.x5t(&pki.path().join("a.pem"));
    let token =
        jose.token(json!({ "iss": "https://mesh.test", "sub": "svc-a", "aud": "api", "cnf": { "x5t#S256": x5t } }));
    let bearer = vec![format!("Authorization: Bearer {token}")];
    let head = call(Some("a"), bearer.clone(), "/api/orders").await;
    assert!(status(&head).contains(" 200"), "{head}\n{}", nginx.logs());
    for (cert, reason) in [
        (None, "no client certificate"),
        (Some("b"), "client certificate does not match"),
    ] {
        let head = call(cert, bearer.clone(), "/api/orders").await;
        assert!(status(&head).contains(" 401"), "{cert:?}: {head}");
        assert!(head.contains(reason), "{cert:?}: {head}");
    }
    // A thief with the token but not the key: forged certificate headers — the certificate
    // itself (public, URL-encoded as nginx would), and an XFCC with its hash — stand in for
    // nothing, with or without a certificate of their own.
    let escaped: String = std::fs::read_to_string(pki.path().join("a.pem"))
        .unwrap()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let x5t_hex = common::jose::xfcc_hash(&x5t);
    let mut forged = bearer.clone();
    forged.push(format!("X-Client-Cert: {escaped}"));
    forged.push(format!("X-Forwarded-Client-Cert: Hash={x5t_hex}"));
    for cert in [None, Some("b")] {
        let head = call(cert, forged.clone(), "/api/orders").await;
        assert!(status(&head).contains(" 401"), "{cert:?}: {head}");
    }
    // DPoP: the proof names https://127.0.0.1:PORT/api/orders, as the client sent it.
    let token = jose.bound_token(
        json!({ "iss": "https://strict.test", "sub": "alice", "aud": "api" }),
        "a",
        "ES256",
    );
    let proof =
        |htu: &str| jose.proof(json!({ "client": "a", "alg": "ES256", "htm": "GET", "htu": htu, "token": token }));
    let dpop = |p: String| vec![format!("Authorization: DPoP {token}"), format!("DPoP: {p}")];
    let head = call(None, dpop(proof(&format!("{base}/api/orders"))), "/api/orders?page=2").await;
    assert!(status(&head).contains(" 200"), "{head}\n{}", nginx.logs());
    let head = call(
        None,
        dpop(proof(&format!("http://127.0.0.1:{}/api/orders", nginx.addr.port()))),
        "/api/orders",
    )
    .await;
    assert!(status(&head).contains(" 401"), "{head}");
    assert!(
        head.contains("www-authenticate: dpop ") && head.contains("htu does not match"),
        "{head}"
    );
    // Two DPoP headers reach jwtgate as two: refused.
    let mut two = dpop(proof(&format!("{base}/api/orders")));
    two.push(format!("DPoP: {}", proof(&format!("{base}/api/orders"))));
    let head = call(None, two, "/api/orders").await;
    assert!(head.contains("more than one dpop proof"), "{head}");
}
