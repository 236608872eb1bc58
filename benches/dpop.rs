//! What a DPoP proof costs a check, against a warm bearer check in the same run: `Gate::decide`
//! for an unbound token as `Bearer` through the verified-token cache (the baseline), and for a
//! DPoP-bound token with a fresh ES256 proof on every check (the token's verification cached, the
//! proof's signature, members and replay id checked each time), and the proof's signature alone
//! (`jsonwebtoken::crypto::verify`) for the share it takes. Proofs are made outside the
//! timed loop (`iter_custom`), each with its own `jti`. Then the local replay cache's memory for
//! 100,000 proofs: the growth of this process's resident set while they are recorded (an upper
//! bound: it includes the allocator's slack). `cargo bench --bench dpop`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwtgate_core::config::Config;
use jwtgate_core::config::binding::Replay;
use jwtgate_core::dpop::replay::Replays;
use jwtgate_core::gate::Gate;
use jwtgate_core::request::{Decision, Request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod common;
use common::{fixture, request};

const PROVIDER: &str = "providers:\n  - { name: corp, issuer: corp, jwks_file: jwks.json, audiences: [api], claims_to_headers: { sub: x-jwt-sub }, dpop: { mode: optional, proof_max_age: 1h } }\n";

/// A client key (`ec-p256.pem` for ES256, `ed25519.pem` for EdDSA): its public JWK (without
/// `kid`/`use`) and RFC 7638 thumbprint.
fn client_key(alg: Algorithm) -> (jsonwebtoken::EncodingKey, Value, String) {
    let pem = fixture(if alg == Algorithm::ES256 {
        "ec-p256.pem"
    } else {
        "ed25519.pem"
    });
    let key = jwtgate_core::mint::signing_key(&pem, alg).unwrap();
    let mut jwk = jwtgate_core::mint::public_jwk(&pem, alg, "c").unwrap();
    for member in ["kid", "use", "alg"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    let jkt = jwtgate_core::dpop::thumbprint(jwk.as_object().unwrap()).unwrap();
    (key, jwk, jkt)
}

/// An `alg` proof for `GET https://shop.example.com/api/orders` and `token`, with `jti`.
fn proof(alg: Algorithm, key: &jsonwebtoken::EncodingKey, jwk: &Value, token: &str, jti: u64) -> String {
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let header = b64(json!({ "typ": "dpop+jwt", "alg": format!("{alg:?}"), "jwk": jwk }));
    let claims = b64(json!({
        "jti": format!("bench-{jti}"),
        "htm": "GET",
        "htu": "https://shop.example.com/api/orders",
        "iat": jwtgate_core::clock::now().unix,
        "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())),
    }));
    let input = format!("{header}.{claims}");
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

fn bench(c: &mut Criterion) {
    let rt = common::runtime();
    // First, while the heap is still small: its growth is then the cache's.
    replay_memory(&rt);
    let dir = tempfile::tempdir().unwrap();
    let issuer = jwtgate_core::mint::signing_key(&fixture("rsa-a.pem"), Algorithm::RS256).unwrap();
    let jwk = jwtgate_core::mint::public_jwk(&fixture("rsa-a.pem"), Algorithm::RS256, "a").unwrap();
    std::fs::write(dir.path().join("jwks.json"), json!({ "keys": [jwk] }).to_string()).unwrap();
    let config = Config::parse(PROVIDER, "bench.yaml", dir.path()).unwrap();
    let gate = Gate::new(&config, &reqwest::Client::new(), Default::default());
    let mint = |claims: Value| {
        jwtgate_core::mint::mint(&issuer, Algorithm::RS256, Some("a"), claims.as_object().unwrap(), 3600).unwrap()
    };
    let bearer = request(&mint(json!({"iss": "corp", "aud": "api", "sub": "alice"})));
    rt.block_on(async {
        for p in gate.verifier().providers() {
            p.keys.load_once().await.unwrap();
        }
        assert!(
            matches!(gate.decide(&bearer).await, Decision::Allow(_)),
            "bearer allowed"
        );
    });
    c.bench_function("decide_warm_bearer", |b| b.to_async(&rt).iter(|| gate.decide(&bearer)));
    let next_jti = std::cell::Cell::new(0u64);
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let (client, client_jwk, jkt) = client_key(alg);
        let bound = mint(json!({"iss": "corp", "aud": "api", "sub": "alice", "cnf": { "jkt": jkt }}));
        let dpop_request = || -> Request {
            let mut r = request(&bound);
            r.scheme = "https".into();
            r.headers.insert("authorization".into(), format!("DPoP {bound}"));
            r.headers
                .insert("dpop".into(), proof(alg, &client, &client_jwk, &bound, next_jti.get()));
            next_jti.set(next_jti.get() + 1);
            r
        };
        rt.block_on(async {
            let first = dpop_request();
            assert!(
                matches!(gate.decide(&first).await, Decision::Allow(_)),
                "{alg:?} proof allowed"
            );
            assert!(
                matches!(gate.decide(&first).await, Decision::Deny(_)),
                "its replay refused"
            );
        });
        // The share of the signature alone: the proof's `jwk` parsed and its signature checked,
        // as every request does.
        let sample = proof(alg, &client, &client_jwk, &bound, u64::MAX);
        let (input, sig) = sample.rsplit_once('.').unwrap();
        c.bench_function(&format!("proof_signature_only_{alg:?}"), |b| {
            b.iter(|| {
                let key = jwtgate_core::keys::jwks::parse_key(&client_jwk).unwrap();
                assert!(key.verifies(alg, input.as_bytes(), sig));
            })
        });
        c.bench_function(&format!("decide_dpop_bound_warm_token_{alg:?}"), |b| {
            b.iter_custom(|iters| {
                let requests: Vec<Request> = (0..iters).map(|_| dpop_request()).collect();
                rt.block_on(async {
                    let start = Instant::now();
                    for r in &requests {
                        let d = gate.decide(r).await;
                        debug_assert!(matches!(d, Decision::Allow(_)));
                    }
                    start.elapsed()
                })
            })
        });
    }
}

/// This process's resident set, in bytes (Linux).
fn resident_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What the local replay cache costs for 100,000 proof ids (each kept for an hour).
fn replay_memory(rt: &tokio::runtime::Runtime) {
    let replays = Replays::default();
    let before = resident_bytes();
    rt.block_on(async {
        for i in 0u32..100_000 {
            let id: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            let fresh = replays
                .first_use(id, Duration::from_secs(3600), Replay::Local, Duration::from_millis(10))
                .await
                .unwrap();
            assert!(fresh);
        }
    });
    assert_eq!(replays.local_entries(), 100_000);
    let held = resident_bytes() - before;
    println!(
        "replay cache (local, moka): {held} bytes for 100,000 proofs = {:.0} bytes per proof",
        held as f64 / 100_000.0
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
