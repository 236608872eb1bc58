//! The fuzz targets: one function per parser that reads outside input, each fed arbitrary bytes
//! and asserting what must hold for any input — never a panic, a hang or an answer outside the
//! documented set — and, where there is one, a property of the result (normalising twice
//! changes nothing; a parsed token's signing input is its first two segments).
//!
//! `fuzz_targets/NAME.rs` hands libFuzzer's input to the function of the same name; the tests
//! below replay every file of `corpus/NAME/` and `regressions/NAME/` through it, so a finding
//! stays fixed once its input is checked in.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a broken harness should stop the fuzzer

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use jwtgate::admin::AdminService;
use jwtgate::admin::pb;
use jwtgate::admin::pb::admin_server::Admin;
use jwtgate::server::grpc::to_gate_request;
use jwtgate::server::http::{HttpState, router};
use jwtgate_core::config::Config;
use jwtgate_core::gate::{Gate, Shared};
use jwtgate_core::live::SharedGate;
use jwtgate_core::request::{Decision, Request};
use jwtgate_core::revocation::Store;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The HMAC secret the fuzzed gate trusts (tokens in the corpora are signed with it).
pub const SECRET: &str = "fuzzing-secret-0123456789abcdef-0123456789abcdef";
/// The static admin token the fuzzed admin API accepts.
pub const ADMIN_TOKEN: &str = "fuzzing-admin-token-0123456789";

/// What every target shares: a runtime, a gate with a fixed config (an HMAC provider, routes of
/// every kind, rate limits), and its directory.
struct World {
    runtime: tokio::runtime::Runtime,
    gate: SharedGate,
    admin: AdminService,
    _dir: tempfile::TempDir,
}

const CONFIG: &str = r#"
listen: { grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0" }
providers:
  - name: legacy
    issuer: legacy
    hmac_secret: { file: secret }
    algorithms: [HS256]
    audiences: [api]
    max_lifetime: 1200d   # the checked-in seed tokens live until 2030 (else refused: they would outlive a subject cut-off)
    sources: [{ header: authorization, prefix: "Bearer " }, { cookie: at }, { query: access_token }]
    claims_to_headers: { sub: x-jwt-sub, tenant: x-jwt-tenant }
    forward_token: false
routes:
  - { name: health, match: { path_prefix: /health }, auth: public }
  - { name: admin, match: { path_prefix: /admin, methods: [POST] }, require: { roles: [admin] } }
  - { name: api, match: { path_regex: "/api/[a-z]+" }, require: { scopes: [api.read], claims: { tenant: { one_of: [a, b] } } } }
  - { name: optional, match: { path: /profile }, auth: optional }
  - { name: dry, match: { host: "*.example.com" }, require: { roles: [beta] }, mode: dry_run }
  - { name: rest, match: { path_prefix: / } }
rate_limits:
  rules:
    - { name: per-user, by: ["claim:sub"], limit: 1000000, per: 1s }
admin: { token: { file: admin.token } }
introspection: { enabled: true, clients: [{ id: fuzz, secret_file: admin.token }] }
revocation: { path: data }
http_auth: { envoy_prefix: /ext_authz }
"#;

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    let config = Config::parse(CONFIG, "fuzz.yaml", dir.path()).expect("the fuzz config");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (gate, admin) = runtime.block_on(async {
        let store = Store::open(&config.revocation).await.unwrap();
        let shared = Shared {
            revocations: store.set().clone(),
            store: Some(store.clone()),
            ..Shared::default()
        };
        let client = jwtgate_core::keys::fetch::client().unwrap();
        let gate: SharedGate = Arc::new(ArcSwap::from_pointee(Gate::new(&config, &client, shared)));
        let admin = AdminService::new(gate.clone(), store, &config.admin, &config.revocation);
        (gate, admin)
    });
    World {
        runtime,
        gate,
        admin,
        _dir: dir,
    }
});

/// Bytes as text the way a proxy would hand them over: invalid UTF-8 never reaches a parser
/// that takes `&str`, so such inputs are skipped.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `GET /api/orders` on host `shop` with `token` as its bearer token.
fn bearer_request(token: &str) -> Request {
    let mut req = Request {
        method: "GET".into(),
        path: "/api/orders".into(),
        host: "shop".into(),
        ..Request::default()
    };
    req.headers.insert("authorization".into(), format!("Bearer {token}"));
    req
}

fn decide(req: &Request) -> Decision {
    let world = &*WORLD;
    world.runtime.block_on(world.gate.load().decide(req))
}

/// A denial is one of the statuses the README documents.
fn assert_documented(decision: &Decision) {
    if let Decision::Deny(d) = decision {
        let status = jwtgate::server::render::http_status(&d.rejection);
        assert!(
            [400, 401, 403, 429, 503].contains(&status),
            "undocumented status {status} for {:?}",
            d.rejection
        );
    }
}

/// Compact token parsing and header checks, then the whole check of a request bearing it.
pub fn compact_token(data: &[u8]) {
    let Some(token) = text(data) else { return };
    if let Ok(jws) = jwtgate_core::jws::parse_unverified(token) {
        let dots: Vec<usize> = token.match_indices('.').map(|(i, _)| i).collect();
        assert_eq!(
            jws.signing_input,
            &token[..dots[1]],
            "the signing input is the first two segments"
        );
    }
    assert_documented(&decide(&bearer_request(token)));
}

/// JWKS documents.
pub fn jwks(data: &[u8]) {
    if let Ok(parsed) = jwtgate_core::keys::jwks::parse(data) {
        let listed = serde_json::from_slice::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.get("keys")?.as_array().map(Vec::len))
            .unwrap_or(0);
        assert!(parsed.set.len() <= listed, "more keys than the document lists");
    }
}

/// OIDC discovery documents: the issuer, a NUL byte, then the document.
pub fn discovery(data: &[u8]) {
    let (issuer, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"https://idp.example.com"[..], data),
    };
    let Some(issuer) = text(issuer) else { return };
    for member in ["jwks_uri", "introspection_endpoint"] {
        if let Ok(uri) = jwtgate_core::keys::fetch::discovered_url(body, issuer, member) {
            assert!(uri.starts_with("http://") || uri.starts_with("https://"), "{uri}");
        }
    }
}

/// The YAML config. Paths under /dev, /proc and /sys are skipped: a config naming a device that
/// blocks (`/dev/stdin`) blocks its reader, which is the operator's doing, not a finding.
pub fn config_yaml(data: &[u8]) {
    let Some(yaml) = text(data) else { return };
    if ["/dev", "/proc", "/sys"].iter().any(|p| yaml.contains(p)) {
        return;
    }
    let dir = &WORLD._dir;
    match Config::parse(yaml, "fuzz.yaml", dir.path()) {
        Ok(config) => assert!(!config.providers.is_empty(), "a config without providers"),
        Err(e) => assert!(
            !e.field.is_empty() && !e.reason.is_empty(),
            "an error without field or reason: {e:?}"
        ),
    }
}

/// Path normalisation, with the differential property: normalising a normalised path changes
/// nothing, and one never holds an empty, `.` or `..` segment or an escaped dot.
pub fn path(data: &[u8]) {
    let Some(raw) = text(data) else { return };
    let Ok(normal) = jwtgate_core::path::normalize(raw) else {
        return;
    };
    assert!(normal.starts_with('/'), "{normal:?}");
    assert_eq!(
        jwtgate_core::path::normalize(&normal).as_deref(),
        Ok(normal.as_str()),
        "normalising twice changed {raw:?}"
    );
    let segments: Vec<&str> = normal[1..].split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!s.is_empty() || last, "empty segment in {normal:?} from {raw:?}");
        assert!(*s != "." && *s != "..", "dot segment in {normal:?} from {raw:?}");
    }
    assert!(
        !normal.to_ascii_lowercase().contains("%2e"),
        "escaped dot in {normal:?}"
    );
}

/// The HTTP door's header handling: the input is a method line (`METHOD URI`), then header
/// lines (`name: value`), as the door would receive them from a proxy on loopback.
pub fn http_door(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, uri) = first.split_once(' ').unwrap_or(("GET", first));
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(mut request) = builder.body(axum::body::Body::empty()) else {
        return;
    };
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    let world = &*WORLD;
    let app = router(HttpState {
        gate: world.gate.clone(),
        draining: CancellationToken::new(),
        durations: Default::default(),
    });
    let response = world.runtime.block_on(app.oneshot(request)).unwrap();
    let status = response.status().as_u16();
    assert!(
        [200, 400, 401, 403, 404, 405, 429, 503].contains(&status),
        "the HTTP door answered {status}"
    );
}

/// `POST /introspect` on the RFC 7662 endpoint: the first line is the `Authorization` value
/// (`-` for none), the second the `Content-Type`, the rest the body. Whatever comes, the answer
/// is one of the documented statuses, and a 200 is `{"active":false}` exactly or an active
/// token's members.
pub fn introspection_request(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(auth), Some(content_type)) = (parts.next(), parts.next()) else {
        return;
    };
    let body = parts.next().unwrap_or_default().to_vec();
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(jwtgate::server::introspection::PATH);
    if auth != b"-" {
        builder = builder.header("authorization", auth);
    }
    let Ok(request) = builder
        .header("content-type", content_type)
        .body(axum::body::Body::from(body))
    else {
        return;
    };
    let world = &*WORLD;
    let app = jwtgate::server::introspection::router(world.gate.clone(), 8192);
    let (status, answer) = world.runtime.block_on(async {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, bytes)
    });
    assert!(
        [200, 400, 401, 413, 503].contains(&status),
        "the introspection endpoint answered {status}"
    );
    if status == 200 {
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("a JSON answer");
        match answer.get("active") {
            Some(serde_json::Value::Bool(true)) => assert!(answer.get("iss").is_some(), "{answer}"),
            _ => assert_eq!(answer, serde_json::json!({"active": false})),
        }
    }
}

/// A `CheckRequest` as Envoy would send it (protobuf), translated and decided.
pub fn check_request(data: &[u8]) {
    let Ok(check) = envoy_types::pb::envoy::service::auth::v3::CheckRequest::decode(data) else {
        return;
    };
    assert_documented(&decide(&to_gate_request(check)));
}

/// Admin API messages (protobuf), from an authenticated caller: the first byte picks the call.
pub fn admin_messages(data: &[u8]) {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    let world = &*WORLD;
    fn authed<T>(message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
        req
    }
    let admin = &world.admin;
    let code = world.runtime.block_on(async {
        match which % 5 {
            0 => match pb::RevokeTokenRequest::decode(body) {
                Ok(m) => admin.revoke_token(authed(m)).await.err().map(|s| s.code()),
                Err(_) => None,
            },
            1 => match pb::RevokeSubjectRequest::decode(body) {
                Ok(m) => admin.revoke_subject(authed(m)).await.err().map(|s| s.code()),
                Err(_) => None,
            },
            2 => match pb::ListRevocationsRequest::decode(body) {
                Ok(m) => admin.list_revocations(authed(m)).await.err().map(|s| s.code()),
                Err(_) => None,
            },
            3 => match pb::KeyStatusRequest::decode(body) {
                Ok(m) => admin.key_status(authed(m)).await.err().map(|s| s.code()),
                Err(_) => None,
            },
            _ => match pb::IntrospectRequest::decode(body) {
                Ok(m) => admin.introspect(authed(m)).await.err().map(|s| s.code()),
                Err(_) => None,
            },
        }
    });
    if let Some(code) = code {
        assert!(
            matches!(
                code,
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::Unavailable
            ),
            "the admin API answered {code:?}"
        );
    }
}

/// A DPoP proof (the `DPoP` header's value) checked for a fixed request and token: never a
/// panic, and never valid (no key's thumbprint is the token's made-up `cnf.jkt`); and the same
/// text as an `htu`: normalising a normalised URI changes nothing.
pub fn dpop_proof(data: &[u8]) {
    use jwtgate_core::config::binding::{Dpop, DpopMode, Replay};
    use jwtgate_core::dpop;
    let Some(text) = text(data) else { return };
    let settings = Dpop {
        mode: DpopMode::Required,
        proof_max_age: std::time::Duration::from_secs(60),
        algorithms: vec![
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::Algorithm::EdDSA,
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::PS256,
        ],
        replay: Replay::Local,
        replay_timeout: std::time::Duration::from_millis(100),
    };
    let bound = dpop::Bound {
        method: "GET",
        uri: "https://api.example.com/orders",
        token: "token",
        jkt: "not-a-thumbprint",
    };
    let now = jwtgate_core::clock::now().unix;
    assert!(dpop::check(text, bound, &settings, std::time::Duration::from_secs(60), now).is_err());
    if let Some(once) = dpop::htu::normalize(text) {
        assert_eq!(dpop::htu::normalize(&once).as_deref(), Some(once.as_str()), "{text:?}");
    }
}

/// The checked-in inputs of `target`: its seed corpus and its regressions (fuzz findings).
pub fn inputs(target: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d).join(target)).ok())
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(target: &str, f: fn(&[u8])) {
        let files = inputs(target);
        assert!(!files.is_empty(), "no corpus for {target}");
        for file in files {
            f(&std::fs::read(&file).unwrap());
        }
    }

    #[test]
    fn every_checked_in_input_passes_every_target() {
        replay("compact_token", compact_token);
        replay("jwks", jwks);
        replay("discovery", discovery);
        replay("config_yaml", config_yaml);
        replay("path", path);
        replay("http_door", http_door);
        replay("check_request", check_request);
        replay("admin_messages", admin_messages);
        replay("introspection_request", introspection_request);
        replay("dpop_proof", dpop_proof);
    }
}

#[cfg(test)]
mod harness {
    use super::*;

    /// The gate the targets share really verifies: the seed token is allowed, a changed one
    /// denied (a harness whose gate refused everything would hide every finding past the first
    /// check).
    #[test]
    fn the_shared_gate_allows_the_seed_token_and_denies_a_forged_one() {
        let token =
            std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/compact_token/valid-hs256"))
                .unwrap();
        assert!(matches!(decide(&bearer_request(&token)), Decision::Allow(_)));
        let forged = format!("{}A", &token[..token.len() - 1]);
        assert!(matches!(decide(&bearer_request(&forged)), Decision::Deny(_)));
        // The introspection seed authenticates and finds the seed token active.
        let world = &*WORLD;
        let request = http::Request::builder()
            .method("POST")
            .uri(jwtgate::server::introspection::PATH)
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("fuzz:{ADMIN_TOKEN}")
                    )
                ),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(format!("token={token}")))
            .unwrap();
        let app = jwtgate::server::introspection::router(world.gate.clone(), 8192);
        let body = world.runtime.block_on(async {
            let response = app.oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()
        });
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["active"], true, "{answer}");
    }
}
