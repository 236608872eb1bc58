//! The Redis store, for several replicas: every revocation is a key `{prefix}r:{key}` holding its
//! JSON with a TTL until it expires, and is published on a channel so every replica hears of it
//! at once. A replica subscribes first, then loads every live key (a full re-sync), then applies
//! each message; after any lost connection it backs off, reconnects and re-syncs, so revocations
//! made while it was cut off reach it too. The re-sync only adds: what memory already knows is
//! never dropped. The request path never touches Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::RedisConnection;
use crate::redis_conn::{Connection, Opener};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Revocation, RevocationSet, StoreError, Target};
use crate::clock;

/// Bound on connecting and on each command of a write.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the one sync attempt at start.
const INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a full re-sync after (re)connecting.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a quiet subscription is pinged, so a silently dead link is noticed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Reconnect back-off: from this, doubling...
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// ...up to this (each delay jittered down to half).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Keys asked for per SCAN step and per MGET.
const BATCH: usize = 500;

/// Stores the entry unless the stored one is at least as strong (a later `expires_at` for a
/// token, a later cut-off for a subject: the same rule as [`RevocationSet::insert`]), then
/// publishes it; atomically, in one round trip. Returns 1 when written, 0 when kept.
///
/// KEYS[1] key; ARGV: json, ttl seconds, channel, field compared, its value.
const PUT_SCRIPT: &str = r"
local old = redis.call('GET', KEYS[1])
if old then
  local ok, o = pcall(cjson.decode, old)
  if ok and type(o) == 'table' then
    local have = tonumber(o[ARGV[4]])
    if have and have >= tonumber(ARGV[5]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
";

/// Why a Redis operation did not complete (the URL, without its password, is added by the
/// caller).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No connection within the bound.
    #[error("cannot connect: no answer within {0:?}")]
    ConnectTimeout(Duration),
    /// The connection failed.
    #[error("cannot connect: {0}")]
    Connect(redis::RedisError),
    /// A command got no answer within the bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A command failed.
    #[error("{0}")]
    Command(#[from] redis::RedisError),
    /// An entry could not be encoded.
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// The channel could not be subscribed to.
    #[error("cannot subscribe to {channel}: {source}")]
    Subscribe {
        /// The channel.
        channel: String,
        /// Why.
        source: Box<Failure>,
    },
    /// The full re-sync after (re)connecting failed.
    #[error("re-sync failed: {0}")]
    Resync(Box<Failure>),
    /// The full re-sync took longer than its bound.
    #[error("re-sync failed: not done within {0:?}")]
    ResyncTimeout(Duration),
    /// The subscription connection closed.
    #[error("subscription connection lost")]
    SubscriptionLost,
    /// The subscription connection stopped answering pings.
    #[error("subscription connection not answering: {0}")]
    NotAnswering(Box<Failure>),
}

/// Revocations shared through Redis.
pub struct RedisStore {
    /// Boxed: it is large, and the store sits in an enum beside a small one.
    opener: Box<Opener>,
    /// The URL without its password, for messages.
    url: String,
    key_prefix: String,
    channel: String,
    /// The connection writes and re-syncs share, opened on first use and dropped on failure.
    conn: tokio::sync::Mutex<Option<Connection>>,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Subscribed and re-synced (before [`RedisStore::run`] starts: the initial sync worked).
    following: bool,
    /// The latest write failed.
    write_failed: bool,
    /// The latest failure.
    last_error: Option<String>,
}

impl RedisStore {
    /// Parses the connection settings; connects later.
    pub fn new(connection: &RedisConnection, key_prefix: &str, channel: &str) -> Result<Self, StoreError> {
        let safe = redact(&connection.url);
        let opener = Opener::new(connection).map_err(|source| StoreError::RedisUrl {
            url: safe.clone(),
            source,
        })?;
        Ok(Self {
            opener: Box::new(opener),
            url: safe,
            key_prefix: key_prefix.to_owned(),
            channel: channel.to_owned(),
            conn: tokio::sync::Mutex::new(None),
            health: Mutex::new(Health::default()),
        })
    }

    /// One bounded attempt to load the live set at start; a Redis that is down is logged, and
    /// [`RedisStore::run`] keeps trying.
    pub async fn initial_sync(&self, set: &Arc<RevocationSet>) {
        match tokio::time::timeout(INITIAL_SYNC_TIMEOUT, self.sync(set)).await {
            Ok(Ok(loaded)) => {
                self.health(|h| {
                    h.following = true;
                    h.write_failed = false;
                });
                tracing::info!(url = %self.url, loaded, entries = set.len(), "revocations loaded from redis");
            }
            Ok(Err(e)) => self.sync_failed(&e),
            Err(_) => {
                self.drop_connection().await;
                self.sync_failed(&Failure::Timeout(INITIAL_SYNC_TIMEOUT));
            }
        }
    }

    fn sync_failed(&self, e: &Failure) {
        let e = format!("redis at {}: initial sync failed: {e}", self.url);
        tracing::warn!("{e}; not ready, and no token allowed, until the shared revocations are loaded");
        self.health(|h| {
            h.following = false;
            h.last_error = Some(e);
        });
    }

    /// Writes with a TTL until the entry expires and publishes it. Fails (never pretends) when
    /// Redis does not confirm within the timeout.
    pub async fn put(&self, r: &Revocation) -> Result<(), StoreError> {
        match self.try_put(r).await {
            Ok(()) => {
                self.health(|h| h.write_failed = false);
                Ok(())
            }
            Err(source) => {
                self.drop_connection().await;
                let e = StoreError::RedisWrite {
                    url: self.url.clone(),
                    source,
                };
                tracing::warn!("{e}");
                self.health(|h| {
                    h.write_failed = true;
                    h.last_error = Some(e.to_string());
                });
                Err(e)
            }
        }
    }

    async fn try_put(&self, r: &Revocation) -> Result<(), Failure> {
        let json = serde_json::to_string(r)?;
        // Kept through `expires_at`, the last second its token can be valid in.
        let ttl = r.expires_at.saturating_sub(clock::unix()).saturating_add(1);
        let (field, value) = match r.target {
            Target::Token { .. } => ("expires_at", r.expires_at),
            Target::Subject { issued_before, .. } => ("issued_before", issued_before),
        };
        let mut conn = self.connection().await?;
        let cmd = redis::cmd("EVAL")
            .arg(PUT_SCRIPT)
            .arg(1)
            .arg(self.entry_key(r))
            .arg(json)
            .arg(ttl)
            .arg(&self.channel)
            .arg(field)
            .arg(value)
            .to_owned();
        bounded(cmd.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    /// Follows the channel until `cancel`: subscribe, re-sync, apply every message; after a lost
    /// connection, back off (jittered, doubling up to 5s), reconnect and re-sync.
    pub async fn run(&self, set: &Arc<RevocationSet>, cancel: &CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut synced = false;
            let e = tokio::select! {
                () = cancel.cancelled() => return,
                e = self.follow(set, &mut synced) => e,
            };
            let e = format!("redis at {}: {e}", self.url);
            // Whatever broke this link likely broke the shared connection too: start afresh.
            self.drop_connection().await;
            let was_following = self.health(|h| {
                h.last_error = Some(e.clone());
                std::mem::replace(&mut h.following, false)
            });
            if synced {
                backoff = BACKOFF_MIN;
            }
            if was_following {
                tracing::warn!("{e}; known revocations stay enforced, reconnecting");
            } else {
                tracing::debug!("{e}; retrying in up to {backoff:?}");
            }
            let delay = backoff.mul_f64(rand::random_range(0.5..=1.0));
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection's life: returns why it ended. Sets `synced` once subscribed and re-synced.
    async fn follow(&self, set: &Arc<RevocationSet>, synced: &mut bool) -> Failure {
        // Classic pub/sub reaches every node of a cluster: the seed server is enough.
        let pubsub = match tokio::time::timeout(OP_TIMEOUT, self.opener.subscriber().get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Failure::Connect(e),
            Err(_) => return Failure::ConnectTimeout(OP_TIMEOUT),
        };
        let (mut sink, mut messages) = pubsub.split();
        // Subscribe before the re-sync: whatever is written meanwhile arrives as a message.
        if let Err(e) = bounded(sink.subscribe(&self.channel)).await {
            return Failure::Subscribe {
                channel: self.channel.clone(),
                source: Box::new(e),
            };
        }
        let loaded = match tokio::time::timeout(RESYNC_TIMEOUT, self.sync(set)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Failure::Resync(Box::new(e)),
            Err(_) => {
                self.drop_connection().await;
                return Failure::ResyncTimeout(RESYNC_TIMEOUT);
            }
        };
        *synced = true;
        self.health(|h| {
            h.following = true;
            h.write_failed = false;
            h.last_error = None;
        });
        let (url, channel, entries) = (&self.url, &self.channel, set.len());
        tracing::info!(%url, %channel, loaded, entries, "following revocations on redis (subscribed, re-synced)");
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(m) => self.apply(set, m.get_payload_bytes()),
                    None => return Failure::SubscriptionLost,
                },
                _ = ping.tick() => {
                    if let Err(e) = bounded(sink.ping::<redis::Value>()).await {
                        return Failure::NotAnswering(Box::new(e));
                    }
                }
            }
        }
    }

    fn apply(&self, set: &RevocationSet, payload: &[u8]) {
        match serde_json::from_slice::<Revocation>(payload) {
            Ok(r) if r.expired(clock::unix()) => {}
            Ok(r) => {
                if set.insert(r.clone()) {
                    tracing::debug!(key = %r.key(), "revocation received");
                }
            }
            Err(e) => tracing::warn!(channel = %self.channel, "skipping an unreadable revocation message: {e}"),
        }
    }

    /// Loads every live key (SCAN + MGET) into `set` (which then counts as loaded); returns how
    /// many entries were read.
    async fn sync(&self, set: &RevocationSet) -> Result<usize, Failure> {
        let mut conn = self.connection().await?;
        let result = self.load(&mut conn, set).await;
        match result {
            Ok(_) => set.first_load_done(),
            Err(_) => self.drop_connection().await,
        }
        result
    }

    async fn load(&self, conn: &mut Connection, set: &RevocationSet) -> Result<usize, Failure> {
        let pattern = format!("{}r:*", glob_escape(&self.key_prefix));
        // On a cluster every entry shares the prefix's hash-tag slot: scan its node.
        let slot_key = format!("{}r:", self.key_prefix);
        let now = clock::unix();
        let mut cursor: u64 = 0;
        let mut loaded = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .to_owned();
            let answer = bounded(conn.on_node_of(&slot_key, scan)).await?;
            let (next, keys): (u64, Vec<Vec<u8>>) =
                redis::from_redis_value(answer).map_err(|e| Failure::Command(e.into()))?;
            for chunk in keys.chunks(BATCH) {
                let values: Vec<Option<Vec<u8>>> = bounded(redis::cmd("MGET").arg(chunk).query_async(conn)).await?;
                for (key, value) in chunk.iter().zip(values) {
                    // Gone (expired) between SCAN and MGET.
                    let Some(value) = value else { continue };
                    match serde_json::from_slice::<Revocation>(&value) {
                        Ok(r) => {
                            loaded += 1;
                            if !r.expired(now) {
                                set.insert(r);
                            }
                        }
                        Err(e) => tracing::warn!(
                            key = %String::from_utf8_lossy(key),
                            "skipping an unreadable revocation in redis: {e}"
                        ),
                    }
                }
            }
            if next == 0 {
                return Ok(loaded);
            }
            cursor = next;
        }
    }

    /// The shared connection, opened (bounded) when there is none.
    async fn connection(&self) -> Result<Connection, Failure> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(OP_TIMEOUT, self.opener.connect(Some(OP_TIMEOUT)))
            .await
            .map_err(|_| Failure::ConnectTimeout(OP_TIMEOUT))?
            .map_err(Failure::Connect)?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Forgets the shared connection after a failure: the next use reconnects.
    async fn drop_connection(&self) {
        *self.conn.lock().await = None;
    }

    fn entry_key(&self, r: &Revocation) -> String {
        format!("{}r:{}", self.key_prefix, r.key())
    }

    fn health<T>(&self, f: impl FnOnce(&mut Health) -> T) -> T {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the store works right now: subscribed and re-synced, and the latest write (if
    /// any since) went through.
    pub fn connected(&self) -> bool {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.following && !h.write_failed
    }

    /// The latest failure, while not connected (never with a password).
    pub fn last_error(&self) -> Option<String> {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if h.following && !h.write_failed {
            None
        } else {
            h.last_error.clone()
        }
    }
}

/// Waits at most [`OP_TIMEOUT`] for one Redis command.
async fn bounded<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Failure> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Failure::Timeout(OP_TIMEOUT)),
    }
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unparseable URL)".into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    // A lone userinfo is a user name to Redis, but some write a password there: hide it too.
    let userinfo = userinfo
        .split_once(':')
        .map_or("***".into(), |(u, _)| format!("{u}:***"));
    format!("{scheme}://{userinfo}@{host}{path}")
}

/// Escapes SCAN MATCH glob characters so the prefix matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("rediss://u:s3cret@h/0?x=1"), "rediss://u:***@h/0?x=1");
        assert_eq!(redact("redis://s3cret@h"), "redis://***@h");
        assert_eq!(redact("redis://u:p@ss@h:1"), "redis://u:***@h:1");
        assert_eq!(redact("nonsense"), "(unparseable URL)");
    }

    #[test]
    fn prefixes_match_only_themselves() {
        assert_eq!(glob_escape("jwtgate:"), "jwtgate:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[tokio::test]
    async fn unreachable_redis_is_not_connected_and_says_why() {
        let store = RedisStore::new(
            &RedisConnection::url("redis://:hunter2@127.0.0.1:1/0".into()),
            "p:",
            "c",
        )
        .unwrap();
        assert!(!store.connected());
        let set = Arc::new(RevocationSet::default());
        store.initial_sync(&set).await;
        assert!(!store.connected());
        assert!(store.last_error().unwrap().contains("initial sync failed"));
        let r = Revocation {
            target: Target::Token {
                issuer: "i".into(),
                jti: "j".into(),
            },
            expires_at: clock::unix() + 60,
            created_at: 0,
            reason: String::new(),
        };
        let err = store.put(&r).await.unwrap_err();
        assert!(err.to_string().contains("redis://:***@127.0.0.1:1/0"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!store.connected());
        let last = store.last_error().unwrap();
        assert!(last.contains("write failed") && !last.contains("hunter2"), "{last}");
    }
}
