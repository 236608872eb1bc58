//! What the operations endpoints read of the gate in force: readiness (`/readyz`, gRPC health)
//! and the `/metrics` scrape. Neither is a decision, so neither lives in the gate.

use crate::gate::Gate;
use crate::metrics::{Format, KeySetState};

/// Whether `gate` can allow tokens: every provider has usable keys and the revocations are
/// loaded.
pub fn ready(gate: &Gate) -> bool {
    gate.verifier().keys_ready() && !gate.shared().revocations.is_pending()
}

/// The `/metrics` exposition: the state gauges set from `gate` (key sets, cache size,
/// revocations), then every metric.
pub fn metrics_text(gate: &Gate, format: Format) -> String {
    let shared = gate.shared();
    let metrics = &shared.metrics;
    let sets: Vec<KeySetState> = gate
        .verifier()
        .providers_by_name()
        .into_iter()
        .map(|p| {
            let s = p.keys.status();
            KeySetState {
                provider: s.provider,
                keys: s.keys,
                age_seconds: s.age_seconds,
                last_success_unix: s.last_loaded_unix,
                restored: s.state == "restored",
            }
        })
        .collect();
    metrics.state.key_sets(&sets);
    metrics.state.cache_entries(gate.cache().len());
    let (jti, subject) = shared.revocations.counts();
    // Only one-shot commands run without a store, and they serve no metrics.
    let store_up = shared.store.as_ref().is_some_and(|s| s.status().connected);
    metrics.state.revocations(jti, subject, store_up);
    metrics.render(format)
}
