//! DPoP proofs (RFC 9449 §4.3): the checks a resource server makes of the `DPoP` header that
//! comes with a DPoP-bound token — on every request, whether the token's own verification came
//! from the cache or not. The proof's replay check ([`replay`]) comes last, so a proof refused
//! for another reason does not spend its `jti`.

pub mod htu;
pub mod replay;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::binding::ProofError;
use crate::config::binding::Dpop;
use crate::jws;
use crate::keys::jwks;
use crate::metrics::{Families, ProviderOutcome};
use crate::rejection::Rejection;
use replay::ProofId;

/// Longest `DPoP` header read; longer ones are refused unread.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Longest proof `jti` accepted.
const MAX_JTI_BYTES: usize = 256;

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    /// The request's method.
    pub method: &'a str,
    /// Its URI, normalised ([`htu::of_request`]).
    pub uri: &'a str,
    /// The access token as sent.
    pub token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
}

/// A proof that passed every check but the replay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    /// What the replay cache keeps.
    pub id: ProofId,
    /// How much longer the proof could be accepted (how long its id is kept).
    pub ttl: Duration,
}

/// Checks `proof` (the `DPoP` header's value) for the request `bound` describes, at `now`
/// (Unix seconds) with the provider's `skew`.
pub fn check(proof: &str, bound: Bound<'_>, settings: &Dpop, skew: Duration, now: u64) -> Result<Proof, ProofError> {
    if proof.contains(',') {
        return Err(ProofError::Multiple);
    }
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed);
    }
    let jws = jws::parse_unverified(proof.trim()).map_err(|r| match r {
        Rejection::Unsigned | Rejection::AlgorithmNotAllowed => ProofError::Algorithm,
        _ => ProofError::Malformed,
    })?;
    if !jws
        .header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(ProofError::WrongType);
    }
    let alg = jws.header.alg;
    if !settings.algorithms.contains(&alg) {
        return Err(ProofError::Algorithm);
    }
    let header = jws.header_object().map_err(|_| ProofError::Malformed)?;
    let jwk = header.get("jwk").and_then(Value::as_object).ok_or(ProofError::Key)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::PrivateKey);
    }
    let jwk_value = Value::Object(jwk.clone());
    let key = jwks::parse_key(&jwk_value).map_err(|_| ProofError::Key)?;
    if !key.supports(alg) {
        return Err(ProofError::Key);
    }
    if !key.verifies(alg, jws.signing_input.as_bytes(), jws.signature_b64) {
        return Err(ProofError::Signature);
    }
    let claims = &jws.claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or(ProofError::Malformed)?;
    if text("htm").ok_or(ProofError::Malformed)? != bound.method {
        return Err(ProofError::Method);
    }
    let htu = text("htu").ok_or(ProofError::Malformed)?;
    if htu::normalize(htu).as_deref() != Some(bound.uri) {
        return Err(ProofError::Uri);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or(ProofError::Malformed)?;
    let (now_f, skew_f) = (now as f64, skew.as_secs_f64());
    let max_age = settings.proof_max_age.as_secs_f64() + skew_f;
    if iat > now_f + skew_f {
        return Err(ProofError::FromTheFuture);
    }
    if now_f - iat > max_age {
        return Err(ProofError::TooOld);
    }
    let ath = text("ath").ok_or(ProofError::AccessTokenHash)?;
    let want = URL_SAFE_NO_PAD.encode(Sha256::digest(bound.token.as_bytes()));
    if !bool::from(ath.as_bytes().ct_eq(want.as_bytes())) {
        return Err(ProofError::AccessTokenHash);
    }
    let thumbprint = thumbprint(jwk).ok_or(ProofError::Key)?;
    if !bool::from(thumbprint.as_bytes().ct_eq(bound.jkt.as_bytes())) {
        return Err(ProofError::KeyMismatch);
    }
    let mut id = Sha256::new();
    id.update(thumbprint.as_bytes());
    id.update([0]);
    id.update(jti.as_bytes());
    // Kept until the proof would be too old anyway, and at least a second.
    let ttl = Duration::from_secs_f64((iat + max_age - now_f).max(1.0));
    Ok(Proof {
        id: id.finalize().into(),
        ttl,
    })
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: the required members, in
/// lexicographic order, as compact JSON (`None` for a key type without a defined thumbprint).
pub fn thumbprint(jwk: &serde_json::Map<String, Value>) -> Option<String> {
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .map(|v| Value::from(v).to_string())
    };
    let canonical = match jwk.get("kty")?.as_str()? {
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, member("e")?, member("n")?),
        "OKP" => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, member("crv")?, member("x")?),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// `jwtgate_dpop_proofs_total`: proofs checked, by provider and outcome (the gate counts each
/// proof of a provider with DPoP through its [`DpopMetrics::counters`]).
#[derive(Debug, Default)]
pub struct DpopMetrics(Family<ProviderOutcome, Counter>);

impl Families for DpopMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwtgate_dpop_proofs",
            "DPoP proofs (RFC 9449) checked, by provider and outcome (valid, or why refused)",
            m.0.clone(),
        );
        m
    }
}

impl DpopMetrics {
    /// `provider`'s counters, one per outcome in the order of [`ProofError::OUTCOMES`].
    pub fn counters(&self, provider: &str) -> Box<[Counter]> {
        ProofError::OUTCOMES
            .iter()
            .map(|outcome| {
                self.0
                    .get_or_create(&ProviderOutcome {
                        provider: provider.to_owned(),
                        outcome,
                    })
                    .clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7638s_example_key_has_rfc_7638s_thumbprint() {
        // RFC 7638 §3.1.
        let jwk: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }
}
