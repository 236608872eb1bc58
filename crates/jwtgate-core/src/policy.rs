//! A route's requirements applied to a verified token: providers (any of), scopes (all of), roles
//! (all of or any of), claim tests. Each failure names what was missing, for a 403 the caller
//! can act on.

use serde_json::{Map, Value};

use crate::claims::{SCOPE_CLAIMS, claim_path, scopes, string_list, top_level};
use crate::config::Provider;
use crate::config::routes::{ClaimRule, ClaimTest, Requirements, Roles};
use crate::rejection::Rejection;

/// The top-level claims [`steps`] reads of a token from `provider` to check `req`: what the
/// verified-token cache must keep of a token for a cached check to decide as the first did.
/// Written next to [`steps`] so the two change together.
pub fn claims_read<'a>(req: &'a Requirements, provider: &'a Provider) -> impl Iterator<Item = &'a str> {
    let scopes = (!req.scopes.is_empty()).then_some(SCOPE_CLAIMS).into_iter().flatten();
    let roles = req.roles.as_ref().map(|_| top_level(&provider.roles_claim));
    let claims = req.claims.iter().map(|rule| top_level(&rule.path));
    scopes.chain(roles).chain(claims)
}

/// Checks `claims` (verified, from `provider`) against `req`; the first failing requirement wins.
pub fn check(req: &Requirements, provider: &Provider, claims: &Map<String, Value>) -> Result<(), Rejection> {
    steps(req, provider, claims)
        .into_iter()
        .find_map(|(_, r)| r.err())
        .map_or(Ok(()), Err)
}

/// One requirement of a route, described (for `jwtgate check`'s explanation) only when asked:
/// a check that is not explained formats nothing.
#[derive(Debug, Clone, Copy)]
pub enum Requirement<'a> {
    /// The token's provider is one of these.
    Providers(&'a [String]),
    /// The token grants all of these scopes.
    Scopes(&'a [String]),
    /// The provider's roles claim (named) holds these roles.
    Roles(&'a str, &'a Roles),
    /// A claim passes a test.
    Claim(&'a ClaimRule),
}

impl Requirement<'_> {
    /// What it requires, in words.
    pub fn describe(&self) -> String {
        match self {
            Self::Providers(names) => format!("provider is one of [{}]", names.join(", ")),
            Self::Scopes(scopes) => format!("scopes include all of [{}]", scopes.join(", ")),
            Self::Roles(claim, Roles::AllOf(want)) => format!("{claim} has all of [{}]", want.join(", ")),
            Self::Roles(claim, Roles::AnyOf(want)) => format!("{claim} has one of [{}]", want.join(", ")),
            Self::Claim(rule) => match &rule.test {
                ClaimTest::Equals(v) => format!("claim {} equals {v}", rule.path),
                ClaimTest::OneOf(vs) => format!("claim {} is one of {}", rule.path, Value::Array(vs.clone())),
                ClaimTest::Regex(re) => format!("claim {} matches {}", rule.path, re.as_str()),
            },
        }
    }
}

/// Every requirement with its outcome, in order: providers, scopes, roles, claims.
pub fn steps<'a>(
    req: &'a Requirements,
    provider: &'a Provider,
    claims: &Map<String, Value>,
) -> Vec<(Requirement<'a>, Result<(), Rejection>)> {
    let mut out = Vec::new();
    if !req.providers.is_empty() {
        let ok = req.providers.contains(&provider.name);
        out.push((
            Requirement::Providers(&req.providers),
            if ok {
                Ok(())
            } else {
                Err(Rejection::ProviderNotAccepted)
            },
        ));
    }
    if !req.scopes.is_empty() {
        let granted = scopes(claims);
        let missing: Vec<String> = req
            .scopes
            .iter()
            .filter(|s| !granted.contains(&s.as_str()))
            .cloned()
            .collect();
        out.push((
            Requirement::Scopes(&req.scopes),
            if missing.is_empty() {
                Ok(())
            } else {
                Err(Rejection::MissingScope(missing))
            },
        ));
    }
    if let Some(roles) = &req.roles {
        let held = string_list(claim_path(claims, &provider.roles_claim));
        let result = match roles {
            Roles::AllOf(want) => {
                let missing: Vec<String> = want.iter().filter(|r| !held.contains(&r.as_str())).cloned().collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(Rejection::MissingRole(missing))
                }
            }
            Roles::AnyOf(want) => {
                if want.iter().any(|r| held.contains(&r.as_str())) {
                    Ok(())
                } else {
                    Err(Rejection::MissingRole(want.clone()))
                }
            }
        };
        out.push((Requirement::Roles(&provider.roles_claim, roles), result));
    }
    for rule in &req.claims {
        let value = claim_path(claims, &rule.path);
        let ok = value.is_some_and(|v| matches_any(v, &rule.test));
        out.push((
            Requirement::Claim(rule),
            if ok {
                Ok(())
            } else {
                Err(Rejection::ClaimNotAccepted(rule.path.clone()))
            },
        ));
    }
    out
}

/// A claim passes if it (or, for an array, any element) passes the test.
fn matches_any(v: &Value, test: &ClaimTest) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|i| matches_one(i, test)),
        _ => matches_one(v, test),
    }
}

fn matches_one(v: &Value, test: &ClaimTest) -> bool {
    match test {
        ClaimTest::Equals(want) => scalar_eq(v, want),
        ClaimTest::OneOf(wants) => wants.iter().any(|w| scalar_eq(v, w)),
        ClaimTest::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
    }
}

/// Strings compare exactly, booleans by value, numbers by value (`1` equals `1.0`); nothing
/// else is equal, so `"1"` never equals `1`.
fn scalar_eq(v: &Value, want: &Value) -> bool {
    match (v, want) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::routes::{Auth, Requirements};
    use serde_json::json;

    fn setup(require: &str) -> (Requirements, Provider) {
        let text = format!(
            "providers:\n  - name: corp\n    issuer: https://i/\n    jwks_uri: https://i/k\n    roles_claim: realm_access.roles\n  - name: other\n    issuer: https://o/\n    jwks_uri: https://o/k\nroutes:\n  - name: r\n    require: {require}\n"
        );
        let c = Config::parse(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        let Auth::Required(req) = c.routes[0].auth.clone() else {
            panic!("required")
        };
        (req, c.providers[0].clone())
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn providers_are_any_of() {
        let (req, corp) = setup("{ providers: [other, corp] }");
        assert_eq!(check(&req, &corp, &claims(json!({}))), Ok(()));
        let (req, corp) = setup("{ providers: [other] }");
        assert_eq!(
            check(&req, &corp, &claims(json!({}))),
            Err(Rejection::ProviderNotAccepted)
        );
    }

    #[test]
    fn scopes_are_all_of_and_name_the_missing_ones() {
        let (req, p) = setup("{ scopes: [a, b, c] }");
        assert_eq!(check(&req, &p, &claims(json!({"scope": "a b c d"}))), Ok(()));
        assert_eq!(check(&req, &p, &claims(json!({"scp": ["c", "a", "b"]}))), Ok(()));
        assert_eq!(
            check(&req, &p, &claims(json!({"scope": "b"}))),
            Err(Rejection::MissingScope(vec!["a".into(), "c".into()]))
        );
        assert_eq!(
            check(&req, &p, &claims(json!({"scope": 42}))),
            Err(Rejection::MissingScope(vec!["a".into(), "b".into(), "c".into()]))
        );
    }

    #[test]
    fn roles_come_from_the_providers_roles_claim() {
        let (req, p) = setup("{ roles: [admin, ops] }");
        let ok = claims(json!({"realm_access": {"roles": ["ops", "admin"]}}));
        assert_eq!(check(&req, &p, &ok), Ok(()));
        let top_level = claims(json!({"roles": ["ops", "admin"]}));
        assert_eq!(
            check(&req, &p, &top_level),
            Err(Rejection::MissingRole(vec!["admin".into(), "ops".into()]))
        );
        let (req, p) = setup("{ roles: { any_of: [admin, ops] } }");
        assert_eq!(
            check(&req, &p, &claims(json!({"realm_access": {"roles": ["ops"]}}))),
            Ok(())
        );
        assert_eq!(
            check(&req, &p, &claims(json!({"realm_access": {"roles": {"x": 1}}}))),
            Err(Rejection::MissingRole(vec!["admin".into(), "ops".into()]))
        );
    }

    #[test]
    fn claim_tests_equals_one_of_and_regex() {
        let (req, p) = setup("{ claims: { tenant: { one_of: [a, b] } } }");
        assert_eq!(check(&req, &p, &claims(json!({"tenant": "b"}))), Ok(()));
        assert_eq!(check(&req, &p, &claims(json!({"tenant": ["x", "a"]}))), Ok(()));
        assert_eq!(
            check(&req, &p, &claims(json!({"tenant": "c"}))),
            Err(Rejection::ClaimNotAccepted("tenant".into()))
        );
        assert!(check(&req, &p, &claims(json!({}))).is_err());

        let (req, p) = setup("{ claims: { org.level: { equals: 3 } } }");
        assert_eq!(check(&req, &p, &claims(json!({"org": {"level": 3}}))), Ok(()));
        assert!(check(&req, &p, &claims(json!({"org": {"level": "3"}}))).is_err());

        let (req, p) = setup(r#"{ claims: { email: { regex: '[^@]+@example\.com' } } }"#);
        assert_eq!(check(&req, &p, &claims(json!({"email": "a@example.com"}))), Ok(()));
        assert!(
            check(&req, &p, &claims(json!({"email": "a@example.com.evil"}))).is_err(),
            "anchored"
        );
        assert!(check(&req, &p, &claims(json!({"email": 7}))).is_err());
    }

    #[test]
    fn every_failure_is_listed_in_steps() {
        let (req, p) = setup("{ providers: [other], scopes: [s], roles: [r], claims: { t: { equals: x } } }");
        let steps = steps(&req, &p, &claims(json!({})));
        assert_eq!(steps.len(), 4);
        assert!(steps.iter().all(|(_, r)| r.is_err()));
    }
}
