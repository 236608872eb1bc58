//! What rate limiting counts: refusals by rule (`jwtgate_rate_limited_total`) and checks the
//! shared store did not answer (`jwtgate_rate_limit_store_errors_total`). Each
//! [`super::RateLimiter`] takes its [`RuleCounters`] from its own rules, so a rule's position
//! and its counter cannot disagree.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::config::rate_limits::RateRule;
use crate::metrics::Families;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

/// The rate-limit families; they outlive every config.
#[derive(Debug, Default)]
pub struct RateLimitMetrics {
    limited: Family<RuleLabels, Counter>,
    store_errors: Counter,
}

impl Families for RateLimitMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwtgate_rate_limited",
            "Requests refused by a rate-limit rule, by rule",
            m.limited.clone(),
        );
        registry.register(
            "jwtgate_rate_limit_store_errors",
            "Checks the shared rate-limit store did not answer in time (on_store_error applied)",
            m.store_errors.clone(),
        );
        m
    }
}

impl RateLimitMetrics {
    /// The handles of `rules`, by position.
    pub fn counters<'r>(&self, rules: impl Iterator<Item = &'r RateRule>) -> RuleCounters {
        RuleCounters {
            limited: rules
                .map(|rule| {
                    self.limited
                        .get_or_create(&RuleLabels {
                            rule: rule.name.clone(),
                        })
                        .clone()
                })
                .collect(),
            store_errors: self.store_errors.clone(),
        }
    }
}

/// One config's rate-limit handles: a refusal is an atomic add.
#[derive(Debug)]
pub struct RuleCounters {
    /// `jwtgate_rate_limited_total` by rule position.
    limited: Box<[Counter]>,
    store_errors: Counter,
}

impl RuleCounters {
    /// Counts a refusal by the rule at `rule` (its position in the config).
    pub fn refused_by(&self, rule: usize) {
        if let Some(c) = self.limited.get(rule) {
            c.inc();
        }
    }

    /// Counts a check the shared rate-limit store did not answer.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }
}
