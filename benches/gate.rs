//! The request path piece by piece: token extraction, route matching on a 200-route table, a
//! cache lookup, and the whole `Gate::decide` warm (cache hit) and cold (cache off, full
//! verification). `cargo bench --bench gate`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwtgate_core::config::Config;
use jwtgate_core::gate::Gate;
use jwtgate_core::request::Decision;
use serde_json::json;

mod common;
use common::{fixture, request};

/// 200 routes: 199 that do not match `/api/orders`, then the one that does.
fn routes() -> String {
    let mut out = String::from("routes:\n");
    for i in 0..199 {
        out.push_str(&format!(
            "  - {{ name: r{i}, match: {{ host: \"svc{i}.example.com\", path_prefix: /v{i}, methods: [GET, POST] }}, require: {{ scopes: [s{i}] }} }}\n"
        ));
    }
    out.push_str("  - { name: api, match: { path_prefix: /api }, require: { scopes: [api.read] } }\n");
    out
}

fn gate(dir: &Path, cache_entries: u64) -> Gate {
    let jwk = jwtgate_core::mint::public_jwk(&fixture("rsa-a.pem"), Algorithm::RS256, "a").unwrap();
    std::fs::write(dir.join("jwks.json"), json!({ "keys": [jwk] }).to_string()).unwrap();
    let yaml = format!(
        "providers:\n  - {{ name: corp, issuer: corp, jwks_file: jwks.json, audiences: [api], claims_to_headers: {{ sub: x-jwt-sub }} }}\n{}cache: {{ max_entries: {cache_entries} }}\n",
        routes()
    );
    let config = Config::parse(&yaml, "bench.yaml", dir).unwrap();
    Gate::new(&config, &reqwest::Client::new(), Default::default())
}

fn bench(c: &mut Criterion) {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let key = jwtgate_core::mint::signing_key(&fixture("rsa-a.pem"), Algorithm::RS256).unwrap();
    let claims = json!({"iss": "corp", "aud": "api", "sub": "alice", "scope": "api.read"});
    let token = jwtgate_core::mint::mint(&key, Algorithm::RS256, Some("a"), claims.as_object().unwrap(), 3600).unwrap();
    let req = request(&token);

    let warm = gate(dir.path(), 100_000);
    let cold = gate(dir.path(), 0);
    rt.block_on(async {
        for g in [&warm, &cold] {
            for p in g.verifier().providers() {
                p.keys.load_once().await.unwrap();
            }
            assert!(
                matches!(g.decide(&req).await, Decision::Allow(_)),
                "the benchmark request is allowed"
            );
        }
    });

    let sources = vec![jwtgate_core::config::Source::Header {
        name: "authorization".into(),
        prefix: "Bearer ".into(),
    }];
    c.bench_function("token_extraction", |b| {
        b.iter(|| jwtgate_core::token::extract(&req, &sources).unwrap())
    });

    let path = jwtgate_core::path::normalize(&req.path).unwrap();
    c.bench_function("path_normalisation", |b| {
        b.iter(|| jwtgate_core::path::normalize(&req.path).unwrap())
    });
    let host = jwtgate_core::host::normalize(&req.host).unwrap();
    c.bench_function("route_match_200_routes", |b| {
        b.iter(|| warm.routes().select(&req, &path, &host).unwrap())
    });

    let cache = warm.cache();
    let h = cache.key(&token).unwrap();
    c.bench_function("cache_hash_and_hit", |b| {
        b.iter(|| cache.get(&cache.key(&token).unwrap()).unwrap())
    });
    c.bench_function("cache_hit_lookup_only", |b| b.iter(|| cache.get(&h).unwrap()));

    c.bench_function("decide_warm", |b| b.to_async(&rt).iter(|| warm.decide(&req)));
    c.bench_function("decide_cold", |b| b.to_async(&rt).iter(|| cold.decide(&req)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
