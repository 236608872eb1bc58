//! JWKS documents parsed once into ready-to-use verification keys, indexed by `kid`.
//!
//! A key that cannot be used safely is skipped with a reason, never fatal: symmetric (`oct`)
//! keys (an issuer's JWKS must not be able to mint HMAC tokens), `use` other than `sig`,
//! encryption algorithms, RSA under 2048 bits, curves other than P-256/P-384/Ed25519, and every
//! key sharing a `kid` with another (a `kid` must name exactly one key).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::Value;

use super::public_key::{PublicKey, Unusable};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Most keys read from one JWKS; more is an issuer bug or an attack.
pub const MAX_KEYS: usize = 100;

/// The kind of a key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: RS256/384/512 and PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    P256,
    /// EC P-384: ES384.
    P384,
    /// OKP Ed25519: EdDSA.
    Ed25519,
    /// Shared secret: HS256/384/512 (only from `hmac_secret`, never a JWKS).
    Hmac,
}

/// One verification key.
pub struct Key {
    /// Key id, if the key has one.
    pub kid: Option<String>,
    /// What kind of key it is.
    pub kind: KeyKind,
    /// The key's own `alg`, if it declares one.
    pub alg: Option<Algorithm>,
    /// The key as the crypto library parsed it (once, when the set loaded).
    pub public: PublicKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Same id, kind, declared `alg` and key material.
    pub fn same_as(&self, other: &Key) -> bool {
        self.kid == other.kid && self.kind == other.kind && self.alg == other.alg && self.public.same_as(&other.public)
    }

    /// Whether `signature_b64` is a valid `alg` signature of `message` under this key (`false`
    /// for an algorithm the key does not support).
    pub fn verifies(&self, alg: Algorithm, message: &[u8], signature_b64: &str) -> bool {
        self.supports(alg) && self.public.verify(alg, message, signature_b64)
    }

    /// A shared-secret key for legacy HS* tokens (an empty one is refused; the config refuses
    /// any under 32 bytes).
    pub fn hmac(secret: &[u8]) -> Result<Self, Unusable> {
        Ok(Self {
            kid: None,
            kind: KeyKind::Hmac,
            alg: None,
            public: PublicKey::hmac(secret)?,
        })
    }

    /// Whether this key may verify a token signed with `alg`: the key type and curve bind the
    /// algorithm, and a key that declares its own `alg` accepts only that one.
    pub fn supports(&self, alg: Algorithm) -> bool {
        let kind_ok = match self.kind {
            KeyKind::Rsa => alg.family() == AlgorithmFamily::Rsa,
            KeyKind::P256 => alg == Algorithm::ES256,
            KeyKind::P384 => alg == Algorithm::ES384,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
            KeyKind::Hmac => alg.family() == AlgorithmFamily::Hmac,
        };
        kind_ok && self.alg.is_none_or(|a| a == alg)
    }
}

/// A provider's keys, indexed by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    without_kid: Vec<Arc<Key>>,
    match_any_kid: bool,
}

impl KeySet {
    /// A set holding one shared secret; it answers for any `kid` (legacy tokens carry arbitrary ones).
    pub fn shared_secret(secret: &[u8]) -> Result<Self, Unusable> {
        Ok(Self {
            by_kid: HashMap::new(),
            without_kid: vec![Arc::new(Key::hmac(secret)?)],
            match_any_kid: true,
        })
    }

    /// Whether a `kid` names a key here (so an unknown one is worth a refetch).
    pub fn knows(&self, kid: &str) -> bool {
        self.match_any_kid || self.by_kid.contains_key(kid)
    }

    /// Keys that may verify a token with this `kid` and `alg`: the one key named by `kid`, or
    /// without a `kid`, every key of the right type.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> impl Iterator<Item = &Arc<Key>> {
        let named = match (kid, self.match_any_kid) {
            (Some(k), false) => self.by_kid.get(k),
            _ => None,
        };
        let unnamed: Box<dyn Iterator<Item = &Arc<Key>>> = match (kid, self.match_any_kid) {
            (Some(_), false) => Box::new(std::iter::empty()),
            (Some(_), true) => Box::new(self.without_kid.iter()),
            (None, _) => Box::new(self.by_kid.values().chain(self.without_kid.iter())),
        };
        named.into_iter().chain(unnamed).filter(move |k| k.supports(alg))
    }

    /// Replaces keys equal to one in `old` by `old`'s object (see [`KeySet::holds`]).
    pub fn keep_unchanged(&mut self, old: &KeySet) {
        for (kid, key) in &mut self.by_kid {
            if let Some(prev) = old.by_kid.get(kid).filter(|p| p.same_as(key)) {
                *key = prev.clone();
            }
        }
        for key in &mut self.without_kid {
            if let Some(prev) = old.without_kid.iter().find(|p| p.same_as(key)) {
                *key = prev.clone();
            }
        }
    }

    /// Whether this very key (not an equal one) is in the set.
    pub fn holds(&self, key: &Arc<Key>) -> bool {
        match &key.kid {
            Some(kid) if !self.match_any_kid => self.by_kid.get(kid).is_some_and(|k| Arc::ptr_eq(k, key)),
            _ => self
                .without_kid
                .iter()
                .chain(self.by_kid.values())
                .any(|k| Arc::ptr_eq(k, key)),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    /// Whether the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key ids, sorted (for status reports).
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.by_kid.keys().cloned().collect();
        kids.sort();
        kids
    }
}

/// A parsed JWKS and the keys that were skipped, with why.
#[derive(Debug)]
pub struct Parsed {
    /// The usable keys.
    pub set: KeySet,
    /// Each key skipped, with why (logged as a warning).
    pub skipped: Vec<Skipped>,
}

/// Why a JWKS document cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not JSON.
    #[error("JWKS is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// No `keys` array.
    #[error("JWKS has no `keys` array")]
    NoKeys,
    /// Every key was skipped.
    #[error("JWKS has no usable key ({})", join(.0))]
    NoUsableKey(Vec<Skipped>),
}

fn join(skipped: &[Skipped]) -> String {
    skipped.iter().map(Skipped::to_string).collect::<Vec<_>>().join("; ")
}

/// A key of a JWKS that is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    /// The key itself cannot be used.
    #[error("key {index}: {why}")]
    Unusable {
        /// Its position in `keys`.
        index: usize,
        /// Why.
        why: KeyError,
    },
    /// Its `kid` names another key too; none of them is used.
    #[error("key {index}: kid `{kid}` appears more than once; none of them is used")]
    DuplicateKid {
        /// Its position in `keys`.
        index: usize,
        /// The `kid`, made printable.
        kid: String,
    },
    /// Keys past [`MAX_KEYS`].
    #[error("{0} keys past the first {MAX_KEYS} ignored")]
    PastLimit(usize),
}

/// Why one JWK cannot be used. Issuer-supplied text in these is made printable and cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a JSON object.
    #[error("not a JSON object")]
    NotObject,
    /// A member that must be a string is not.
    #[error("`{0}` is not a string")]
    NotString(&'static str),
    /// A required member is missing.
    #[error("`{0}` is missing")]
    Missing(&'static str),
    /// A member that must be base64url is not.
    #[error("`{0}` is not base64url")]
    NotBase64(&'static str),
    /// The `kid` is longer than any that is looked up.
    #[error("kid too long")]
    KidTooLong,
    /// `use` is not `sig`.
    #[error("`use` is `{0}`, not `sig`")]
    NotForSignatures(String),
    /// `alg` is not a signature algorithm jwtgate takes from a JWKS.
    #[error("`alg` `{0}` is not a signature algorithm jwtgate accepts from a JWKS")]
    AlgorithmNotAccepted(String),
    /// An RSA modulus below [`MIN_RSA_BITS`].
    #[error("RSA key of {0} bits is below the {MIN_RSA_BITS}-bit minimum")]
    RsaTooSmall(usize),
    /// An EC curve other than P-256 and P-384.
    #[error("curve `{0}` is not supported")]
    CurveNotSupported(String),
    /// EC coordinates of the wrong length for the curve.
    #[error("EC coordinates have the wrong length for the curve")]
    EcCoordinateLength,
    /// An OKP key that is not Ed25519.
    #[error("only Ed25519 OKP keys are supported")]
    OkpNotEd25519,
    /// An Ed25519 key of the wrong length.
    #[error("Ed25519 key must be 32 bytes")]
    Ed25519Length,
    /// A symmetric key, which a JWKS must never hand out.
    #[error("symmetric (oct) keys are never accepted from a JWKS")]
    Symmetric,
    /// A key type jwtgate does not verify with.
    #[error("key type `{0}` is not supported")]
    TypeNotSupported(String),
    /// The crypto library refused the key material.
    #[error("bad {kind} key: {reason}")]
    Material {
        /// `RSA`, `EC` or `Ed25519`.
        kind: &'static str,
        /// The library's words.
        reason: String,
    },
    /// The key's `alg` does not fit its type.
    #[error("`alg` {alg:?} does not fit a {kind:?} key")]
    AlgorithmDoesNotFit {
        /// The declared `alg`.
        alg: Algorithm,
        /// The key's type.
        kind: KeyKind,
    },
}

/// Parses a JWKS document. Fails only when the document itself is unusable (not JSON, no `keys`
/// array, or no usable key at all); single bad keys are skipped.
pub fn parse(bytes: &[u8]) -> Result<Parsed, JwksError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(JwksError::NotJson)?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or(JwksError::NoKeys)?;
    let mut skipped = Vec::new();
    let mut by_kid: HashMap<String, Arc<Key>> = HashMap::new();
    let mut duplicated: Vec<String> = Vec::new();
    let mut without_kid = Vec::new();
    for (index, jwk) in keys.iter().take(MAX_KEYS).enumerate() {
        match parse_key(jwk) {
            Ok(key) => match key.kid.clone() {
                Some(kid) if by_kid.contains_key(&kid) || duplicated.contains(&kid) => {
                    by_kid.remove(&kid);
                    skipped.push(Skipped::DuplicateKid {
                        index,
                        kid: printable(&kid),
                    });
                    duplicated.push(kid);
                }
                Some(kid) => {
                    by_kid.insert(kid, Arc::new(key));
                }
                None => without_kid.push(Arc::new(key)),
            },
            Err(why) => skipped.push(Skipped::Unusable { index, why }),
        }
    }
    if keys.len() > MAX_KEYS {
        skipped.push(Skipped::PastLimit(keys.len() - MAX_KEYS));
    }
    let set = KeySet {
        by_kid,
        without_kid,
        match_any_kid: false,
    };
    if set.is_empty() {
        return Err(JwksError::NoUsableKey(skipped));
    }
    Ok(Parsed { set, skipped })
}

/// One public JWK as a verification key, as strictly as a JWKS member is read (no `oct`, no
/// small RSA, no unknown curve, `alg` fitting the type).
pub fn parse_key(jwk: &Value) -> Result<Key, KeyError> {
    let obj = jwk.as_object().ok_or(KeyError::NotObject)?;
    let text = |name: &'static str| -> Result<Option<&str>, KeyError> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KeyError::NotString(name)),
        }
    };
    let kid = text("kid")?.map(str::to_owned);
    if kid.as_ref().is_some_and(|k| k.len() > crate::jws::MAX_KID_BYTES) {
        return Err(KeyError::KidTooLong);
    }
    if let Some(u) = text("use")?
        && u != "sig"
    {
        return Err(KeyError::NotForSignatures(printable(u)));
    }
    let alg = match text("alg")? {
        None => None,
        Some(a) => Some(
            Algorithm::from_str(a)
                .ok()
                .filter(|a| a.family() != AlgorithmFamily::Hmac)
                .ok_or_else(|| KeyError::AlgorithmNotAccepted(printable(a)))?,
        ),
    };
    let field = |name: &'static str| -> Result<&str, KeyError> { text(name)?.ok_or(KeyError::Missing(name)) };
    let decoded = |name: &'static str| -> Result<Vec<u8>, KeyError> {
        URL_SAFE_NO_PAD
            .decode(field(name)?)
            .map_err(|_| KeyError::NotBase64(name))
    };
    let material = |kind: &'static str| {
        move |e: Unusable| KeyError::Material {
            kind,
            reason: e.to_string(),
        }
    };
    let (kind, public) = match field("kty")? {
        "RSA" => {
            let n = decoded("n")?;
            let bits = rsa_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(KeyError::RsaTooSmall(bits));
            }
            let e = decoded("e")?;
            (KeyKind::Rsa, PublicKey::rsa(n, e).map_err(material("RSA"))?)
        }
        "EC" => {
            let (kind, size, alg) = match field("crv")? {
                "P-256" => (KeyKind::P256, 32, Algorithm::ES256),
                "P-384" => (KeyKind::P384, 48, Algorithm::ES384),
                other => return Err(KeyError::CurveNotSupported(printable(other))),
            };
            let (x, y) = (decoded("x")?, decoded("y")?);
            if x.len() != size || y.len() != size {
                return Err(KeyError::EcCoordinateLength);
            }
            let point = [&[0x04][..], &x, &y].concat();
            (kind, PublicKey::ec(point, alg).map_err(material("EC"))?)
        }
        "OKP" => {
            if field("crv")? != "Ed25519" {
                return Err(KeyError::OkpNotEd25519);
            }
            let x = decoded("x")?;
            if x.len() != 32 {
                return Err(KeyError::Ed25519Length);
            }
            (KeyKind::Ed25519, PublicKey::ed25519(x).map_err(material("Ed25519"))?)
        }
        "oct" => return Err(KeyError::Symmetric),
        other => return Err(KeyError::TypeNotSupported(printable(other))),
    };
    let key = Key { kid, kind, alg, public };
    if let Some(a) = alg
        && !key.supports(a)
    {
        return Err(KeyError::AlgorithmDoesNotFit { alg: a, kind });
    }
    Ok(key)
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => modulus.get(i..).unwrap_or_default(),
        None => &[],
    };
    match trimmed.first() {
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// Truncates and escapes issuer-supplied text before it reaches a log line.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A 2048-bit modulus (first byte 0xc5) and the usual exponent.
    fn rsa(kid: &str, bits: usize) -> Value {
        let mut n = vec![0xc5u8; bits / 8];
        n[bits / 8 - 1] |= 1;
        json!({"kty":"RSA","kid":kid,"n":URL_SAFE_NO_PAD.encode(n),"e":"AQAB"})
    }

    fn parse_json(v: Value) -> Result<Parsed, JwksError> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn indexes_keys_by_kid() {
        let p = parse_json(json!({"keys":[rsa("a", 2048), rsa("b", 4096)]})).unwrap();
        assert_eq!(p.set.kids(), vec!["a", "b"]);
        assert!(p.set.knows("a"));
        assert!(!p.set.knows("c"));
        assert_eq!(p.set.candidates(Some("a"), Algorithm::RS256).count(), 1);
        assert_eq!(p.set.candidates(Some("a"), Algorithm::ES256).count(), 0);
        assert_eq!(p.set.candidates(None, Algorithm::PS256).count(), 2);
    }

    #[test]
    fn weak_rsa_oct_and_encryption_keys_are_skipped_not_fatal() {
        let p = parse_json(json!({"keys":[
            rsa("weak", 1024),
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"oaep","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"},
            {"kty":"XYZ","kid":"x"},
            {"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"},
            rsa("good", 2048),
        ]}))
        .unwrap();
        assert_eq!(p.set.kids(), vec!["good"]);
        assert_eq!(p.skipped.len(), 6, "{:?}", p.skipped);
        assert!(p.skipped[0].to_string().contains("1024 bits"));
        assert!(p.skipped[1].to_string().contains("oct"));
    }

    #[test]
    fn duplicate_kids_are_all_dropped() {
        let p = parse_json(json!({"keys":[rsa("d", 2048), rsa("d", 2048), rsa("d", 2048), rsa("ok", 2048)]})).unwrap();
        assert_eq!(p.set.kids(), vec!["ok"]);
        assert!(p.skipped.iter().any(|s| s.to_string().contains("more than once")));
    }

    #[test]
    fn key_alg_binds_the_token_alg() {
        let mut k = rsa("a", 2048);
        k["alg"] = json!("PS256");
        let p = parse_json(json!({"keys":[k]})).unwrap();
        assert_eq!(p.set.candidates(Some("a"), Algorithm::RS256).count(), 0);
        assert_eq!(p.set.candidates(Some("a"), Algorithm::PS256).count(), 1);
    }

    #[test]
    fn unusable_documents_fail() {
        assert!(parse(b"<html>").unwrap_err().to_string().contains("not JSON"));
        assert!(parse(b"{}").unwrap_err().to_string().contains("no `keys`"));
        assert!(
            parse(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#)
                .unwrap_err()
                .to_string()
                .contains("no usable key")
        );
    }

    #[test]
    fn shared_secret_set_answers_any_kid() {
        let s = KeySet::shared_secret(&[7; 32]).unwrap();
        assert!(s.knows("anything"));
        assert_eq!(s.candidates(Some("x"), Algorithm::HS256).count(), 1);
        assert_eq!(s.candidates(None, Algorithm::RS256).count(), 0);
    }

    #[test]
    fn rsa_bits_ignores_leading_zero_bytes() {
        assert_eq!(rsa_bits(&[0, 0, 0x80, 0]), 16);
        assert_eq!(rsa_bits(&[0x01]), 1);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
