//! Signature verification per algorithm through jwtgate's verifier (keys loaded, no cache), the
//! baseline for the cold-path targets; and the signature alone, checked by `jsonwebtoken`'s
//! `crypto::verify` (the key rebuilt every call, as jwtgate did before issue #19) and by a key
//! parsed once (`Key::verifies`, what jwtgate does now). `cargo bench --bench verify`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use serde_json::json;

mod common;
use common::fixture;

fn bench(c: &mut Criterion) {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (Algorithm::RS256, "rsa-a.pem"),
        (Algorithm::PS256, "rsa-a.pem"),
        (Algorithm::ES256, "ec-p256.pem"),
        (Algorithm::ES384, "ec-p384.pem"),
        (Algorithm::EdDSA, "ed25519.pem"),
    ];
    let keys: Vec<_> = cases
        .iter()
        .map(|(alg, file)| jwtgate_core::mint::public_jwk(&fixture(file), *alg, &format!("{alg:?}")).unwrap())
        .collect();
    std::fs::write(dir.path().join("jwks.json"), json!({ "keys": keys }).to_string()).unwrap();
    std::fs::write(dir.path().join("secret"), "s".repeat(64)).unwrap();
    let yaml = "providers:\n  - { name: a, issuer: a, jwks_file: jwks.json, audiences: [api] }\n  - { name: h, issuer: h, hmac_secret: { file: secret }, audiences: [api] }\n";
    let config = jwtgate_core::config::Config::parse(yaml, "bench.yaml", dir.path()).unwrap();
    let metrics = jwtgate_core::metrics::Metrics::default();
    let verifier = jwtgate_core::verify::Verifier::new(&config, &reqwest::Client::new(), &metrics);
    rt.block_on(async {
        for p in verifier.providers() {
            p.keys.load_once().await.unwrap();
        }
    });
    let claims = |iss: &str| json!({"iss": iss, "aud": "api", "sub": "alice"});
    let mut group = c.benchmark_group("verify");
    for (alg, file) in cases {
        let key = jwtgate_core::mint::signing_key(&fixture(file), alg).unwrap();
        let token = jwtgate_core::mint::mint(
            &key,
            alg,
            Some(&format!("{alg:?}")),
            claims("a").as_object().unwrap(),
            3600,
        )
        .unwrap();
        group.bench_function(format!("{alg:?}"), |b| {
            b.to_async(&rt)
                .iter(|| async { verifier.verify(&token).await.unwrap() })
        });
    }
    let key = jwtgate_core::mint::signing_key(&"s".repeat(64).into_bytes(), Algorithm::HS256).unwrap();
    let token = jwtgate_core::mint::mint(&key, Algorithm::HS256, None, claims("h").as_object().unwrap(), 3600).unwrap();
    group.bench_function("HS256", |b| {
        b.to_async(&rt)
            .iter(|| async { verifier.verify(&token).await.unwrap() })
    });
    group.finish();

    let mut group = c.benchmark_group("signature");
    for (alg, file) in cases {
        let pem = fixture(file);
        let signing = jwtgate_core::mint::signing_key(&pem, alg).unwrap();
        let jwk = jwtgate_core::mint::public_jwk(&pem, alg, "k").unwrap();
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhIiwic3ViIjoiYWxpY2UifQ";
        let sig = jsonwebtoken::crypto::sign(message, &signing, alg).unwrap();
        let theirs = jsonwebtoken::DecodingKey::from_jwk(
            &serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone()).unwrap(),
        )
        .unwrap();
        let ours = jwtgate_core::keys::jwks::parse_key(&jwk).unwrap();
        group.bench_function(format!("jsonwebtoken_{alg:?}"), |b| {
            b.iter(|| assert!(jsonwebtoken::crypto::verify(&sig, message, &theirs, alg).unwrap()))
        });
        group.bench_function(format!("parsed_once_{alg:?}"), |b| {
            b.iter(|| assert!(ours.verifies(alg, message, &sig)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
