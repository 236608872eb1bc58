//! `redis:`, how to reach the Redis that revocations, rate limits and DPoP replay share: its
//! schema, its validated form ([`RedisConnection`], also what a bare `revocation.url` gives) and
//! its validator.

use std::path::PathBuf;

use serde::Deserialize;

use super::secrets::Secret;
use super::{ConfigError, Validator};

/// `redis:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://…` or `rediss://…` (TLS).
    pub url: String,
    /// PEM file of a private CA to trust (with `rediss://`); default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Redis Cluster (not available in this version).
    pub cluster: Option<bool>,
    /// More cluster seed nodes.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// ACL user name.
    pub username: Option<String>,
    /// File holding the password (else `JWTGATE_REDIS_PASSWORD`, else the URL's).
    pub password_file: Option<PathBuf>,
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
}
