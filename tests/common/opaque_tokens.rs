//! The opaque-token tests' harness: panva's oidc-provider as the identity provider (Node), and
//! fixed introspection endpoints served in-process.

use crate::common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

/// The authorization server as a child process, killed when dropped.
pub struct Idp {
    pub child: Child,
    pub url: String,
    pub http: reqwest::Client,
}

impl Idp {
    /// Starts `node tests/idp/idp.mjs` on an ephemeral loopback port (bounded: 30 s).
    pub fn start() -> Self {
        let node = crate::common::tools::NODE.path();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp/idp.mjs");
        let mut child = Command::new(node)
            .args([script, "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (tests/run.sh installs tests/idp's packages)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the IdP did not start within 30 s");
        let url = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line from the IdP: {line:?}"))
            .to_owned();
        Self {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    /// A form `POST` to `path` authenticated as client `app`.
    pub fn as_app(&self, path: &str, form: String) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .basic_auth("app", Some("app-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
    }

    /// An opaque access token for client `app` with `scope` (client credentials grant).
    pub async fn token(&self, scope: &str) -> String {
        let r = self
            .as_app(
                "/token",
                format!("grant_type=client_credentials&scope={}", scope.replace(' ', "+")),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r: Value = serde_json::from_str(&r).unwrap();
        let token = r["access_token"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
        assert!(!token.contains('.'), "oidc-provider issued a JWT, not an opaque token");
        token
    }

    pub async fn revoke(&self, token: &str) {
        let r = self
            .as_app("/token/revocation", format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Introspection requests the IdP has received.
    pub async fn introspections(&self) -> u64 {
        let r = self
            .http
            .get(format!("{}/__stats", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r: Value = serde_json::from_str(&r).unwrap();
        r["introspections"].as_u64().unwrap()
    }

    /// Every introspection answer waits `ms` first.
    pub async fn slow(&self, ms: u64) {
        let r = self
            .http
            .post(format!("{}/__slow?ms={ms}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An introspection-only provider for the IdP (`extra` inside its `introspection:` block) and
/// two routes: `/api` needs scope `read`, `/admin` scope `admin`.
pub fn config(idp: &Idp, introspection_extra: &str) -> String {
    format!(
        "  - name: legacy-oauth\n    issuer: \"{url}\"\n    audiences: [api]\n    claims_to_headers: {{ client_id: x-client-id }}\n    introspection:\n      endpoint: \"{url}/token/introspection\"\n      client_id: jwtgate\n      client_secret_file: idp.secret\n{introspection_extra}\
         routes:\n  - {{ name: admin, match: {{ path_prefix: /admin }}, require: {{ scopes: [admin] }} }}\n  - {{ name: api, match: {{ path_prefix: /api }}, require: {{ scopes: [read] }} }}\n",
        url = idp.url
    )
}

pub async fn gatekeeper(idp: &Idp, introspection_extra: &str) -> (Gatekeeper, AuthorizationClient<Channel>) {
    let gk = Gatekeeper::start(
        &config(idp, introspection_extra),
        &[("idp.secret", b"jwtgate-secret\n")],
    )
    .await;
    gk.wait_ready().await;
    let client = gk.client().await;
    (gk, client)
}

pub async fn at(client: &mut AuthorizationClient<Channel>, path: &str, token: &str) -> Result<Answer, tonic::Code> {
    check(
        client,
        check_request(path, &[("authorization", &format!("Bearer {token}"))]),
    )
    .await
}

/// An RFC 7662 endpoint on loopback that answers every token with `answer` (for members the
/// real IdP leaves out of client-credentials tokens: `sub`, `jti`).
pub async fn fixed_endpoint(answer: Value) -> String {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/introspect",
        post(move || {
            let answer = answer.to_string();
            async move { ([("content-type", "application/json")], answer) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/introspect")
}

pub const ADMIN: &str = "admin-token-0123456789abcdef";

/// jwtgate with one introspection-only provider for `issuer` at `endpoint` (answers never kept)
/// and the static admin token [`ADMIN`].
pub async fn behind_fixed_endpoint(issuer: &str, endpoint: &str) -> (Gatekeeper, AuthorizationClient<Channel>) {
    let provider = format!(
        "  - name: opaque\n    issuer: \"{issuer}\"\n    audiences: [api]\n    introspection: {{ endpoint: \"{endpoint}\", client_id: j, client_secret_file: s.secret, cache_ttl: 0s }}\nadmin: {{ token: {{ file: admin.txt }} }}\n"
    );
    let gk = Gatekeeper::start(&provider, &[("s.secret", b"secret"), ("admin.txt", ADMIN.as_bytes())]).await;
    gk.wait_ready().await;
    let client = gk.client().await;
    (gk, client)
}

/// jwtgate with one introspection-only provider for `issuer` at `endpoint` (answers never kept,
/// `sub` forwarded as `x-jwt-sub`), `provider_extra` among the provider's fields and
/// `introspection_extra` in its `introspection:` block.
pub async fn behind_fixed_endpoint_with(
    issuer: &str,
    endpoint: &str,
    provider_extra: &str,
    introspection_extra: &str,
) -> (Gatekeeper, AuthorizationClient<Channel>) {
    let provider = format!(
        "  - name: opaque\n    issuer: \"{issuer}\"\n    audiences: [api]\n    claims_to_headers: {{ sub: x-jwt-sub }}\n{provider_extra}    introspection: {{ endpoint: \"{endpoint}\", client_id: j, client_secret_file: s.secret, cache_ttl: 0s{introspection_extra} }}\n"
    );
    let gk = Gatekeeper::start(&provider, &[("s.secret", b"secret")]).await;
    gk.wait_ready().await;
    let client = gk.client().await;
    (gk, client)
}

/// An active answer for `issuer` (read scope, ten minutes) with `extra` members.
pub fn active(issuer: &str, extra: Value) -> Value {
    let mut answer = serde_json::json!({
        "active": true, "iss": issuer, "sub": "bob", "aud": "api", "scope": "read",
        "iat": now() - 60, "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        answer[k] = v.clone();
    }
    answer
}
