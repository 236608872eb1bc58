//! Who is calling the admin API. The credential is `authorization: Bearer X` metadata: the static
//! `admin.token` (compared in constant time), or a token that verifies with the gate's verifier,
//! comes from `admin.provider`, is not revoked, and holds `admin.role` in that provider's
//! `roles_claim`. With neither configured, every call is refused.

use std::fmt;

use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::claims::{claim_path, string_list};
use crate::config::{AdminAuth, Secret};
use crate::rejection::Rejection;
use crate::server::SharedGate;

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
    provider_role: Option<(String, String)>,
    gate: SharedGate,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("token", &self.token.is_some())
            .field("provider_role", &self.provider_role)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// From the validated `admin:` section; provider tokens are verified with `gate`'s verifier
    /// in force at each call.
    pub fn new(admin: &AdminAuth, gate: SharedGate) -> Self {
        Self {
            token: admin.token.clone(),
            provider_role: admin.provider.clone().zip(admin.role.clone()),
            gate,
        }
    }

    /// Whether any credential can be accepted (else every call is refused).
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.provider_role.is_some()
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
        let Some((admin_provider, role)) = &self.provider_role else {
            return Err(Refused::new(
                Status::unauthenticated("invalid admin credentials"),
                "unknown",
            ));
        };
        let gate = self.gate.load_full();
        let (verified, provider) = match gate.verifier().verify(credential).await {
            Ok(ok) => ok,
            Err(Rejection::KeysUnavailable) => {
                return Err(Refused::new(
                    Status::unavailable("cannot verify admin credentials: signing keys unavailable"),
                    "unknown",
                ));
            }
            Err(r) => {
                return Err(Refused::new(
                    Status::unauthenticated(format!("invalid admin credentials: {r}")),
                    "unknown",
                ));
            }
        };
        let caller = Caller::Provider {
            provider: provider.config.name.clone(),
            subject: verified.subject.clone().unwrap_or_else(|| "-".into()),
        };
        if gate
            .shared()
            .revocations
            .check(
                &verified.issuer,
                verified.jti.as_deref(),
                verified.subject.as_deref(),
                verified.iat,
            )
            .is_some()
        {
            return Err(Refused::new(
                Status::unauthenticated("invalid admin credentials: token revoked"),
                caller.to_string(),
            ));
        }
        if &provider.config.name != admin_provider {
            return Err(Refused::new(
                Status::permission_denied(format!(
                    "tokens from provider {} cannot call the admin API",
                    provider.config.name
                )),
                caller.to_string(),
            ));
        }
        if !string_list(claim_path(&verified.claims, &provider.config.roles_claim)).contains(&role.as_str()) {
            return Err(Refused::new(
                Status::permission_denied(format!("missing role {role} in {}", provider.config.roles_claim)),
                caller.to_string(),
            ));
        }
        Ok(caller)
    }
}

/// The credential in `authorization: Bearer X` (scheme case-insensitive), if any.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
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
