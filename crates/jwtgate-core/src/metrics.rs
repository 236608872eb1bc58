//! Counters for `/metrics` (Prometheus text format): decisions by outcome and reason, and the
//! would-be denials of dry-run routes. Kept outside the gate so a config reload keeps them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide decision counters.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: AtomicU64,
    cache_hits: AtomicU64,
    cache_refused_hits: AtomicU64,
    cache_misses: AtomicU64,
    denied: Mutex<BTreeMap<&'static str, u64>>,
    dry_run: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    /// Counts an allowed request.
    pub fn allowed(&self) {
        self.allowed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a verified-token cache lookup: a hit, a remembered refusal, or a miss.
    pub fn cache_lookup(&self, outcome: CacheOutcome) {
        let counter = match outcome {
            CacheOutcome::Hit => &self.cache_hits,
            CacheOutcome::RefusedHit => &self.cache_refused_hits,
            CacheOutcome::Miss => &self.cache_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Verified-token cache hits so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Counts a denial by reason label.
    pub fn denied(&self, label: &'static str) {
        *self
            .denied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label)
            .or_default() += 1;
    }

    /// Counts a denial that a dry-run route turned into an allow.
    pub fn dry_run_denial(&self, route: &str, label: &'static str) {
        let mut map = self.dry_run.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((route.to_owned(), label)).or_default() += 1;
    }

    /// Would-be denials of a dry-run route, over all reasons.
    pub fn dry_run_denials(&self, route: &str) -> u64 {
        let map = self.dry_run.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().filter(|((r, _), _)| r == route).map(|(_, n)| n).sum()
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP jwtgate_decisions_total Checks answered, by decision and reason.\n");
        out.push_str("# TYPE jwtgate_decisions_total counter\n");
        let _ = writeln!(
            out,
            "jwtgate_decisions_total{{decision=\"allow\",reason=\"\"}} {}",
            self.allowed.load(Ordering::Relaxed)
        );
        for (label, n) in self.denied.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "jwtgate_decisions_total{{decision=\"deny\",reason=\"{label}\"}} {n}"
            );
        }
        out.push_str("# HELP jwtgate_token_cache_lookups_total Verified-token cache lookups by outcome.\n");
        out.push_str("# TYPE jwtgate_token_cache_lookups_total counter\n");
        for (outcome, c) in [
            ("hit", &self.cache_hits),
            ("refused_hit", &self.cache_refused_hits),
            ("miss", &self.cache_misses),
        ] {
            let _ = writeln!(
                out,
                "jwtgate_token_cache_lookups_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP jwtgate_dry_run_denials_total Requests a dry-run route would have denied.\n");
        out.push_str("# TYPE jwtgate_dry_run_denials_total counter\n");
        for ((route, label), n) in self.dry_run.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "jwtgate_dry_run_denials_total{{route=\"{}\",reason=\"{label}\"}} {n}",
                escape(route)
            );
        }
        out
    }
}

/// What a verified-token cache lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A verified entry that is still good.
    Hit,
    /// A remembered refusal.
    RefusedHit,
    /// Nothing usable: verified afresh.
    Miss,
}

/// Escapes a label value (route names are config-controlled, but stay safe).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.allowed();
        m.denied("expired");
        m.denied("expired");
        m.dry_run_denial("admin", "missing_role");
        let text = m.render();
        assert!(text.contains("jwtgate_decisions_total{decision=\"allow\",reason=\"\"} 1\n"));
        assert!(text.contains("jwtgate_decisions_total{decision=\"deny\",reason=\"expired\"} 2\n"));
        assert!(text.contains("jwtgate_dry_run_denials_total{route=\"admin\",reason=\"missing_role\"} 1\n"));
        assert_eq!(m.dry_run_denials("admin"), 1);
    }
}
