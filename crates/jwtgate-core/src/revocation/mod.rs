//! Revocation: a token by `jti` (kept until that token's `exp` plus skew) and a subject cut-off
//! (every token of `(iss, sub)` issued before a time, kept for the longest token lifetime).
//!
//! Every replica keeps the whole live set in memory ([`RevocationSet`]); the request path only
//! ever reads memory. A [`Store`] makes the set durable and shared: [`embedded`] (redb on local
//! disk, the default) or [`redis`] (writes with TTLs, pub/sub fan-out, full re-sync after any
//! reconnect).

pub mod embedded;
pub mod expiry;
pub mod redis;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::config::{RevocationConfig, StoreConfig};

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// One token, by issuer and `jti`.
    Token {
        /// `iss`.
        issuer: String,
        /// `jti`.
        jti: String,
    },
    /// Every token of a subject issued before a time.
    Subject {
        /// `iss`.
        issuer: String,
        /// `sub`.
        subject: String,
        /// Tokens with `iat` before this (unix seconds) are revoked.
        issued_before: u64,
    },
}

/// One revocation, as stored and as fanned out between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    #[serde(flatten)]
    pub target: Target,
    /// When the entry may be forgotten (unix seconds): the token's `exp` plus skew, or the cut-off
    /// plus the longest token lifetime.
    pub expires_at: u64,
    /// When it was made (unix seconds).
    pub created_at: u64,
    /// Free text from the caller (e.g. `logout`, `password change`), for the audit trail.
    #[serde(default)]
    pub reason: String,
}

impl Revocation {
    /// The identity of the entry in a store: a later revocation of the same token or subject
    /// replaces the earlier one.
    pub fn key(&self) -> String {
        // Lengths make the key unambiguous whatever the issuer and ids contain.
        match &self.target {
            Target::Token { issuer, jti } => format!("t:{}:{issuer}:{jti}", issuer.len()),
            Target::Subject { issuer, subject, .. } => format!("s:{}:{issuer}:{subject}", issuer.len()),
        }
    }

    /// Whether this entry should replace `old` (same [`Revocation::key`]): a token revocation
    /// kept longer, or a later subject cut-off. Stores and the live set follow this one rule, so
    /// a weaker revocation never replaces a stronger one anywhere.
    pub fn stronger_than(&self, old: &Revocation) -> bool {
        match (&self.target, &old.target) {
            (Target::Subject { issued_before: new, .. }, Target::Subject { issued_before: old, .. }) => new > old,
            _ => self.expires_at > old.expires_at,
        }
    }

    /// Whether the entry can be forgotten at `now`: only after `expires_at`, the last second
    /// in which the token it revokes can still be valid (`exp` + skew; a token is refused only
    /// once `now > exp + skew`).
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at < now
    }
}

/// Why a request-path lookup says a token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Its `jti` is revoked.
    Token,
    /// Its subject was cut off after it was issued.
    Subject,
}

/// Called with every revocation that changes the live set (e.g. to evict cached tokens).
pub type Listener = dyn Fn(&Revocation) + Send + Sync;

/// The in-memory live set every replica keeps. Lookups borrow, never allocate.
#[derive(Default)]
pub struct RevocationSet {
    inner: RwLock<Maps>,
    listeners: std::sync::Mutex<Vec<std::sync::Weak<Listener>>>,
    /// A shared store's set before its first successful load: it may lack revocations other
    /// replicas made, so no token is allowed on it.
    pending: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RevocationSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSet")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Maps {
    /// issuer → jti → entry.
    tokens: HashMap<String, HashMap<String, Revocation>>,
    /// issuer → subject → entry (the latest cut-off).
    subjects: HashMap<String, HashMap<String, Revocation>>,
}

impl RevocationSet {
    /// Is a token with these claims revoked? `iat` absent counts as issued at 0 (before any cut-off).
    pub fn check(&self, issuer: &str, jti: Option<&str>, subject: Option<&str>, iat: Option<u64>) -> Option<Hit> {
        let maps = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if let Some(jti) = jti
            && maps.tokens.get(issuer).is_some_and(|m| m.contains_key(jti))
        {
            return Some(Hit::Token);
        }
        if let Some(sub) = subject
            && let Some(r) = maps.subjects.get(issuer).and_then(|m| m.get(sub))
            && let Target::Subject { issued_before, .. } = r.target
            && iat.unwrap_or(0) < issued_before
        {
            return Some(Hit::Subject);
        }
        None
    }

    /// Calls `listener` with every revocation that changes the set, for as long as the caller
    /// keeps the `Arc`.
    pub fn subscribe(&self, listener: &Arc<Listener>) {
        let mut ls = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        ls.retain(|l| l.strong_count() > 0);
        ls.push(Arc::downgrade(listener));
    }

    /// Marks the set as not loaded yet (a Redis store before its first sync): until
    /// [`RevocationSet::first_load_done`], [`RevocationSet::is_pending`] holds.
    pub fn await_first_load(&self) {
        self.pending.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The store's live set has been loaded into this set at least once.
    pub fn first_load_done(&self) {
        self.pending.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Whether revocations other replicas made may be missing because the shared store has not
    /// been read yet (a replica started while Redis is unreachable): no token may be allowed.
    pub fn is_pending(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Adds (or, for a subject, moves the cut-off later); returns whether anything changed.
    /// Listeners hear of a change after the set holds it.
    pub fn insert(&self, r: Revocation) -> bool {
        let changed = self.insert_quietly(r.clone());
        if changed {
            let ls: Vec<_> = self.listeners.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for l in ls.iter().filter_map(std::sync::Weak::upgrade) {
                l(&r);
            }
        }
        changed
    }

    fn insert_quietly(&self, r: Revocation) -> bool {
        let mut maps = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match &r.target {
            Target::Token { issuer, jti } => {
                let by_jti = maps.tokens.entry(issuer.clone()).or_default();
                match by_jti.get(jti) {
                    Some(old) if !r.stronger_than(old) => false,
                    _ => {
                        by_jti.insert(jti.clone(), r);
                        true
                    }
                }
            }
            Target::Subject {
                issuer,
                subject,
                issued_before,
            } => {
                let by_sub = maps.subjects.entry(issuer.clone()).or_default();
                let newer = match by_sub.get(subject).map(|old| &old.target) {
                    Some(Target::Subject { issued_before: old, .. }) => issued_before > old,
                    _ => true,
                };
                if newer {
                    by_sub.insert(subject.clone(), r);
                }
                newer
            }
        }
    }

    /// Forgets entries expired at `now`; returns how many.
    pub fn purge(&self, now: u64) -> usize {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let maps = &mut *guard;
        let mut purged = 0;
        for by_issuer in [&mut maps.tokens, &mut maps.subjects] {
            for m in by_issuer.values_mut() {
                let before = m.len();
                m.retain(|_, r| !r.expired(now));
                purged += before - m.len();
            }
            by_issuer.retain(|_, m| !m.is_empty());
        }
        purged
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        let (tokens, subjects) = self.counts();
        tokens + subjects
    }

    /// Live entries by kind: token (`jti`) revocations, then subject cut-offs.
    pub fn counts(&self) -> (usize, usize) {
        let maps = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let count = |m: &HashMap<String, HashMap<String, Revocation>>| m.values().map(HashMap::len).sum();
        (count(&maps.tokens), count(&maps.subjects))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live entry, ordered by key (for paged listing).
    pub fn all(&self) -> Vec<Revocation> {
        let maps = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Revocation> = maps
            .tokens
            .values()
            .chain(maps.subjects.values())
            .flat_map(|m| m.values().cloned())
            .collect();
        out.sort_by_cached_key(Revocation::key);
        out
    }
}

/// A store could not be opened or could not take a write. Every message starts with
/// "revocation store unavailable".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded store's directory could not be created.
    #[error("revocation store unavailable: cannot create {}: {source}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded store's file could not be opened (another process may hold it).
    #[error("revocation store unavailable: cannot open {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ::redb::DatabaseError,
    },
    /// The embedded database failed.
    #[error("revocation store unavailable: {0}")]
    Embedded(#[from] ::redb::Error),
    /// The blocking write ended without an answer.
    #[error("revocation store unavailable: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// An entry could not be encoded.
    #[error("revocation store unavailable: {0}")]
    Encode(#[from] serde_json::Error),
    /// The Redis URL cannot be used.
    #[error("revocation store unavailable: redis URL {url}: {source}")]
    RedisUrl {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: ::redis::RedisError,
    },
    /// Redis did not confirm the write.
    #[error("revocation store unavailable: redis at {url}: write failed: {source}")]
    RedisWrite {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: redis::Failure,
    },
}

/// Store health for `/readyz` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// `embedded` or `redis`.
    pub store: &'static str,
    /// Whether writes and fan-out work right now.
    pub connected: bool,
    /// Live entries in memory.
    pub entries: usize,
    /// The last failure, if the store is not connected.
    pub last_error: Option<String>,
}

/// The live set and the store behind it. Writes go to the store first, then to memory: an
/// answer of "revoked" means durable (embedded) or shared (Redis).
pub struct Store {
    backend: Backend,
    set: Arc<RevocationSet>,
    purge_interval: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("status", &self.status()).finish()
    }
}

enum Backend {
    Embedded(embedded::EmbeddedStore),
    Redis(redis::RedisStore),
}

impl Store {
    /// Opens the configured store and loads the live set. An embedded store that cannot be opened
    /// is an error (jwtgate will not run without its revocations); an unreachable Redis is not —
    /// [`Store::run`] keeps trying and re-syncs when it connects.
    pub async fn open(config: &RevocationConfig) -> Result<Arc<Self>, StoreError> {
        let set = Arc::new(RevocationSet::default());
        let backend = match &config.store {
            StoreConfig::Embedded { path } => {
                let store = embedded::EmbeddedStore::open(path)?;
                let now = clock::unix();
                for r in store.load()? {
                    if !r.expired(now) {
                        set.insert(r);
                    }
                }
                tracing::info!(path = %store.path().display(), entries = set.len(), "revocations loaded");
                Backend::Embedded(store)
            }
            StoreConfig::Redis {
                connection,
                key_prefix,
                channel,
            } => {
                let store = redis::RedisStore::new(connection, key_prefix, channel)?;
                set.await_first_load();
                store.initial_sync(&set).await;
                Backend::Redis(store)
            }
        };
        Ok(Arc::new(Self {
            backend,
            set,
            purge_interval: config.purge_interval,
        }))
    }

    /// The in-memory live set the gate reads.
    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.set
    }

    /// Records a revocation: store first (fails clearly when the store is unavailable), then
    /// memory.
    pub async fn revoke(&self, r: Revocation) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(s) => s.put(&r).await?,
            Backend::Redis(s) => s.put(&r).await?,
        }
        self.set.insert(r);
        Ok(())
    }

    /// Health for `/readyz`.
    pub fn status(&self) -> StoreStatus {
        let (store, connected, last_error) = match &self.backend {
            Backend::Embedded(_) => ("embedded", true, None),
            Backend::Redis(s) => ("redis", s.connected(), s.last_error()),
        };
        StoreStatus {
            store,
            connected,
            entries: self.set.len(),
            last_error,
        }
    }

    /// Purges expired entries every `purge_interval` and, for Redis, keeps the subscription and
    /// re-syncs after every reconnect; until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let purge = async {
            loop {
                tokio::time::sleep(self.purge_interval).await;
                let now = clock::unix();
                let purged = self.set.purge(now);
                if let Backend::Embedded(s) = &self.backend
                    && let Err(e) = s.purge(now).await
                {
                    tracing::warn!("purging the revocation file failed: {e}");
                }
                if purged > 0 {
                    tracing::info!(purged, entries = self.set.len(), "expired revocations purged");
                }
            }
        };
        let follow = async {
            match &self.backend {
                Backend::Redis(s) => s.run(&self.set, &cancel).await,
                Backend::Embedded(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => {}
            () = purge => {}
            () = follow => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(iss: &str, jti: &str, exp: u64) -> Revocation {
        Revocation {
            target: Target::Token {
                issuer: iss.into(),
                jti: jti.into(),
            },
            expires_at: exp,
            created_at: 0,
            reason: String::new(),
        }
    }

    fn subject(iss: &str, sub: &str, before: u64, exp: u64) -> Revocation {
        Revocation {
            target: Target::Subject {
                issuer: iss.into(),
                subject: sub.into(),
                issued_before: before,
            },
            expires_at: exp,
            created_at: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn tokens_are_revoked_by_issuer_and_jti() {
        let s = RevocationSet::default();
        assert!(s.insert(token("i", "j1", 100)));
        assert_eq!(s.check("i", Some("j1"), None, None), Some(Hit::Token));
        assert_eq!(s.check("other", Some("j1"), None, None), None, "jti is per issuer");
        assert_eq!(s.check("i", Some("j2"), None, None), None);
        assert!(!s.insert(token("i", "j1", 50)), "an earlier expiry changes nothing");
    }

    #[test]
    fn subject_cut_off_revokes_tokens_issued_before_it() {
        let s = RevocationSet::default();
        s.insert(subject("i", "alice", 1000, 5000));
        assert_eq!(s.check("i", None, Some("alice"), Some(999)), Some(Hit::Subject));
        assert_eq!(
            s.check("i", None, Some("alice"), None),
            Some(Hit::Subject),
            "no iat: issued at 0"
        );
        assert_eq!(
            s.check("i", None, Some("alice"), Some(1000)),
            None,
            "issued at the cut-off: new session"
        );
        assert_eq!(s.check("i", None, Some("bob"), Some(1)), None);
        assert!(
            !s.insert(subject("i", "alice", 900, 9000)),
            "an earlier cut-off changes nothing"
        );
        assert!(s.insert(subject("i", "alice", 2000, 9000)));
        assert_eq!(s.check("i", None, Some("alice"), Some(1500)), Some(Hit::Subject));
    }

    #[test]
    fn listeners_hear_of_changes_while_they_are_held() {
        let s = RevocationSet::default();
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let h = heard.clone();
        let listener: Arc<Listener> = Arc::new(move |r: &Revocation| h.lock().unwrap().push(r.key()));
        s.subscribe(&listener);
        s.insert(token("i", "a", 10));
        s.insert(token("i", "a", 5)); // no change: not heard
        drop(listener);
        s.insert(token("i", "b", 10));
        assert_eq!(*heard.lock().unwrap(), vec![token("i", "a", 10).key()]);
    }

    #[test]
    fn expired_entries_are_purged() {
        let s = RevocationSet::default();
        s.insert(token("i", "old", 10));
        s.insert(token("i", "new", 100));
        s.insert(subject("i", "a", 5, 10));
        assert_eq!(s.purge(50), 2);
        assert_eq!(s.len(), 1);
        assert_eq!(s.check("i", Some("old"), None, None), None);
    }

    #[test]
    fn an_entry_outlives_the_last_second_its_token_is_valid_in() {
        let s = RevocationSet::default();
        s.insert(token("i", "t", 50));
        assert_eq!(s.purge(50), 0, "at now == exp + skew the token is still valid");
        assert!(s.check("i", Some("t"), None, None).is_some());
        assert_eq!(s.purge(51), 1);
    }

    #[test]
    fn keys_are_unambiguous_and_entries_round_trip_as_json() {
        let a = token("a:b", "c", 1);
        let b = token("a", "b:c", 1);
        assert_ne!(a.key(), b.key());
        let json = serde_json::to_string(&subject("i", "s", 5, 10)).unwrap();
        assert_eq!(
            serde_json::from_str::<Revocation>(&json).unwrap(),
            subject("i", "s", 5, 10)
        );
        assert!(json.contains("\"kind\":\"subject\""), "{json}");
    }
}
