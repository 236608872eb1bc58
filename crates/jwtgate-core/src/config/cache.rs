//! `cache:`, the verified-token cache: its schema, its validated form ([`CacheConfig`]) and its
//! validator.

use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_text;
use super::{ConfigError, Validator};

/// `cache:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Most cached tokens; 0 turns the cache off.
    pub max_entries: Option<u64>,
    /// Longest an entry lives (it never outlives the token's `exp`).
    #[serde(default, deserialize_with = "serde_text::option")]
    pub max_ttl: Option<Duration>,
    /// How long a permanently bad token is remembered; 0s turns that off.
    #[serde(default, deserialize_with = "serde_text::option")]
    pub negative_ttl: Option<Duration>,
}

/// `cache:`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most cached tokens (default 100,000); 0 turns the cache off.
    pub max_entries: u64,
    /// Longest an entry lives (default 10m); never past the token's `exp`.
    pub max_ttl: Duration,
    /// How long a permanently bad token is remembered by hash (default 5s).
    pub negative_ttl: Duration,
}

impl Validator<'_> {
    pub(super) fn cache(&self, raw: &RawCache) -> Result<CacheConfig, ConfigError> {
        let c = CacheConfig {
            max_entries: raw.max_entries.unwrap_or(100_000),
            max_ttl: raw.max_ttl.unwrap_or(Duration::from_secs(600)),
            negative_ttl: raw.negative_ttl.unwrap_or(Duration::from_secs(5)),
        };
        if c.max_entries > 10_000_000 {
            return Err(self.err("cache.max_entries", "must be at most 10000000"));
        }
        if c.max_ttl.is_zero() {
            return Err(self.err(
                "cache.max_ttl",
                "must be more than 0s (use max_entries: 0 to turn the cache off)",
            ));
        }
        if c.negative_ttl > Duration::from_secs(60) {
            return Err(self.err("cache.negative_ttl", "must be at most 60s"));
        }
        Ok(c)
    }
}
