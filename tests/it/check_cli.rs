//! `jwtgate check` on the policy cookbook of docs/policies.md (`examples/cookbook.yaml`), and `serve`
//! reloading its config on SIGHUP, through the real binary.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{mint_dev, repo};
use serde_json::json;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jwtgate"))
}

fn explain(args: &[&str]) -> (i32, String) {
    let out: Output = bin()
        .arg("check")
        .arg("--config")
        .arg(repo("examples/cookbook.yaml"))
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn check_explains_a_check_as_the_http_door_reads_it() {
    let reader = mint_dev(json!({"scope": "api.read"}));
    let auth = format!("authorization: Bearer {reader}");
    // /auth reads nginx's family: the request is the one in X-Original-*.
    let (code, out) = explain(&[
        "--door",
        "/auth",
        "--header",
        "x-original-method: GET",
        "--header",
        "x-original-uri: /api/orders",
        "--header",
        &auth,
        "--header",
        "x-real-ip: 198.51.100.4",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("door:     /auth reads the nginx family (X-Original-Method, X-Original-URI, X-Original-Host); client address: x-real-ip; client certificate: none; trusted proxies: 127.0.0.1/32 ::1/128"),
        "{out}"
    );
    assert!(out.contains("request:  GET /api/orders"), "{out}");
    assert!(out.contains("route:    api-read"), "{out}");
    assert!(
        out.contains("remove  x-jwt-tenant"),
        "an identity header the token lacks: {out}"
    );
    // Another family's header: refused before any route, 400.
    let (code, out) = explain(&[
        "--door",
        "/auth",
        "--header",
        "x-original-method: GET",
        "--header",
        "x-original-uri: /health",
        "--header",
        "x-forwarded-uri: /admin",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "FAIL  the door can tell which request it is asked about: ambiguous original request (x-forwarded-uri)"
        ),
        "{out}"
    );
    assert!(
        out.contains("decision: DENY 400 ambiguous original request (x-forwarded-uri)"),
        "{out}"
    );
    assert!(!out.contains("www-authenticate"), "no challenge on a 400: {out}");
    // From a peer that is not a trusted proxy, nothing is believed.
    let (code, out) = explain(&[
        "--door",
        "/auth",
        "--peer",
        "10.1.2.3",
        "--header",
        "x-original-method: GET",
        "--header",
        "x-original-uri: /health",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DENY 403 original request unknown"), "{out}");
    // The Envoy door: the method and path under the prefix; a host that is not one is a 400.
    let (code, out) = explain(&[
        "--door",
        "/ext_authz",
        "--path",
        "/health",
        "--header",
        "host: acme.example.com:x",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("decision: DENY 400 invalid host: port is not a number"),
        "{out}"
    );
    // No door there: an unusable argument.
    let out = bin()
        .args(["check", "--config"])
        .arg(repo("examples/cookbook.yaml"))
        .args(["--door", "/nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--door /nope: no HTTP door at this path (doors: /auth, /ext_authz)")
    );
}

#[test]
fn check_explains_each_cookbook_recipe() {
    let reader = mint_dev(json!({"scope": "api.read"}));
    let writer = mint_dev(json!({"scope": "api.read api.write"}));
    let acme = mint_dev(json!({"tenant": "acme"}));

    let (code, out) = explain(&["--path", "/health/ready"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("route:    health"), "{out}");
    assert!(out.contains("route is public"), "{out}");

    let (code, out) = explain(&["--token", &reader, "--method", "GET", "--path", "/api/orders"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("route:    api-read") && out.contains("provider: dev"),
        "{out}"
    );
    assert!(out.contains("  pass  scopes include all of [api.read]"), "{out}");
    assert!(out.contains("set     x-jwt-sub: alice"), "{out}");

    let (code, out) = explain(&["--token", &reader, "--method", "POST", "--path", "/api/orders"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("route:    api-write"), "{out}");
    assert!(
        out.contains("  FAIL  scopes include all of [api.write]: missing scope: api.write"),
        "{out}"
    );
    assert!(out.contains("decision: DENY 403 missing scope: api.write"), "{out}");
    let (code, _) = explain(&["--token", &writer, "--method", "POST", "--path", "/api/orders"]);
    assert_eq!(code, 0);

    let (code, out) = explain(&["--token", &reader, "--path", "/admin/users"]);
    assert_eq!(code, 0, "dry run allows: {out}");
    assert!(
        out.contains("  FAIL  realm_access.roles has all of [admin]: missing role: admin"),
        "{out}"
    );
    assert!(
        out.contains("dry run: would deny (403 missing role: admin), allowed"),
        "{out}"
    );

    let (code, out) = explain(&["--token", &acme, "--host", "acme.example.com", "--path", "/"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("route:    tenant-acme"), "{out}");
    let (code, out) = explain(&["--token", &acme, "--host", "globex.example.com", "--path", "/"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("claim tenant is one of [\"globex\",\"initech\"]: claim tenant not accepted"),
        "{out}"
    );
}

#[test]
fn check_says_why_a_token_was_rejected() {
    let mut expired = mint_dev(json!({"scope": "api.read", "exp": 1000}));
    let (code, out) = explain(&["--token", &expired, "--path", "/api"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  FAIL  token verifies (issuer, algorithm, key, signature, claims): token expired"),
        "{out}"
    );
    expired.push('x');
    let (code, out) = explain(&["--token", &expired, "--path", "/api"]);
    assert_eq!(code, 1);
    assert!(out.contains("decision: DENY 401"), "{out}");
    let (code, out) = explain(&["--path", "/nowhere", "--host", "other.org"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("route:    (none matched)") && out.contains("no route matches this request"),
        "{out}"
    );
    let (code, out) = explain(&["--path", "/api"]);
    assert_eq!(code, 1);
    assert!(out.contains("  FAIL  token present: missing token"), "{out}");
}

#[test]
fn check_refuses_a_bad_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "providers: []\n").unwrap();
    let out = bin()
        .args(["check", "--path", "/"])
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.yaml: providers: at least one provider is required"),
        "{err}"
    );
}

/// `check` finds the token where `serve` would: through the provider's configured sources. With
/// only a cookie (or a query parameter) enabled there is no `Authorization` header to peek at,
/// yet the provider's keys must be loaded and the token verified.
#[test]
fn check_finds_the_token_in_a_cookie_or_the_query_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cookie.yaml");
    std::fs::write(
        &file,
        format!(
            "providers:\n  - name: dev\n    issuer: \"https://dev.jwtgate.local/\"\n    jwks_file: {}\n    audiences: [demo-api]\n    sources: [{{ cookie: access_token }}, {{ query: at }}]\n    claims_to_headers: {{ sub: x-jwt-sub }}\n",
            repo("examples/keys/jwks.json").display()
        ),
    )
    .unwrap();
    let token = mint_dev(json!({}));
    let run = |args: &[&str]| {
        let out = bin()
            .arg("check")
            .arg("--config")
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
    };

    let cookie = format!("cookie: theme=dark; access_token={token}");
    let (code, out) = run(&["--header", &cookie, "--path", "/api"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  pass  token found in cookie access_token"), "{out}");
    assert!(
        out.contains("provider: dev") && out.contains("set     x-jwt-sub: alice"),
        "{out}"
    );

    let (code, out) = run(&["--path", &format!("/api?at={token}")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  pass  token found in query parameter at"), "{out}");

    // A bearer header is not a source this provider enables: no token at all.
    let (code, out) = run(&["--token", &token, "--path", "/api"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  FAIL  token present: missing token"), "{out}");
}

/// Kills the server if the test fails half-way.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(health_auth: &str) -> String {
    let keys = repo("examples/keys/jwks.json");
    format!(
        "listen: {{ grpc: \"127.0.0.1:0\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}\nproviders:\n  - name: dev\n    issuer: \"https://dev.jwtgate.local/\"\n    jwks_file: {}\n    audiences: [demo-api]\nroutes:\n  - {{ name: health, match: {{ path_prefix: /health }}, auth: {health_auth} }}\nhttp_auth: {{ envoy_prefix: /ext_authz }}\n",
        keys.display()
    )
}

#[test]
fn serve_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwtgate.yaml");
    std::fs::write(&file, config("public")).unwrap();
    let child = bin()
        .args(["serve", "--config"])
        .arg(&file)
        .env("JWTGATE_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = server.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if line.contains(what) {
                return line;
            }
        }
        panic!("no log line with {what:?} within 10s");
    };
    let listening: serde_json::Value = serde_json::from_str(&wait_for("jwtgate listening")).unwrap();
    let http = listening["fields"]["http"].as_str().unwrap().to_owned();
    let status = |path: &str| -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = reqwest::Client::builder().no_proxy().build().unwrap();
            c.get(format!("http://{http}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(status("/ext_authz/health"), 200);

    std::fs::write(&file, config("required")).unwrap();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("SIGHUP: reloading the config");
    wait_for("config applied");
    assert_eq!(status("/ext_authz/health"), 401, "the reloaded route needs a token");

    // A broken file is refused and the config in force stays.
    std::fs::write(&file, "providers: [").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("config reload refused");
    assert_eq!(status("/ext_authz/health"), 401);

    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            assert!(s.success(), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
