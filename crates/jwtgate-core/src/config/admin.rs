//! `admin:`, who may call the admin API: its schema, its validated form ([`AdminAuth`]) and its
//! validator.

use serde::Deserialize;

use super::routes::{Requirements, Roles};
use super::secrets::{RawSecret, Secret};
use super::{ConfigError, Provider, Validator};

/// `admin:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// A static admin token from an env var or a file.
    pub token: Option<RawSecret>,
    /// Admin bearer tokens are verified against this provider…
    pub provider: Option<String>,
    /// …and must carry this role (in the provider's `roles_claim`).
    pub role: Option<String>,
}

/// Who may call the admin API: a static token, or a bearer token from a provider with a role.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// Static admin token, compared in constant time.
    pub token: Option<Secret>,
    /// Provider whose tokens may call the admin API (with `role`).
    pub provider: Option<String>,
    /// Role required in that provider's `roles_claim`.
    pub role: Option<String>,
}

impl AdminAuth {
    /// What a provider token must meet to call the admin API, as a route would say it:
    /// `{providers: [provider], roles: [role]}`. The gate checks it on a check's own path
    /// (verification, `require_jti`, revocation, requirements).
    pub fn requirement(&self) -> Option<Requirements> {
        let (provider, role) = self.provider.clone().zip(self.role.clone())?;
        Some(Requirements {
            providers: vec![provider],
            roles: Some(Roles::AllOf(vec![role])),
            ..Requirements::default()
        })
    }
}

impl Validator<'_> {
    pub(super) fn admin(&self, raw: RawAdmin, providers: &[Provider]) -> Result<AdminAuth, ConfigError> {
        let token = match raw.token {
            None => None,
            Some(t) => {
                let bytes = self.secret("admin.token", t)?;
                if bytes.len() < 16 {
                    return Err(self.err("admin.token", "must be at least 16 bytes"));
                }
                Some(Secret(bytes))
            }
        };
        match (&raw.provider, &raw.role) {
            (Some(p), Some(_)) if !providers.iter().any(|x| &x.name == p) => {
                return Err(self.err("admin.provider", format!("no provider `{p}`")));
            }
            (Some(_), None) => return Err(self.err("admin.role", "is required with `admin.provider`")),
            (None, Some(_)) => return Err(self.err("admin.provider", "is required with `admin.role`")),
            _ => {}
        }
        Ok(AdminAuth {
            token,
            provider: raw.provider,
            role: raw.role,
        })
    }
}
