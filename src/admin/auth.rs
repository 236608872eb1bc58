//! Who is calling the admin API. The credential is `authorization: Bearer X` metadata: the static
//! `admin.token` (compared in constant time), or a token that passes the gate's own token path
//! ([`Gate::authorize`](jwtgate_core::gate::Gate::authorize): verification, `require_jti`,
//! revocation) and the route-like requirement `{providers: [admin.provider], roles:
//! [admin.role]}`. With neither configured, every call is refused.

use std::fmt;

use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::metadata::MetadataMap;

use jwtgate_core::config::routes::Requirements;
use jwtgate_core::config::{AdminAuth, Secret};
use jwtgate_core::gate::Refusal;
use jwtgate_core::live::SharedGate;
use jwtgate_core::rejection::{Class, Rejection};
use jwtgate_core::request::Identity;

/// An authenticated, authorised admin caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Holder of the static `admin.token`.
    StaticToken,
    /// A token from the admin provider with the admin role.
    Provider {
        /// Provider name.
        provider: String,
        /// `sub` (`-` when the token has none).
        subject: String,
    },
}

impl fmt::Display for Caller {
    /// `static-token` or `provider:sub`, as the audit log names callers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StaticToken => f.write_str("static-token"),
            Self::Provider { provider, subject } => write!(f, "{provider}:{subject}"),
        }
    }
}

impl From<Identity> for Caller {
    fn from(id: Identity) -> Self {
        Self::Provider {
            provider: id.provider.to_string(),
            subject: id.subject.unwrap_or_else(|| "-".into()),
        }
    }
}

/// A refused call: the status to answer and who the caller is as far as known (for the audit
/// log: `anonymous` without credentials, `unknown` with ones that do not verify).
#[derive(Debug)]
pub struct Refused {
    /// What the caller is told.
    pub status: Status,
    /// Who the caller is, as far as known.
    pub caller: String,
}

impl Refused {
    fn new(status: Status, caller: impl Into<String>) -> Self {
        Self {
            status,
            caller: caller.into(),
        }
    }
}

/// Decides who may call the admin API.
pub struct Authenticator {
    token: Option<Secret>,
    requirement: Option<Requirements>,
    gate: SharedGate,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("token", &self.token.is_some())
            .field("requirement", &self.requirement)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// From the validated `admin:` section; provider tokens are checked by the gate in force at
    /// each call.
    pub fn new(admin: &AdminAuth, gate: SharedGate) -> Self {
        Self {
            token: admin.token.clone(),
            requirement: admin.requirement(),
            gate,
        }
    }

    /// Whether any credential can be accepted (else every call is refused).
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.requirement.is_some()
    }

    /// Who is calling, or why the call is refused: UNAUTHENTICATED for missing or invalid
    /// credentials, PERMISSION_DENIED for valid ones without the admin role (or when no admin
    /// credential is configured at all), UNAVAILABLE when the admin provider's keys are.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Refused> {
        if !self.enabled() {
            return Err(Refused::new(
                Status::permission_denied(
                    "the admin API is disabled: configure admin.token, or admin.provider with admin.role",
                ),
                "anonymous",
            ));
        }
        let Some(credential) = bearer(metadata) else {
            return Err(Refused::new(
                Status::unauthenticated("missing credentials: send `authorization: Bearer <admin token>`"),
                "anonymous",
            ));
        };
        if let Some(token) = &self.token
            && bool::from(credential.as_bytes().ct_eq(token.expose()))
        {
            return Ok(Caller::StaticToken);
        }
        let Some(requirement) = &self.requirement else {
            return Err(Refused::new(
                Status::unauthenticated("invalid admin credentials"),
                "unknown",
            ));
        };
        let gate = self.gate.load_full();
        match gate.authorize(credential, requirement).await {
            Ok(identity) => Ok(identity.into()),
            Err(Refusal { rejection, identity }) => {
                let caller = identity.map_or_else(|| "unknown".to_owned(), |id| Caller::from(id).to_string());
                Err(Refused::new(refusal_status(&rejection), caller))
            }
        }
    }
}

/// The status for a credential the gate refused: UNAVAILABLE when the keys are, PERMISSION_DENIED
/// for a valid token that lacks the admin provider or role, UNAUTHENTICATED otherwise.
fn refusal_status(rejection: &Rejection) -> Status {
    match rejection.class() {
        Class::Unavailable => Status::unavailable("cannot verify admin credentials: signing keys unavailable"),
        Class::Forbidden => Status::permission_denied(format!("not allowed to call the admin API: {rejection}")),
        Class::Unauthenticated => Status::unauthenticated(format!("invalid admin credentials: {rejection}")),
        // The admin API is not rate limited; kept for completeness.
        Class::Limited => Status::resource_exhausted(rejection.to_string()),
        // Only the doors refuse an unclear request; kept for completeness.
        Class::BadRequest => Status::invalid_argument(rejection.to_string()),
    }
}

/// The credential in `authorization: Bearer X` (scheme case-insensitive), if any.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    jwtgate_core::token::after_scheme(metadata.get("authorization")?.to_str().ok()?, "Bearer ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn bearer_credentials_are_read_case_insensitively_and_other_schemes_ignored() {
        assert_eq!(bearer(&metadata("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&metadata("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&metadata("Basic abc")), None);
        assert_eq!(bearer(&metadata("Bearer ")), None);
        assert_eq!(bearer(&MetadataMap::new()), None);
    }

    #[test]
    fn callers_are_named_for_the_audit_log() {
        assert_eq!(Caller::StaticToken.to_string(), "static-token");
        let c = Caller::Provider {
            provider: "corp".into(),
            subject: "alice".into(),
        };
        assert_eq!(c.to_string(), "corp:alice");
    }
}
