//! Key sets per provider and their lifecycle: initial load, background refresh (honouring
//! `Cache-Control: max-age` within bounds, with jitter), one single-flight refetch per window for
//! unknown `kid`s, stale-on-error up to `max_stale`, reloads of a watched JWKS file, and the
//! last good key set kept on disk ([`cache`]) for a restart during an issuer outage.
//!
//! This module finds keys and checks a signature with one ([`public_key`]); it never decides
//! whether a token is valid. Header fields `jku`, `x5u`, `jwk` and
//! `x5c` are never used to find keys.

pub mod cache;
pub mod fetch;
pub mod jwks;
pub mod public_key;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Now};
use crate::config::{KeySettings, KeySource, Provider};
use crate::metrics::Metrics;
use crate::rejection::Rejection;
pub use jwks::{Key, KeyKind, KeySet};

/// How often a watched JWKS file is checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(1);

/// Longest wait between retries after failed fetches.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a provider's keys could not be loaded (the last good keys, if any, keep serving).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The JWKS could not be fetched.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// OIDC discovery failed.
    #[error(transparent)]
    Discovery(#[from] fetch::DiscoveryError),
    /// The `jwks_file` could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `jwks_file` is larger than any JWKS jwtgate reads.
    #[error("{} is over the {}-byte limit", .0.display(), fetch::MAX_BODY_BYTES)]
    FileTooLarge(PathBuf),
    /// The document is not a usable JWKS.
    #[error(transparent)]
    Jwks(#[from] jwks::JwksError),
    /// The crypto library refused the `hmac_secret`.
    #[error("cannot use the shared secret: {0}")]
    Secret(public_key::Unusable),
    /// An `hmac_secret` provider's key comes with the config, and an introspection-only
    /// provider has none: neither is fetched.
    #[error("this provider's keys are not fetched")]
    SharedSecret,
}

/// What a key store knows right now; replaced whole on every fetch.
#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// Last successful load (for restored keys: the fetch that wrote them to disk).
    loaded_at: Option<Now>,
    /// When fetched keys stop being served (`max_stale` after `loaded_at`).
    usable_until: Option<Instant>,
    /// The keys came from the disk cache and no fetch has succeeded since.
    restored: bool,
    last_error: Option<Arc<LoadError>>,
}

impl State {
    /// Seconds since `loaded_at`.
    fn age(&self) -> Option<u64> {
        let at = self.loaded_at?;
        Some(if self.restored {
            clock::unix().saturating_sub(at.unix)
        } else {
            at.instant.elapsed().as_secs()
        })
    }
}

/// One provider's keys.
pub struct KeyStore {
    provider: String,
    issuer: String,
    source: KeySource,
    settings: KeySettings,
    client: reqwest::Client,
    state: ArcSwap<State>,
    discovered_jwks_uri: std::sync::Mutex<Option<String>>,
    fetching: AtomicBool,
    fetches: AtomicU64,
    /// `jwtgate_key_fetches_total{provider, outcome}`.
    fetched: fetch::FetchCounters,
    generation: watch::Sender<u64>,
    last_refetch: std::sync::Mutex<Option<Instant>>,
    max_age: std::sync::Mutex<Option<Duration>>,
    /// Where the last good key set is kept (fetching sources only), if anywhere.
    disk: Option<Arc<cache::KeyCache>>,
    /// `kid`s this store once held and a later load dropped (retired keys), at most
    /// [`MAX_RETIRED`]: a token naming one is refused at once instead of spending the refetch
    /// window that a real rotation needs.
    retired: std::sync::Mutex<HashSet<String>>,
}

/// Retired `kid`s remembered per provider; when full, the memory starts again (a forgotten one
/// costs one refetch per window, as any unknown `kid` does).
const MAX_RETIRED: usize = 1024;

/// Health of one provider's keys, as `/readyz` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyStatus {
    /// Provider name.
    pub provider: String,
    /// `fresh`, `stale` (last fetch failed, old keys still served), `restored` (from the disk
    /// cache after failed fetches, until one succeeds), `expired` (older than `max_stale`),
    /// `missing` (never loaded) or `introspection` (no keys: opaque tokens only).
    pub state: &'static str,
    /// Key ids in the current set.
    pub kids: Vec<String>,
    /// Number of keys (including ones without `kid`).
    pub keys: usize,
    /// Unix time of the last successful load.
    pub last_loaded_unix: Option<u64>,
    /// Seconds since the last successful load.
    pub age_seconds: Option<u64>,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
    /// Fetches attempted since start.
    pub fetches: u64,
}

/// Result of asking for a refetch because of an unknown `kid`.
enum Refetch {
    /// The fetch this request started finished while it waited.
    Done,
    /// A fetch already running (perhaps sent before the issuer published the new key) finished
    /// while it waited.
    Joined,
    /// The window since the last refetch has not passed: answer from what we have.
    NotNow,
    /// The fetch is still running past `refetch_wait`.
    TimedOut,
}

impl KeyStore {
    /// A store for `provider`, empty until [`KeyStore::run`] or a request loads it; its fetches
    /// are counted in `metrics`, and with `disk` its last good key set is kept there.
    pub fn new(
        provider: &Provider,
        client: reqwest::Client,
        metrics: &Metrics,
        disk: Option<Arc<cache::KeyCache>>,
    ) -> Arc<Self> {
        let fetches = matches!(provider.key_source, KeySource::JwksUri(_) | KeySource::Discovery);
        let store = Arc::new(Self {
            provider: provider.name.clone(),
            issuer: provider.issuer.clone(),
            source: provider.key_source.clone(),
            settings: provider.keys,
            client,
            state: ArcSwap::from_pointee(State::default()),
            discovered_jwks_uri: std::sync::Mutex::new(None),
            fetching: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
            fetched: metrics.families::<fetch::KeyFetchMetrics>().counters(&provider.name),
            generation: watch::channel(0).0,
            last_refetch: std::sync::Mutex::new(None),
            max_age: std::sync::Mutex::new(None),
            disk: disk.filter(|_| fetches),
            retired: std::sync::Mutex::default(),
        });
        if let KeySource::HmacSecret(secret) = &provider.key_source {
            match KeySet::shared_secret(secret.expose()) {
                Ok(set) => store.store_keys(set),
                Err(e) => store.state.store(Arc::new(State {
                    last_error: Some(Arc::new(LoadError::Secret(e))),
                    ..State::default()
                })),
            }
        }
        store
    }

    /// Whether this store fetches exactly what `provider` asks for (same name, issuer, key source
    /// and settings), so a config reload can keep it and the keys it holds.
    pub fn serves(&self, provider: &Provider) -> bool {
        self.provider == provider.name
            && self.issuer == provider.issuer
            && self.source == provider.key_source
            && self.settings == provider.keys
    }

    /// The keys to verify a token with `kid` against. An unknown `kid` triggers at most one
    /// refetch per `min_refetch_interval`, shared by every request that misses meanwhile and
    /// waited on only up to `refetch_wait`; a retired one (published once, dropped since)
    /// triggers none.
    pub async fn key_set_for(self: &Arc<Self>, kid: Option<&str>) -> Result<Arc<KeySet>, Rejection> {
        let missing = |set: &KeySet| kid.is_some_and(|k| !set.knows(k) && !self.is_retired(k));
        if let Some(set) = self.usable()
            && !missing(&set)
        {
            return Ok(set);
        }
        let deadline = clock::now().instant + self.settings.refetch_wait;
        match self.refetch(deadline).await {
            Refetch::TimedOut => return Err(Rejection::KeysUnavailable),
            // A fetch that was already running may have left before the new key was published:
            // if it did not bring the kid, ask for one of our own (within the same window and
            // wait). If the window is spent, answer from what the first brought; if ours is
            // not back in time, the keys are unavailable, as when the first is not.
            Refetch::Joined if self.usable().is_none_or(|set| missing(&set)) => {
                if let Refetch::TimedOut = self.refetch(deadline).await {
                    return Err(Rejection::KeysUnavailable);
                }
            }
            Refetch::Done | Refetch::Joined | Refetch::NotNow => {}
        }
        self.usable().ok_or(Rejection::KeysUnavailable)
    }

    /// The current keys, unless missing or older than `max_stale`.
    pub fn usable(&self) -> Option<Arc<KeySet>> {
        let state = self.state.load();
        let keys = state.keys.as_ref()?;
        let ages = matches!(self.source, KeySource::JwksUri(_) | KeySource::Discovery);
        if ages && state.usable_until.is_none_or(|until| Instant::now() > until) {
            return None;
        }
        Some(keys.clone())
    }

    /// Status for `/readyz` and the admin API.
    pub fn status(&self) -> KeyStatus {
        let state = self.state.load();
        let usable = self.usable().is_some();
        let status = match (&state.keys, usable, &state.last_error) {
            (None, _, _) if self.source == KeySource::None => "introspection",
            (None, _, _) => "missing",
            (Some(_), false, _) => "expired",
            (Some(_), true, _) if state.restored => "restored",
            (Some(_), true, Some(_)) => "stale",
            (Some(_), true, None) => "fresh",
        };
        KeyStatus {
            provider: self.provider.clone(),
            state: status,
            kids: state.keys.as_ref().map(|k| k.kids()).unwrap_or_default(),
            keys: state.keys.as_ref().map_or(0, |k| k.len()),
            last_loaded_unix: state.loaded_at.map(|at| at.unix),
            age_seconds: state.age(),
            last_error: state.last_error.as_ref().map(ToString::to_string),
            fetches: self.fetches.load(Ordering::Relaxed),
        }
    }

    /// Keeps the keys current until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        match self.source.clone() {
            KeySource::HmacSecret(_) | KeySource::None => {}
            KeySource::JwksFile(path) => self.watch_file(&path, cancel).await,
            KeySource::JwksUri(_) | KeySource::Discovery => self.refresh_loop(cancel).await,
        }
    }

    async fn refresh_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let next = match self.fetch_and_wait(true).await {
                Ok(max_age) => {
                    failures = 0;
                    let base = max_age
                        .unwrap_or(self.settings.refresh_interval)
                        .clamp(self.settings.min_refetch_interval, self.settings.refresh_interval);
                    jitter(base)
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    let cap = MAX_BACKOFF.min(self.settings.refresh_interval);
                    jitter(Duration::from_secs(1u64 << failures.min(6)).min(cap))
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn watch_file(self: Arc<Self>, path: &std::path::Path, cancel: CancellationToken) {
        let mut seen = None;
        loop {
            let stamp = std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()));
            if stamp != seen {
                seen = stamp;
                let _ = self.fetch_and_wait(false).await;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(FILE_POLL) => {}
            }
        }
    }

    /// Loads the keys once, waiting (bounded by `fetch_timeout`) for the outcome; for one-shot
    /// commands such as `jwtgate check` that run no background refresh.
    pub async fn load_once(self: &Arc<Self>) -> Result<(), Arc<LoadError>> {
        if matches!(self.source, KeySource::HmacSecret(_) | KeySource::None) {
            return Ok(()); // loaded with the config, or nothing to load
        }
        self.fetch_and_wait(true).await.map(|_| ())
    }

    /// Starts a fetch unless one is running, and waits for the running one to finish.
    async fn fetch_and_wait(self: &Arc<Self>, rediscover: bool) -> Result<Option<Duration>, Arc<LoadError>> {
        let mut rx = self.generation.subscribe();
        self.spawn_fetch(rediscover);
        let _ = rx.changed().await;
        match &self.state.load().last_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.last_max_age()),
        }
    }

    /// Starts a refetch (at most one per `min_refetch_interval`) unless one is running, and
    /// waits for the running one until `deadline`.
    async fn refetch(self: &Arc<Self>, deadline: Instant) -> Refetch {
        if matches!(self.source, KeySource::HmacSecret(_) | KeySource::None) {
            return Refetch::NotNow;
        }
        let mut rx = self.generation.subscribe();
        // Decided under the lock, so that of two requests missing together one starts the fetch
        // and the other joins it; told apart by the lock alone, the second could find no fetch
        // running yet and the window already spent, and be denied just before the key arrived.
        let joined = {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            if self.fetching.load(Ordering::Acquire) {
                true
            } else {
                let now = clock::now().instant;
                if last.is_some_and(|t| now.duration_since(t) < self.settings.min_refetch_interval) {
                    return Refetch::NotNow;
                }
                *last = Some(now);
                // A background refresh may have begun since the load above: then this joins it.
                !self.spawn_fetch(false)
            }
        };
        match tokio::time::timeout_at(deadline.into(), rx.changed()).await {
            Ok(_) if joined => Refetch::Joined,
            Ok(_) => Refetch::Done,
            Err(_) => Refetch::TimedOut,
        }
    }

    /// Starts a fetch unless one is running; whether it started one.
    fn spawn_fetch(self: &Arc<Self>, rediscover: bool) -> bool {
        if self.fetching.swap(true, Ordering::AcqRel) {
            return false;
        }
        let this = self.clone();
        // A child of the check that asked for it (an unknown `kid`), else a root of its own.
        let span = tracing::info_span!(
            "jwks.fetch",
            otel.kind = "client",
            provider = %self.provider,
            server.address = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            http.response.body.size = tracing::field::Empty,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let task = async move {
            this.fetches.fetch_add(1, Ordering::Relaxed);
            let outcome = this.load(rediscover).await;
            let span = tracing::Span::current();
            span.record("outcome", if outcome.is_ok() { "success" } else { "failure" });
            if outcome.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            match outcome {
                Ok((parsed, max_age, body)) => {
                    for why in &parsed.skipped {
                        tracing::warn!(provider = %this.provider, "skipped key: {why}");
                    }
                    *this.max_age.lock().unwrap_or_else(|p| p.into_inner()) = max_age;
                    tracing::info!(provider = %this.provider, keys = parsed.set.len(), "key set loaded");
                    this.store_keys(parsed.set);
                    this.fetched.success.inc();
                    this.save_to_disk(body).await;
                }
                Err(why) => {
                    tracing::warn!(provider = %this.provider, "key fetch failed, keeping the last good keys: {why}");
                    this.fetched.failure.inc();
                    let why = Arc::new(why);
                    let never_loaded = this.state.load().keys.is_none();
                    if !(never_loaded && this.restore_from_disk(&why).await) {
                        let old = this.state.load();
                        this.state.store(Arc::new(State {
                            keys: old.keys.clone(),
                            loaded_at: old.loaded_at,
                            usable_until: old.usable_until,
                            restored: old.restored,
                            last_error: Some(why),
                        }));
                    }
                }
            }
            this.fetching.store(false, Ordering::Release);
            this.generation.send_modify(|g| *g += 1);
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
        true
    }

    fn is_retired(&self, kid: &str) -> bool {
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).contains(kid)
    }

    /// Remembers the `kid`s `old` had and `new` lacks; forgets any that `new` brings back.
    fn retire(&self, old: &KeySet, new: &KeySet) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|kid| !new.knows(kid));
        for kid in old.kids().into_iter().filter(|kid| !new.knows(kid)) {
            if retired.len() >= MAX_RETIRED {
                retired.clear();
            }
            retired.insert(kid);
        }
    }

    fn store_keys(&self, mut set: KeySet) {
        if let Some(old) = self.state.load().keys.as_ref() {
            // Unchanged keys stay the same objects, so cached tokens they verified stay valid.
            set.keep_unchanged(old);
            self.retire(old, &set);
        }
        let now = clock::now();
        self.state.store(Arc::new(State {
            keys: Some(Arc::new(set)),
            loaded_at: Some(now),
            usable_until: now.instant.checked_add(self.settings.max_stale),
            restored: false,
            last_error: None,
        }));
    }

    fn last_max_age(&self) -> Option<Duration> {
        *self.max_age.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches (or reads) and parses the key set: the parsed set, the `max-age` the server
    /// gave, and the document itself.
    async fn load(&self, rediscover: bool) -> Result<(jwks::Parsed, Option<Duration>, Vec<u8>), LoadError> {
        let timeout = self.settings.fetch_timeout;
        let fetched = match &self.source {
            KeySource::JwksUri(uri) => fetch::get(&self.client, uri, timeout).await?,
            KeySource::Discovery => {
                let cached = self
                    .discovered_jwks_uri
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let uri = match cached {
                    Some(uri) if !rediscover => uri,
                    _ => {
                        let uri = fetch::discover(&self.client, &self.issuer, "jwks_uri", timeout).await?;
                        *self.discovered_jwks_uri.lock().unwrap_or_else(|p| p.into_inner()) = Some(uri.clone());
                        uri
                    }
                };
                fetch::get(&self.client, &uri, timeout).await?
            }
            KeySource::JwksFile(path) => {
                let limit = fetch::MAX_BODY_BYTES as u64;
                let read = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || crate::file::read(&path, limit))
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r)
                };
                let body = match read {
                    Ok(body) => body,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Err(LoadError::FileTooLarge(path.clone()));
                    }
                    Err(source) => {
                        return Err(LoadError::ReadFile {
                            path: path.clone(),
                            source,
                        });
                    }
                };
                fetch::Fetched { body, max_age: None }
            }
            KeySource::HmacSecret(_) | KeySource::None => return Err(LoadError::SharedSecret),
        };
        let parsed = jwks::parse(&fetched.body)?;
        Ok((parsed, fetched.max_age, fetched.body))
    }
}

/// ±10% so that replicas started together do not fetch together.
fn jitter(d: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..1.1);
    d.mul_f64(factor)
}
