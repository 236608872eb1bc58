//! A key's public material, parsed once into the crypto library's (aws-lc's) verification keys
//! when its key set loads, and the one function that checks a JWS signature with it.
//!
//! `jsonwebtoken::crypto::verify` rebuilds aws-lc's key from the JWK's components, boxes a
//! verifier and copies the key for every signature it checks; the RSA modulus is turned into a
//! big number and its Montgomery constants recomputed each time. Here that is done once per key
//! (per key and algorithm for RSA, whose algorithm fixes padding and digest), and a check is
//! aws-lc's verification and nothing else.
//!
//! What is accepted does not change: the same aws-lc algorithms `jsonwebtoken` uses (PKCS#1 v1.5
//! and PSS over 2,048–8,192-bit moduli, fixed-length `R‖S` ECDSA on P-256/P-384, Ed25519,
//! constant-time HMAC), the same base64url decoding of the signature. The tests check this
//! signature by signature against `jsonwebtoken` itself, valid and edge cases alike.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

pub use crate::jws::MAX_SIGNATURE_BYTES;

/// The RSA algorithms, in the order of [`PublicKey`]'s parsed keys.
const RSA_ALGORITHMS: [(Algorithm, &RsaParameters); 6] = [
    (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
];

/// Why key material cannot become a verification key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(String);

/// A verification key as aws-lc holds it.
pub struct PublicKey {
    material: Material,
}

enum Material {
    /// Modulus and exponent (big-endian), and the key parsed for each RSA algorithm on its first
    /// use with it (the parameters are part of aws-lc's parsed key). The first is parsed at once,
    /// so inconsistent components are refused when the key set loads.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        parsed: Box<[OnceLock<ParsedPublicKey>; 6]>,
    },
    /// An uncompressed point, parsed for its curve's algorithm (`ES256` or `ES384`).
    Ec {
        point: Vec<u8>,
        alg: Algorithm,
        parsed: ParsedPublicKey,
    },
    /// Ed25519's 32 bytes, parsed.
    Ed25519 { x: Vec<u8>, parsed: ParsedPublicKey },
    /// A shared secret, keyed once per hash (boxed: aws-lc's HMAC keys are over a kilobyte each).
    Hmac(Box<HmacKeys>),
}

/// One HMAC key per hash of HS256/384/512.
struct HmacKeys {
    sha256: hmac::Key,
    sha384: hmac::Key,
    sha512: hmac::Key,
}

impl PublicKey {
    /// An RSA key from its modulus and exponent (big-endian, as a JWK's `n` and `e` decode).
    pub fn rsa(n: Vec<u8>, e: Vec<u8>) -> Result<Self, Unusable> {
        let first = rsa_key(&n, &e, RSA_ALGORITHMS[0].1).map_err(|e| Unusable(e.to_string()))?;
        let parsed: Box<[OnceLock<ParsedPublicKey>; 6]> = Box::default();
        let _ = parsed[0].set(first);
        Ok(Self {
            material: Material::Rsa { n, e, parsed },
        })
    }

    /// An EC key from its uncompressed point (`0x04 ‖ x ‖ y`), on P-256 for `ES256` or P-384
    /// for `ES384`.
    pub fn ec(point: Vec<u8>, alg: Algorithm) -> Result<Self, Unusable> {
        let curve = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            other => return Err(Unusable(format!("{other:?} is not an EC algorithm"))),
        };
        let parsed = ParsedPublicKey::new(curve, &point).map_err(|e| Unusable(e.to_string()))?;
        Ok(Self {
            material: Material::Ec { point, alg, parsed },
        })
    }

    /// An Ed25519 key from its 32 bytes.
    pub fn ed25519(x: Vec<u8>) -> Result<Self, Unusable> {
        let parsed = ParsedPublicKey::new(&sig::ED25519, &x).map_err(|e| Unusable(e.to_string()))?;
        Ok(Self {
            material: Material::Ed25519 { x, parsed },
        })
    }

    /// A shared secret for HS256/384/512; an empty one is refused.
    pub fn hmac(secret: &[u8]) -> Result<Self, Unusable> {
        if secret.is_empty() {
            return Err(Unusable("the shared secret is empty".into()));
        }
        Ok(Self {
            material: Material::Hmac(Box::new(HmacKeys {
                sha256: hmac::Key::new(hmac::HMAC_SHA256, secret),
                sha384: hmac::Key::new(hmac::HMAC_SHA384, secret),
                sha512: hmac::Key::new(hmac::HMAC_SHA512, secret),
            })),
        })
    }

    /// Whether `other` is the same public key. Shared secrets are never compared (they are
    /// configured, not published, so no key set reload has one to keep).
    pub fn same_as(&self, other: &PublicKey) -> bool {
        match (&self.material, &other.material) {
            (Material::Rsa { n, e, .. }, Material::Rsa { n: n2, e: e2, .. }) => n == n2 && e == e2,
            (Material::Ec { point, .. }, Material::Ec { point: p2, .. }) => point == p2,
            (Material::Ed25519 { x, .. }, Material::Ed25519 { x: x2, .. }) => x == x2,
            _ => false,
        }
    }

    /// Whether `signature_b64` (base64url, unpadded) is a valid `alg` signature of `message`
    /// under this key. An algorithm that does not fit the key is `false`, as is a signature
    /// that does not decode or is longer than [`MAX_SIGNATURE_BYTES`].
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature_b64: &str) -> bool {
        let mut buf = [0u8; MAX_SIGNATURE_BYTES];
        if base64::decoded_len_estimate(signature_b64.len()) > buf.len() {
            return false;
        }
        let Ok(len) = URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut buf) else {
            return false;
        };
        let signature = &buf[..len];
        match &self.material {
            Material::Rsa { n, e, parsed } => {
                let Some(i) = RSA_ALGORITHMS.iter().position(|(a, _)| *a == alg) else {
                    return false;
                };
                let key = match parsed[i].get() {
                    Some(key) => key,
                    None => match rsa_key(n, e, RSA_ALGORITHMS[i].1) {
                        Ok(key) => parsed[i].get_or_init(|| key),
                        Err(_) => return false,
                    },
                };
                key.verify_sig(message, signature).is_ok()
            }
            Material::Ec { alg: curve, parsed, .. } => alg == *curve && parsed.verify_sig(message, signature).is_ok(),
            Material::Ed25519 { parsed, .. } => {
                alg == Algorithm::EdDSA && parsed.verify_sig(message, signature).is_ok()
            }
            Material::Hmac(keys) => {
                let key = match alg {
                    Algorithm::HS256 => &keys.sha256,
                    Algorithm::HS384 => &keys.sha384,
                    Algorithm::HS512 => &keys.sha512,
                    _ => return false,
                };
                hmac::verify(key, message, signature).is_ok()
            }
        }
    }
}

/// aws-lc's key for RSA components and one algorithm's parameters.
fn rsa_key(
    n: &[u8],
    e: &[u8],
    params: &'static RsaParameters,
) -> Result<ParsedPublicKey, aws_lc_rs::error::KeyRejected> {
    RsaPublicKeyComponents { n, e }.to_parsed_public_key(params)
}

#[cfg(test)]
mod tests {
    //! Every check here asks the same question of this module and of `jsonwebtoken`'s own
    //! `crypto::verify` (what jwtgate called before keys were parsed once), and wants the same
    //! answer: valid signatures, the Wycheproof-style edge cases, and random corruptions.
    #![allow(clippy::unwrap_used)]

    use jsonwebtoken::{DecodingKey, EncodingKey, jwk::Jwk};
    use proptest::prelude::*;
    use serde_json::Value;
    use sha2::Digest;

    use super::*;
    use crate::keys::jwks::{Key, parse_key};
    use crate::mint;

    const RSA: &[u8] = include_bytes!("../../../../tests/fixtures/keys/rsa-a.pem");
    const P256: &[u8] = include_bytes!("../../../../tests/fixtures/keys/ec-p256.pem");
    const P384: &[u8] = include_bytes!("../../../../tests/fixtures/keys/ec-p384.pem");
    const ED25519: &[u8] = include_bytes!("../../../../tests/fixtures/keys/ed25519.pem");
    const SECRET: &[u8] = b"a-shared-secret-of-more-than-32-bytes!";
    const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";

    /// Every algorithm jwtgate verifies, RSA's six first.
    const ALL: [Algorithm; 12] = crate::config::ALGORITHMS;

    /// The group orders, big-endian: ECDSA's `n` for P-256 and P-384, Ed25519's `L`.
    const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    const P384_N: &str =
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";
    const ED25519_L: &str = "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed";

    /// One signer: its signing key, the key under test and `jsonwebtoken`'s for it.
    struct Signer {
        alg: Algorithm,
        signing: EncodingKey,
        ours: Key,
        theirs: DecodingKey,
    }

    fn signer(pem: &[u8], alg: Algorithm) -> Signer {
        let signing = mint::signing_key(pem, alg).unwrap();
        let mut jwk = mint::public_jwk(pem, alg, "k").unwrap();
        // Without its `alg`, an RSA key is offered every RSA algorithm: PS/RS mixing is tried.
        jwk.as_object_mut().unwrap().remove("alg");
        let theirs = DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(jwk.clone()).unwrap()).unwrap();
        Signer {
            alg,
            signing,
            ours: parse_key(&jwk).unwrap(),
            theirs,
        }
    }

    fn hmac_signer(alg: Algorithm) -> Signer {
        Signer {
            alg,
            signing: EncodingKey::from_secret(SECRET).unwrap(),
            ours: Key::hmac(SECRET).unwrap(),
            theirs: DecodingKey::from_secret(SECRET).unwrap(),
        }
    }

    fn signers() -> Vec<Signer> {
        let mut all: Vec<Signer> = ALL[..6].iter().map(|a| signer(RSA, *a)).collect();
        all.push(signer(P256, Algorithm::ES256));
        all.push(signer(P384, Algorithm::ES384));
        all.push(signer(ED25519, Algorithm::EdDSA));
        all.extend([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512].map(hmac_signer));
        all
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `a - b` for big-endian numbers of one length (`a ≥ b`).
    fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; a.len()];
        let mut borrow = 0i16;
        for i in (0..a.len()).rev() {
            let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
            borrow = i16::from(d < 0);
            out[i] = (d + 256 * borrow) as u8;
        }
        out
    }

    /// `a + b` for big-endian numbers of one length, carry dropped.
    fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; a.len()];
        let mut carry = 0u16;
        for i in (0..a.len()).rev() {
            let s = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = s as u8;
            carry = s >> 8;
        }
        out
    }

    /// DER `SEQUENCE { INTEGER r, INTEGER s }` of a fixed-length `R‖S` signature.
    fn der(raw: &[u8]) -> Vec<u8> {
        let int = |b: &[u8]| {
            let b: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
            let mut v = if b.first().is_some_and(|x| x & 0x80 != 0) {
                vec![0]
            } else {
                vec![]
            };
            v.extend(b);
            [vec![0x02, v.len() as u8], v].concat()
        };
        let (r, s) = raw.split_at(raw.len() / 2);
        let body = [int(r), int(s)].concat();
        [vec![0x30, body.len() as u8], body].concat()
    }

    /// The edge cases for one valid signature of `s.alg`, each named.
    fn edges(s: &Signer, valid: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut flipped_first = valid.to_vec();
        flipped_first[0] ^= 0x80;
        let mut flipped_last = valid.to_vec();
        *flipped_last.last_mut().unwrap() ^= 1;
        let mut out = vec![
            ("empty".into(), vec![]),
            ("all zero".into(), vec![0; valid.len()]),
            ("all ones".into(), vec![0xff; valid.len()]),
            ("one byte short".into(), valid[..valid.len() - 1].to_vec()),
            ("a zero byte in front".into(), [&[0][..], valid].concat()),
            ("a zero byte behind".into(), [valid, &[0][..]].concat()),
            ("first bit flipped".into(), flipped_first),
            ("last bit flipped".into(), flipped_last),
            ("doubled".into(), valid.repeat(2)),
        ];
        let half = valid.len() / 2;
        let (r, sv) = valid.split_at(half);
        match s.alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                let n = hex(if s.alg == Algorithm::ES256 { P256_N } else { P384_N });
                let zero = vec![0; half];
                out.extend([
                    ("high S (n - s)".into(), [r, &sub(&n, sv)].concat()),
                    ("r = 0".into(), [&zero[..], sv].concat()),
                    ("s = 0".into(), [r, &zero[..]].concat()),
                    ("r = n".into(), [&n[..], sv].concat()),
                    ("s = n".into(), [r, &n[..]].concat()),
                    ("r and s swapped".into(), [sv, r].concat()),
                    ("DER-encoded".into(), der(valid)),
                ]);
            }
            Algorithm::EdDSA => {
                // S is little-endian: reversed, S + L is the non-canonical twin of S.
                let le = |b: &[u8]| b.iter().rev().copied().collect::<Vec<u8>>();
                let s_plus_l = le(&add(&le(sv), &hex(ED25519_L)));
                out.extend([
                    ("S + L (non-canonical)".into(), [r, &s_plus_l].concat()),
                    ("S = L".into(), [r, &le(&hex(ED25519_L))].concat()),
                    ("R = 0".into(), [&vec![0; half][..], sv].concat()),
                ]);
            }
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                out.push(("truncated to 16 bytes".into(), valid[..16].to_vec()));
            }
            _ => {
                // RSA: the signature as a number equal to the modulus, and one with its last
                // byte moved (above the modulus unless that byte was 0xff).
                let n = match &s.ours.public.material {
                    Material::Rsa { n, .. } => n.clone(),
                    _ => unreachable!(),
                };
                let mut above = n.clone();
                *above.last_mut().unwrap() = above.last().unwrap().wrapping_add(1);
                out.extend([("s = n".into(), n), ("s = n, last byte + 1".into(), above)]);
            }
        }
        out
    }

    /// Both verifiers' answers for `signature_b64` under `s`'s key with `alg`.
    fn answers(s: &Signer, alg: Algorithm, signature_b64: &str) -> (bool, bool) {
        let ours = s.ours.verifies(alg, MESSAGE, signature_b64);
        let theirs = jsonwebtoken::crypto::verify(signature_b64, MESSAGE, &s.theirs, alg).unwrap_or(false);
        (ours, theirs)
    }

    #[test]
    fn valid_signatures_verify_with_their_own_algorithm_only_as_before() {
        for s in signers() {
            let valid = jsonwebtoken::crypto::sign(MESSAGE, &s.signing, s.alg).unwrap();
            for alg in ALL {
                let (ours, theirs) = answers(&s, alg, &valid);
                assert_eq!(ours, theirs, "{:?} signature checked as {alg:?}", s.alg);
                assert_eq!(ours, alg == s.alg, "{:?} signature checked as {alg:?}", s.alg);
            }
            assert!(!s.ours.verifies(s.alg, b"another message", &valid), "{:?}", s.alg);
        }
    }

    #[test]
    fn edge_signatures_get_the_answers_they_got_before() {
        for s in signers() {
            let valid = URL_SAFE_NO_PAD
                .decode(jsonwebtoken::crypto::sign(MESSAGE, &s.signing, s.alg).unwrap())
                .unwrap();
            for (name, signature) in edges(&s, &valid) {
                for alg in ALL {
                    let (ours, theirs) = answers(&s, alg, &b64(&signature));
                    assert_eq!(ours, theirs, "{:?} key, {name}, checked as {alg:?}", s.alg);
                }
                // Only ECDSA's high S is a valid signature, to aws-lc as to RFC 7518 (which
                // does not ask for low S); every other edge is refused.
                let (ours, _) = answers(&s, s.alg, &b64(&signature));
                assert_eq!(ours, name.starts_with("high S"), "{:?} key, {name}", s.alg);
            }
        }
    }

    #[test]
    fn signatures_that_are_not_strict_base64url_are_refused_as_before() {
        for s in signers() {
            let valid = jsonwebtoken::crypto::sign(MESSAGE, &s.signing, s.alg).unwrap();
            let bytes = URL_SAFE_NO_PAD.decode(&valid).unwrap();
            let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let mut trailing_bits = valid.clone();
            // A last character whose unused low bits are set (when the length leaves any).
            if !valid.len().is_multiple_of(4) {
                let last = trailing_bits.pop().unwrap();
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let i = alphabet.iter().position(|c| *c == last as u8).unwrap();
                trailing_bits.push(alphabet[i | 1] as char);
            }
            for text in [
                format!("{valid}="),
                format!(" {valid}"),
                standard,
                trailing_bits,
                "A".repeat(MAX_SIGNATURE_BYTES * 4 / 3 + 8),
            ] {
                let (ours, theirs) = answers(&s, s.alg, &text);
                assert_eq!(ours, theirs, "{:?}: {text:?}", s.alg);
                if text != valid {
                    assert!(!ours, "{:?}: {text:?}", s.alg);
                }
            }
        }
    }

    #[test]
    fn an_ec_point_off_its_curve_is_refused_when_the_key_loads() {
        let off_curve = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": b64(&[1; 32]), "y": b64(&[2; 32]),
        });
        let why = parse_key(&off_curve).unwrap_err().to_string();
        assert!(why.starts_with("bad EC key"), "{why}");
        assert!(PublicKey::hmac(b"").is_err());
    }

    #[test]
    fn an_rsa_key_with_exponent_one_loads_but_verifies_nothing_as_before() {
        // aws-lc checks the exponent when it verifies, not when it builds the key.
        let mut jwk = mint::public_jwk(RSA, Algorithm::RS256, "k").unwrap();
        jwk["e"] = Value::String(b64(&[1]));
        let mut s = signer(RSA, Algorithm::RS256);
        s.ours = parse_key(&jwk).unwrap();
        s.theirs = DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(jwk).unwrap()).unwrap();
        let valid = jsonwebtoken::crypto::sign(MESSAGE, &s.signing, s.alg).unwrap();
        assert_eq!(answers(&s, s.alg, &valid), (false, false));
        // With e = 1, s^e = s: the PKCS#1 v1.5 encoding of the message itself would pass a
        // verifier that let such a key through.
        let n_len = match &s.ours.public.material {
            Material::Rsa { n, .. } => n.len(),
            _ => unreachable!(),
        };
        let digest_info = [
            hex("3031300d060960864801650304020105000420"),
            sha2::Sha256::digest(MESSAGE).to_vec(),
        ]
        .concat();
        let mut encoded = vec![0x00, 0x01];
        encoded.resize(n_len - digest_info.len() - 1, 0xff);
        encoded.push(0x00);
        encoded.extend(digest_info);
        assert_eq!(answers(&s, s.alg, &b64(&encoded)), (false, false));
    }

    #[test]
    fn an_rsa_key_parses_each_algorithm_once_and_keeps_it() {
        let s = signer(RSA, Algorithm::PS384);
        let valid = jsonwebtoken::crypto::sign(MESSAGE, &s.signing, s.alg).unwrap();
        let Material::Rsa { parsed, .. } = &s.ours.public.material else {
            unreachable!()
        };
        assert!(parsed[0].get().is_some() && parsed[4].get().is_none());
        assert!(s.ours.verifies(Algorithm::PS384, MESSAGE, &valid));
        let first = parsed[4].get().map(|k| k as *const ParsedPublicKey);
        assert!(s.ours.verifies(Algorithm::PS384, MESSAGE, &valid));
        assert_eq!(parsed[4].get().map(|k| k as *const ParsedPublicKey), first);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random corruption of a valid signature (a byte changed, cut, or grown) gets the
        /// answer `jsonwebtoken` gives, for every algorithm family.
        #[test]
        fn corrupted_signatures_get_the_same_answer(
            which in 0usize..12,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in 0usize..4,
            grow in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let s = &signers()[which];
            let mut sig = URL_SAFE_NO_PAD
                .decode(jsonwebtoken::crypto::sign(MESSAGE, &s.signing, s.alg).unwrap())
                .unwrap();
            let i = at.index(sig.len());
            sig[i] = byte;
            sig.truncate(sig.len() - cut);
            sig.extend(grow);
            let (ours, theirs) = answers(s, s.alg, &b64(&sig));
            prop_assert_eq!(ours, theirs);
        }
    }
}
