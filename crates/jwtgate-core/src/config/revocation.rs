//! Validated `revocation:` and `admin:` sections.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawAdmin, RawRedis, RawRevocation, RawStoreKind};
use super::routes::{Requirements, Roles};
use super::{ConfigError, Provider, Secret, Validator};

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

/// How to reach Redis: the `redis:` block, or a bare `revocation.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConnection {
    /// `redis://…` or `rediss://…` (TLS with rustls).
    pub url: String,
    /// A private CA's PEM certificates to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password, when not in the URL (never logged).
    pub password: Option<Secret>,
    /// A Redis Cluster: the seed nodes beside `url` (none: one server).
    pub cluster_nodes: Option<Vec<String>>,
}

impl RedisConnection {
    /// Just a URL.
    pub fn url(url: String) -> Self {
        Self {
            url,
            ca_pem: None,
            username: None,
            password: None,
            cluster_nodes: None,
        }
    }
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
    /// A `redis://` or `rediss://` URL.
    pub(super) fn redis_url(&self, field: &str, url: String) -> Result<String, ConfigError> {
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            return Err(self.err(field, "must start with redis:// or rediss:// (TLS)"));
        }
        if ::redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
            return Err(self.err(field, "is not a usable Redis URL"));
        }
        Ok(url)
    }

    /// The `redis:` block: URL, CA, ACL user and password (file, else `JWTGATE_REDIS_PASSWORD`).
    pub(super) fn redis(&self, raw: RawRedis) -> Result<RedisConnection, ConfigError> {
        let url = self.redis_url("redis.url", raw.url)?;
        let cluster_nodes = if raw.cluster.unwrap_or(false) {
            let scheme = |u: &str| u.starts_with("rediss://");
            let mut nodes = Vec::with_capacity(raw.nodes.len());
            for (i, node) in raw.nodes.into_iter().enumerate() {
                let node = self.redis_url(&format!("redis.nodes[{i}]"), node)?;
                if scheme(&node) != scheme(&url) {
                    return Err(self.err(
                        format!("redis.nodes[{i}]"),
                        "must use the same scheme (redis:// or rediss://) as `url`",
                    ));
                }
                nodes.push(node);
            }
            Some(nodes)
        } else {
            if !raw.nodes.is_empty() {
                return Err(self.err("redis.nodes", "goes with `cluster: true`"));
            }
            None
        };
        let ca_pem = match raw.ca_file {
            None => None,
            Some(_) if !url.starts_with("rediss://") => {
                return Err(self.err("redis.ca_file", "goes with a rediss:// (TLS) url"));
            }
            Some(path) => {
                let path = self.base.join(path);
                let pem = crate::file::read(&path, crate::file::MAX_FILE_BYTES)
                    .map_err(|e| self.err("redis.ca_file", format!("cannot read {}: {e}", path.display())))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(self.err("redis.ca_file", format!("{} holds no PEM certificate", path.display())));
                }
                Some(pem)
            }
        };
        if raw
            .username
            .as_deref()
            .is_some_and(|u| u.is_empty() || u.contains(char::is_whitespace))
        {
            return Err(self.err("redis.username", "must be non-empty without spaces"));
        }
        let password = match raw.password_file {
            Some(path) => Some(Secret(self.secret(
                "redis.password_file",
                super::secrets::RawSecret {
                    env: None,
                    file: Some(path),
                },
            )?)),
            None => std::env::var("JWTGATE_REDIS_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .map(|p| Secret(p.into_bytes())),
        };
        if password
            .as_ref()
            .is_some_and(|p| std::str::from_utf8(p.expose()).is_err())
        {
            return Err(self.err("redis.password_file", "the password must be UTF-8"));
        }
        Ok(RedisConnection {
            url,
            ca_pem,
            username: raw.username,
            password,
            cluster_nodes,
        })
    }

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
