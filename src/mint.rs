//! Development tooling: sign tokens and derive public JWKs from private keys, for tests, demos
//! and operators checking a setup. Never on the request path.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value};

/// Loads a signing key: a PEM private key (RSA, EC or Ed25519) for asymmetric algorithms; for
/// HS*, a JWK of `kty: oct` or the raw secret bytes (one trailing newline ignored, as
/// `hmac_secret: {file: …}` reads it).
pub fn signing_key(bytes: &[u8], alg: Algorithm) -> Result<EncodingKey, String> {
    let text = std::str::from_utf8(bytes).unwrap_or_default().trim_start();
    let pem = text.starts_with("-----BEGIN");
    let jwk = text.starts_with('{');
    let err = |e: jsonwebtoken::errors::Error| format!("cannot read the key for {alg:?}: {e}");
    match (alg.family(), pem, jwk) {
        (AlgorithmFamily::Rsa, true, _) => EncodingKey::from_rsa_pem(bytes).map_err(err),
        (AlgorithmFamily::Ec, true, _) => EncodingKey::from_ec_pem(bytes).map_err(err),
        (AlgorithmFamily::Ed, true, _) => EncodingKey::from_ed_pem(bytes).map_err(err),
        (AlgorithmFamily::Hmac, _, true) => {
            let jwk: Value = serde_json::from_str(text).map_err(|e| format!("key is not a JWK: {e}"))?;
            match (
                jwk.get("kty").and_then(Value::as_str),
                jwk.get("k").and_then(Value::as_str),
            ) {
                (Some("oct"), Some(k)) => EncodingKey::from_urlsafe_base64_secret(k).map_err(err),
                _ => Err("an HS* key as JWK must have kty `oct` and `k`".into()),
            }
        }
        (AlgorithmFamily::Hmac, false, false) => {
            let secret = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
            Ok(EncodingKey::from_secret(secret))
        }
        (AlgorithmFamily::Hmac, true, _) => Err("HS* needs a shared secret, not a PEM key".into()),
        _ => Err(format!("{alg:?} needs a PEM private key (PKCS#8, or PKCS#1 for RSA)")),
    }
}

/// Signs `claims` as a compact JWS with `typ: JWT`. Adds what `claims` lacks: `iat = now`,
/// `exp = now + ttl_secs`, and a random `jti` (so every minted token can be revoked singly).
pub fn mint(
    key: &EncodingKey,
    alg: Algorithm,
    kid: Option<&str>,
    claims: &Map<String, Value>,
    ttl_secs: u64,
) -> Result<String, String> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let mut claims = claims.clone();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    claims.entry("iat").or_insert_with(|| now.into());
    claims.entry("exp").or_insert_with(|| (now + ttl_secs).into());
    claims
        .entry("jti")
        .or_insert_with(|| uuid::Uuid::new_v4().simple().to_string().into());
    jsonwebtoken::encode(&header, &claims, key).map_err(|e| format!("cannot sign: {e}"))
}

/// The public JWK of a private PEM key, with `kid`, `alg` and `use: sig` set.
pub fn public_jwk(pem: &[u8], alg: Algorithm, kid: &str) -> Result<Value, String> {
    if alg.family() == AlgorithmFamily::Hmac {
        return Err("HS* keys are shared secrets and are never published in a JWKS".into());
    }
    let key = signing_key(pem, alg)?;
    let mut jwk = Jwk::from_encoding_key(&key, alg).map_err(|e| format!("cannot derive the public key: {e}"))?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    serde_json::to_value(jwk).map_err(|e| e.to_string())
}
