//! What an opaque token costs a check, against a warm JWT check in the same run: `Gate::decide`
//! for a JWT through the verified-token cache (the baseline), for an opaque token answered from
//! a kept introspection answer (`cache_ttl: 60s`), and for one introspected on every check
//! (`cache_ttl: 0s`) at an RFC 7662 endpoint on loopback (axum, its own thread).
//! `cargo bench --bench introspection`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;

use axum::Router;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwtgate_core::config::Config;
use jwtgate_core::gate::Gate;
use jwtgate_core::request::Decision;
use serde_json::json;

mod common;
use common::{fixture, request};

/// An introspection endpoint that says every token is active, on its own runtime and thread.
fn endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = common::runtime();
        rt.block_on(async move {
            let exp = jwtgate_core::clock::now().unix + 3600;
            let answer =
                json!({"active": true, "iss": "legacy", "aud": "api", "sub": "alice", "scope": "api.read", "exp": exp})
                    .to_string();
            let app = Router::new().route(
                "/introspect",
                post(move || async move { ([("content-type", "application/json")], answer) }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}/introspect")
}

fn gate(dir: &Path, endpoint: &str, cache_ttl: &str) -> Gate {
    let jwk = jwtgate_core::mint::public_jwk(&fixture("rsa-a.pem"), Algorithm::RS256, "a").unwrap();
    std::fs::write(dir.join("jwks.json"), json!({ "keys": [jwk] }).to_string()).unwrap();
    std::fs::write(dir.join("idp.secret"), "jwtgate-secret").unwrap();
    let yaml = format!(
        "providers:\n  - {{ name: corp, issuer: corp, jwks_file: jwks.json, audiences: [api], claims_to_headers: {{ sub: x-jwt-sub }} }}\n  \
         - {{ name: legacy, issuer: legacy, audiences: [api], claims_to_headers: {{ sub: x-jwt-sub }}, introspection: {{ endpoint: \"{endpoint}\", client_id: jwtgate, client_secret_file: idp.secret, cache_ttl: {cache_ttl}, timeout: 1s }} }}\n\
         routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, require: {{ scopes: [api.read] }} }}\n"
    );
    let config = Config::parse(&yaml, "bench.yaml", dir).unwrap();
    Gate::new(&config, &reqwest::Client::new(), Default::default())
}

fn bench(c: &mut Criterion) {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = endpoint();
    let key = jwtgate_core::mint::signing_key(&fixture("rsa-a.pem"), Algorithm::RS256).unwrap();
    let claims = json!({"iss": "corp", "aud": "api", "sub": "alice", "scope": "api.read"});
    let jwt = request(
        &jwtgate_core::mint::mint(&key, Algorithm::RS256, Some("a"), claims.as_object().unwrap(), 3600).unwrap(),
    );
    let opaque = request("Zm9vYmFyLW9wYXF1ZS1hY2Nlc3MtdG9rZW4tMTIzNDU2Nzg5MA");

    let cached = gate(dir.path(), &endpoint, "60s");
    let uncached = gate(dir.path(), &endpoint, "0s");
    rt.block_on(async {
        for g in [&cached, &uncached] {
            for p in g.verifier().providers() {
                p.keys.load_once().await.unwrap();
            }
            for req in [&jwt, &opaque] {
                assert!(
                    matches!(g.decide(req).await, Decision::Allow(_)),
                    "the benchmark requests are allowed"
                );
            }
        }
    });
    c.bench_function("decide_warm_jwt", |b| b.to_async(&rt).iter(|| cached.decide(&jwt)));
    c.bench_function("decide_opaque_cached", |b| {
        b.to_async(&rt).iter(|| cached.decide(&opaque))
    });
    c.bench_function("decide_opaque_uncached", |b| {
        b.to_async(&rt).iter(|| uncached.decide(&opaque))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
