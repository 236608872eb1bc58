//! What the gate counts: every decision by route, provider and reason
//! (`jwtgate_decisions_total`), the denials a dry-run route let through
//! (`jwtgate_dry_run_denials_total`) and the signatures verified by provider and algorithm
//! (`jwtgate_tokens_verified_total`). [`DecisionMetrics`] holds the families; each config (a
//! gate) takes a [`DecisionCounters`] table of handles from them, so counting a check is an
//! atomic add.

use std::sync::OnceLock;

use jsonwebtoken::Algorithm;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::config::ALGORITHMS;
use crate::metrics::Families;
use crate::rejection::{LABELS, Rejection};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
    provider: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DryRunLabels {
    route: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerifiedLabels {
    provider: String,
    alg: &'static str,
}

/// The gate's families; they outlive every config.
#[derive(Debug, Default)]
pub struct DecisionMetrics {
    decisions: Family<DecisionLabels, Counter>,
    dry_run: Family<DryRunLabels, Counter>,
    verified: Family<VerifiedLabels, Counter>,
}

impl Families for DecisionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwtgate_decisions",
            "Checks answered, by decision, reason, provider and route",
            m.decisions.clone(),
        );
        registry.register(
            "jwtgate_tokens_verified",
            "Token signatures verified (cache hits excluded), by provider and algorithm",
            m.verified.clone(),
        );
        registry.register(
            "jwtgate_dry_run_denials",
            "Requests a dry-run route would have denied",
            m.dry_run.clone(),
        );
        m
    }
}

impl DecisionMetrics {
    /// The handle table for one config's routes and providers (see [`DecisionCounters`]).
    pub fn counters(&self, routes: Vec<String>, providers: Vec<String>) -> DecisionCounters {
        DecisionCounters {
            decisions: self.decisions.clone(),
            dry_run: self.dry_run.clone(),
            verified: self.verified.clone(),
            decision_rows: (0..=routes.len()).map(|_| OnceLock::new()).collect(),
            dry_run_slots: (0..routes.len() * LABELS.len()).map(|_| OnceLock::new()).collect(),
            verified_slots: (0..providers.len() * ALGORITHMS.len())
                .map(|_| OnceLock::new())
                .collect(),
            routes,
            providers,
        }
    }
}

/// Counter handles for one config (a gate): decisions by (route, provider, outcome), dry-run
/// denials by (route, reason) and verifications by (provider, algorithm), each an index into a
/// table. A handle is taken from its family the first time it is counted and kept, so counting
/// is an atomic add. A route's row of decision handles is allocated when the route first
/// decides. Routes and providers are given by their position in the config; `None` is "none"
/// (the label value is empty).
#[derive(Debug)]
pub struct DecisionCounters {
    decisions: Family<DecisionLabels, Counter>,
    dry_run: Family<DryRunLabels, Counter>,
    verified: Family<VerifiedLabels, Counter>,
    /// One row per route, then one for "no route": `(provider, then none) × (allow, then each
    /// reason)`.
    decision_rows: Box<[OnceLock<Slots>]>,
    dry_run_slots: Slots,
    verified_slots: Slots,
    routes: Vec<String>,
    providers: Vec<String>,
}

impl DecisionCounters {
    /// Counts an allowed check.
    pub fn allowed(&self, route: Option<usize>, provider: Option<usize>) {
        if let Some(c) = self.decision(route, provider, None) {
            c.inc();
        }
    }

    /// Counts a denied check.
    pub fn denied(&self, route: Option<usize>, provider: Option<usize>, rejection: &Rejection) {
        if let Some(c) = self.decision(route, provider, Some(rejection)) {
            c.inc();
        }
    }

    /// Counts a denial that a dry-run route turned into an allow.
    pub fn dry_run_denial(&self, route: usize, rejection: &Rejection) {
        let Some(name) = self.routes.get(route) else { return };
        let Some(slot) = self.dry_run_slots.get(route * LABELS.len() + rejection.index()) else {
            return;
        };
        slot.get_or_init(|| {
            self.dry_run
                .get_or_create(&DryRunLabels {
                    route: name.clone(),
                    reason: rejection.label(),
                })
                .clone()
        })
        .inc();
    }

    /// Counts a signature verification.
    pub fn verified(&self, provider: usize, alg: Algorithm) {
        let (Some(name), Some(a)) = (self.providers.get(provider), ALGORITHMS.iter().position(|x| *x == alg)) else {
            return;
        };
        let Some(slot) = self.verified_slots.get(provider * ALGORITHMS.len() + a) else {
            return;
        };
        slot.get_or_init(|| {
            self.verified
                .get_or_create(&VerifiedLabels {
                    provider: name.clone(),
                    alg: ALGORITHM_NAMES.get(a).copied().unwrap_or_default(),
                })
                .clone()
        })
        .inc();
    }

    fn decision(&self, route: Option<usize>, provider: Option<usize>, reason: Option<&Rejection>) -> Option<&Counter> {
        let outcomes = LABELS.len() + 1;
        let row = self
            .decision_rows
            .get(route.unwrap_or(self.routes.len()))?
            .get_or_init(|| {
                (0..(self.providers.len() + 1) * outcomes)
                    .map(|_| OnceLock::new())
                    .collect()
            });
        let provider_slot = provider
            .filter(|p| *p < self.providers.len())
            .unwrap_or(self.providers.len());
        let slot = row.get(provider_slot * outcomes + reason.map_or(0, |r| r.index() + 1))?;
        Some(slot.get_or_init(|| {
            let name = |names: &[String], i: Option<usize>| i.and_then(|i| names.get(i)).cloned().unwrap_or_default();
            self.decisions
                .get_or_create(&DecisionLabels {
                    decision: if reason.is_some() { "deny" } else { "allow" },
                    reason: reason.map_or("", Rejection::label),
                    provider: name(&self.providers, provider),
                    route: name(&self.routes, route),
                })
                .clone()
        }))
    }
}

/// Counter handles, each resolved on first use.
type Slots = Box<[OnceLock<Counter>]>;

/// JOSE names of [`ALGORITHMS`], in its order (the `alg` label).
const ALGORITHM_NAMES: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_follow_the_algorithm_list() {
        for (alg, name) in ALGORITHMS.iter().zip(ALGORITHM_NAMES) {
            assert_eq!(format!("{alg:?}"), name);
        }
    }
}
