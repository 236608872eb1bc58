//! The tokens a run sends, as ready `Authorization` header values.
//!
//! Valid tokens are minted before the run, never during it: signing costs more than verifying
//! (RS256 by ~20×), so minting on the client core would measure the client. A run takes them
//! from two pre-minted pools: 1,000 warm tokens that cycle, and a pool of fresh tokens each used
//! once (sized by the caller from the expected rate; if it runs dry it wraps around and
//! [`TokenSource::reused`] says how often). Invalid tokens (wrong signature, unknown `kid`) need
//! no signing, so they are forged per request, each one different. Their signature is a genuine
//! signature by the right key over *another* token: random bytes would not do, as they are often
//! out of range for the algorithm (an RSA value above the modulus, an Ed25519 `S` above the group
//! order) and refused before any arithmetic, which would measure a cheaper path than a forgery.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::EncodingKey;
use jwtgate_core::{clock, mint};
use serde_json::{Map, Value, json};

use super::{AUDIENCE, Alg, Mix};

/// Size of the warm pool.
pub const WARM_TOKENS: usize = 1_000;

/// Lifetime of minted tokens: long enough for any run.
const TTL_SECS: u64 = 3_600;

/// One in this many requests of the `mixed` mix carries a fresh token (5%).
const MIXED_FRESH_EVERY: u64 = 20;

/// Signs `n` tokens on `threads` threads; each has its own `jti`, `iat` and `exp`.
pub fn mint_pool(key: &EncodingKey, alg: Alg, n: usize, threads: usize) -> Result<Vec<String>, String> {
    let claims = claims(alg);
    let threads = threads.clamp(1, n.max(1));
    let per = n.div_ceil(threads);
    let chunks = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                let claims = &claims;
                s.spawn(move || {
                    (0..count)
                        .map(|_| {
                            mint::mint(key, alg.jose(), alg.kid(), claims, TTL_SECS)
                                .map(bearer)
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a minting thread panicked".into())))
            .collect::<Result<Vec<_>, String>>()
    })?;
    Ok(chunks.concat())
}

fn claims(alg: Alg) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), alg.issuer().into());
    claims.insert("sub".into(), "bench-user".into());
    claims.insert("aud".into(), AUDIENCE.into());
    claims
}

fn bearer(token: String) -> String {
    format!("Bearer {token}")
}

/// Builds invalid tokens per request: well-formed, each different, never verifiable.
struct Forge {
    alg: Alg,
    /// `{"alg":…,"typ":"JWT","kid":<known kid>}`, encoded.
    header_b64: String,
    /// The key's genuine signature over a different token, encoded.
    signature_b64: String,
    iat: u64,
}

impl Forge {
    fn new(key: &EncodingKey, alg: Alg) -> Result<Self, String> {
        let mut header = json!({ "alg": alg.name(), "typ": "JWT" });
        if let Some(kid) = alg.kid() {
            header["kid"] = kid.into();
        }
        let mut other = claims(alg);
        other.insert("sub".into(), "someone-else".into());
        let decoy = mint::mint(key, alg.jose(), alg.kid(), &other, TTL_SECS).map_err(|e| e.to_string())?;
        let signature_b64 = decoy.rsplit('.').next().unwrap_or_default().to_owned();
        Ok(Self {
            alg,
            header_b64: B64.encode(header.to_string()),
            signature_b64,
            iat: clock::unix(),
        })
    }

    fn payload_b64(&self, i: u64) -> String {
        B64.encode(format!(
            r#"{{"iss":"{}","sub":"bench-user","aud":"{AUDIENCE}","iat":{},"exp":{},"jti":"forged-{i}"}}"#,
            self.alg.issuer(),
            self.iat,
            self.iat + TTL_SECS,
        ))
    }

    /// A valid header and payload (unique `jti`) under another token's signature.
    fn bad_signature(&self, i: u64) -> String {
        format!(
            "Bearer {}.{}.{}",
            self.header_b64,
            self.payload_b64(i),
            self.signature_b64
        )
    }

    /// A header naming a `kid` nobody published (unique per request).
    fn random_kid(&self, i: u64) -> String {
        let header = format!(r#"{{"alg":"{}","typ":"JWT","kid":"unknown-{i}"}}"#, self.alg.name());
        format!(
            "Bearer {}.{}.{}",
            B64.encode(header),
            self.payload_b64(i),
            self.signature_b64
        )
    }
}

/// Hands out the `Authorization` value of each request in a fixed sequence; [`Self::rewind`]
/// restarts it, so every target sees the same tokens.
pub struct TokenSource {
    mix: Mix,
    warm: Vec<String>,
    fresh: Vec<String>,
    forge: Forge,
    next: AtomicU64,
    reused: AtomicU64,
}

impl TokenSource {
    /// A source for `mix` from pre-minted `warm` and `fresh` pools (either may be empty when the
    /// mix does not use it); `key` signs the decoy whose signature forged tokens carry.
    pub fn new(mix: Mix, alg: Alg, key: &EncodingKey, warm: Vec<String>, fresh: Vec<String>) -> Result<Self, String> {
        if matches!(mix, Mix::Warm | Mix::Mixed) && warm.is_empty() {
            return Err("the warm token pool is empty".into());
        }
        if mix.fresh_fraction() > 0.0 && fresh.is_empty() {
            return Err("the fresh token pool is empty".into());
        }
        if mix == Mix::RandomKid && alg == Alg::Hs256 {
            return Err("random-kid needs a JWKS algorithm; HS256 keys have no kid".into());
        }
        Ok(Self {
            mix,
            warm,
            fresh,
            forge: Forge::new(key, alg)?,
            next: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        })
    }

    /// The `Authorization` header value of the next request.
    pub fn next(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.mix {
            Mix::Warm => self.warm(i),
            Mix::Cold => self.fresh(i),
            Mix::Mixed if i % MIXED_FRESH_EVERY == MIXED_FRESH_EVERY - 1 => self.fresh(i / MIXED_FRESH_EVERY),
            Mix::Mixed => self.warm(i),
            Mix::BadSignature => self.forge.bad_signature(i),
            Mix::RandomKid => self.forge.random_kid(i),
        }
    }

    fn warm(&self, i: u64) -> String {
        self.warm[(i % self.warm.len() as u64) as usize].clone()
    }

    fn fresh(&self, k: u64) -> String {
        let len = self.fresh.len() as u64;
        if k >= len {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        self.fresh[(k % len) as usize].clone()
    }

    /// Starts the sequence over and zeroes [`Self::reused`].
    pub fn rewind(&self) {
        self.next.store(0, Ordering::Relaxed);
        self.reused.store(0, Ordering::Relaxed);
    }

    /// Tokens handed out since the last rewind.
    pub fn handed_out(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// How many "fresh" tokens were handed out a second time because the pool ran dry.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Size of the fresh pool.
    pub fn fresh_pool(&self) -> usize {
        self.fresh.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(mix: Mix, fresh: usize) -> TokenSource {
        let warm = (0..WARM_TOKENS).map(|i| format!("Bearer warm-{i}")).collect();
        let fresh = (0..fresh).map(|i| format!("Bearer fresh-{i}")).collect();
        let key = super::super::fixture::signing_key(&super::super::fixture::default_keys_dir(), Alg::Es256).unwrap();
        TokenSource::new(mix, Alg::Es256, &key, warm, fresh).unwrap()
    }

    #[test]
    fn mixed_sends_one_fresh_token_in_twenty() {
        let s = source(Mix::Mixed, 100);
        let fresh = (0..2_000).filter(|_| s.next().starts_with("Bearer fresh-")).count();
        assert_eq!(fresh, 100);
        assert_eq!(s.reused(), 0);
        s.next();
        assert_eq!(s.reused(), 0, "warm tokens are never counted as reused");
    }

    #[test]
    fn cold_counts_reuse_once_the_pool_runs_dry_and_rewind_repeats_the_sequence() {
        let s = source(Mix::Cold, 3);
        let first: Vec<_> = (0..5).map(|_| s.next()).collect();
        assert_eq!(s.reused(), 2);
        s.rewind();
        let again: Vec<_> = (0..5).map(|_| s.next()).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn forged_tokens_are_well_formed_and_all_different() {
        let s = source(Mix::RandomKid, 0);
        let (a, b) = (s.next(), s.next());
        assert_ne!(a, b);
        let token = a.strip_prefix("Bearer ").unwrap();
        let parts: Vec<_> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], "unknown-0");
        assert_eq!(B64.decode(parts[2]).unwrap().len(), 64);
        let s = source(Mix::BadSignature, 0);
        let (a, b) = (s.next(), s.next());
        assert_ne!(a, b);
        let claims: Value = serde_json::from_slice(&B64.decode(a.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["aud"], AUDIENCE);
        assert_eq!(
            a.rsplit('.').next(),
            b.rsplit('.').next(),
            "one decoy signature for all"
        );
    }

    #[test]
    fn forged_signatures_are_genuine_signatures_by_the_key_yet_do_not_verify() {
        use jsonwebtoken::{DecodingKey, Validation, decode};
        let dir = super::super::fixture::default_keys_dir();
        for alg in [Alg::Rs256, Alg::Es256, Alg::EdDsa, Alg::Hs256] {
            let key = super::super::fixture::signing_key(&dir, alg).unwrap();
            let s = TokenSource::new(Mix::BadSignature, alg, &key, vec![], vec![]).unwrap();
            let forged = s.next();
            let token = forged.strip_prefix("Bearer ").unwrap();
            let signature = B64.decode(token.rsplit('.').next().unwrap()).unwrap();
            let expected_len = match alg {
                Alg::Rs256 => 256,
                Alg::Es256 | Alg::EdDsa => 64,
                Alg::Hs256 => 32,
            };
            assert_eq!(signature.len(), expected_len, "{alg:?}");
            let jwks: jsonwebtoken::jwk::JwkSet =
                serde_json::from_value(super::super::fixture::jwks(&dir).unwrap()).unwrap();
            let decoding = match alg.kid() {
                Some(kid) => DecodingKey::from_jwk(jwks.find(kid).unwrap()).unwrap(),
                None => DecodingKey::from_secret(crate::fixture::HMAC_SECRET).unwrap(),
            };
            let mut validation = Validation::new(alg.jose());
            validation.set_audience(&[AUDIENCE]);
            let err = decode::<Value>(token, &decoding, &validation).unwrap_err();
            assert_eq!(
                *err.kind(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature,
                "{alg:?}"
            );
        }
    }

    #[test]
    fn minted_pool_has_the_requested_size_and_distinct_tokens() {
        let key = jwtgate_core::mint::signing_key(crate::fixture::HMAC_SECRET, Alg::Hs256.jose()).unwrap();
        let pool = mint_pool(&key, Alg::Hs256, 7, 3).unwrap();
        assert_eq!(pool.len(), 7);
        let distinct: std::collections::HashSet<_> = pool.iter().collect();
        assert_eq!(distinct.len(), 7);
    }
}
