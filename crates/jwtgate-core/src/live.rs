//! The configuration in force: one [`Gate`] behind an atomic pointer, replaced whole on reload so a
//! request sees either the old config or the new one, never a mix. Key stores of providers whose
//! key source and settings did not change are carried over with the keys they hold.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::gate::{Gate, Shared};
use crate::keys::KeyStore;
use crate::metrics::{Families, OutcomeLabel};
use crate::verify::Verifier;

/// The gate that decides now; front doors load it once per request.
pub type SharedGate = Arc<ArcSwap<Gate>>;

/// How often the config file is checked for changes.
const CONFIG_POLL: Duration = Duration::from_secs(1);

/// The running configuration and the key stores it uses.
pub struct Live {
    gate: SharedGate,
    client: reqwest::Client,
    stores: Mutex<Vec<RunningStore>>,
    shutdown: CancellationToken,
    listen: (std::net::SocketAddr, std::net::SocketAddr, std::net::SocketAddr),
    revocation: crate::config::RevocationConfig,
    admin_provider: Option<String>,
    /// `telemetry.tracing` at start, `record_subject` aside (the gate applies that on reload).
    tracing: crate::config::TracingConfig,
    /// Where rate-limit counters live, as at start.
    rate_store: crate::config::rate_limits::LimitStore,
}

/// A key store kept by the config in force, and the signal that stops its refresh.
type RunningStore = (Arc<KeyStore>, CancellationToken);

impl Live {
    /// Builds the first gate and starts every provider's key refresh.
    pub fn start(config: &Config, client: reqwest::Client, shared: Shared, shutdown: CancellationToken) -> Arc<Self> {
        crate::config::LooseSecret::warn(config);
        let mut stores = Vec::new();
        let verifier = key_stores(config, &client, &shared, &shutdown, &[], &mut stores);
        let gate = Gate::with_verifier(config, verifier, &client, shared);
        Arc::new(Self {
            gate: Arc::new(ArcSwap::from_pointee(gate)),
            client,
            stores: Mutex::new(stores),
            shutdown,
            listen: (config.listen.grpc, config.listen.http, config.listen.admin),
            revocation: config.revocation.clone(),
            admin_provider: config.admin.provider.clone(),
            tracing: trace_pipeline(config),
            rate_store: config.rate_limits.store.clone(),
        })
    }

    /// The gate pointer the front doors read.
    pub fn gate(&self) -> &SharedGate {
        &self.gate
    }

    /// Swaps in a validated config: unchanged providers keep their key stores; new or changed
    /// ones get fresh stores; removed ones stop refreshing.
    pub fn apply(&self, config: &Config) {
        crate::config::LooseSecret::warn(config);
        if (config.listen.grpc, config.listen.http, config.listen.admin) != self.listen {
            tracing::warn!("listen addresses changed: that takes a restart; the rest of the config is applied");
        }
        if config.revocation != self.revocation || config.admin.provider != self.admin_provider {
            tracing::warn!("revocation store or admin settings changed: that takes a restart");
        }
        if config.rate_limits.store != self.rate_store {
            tracing::warn!("rate_limits.store changed: that takes a restart (the rules apply now, on the old store)");
        }
        if trace_pipeline(config) != self.tracing {
            tracing::warn!("telemetry.tracing changed: that takes a restart (record_subject applies now)");
        }
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Vec::with_capacity(config.providers.len());
        let shared = self.gate.load().shared().clone();
        let verifier = key_stores(config, &self.client, &shared, &self.shutdown, &stores, &mut next);
        let mut kept = 0;
        for (store, stop) in stores.iter() {
            if next.iter().any(|(s, _)| Arc::ptr_eq(s, store)) {
                kept += 1;
            } else {
                stop.cancel();
            }
        }
        *stores = next;
        self.gate
            .store(Arc::new(Gate::with_verifier(config, verifier, &self.client, shared)));
        tracing::info!(
            providers = config.providers.len(),
            kept_key_sets = kept,
            routes = config.routes.len(),
            "config applied"
        );
    }

    /// Loads, validates and applies `path`; an invalid file is refused (logged) and the config in
    /// force stays.
    pub fn reload(&self, path: &Path) -> Result<(), ConfigError> {
        match Config::load(path) {
            Ok(config) => {
                self.apply(&config);
                self.gate.load().metrics().families::<ReloadMetrics>().count(true);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; keeping the config in force");
                self.gate.load().metrics().families::<ReloadMetrics>().count(false);
                Err(e)
            }
        }
    }

    /// Reloads whenever the file's contents change and have settled, until shutdown: a new
    /// version is applied once two looks a poll apart saw the same bytes, so a file being
    /// written in steps (truncated, then written piece by piece) is never put in force half
    /// written. Writing a new file and renaming it over the old is atomic; `SIGHUP` reloads at
    /// once.
    pub async fn watch(self: Arc<Self>, path: PathBuf) {
        let read = |path: &PathBuf| crate::file::read(path, crate::file::MAX_FILE_BYTES).ok();
        let mut settling = Settling::new(read(&path));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(CONFIG_POLL) => {}
            }
            if settling.settled(read(&path)) {
                let _ = self.reload(&path);
            }
        }
    }
}

/// Which version of the config file to apply, look by look: a version is new when its bytes
/// differ from the one last applied, and settled when the previous look saw the same bytes.
#[derive(Debug)]
struct Settling {
    applied: Option<Vec<u8>>,
    last: Option<Vec<u8>>,
}

impl Settling {
    fn new(in_force: Option<Vec<u8>>) -> Self {
        Self {
            applied: in_force.clone(),
            last: in_force,
        }
    }

    /// Whether this look's bytes are a new, settled version (which then counts as applied). A
    /// file that cannot be read is no version.
    fn settled(&mut self, now: Option<Vec<u8>>) -> bool {
        let previous = std::mem::replace(&mut self.last, now);
        let Some(now) = &self.last else {
            return false;
        };
        if self.applied.as_ref() == Some(now) || previous.as_ref() != Some(now) {
            return false;
        }
        self.applied = Some(now.clone());
        true
    }
}

/// The verifier for `config`: a provider that one of the `running` stores serves unchanged keeps
/// it, with the keys it holds; any other gets a fresh store, refreshing until `shutdown`. Every
/// store in use is pushed onto `next`.
fn key_stores(
    config: &Config,
    client: &reqwest::Client,
    shared: &Shared,
    shutdown: &CancellationToken,
    running: &[RunningStore],
    next: &mut Vec<RunningStore>,
) -> Verifier {
    Verifier::with_key_stores(config, |p| {
        let (store, stop) = match running.iter().find(|(s, _)| s.serves(p)) {
            Some(kept) => kept.clone(),
            None => {
                let store = KeyStore::new(p, client.clone(), &shared.metrics, shared.key_cache.clone());
                let stop = shutdown.child_token();
                tokio::spawn(store.clone().run(stop.clone()));
                (store, stop)
            }
        };
        next.push((store.clone(), stop));
        store
    })
}

/// The part of `telemetry.tracing` fixed at start: all of it but `record_subject`.
fn trace_pipeline(config: &Config) -> crate::config::TracingConfig {
    crate::config::TracingConfig {
        record_subject: false,
        ..config.tracing.clone()
    }
}

/// `jwtgate_config_reloads_total`: reloads by outcome (`success`, or `failure` when the file was
/// refused and the config in force stayed); an outcome appears once it has happened.
#[derive(Debug, Default)]
pub struct ReloadMetrics(Family<OutcomeLabel, Counter>);

impl Families for ReloadMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("jwtgate_config_reloads", "Config reloads, by outcome", m.0.clone());
        m
    }
}

impl ReloadMetrics {
    /// Counts a reload, applied or refused.
    pub fn count(&self, applied: bool) {
        let outcome = if applied { "success" } else { "failure" };
        self.0.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::Settling;

    fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn a_version_is_applied_once_two_looks_in_a_row_saw_it() {
        let mut s = Settling::new(v("old"));
        assert!(!s.settled(v("old")));
        // Truncated, then half written: each seen once, never settled.
        assert!(!s.settled(v("")));
        assert!(!s.settled(v("new, half")));
        assert!(!s.settled(v("new, whole")));
        assert!(s.settled(v("new, whole")));
        // Applied once only.
        assert!(!s.settled(v("new, whole")));
        // Gone for a look, then back unchanged: nothing to apply.
        assert!(!s.settled(None));
        assert!(!s.settled(v("new, whole")));
        assert!(!s.settled(v("new, whole")));
    }

    #[test]
    fn going_back_to_the_version_in_force_applies_nothing() {
        let mut s = Settling::new(v("a"));
        assert!(!s.settled(v("b")));
        assert!(!s.settled(v("a")));
        assert!(!s.settled(v("a")));
    }
}
