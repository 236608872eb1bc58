//! Instruction counts of the hot paths, under callgrind: the regression gate that wall-clock
//! figures (10–15 % drift on these machines) cannot be.
//!
//! `cargo bench --bench instructions` runs every scenario in a `valgrind --tool=callgrind`
//! process of its own that counts only inside [`measured`] (setup and warm-up excluded), and
//! compares the instructions per iteration with `benches/instructions.baseline`: a scenario more
//! than 5 % above its baseline, or one the baseline lacks, fails the run.
//! `JWTGATE_INSTRUCTIONS=update cargo bench --bench instructions` rewrites the baseline (commit
//! it with the change that moved the counts, and say why in the message).
//!
//! Counts are of the CPU valgrind simulates: it answers CPUID with a fixed model (the richest
//! one the host can run, AVX2 on every current x86-64 server), so aws-lc and `sha2` pick the same
//! code paths on any such machine; the counts repeat to within 0.2 % here.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use jsonwebtoken::Algorithm;
use jwtgate::server::{grpc, http, render};
use jwtgate_core::config::Config;
use jwtgate_core::gate::Gate;
use jwtgate_core::original;
use jwtgate_core::request::{Decision, Request};
use serde_json::json;
use tower::ServiceExt;

mod common;
use common::{fixture, request};

/// Iterations counted per scenario (the figure reported is per iteration).
const ITERATIONS: u64 = 20;
/// Uncounted calls before the counted ones.
const WARMUP: u64 = 3;
/// Growth over the baseline that fails the gate.
const TOLERANCE: f64 = 0.05;
/// Where the counts are kept, beside this file.
const BASELINE: &str = "benches/instructions.baseline";
/// Set in a scenario's own process: which one to run.
const SCENARIO_VAR: &str = "JWTGATE_INSTRUCTIONS_SCENARIO";

/// The counted part: `body`, [`ITERATIONS`] times. Callgrind collects only while this runs.
#[inline(never)]
fn measured(body: &mut dyn FnMut()) {
    for _ in 0..ITERATIONS {
        body();
    }
}

/// One scenario: its name and the setup that returns its body.
type Scenario = (&'static str, fn() -> Box<dyn FnMut()>);

const SCENARIOS: &[Scenario] = &[
    ("decide_warm", decide_warm),
    ("decide_warm_rate_limited", decide_warm_rate_limited),
    ("decide_cold_RS256", || decide_cold(Algorithm::RS256)),
    ("decide_cold_PS256", || decide_cold(Algorithm::PS256)),
    ("decide_cold_ES256", || decide_cold(Algorithm::ES256)),
    ("decide_cold_EdDSA", || decide_cold(Algorithm::EdDSA)),
    ("decide_cold_HS256", || decide_cold(Algorithm::HS256)),
    ("signature_parsed_RS256", || signature(Algorithm::RS256, true)),
    ("signature_parsed_PS256", || signature(Algorithm::PS256, true)),
    ("signature_parsed_ES256", || signature(Algorithm::ES256, true)),
    ("signature_parsed_EdDSA", || signature(Algorithm::EdDSA, true)),
    ("signature_jsonwebtoken_RS256", || signature(Algorithm::RS256, false)),
    ("signature_jsonwebtoken_PS256", || signature(Algorithm::PS256, false)),
    ("signature_jsonwebtoken_ES256", || signature(Algorithm::ES256, false)),
    ("signature_jsonwebtoken_EdDSA", || signature(Algorithm::EdDSA, false)),
    ("deny_render_grpc", deny_render_grpc),
    ("deny_render_http", deny_render_http),
    ("route_match_200_routes", route_match),
    ("path_normalisation", path_normalisation),
    ("host_normalisation", host_normalisation),
    ("grpc_request_parse", grpc_request_parse),
    ("http_request_parse_nginx", http_request_parse),
    ("http_door_warm_nginx", http_door_warm),
];

/// The key files per algorithm.
fn key_file(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::PS256 | Algorithm::RS256 => "rsa-a.pem",
        Algorithm::ES256 => "ec-p256.pem",
        Algorithm::EdDSA => "ed25519.pem",
        _ => unreachable!("no fixture key for {alg:?}"),
    }
}

const SECRET: &str = "an-hmac-secret-for-the-instruction-count-benchmarks";

/// A gate with 200 routes (the match is the last), a JWKS-file provider `corp` holding one key
/// per asymmetric algorithm, an HMAC provider `legacy`, and a cache of `cache_entries`.
fn gate(cache_entries: u64) -> (Gate, tempfile::TempDir) {
    gate_with(cache_entries, "")
}

/// [`gate`], with `extra` top-level YAML.
fn gate_with(cache_entries: u64, extra: &str) -> (Gate, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA]
        .iter()
        .map(|alg| jwtgate_core::mint::public_jwk(&fixture(key_file(*alg)), *alg, &format!("{alg:?}")).unwrap())
        .collect();
    std::fs::write(dir.path().join("jwks.json"), json!({ "keys": keys }).to_string()).unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let mut yaml = String::from(
        "providers:\n  - { name: corp, issuer: corp, jwks_file: jwks.json, audiences: [api], claims_to_headers: { sub: x-jwt-sub }, algorithms: [RS256, PS256, ES256, EdDSA] }\n  - { name: legacy, issuer: legacy, hmac_secret: { file: secret }, audiences: [api] }\nroutes:\n",
    );
    for i in 0..199 {
        yaml.push_str(&format!(
            "  - {{ name: r{i}, match: {{ host: \"svc{i}.example.com\", path_prefix: /v{i}, methods: [GET, POST] }}, require: {{ scopes: [s{i}] }} }}\n"
        ));
    }
    yaml.push_str("  - { name: api, match: { path_prefix: /api }, require: { scopes: [api.read] } }\n");
    yaml.push_str(&format!("cache: {{ max_entries: {cache_entries} }}\n{extra}"));
    let config = Config::parse(&yaml, "instructions.yaml", dir.path()).unwrap();
    let gate = Gate::new(&config, &reqwest::Client::new(), Default::default());
    common::runtime().block_on(async {
        for p in gate.verifier().providers() {
            p.keys.load_once().await.unwrap();
        }
    });
    (gate, dir)
}

/// A token for `alg` that the gate's `api` route allows.
fn token(alg: Algorithm) -> String {
    let (issuer, key) = match alg {
        Algorithm::HS256 => (
            "legacy",
            jwtgate_core::mint::signing_key(SECRET.as_bytes(), alg).unwrap(),
        ),
        _ => (
            "corp",
            jwtgate_core::mint::signing_key(&fixture(key_file(alg)), alg).unwrap(),
        ),
    };
    let claims = json!({"iss": issuer, "aud": "api", "sub": "alice", "scope": "api.read"});
    let kid = (alg != Algorithm::HS256).then(|| format!("{alg:?}"));
    jwtgate_core::mint::mint(&key, alg, kid.as_deref(), claims.as_object().unwrap(), 3600).unwrap()
}

/// A body deciding `req` on `gate`, asserting (once, before counting) that it is allowed.
fn deciding(gate: Gate, dir: tempfile::TempDir, req: Request) -> Box<dyn FnMut()> {
    let rt = common::runtime();
    assert!(matches!(rt.block_on(gate.decide(&req)), Decision::Allow(_)));
    Box::new(move || {
        let _ = &dir;
        black_box(rt.block_on(gate.decide(&req)));
    })
}

fn decide_warm() -> Box<dyn FnMut()> {
    let (gate, dir) = gate(100_000);
    deciding(gate, dir, request(&token(Algorithm::RS256)))
}

/// [`decide_warm`] with a rate-limit rule keyed by the subject and a 64-byte `x-api-key` (each
/// part hashed into the counter's key), local counters.
fn decide_warm_rate_limited() -> Box<dyn FnMut()> {
    let rules = "rate_limits:\n  rules:\n    - { name: per-key, by: [\"claim:sub\", \"header:x-api-key\"], limit: 1000000000, per: 1s }\n";
    let (gate, dir) = gate_with(100_000, rules);
    let mut req = request(&token(Algorithm::RS256));
    req.headers.insert("x-api-key".into(), "k".repeat(64));
    deciding(gate, dir, req)
}

fn decide_cold(alg: Algorithm) -> Box<dyn FnMut()> {
    let (gate, dir) = gate(0);
    deciding(gate, dir, request(&token(alg)))
}

/// One signature check: with the key parsed once (`parsed`, what jwtgate does), or by
/// `jsonwebtoken::crypto::verify`, which rebuilds the key every call (the reference).
fn signature(alg: Algorithm, parsed: bool) -> Box<dyn FnMut()> {
    let pem = fixture(key_file(alg));
    let signing = jwtgate_core::mint::signing_key(&pem, alg).unwrap();
    let jwk = jwtgate_core::mint::public_jwk(&pem, alg, "k").unwrap();
    let message = b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhIiwic3ViIjoiYWxpY2UifQ";
    let sig = jsonwebtoken::crypto::sign(message, &signing, alg).unwrap();
    if parsed {
        let key = jwtgate_core::keys::jwks::parse_key(&jwk).unwrap();
        Box::new(move || assert!(key.verifies(alg, message, &sig)))
    } else {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        Box::new(move || assert!(jsonwebtoken::crypto::verify(&sig, message, &key, alg).unwrap()))
    }
}

/// A denial (no token) as the gate decides it, to render.
fn denial() -> Decision {
    let (gate, _dir) = gate(0);
    let mut req = request("x");
    req.headers.remove("authorization");
    let decision = common::runtime().block_on(gate.decide(&req));
    assert!(matches!(decision, Decision::Deny(_)));
    decision
}

fn deny_render_grpc() -> Box<dyn FnMut()> {
    let decision = denial();
    Box::new(move || {
        black_box(render::check_response(decision.clone()).unwrap());
    })
}

fn deny_render_http() -> Box<dyn FnMut()> {
    let decision = denial();
    Box::new(move || {
        black_box(render::http_response(decision.clone(), false));
    })
}

fn route_match() -> Box<dyn FnMut()> {
    let (gate, dir) = gate(0);
    let req = request("x");
    let path = jwtgate_core::path::normalize(&req.path).unwrap();
    let host = jwtgate_core::host::normalize(&req.host).unwrap();
    assert_eq!(gate.routes().select(&req, &path, &host).unwrap().name, "api");
    Box::new(move || {
        let _ = &dir;
        black_box(gate.routes().select(&req, &path, &host).unwrap());
    })
}

fn host_normalisation() -> Box<dyn FnMut()> {
    let host = "Shop.Example.com:8443".to_owned();
    Box::new(move || {
        black_box(jwtgate_core::host::normalize(&host).unwrap());
    })
}

fn path_normalisation() -> Box<dyn FnMut()> {
    let path = "/api/v1/./orders/%7Euser/../items?page=2&sort=asc".to_owned();
    Box::new(move || {
        black_box(jwtgate_core::path::normalize(&path).unwrap());
    })
}

/// The headers a proxy sends with a check: an ordinary browser-ish request and its token.
fn proxy_headers(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {token}")),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0".into()),
        ("accept", "application/json".into()),
        ("accept-encoding", "gzip, deflate, br".into()),
        ("x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        ("x-forwarded-for", "203.0.113.7".into()),
        ("x-forwarded-proto", "https".into()),
    ]
}

fn grpc_request_parse() -> Box<dyn FnMut()> {
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                time: None,
                http: Some(HttpRequest {
                    id: "req-1".into(),
                    method: "GET".into(),
                    path: "/api/orders?page=2".into(),
                    host: "shop.example.com".into(),
                    scheme: "https".into(),
                    headers: proxy_headers(&token(Algorithm::RS256))
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    };
    // One copy per call, made before counting (the door owns the request it is handed).
    let mut copies: Vec<CheckRequest> = (0..=ITERATIONS + WARMUP).map(|_| check.clone()).collect();
    black_box(grpc::to_gate_request(copies.pop().unwrap()));
    Box::new(move || {
        black_box(grpc::to_gate_request(copies.pop().unwrap()));
    })
}

/// An Nginx `auth_request` subrequest's headers.
fn nginx_headers(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in proxy_headers(token) {
        headers.append(k, HeaderValue::from_str(&v).unwrap());
    }
    for (k, v) in [
        ("host", "127.0.0.1:8081"),
        ("x-original-uri", "/api/orders?page=2"),
        ("x-original-method", "GET"),
        ("x-original-host", "shop.example.com"),
    ] {
        headers.append(k, HeaderValue::from_static(v));
    }
    headers
}

const PEER: &str = "127.0.0.1:40000";

fn http_request_parse() -> Box<dyn FnMut()> {
    let (gate, dir) = gate(0);
    let headers = nginx_headers(&token(Algorithm::RS256));
    let peer: SocketAddr = PEER.parse().unwrap();
    let (door, _) = gate.http_auth().door("/auth").unwrap();
    let door = door.clone();
    let asked = original::Asked {
        method: "GET",
        rest: "",
        query: None,
    };
    let parse = move || {
        let mut req = Request {
            headers: http::gate_headers(&headers),
            ..Request::default()
        };
        original::read(&door, peer, asked, &mut req).unwrap();
        req
    };
    assert_eq!(parse().path, "/api/orders?page=2");
    Box::new(move || {
        let _ = &dir;
        black_box(parse());
    })
}

fn http_door_warm() -> Box<dyn FnMut()> {
    let (gate, dir) = gate(100_000);
    let state = http::HttpState {
        gate: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(gate)),
        draining: tokio_util::sync::CancellationToken::new(),
        durations: Default::default(),
    };
    let router = http::router(state);
    let headers = nginx_headers(&token(Algorithm::RS256));
    let peer: SocketAddr = PEER.parse().unwrap();
    let rt = common::runtime();
    let call = move || {
        let mut req = axum::http::Request::get("/auth")
            .body(axum::body::Body::empty())
            .unwrap();
        *req.headers_mut() = headers.clone();
        req.extensions_mut().insert(ConnectInfo(peer));
        rt.block_on(router.clone().oneshot(req)).unwrap()
    };
    assert_eq!(call().status(), 200, "the benchmark request is allowed");
    Box::new(move || {
        let _ = &dir;
        black_box(call());
    })
}

fn main() {
    if let Ok(name) = std::env::var(SCENARIO_VAR) {
        let (_, setup) = SCENARIOS.iter().find(|(n, _)| *n == name).expect("a known scenario");
        let mut body = setup();
        // Warm-up, uncounted: first-use parsing, lazily built tables, allocator pools.
        for _ in 0..WARMUP {
            body();
        }
        measured(&mut *body);
        return;
    }
    // `cargo test --all-targets` runs this without `--bench`, in the test profile, where counts
    // mean nothing: then each scenario runs once, natively, so that it is known to work.
    if !std::env::args().any(|a| a == "--bench") {
        for (name, setup) in SCENARIOS {
            setup()();
            println!("{name}: runs");
        }
        return;
    }
    // `cargo bench` passes `--bench`; a filter picks scenarios by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var("JWTGATE_INSTRUCTIONS").is_ok_and(|v| v == "update");
    let baseline = read_baseline(&root.join(BASELINE));
    let out = tempfile::tempdir().unwrap();
    let mut counts = BTreeMap::new();
    let mut failed = Vec::new();
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "scenario", "instructions", "baseline", "change"
    );
    for (name, _) in SCENARIOS
        .iter()
        .filter(|(n, _)| filter.is_empty() || filter.iter().any(|f| n.contains(f)))
    {
        let count = callgrind(name, &out.path().join(format!("{name}.out")));
        counts.insert(name.to_string(), count);
        let Some(&base) = baseline.get(*name) else {
            println!("{name:<28} {count:>14} {:>14} {:>8}", "—", "new");
            failed.push(format!("{name}: not in {BASELINE}"));
            continue;
        };
        let change = count as f64 / base as f64 - 1.0;
        println!("{name:<28} {count:>14} {base:>14} {:>+7.2}%", change * 100.0);
        if change > TOLERANCE {
            failed.push(format!(
                "{name}: {count} instructions per iteration, {:+.2} % over {base}",
                change * 100.0
            ));
        }
    }
    if update {
        let mut all = baseline;
        all.extend(counts);
        write_baseline(&root.join(BASELINE), &all);
        println!("wrote {BASELINE}");
        return;
    }
    if !failed.is_empty() {
        eprintln!("\ninstruction counts grew by more than {:.0} %:", TOLERANCE * 100.0);
        for f in &failed {
            eprintln!("  {f}");
        }
        eprintln!(
            "if that is meant, update the baseline: JWTGATE_INSTRUCTIONS=update cargo bench --bench instructions"
        );
        std::process::exit(1);
    }
}

/// Instructions per iteration of `name`, run under callgrind in a process of its own.
fn callgrind(name: &str, out: &PathBuf) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let valgrind = std::env::var("JWTGATE_VALGRIND").unwrap_or_else(|_| "valgrind".into());
    let status = Command::new(valgrind)
        .args([
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=instructions::measured*",
            "--quiet",
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .env(SCENARIO_VAR, name)
        .status()
        .unwrap_or_else(|e| panic!("cannot run valgrind (is it installed?): {e}"));
    assert!(status.success(), "{name}: valgrind exited with {status}");
    let text = std::fs::read_to_string(out).unwrap();
    let total: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no totals in {}", out.display()));
    assert!(
        total > 0,
        "{name}: nothing counted (was `measured` inlined or renamed?)"
    );
    total / ITERATIONS
}

/// `name count` per line; `#` starts a comment.
fn read_baseline(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, count) = l.split_once(char::is_whitespace)?;
            Some((name.to_owned(), count.trim().parse().ok()?))
        })
        .collect()
}

fn write_baseline(path: &Path, counts: &BTreeMap<String, u64>) {
    let mut text = String::from(
        "# Instructions per iteration of each scenario of benches/instructions.rs, under callgrind.\n\
         # `cargo bench --bench instructions` fails when one grows by more than 5 % over this;\n\
         # `JWTGATE_INSTRUCTIONS=update cargo bench --bench instructions` rewrites it.\n",
    );
    for (name, count) in counts {
        text.push_str(&format!("{name} {count}\n"));
    }
    std::fs::write(path, text).unwrap();
}
