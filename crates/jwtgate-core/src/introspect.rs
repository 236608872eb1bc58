//! RFC 7662 answers for the tokens jwtgate trusts: what [`Gate::introspect`](crate::gate::Gate::introspect)
//! found, and the members an active token's answer carries. The reason a token is inactive
//! stays here (logs, metrics, the admin API); the RFC 7662 body never shows it.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::rejection::{Class, Rejection};
use crate::verify::Verified;

/// The top-level claims an introspection answer reads, kept in cached tokens when
/// `introspection.enabled` (beside what the requirements read).
pub const CLAIMS: [&str; 6] = ["aud", "scope", "scp", "client_id", "azp", "nbf"];

/// What introspecting a token found.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspected {
    /// A check would accept it: signature, issuer, audience, time claims, `require_jti`,
    /// revocation.
    Active {
        /// The provider that verified it.
        provider: String,
        /// The RFC 7662 members.
        token: Box<ActiveToken>,
    },
    /// A check would refuse it, for this reason.
    Inactive {
        /// The provider that verified it, when the refusal came later (revoked).
        provider: Option<String>,
        /// Why (never sent to an RFC 7662 caller).
        reason: Rejection,
    },
    /// jwtgate cannot tell now (keys or revocations unavailable): a check would answer 503.
    Unavailable {
        /// Why.
        reason: Rejection,
    },
}

impl Introspected {
    /// From the token steps' outcome.
    pub(crate) fn new(outcome: Result<(&Verified, &str), (Rejection, Option<&str>)>) -> Self {
        match outcome {
            Ok((v, provider)) => Self::Active {
                provider: provider.to_owned(),
                token: Box::new(ActiveToken::of(v)),
            },
            Err((reason, _)) if reason.class() == Class::Unavailable => Self::Unavailable { reason },
            Err((reason, provider)) => Self::Inactive {
                provider: provider.map(str::to_owned),
                reason,
            },
        }
    }

    /// The RFC 7662 §2.2 body: the members for an active token, else exactly `{"active":false}`.
    /// `None` when unavailable (the caller answers 503).
    pub fn body(&self) -> Option<String> {
        match self {
            Self::Active { token, .. } => serde_json::to_string(token).ok(),
            Self::Inactive { .. } => Some(r#"{"active":false}"#.to_owned()),
            Self::Unavailable { .. } => None,
        }
    }

    /// The metrics outcome: `active`, or the refusal's label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Active { .. } => "active",
            Self::Inactive { reason, .. } | Self::Unavailable { reason } => reason.label(),
        }
    }

    /// The provider that verified the token, if any.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Self::Active { provider, .. } => Some(provider),
            Self::Inactive { provider, .. } => provider.as_deref(),
            Self::Unavailable { .. } => None,
        }
    }
}

/// An active token's RFC 7662 §2.2 members (absent ones are left out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveToken {
    /// Always `true`.
    pub active: bool,
    /// `iss`.
    pub iss: String,
    /// `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `aud`, as the token has it (a string or an array of strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    /// `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// `iat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// `nbf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes, from `scope` or `scp` (an array is joined).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `client_id` (RFC 9068), else `azp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// What the token is bound to (RFC 9449 §6.2, RFC 8705 §3.2): `jkt`, `x5t#S256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
    /// `DPoP` for a DPoP-bound token (RFC 9449 §6.2), else `Bearer`.
    pub token_type: &'static str,
}

impl ActiveToken {
    /// The members of a verified token.
    pub fn of(v: &Verified) -> Self {
        let text = |name: &str| v.claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Self {
            active: true,
            iss: v.issuer.to_string(),
            sub: v.subject.clone(),
            aud: v.claims.get("aud").filter(|a| a.is_string() || a.is_array()).cloned(),
            exp: v.exp,
            iat: v.iat,
            nbf: crate::verify::whole_seconds(&v.claims, "nbf"),
            jti: v.jti.clone(),
            scope: scope(&v.claims),
            client_id: text("client_id").or_else(|| text("azp")),
            cnf: v.cnf.as_ref().map(|c| {
                let mut cnf = Map::new();
                let members = [("jkt", &c.jkt), ("x5t#S256", &c.x5t_s256)];
                for (name, value) in members {
                    if let Some(value) = value {
                        cnf.insert(name.into(), Value::from(value.as_str()));
                    }
                }
                Value::Object(cnf)
            }),
            token_type: if v.cnf.as_ref().is_some_and(|c| c.jkt.is_some()) {
                "DPoP"
            } else {
                "Bearer"
            },
        }
    }
}

/// The scopes a route's requirements see (`scope`, then `scp`), space-separated; `None` when
/// there are none.
fn scope(claims: &Map<String, Value>) -> Option<String> {
    let scopes = crate::claims::scopes(claims);
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn scopes_come_from_scope_else_scp_joined() {
        assert_eq!(scope(&claims(json!({"scope": "a b"}))).as_deref(), Some("a b"));
        assert_eq!(scope(&claims(json!({"scp": ["a", "b"]}))).as_deref(), Some("a b"));
        assert_eq!(scope(&claims(json!({"scp": "a"}))).as_deref(), Some("a"));
        assert_eq!(scope(&claims(json!({"scp": 3}))), None);
        assert_eq!(scope(&claims(json!({}))), None);
    }

    #[test]
    fn an_inactive_answer_is_exactly_active_false_and_unavailable_has_none() {
        let inactive = Introspected::Inactive {
            provider: Some("corp".into()),
            reason: Rejection::Revoked,
        };
        assert_eq!(inactive.body().as_deref(), Some(r#"{"active":false}"#));
        assert_eq!(inactive.outcome(), "revoked");
        let unavailable = Introspected::Unavailable {
            reason: Rejection::KeysUnavailable,
        };
        assert_eq!(unavailable.body(), None);
    }
}
