//! Shared test helpers: a real JWKS/OIDC server on loopback (axum), fixture keys, token minting,
//! and an in-process jwtgate on ephemeral ports with a real tonic client.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

pub mod certs;
pub mod ingress_examples;
pub mod introspection;
pub mod jose;
pub mod opaque_tokens;
pub mod rate_limits;
pub mod redis_server;
pub mod redis_tls;
pub mod tools;
pub mod tracing;
pub mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `jwtgate token mint` run through the binary with a key from `examples/keys/`, `--alg`,
/// `--kid` if given, these claims and `extra` arguments; the one token line it prints (panics,
/// with its stderr, on anything else).
pub fn mint_cli(key: &str, alg: &str, kid: Option<&str>, claims: &Value, extra: &[&str]) -> String {
    let key = repo(&format!("examples/keys/{key}")).display().to_string();
    let claims = claims.to_string();
    let mut args = vec!["mint", "--key", &key, "--alg", alg, "--claims", &claims];
    if let Some(kid) = kid {
        args.extend(["--kid", kid]);
    }
    args.extend(extra);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .arg("token")
        .args(&args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "token mint {args:?}: {stderr}");
    assert!(
        stdout.ends_with('\n') && stdout.trim().lines().count() == 1,
        "one token line: {stdout:?}"
    );
    stdout.trim().to_owned()
}

/// A token for the quickstart's dev provider (RS256, `dev-rsa-1`) with `extra` claims added to
/// its `iss`, `aud: demo-api` and `sub: alice`, minted by the binary.
pub fn mint_dev(extra: Value) -> String {
    let mut claims = json!({"iss": "https://dev.jwtgate.local/", "aud": "demo-api", "sub": "alice"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    mint_cli("dev-rsa.pem", "RS256", Some("dev-rsa-1"), &claims, &[])
}

/// Runs `f` under a time bound, failing the test past it.
pub async fn bounded<F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
}

/// A JWKS issuer serving the RS256 fixture key `rsa-a.pem` as `kid` "rsa".
pub async fn rsa_issuer() -> Issuer {
    Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await
}

pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture key")
}

/// The fixture key that signs each algorithm.
pub fn key_for(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ec-p256.pem",
        Algorithm::ES384 => "ec-p384.pem",
        Algorithm::EdDSA => "ed25519.pem",
        _ => "rsa-a.pem",
    }
}

/// Public JWK for a fixture key.
pub fn jwk(name: &str, alg: Algorithm, kid: &str) -> Value {
    jwtgate_core::mint::public_jwk(&pem(name), alg, kid).expect("jwk")
}

/// A loopback port that was free a moment ago (bound and released; a server binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` (`TERM`, `STOP`, …) to process `pid`.
pub fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A token of `issuer` ([`claims`] with `extra` merged in) signed by the fixture key that
/// [`rsa_issuer`] serves.
pub fn rsa_token(issuer: &str, extra: Value) -> String {
    let mut c = claims(issuer);
    for (k, v) in extra.as_object().expect("object") {
        c[k] = v.clone();
    }
    sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), c)
}

/// Runs `jwtgate ARGS FILE` with `env` on a config it must refuse: asserts exit code 2 and
/// returns what it printed on stderr.
pub fn refused(args: &[&str], file: &Path, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(args)
        .arg(file)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "jwtgate {args:?}: {stderr}");
    stderr
}

/// Seconds since the epoch, from jwtgate's one clock.
pub fn now() -> u64 {
    jwtgate_core::clock::now().unix
}

/// Signs `claims` with a fixture key (or, for HS*, the raw secret in `key`).
pub fn sign(key: &[u8], alg: Algorithm, kid: Option<&str>, claims: Value) -> String {
    let key = jwtgate_core::mint::signing_key(key, alg).expect("signing key");
    jwtgate_core::mint::mint(&key, alg, kid, claims.as_object().expect("object"), 600).expect("mint")
}

/// Hand-assembles a token from header and payload JSON text and a raw signature segment.
pub fn raw_token(header: &str, payload: &str, signature_b64: &str) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.{}", e.encode(header), e.encode(payload), signature_b64)
}

/// How the fake issuer answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Normal,
    /// As `Normal`, but the answer (the key set as it was when the request came) is sent this
    /// much later: a fetch in flight across a rotation.
    Slow(Duration),
    Status(u16),
    Hang,
    Html,
    Huge,
    RedirectElsewhere,
}

pub struct IssuerState {
    pub jwks: Value,
    pub mode: Mode,
    pub cache_control: Option<String>,
    pub jwks_hits: u64,
    pub discovery_hits: u64,
    pub issuer: String,
    pub discovery_issuer: Option<String>,
}

/// A real HTTP issuer on loopback: `/jwks` and `/.well-known/openid-configuration`.
#[derive(Clone)]
pub struct Issuer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<IssuerState>>,
    cancel: CancellationToken,
}

impl Issuer {
    pub async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(IssuerState {
            jwks: json!({ "keys": keys }),
            mode: Mode::Normal,
            cache_control: None,
            jwks_hits: 0,
            discovery_hits: 0,
            issuer: format!("http://{addr}"),
            discovery_issuer: None,
        }));
        let router = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(state.clone());
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(c.cancelled_owned())
                .await
                .unwrap()
        });
        Self { addr, state, cancel }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.url())
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        self.state.lock().unwrap().jwks = json!({ "keys": keys });
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn jwks_hits(&self) -> u64 {
        self.state.lock().unwrap().jwks_hits
    }

    /// Sets the `Cache-Control` header served with the JWKS.
    pub fn set_cache_control(&self, value: &str) {
        self.state.lock().unwrap().cache_control = Some(value.to_string());
    }

    /// Stops serving: new connections are refused from now on.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    pub fn discovery_hits(&self) -> u64 {
        self.state.lock().unwrap().discovery_hits
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        if Arc::strong_count(&self.state) <= 2 {
            self.cancel.cancel();
        }
    }
}

async fn jwks(State(state): State<Arc<Mutex<IssuerState>>>) -> Response {
    let (mode, body, cc) = {
        let mut s = state.lock().unwrap();
        s.jwks_hits += 1;
        (s.mode.clone(), s.jwks.to_string(), s.cache_control.clone())
    };
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    match mode {
        Mode::Normal | Mode::Slow(_) => {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", "application/json".parse().unwrap());
            if let Some(cc) = cc {
                headers.insert("cache-control", cc.parse().unwrap());
            }
            (headers, body).into_response()
        }
        Mode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            body.into_response()
        }
        Mode::Html => ([("content-type", "text/html")], "<html>oops</html>").into_response(),
        Mode::Huge => {
            let huge = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(2 << 20));
            ([("content-type", "application/json")], huge).into_response()
        }
        Mode::RedirectElsewhere => (StatusCode::FOUND, [("location", "http://127.0.0.2:9/jwks")]).into_response(),
    }
}

async fn discovery(State(state): State<Arc<Mutex<IssuerState>>>) -> Response {
    let mut s = state.lock().unwrap();
    s.discovery_hits += 1;
    let issuer = s.discovery_issuer.clone().unwrap_or_else(|| s.issuer.clone());
    let doc = json!({ "issuer": issuer, "jwks_uri": format!("{}/jwks", s.issuer) });
    ([("content-type", "application/json")], doc.to_string()).into_response()
}

/// A whole config file: ephemeral loopback listeners and `providers_yaml` (the `providers:`
/// list, then any other top-level YAML).
pub fn config_text(providers_yaml: &str) -> String {
    format!(
        "listen: {{ grpc: \"127.0.0.1:0\", http: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}\nproviders:\n{providers_yaml}"
    )
}

/// jwtgate running in this process on ephemeral loopback ports.
pub struct Gatekeeper {
    pub running: Option<jwtgate::server::Running>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// `listen.introspection`'s bound address, when the config has one.
    pub introspection_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Gatekeeper {
    /// Starts jwtgate with `providers_yaml` (the `providers:` list, indented by two spaces)
    /// and any extra top-level YAML. Files in `files` are written beside the config first.
    pub async fn start(providers_yaml: &str, files: &[(&str, &[u8])]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), providers_yaml, files).await
    }

    /// Like [`Gatekeeper::start`], in `dir` (e.g. one a stopped Gatekeeper returned, to restart
    /// on its embedded revocation store).
    pub async fn start_in(dir: tempfile::TempDir, providers_yaml: &str, files: &[(&str, &[u8])]) -> Self {
        Self::start_text(dir, &config_text(providers_yaml), files).await
    }

    /// Starts jwtgate in `dir` with the whole config `text` (its own `listen:` block included).
    pub async fn start_text(dir: tempfile::TempDir, text: &str, files: &[(&str, &[u8])]) -> Self {
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let config = jwtgate_core::config::Config::parse(text, "test.yaml", dir.path()).expect("test config");
        let shutdown = CancellationToken::new();
        let running = jwtgate::server::start(&config, shutdown.clone()).await.unwrap();
        Self {
            grpc_addr: running.grpc_addr,
            http_addr: running.http_addr,
            admin_addr: running.admin_addr,
            introspection_addr: running.introspection_addr,
            running: Some(running),
            shutdown,
            _dir: dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Shuts down, waits (bounded) until every server has finished and the revocation store is
    /// closed (its file lock released), and hands back the directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        let running = self.running.take().unwrap();
        let store = running.store.clone();
        tokio::time::timeout(Duration::from_secs(10), running.wait())
            .await
            .expect("jwtgate did not stop within 10s");
        // The store's background task ends on the same signal, a moment later.
        for _ in 0..200 {
            if Arc::strong_count(&store) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "the revocation store is still held 5s after shutdown"
        );
        drop(store);
        std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap())
    }

    /// A client of the admin API.
    pub async fn admin(&self) -> jwtgate::admin::pb::admin_client::AdminClient<Channel> {
        jwtgate::admin::pb::admin_client::AdminClient::connect(format!("http://{}", self.admin_addr))
            .await
            .unwrap()
    }

    /// The configuration in force, to reload.
    pub fn live(&self) -> &std::sync::Arc<jwtgate_core::live::Live> {
        &self.running.as_ref().unwrap().live
    }

    pub async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .unwrap()
    }

    /// Waits (bounded) until `/readyz` says ready.
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.http_addr);
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("jwtgate did not become ready within 5s");
    }

    pub async fn readyz(&self) -> (u16, Value) {
        let r = reqwest::get(format!("http://{}/readyz", self.http_addr)).await.unwrap();
        let status = r.status().as_u16();
        (status, serde_json::from_str(&r.text().await.unwrap()).unwrap())
    }
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A `/metrics` scrape of the HTTP listener at `http_addr`, as `name{labels}` → value.
pub async fn scrape(http_addr: impl std::fmt::Display) -> std::collections::BTreeMap<String, f64> {
    let text = reqwest::get(format!("http://{http_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    samples(&text)
}

/// The sample lines of a `/metrics` scrape, as `name{labels}` → value.
pub fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The resident memory of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `jwtgate serve` as a child process with JSON logs on stderr, killed when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Lines read but not yet asked for, oldest first.
    backlog: std::cell::RefCell<std::collections::VecDeque<Value>>,
    /// The `jwtgate listening` log line's fields: `grpc`, `http`, `admin` addresses.
    pub listening: Value,
}

impl ServeProcess {
    /// Starts `jwtgate serve --config config` with `env` set, and waits (bounded) until it
    /// listens.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_under(&[], config, env)
    }

    /// [`ServeProcess::start`], run by `wrapper` (a command and its arguments, such as
    /// `taskset -c 0`) when not empty.
    pub fn start_under(wrapper: &[&str], config: &Path, env: &[(&str, &str)]) -> Self {
        let jwtgate = env!("CARGO_BIN_EXE_jwtgate");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(jwtgate);
                c
            }
            None => std::process::Command::new(jwtgate),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("JWTGATE_LOG_FORMAT", "json")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut served = Self {
            child,
            lines,
            backlog: Default::default(),
            listening: Value::Null,
        };
        served.listening = served.wait_for("jwtgate listening")["fields"].clone();
        served
    }

    /// An address from the `jwtgate listening` line: `grpc`, `http` or `admin`.
    pub fn addr(&self, listener: &str) -> String {
        self.listening[listener].as_str().unwrap().to_owned()
    }

    /// The next JSON log line whose message is `message` (bounded: 10 s; blocks the thread).
    /// Other lines read meanwhile are kept for later calls.
    pub fn wait_for(&self, message: &str) -> Value {
        self.wait_until(message, |m| m == message)
    }

    /// [`ServeProcess::wait_for`] a message that starts with `prefix`.
    pub fn wait_for_prefix(&self, prefix: &str) -> Value {
        self.wait_until(prefix, |m| m.starts_with(prefix))
    }

    fn wait_until(&self, what: &str, wanted: impl Fn(&str) -> bool) -> Value {
        let is_wanted = |v: &Value| v["fields"]["message"].as_str().is_some_and(&wanted);
        let mut backlog = self.backlog.borrow_mut();
        if let Some(i) = backlog.iter().position(is_wanted) {
            return backlog.remove(i).unwrap_or_default();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if is_wanted(&v) {
                    return v;
                }
                backlog.push_back(v);
            }
        }
        let seen: Vec<&Value> = backlog.iter().map(|v| &v["fields"]["message"]).collect();
        panic!("no log line {what:?} from jwtgate serve within 10s; seen: {seen:?}");
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it a signal (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, signal: &str) {
        kill(self.child.id(), signal);
    }

    /// A gRPC client of its ext_authz listener.
    pub async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.addr("grpc")))
            .await
            .unwrap()
    }

    /// Waits (bounded by `limit`) for it to exit; its status.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "jwtgate serve still running after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.addr("http"));
        for _ in 0..200 {
            if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("jwtgate serve did not become ready within 10s");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` checks with `token` sent at once, spread over `replicas` in turn: how many got each
/// (HTTP status, reason) — an allow counts as (200, "").
pub async fn concurrently(
    replicas: &[&Gatekeeper],
    token: &str,
    n: usize,
) -> std::collections::BTreeMap<(i32, String), usize> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = replicas[i % replicas.len()].client().await;
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            check(&mut client, bearer(&token)).await.unwrap()
        }));
    }
    let mut answers = std::collections::BTreeMap::new();
    for t in tasks {
        let a = t.await.unwrap();
        *answers.entry((a.http_status.unwrap_or(200), a.reason())).or_insert(0) += 1;
    }
    answers
}

/// A CheckRequest for `GET path` with these headers.
pub fn check_request(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                time: None,
                http: Some(HttpRequest {
                    id: "req-1".into(),
                    method: "GET".into(),
                    path: path.into(),
                    host: "api.example.com".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<HashMap<_, _>>(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// Fails unless every key of the map `v` (`what`, for the message) is in `allowed`: an example's
/// fields held against the field list of the API it is written for (Istio's, Envoy Gateway's),
/// where the API's own schema is not at hand.
pub fn fields_within(what: &str, v: &Value, allowed: &[&str]) {
    for key in v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not a map: {v}"))
        .keys()
    {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: `{key}` is not a field of the API"
        );
    }
}

/// `attributes.request.http` of a request [`check_request`] made, to change a field of it.
pub fn http_mut(req: &mut CheckRequest) -> &mut HttpRequest {
    req.attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .expect("made by check_request")
}

pub fn bearer(token: &str) -> CheckRequest {
    check_request("/api", &[("authorization", &format!("Bearer {token}"))])
}

/// What a CheckResponse says, flattened for assertions.
#[derive(Debug)]
pub struct Answer {
    pub grpc_code: i32,
    pub http_status: Option<i32>,
    pub headers: HashMap<String, String>,
    pub removed: Vec<String>,
    /// `ok_response.query_parameters_to_remove`.
    pub removed_query: Vec<String>,
    /// `ok_response.response_headers_to_add`: headers for the client on an allow.
    pub response_headers: HashMap<String, String>,
    pub body: Option<Value>,
    pub metadata: Option<Value>,
}

impl Answer {
    pub fn reason(&self) -> String {
        self.body
            .as_ref()
            .and_then(|b| b["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

#[allow(deprecated)]
pub fn answer(r: CheckResponse) -> Answer {
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    let grpc_code = r.status.map(|s| s.code).unwrap_or(-1);
    let metadata = r.dynamic_metadata.map(|m| struct_json(&m));
    match r.http_response {
        Some(HttpResponse::OkResponse(ok)) => Answer {
            grpc_code,
            http_status: None,
            headers: ok
                .headers
                .into_iter()
                .filter_map(|h| {
                    assert_eq!(
                        h.append.map(|a| a.value),
                        Some(false),
                        "identity headers must overwrite"
                    );
                    h.header.map(|h| (h.key, h.value))
                })
                .collect(),
            removed: ok.headers_to_remove,
            removed_query: ok.query_parameters_to_remove,
            response_headers: ok
                .response_headers_to_add
                .into_iter()
                .filter_map(|h| h.header.map(|h| (h.key, h.value)))
                .collect(),
            body: None,
            metadata,
        },
        Some(HttpResponse::DeniedResponse(d)) => Answer {
            grpc_code,
            http_status: d.status.map(|s| s.code),
            headers: d
                .headers
                .into_iter()
                .filter_map(|h| h.header.map(|h| (h.key, h.value)))
                .collect(),
            removed: vec![],
            removed_query: vec![],
            response_headers: HashMap::new(),
            body: serde_json::from_str(&d.body).ok(),
            metadata,
        },
        _ => panic!("CheckResponse without http_response"),
    }
}

fn struct_json(s: &envoy_types::pb::google::protobuf::Struct) -> Value {
    use envoy_types::pb::google::protobuf::value::Kind;
    let mut out = serde_json::Map::new();
    for (k, v) in &s.fields {
        let v = match &v.kind {
            Some(Kind::StringValue(s)) => json!(s),
            Some(Kind::StructValue(s)) => struct_json(s),
            Some(Kind::NumberValue(n)) => json!(n),
            Some(Kind::BoolValue(b)) => json!(b),
            _ => Value::Null,
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// Sends one Check and flattens the answer; a gRPC error becomes `Err(code)`.
pub async fn check(client: &mut AuthorizationClient<Channel>, req: CheckRequest) -> Result<Answer, tonic::Code> {
    client
        .check(req)
        .await
        .map(|r| answer(r.into_inner()))
        .map_err(|s| s.code())
}

/// A provider block for the issuer's JWKS with fast refetch windows for tests.
pub fn jwks_provider(name: &str, issuer: &str, jwks_uri: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    issuer: \"{issuer}\"\n    jwks_uri: \"{jwks_uri}\"\n    audiences: [api]\n    claims_to_headers: {{ sub: x-jwt-sub }}\n{extra}"
    )
}

pub fn claims(issuer: &str) -> Value {
    json!({ "iss": issuer, "sub": "alice", "aud": "api" })
}

/// `message` with `authorization: Bearer {credential}` metadata (an admin API call).
pub fn authed<T>(message: T, credential: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {credential}").parse().unwrap());
    req
}

/// Polls `cond` every 50 ms until it holds, failing after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
