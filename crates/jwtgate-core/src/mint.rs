//! Development tooling: sign tokens and derive public JWKs from private keys, for tests, demos
//! and operators checking a setup. Never on the request path.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value};

/// Why a key could not be loaded or a token signed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The crypto library refused the key.
    #[error("cannot read the key for {alg:?}: {source}")]
    Key {
        /// The algorithm it was read for.
        alg: Algorithm,
        /// Why.
        source: jsonwebtoken::errors::Error,
    },
    /// A key starting with `{` that is not JSON.
    #[error("key is not a JWK: {0}")]
    NotJwk(serde_json::Error),
    /// A JWK for HS* that is not `kty: oct` with `k`.
    #[error("an HS* key as JWK must have kty `oct` and `k`")]
    NotOctJwk,
    /// A PEM key given for HS*.
    #[error("HS* needs a shared secret, not a PEM key")]
    PemForHmac,
    /// Anything but PEM for an asymmetric algorithm.
    #[error("{0:?} needs a PEM private key (PKCS#8, or PKCS#1 for RSA)")]
    NeedsPem(Algorithm),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// A JWKS is asked for an HS* key.
    #[error("HS* keys are shared secrets and are never published in a JWKS")]
    SecretNotPublished,
    /// The public key could not be derived.
    #[error("cannot derive the public key: {0}")]
    PublicKey(jsonwebtoken::errors::Error),
    /// The JWK could not be rendered as JSON.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// Loads a signing key: a PEM private key (RSA, EC or Ed25519) for asymmetric algorithms; for
/// HS*, a JWK of `kty: oct` or the raw secret bytes (one trailing newline ignored, as
/// `hmac_secret: {file: …}` reads it).
pub fn signing_key(bytes: &[u8], alg: Algorithm) -> Result<EncodingKey, MintError> {
    let text = std::str::from_utf8(bytes).unwrap_or_default().trim_start();
    let pem = text.starts_with("-----BEGIN");
    let jwk = text.starts_with('{');
    let err = |source| MintError::Key { alg, source };
    match (alg.family(), pem, jwk) {
        (AlgorithmFamily::Rsa, true, _) => EncodingKey::from_rsa_pem(bytes).map_err(err),
        (AlgorithmFamily::Ec, true, _) => EncodingKey::from_ec_pem(bytes).map_err(err),
        (AlgorithmFamily::Ed, true, _) => EncodingKey::from_ed_pem(bytes).map_err(err),
        (AlgorithmFamily::Hmac, _, true) => {
            let jwk: Value = serde_json::from_str(text).map_err(MintError::NotJwk)?;
            match (
                jwk.get("kty").and_then(Value::as_str),
                jwk.get("k").and_then(Value::as_str),
            ) {
                (Some("oct"), Some(k)) => EncodingKey::from_urlsafe_base64_secret(k).map_err(err),
                _ => Err(MintError::NotOctJwk),
            }
        }
        (AlgorithmFamily::Hmac, false, false) => {
            let secret = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
            EncodingKey::from_secret(secret).map_err(err)
        }
        (AlgorithmFamily::Hmac, true, _) => Err(MintError::PemForHmac),
        _ => Err(MintError::NeedsPem(alg)),
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
) -> Result<String, MintError> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let mut claims = claims.clone();
    let now = crate::clock::unix();
    claims.entry("iat").or_insert_with(|| now.into());
    claims.entry("exp").or_insert_with(|| (now + ttl_secs).into());
    claims
        .entry("jti")
        .or_insert_with(|| uuid::Uuid::new_v4().simple().to_string().into());
    jsonwebtoken::encode(&header, &claims, key).map_err(MintError::Sign)
}

/// The public JWK of a private PEM key, with `kid`, `alg` and `use: sig` set.
pub fn public_jwk(pem: &[u8], alg: Algorithm, kid: &str) -> Result<Value, MintError> {
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(MintError::SecretNotPublished);
    }
    let key = signing_key(pem, alg)?;
    let mut jwk = Jwk::from_encoding_key(&key, alg).map_err(MintError::PublicKey)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    Ok(serde_json::to_value(jwk)?)
}
