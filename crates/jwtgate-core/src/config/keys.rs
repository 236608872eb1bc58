//! A provider's keys: where they come from (`jwks_uri`, `discovery`, `jwks_file` or
//! `hmac_secret`), the algorithms they may verify (`algorithms`) and the key set's lifecycle
//! (`keys:`): the schema of `keys:`, the validated types ([`KeySource`], [`KeySettings`]) and
//! their validators.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;

use super::duration::serde_text;
use super::secrets::{RawSecret, Secret};
use super::syntax::check_http_url;
use super::{ConfigError, Validator};

/// Key-set lifecycle settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    /// Default: 5m.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub refresh_interval: Option<Duration>,
    /// Default: 30s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub min_refetch_interval: Option<Duration>,
    /// Default: 24h.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub max_stale: Option<Duration>,
    /// Default: 5s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub fetch_timeout: Option<Duration>,
    /// Default: 100ms. Longest a request waits for an unknown-`kid` refetch.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub refetch_wait: Option<Duration>,
}

/// A provider's key source fields as written: `jwks_uri`, `discovery`, `jwks_file`,
/// `hmac_secret`.
type RawKeySource = (Option<String>, Option<bool>, Option<PathBuf>, Option<RawSecret>);

/// Where a provider's keys come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL.
    JwksUri(String),
    /// OIDC discovery from the issuer.
    Discovery,
    /// A local JWKS file, reloaded when it changes.
    JwksFile(PathBuf),
    /// A shared secret for HS* tokens.
    HmacSecret(Secret),
    /// None: the provider's tokens are opaque and introspected (`introspection:` without a key
    /// source); a JWT naming its issuer is refused.
    None,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JwksUri(u) => write!(f, "JwksUri({u})"),
            Self::Discovery => write!(f, "Discovery"),
            Self::JwksFile(p) => write!(f, "JwksFile({})", p.display()),
            Self::HmacSecret(_) => write!(f, "HmacSecret(<redacted>)"),
            Self::None => write!(f, "None"),
        }
    }
}

/// Key-set lifecycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
    /// Background refresh period (upper bound for `Cache-Control: max-age`).
    pub refresh_interval: Duration,
    /// At most one unknown-`kid` refetch per this window.
    pub min_refetch_interval: Duration,
    /// How long the last good keys keep serving while fetches fail.
    pub max_stale: Duration,
    /// Bound on one fetch.
    pub fetch_timeout: Duration,
    /// Bound on how long a request waits for a refetch.
    pub refetch_wait: Duration,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(86_400),
            fetch_timeout: Duration::from_secs(5),
            refetch_wait: Duration::from_millis(100),
        }
    }
}

/// Every algorithm jwtgate verifies, as spelled in JOSE.
pub const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
];

/// Minimum HMAC secret length for an algorithm: its hash output (RFC 7518 §3.2).
pub fn hmac_min_secret(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

impl Validator<'_> {
    /// The one key source; none at all only with `introspection` (an introspection-only
    /// provider).
    pub(super) fn key_source(
        &self,
        field: &str,
        issuer: &str,
        (jwks_uri, discovery, jwks_file, hmac_secret): RawKeySource,
        introspected: bool,
    ) -> Result<KeySource, ConfigError> {
        let discovery = discovery.unwrap_or(false);
        let count = [
            jwks_uri.is_some(),
            discovery,
            jwks_file.is_some(),
            hmac_secret.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if count == 0 && introspected {
            return Ok(KeySource::None);
        }
        if count != 1 {
            return Err(self.err(
                field,
                format!(
                    "exactly one key source is required (jwks_uri, discovery: true, jwks_file or hmac_secret; none with `introspection`); found {count}"
                ),
            ));
        }
        if let Some(uri) = jwks_uri {
            check_http_url(&uri).map_err(|r| self.err(format!("{field}.jwks_uri"), r))?;
            return Ok(KeySource::JwksUri(uri));
        }
        if discovery {
            check_http_url(issuer)
                .map_err(|r| self.err(format!("{field}.discovery"), format!("needs an http(s) issuer: {r}")))?;
            return Ok(KeySource::Discovery);
        }
        if let Some(path) = jwks_file {
            let path = self.base.join(path);
            if !path.is_file() {
                return Err(self.err(
                    format!("{field}.jwks_file"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
            return Ok(KeySource::JwksFile(path));
        }
        let secret = hmac_secret.ok_or_else(|| self.err(field, "no key source"))?;
        let f = format!("{field}.hmac_secret");
        let bytes = self.secret(&f, secret)?;
        if bytes.len() < 32 {
            return Err(self.err(
                f,
                format!(
                    "secret is {} bytes; HMAC needs at least 32 (the hash output)",
                    bytes.len()
                ),
            ));
        }
        Ok(KeySource::HmacSecret(Secret(bytes)))
    }

    pub(super) fn algorithms(
        &self,
        field: &str,
        source: &KeySource,
        raw: Option<Vec<String>>,
    ) -> Result<Vec<Algorithm>, ConfigError> {
        let field = format!("{field}.algorithms");
        let secret_len = match source {
            KeySource::HmacSecret(s) => Some(s.expose().len()),
            _ => None,
        };
        let Some(names) = raw else {
            return Ok(ALGORITHMS
                .iter()
                .copied()
                .filter(|a| match secret_len {
                    Some(len) => a.family() == AlgorithmFamily::Hmac && len >= hmac_min_secret(*a),
                    None => a.family() != AlgorithmFamily::Hmac,
                })
                .collect());
        };
        if names.is_empty() {
            return Err(self.err(field, "cannot be empty"));
        }
        let mut out = Vec::new();
        for name in names {
            let alg = Algorithm::from_str(&name)
                .ok()
                .filter(|a| ALGORITHMS.contains(a))
                .ok_or_else(|| {
                    self.err(
                        &field,
                        format!("`{name}` is not supported; use RS256/384/512, PS256/384/512, ES256, ES384, EdDSA or HS256/384/512"),
                    )
                })?;
            match (alg.family() == AlgorithmFamily::Hmac, secret_len) {
                (true, None) => {
                    return Err(self.err(
                        &field,
                        format!("{name} needs `hmac_secret`; HMAC keys are never taken from a JWKS"),
                    ));
                }
                (false, Some(_)) => {
                    return Err(self.err(&field, format!("{name} cannot be verified with `hmac_secret`")));
                }
                (true, Some(len)) if len < hmac_min_secret(alg) => {
                    return Err(self.err(
                        &field,
                        format!(
                            "{name} needs a secret of at least {} bytes; this one has {len}",
                            hmac_min_secret(alg)
                        ),
                    ));
                }
                _ => {}
            }
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        Ok(out)
    }

    pub(super) fn keys(&self, field: &str, raw: RawKeys) -> Result<KeySettings, ConfigError> {
        let d = KeySettings::default();
        let k = KeySettings {
            refresh_interval: raw.refresh_interval.unwrap_or(d.refresh_interval),
            min_refetch_interval: raw.min_refetch_interval.unwrap_or(d.min_refetch_interval),
            max_stale: raw.max_stale.unwrap_or(d.max_stale),
            fetch_timeout: raw.fetch_timeout.unwrap_or(d.fetch_timeout),
            refetch_wait: raw.refetch_wait.unwrap_or(d.refetch_wait),
        };
        let check = |name: &str, ok: bool, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(self.err(format!("{field}.{name}"), why))
            }
        };
        check(
            "refresh_interval",
            k.refresh_interval >= Duration::from_secs(1),
            "must be at least 1s",
        )?;
        check(
            "min_refetch_interval",
            k.min_refetch_interval >= Duration::from_millis(100),
            "must be at least 100ms",
        )?;
        check(
            "fetch_timeout",
            !k.fetch_timeout.is_zero() && k.fetch_timeout <= Duration::from_secs(60),
            "must be between 1ms and 60s",
        )?;
        check(
            "refetch_wait",
            k.refetch_wait <= Duration::from_secs(1),
            "must be at most 1s (Envoy's ext_authz timeout defaults to 200ms)",
        )?;
        check(
            "max_stale",
            k.max_stale >= k.refresh_interval,
            "must be at least refresh_interval",
        )?;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::{MINIMAL, err};

    #[test]
    fn two_key_sources_are_refused() {
        let e = err(&format!("{MINIMAL}    discovery: true\n"));
        assert_eq!(e.field, "providers[0]");
        assert!(e.reason.contains("exactly one key source"), "{e}");
    }

    #[test]
    fn hmac_algorithm_without_secret_is_refused() {
        let e = err(&format!("{MINIMAL}    algorithms: [HS256]\n"));
        assert_eq!(e.field, "providers[0].algorithms");
        assert!(e.reason.contains("needs `hmac_secret`"), "{e}");
    }

    #[test]
    fn alg_none_is_not_an_algorithm() {
        let e = err(&format!("{MINIMAL}    algorithms: [none]\n"));
        assert!(e.reason.contains("`none` is not supported"), "{e}");
    }

    #[test]
    fn short_hmac_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "short\n").unwrap();
        let e = Config::parse(
            "providers:\n  - name: l\n    issuer: legacy\n    hmac_secret: { file: s }\n",
            "t.yaml",
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(e.field, "providers[0].hmac_secret");
        assert!(e.reason.contains("at least 32"), "{e}");
    }

    #[test]
    fn hmac_defaults_follow_secret_length() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "x".repeat(48)).unwrap();
        let c = Config::parse(
            "providers:\n  - name: l\n    issuer: legacy\n    hmac_secret: { file: s }\n",
            "t.yaml",
            dir.path(),
        )
        .unwrap();
        assert_eq!(c.providers[0].algorithms, vec![Algorithm::HS256, Algorithm::HS384]);
        let e = Config::parse(
            "providers:\n  - name: l\n    issuer: legacy\n    hmac_secret: { file: s }\n    algorithms: [HS512]\n",
            "t.yaml",
            dir.path(),
        )
        .unwrap_err();
        assert!(e.reason.contains("at least 64 bytes"), "{e}");
    }
}
