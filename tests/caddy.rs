//! `examples/caddy/Caddyfile` under a real Caddy (Debian's package; `bash tests/run.sh` unpacks
//! it into `.tools/` and exports `JWTGATE_CADDY`), in front of an echo application, with
//! in-process jwtgate deciding through its HTTP door: an allowed request reaches the application
//! with the identity from jwtgate and never with a client-forged one; 401, 403 and 429 reach the
//! client as jwtgate gave them; spellings of a protected path through a public one
//! (`/public/../admin`, `%2e%2e`, `//admin`) never reach the application unchecked, and an
//! encoded slash reaches it still encoded.
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::web::{Reply, echo_app, get};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXAMPLE: &str = "examples/caddy/Caddyfile";

const ROUTES: &str = "routes:
  - { name: public, match: { path_prefix: /public }, auth: public }
  - { name: admin, match: { path_prefix: /admin }, require: { roles: [admin] } }
  - { name: api, match: { path_prefix: /api } }
rate_limits:
  rules:
    - { name: api-per-user, by: [\"claim:sub\"], limit: 2, per: 1h, match: { routes: [api] } }
";

fn caddy_binary() -> PathBuf {
    let path = std::env::var_os("JWTGATE_CADDY")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo(".tools/caddy/usr/bin/caddy"));
    assert!(
        path.is_file(),
        "no caddy at {}: run `bash tests/run.sh` (it unpacks Debian's caddy into .tools/)",
        path.display()
    );
    path
}

/// Caddy running the example; killed on drop.
struct Caddy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Caddy {
    async fn start(jwtgate: SocketAddr, upstream: SocketAddr) -> Self {
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
        let child = Command::new(caddy_binary())
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

struct World {
    issuer: Issuer,
    _gk: Gatekeeper,
    caddy: Caddy,
    hits: Arc<AtomicUsize>,
}

impl World {
    async fn start() -> Self {
        let issuer = rsa_issuer().await;
        let yaml = format!(
            "{}{ROUTES}",
            jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
        );
        let gk = Gatekeeper::start(&yaml, &[]).await;
        gk.wait_ready().await;
        let hits = Arc::new(AtomicUsize::new(0));
        let app = echo_app(hits.clone()).await;
        let caddy = Caddy::start(gk.http_addr, app).await;
        Self {
            issuer,
            _gk: gk,
            caddy,
            hits,
        }
    }

    fn token(&self, extra: serde_json::Value) -> String {
        format!("Bearer {}", rsa_token(&self.issuer.url(), extra))
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        get(self.caddy.url(path), headers).await
    }
}

#[tokio::test]
async fn caddy_forward_auth_carries_jwtgates_decisions() {
    bounded(Duration::from_secs(60), async {
        let w = World::start().await;
        let user = w.token(json!({}));

        let r = w
            .get(
                "/api/items?page=2",
                &[("authorization", &user), ("x-jwt-sub", "mallory")],
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}\n{}", w.caddy.log());
        assert_eq!(
            r.app_saw("x-jwt-sub"),
            ["alice"],
            "jwtgate's identity, not the client's"
        );
        let app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(app["uri"], "/api/items?page=2");

        // A public route: no identity, and the client's forged one does not pass.
        let r = w.get("/public/docs", &[("x-jwt-sub", "mallory")]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(!r.app_saw("x-jwt-sub").contains(&"mallory".to_owned()), "{r:?}");

        let r = w.get("/api/items", &[]).await;
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"jwtgate\""));
        assert!(r.header("x-jwtgate-trace-id").is_some_and(|t| t.len() == 32), "{r:?}");

        let r = w.get("/admin/users", &[("authorization", &user)]).await;
        assert_eq!(r.status, 403, "{r:?}");
        assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"));

        // The rule allows alice 2 api requests an hour: her second passes, the third is a 429.
        assert_eq!(w.get("/api/items", &[("authorization", &user)]).await.status, 200);
        let r = w.get("/api/items", &[("authorization", &user)]).await;
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
            let status = w.caddy.raw_status(path).await;
            assert!(
                matches!(status, 400 | 401 | 403 | 404),
                "{path}: {status}\n{}",
                w.caddy.log()
            );
        }
        assert_eq!(
            w.hits.load(Ordering::SeqCst),
            hits,
            "no bypass spelling reached the application"
        );
        // An encoded slash is no separator (jwtgate's rule, Envoy's default): this is a public
        // path, and the application gets it still encoded, not as /admin.
        let r = w.get("/public/..%2Fadmin/users", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        let app: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(app["uri"], "/public/..%2Fadmin/users");
    })
    .await;
}
