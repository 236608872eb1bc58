//! The verified-token cache: SHA-256 of the token → its verified claims, so a token seen before
//! skips signature verification. An entry lives until the token's `exp` (capped by `max_ttl`),
//! is bounded by `max_entries`, and is used only while the key that verified it is still in its
//! provider's key set. A hit still goes through time claims, revocation and route requirements.
//! Tokens refused for a reason that cannot change (bad signature, malformed, wrong issuer,
//! expired…) are remembered briefly by hash, so a replayed bad token costs one lookup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::config::CacheConfig;
use crate::rejection::Rejection;
use crate::revocation::{Revocation, Target};
use crate::verify::Verified;

/// SHA-256 of a token: the cache key (a token is never kept in memory as a key).
pub type TokenHash = [u8; 32];

/// Hashes a token.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Both caches; `None` inside when `max_entries: 0`.
pub struct TokenCache {
    verified: Option<Cache<TokenHash, Arc<Verified>>>,
    refused: Option<Cache<TokenHash, Rejection>>,
}

/// Per-entry lifetime: until the token's `exp`, at most `max_ttl`.
struct UntilExpiry {
    max_ttl: Duration,
}

impl moka::Expiry<TokenHash, Arc<Verified>> for UntilExpiry {
    fn expire_after_create(&self, _: &TokenHash, v: &Arc<Verified>, _: Instant) -> Option<Duration> {
        let left = v
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .map_or(self.max_ttl, |exp| {
                Duration::from_secs(exp.saturating_sub(crate::revocation::now_unix()))
            });
        Some(left.min(self.max_ttl))
    }
}

impl TokenCache {
    /// Builds the caches from `cache:` in the config.
    pub fn new(config: &CacheConfig) -> Self {
        if config.max_entries == 0 {
            return Self {
                verified: None,
                refused: None,
            };
        }
        let verified = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(UntilExpiry {
                max_ttl: config.max_ttl,
            })
            .support_invalidation_closures()
            .build();
        let refused = (!config.negative_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity((config.max_entries / 10).max(1_000))
                .time_to_live(config.negative_ttl)
                .build()
        });
        Self {
            verified: Some(verified),
            refused,
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.verified.is_some()
    }

    /// A verified entry, if any.
    pub fn get(&self, h: &TokenHash) -> Option<Arc<Verified>> {
        self.verified.as_ref()?.get(h)
    }

    /// A remembered refusal, if any.
    pub fn refused(&self, h: &TokenHash) -> Option<Rejection> {
        self.refused.as_ref()?.get(h)
    }

    /// Remembers a verified token.
    pub fn insert(&self, h: TokenHash, v: Arc<Verified>) {
        if let Some(c) = &self.verified {
            c.insert(h, v);
        }
    }

    /// Remembers a refusal that cannot change with time or keys.
    pub fn refuse(&self, h: TokenHash, r: &Rejection) {
        let permanent = !matches!(
            r,
            Rejection::UnknownKey | Rejection::KeysUnavailable | Rejection::NotYetValid | Rejection::IssuedInFuture
        );
        if let (Some(c), true) = (&self.refused, permanent) {
            c.insert(h, r.clone());
        }
    }

    /// Drops one entry (e.g. its key left the key set).
    pub fn forget(&self, h: &TokenHash) {
        if let Some(c) = &self.verified {
            c.invalidate(h);
        }
    }

    /// Drops every cached token that a new revocation covers.
    pub fn evict_revoked(&self, r: &Revocation) {
        let Some(c) = &self.verified else { return };
        let target = r.target.clone();
        let covered = move |_: &TokenHash, v: &Arc<Verified>| -> bool {
            match &target {
                Target::Token { issuer, jti } => {
                    v.issuer == *issuer && v.claims.get("jti").and_then(|j| j.as_str()) == Some(jti)
                }
                Target::Subject {
                    issuer,
                    subject,
                    issued_before,
                } => {
                    v.issuer == *issuer
                        && v.subject.as_deref() == Some(subject)
                        && v.claims.get("iat").and_then(serde_json::Value::as_u64).unwrap_or(0) < *issued_before
                }
            }
        };
        if let Err(e) = c.invalidate_entries_if(covered) {
            tracing::warn!("cannot evict revoked tokens from the cache: {e}");
        }
    }

    /// Entries now (approximate; for tests and metrics).
    pub fn len(&self) -> u64 {
        self.verified.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
