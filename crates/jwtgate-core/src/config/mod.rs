//! Configuration, parsed once into validated types ([`Config`]) whose fields cannot hold invalid
//! values. Errors name the file, the field path and the reason ([`ConfigError`]).
//!
//! One file per section (`listen`, `providers`, `routes`, `http_auth`, `revocation`, `redis`,
//! `admin`, …; a provider's `keys`, `binding` and `introspection`): each holds the section's YAML
//! schema as written (`Raw*`, unknown fields refused), its validated types, and the validator
//! turning one into the other. `document` composes the sections into the whole file. This file
//! keeps [`Config`], [`ConfigError`], the entry points ([`Config::load`], [`Config::parse`]) and
//! the order in which sections are validated.
//!
//! This module reads the config file and the secrets it points at; it does no other I/O.

pub mod admin;
pub mod binding;
pub mod cache;
mod document;
pub mod duration;
pub mod http_auth;
pub mod introspection;
pub mod key_cache;
pub mod keys;
pub mod limits;
pub mod listen;
pub mod providers;
pub mod rate_limits;
pub mod redis;
mod requirements;
pub mod revocation;
pub mod routes;
pub mod secrets;
mod syntax;
pub mod telemetry;

pub use admin::AdminAuth;
pub use cache::CacheConfig;
pub use key_cache::KeyCacheConfig;
pub use keys::{ALGORITHMS, KeySettings, KeySource, hmac_min_secret};
pub use listen::{Listen, ListenTls};
pub use providers::{NumericIds, Provider, Source, normalize_typ};
pub use redis::RedisConnection;
pub use revocation::{RevocationConfig, StoreConfig};
pub use secrets::{LooseSecret, Secret};
pub use telemetry::{OtlpExport, OtlpProtocol, TracingConfig};

pub(crate) use syntax::valid_token;

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use document::RawConfig;

/// A config file that cannot be used: which file, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {reason}")]
pub struct ConfigError {
    /// The file that was read.
    pub file: String,
    /// The field path, e.g. `providers[0].keys.refresh_interval`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener addresses.
    pub listen: Listen,
    /// Identity providers; a token's `iss` selects one exactly.
    pub providers: Vec<Provider>,
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// Tokens longer than this are refused before decoding.
    pub max_token_bytes: usize,
    /// Grace period for in-flight checks at shutdown.
    pub shutdown_grace: Duration,
    /// How long jwtgate keeps serving after SIGTERM, not ready, so load balancers and proxies
    /// stop sending before the listeners close.
    pub shutdown_drain: Duration,
    /// Routes in order; the first that matches decides. Without `routes:` in the file, one
    /// route requiring a valid token from any provider.
    pub routes: Vec<routes::Route>,
    /// What a request that matches no route gets.
    pub unmatched: routes::Unmatched,
    /// The HTTP front door's settings.
    pub http_auth: http_auth::HttpAuth,
    /// Where revocations are kept.
    pub revocation: RevocationConfig,
    /// Who may call the admin API.
    pub admin: AdminAuth,
    /// What a connection may hold of a listener, and for how long.
    pub limits: limits::Limits,
    /// Secret files other users may read (warned about, not refused).
    pub loose_secrets: Vec<LooseSecret>,
    /// The verified-token cache.
    pub cache: CacheConfig,
    /// Most denial log lines per second (the rest are counted and summarised); 0 logs none.
    pub denials_logged_per_second: u32,
    /// Traces: sampling, export, what spans record.
    pub tracing: TracingConfig,
    /// Rate limits decided with each check.
    pub rate_limits: rate_limits::RateLimits,
    /// Where `jwtgate serve` keeps each fetching provider's last good key set.
    pub key_cache: KeyCacheConfig,
    /// Who may introspect tokens (RFC 7662), when enabled.
    pub introspection: introspection::Introspection,
    /// The Redis that keeps DPoP proof ids when a provider has `dpop.replay: redis`.
    pub dpop_replay: Option<RedisConnection>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = crate::file::read(path, crate::file::MAX_FILE_BYTES)
            .and_then(|b| String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
            .map_err(|e| ConfigError {
                file: file.clone(),
                field: "(file)".into(),
                reason: format!("cannot read: {e}"),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &file, base)
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut field = None;
        let raw: RawConfig = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                field = Some(e.path().to_string());
                e.into_inner()
            })
        })
        .map_err(|e| ConfigError {
            file: file.into(),
            field: match field.as_deref() {
                None => "(yaml)".into(),
                // The root, or a key that is itself empty (`"": x`) at the root.
                Some(".") | Some("") => "(top level)".into(),
                Some(path) => path.into(),
            },
            reason: e.to_string().trim().into(),
        })?;
        Validator {
            file,
            base,
            loose: RefCell::default(),
        }
        .config(raw)
    }
}

/// What every section's validator shares: the file errors name, the directory relative paths
/// resolve against, and the loose secret files found so far.
struct Validator<'a> {
    file: &'a str,
    base: &'a Path,
    /// Secret files read so far that others may read.
    loose: RefCell<Vec<LooseSecret>>,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Every section, in the order that decides which mistake a file with several reports.
    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let listen = self.listen(raw.listen)?;
        let mut providers = self.providers(raw.providers)?;
        let max_token_bytes = self.max_token_bytes(raw.max_token_bytes)?;
        let realm = self.realm(raw.realm)?;
        let routes = self.routes(raw.routes, &providers)?;
        let redis = match raw.redis {
            Some(r) => Some(self.redis(r)?),
            None => None,
        };
        let revocation = self.revocation(raw.revocation, redis.as_ref())?;
        for p in &mut providers {
            if p.max_lifetime.is_none() && p.require_exp {
                p.subject_retention = Some(revocation.subject_retention);
            }
        }
        let shared = redis.or_else(|| match &revocation.store {
            StoreConfig::Redis { connection, .. } => Some(connection.clone()),
            StoreConfig::Embedded { .. } => None,
        });
        let rate_limits = self.rate_limits(raw.rate_limits, &routes, shared.as_ref())?;
        let dpop_replay = self.dpop_replay(&providers, shared.as_ref())?;
        let key_cache = self.key_cache(raw.key_cache, &revocation.store)?;
        let admin = self.admin(raw.admin, &providers)?;
        let http_auth = self.http_auth(raw.http_auth, &providers)?;
        let introspection = self.introspection(raw.introspection, listen.introspection.is_some(), &providers)?;
        Ok(Config {
            limits: self.limits(raw.limits)?,
            introspection,
            key_cache,
            listen,
            providers,
            realm,
            max_token_bytes,
            shutdown_grace: raw.shutdown_grace.unwrap_or(Duration::from_secs(10)),
            shutdown_drain: self.shutdown_drain(raw.shutdown_drain)?,
            admin,
            routes,
            unmatched: self.unmatched(&raw.defaults),
            http_auth,
            revocation,
            cache: self.cache(&raw.cache)?,
            denials_logged_per_second: raw.log.denials_per_second.unwrap_or(1000),
            tracing: self.tracing(raw.telemetry.tracing, &|name| std::env::var(name).ok())?,
            rate_limits,
            dpop_replay,
            loose_secrets: self.loose.take(),
        })
    }
}

#[cfg(test)]
mod tests;
