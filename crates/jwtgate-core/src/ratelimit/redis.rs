//! The `redis` store: counters every replica shares. One Lua script per check takes every
//! matching rule's step on Redis's own clock and writes only if all fit (all or nothing, in one
//! round trip); counters expire when idle. Every key carries the hash tag `{jwtgate:rl}`, so a
//! check touches one Cluster slot (on a cluster, the script goes to that slot's primary). A check never waits longer than `store_timeout`: a slow or
//! absent Redis is an error the caller answers with `on_store_error`, and the connection is
//! re-established in the background.

use std::sync::Arc;
use std::time::Duration;

use super::gcra::Step;
use super::local::Charge;
use crate::config::RedisConnection;
use crate::redis_conn::Link;

/// GCRA over every key in `KEYS`, in microseconds of `TIME`: `ARGV` holds (emission, tolerance,
/// increment) per key. Returns `{1, remaining, reset, …}` after writing every new TAT (with a
/// TTL of its distance from now), or `{0, i, retry_after}` for the first key that does not fit,
/// writing nothing.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {1}
local tats = {}
for i = 1, #KEYS do
  local emission = tonumber(ARGV[3 * i - 2])
  local tolerance = tonumber(ARGV[3 * i - 1])
  local increment = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local next = tat + increment
  local ahead = next - now
  if ahead > tolerance then
    return {0, i, ahead - tolerance}
  end
  tats[i] = next
  out[2 * i] = math.floor((tolerance - ahead) / emission)
  out[2 * i + 1] = ahead
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1)
end
return out
";

/// Counters in Redis.
pub struct RedisCounters {
    /// The connection every check shares.
    link: Link,
    script: redis::Script,
    timeout: Duration,
    prefix: String,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// No connection yet (it is being established).
    #[error("not connected")]
    NotConnected,
    /// No answer within `store_timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection broke.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something else than it writes.
    #[error("unexpected answer from the rate-limit script")]
    Answer,
}

impl RedisCounters {
    /// Counters in the Redis of `connection`, each check bounded by `timeout`. Connects in the
    /// background.
    pub fn new(connection: &RedisConnection, timeout: Duration) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self {
            link: Link::new(connection, timeout.max(Duration::from_millis(500)), "rate-limit store")?,
            script: redis::Script::new(SCRIPT),
            timeout,
            prefix: "{jwtgate:rl}:".into(),
        }))
    }

    /// Whether a connection is up now.
    pub fn connected(&self) -> bool {
        self.link.connected()
    }

    /// Waits, at most `limit`, for the first connection (so a jwtgate started beside a running
    /// Redis counts from its first check).
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        self.link.wait_connected(limit).await
    }

    /// Takes every charge's step (all written, or none): the steps in order, or why not.
    pub async fn charge(&self, charges: &[Charge]) -> Result<Vec<Step>, StoreFailure> {
        let Some(mut conn) = self.link.connection() else {
            return Err(StoreFailure::NotConnected);
        };
        let mut call = self.script.prepare_invoke();
        for c in charges {
            call.key(format!("{}{}", self.prefix, c.key));
        }
        for c in charges {
            // Microseconds: Lua numbers are doubles, exact to 2^53 µs (285 years).
            let us = |ns: u64| (ns / 1000).max(1);
            call.arg(us(c.rates.emission))
                .arg(us(c.rates.tolerance))
                .arg(us(c.rates.increment));
        }
        let answer: Vec<i64> = match tokio::time::timeout(self.timeout, call.invoke_async(&mut conn)).await {
            Err(_) => return Err(StoreFailure::Timeout(self.timeout)),
            Ok(Err(e)) => {
                self.link.failed(&e);
                return Err(e.into());
            }
            Ok(Ok(answer)) => answer,
        };
        steps(&answer, charges.len()).ok_or(StoreFailure::Answer)
    }
}

/// The script's answer as steps: all fitting, or the first that does not (earlier ones are
/// reported as fitting; nothing was written).
fn steps(answer: &[i64], n: usize) -> Option<Vec<Step>> {
    let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    match answer.first()? {
        1 if answer.len() == 1 + 2 * n => Some(
            (0..n)
                .map(|i| Step::Fits {
                    tat: 0,
                    remaining: u64::try_from(answer[1 + 2 * i]).unwrap_or(0),
                    reset: micros(answer[2 + 2 * i]),
                })
                .collect(),
        ),
        0 if answer.len() == 3 => {
            let refused = usize::try_from(*answer.get(1)?).ok()?.checked_sub(1)?;
            Some(
                (0..n)
                    .map(|i| match i.cmp(&refused) {
                        std::cmp::Ordering::Less => Step::Fits {
                            tat: 0,
                            remaining: 0,
                            reset: Duration::ZERO,
                        },
                        std::cmp::Ordering::Equal => Step::Exceeds {
                            retry_after: micros(answer[2]),
                        },
                        std::cmp::Ordering::Greater => Step::Exceeds {
                            retry_after: Duration::ZERO,
                        },
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}
