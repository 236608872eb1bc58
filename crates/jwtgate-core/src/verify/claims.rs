//! The claim checks made after a signature (and of an introspection answer's claims): time
//! (NumericDates, with the provider's clock skew), lifetime, audience, required claims, and
//! `sub` and `jti` as strings.

use serde_json::{Map, Value};

use crate::config::{NumericIds, Provider};
use crate::rejection::Rejection;

/// Latest accepted NumericDate (9999-12-31T23:59:59Z); larger values are refused as invalid.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

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
