//! The whole file: every section's schema composed into one document, and the settings at its
//! top level (`realm`, `max_token_bytes`, `shutdown_grace`, `shutdown_drain`, `log:`) with their
//! validator. Every struct refuses unknown fields.

use std::time::Duration;

use serde::Deserialize;

use super::admin::RawAdmin;
use super::cache::RawCache;
use super::duration::serde_text;
use super::http_auth::RawHttpAuth;
use super::introspection::RawIntrospection;
use super::key_cache::RawKeyCache;
use super::limits::RawLimits;
use super::listen::RawListen;
use super::providers::RawProvider;
use super::rate_limits::RawRateLimits;
use super::redis::RawRedis;
use super::revocation::RawRevocation;
use super::routes::{RawDefaults, RawRoute};
use super::telemetry::RawTelemetry;
use super::{ConfigError, Validator};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Default: grpc `127.0.0.1:9001`, http `127.0.0.1:9002`.
    #[serde(default)]
    pub listen: RawListen,
    /// At least one.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Default: `jwtgate`.
    pub realm: Option<String>,
    /// Default: 8192. Tokens longer than this are refused before any decoding.
    pub max_token_bytes: Option<usize>,
    /// Default: 10s. How long in-flight checks may take to finish after SIGTERM.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub shutdown_grace: Option<Duration>,
    /// Default: 5s. How long jwtgate keeps serving after SIGTERM while reporting not ready.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub shutdown_drain: Option<Duration>,
    /// `routes:`, in order.
    pub routes: Option<Vec<RawRoute>>,
    /// `defaults:`.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// `http_auth:`.
    #[serde(default)]
    pub http_auth: RawHttpAuth,
    /// `revocation:`.
    #[serde(default)]
    pub revocation: RawRevocation,
    /// `limits:` (what a connection may hold of a listener, and for how long).
    #[serde(default)]
    pub limits: RawLimits,
    /// `admin:` (who may call the admin API).
    #[serde(default)]
    pub admin: RawAdmin,
    /// `cache:` (the verified-token cache).
    #[serde(default)]
    pub cache: RawCache,
    /// `log:`.
    #[serde(default)]
    pub log: RawLog,
    /// `telemetry:`.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// `rate_limits:`.
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    /// `redis:` (the connection revocations and rate limits share).
    pub redis: Option<RawRedis>,
    /// `key_cache:` (fetched key sets kept on disk).
    #[serde(default)]
    pub key_cache: RawKeyCache,
    /// `introspection:` (the RFC 7662 endpoint jwtgate serves).
    #[serde(default)]
    pub introspection: RawIntrospection,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Most denial lines logged per second; 0 logs none. Default 1000.
    pub denials_per_second: Option<u32>,
}

impl Validator<'_> {
    /// `max_token_bytes`: 256 to 1 MiB.
    pub(super) fn max_token_bytes(&self, raw: Option<usize>) -> Result<usize, ConfigError> {
        let max_token_bytes = raw.unwrap_or(8192);
        if !(256..=1 << 20).contains(&max_token_bytes) {
            return Err(self.err("max_token_bytes", "must be between 256 and 1048576"));
        }
        Ok(max_token_bytes)
    }

    /// `realm`: what `WWW-Authenticate` quotes, so no quotes, backslashes or control characters.
    pub(super) fn realm(&self, raw: Option<String>) -> Result<String, ConfigError> {
        let realm = raw.unwrap_or_else(|| "jwtgate".into());
        if realm.is_empty() || realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return Err(self.err(
                "realm",
                "must be non-empty without quotes, backslashes or control characters",
            ));
        }
        Ok(realm)
    }

    /// `shutdown_drain`: at most 5m.
    pub(super) fn shutdown_drain(&self, raw: Option<Duration>) -> Result<Duration, ConfigError> {
        let drain = raw.unwrap_or(Duration::from_secs(5));
        if drain > Duration::from_secs(300) {
            return Err(self.err("shutdown_drain", "must be at most 5m"));
        }
        Ok(drain)
    }
}
