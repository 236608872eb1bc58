//! `providers[].dpop` (RFC 9449 proofs of possession) and `providers[].mtls_binding` (RFC 8705
//! certificate-bound tokens), how a provider's tokens are bound to their sender: their schema,
//! their validated form and their validator.

use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;

use super::duration::serde_text;
use super::redis::RedisConnection;
use super::{ConfigError, Provider, Source, Validator};

/// `providers[].dpop`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// `off`, `optional` or `required`; default `off`.
    pub mode: Option<String>,
    /// Default: 60s.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub proof_max_age: Option<Duration>,
    /// Default: ES256, ES384, EdDSA, RS256, PS256.
    pub algorithms: Option<Vec<String>>,
    /// `local` or `redis`; default `local`.
    pub replay: Option<String>,
    /// Default: 100ms.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub replay_timeout: Option<Duration>,
}

/// `providers[].mtls_binding`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtlsBinding {
    /// `off` or `required`; default `off`.
    pub mode: Option<String>,
}

/// Proof algorithms accepted when `dpop.algorithms` is not set.
const DEFAULT_PROOF_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];

/// `providers[].dpop`, when its mode is not `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dpop {
    /// Whether plain bearer tokens are still accepted.
    pub mode: DpopMode,
    /// How old a proof's `iat` may be (the provider's `clock_skew` is added).
    pub proof_max_age: Duration,
    /// Asymmetric algorithms a proof may be signed with.
    pub algorithms: Vec<Algorithm>,
    /// Where seen proof `jti`s are kept.
    pub replay: Replay,
    /// Longest wait for the shared replay cache (`replay: redis`).
    pub replay_timeout: Duration,
}

impl Dpop {
    /// The algorithms, space-separated, as a challenge's `algs` names them.
    pub fn algs(&self) -> String {
        let names: Vec<String> = self.algorithms.iter().map(|a| format!("{a:?}")).collect();
        names.join(" ")
    }
}

/// `dpop.mode`, other than `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// A DPoP-bound token must come with its proof; unbound bearer tokens are still accepted.
    Optional,
    /// Every token must be DPoP-bound and come with its proof.
    Required,
}

/// `dpop.replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This replica's memory.
    Local,
    /// Redis (the `redis:` block), shared by every replica.
    Redis,
}

/// The `Authorization: DPoP …` source a provider with DPoP reads beside its own.
pub fn dpop_source() -> Source {
    Source::Header {
        name: "authorization".into(),
        prefix: "DPoP ".into(),
    }
}

/// Whether `source` is [`dpop_source`] (without building one).
pub fn is_dpop_source(source: &Source) -> bool {
    matches!(source, Source::Header { name, prefix } if name == "authorization" && prefix == "DPoP ")
}

impl Validator<'_> {
    /// `providers[i].dpop`; `None` when absent or `mode: off`.
    pub(super) fn dpop(&self, field: &str, raw: Option<RawDpop>) -> Result<Option<Dpop>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let f = format!("{field}.dpop");
        let mode = match raw.mode.as_deref().unwrap_or("off") {
            "off" => return Ok(None),
            "optional" => DpopMode::Optional,
            "required" => DpopMode::Required,
            other => {
                return Err(self.err(
                    format!("{f}.mode"),
                    format!("`{other}` is not one of off, optional, required"),
                ));
            }
        };
        let proof_max_age = raw.proof_max_age.unwrap_or(Duration::from_secs(60));
        if proof_max_age.is_zero() || proof_max_age > Duration::from_secs(3600) {
            return Err(self.err(format!("{f}.proof_max_age"), "must be more than 0s and at most 1h"));
        }
        let algorithms = match raw.algorithms {
            None => DEFAULT_PROOF_ALGORITHMS.to_vec(),
            Some(names) if names.is_empty() => return Err(self.err(format!("{f}.algorithms"), "cannot be empty")),
            Some(names) => {
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let alg = Algorithm::from_str(&name)
                        .ok()
                        .filter(|a| super::ALGORITHMS.contains(a) && a.family() != AlgorithmFamily::Hmac)
                        .ok_or_else(|| {
                            self.err(
                                format!("{f}.algorithms"),
                                format!("`{name}` is not an asymmetric algorithm jwtgate verifies; use RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA"),
                            )
                        })?;
                    if !out.contains(&alg) {
                        out.push(alg);
                    }
                }
                out
            }
        };
        let replay = match raw.replay.as_deref().unwrap_or("local") {
            "local" => Replay::Local,
            "redis" => Replay::Redis,
            other => {
                return Err(self.err(format!("{f}.replay"), format!("`{other}` is not one of local, redis")));
            }
        };
        let replay_timeout = raw.replay_timeout.unwrap_or(Duration::from_millis(100));
        if replay_timeout.is_zero() || replay_timeout > Duration::from_secs(5) {
            return Err(self.err(format!("{f}.replay_timeout"), "must be more than 0s and at most 5s"));
        }
        Ok(Some(Dpop {
            mode,
            proof_max_age,
            algorithms,
            replay,
            replay_timeout,
        }))
    }

    /// `providers[i].mtls_binding`: whether tokens must be bound to the client certificate.
    pub(super) fn mtls_binding(&self, field: &str, raw: Option<RawMtlsBinding>) -> Result<bool, ConfigError> {
        match raw.and_then(|r| r.mode).as_deref().unwrap_or("off") {
            "off" => Ok(false),
            "required" => Ok(true),
            other => Err(self.err(
                format!("{field}.mtls_binding.mode"),
                format!("`{other}` is not one of off, required"),
            )),
        }
    }

    /// The Redis that keeps DPoP proof ids: the shared connection (`redis:`, or a Redis
    /// revocation store's), which a provider with `dpop.replay: redis` requires.
    pub(super) fn dpop_replay(
        &self,
        providers: &[Provider],
        shared: Option<&RedisConnection>,
    ) -> Result<Option<RedisConnection>, ConfigError> {
        let Some(i) = providers
            .iter()
            .position(|p| p.dpop.as_ref().is_some_and(|d| d.replay == Replay::Redis))
        else {
            return Ok(None);
        };
        let shared = shared.cloned().ok_or_else(|| {
            self.err(
                format!("providers[{i}].dpop.replay"),
                "`redis` needs `redis.url` (or a `revocation.url` with `store: redis`)",
            )
        })?;
        Ok(Some(shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, err, parse};

    #[test]
    fn dpop_and_mtls_binding_get_their_defaults_and_the_dpop_source() {
        let c = parse(&format!(
            "{MINIMAL}    dpop: {{ mode: optional }}\n    mtls_binding: {{ mode: required }}\nhttp_auth: {{ client_cert_header: none }}\n"
        ))
        .unwrap();
        let p = &c.providers[0];
        let d = p.dpop.as_ref().unwrap();
        assert_eq!(d.mode, DpopMode::Optional);
        assert_eq!(d.proof_max_age, Duration::from_secs(60));
        assert_eq!(d.algs(), "ES256 ES384 EdDSA RS256 PS256");
        assert_eq!(d.replay, Replay::Local);
        assert!(p.mtls_binding);
        assert_eq!(p.sources.last(), Some(&dpop_source()), "DPoP scheme read beside Bearer");
        assert!(p.sources.len() == 2 && c.dpop_replay.is_none());
        let off = parse(&format!("{MINIMAL}    dpop: {{ mode: off }}\n")).unwrap();
        assert!(off.providers[0].dpop.is_none() && off.providers[0].sources.len() == 1);
    }

    #[test]
    fn bad_dpop_and_mtls_binding_settings_are_refused_with_field_and_reason() {
        for (yaml, field, reason) in [
            (
                "dpop: { mode: strict }",
                "providers[0].dpop.mode",
                "`strict` is not one of off, optional, required",
            ),
            (
                "dpop: { mode: required, algorithms: [HS256] }",
                "providers[0].dpop.algorithms",
                "`HS256` is not an asymmetric algorithm",
            ),
            (
                "dpop: { mode: required, algorithms: [] }",
                "providers[0].dpop.algorithms",
                "cannot be empty",
            ),
            (
                "dpop: { mode: required, proof_max_age: 0s }",
                "providers[0].dpop.proof_max_age",
                "more than 0s",
            ),
            (
                "dpop: { mode: required, proof_max_age: 2h }",
                "providers[0].dpop.proof_max_age",
                "at most 1h",
            ),
            (
                "dpop: { mode: required, replay: disk }",
                "providers[0].dpop.replay",
                "`disk` is not one of local, redis",
            ),
            (
                "dpop: { mode: required, replay: redis }",
                "providers[0].dpop.replay",
                "`redis` needs `redis.url`",
            ),
            (
                "dpop: { mode: required, nonce: true }",
                "providers[0].dpop",
                "unknown field `nonce`",
            ),
            (
                "mtls_binding: { mode: optional }",
                "providers[0].mtls_binding.mode",
                "`optional` is not one of off, required",
            ),
        ] {
            let e = err(&format!("{MINIMAL}    {yaml}\n"));
            assert!(e.field.starts_with(field), "{yaml}: {e}");
            assert!(e.reason.contains(reason), "{yaml}: {e}");
            assert_eq!(e.file, "test.yaml");
        }
        let e = err(&format!("{MINIMAL}http_auth: {{ client_cert_header: \"x client\" }}\n"));
        assert_eq!(e.field, "http_auth.client_cert_header", "{e}");
        let ok = parse(&format!(
            "{MINIMAL}    dpop: {{ mode: required, replay: redis }}\nredis: {{ url: \"redis://127.0.0.1:6379\" }}\n"
        ))
        .unwrap();
        assert!(ok.dpop_replay.is_some());
    }
}
