//! Opaque access tokens verified by introspection (RFC 7662) at a real OAuth 2.0 authorization
//! server: panva's `oidc-provider` (npm, `tests/idp/`), issuing opaque client-credentials tokens
//! and serving introspection and revocation on loopback. Checks go through the real gRPC door.
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::Value;
use tonic::transport::Channel;

/// The authorization server as a child process, killed when dropped.
struct Idp {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Idp {
    /// Starts `node tests/idp/idp.mjs` on an ephemeral loopback port (bounded: 30 s).
    fn start() -> Self {
        let node = std::env::var("JWTGATE_NODE").unwrap_or_else(|_| "node".into());
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
    fn as_app(&self, path: &str, form: String) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .basic_auth("app", Some("app-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
    }

    /// An opaque access token for client `app` with `scope` (client credentials grant).
    async fn token(&self, scope: &str) -> String {
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

    async fn revoke(&self, token: &str) {
        let r = self
            .as_app("/token/revocation", format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Introspection requests the IdP has received.
    async fn introspections(&self) -> u64 {
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
    async fn slow(&self, ms: u64) {
        let r = self
            .http
            .post(format!("{}/__slow?ms={ms}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    fn stop(&mut self) {
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
fn config(idp: &Idp, introspection_extra: &str) -> String {
    format!(
        "  - name: legacy-oauth\n    issuer: \"{url}\"\n    audiences: [api]\n    claims_to_headers: {{ client_id: x-client-id }}\n    introspection:\n      endpoint: \"{url}/token/introspection\"\n      client_id: jwtgate\n      client_secret_file: idp.secret\n{introspection_extra}\
         routes:\n  - {{ name: admin, match: {{ path_prefix: /admin }}, require: {{ scopes: [admin] }} }}\n  - {{ name: api, match: {{ path_prefix: /api }}, require: {{ scopes: [read] }} }}\n",
        url = idp.url
    )
}

async fn gatekeeper(idp: &Idp, introspection_extra: &str) -> (Gatekeeper, AuthorizationClient<Channel>) {
    let gk = Gatekeeper::start(
        &config(idp, introspection_extra),
        &[("idp.secret", b"jwtgate-secret\n")],
    )
    .await;
    gk.wait_ready().await;
    let client = gk.client().await;
    (gk, client)
}

async fn at(client: &mut AuthorizationClient<Channel>, path: &str, token: &str) -> Result<Answer, tonic::Code> {
    check(
        client,
        check_request(path, &[("authorization", &format!("Bearer {token}"))]),
    )
    .await
}

#[tokio::test]
async fn an_opaque_token_is_allowed_by_scope_and_refused_for_a_scope_it_lacks_from_the_cached_answer() {
    let idp = Idp::start();
    let (gk, mut client) = gatekeeper(&idp, "").await;
    let t = idp.token("read").await;
    let a = at(&mut client, "/api/x", &t).await.unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert_eq!(
        a.headers.get("x-client-id").map(String::as_str),
        Some("app"),
        "claims_to_headers reads the answer's members"
    );
    assert_eq!(idp.introspections().await, 1);

    // The cached answer is re-checked per route: no scope `admin`, whatever was allowed before.
    let a = at(&mut client, "/admin", &t).await.unwrap();
    assert_eq!((a.grpc_code, a.reason().as_str()), (7, "missing scope: admin"));
    assert_eq!(at(&mut client, "/api/y", &t).await.unwrap().grpc_code, 0);
    assert_eq!(
        idp.introspections().await,
        1,
        "one introspection for three checks (cache_ttl 60s)"
    );

    let admin = idp.token("read admin").await;
    assert_eq!(at(&mut client, "/admin", &admin).await.unwrap().grpc_code, 0);
    let m = scrape(gk.http_addr).await;
    assert_eq!(
        m.get(r#"jwtgate_introspections_total{direction="consumed",provider="legacy-oauth",outcome="active"}"#),
        Some(&2.0)
    );
    assert_eq!(
        m.get(r#"jwtgate_introspection_cache_lookups_total{provider="legacy-oauth",outcome="hit"}"#),
        Some(&2.0)
    );

    // Not a token the IdP issued: inactive, 401, remembered for negative_cache_ttl.
    let a = at(&mut client, "/api", "bm90LWEtdG9rZW4").await.unwrap();
    assert_eq!((a.grpc_code, a.reason().as_str()), (16, "token not active"));
    let (status, body) = gk.readyz().await;
    assert_eq!(status, 200, "an introspection-only provider is ready: {body}");
    assert_eq!(body["providers"][0]["state"], "introspection");
}

#[tokio::test]
async fn a_token_the_provider_revoked_is_refused_once_the_cached_answer_expires() {
    let idp = Idp::start();
    let (_gk, mut client) = gatekeeper(&idp, "      cache_ttl: 1s\n").await;
    let t = idp.token("read").await;
    assert_eq!(at(&mut client, "/api", &t).await.unwrap().grpc_code, 0);
    idp.revoke(&t).await;
    // Within cache_ttl the kept answer stands; after it, the IdP's word.
    eventually("the revoked token refused", Duration::from_secs(5), async || {
        at(&mut client, "/api", &t).await.unwrap().grpc_code == 16
    })
    .await;
    assert_eq!(at(&mut client, "/api", &t).await.unwrap().reason(), "token not active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_checks_of_a_new_token_cause_one_introspection() {
    let idp = Idp::start();
    let (_gk, client) = gatekeeper(&idp, "").await;
    let t = idp.token("read").await;
    idp.slow(300).await; // all 50 arrive while the first call is out
    let before = idp.introspections().await;
    let checks: Vec<_> = (0..50)
        .map(|_| {
            let (mut client, t) = (client.clone(), t.clone());
            tokio::spawn(async move { at(&mut client, "/api", &t).await.map(|a| a.grpc_code) })
        })
        .collect();
    for c in checks {
        assert_eq!(c.await.unwrap(), Ok(0));
    }
    assert_eq!(idp.introspections().await - before, 1, "single flight");
}

#[tokio::test]
async fn a_slow_or_down_provider_is_503_and_kept_actives_keep_working_until_their_ttl() {
    let mut idp = Idp::start();
    let (gk, mut client) = gatekeeper(&idp, "      timeout: 300ms\n").await;
    let kept = idp.token("read").await;
    assert_eq!(at(&mut client, "/api", &kept).await.unwrap().grpc_code, 0);

    idp.slow(1000).await;
    let fresh = idp.token("read").await;
    assert_eq!(
        at(&mut client, "/api", &fresh).await.map(|a| a.grpc_code),
        Err(tonic::Code::Unavailable),
        "slower than timeout: UNAVAILABLE, never a 401"
    );
    idp.stop();
    assert_eq!(
        at(&mut client, "/api", &fresh).await.map(|a| a.grpc_code),
        Err(tonic::Code::Unavailable),
        "down: UNAVAILABLE"
    );
    assert_eq!(
        at(&mut client, "/api", &kept).await.unwrap().grpc_code,
        0,
        "the kept answer still serves"
    );
    let m = scrape(gk.http_addr).await;
    assert!(
        m.get(r#"jwtgate_introspections_total{direction="consumed",provider="legacy-oauth",outcome="error"}"#)
            .is_some_and(|n| *n >= 2.0),
        "{m:?}"
    );
}

#[tokio::test]
async fn jwtgate_check_shows_an_introspected_tokens_fields() {
    let idp = Idp::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.secret"), "jwtgate-secret\n").unwrap();
    std::fs::write(dir.path().join("jwtgate.yaml"), config_text(&config(&idp, ""))).unwrap();
    let token = idp.token("read").await;
    let explain = |path: &'static str| {
        let (dir, token) = (dir.path().to_owned(), token.clone());
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
                .args(["check", "--config"])
                .arg(dir.join("jwtgate.yaml"))
                .args(["--token", &token, "--path", path])
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8(out.stdout).unwrap())
        })
    };
    let (code, out) = explain("/api").await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("opaque token introspected at provider legacy-oauth: active, client_id=\"app\" scope=\"read\" aud=\"api\" exp="),
        "{out}"
    );
    let (code, out) = explain("/admin").await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("missing scope: admin"), "{out}");
}

#[tokio::test]
async fn with_discovery_one_provider_takes_both_kinds_and_finds_its_endpoint_there() {
    let idp = Idp::start();
    let provider = format!(
        "  - name: legacy-oauth\n    issuer: \"{url}\"\n    discovery: true\n    audiences: [api]\n    introspection:\n      client_id: jwtgate\n      client_secret_file: idp.secret\n",
        url = idp.url
    );
    let gk = Gatekeeper::start(&provider, &[("idp.secret", b"jwtgate-secret")]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let t = idp.token("read").await;
    assert_eq!(
        at(&mut client, "/api", &t).await.unwrap().grpc_code,
        0,
        "introspection_endpoint from discovery"
    );
    assert_eq!(idp.introspections().await, 1);
}

/// An RFC 7662 endpoint on loopback that answers every token with `answer` (for members the
/// real IdP leaves out of client-credentials tokens: `sub`, `jti`).
async fn fixed_endpoint(answer: Value) -> String {
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

const ADMIN: &str = "admin-token-0123456789abcdef";

/// jwtgate with one introspection-only provider for `issuer` at `endpoint` (answers never kept)
/// and the static admin token [`ADMIN`].
async fn behind_fixed_endpoint(issuer: &str, endpoint: &str) -> (Gatekeeper, AuthorizationClient<Channel>) {
    let provider = format!(
        "  - name: opaque\n    issuer: \"{issuer}\"\n    audiences: [api]\n    introspection: {{ endpoint: \"{endpoint}\", client_id: j, client_secret_file: s.secret, cache_ttl: 0s }}\nadmin: {{ token: {{ file: admin.txt }} }}\n"
    );
    let gk = Gatekeeper::start(&provider, &[("s.secret", b"secret"), ("admin.txt", ADMIN.as_bytes())]).await;
    gk.wait_ready().await;
    let client = gk.client().await;
    (gk, client)
}

#[tokio::test]
async fn jwtgates_own_revocations_apply_to_introspected_tokens() {
    let issuer = "https://opaque.example";
    let endpoint = fixed_endpoint(serde_json::json!({
        "active": true, "iss": issuer, "sub": "bob", "jti": "op-1", "aud": "api", "scope": "read",
        "iat": now() - 60, "exp": now() + 600,
    }))
    .await;
    let (gk, mut client) = behind_fixed_endpoint(issuer, &endpoint).await;
    assert_eq!(at(&mut client, "/api", "opaque-1").await.unwrap().grpc_code, 0);
    let mut admin = gk.admin().await;
    use jwtgate::admin::pb;
    admin
        .revoke_token(authed(
            pb::RevokeTokenRequest {
                target: Some(pb::revoke_token_request::Target::Id(pb::TokenId {
                    issuer: issuer.into(),
                    jti: "op-1".into(),
                    expires_at: now() + 600,
                })),
                reason: String::new(),
            },
            ADMIN,
        ))
        .await
        .unwrap();
    let a = at(&mut client, "/api", "opaque-1").await.unwrap();
    assert_eq!((a.grpc_code, a.reason().as_str()), (16, "token revoked"), "by jti");

    let endpoint = fixed_endpoint(serde_json::json!({
        "active": true, "sub": "carol", "aud": "api", "iat": now() - 60, "exp": now() + 600,
    }))
    .await;
    let (gk, mut client) = behind_fixed_endpoint(issuer, &endpoint).await;
    assert_eq!(at(&mut client, "/api", "opaque-2").await.unwrap().grpc_code, 0);
    gk.admin()
        .await
        .revoke_subject(authed(
            pb::RevokeSubjectRequest {
                issuer: issuer.into(),
                subject: "carol".into(),
                issued_before: now(),
                reason: String::new(),
            },
            ADMIN,
        ))
        .await
        .unwrap();
    let a = at(&mut client, "/api", "opaque-2").await.unwrap();
    assert_eq!(
        (a.grpc_code, a.reason().as_str()),
        (16, "token revoked"),
        "by subject cut-off"
    );
}

#[tokio::test]
async fn a_check_the_proxy_gives_up_on_leaves_its_call_running_for_the_next() {
    let idp = Idp::start();
    let (_gk, mut client) = gatekeeper(&idp, "      timeout: 2s\n").await;
    let t = idp.token("read").await;
    idp.slow(400).await;
    let before = idp.introspections().await;
    let mut impatient = tonic::Request::new(check_request("/api", &[("authorization", &format!("Bearer {t}"))]));
    impatient.set_timeout(Duration::from_millis(100));
    let gave_up = client.check(impatient).await.unwrap_err();
    assert!(
        matches!(gave_up.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
        "{gave_up:?}"
    );
    // The call it started is still out; this check joins it instead of starting another.
    assert_eq!(at(&mut client, "/api", &t).await.unwrap().grpc_code, 0);
    assert_eq!(idp.introspections().await - before, 1);
}

#[tokio::test]
async fn the_http_door_answers_opaque_tokens_as_the_grpc_door_does() {
    let idp = Idp::start();
    let text = format!("{}http_auth: {{ envoy_prefix: /ext_authz }}\n", config(&idp, ""));
    let gk = Gatekeeper::start(&text, &[("idp.secret", b"jwtgate-secret\n")]).await;
    gk.wait_ready().await;
    let t = idp.token("read").await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("http://{}/ext_authz{path}", gk.http_addr))
            .header("authorization", format!("Bearer {t}"))
            .send()
    };
    let allowed = get("/api").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-client-id"], "app");
    let refused = get("/admin").await.unwrap();
    assert_eq!(refused.status(), 403, "missing scope, from the kept answer");
    assert_eq!(idp.introspections().await, 1);
}

/// jwtgate with one introspection-only provider for `issuer` at `endpoint` (answers never kept,
/// `sub` forwarded as `x-jwt-sub`), `provider_extra` among the provider's fields and
/// `introspection_extra` in its `introspection:` block.
async fn behind_fixed_endpoint_with(
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
fn active(issuer: &str, extra: Value) -> Value {
    let mut answer = serde_json::json!({
        "active": true, "iss": issuer, "sub": "bob", "aud": "api", "scope": "read",
        "iat": now() - 60, "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        answer[k] = v.clone();
    }
    answer
}

/// A refresh token is no access token: Ory Hydra says so with `token_use`, Keycloak with
/// `typ`, RFC 7662 with `token_type`. Refused by default (case-insensitively); a provider may
/// list other types to refuse, or none.
#[tokio::test]
async fn an_introspected_refresh_token_is_refused_in_each_idps_spelling() {
    let issuer = "https://opaque.example";
    for (idp, extra) in [
        ("hydra", serde_json::json!({"token_use": "refresh_token"})),
        ("keycloak", serde_json::json!({"typ": "Refresh"})),
        ("keycloak offline", serde_json::json!({"typ": "Offline"})),
        ("rfc 7662", serde_json::json!({"token_type": "refresh_token"})),
        (
            "rfc 7662, upper case",
            serde_json::json!({"token_type": "REFRESH_TOKEN"}),
        ),
    ] {
        let endpoint = fixed_endpoint(active(issuer, extra)).await;
        let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
        let a = at(&mut client, "/api", "opaque-refresh").await.unwrap();
        assert_eq!(
            (a.grpc_code, a.http_status, a.reason().as_str()),
            (16, Some(401), "token is a refresh token"),
            "{idp}: {a:?}"
        );
    }
    for (idp, extra) in [
        ("hydra", serde_json::json!({"token_use": "access_token"})),
        ("keycloak", serde_json::json!({"typ": "Bearer"})),
        ("rfc 7662", serde_json::json!({"token_type": "Bearer"})),
        ("none said", serde_json::json!({})),
    ] {
        let endpoint = fixed_endpoint(active(issuer, extra)).await;
        let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
        let a = at(&mut client, "/api", "opaque-access").await.unwrap();
        assert_eq!(a.grpc_code, 0, "{idp}: {a:?}");
    }
    // Opted out: refresh tokens accepted; or another type refused.
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"token_use": "refresh_token"}))).await;
    let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", ", refuse_token_types: []").await;
    assert_eq!(at(&mut client, "/api", "opaque-r").await.unwrap().grpc_code, 0);
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"typ": "ID"}))).await;
    let (_gk, mut client) =
        behind_fixed_endpoint_with(issuer, &endpoint, "", ", refuse_token_types: [refresh_token, id]").await;
    let a = at(&mut client, "/api", "opaque-id").await.unwrap();
    assert_eq!(
        (a.grpc_code, a.reason().as_str()),
        (16, "token is not an access token (type id)"),
        "{a:?}"
    );
}

/// RFC 7662 §2.2 takes `sub` and `jti` from RFC 7519, where both are strings: an answer with a
/// number is refused, unless the provider reads integers as their decimal text.
#[tokio::test]
async fn an_introspected_numeric_sub_or_jti_is_refused_unless_read_as_decimal() {
    let issuer = "https://opaque.example";
    for (extra, reason) in [
        (serde_json::json!({"sub": 42}), "sub must be a string"),
        (serde_json::json!({"jti": 7}), "jti must be a string"),
    ] {
        let endpoint = fixed_endpoint(active(issuer, extra)).await;
        let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
        let a = at(&mut client, "/api", "opaque-n").await.unwrap();
        assert_eq!((a.grpc_code, a.reason().as_str()), (16, reason), "{a:?}");
    }
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"sub": 42, "jti": 7}))).await;
    let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "    numeric_ids: decimal\n", "").await;
    let a = at(&mut client, "/api", "opaque-n").await.unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("42"));
}

/// An answer whose `cnf` binds the token to a key or a certificate, from a provider that
/// checks neither, is refused as a bound JWT is.
#[tokio::test]
async fn an_introspected_sender_constrained_token_is_refused_by_a_provider_without_binding() {
    let issuer = "https://opaque.example";
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"cnf": {"jkt": "abc"}}))).await;
    let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
    let a = at(&mut client, "/api", "opaque-b").await.unwrap();
    assert_eq!(
        (a.grpc_code, a.reason().as_str()),
        (16, "token is sender-constrained (cnf.jkt)"),
        "{a:?}"
    );
}
