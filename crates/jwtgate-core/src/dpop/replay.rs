//! Seen DPoP proofs (RFC 9449 §11.1): a proof's id may be used once while the proof could still
//! be accepted. `local` keeps ids in this replica's memory (`moka`, each entry expiring when its
//! proof would be too old anyway); `redis` keeps them where every replica looks (`SET NX PX`), so
//! a proof replayed against another replica is refused too.

use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use crate::config::RedisConnection;
use crate::config::binding::Replay;
use crate::redis_conn::Link;

/// Most proof ids kept in memory: ≈ 2,000 proofs/s for 2 minutes (`proof_max_age: 60s` plus a
/// 60 s `clock_skew`), ≈ 100 MB at the ≈ 390 bytes each that `benches/dpop.rs` measures. Past it
/// the cache's eviction policy picks what goes, and a proof whose id went could be replayed:
/// a replica checking more proofs than that should use `replay: redis`.
pub const MAX_LOCAL_PROOFS: u64 = 250_000;

/// A proof's replay id: SHA-256 over its key's thumbprint and its `jti`.
pub type ProofId = [u8; 32];

/// Why a proof's first use could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    /// No connection to the shared cache.
    #[error("replay cache: not connected")]
    NotConnected,
    /// No answer in time.
    #[error("replay cache: no answer within {0:?}")]
    Timeout(Duration),
    /// Redis refused or the connection broke.
    #[error("replay cache: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The seen proof ids, local and (when configured) shared.
pub struct Replays {
    local: Cache<ProofId, Duration>,
    shared: Option<Link>,
}

impl std::fmt::Debug for Replays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replays")
            .field("local_entries", &self.local.entry_count())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Default for Replays {
    fn default() -> Self {
        Self::local_only()
    }
}

/// Each id expires after the time its proof could still be accepted.
struct UntilTooOld;

impl Expiry<ProofId, Duration> for UntilTooOld {
    fn expire_after_create(&self, _: &ProofId, ttl: &Duration, _: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

impl Replays {
    /// The caches; with `shared`, a link to that Redis (connecting in the background; call from
    /// a runtime).
    pub fn new(shared: Option<&RedisConnection>) -> Result<Self, redis::RedisError> {
        let shared = shared
            .map(|c| Link::new(c, Duration::from_millis(500), "DPoP replay cache"))
            .transpose()?;
        Ok(Self {
            shared,
            ..Self::local_only()
        })
    }

    fn local_only() -> Self {
        Self {
            local: Cache::builder()
                .max_capacity(MAX_LOCAL_PROOFS)
                .expire_after(UntilTooOld)
                .build(),
            shared: None,
        }
    }

    /// Records `id` for `ttl`: `Ok(true)` when it had not been seen, `Ok(false)` for a replay.
    /// With `Replay::Redis` the shared cache decides (bounded by `timeout`); without a link to
    /// it, [`ReplayFailure::NotConnected`].
    pub async fn first_use(
        &self,
        id: ProofId,
        ttl: Duration,
        replay: Replay,
        timeout: Duration,
    ) -> Result<bool, ReplayFailure> {
        match replay {
            Replay::Local => Ok(self.local.entry(id).or_insert(ttl).is_fresh()),
            Replay::Redis => {
                let link = self.shared.as_ref().ok_or(ReplayFailure::NotConnected)?;
                let mut conn = link.connection().ok_or(ReplayFailure::NotConnected)?;
                let key = format!("jwtgate:dpop:{}", hex(&id));
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let cmd = redis::cmd("SET").arg(key).arg(1).arg("NX").arg("PX").arg(ms).to_owned();
                match tokio::time::timeout(timeout, cmd.query_async::<Option<String>>(&mut conn)).await {
                    Err(_) => Err(ReplayFailure::Timeout(timeout)),
                    Ok(Err(e)) => {
                        link.failed(&e);
                        Err(e.into())
                    }
                    Ok(Ok(answer)) => Ok(answer.is_some()),
                }
            }
        }
    }

    /// Proof ids kept in this replica's memory (approximate until pending work is run).
    pub fn local_entries(&self) -> u64 {
        self.local.run_pending_tasks();
        self.local.entry_count()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_id_is_fresh_once_and_forgotten_after_its_ttl() {
        let r = Replays::default();
        let once = |id| r.first_use(id, Duration::from_millis(200), Replay::Local, Duration::from_millis(10));
        assert!(once([1; 32]).await.unwrap());
        assert!(!once([1; 32]).await.unwrap(), "replay");
        assert!(once([2; 32]).await.unwrap(), "another id");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(once([1; 32]).await.unwrap(), "expired with its proof");
        assert!(
            r.first_use(
                [3; 32],
                Duration::from_secs(1),
                Replay::Redis,
                Duration::from_millis(10)
            )
            .await
            .is_err(),
            "redis without a link fails, never passes"
        );
    }
}
