//! JWS signature and claim validation: the provider is chosen by `iss` (exactly), the algorithm
//! must be on that provider's allow-list and fit the key's own type, the key comes only from that
//! provider's set, and time, audience, type and required claims are checked after the signature.
//!
//! This module knows nothing of routes or of the wire.

use crate::binding::Confirmation;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::claims::{claim_path, header_value};
use crate::clock;
use crate::config::{Config, KeySource, NumericIds, Provider, normalize_typ};
use crate::jws;
use crate::keys::KeyStore;
use crate::keys::jwks::Key;
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::request::Identity;

/// Latest accepted NumericDate (9999-12-31T23:59:59Z); larger values are refused as invalid.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

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

/// The claims that must be strings (RFC 7519 §4.1.2, §4.1.7) and that revocations match:
/// present as anything else (`null` counts as absent) they are refused, or with `numeric_ids:
/// decimal` an integer is rewritten as its decimal text ([`canonical_ids`]).
pub const STRING_IDS: [&str; 2] = ["sub", "jti"];

/// With `numeric_ids: decimal`, an integer `sub` or `jti` becomes its decimal text, before
/// anything reads the claims (identity headers, revocation, rate limits, audit, policies).
pub fn canonical_ids(p: &Provider, claims: &mut Map<String, Value>) {
    if p.numeric_ids != NumericIds::Decimal {
        return;
    }
    for name in STRING_IDS {
        if let Some(v) = claims.get_mut(name)
            && let Value::Number(n) = v
            && (n.is_i64() || n.is_u64())
        {
            *v = Value::String(n.to_string());
        }
    }
}

/// Time, lifetime, audience and required-claim checks, all after the signature, and the types of
/// `sub` and `jti`. NumericDates may have a fraction (RFC 7519 §2) and are compared as numbers.
pub fn check_claims(p: &Provider, claims: &Map<String, Value>, now: u64) -> Result<(), Rejection> {
    let skew = p.clock_skew.as_secs_f64();
    // Both below 2^53, so exact as f64.
    let now = now as f64;
    let exp = numeric_date(claims, "exp")?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    match exp {
        None if p.require_exp || p.max_lifetime.is_some() => return Err(Rejection::MissingExpiry),
        Some(exp) if now > exp + skew => return Err(Rejection::Expired),
        _ => {}
    }
    if nbf.is_some_and(|nbf| now + skew < nbf) {
        return Err(Rejection::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now + skew) {
        return Err(Rejection::IssuedInFuture);
    }
    if let (Some(max), Some(exp)) = (p.max_lifetime, exp) {
        let start = iat.unwrap_or(now);
        if exp - start > max.as_secs_f64() + skew {
            return Err(Rejection::LifetimeTooLong);
        }
    }
    // A subject cut-off is kept `subject_retention` + skew past its time, and a token is valid
    // until `exp` + skew: one issued before the cut-off (`iat` < it) and living at most
    // `subject_retention` is refused until it has expired. No skew is added here: `exp` and
    // `iat` come from the same clock.
    if let (Some(keep), Some(exp)) = (p.subject_retention, exp) {
        let start = iat.unwrap_or(now);
        if exp - start > keep.as_secs_f64() {
            return Err(Rejection::LifetimeExceedsRetention);
        }
    }
    for name in STRING_IDS {
        if claims
            .get(name)
            .is_some_and(|v| !matches!(v, Value::String(_) | Value::Null))
        {
            return Err(Rejection::ClaimNotString(name));
        }
    }
    if !p.audiences.is_empty() {
        let accepted = |a: &Value| a.as_str().is_some_and(|a| p.audiences.iter().any(|x| x == a));
        let ok = match claims.get("aud") {
            Some(a @ Value::String(_)) => accepted(a),
            Some(Value::Array(items)) => items.iter().any(accepted),
            _ => false,
        };
        if !ok {
            return Err(Rejection::WrongAudience);
        }
    }
    for name in &p.required_claims {
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(Rejection::MissingClaim(name.clone()));
        }
    }
    Ok(())
}

/// A NumericDate claim: a JSON number, integer or not (`1796160000`, `1796160000.5`,
/// `1.79616e9`), from 0 to [`MAX_NUMERIC_DATE`]; anything else (a string, a negative or larger
/// number) is refused.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|t| (0.0..=MAX_NUMERIC_DATE as f64).contains(t))
            .map(Some)
            .ok_or(Rejection::InvalidTimeClaim(name)),
    }
}

/// A valid NumericDate claim rounded down to whole seconds: for `exp` the last second the token
/// is valid in (before skew), for `iat` a time at or before its issue (so a subject cut-off
/// never spares it).
pub(crate) fn whole_seconds(claims: &Map<String, Value>, name: &'static str) -> Option<u64> {
    numeric_date(claims, name).ok().flatten().map(|t| t.floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn provider(extra: &str) -> Provider {
        let text = format!(
            "providers:\n  - name: p\n    issuer: https://i/\n    jwks_uri: https://i/k\n    audiences: [api]\n{extra}"
        );
        crate::config::Config::parse(&text, "t", Path::new("."))
            .unwrap()
            .providers
            .remove(0)
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn exp_rules() {
        let p = provider("");
        assert_eq!(
            check_claims(&p, &claims(json!({"aud":"api"})), NOW),
            Err(Rejection::MissingExpiry)
        );
        assert_eq!(
            check_claims(&p, &claims(json!({"aud":"api","exp":NOW - 61})), NOW),
            Err(Rejection::Expired)
        );
        assert_eq!(
            check_claims(&p, &claims(json!({"aud":"api","exp":NOW - 59})), NOW),
            Ok(())
        );
        for bad in [
            json!("1800000000"),
            json!(-1),
            json!(-0.5),
            json!(1e300),
            json!(u64::MAX),
            json!(MAX_NUMERIC_DATE + 1),
            json!(true),
            json!(null),
        ] {
            assert_eq!(
                check_claims(&p, &claims(json!({"aud":"api","exp":bad})), NOW),
                Err(Rejection::InvalidTimeClaim("exp"))
            );
        }
        let lax = provider("    require_exp: false\n");
        assert_eq!(check_claims(&lax, &claims(json!({"aud":"api"})), NOW), Ok(()));
    }

    #[test]
    fn nbf_and_iat_use_the_skew_symmetrically() {
        let p = provider("");
        let base = json!({"aud":"api","exp":NOW + 600});
        let with = |k: &str, v: u64| {
            let mut c = claims(base.clone());
            c.insert(k.into(), json!(v));
            c
        };
        assert_eq!(
            check_claims(&p, &with("nbf", NOW + 61), NOW),
            Err(Rejection::NotYetValid)
        );
        assert_eq!(check_claims(&p, &with("nbf", NOW + 59), NOW), Ok(()));
        assert_eq!(
            check_claims(&p, &with("iat", NOW + 61), NOW),
            Err(Rejection::IssuedInFuture)
        );
        assert_eq!(check_claims(&p, &with("iat", NOW + 59), NOW), Ok(()));
    }

    #[test]
    fn numeric_dates_may_have_a_fraction_or_an_exponent_and_compare_as_numbers() {
        let p = provider("    clock_skew: 0s\n");
        let at = |name: &str, v: Value| {
            let mut c = claims(json!({"aud":"api","exp":NOW + 600}));
            c.insert(name.into(), v);
            c
        };
        let now = NOW as f64;
        assert_eq!(check_claims(&p, &at("exp", json!(now + 0.5)), NOW), Ok(()));
        assert_eq!(
            check_claims(&p, &at("exp", json!(now - 0.5)), NOW),
            Err(Rejection::Expired)
        );
        assert_eq!(
            check_claims(&p, &at("nbf", json!(now + 0.5)), NOW),
            Err(Rejection::NotYetValid)
        );
        assert_eq!(check_claims(&p, &at("nbf", json!(now - 0.5)), NOW), Ok(()));
        assert_eq!(
            check_claims(&p, &at("iat", json!(now + 0.5)), NOW),
            Err(Rejection::IssuedInFuture)
        );
        assert_eq!(check_claims(&p, &at("iat", json!(now - 0.5)), NOW), Ok(()));
        // 1.79616e9 is 1796160000: the same instant however it is written.
        let exp = json!(1.79616e9);
        assert_eq!(check_claims(&p, &at("exp", exp.clone()), 1_796_160_000), Ok(()));
        assert_eq!(
            check_claims(&p, &at("exp", exp), 1_796_160_001),
            Err(Rejection::Expired)
        );
        // Rounded down: the last whole second of validity, and an issue time never later.
        let c = claims(json!({"exp": 1_796_160_000.9, "iat": 1.7961e9 + 0.5}));
        assert_eq!(whole_seconds(&c, "exp"), Some(1_796_160_000));
        assert_eq!(whole_seconds(&c, "iat"), Some(1_796_100_000));
    }

    #[test]
    fn audience_string_or_array() {
        let p = provider("");
        let c = |aud: Value| claims(json!({"aud":aud,"exp":NOW + 60}));
        assert_eq!(check_claims(&p, &c(json!("api")), NOW), Ok(()));
        assert_eq!(check_claims(&p, &c(json!(["x", "api"])), NOW), Ok(()));
        assert_eq!(check_claims(&p, &c(json!("other")), NOW), Err(Rejection::WrongAudience));
        assert_eq!(
            check_claims(&p, &c(json!([1, {"a":"api"}])), NOW),
            Err(Rejection::WrongAudience)
        );
        assert_eq!(
            check_claims(&p, &claims(json!({"exp":NOW + 60})), NOW),
            Err(Rejection::WrongAudience)
        );
    }

    /// `provider`, its `subject_retention` set as `Config` sets it.
    fn provider_in(extra: &str, top: &str) -> Provider {
        let text = format!(
            "providers:\n  - name: p\n    issuer: https://i/\n    jwks_uri: https://i/k\n    audiences: [api]\n{extra}{top}"
        );
        crate::config::Config::parse(&text, "t", Path::new("."))
            .unwrap()
            .providers
            .remove(0)
    }

    #[test]
    fn without_max_lifetime_a_token_may_live_no_longer_than_a_subject_cut_off_is_kept() {
        let p = provider_in("", "revocation: { subject_retention: 1h }\n");
        assert_eq!(p.subject_retention, Some(std::time::Duration::from_secs(3600)));
        let c = |iat: Option<u64>, exp: u64| {
            let mut c = claims(json!({"aud":"api","exp":exp}));
            if let Some(iat) = iat {
                c.insert("iat".into(), json!(iat));
            }
            c
        };
        assert_eq!(check_claims(&p, &c(Some(NOW), NOW + 3600), NOW), Ok(()));
        assert_eq!(
            check_claims(&p, &c(Some(NOW), NOW + 3601), NOW),
            Err(Rejection::LifetimeExceedsRetention),
            "no skew: exp and iat come from one clock"
        );
        assert_eq!(
            check_claims(&p, &c(Some(NOW - 7000), NOW + 10), NOW),
            Err(Rejection::LifetimeExceedsRetention),
            "issued long ago: the cut-off may be gone before it expires"
        );
        // Without iat, measured from now.
        assert_eq!(check_claims(&p, &c(None, NOW + 3600), NOW), Ok(()));
        assert_eq!(
            check_claims(&p, &c(None, NOW + 3601), NOW),
            Err(Rejection::LifetimeExceedsRetention)
        );
        // The default retention is 24h.
        assert_eq!(
            provider("").subject_retention,
            Some(std::time::Duration::from_secs(86_400))
        );
        // max_lifetime bounds the tokens (and the cut-offs) instead.
        let bounded = provider_in("    max_lifetime: 48h\n", "revocation: { subject_retention: 1h }\n");
        assert_eq!(bounded.subject_retention, None);
        assert_eq!(check_claims(&bounded, &c(Some(NOW), NOW + 7200), NOW), Ok(()));
        // Tokens that may never expire: revocations are kept for good instead (admin API).
        let lax = provider_in("    require_exp: false\n", "revocation: { subject_retention: 1h }\n");
        assert_eq!(lax.subject_retention, None);
        assert_eq!(check_claims(&lax, &c(Some(NOW), NOW + 7200), NOW), Ok(()));
        assert_eq!(check_claims(&lax, &claims(json!({"aud":"api"})), NOW), Ok(()));
    }

    #[test]
    fn sub_and_jti_are_strings_or_with_numeric_ids_decimal_integers_read_as_text() {
        let p = provider("");
        let ok = |extra: Value| {
            let mut c = claims(json!({"aud":"api","exp":NOW + 60}));
            c.extend(claims(extra));
            c
        };
        assert_eq!(check_claims(&p, &ok(json!({"sub":"a","jti":"b"})), NOW), Ok(()));
        assert_eq!(check_claims(&p, &ok(json!({"sub":null,"jti":null})), NOW), Ok(()));
        for bad in [json!(42), json!(4.2), json!(true), json!(["a"]), json!({"a":1})] {
            assert_eq!(
                check_claims(&p, &ok(json!({"sub": bad.clone()})), NOW),
                Err(Rejection::ClaimNotString("sub"))
            );
            assert_eq!(
                check_claims(&p, &ok(json!({"jti": bad})), NOW),
                Err(Rejection::ClaimNotString("jti"))
            );
        }
        let mut c = ok(json!({"sub": 42, "jti": 7}));
        canonical_ids(&p, &mut c);
        assert_eq!(c["sub"], json!(42), "refuse (the default) rewrites nothing");
        let decimal = provider("    numeric_ids: decimal\n");
        for (v, text) in [
            (json!(42), Some("42")),
            (json!(-7), Some("-7")),
            (json!(u64::MAX), Some("18446744073709551615")),
            (json!(4.2), None),
            (json!(42.0), None),
            (json!("x"), Some("x")),
        ] {
            let mut c = ok(json!({"sub": v.clone(), "jti": v.clone()}));
            canonical_ids(&decimal, &mut c);
            assert_eq!(c["sub"].as_str(), text, "{v}");
            assert_eq!(c["jti"].as_str(), text, "{v}");
            let want = if text.is_some() {
                Ok(())
            } else {
                Err(Rejection::ClaimNotString("sub"))
            };
            assert_eq!(check_claims(&decimal, &c, NOW), want, "{v}");
        }
    }

    #[test]
    fn lifetime_and_required_claims() {
        let p = provider("    max_lifetime: 1h\n    required_claims: [tenant]\n");
        let long = claims(json!({"aud":"api","iat":NOW,"exp":NOW + 7200,"tenant":"a"}));
        assert_eq!(check_claims(&p, &long, NOW), Err(Rejection::LifetimeTooLong));
        let missing = claims(json!({"aud":"api","iat":NOW,"exp":NOW + 600}));
        assert_eq!(
            check_claims(&p, &missing, NOW),
            Err(Rejection::MissingClaim("tenant".into()))
        );
        let ok = claims(json!({"aud":"api","iat":NOW,"exp":NOW + 600,"tenant":"a"}));
        assert_eq!(check_claims(&p, &ok, NOW), Ok(()));
    }
}
