//! JWS signature and claim validation: the provider is chosen by `iss` (exactly), the algorithm
//! must be on that provider's allow-list and fit the key's own type, the key comes only from that
//! provider's set, and time, audience, type and required claims are checked after the signature
//! (those checks in `claims.rs`, shared with introspected tokens).
//!
//! This module knows nothing of routes or of the wire.

use crate::binding::Confirmation;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::claims::{claim_path, header_value};
use crate::clock;
use crate::config::{Config, KeySource, Provider, normalize_typ};
use crate::jws;
use crate::keys::KeyStore;
use crate::keys::jwks::Key;
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::request::Identity;
pub(crate) use claims::whole_seconds;
pub use claims::{MAX_NUMERIC_DATE, STRING_IDS, canonical_ids, check_claims};

mod claims;

/// A provider's settings and its keys.
pub struct ProviderKeys {
    /// Validated settings.
    pub config: Provider,
    /// Its position in the config's `providers` (indexes metrics handle tables).
    pub index: usize,
    /// `config.name`, shared by every token it verifies.
    pub name: Arc<str>,
    /// `config.issuer`, shared by every token it verifies.
    pub issuer: Arc<str>,
    /// Its key store.
    pub keys: Arc<KeyStore>,
}

/// A token whose signature and claims have been checked, with what the gate reads from it
/// extracted once. Fresh from [`Verifier::verify`] it holds every claim; the copy kept in the
/// verified-token cache ([`Verified::for_cache`]) holds only the claims its routes read, since
/// an entry is about 300 bytes that way instead of about 2 KiB.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Name of the provider that issued it (shared with the provider's settings).
    pub provider: Arc<str>,
    /// `iss` (shared with the provider's settings).
    pub issuer: Arc<str>,
    /// `sub`, when it is a string.
    pub subject: Option<String>,
    /// `jti`, when it is a string.
    pub jti: Option<String>,
    /// `exp`.
    pub exp: Option<u64>,
    /// `iat`.
    pub iat: Option<u64>,
    /// The algorithm the signature was made with (`None`: an opaque token, introspected).
    pub alg: Option<Algorithm>,
    /// The claims object: all of it, or on a cached copy the claims route policies read.
    pub claims: Map<String, Value>,
    /// The provider's `claims_to_headers` values, rendered, in its order (`None`: claim absent or
    /// not representable as a header value).
    pub header_values: Box<[Option<String>]>,
    /// The payload segment as sent, when the provider forwards it (`payload_header`).
    pub payload_b64: Option<String>,
    /// The key that verified the signature (a cached entry is valid only while its provider's
    /// current key set still holds this key); `None` for an introspected opaque token.
    pub key: Option<Arc<Key>>,
    /// What `cnf` binds the token to (a DPoP key, a client certificate); kept on cached copies,
    /// so a cached verification is never a bearer pass for a bound token.
    pub cnf: Option<Box<Confirmation>>,
}

impl Verified {
    /// The copy to cache: the same, with only the top-level claims named in `keep`.
    pub fn for_cache(&self, keep: &BTreeSet<String>) -> Self {
        Self {
            provider: self.provider.clone(),
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            jti: self.jti.clone(),
            exp: self.exp,
            iat: self.iat,
            alg: self.alg,
            claims: self
                .claims
                .iter()
                .filter(|(name, _)| keep.contains(name.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            header_values: self.header_values.clone(),
            payload_b64: self.payload_b64.clone(),
            key: self.key.clone(),
            cnf: self.cnf.clone(),
        }
    }

    /// Who it says the caller is.
    pub fn identity(&self) -> Identity {
        Identity {
            provider: self.provider.clone(),
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
        }
    }

    /// Whether it has expired by `now` (with `p`'s clock skew). The only check that can change
    /// its answer for a token that passed them all: `nbf` and `iat` were in the past already.
    pub fn expired(&self, p: &Provider, now: u64) -> bool {
        self.exp
            .is_some_and(|exp| now > exp.saturating_add(p.clock_skew.as_secs()))
    }
}

/// Verifies tokens against every configured provider.
pub struct Verifier {
    by_issuer: HashMap<String, Arc<ProviderKeys>>,
    max_token_bytes: usize,
}

impl Verifier {
    /// Builds the verifier and one key store per provider (fetches counted in `metrics`; no
    /// disk cache: for one-shot commands and benchmarks).
    pub fn new(config: &Config, client: &reqwest::Client, metrics: &Metrics) -> Self {
        Self::with_key_stores(config, |p| KeyStore::new(p, client.clone(), metrics, None))
    }

    /// Builds the verifier with the key store `store_for` gives each provider (a reload passes
    /// the stores it keeps).
    pub fn with_key_stores(config: &Config, mut store_for: impl FnMut(&Provider) -> Arc<KeyStore>) -> Self {
        let by_issuer = config
            .providers
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let keys = store_for(p);
                (
                    p.issuer.clone(),
                    Arc::new(ProviderKeys {
                        config: p.clone(),
                        index,
                        name: Arc::from(p.name.as_str()),
                        issuer: Arc::from(p.issuer.as_str()),
                        keys,
                    }),
                )
            })
            .collect();
        Self {
            by_issuer,
            max_token_bytes: config.max_token_bytes,
        }
    }

    /// Every provider with its keys.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<ProviderKeys>> {
        self.by_issuer.values()
    }

    /// Every provider, ordered by name (as `/readyz` and the admin API list them).
    pub fn providers_by_name(&self) -> Vec<&Arc<ProviderKeys>> {
        let mut providers: Vec<_> = self.by_issuer.values().collect();
        providers.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        providers
    }

    /// Whether every provider has usable keys (an introspection-only provider needs none): what
    /// readiness means.
    pub fn keys_ready(&self) -> bool {
        self.by_issuer
            .values()
            .all(|p| p.config.key_source == KeySource::None || p.keys.usable().is_some())
    }

    /// Tokens longer than this are refused before decoding.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// The provider for an exact issuer.
    pub fn provider(&self, issuer: &str) -> Option<&Arc<ProviderKeys>> {
        self.by_issuer.get(issuer)
    }

    /// Checks a raw token: size, structure, issuer, algorithm, key, signature, then claims.
    pub async fn verify(&self, token: &str) -> Result<(Verified, &Arc<ProviderKeys>), Rejection> {
        if token.len() > self.max_token_bytes {
            return Err(Rejection::TooLarge);
        }
        let jws = jws::parse_unverified(token)?;
        let issuer = match jws.claims.get("iss") {
            Some(Value::String(iss)) => iss,
            _ => return Err(Rejection::UnknownIssuer),
        };
        let provider = self.by_issuer.get(issuer).ok_or(Rejection::UnknownIssuer)?;
        let p = &provider.config;
        let alg = jws.header.alg;
        if !p.algorithms.contains(&alg) {
            return Err(Rejection::AlgorithmNotAllowed);
        }
        if !p.token_types.is_empty() {
            let typ = jws.header.typ.as_deref().map(normalize_typ);
            if !typ.is_some_and(|t| p.token_types.contains(&t)) {
                return Err(Rejection::WrongType);
            }
        }
        if p.key_source == KeySource::None {
            // Introspection only: it signs nothing jwtgate could check.
            return Err(Rejection::UnknownKey);
        }
        let kid = jws.header.kid.as_deref();
        let set = provider.keys.key_set_for(kid).await?;
        let mut candidates = set.candidates(kid, alg).peekable();
        if candidates.peek().is_none() {
            return Err(Rejection::UnknownKey);
        }
        let key = candidates
            .find(|key| key.verifies(alg, jws.signing_input.as_bytes(), jws.signature_b64))
            .ok_or(Rejection::BadSignature)?
            .clone();
        let mut claims = jws.claims;
        canonical_ids(p, &mut claims);
        check_claims(p, &claims, clock::unix())?;
        let payload_b64 = p.payload_header.as_ref().map(|_| jws.payload_b64.to_owned());
        Ok((
            Verified::of(provider, claims, Some(alg), Some(key), payload_b64),
            provider,
        ))
    }
}

impl Verified {
    /// What the gate reads from `claims` that `provider` accepted (their checks done): from a
    /// JWS with its algorithm and key, or from an introspection answer without.
    pub fn of(
        provider: &ProviderKeys,
        claims: Map<String, Value>,
        alg: Option<Algorithm>,
        key: Option<Arc<Key>>,
        payload_b64: Option<String>,
    ) -> Self {
        let string = |name: &str| match claims.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let header_values = provider
            .config
            .claims_to_headers
            .iter()
            .map(|(claim, _)| claim_path(&claims, claim).and_then(header_value))
            .collect();
        Self {
            provider: provider.name.clone(),
            issuer: provider.issuer.clone(),
            subject: string("sub"),
            jti: string("jti"),
            exp: whole_seconds(&claims, "exp"),
            iat: whole_seconds(&claims, "iat"),
            cnf: Confirmation::of(&claims),
            alg,
            header_values,
            payload_b64,
            claims,
            key,
        }
    }
}
