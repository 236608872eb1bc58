//! The keys the bench signs with and jwtgate verifies with: the repository's test fixtures
//! (`tests/fixtures/keys`), read at run time, and a fixed HMAC secret.

use std::path::{Path, PathBuf};

use jsonwebtoken::EncodingKey;
use jwtgate_core::mint;
use serde_json::{Value, json};

use super::Alg;

/// The HS256 shared secret (40 bytes; HMAC needs at least 32).
pub const HMAC_SECRET: &[u8] = b"jwtgate-bench-shared-secret-0123456789ab";

/// The fixture key directory of this source tree.
pub fn default_keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/keys")
}

/// The fixture file holding each asymmetric algorithm's private key.
fn key_file(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::Rs256 => Some("rsa-a.pem"),
        Alg::Es256 => Some("ec-p256.pem"),
        Alg::EdDsa => Some("ed25519.pem"),
        Alg::Hs256 => None,
    }
}

/// A key file of this source tree's fixtures (`tests/fixtures/keys`), by name.
pub fn fixture_key(name: &str) -> Result<Vec<u8>, String> {
    read(&default_keys_dir(), name)
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| format!("cannot read the fixture key {}: {e}", path.display()))
}

/// The key that signs `alg` tokens.
pub fn signing_key(dir: &Path, alg: Alg) -> Result<EncodingKey, String> {
    match key_file(alg) {
        Some(file) => mint::signing_key(&read(dir, file)?, alg.jose()).map_err(|e| e.to_string()),
        None => mint::signing_key(HMAC_SECRET, alg.jose()).map_err(|e| e.to_string()),
    }
}

/// The JWKS with the public half of every asymmetric fixture key, under [`Alg::kid`].
pub fn jwks(dir: &Path) -> Result<Value, String> {
    let mut keys = Vec::new();
    for alg in [Alg::Rs256, Alg::Es256, Alg::EdDsa] {
        if let (Some(file), Some(kid)) = (key_file(alg), alg.kid()) {
            keys.push(mint::public_jwk(&read(dir, file)?, alg.jose(), kid).map_err(|e| e.to_string())?);
        }
    }
    Ok(json!({ "keys": keys }))
}
