//! `revocation:`, where revocations are kept and how long: its schema, its validated form and
//! its validator.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_text;
use super::redis::RedisConnection;
use super::{ConfigError, Validator};

/// `revocation:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    /// `embedded` (default) or `redis`.
    pub store: Option<RawStoreKind>,
    /// Embedded: the directory of the database file.
    pub path: Option<PathBuf>,
    /// Redis: `redis://host:port/db`.
    pub url: Option<String>,
    /// Redis: prefix of every key jwtgate writes.
    pub key_prefix: Option<String>,
    /// Redis: the pub/sub channel.
    pub channel: Option<String>,
    /// How long a subject cut-off is kept when the provider sets no `max_lifetime`.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub subject_retention: Option<Duration>,
    /// How often expired revocations are purged.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub purge_interval: Option<Duration>,
}

/// Which revocation store.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStoreKind {
    /// redb on local disk.
    Embedded,
    /// Redis, shared by replicas.
    Redis,
}

/// Where revocations are kept and how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The store.
    pub store: StoreConfig,
    /// How long a subject cut-off is kept when its provider sets no `max_lifetime` (default 24h).
    pub subject_retention: Duration,
    /// How often expired entries are purged (default 60s).
    pub purge_interval: Duration,
}

/// The revocation store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// redb on local disk (default directory `jwtgate-data` beside the config file).
    Embedded {
        /// Directory of the database file.
        path: PathBuf,
    },
    /// Redis, for several replicas.
    Redis {
        /// The connection.
        connection: RedisConnection,
        /// Prefix of every key (default `jwtgate:`).
        key_prefix: String,
        /// Pub/sub channel (default `jwtgate:revocations`).
        channel: String,
    },
}

/// Whether `key` has a Redis Cluster hash tag: a non-empty `{…}`.
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}').map(|close| close > 0))
        .unwrap_or(false)
}

impl Validator<'_> {
    /// `revocation`; `store: redis` without its own `url` uses the `redis:` block.
    pub(super) fn revocation(
        &self,
        raw: RawRevocation,
        redis: Option<&RedisConnection>,
    ) -> Result<RevocationConfig, ConfigError> {
        let f = "revocation";
        let store = match raw.store.unwrap_or(RawStoreKind::Embedded) {
            RawStoreKind::Embedded => {
                if raw.url.is_some() || raw.key_prefix.is_some() || raw.channel.is_some() {
                    return Err(self.err(f, "`url`, `key_prefix` and `channel` go with `store: redis`"));
                }
                StoreConfig::Embedded {
                    path: self.base.join(raw.path.unwrap_or_else(|| "jwtgate-data".into())),
                }
            }
            RawStoreKind::Redis => {
                if raw.path.is_some() {
                    return Err(self.err(format!("{f}.path"), "goes with `store: embedded`"));
                }
                let connection = match (raw.url, redis) {
                    (Some(url), _) => RedisConnection::url(self.redis_url(&format!("{f}.url"), url)?),
                    (None, Some(redis)) => redis.clone(),
                    (None, None) => {
                        return Err(self.err(
                            format!("{f}.url"),
                            "is required with `store: redis` (or set `redis.url`)",
                        ));
                    }
                };
                // On a cluster every entry must live in one slot (the re-sync scans one node):
                // the prefix carries a hash tag.
                let cluster = connection.cluster_nodes.is_some();
                let key_prefix = match raw.key_prefix {
                    None if cluster => "{jwtgate}:".into(),
                    None => "jwtgate:".into(),
                    Some(p) if cluster && !has_hash_tag(&p) => {
                        return Err(self.err(
                            format!("{f}.key_prefix"),
                            format!("`{p}` needs a hash tag such as {{jwtgate}}: on a Redis Cluster (one slot for every entry)"),
                        ));
                    }
                    Some(p) => p,
                };
                StoreConfig::Redis {
                    connection,
                    key_prefix,
                    channel: raw.channel.unwrap_or_else(|| "jwtgate:revocations".into()),
                }
            }
        };
        let purge_interval = raw.purge_interval.unwrap_or(Duration::from_secs(60));
        if purge_interval < Duration::from_millis(100) {
            return Err(self.err(format!("{f}.purge_interval"), "must be at least 100ms"));
        }
        Ok(RevocationConfig {
            store,
            subject_retention: raw.subject_retention.unwrap_or(Duration::from_secs(86_400)),
            purge_interval,
        })
    }
}
