//! What the operations endpoints read of the gate in force: readiness (`/readyz`, gRPC health)
//! and the `/metrics` scrape. Neither is a decision, so neither lives in the gate. The gauges
//! that describe state (key sets, cache size, revocations) are defined here and set from the
//! gate at each scrape ([`StateGauges`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::gate::Gate;
use crate::metrics::{Families, Format};

/// Whether `gate` can allow tokens: every provider has usable keys and the revocations are
/// loaded.
pub fn ready(gate: &Gate) -> bool {
    gate.verifier().keys_ready() && !gate.shared().revocations.is_pending()
}

/// The `/metrics` exposition: the state gauges set from `gate` (key sets, cache size,
/// revocations), then every metric.
pub fn metrics_text(gate: &Gate, format: Format) -> String {
    let metrics = &gate.shared().metrics;
    metrics.families::<StateGauges>().set(gate);
    metrics.render(format)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// State gauges, set from the gate in force when scraped.
#[derive(Debug, Default)]
pub struct StateGauges {
    key_set_keys: Family<ProviderLabels, Gauge>,
    key_set_age: Family<ProviderLabels, Gauge>,
    key_set_last_success: Family<ProviderLabels, Gauge>,
    key_set_restored: Family<ProviderLabels, Gauge>,
    cache_entries: Gauge,
    revocations: Family<KindLabels, Gauge>,
    revocation_store_up: Gauge,
}

impl Families for StateGauges {
    fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register(
            "jwtgate_key_set_keys",
            "Keys in each provider's current key set",
            g.key_set_keys.clone(),
        );
        registry.register(
            "jwtgate_key_set_age_seconds",
            "Seconds since each provider's key set was last loaded",
            g.key_set_age.clone(),
        );
        registry.register(
            "jwtgate_key_set_last_success_timestamp_seconds",
            "Unix time of each provider's last successful key-set load",
            g.key_set_last_success.clone(),
        );
        registry.register(
            "jwtgate_key_set_restored",
            "Whether each provider serves the key set kept on disk because no fetch has succeeded since start (1) or not (0)",
            g.key_set_restored.clone(),
        );
        registry.register(
            "jwtgate_token_cache_entries",
            "Tokens in the verified-token cache",
            g.cache_entries.clone(),
        );
        registry.register(
            "jwtgate_revocations",
            "Live revocations, by kind",
            g.revocations.clone(),
        );
        registry.register(
            "jwtgate_revocation_store_up",
            "Whether the revocation store takes writes and fans them out (1) or not (0)",
            g.revocation_store_up.clone(),
        );
        g
    }
}

impl StateGauges {
    /// Sets every gauge from `gate`; providers no longer configured disappear.
    fn set(&self, gate: &Gate) {
        self.key_set_keys.clear();
        self.key_set_age.clear();
        self.key_set_last_success.clear();
        self.key_set_restored.clear();
        for p in gate.verifier().providers_by_name() {
            let s = p.keys.status();
            let labels = ProviderLabels { provider: s.provider };
            self.key_set_keys.get_or_create(&labels).set(saturating_i64(s.keys));
            if let Some(age) = s.age_seconds {
                self.key_set_age.get_or_create(&labels).set(saturating_i64(age));
            }
            if let Some(at) = s.last_loaded_unix {
                self.key_set_last_success.get_or_create(&labels).set(saturating_i64(at));
            }
            self.key_set_restored
                .get_or_create(&labels)
                .set(i64::from(s.state == "restored"));
        }
        self.cache_entries.set(saturating_i64(gate.cache().len()));
        let shared = gate.shared();
        let (jti, subject) = shared.revocations.counts();
        for (kind, n) in [("jti", jti), ("subject", subject)] {
            self.revocations
                .get_or_create(&KindLabels { kind })
                .set(saturating_i64(n));
        }
        // Only one-shot commands run without a store, and they serve no metrics.
        let store_up = shared.store.as_ref().is_some_and(|s| s.status().connected);
        self.revocation_store_up.set(i64::from(store_up));
    }
}

/// A count as a gauge's value, `i64::MAX` beyond it.
fn saturating_i64(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}
