//! The handle behind `/metrics`: one `prometheus-client` registry (the Prometheus org's crate)
//! and its exposition, in the classic text format 0.0.4 (what `promtool check metrics` reads) or
//! OpenMetrics on request. Kept outside the gate so a config reload keeps the counts.
//!
//! It knows no family. Each module defines its own beside the line that counts them, as a type
//! implementing [`Families`] (linkerd2-proxy's habit: adding a metric is one file, with no
//! central list to keep in step), and takes them with [`Metrics::families`], which registers
//! them the first time they are asked for: the gate's decisions in [`crate::gate::metrics`], the
//! rate limiter's in [`crate::ratelimit::metrics`], the gauges of state set at each scrape in
//! [`crate::status`], and so on; the binary's (doors, listeners, TLS, trace export) the same
//! way. A family without samples is not exposed, so when it was registered never shows.
//!
//! What a check touches is resolved once, when a gate is built: handles sit in tables indexed by
//! route, provider, rule and reason, each taken from its family the first time it is counted,
//! and timings are atomic adds ([`DurationHistogram`]). A check never hashes a label set nor
//! looks a family up. Label values come only from the config (route, provider and rule names)
//! and fixed sets (reasons, algorithms, outcomes).

mod histogram;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use histogram::{CHECK_BUCKETS, DurationHistogram};

/// The text exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default; what `promtool check metrics` reads).
    Classic,
    /// OpenMetrics 1.0 text, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a scrape in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Classic => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// `{provider, outcome}`: key fetches, introspection-cache lookups, DPoP proofs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProviderOutcome {
    pub(crate) provider: String,
    pub(crate) outcome: &'static str,
}

/// `{outcome}`: token-cache lookups, config reloads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// A group of families one module counts into: registered once per process, on first use.
pub trait Families: Send + Sync + 'static {
    /// Registers the group's families in `registry`.
    fn register(registry: &mut Registry) -> Self;
}

/// Process-wide metrics: the one registry, and the family groups registered in it by type.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Registered>,
}

#[derive(Debug)]
struct Registered {
    registry: Registry,
    groups: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding `jwtgate_build_info`; every other family joins when first asked for.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("jwtgate_build_info", "The running jwtgate's version", build);
        Self {
            inner: Mutex::new(Registered {
                registry,
                groups: HashMap::new(),
            }),
        }
    }

    /// The families of `F`, registered in this registry the first time any caller asks, the same
    /// ones after. A lookup under a lock: take handles when building, never per check.
    pub fn families<F: Families>(&self) -> Arc<F> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(group) = inner.groups.get(&TypeId::of::<F>())
            && let Ok(group) = group.clone().downcast::<F>()
        {
            return group;
        }
        let group = Arc::new(F::register(&mut inner.registry));
        inner.groups.insert(TypeId::of::<F>(), group.clone());
        group
    }

    /// The exposition of every metric in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut open = String::new();
        {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut open, &inner.registry);
        }
        match format {
            Format::OpenMetrics => open,
            Format::Classic => classic(&open),
        }
    }
}

/// OpenMetrics text as Prometheus text 0.0.4: a counter's family is named for its samples
/// (`x_total`), and the `# UNIT` and `# EOF` lines go (they are OpenMetrics-only). Everything
/// else — gauges, histograms, label escaping — is written the same in both.
fn classic(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let mut lines = open.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = lines
                .peek()
                .is_some_and(|next| *next == format!("# TYPE {name} counter"));
            if counter {
                lines.next();
                let _ = writeln!(out, "# HELP {name}_total {help}\n# TYPE {name}_total counter");
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct DoorLabels {
        door: &'static str,
    }

    #[derive(Debug, Default)]
    struct Timed(Family<DoorLabels, DurationHistogram>);

    impl Families for Timed {
        fn register(registry: &mut Registry) -> Self {
            let t = Self::default();
            registry.register("jwtgate_test_duration_seconds", "Timings", t.0.clone());
            t
        }
    }

    #[derive(Debug, Default)]
    struct Lookups(Family<OutcomeLabel, Counter>);

    impl Families for Lookups {
        fn register(registry: &mut Registry) -> Self {
            let l = Self::default();
            registry.register("jwtgate_test_lookups", "Lookups by outcome", l.0.clone());
            l
        }
    }

    #[test]
    fn classic_text_names_counter_families_for_their_samples() {
        let m = Metrics::new();
        m.families::<Lookups>()
            .0
            .get_or_create(&OutcomeLabel { outcome: "hit" })
            .inc();
        let timed = m
            .families::<Timed>()
            .0
            .get_or_create(&DoorLabels { door: "grpc" })
            .clone();
        timed.observe(Duration::from_micros(30));
        let text = m.render(Format::Classic);
        for line in [
            "# HELP jwtgate_test_lookups_total Lookups by outcome.",
            "# TYPE jwtgate_test_lookups_total counter",
            "jwtgate_test_lookups_total{outcome=\"hit\"} 1",
            "# TYPE jwtgate_test_duration_seconds histogram",
            "jwtgate_test_duration_seconds_bucket{le=\"0.000025\",door=\"grpc\"} 0",
            "jwtgate_test_duration_seconds_bucket{le=\"0.00005\",door=\"grpc\"} 1",
            "jwtgate_test_duration_seconds_count{door=\"grpc\"} 1",
            "jwtgate_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        let open = m.render(Format::OpenMetrics);
        assert!(open.contains("# TYPE jwtgate_test_lookups counter\n"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn a_group_is_registered_once_and_shared() {
        let m = Metrics::new();
        m.families::<Lookups>()
            .0
            .get_or_create(&OutcomeLabel { outcome: "hit" })
            .inc();
        m.families::<Lookups>()
            .0
            .get_or_create(&OutcomeLabel { outcome: "hit" })
            .inc();
        let text = m.render(Format::Classic);
        assert_eq!(text.matches("# TYPE jwtgate_test_lookups_total").count(), 1, "{text}");
        assert!(
            text.contains("jwtgate_test_lookups_total{outcome=\"hit\"} 2\n"),
            "{text}"
        );
    }
}
