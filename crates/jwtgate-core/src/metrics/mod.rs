//! Metrics for `/metrics`, on `prometheus-client` (the Prometheus org's crate), served in the
//! classic text format 0.0.4 (what `promtool check metrics` reads) or OpenMetrics on request.
//! Kept outside the gate so a config reload keeps the counts.
//!
//! What a check touches is resolved once: the counters of a config's label sets sit in a
//! [`DecisionCounters`] table indexed by route, provider and reason, each taken from its family
//! the first time it is counted; the check-duration histograms are fixed handles whose
//! observations are atomic adds ([`DurationHistogram`]; prometheus-client's own histogram
//! takes a lock per observation). A check never hashes a label set. Label values come only
//! from the config (route and provider names) and fixed sets (reasons, algorithms, outcomes).
//! Gauges that describe state (key sets, cache size, revocations) are set when scraped.

mod histogram;

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::ALGORITHMS;
use crate::rejection::{LABELS, Rejection};
pub use histogram::{CHECK_BUCKETS, DurationHistogram};

/// Which front door answered a check (the `door` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Envoy ext_authz over gRPC.
    Grpc,
    /// The HTTP door (Nginx, forward-auth, Envoy's HTTP mode).
    Http,
}

impl Door {
    /// The `door` label value: `grpc` or `http`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
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

    /// The format an `Accept` header asks for: OpenMetrics when it names it, else classic.
    pub fn from_accept(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Self::OpenMetrics
        } else {
            Self::Classic
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
    provider: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DryRunLabels {
    route: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    door: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerifiedLabels {
    provider: String,
    alg: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOutcomeLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntrospectionLabels {
    direction: &'static str,
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerOutcomeLabels {
    listener: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerReasonLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// A key store's fetch counters.
#[derive(Debug, Clone, Default)]
pub struct FetchCounters {
    /// Fetches that loaded a key set.
    pub success: Counter,
    /// Fetches that failed (the last good keys keep serving).
    pub failure: Counter,
}

/// One provider's introspection counters (`direction="consumed"`) and answer-cache lookups.
#[derive(Debug, Clone, Default)]
pub struct IntrospectionCounters {
    /// Calls answered `active: true`.
    pub active: Counter,
    /// Calls answered `active: false`.
    pub inactive: Counter,
    /// Calls that failed (down, slow, not RFC 7662).
    pub error: Counter,
    /// Checks answered from a kept answer.
    pub cache_hit: Counter,
    /// Checks that needed a call (or joined one in flight).
    pub cache_miss: Counter,
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

/// One provider's key set as a scrape reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetState {
    /// Provider name.
    pub provider: String,
    /// Keys in the set.
    pub keys: usize,
    /// Seconds since the last successful load, if any.
    pub age_seconds: Option<u64>,
    /// Unix time of the last successful load, if any.
    pub last_success_unix: Option<u64>,
    /// Served from the disk cache since no fetch has succeeded.
    pub restored: bool,
}

impl StateGauges {
    /// Sets every key-set gauge; providers no longer configured disappear.
    pub fn key_sets(&self, sets: &[KeySetState]) {
        self.key_set_keys.clear();
        self.key_set_age.clear();
        self.key_set_last_success.clear();
        self.key_set_restored.clear();
        for s in sets {
            let labels = ProviderLabels {
                provider: s.provider.clone(),
            };
            self.key_set_keys
                .get_or_create(&labels)
                .set(i64::try_from(s.keys).unwrap_or(i64::MAX));
            if let Some(age) = s.age_seconds {
                self.key_set_age.get_or_create(&labels).set(saturating_i64(age));
            }
            if let Some(at) = s.last_success_unix {
                self.key_set_last_success.get_or_create(&labels).set(saturating_i64(at));
            }
            self.key_set_restored.get_or_create(&labels).set(i64::from(s.restored));
        }
    }

    /// Sets the verified-token cache size.
    pub fn cache_entries(&self, entries: u64) {
        self.cache_entries.set(saturating_i64(entries));
    }

    /// Sets the live revocation counts, and whether the store takes writes and fans them out.
    pub fn revocations(&self, jti: usize, subject: usize, store_up: bool) {
        for (kind, n) in [("jti", jti), ("subject", subject)] {
            self.revocations
                .get_or_create(&KindLabels { kind })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.revocation_store_up.set(i64::from(store_up));
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Process-wide metrics: the registry and every family in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    dry_run: Family<DryRunLabels, Counter>,
    verified: Family<VerifiedLabels, Counter>,
    key_fetches: Family<ProviderOutcomeLabels, Counter>,
    config_reloads: Family<OutcomeLabels, Counter>,
    /// Hit, refused hit, miss.
    cache_lookups: [Counter; 3],
    /// By door (gRPC, HTTP), then decision (allow, deny).
    check_duration: [[DurationHistogram; 2]; 2],
    /// Finished spans the trace exporter lost: its queue was full or the collector refused.
    trace_spans_dropped: Counter,
    rate_limited: Family<RuleLabels, Counter>,
    rate_limit_store_errors: Counter,
    tls_reloads: Family<ListenerOutcomeLabels, Counter>,
    tls_handshakes: Family<ListenerOutcomeLabels, Counter>,
    connections: Family<ListenerLabels, Gauge>,
    connections_refused: Family<ListenerReasonLabels, Counter>,
    introspections: Family<IntrospectionLabels, Counter>,
    introspection_cache: Family<ProviderOutcomeLabels, Counter>,
    dpop_proofs: Family<ProviderOutcomeLabels, Counter>,
    /// The server runtime's worker threads (set once at start).
    worker_threads: Gauge,
    /// Set when scraped.
    pub state: StateGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, the fixed handles resolved.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "jwtgate_decisions",
            "Checks answered, by decision, reason, provider and route",
            decisions.clone(),
        );
        let check = Family::<CheckLabels, DurationHistogram>::default();
        registry.register(
            "jwtgate_check_duration_seconds",
            "Time from a check's arrival at a door to its answer",
            check.clone(),
        );
        let check_duration = [Door::Grpc, Door::Http].map(|door| {
            ["allow", "deny"].map(|decision| {
                check
                    .get_or_create(&CheckLabels {
                        door: door.label(),
                        decision,
                    })
                    .clone()
            })
        });
        let verified = Family::<VerifiedLabels, Counter>::default();
        registry.register(
            "jwtgate_tokens_verified",
            "Token signatures verified (cache hits excluded), by provider and algorithm",
            verified.clone(),
        );
        let key_fetches = Family::<ProviderOutcomeLabels, Counter>::default();
        registry.register(
            "jwtgate_key_fetches",
            "Key-set fetches, by provider and outcome",
            key_fetches.clone(),
        );
        let state = StateGauges::default();
        registry.register(
            "jwtgate_key_set_keys",
            "Keys in each provider's current key set",
            state.key_set_keys.clone(),
        );
        registry.register(
            "jwtgate_key_set_age_seconds",
            "Seconds since each provider's key set was last loaded",
            state.key_set_age.clone(),
        );
        registry.register(
            "jwtgate_key_set_last_success_timestamp_seconds",
            "Unix time of each provider's last successful key-set load",
            state.key_set_last_success.clone(),
        );
        registry.register(
            "jwtgate_key_set_restored",
            "Whether each provider serves the key set kept on disk because no fetch has succeeded since start (1) or not (0)",
            state.key_set_restored.clone(),
        );
        let lookups = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jwtgate_token_cache_lookups",
            "Verified-token cache lookups by outcome",
            lookups.clone(),
        );
        let cache_lookups =
            ["hit", "refused_hit", "miss"].map(|outcome| lookups.get_or_create(&OutcomeLabels { outcome }).clone());
        registry.register(
            "jwtgate_token_cache_entries",
            "Tokens in the verified-token cache",
            state.cache_entries.clone(),
        );
        registry.register(
            "jwtgate_revocations",
            "Live revocations, by kind",
            state.revocations.clone(),
        );
        registry.register(
            "jwtgate_revocation_store_up",
            "Whether the revocation store takes writes and fans them out (1) or not (0)",
            state.revocation_store_up.clone(),
        );
        let dry_run = Family::<DryRunLabels, Counter>::default();
        registry.register(
            "jwtgate_dry_run_denials",
            "Requests a dry-run route would have denied",
            dry_run.clone(),
        );
        let config_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jwtgate_config_reloads",
            "Config reloads, by outcome",
            config_reloads.clone(),
        );
        let rate_limited = Family::<RuleLabels, Counter>::default();
        registry.register(
            "jwtgate_rate_limited",
            "Requests refused by a rate-limit rule, by rule",
            rate_limited.clone(),
        );
        let rate_limit_store_errors = Counter::default();
        registry.register(
            "jwtgate_rate_limit_store_errors",
            "Checks the shared rate-limit store did not answer in time (on_store_error applied)",
            rate_limit_store_errors.clone(),
        );
        let trace_spans_dropped = Counter::default();
        registry.register(
            "jwtgate_trace_spans_dropped",
            "Finished spans not exported: the export queue was full or the collector failed",
            trace_spans_dropped.clone(),
        );
        let tls_reloads = Family::<ListenerOutcomeLabels, Counter>::default();
        registry.register(
            "jwtgate_tls_reloads",
            "Re-reads of a TLS listener's certificate files after they changed, by listener and outcome (a failure keeps the old certificate)",
            tls_reloads.clone(),
        );
        let tls_handshakes = Family::<ListenerOutcomeLabels, Counter>::default();
        registry.register(
            "jwtgate_tls_handshakes",
            "TLS handshakes on the listeners, by listener and outcome (success, failure, timeout)",
            tls_handshakes.clone(),
        );
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "jwtgate_connections",
            "Open connections on each listener (TLS handshakes in progress included)",
            connections.clone(),
        );
        let connections_refused = Family::<ListenerReasonLabels, Counter>::default();
        registry.register(
            "jwtgate_connections_refused",
            "Connections a listener closed or could not take, by listener and reason (max_connections: closed at accept, the listener's cap was reached; out_of_files: accept failed for want of file descriptors or memory, retried after a pause; header_timeout: no request head in time; idle_timeout: nothing read or written in time)",
            connections_refused.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("jwtgate_build_info", "The running jwtgate's version", build);
        let introspections = Family::<IntrospectionLabels, Counter>::default();
        registry.register(
            "jwtgate_introspections",
            "Token introspections (RFC 7662), by direction (served: asked of jwtgate; consumed: asked by jwtgate of a provider), provider and outcome",
            introspections.clone(),
        );
        let introspection_cache = Family::<ProviderOutcomeLabels, Counter>::default();
        registry.register(
            "jwtgate_introspection_cache_lookups",
            "Opaque-token checks answered from a kept introspection answer (hit) or not (miss), by provider",
            introspection_cache.clone(),
        );
        let dpop_proofs = Family::<ProviderOutcomeLabels, Counter>::default();
        registry.register(
            "jwtgate_dpop_proofs",
            "DPoP proofs (RFC 9449) checked, by provider and outcome (valid, or why refused)",
            dpop_proofs.clone(),
        );
        let worker_threads = Gauge::default();
        registry.register(
            "jwtgate_worker_threads",
            "Worker threads of the server's runtime: the CPUs the process may use (its CPU quota in a container, its affinity), or TOKIO_WORKER_THREADS",
            worker_threads.clone(),
        );
        Self {
            introspections,
            introspection_cache,
            dpop_proofs,
            worker_threads,
            registry,
            decisions,
            dry_run,
            verified,
            key_fetches,
            config_reloads,
            cache_lookups,
            check_duration,
            trace_spans_dropped,
            rate_limited,
            rate_limit_store_errors,
            tls_reloads,
            tls_handshakes,
            connections,
            connections_refused,
            state,
        }
    }

    /// Records how many worker threads the server's runtime runs.
    pub fn worker_threads(&self, workers: usize) {
        self.worker_threads.set(i64::try_from(workers).unwrap_or(i64::MAX));
    }

    /// Counts a re-read of `listener`'s TLS files (`listen.grpc_tls` → `grpc`).
    pub fn tls_reloaded(&self, listener: &'static str, applied: bool) {
        let outcome = if applied { "success" } else { "failure" };
        self.tls_reloads
            .get_or_create(&ListenerOutcomeLabels { listener, outcome })
            .inc();
    }

    /// The handshake counter of `listener` for `outcome` (`success`, `failure`, `timeout`).
    pub fn tls_handshakes(&self, listener: &'static str, outcome: &'static str) -> Counter {
        self.tls_handshakes
            .get_or_create(&ListenerOutcomeLabels { listener, outcome })
            .clone()
    }

    /// The open-connections gauge of `listener` (`grpc`, `http`, `admin`, `introspection`).
    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.connections.get_or_create(&ListenerLabels { listener }).clone()
    }

    /// The counter of connections `listener` closed or could not take, for `reason`.
    pub fn connections_refused(&self, listener: &'static str, reason: &'static str) -> Counter {
        self.connections_refused
            .get_or_create(&ListenerReasonLabels { listener, reason })
            .clone()
    }

    /// Counts an introspection answered by jwtgate (`direction="served"`): `outcome` is
    /// `active`, the refusal's label for an inactive token, or `unauthorized` for a caller that
    /// may not ask; `provider` is empty when no provider verified the token.
    pub fn introspection_served(&self, provider: &str, outcome: &'static str) {
        self.introspections
            .get_or_create(&IntrospectionLabels {
                direction: "served",
                provider: provider.to_owned(),
                outcome,
            })
            .inc();
    }

    /// `jwtgate_dpop_proofs_total` of `provider`, one counter per outcome in the order of
    /// [`crate::binding::ProofError::OUTCOMES`].
    pub fn dpop_counters(&self, provider: &str) -> Box<[Counter]> {
        crate::binding::ProofError::OUTCOMES
            .iter()
            .map(|outcome| {
                self.dpop_proofs
                    .get_or_create(&ProviderOutcomeLabels {
                        provider: provider.to_owned(),
                        outcome,
                    })
                    .clone()
            })
            .collect()
    }

    /// The consumed-introspection counters of `provider`: `outcome` `active`, `inactive` or
    /// `error`, and its answer-cache lookups.
    pub fn introspection_counters(&self, provider: &str) -> IntrospectionCounters {
        let call = |outcome| {
            self.introspections
                .get_or_create(&IntrospectionLabels {
                    direction: "consumed",
                    provider: provider.to_owned(),
                    outcome,
                })
                .clone()
        };
        let lookup = |outcome| {
            self.introspection_cache
                .get_or_create(&ProviderOutcomeLabels {
                    provider: provider.to_owned(),
                    outcome,
                })
                .clone()
        };
        IntrospectionCounters {
            active: call("active"),
            inactive: call("inactive"),
            error: call("error"),
            cache_hit: lookup("hit"),
            cache_miss: lookup("miss"),
        }
    }

    /// `jwtgate_trace_spans_dropped_total`, for the trace exporter to count into.
    pub fn trace_spans_dropped(&self) -> Counter {
        self.trace_spans_dropped.clone()
    }

    /// Counts a verified-token cache lookup.
    pub fn cache_lookup(&self, outcome: CacheOutcome) {
        let i = match outcome {
            CacheOutcome::Hit => 0,
            CacheOutcome::RefusedHit => 1,
            CacheOutcome::Miss => 2,
        };
        if let Some(c) = self.cache_lookups.get(i) {
            c.inc();
        }
    }

    /// Verified-token cache hits so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_lookups.first().map_or(0, Counter::get)
    }

    /// Records how long a door took to answer a check.
    pub fn check_answered(&self, door: Door, allowed: bool, took: Duration) {
        let door = match door {
            Door::Grpc => 0,
            Door::Http => 1,
        };
        if let Some(h) = self.check_duration.get(door).and_then(|d| d.get(usize::from(!allowed))) {
            h.observe(took);
        }
    }

    /// The fetch counters of one provider's key store.
    pub fn key_fetches(&self, provider: &str) -> FetchCounters {
        let counter = |outcome| {
            self.key_fetches
                .get_or_create(&ProviderOutcomeLabels {
                    provider: provider.to_owned(),
                    outcome,
                })
                .clone()
        };
        FetchCounters {
            success: counter("success"),
            failure: counter("failure"),
        }
    }

    /// Counts a config reload.
    pub fn config_reloaded(&self, applied: bool) {
        let outcome = if applied { "success" } else { "failure" };
        self.config_reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The handle table for one config's routes and providers (see [`DecisionCounters`]).
    pub fn decision_counters(&self, routes: Vec<String>, providers: Vec<String>, rules: &[String]) -> DecisionCounters {
        DecisionCounters {
            rate_limit_store_errors: self.rate_limit_store_errors.clone(),
            rate_limited: rules
                .iter()
                .map(|rule| {
                    self.rate_limited
                        .get_or_create(&RuleLabels { rule: rule.clone() })
                        .clone()
                })
                .collect(),
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

    /// The exposition of every metric in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut open = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut open, &self.registry);
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
    /// `jwtgate_rate_limited_total` by rule position.
    rate_limited: Box<[Counter]>,
    rate_limit_store_errors: Counter,
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

    /// Counts a refusal by the rate-limit rule at `rule` (its position in the config).
    pub fn rate_limited(&self, rule: usize) {
        if let Some(c) = self.rate_limited.get(rule) {
            c.inc();
        }
    }

    /// Counts a check the shared rate-limit store did not answer.
    pub fn rate_limit_store_error(&self) {
        self.rate_limit_store_errors.inc();
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
    fn classic_text_names_counter_families_for_their_samples() {
        let m = Metrics::new();
        let d = m.decision_counters(vec!["api".into()], vec!["corp".into()], &["per-user".into()]);
        d.allowed(Some(0), Some(0));
        d.denied(None, None, &Rejection::Expired);
        d.denied(None, None, &Rejection::Expired);
        d.dry_run_denial(0, &Rejection::MissingRole(vec![]));
        d.verified(0, Algorithm::ES256);
        m.cache_lookup(CacheOutcome::Hit);
        m.check_answered(Door::Grpc, true, Duration::from_micros(30));
        let text = m.render(Format::Classic);
        for line in [
            "# TYPE jwtgate_decisions_total counter",
            "jwtgate_decisions_total{decision=\"allow\",reason=\"\",provider=\"corp\",route=\"api\"} 1",
            "jwtgate_decisions_total{decision=\"deny\",reason=\"expired\",provider=\"\",route=\"\"} 2",
            "jwtgate_dry_run_denials_total{route=\"api\",reason=\"missing_role\"} 1",
            "jwtgate_tokens_verified_total{provider=\"corp\",alg=\"ES256\"} 1",
            "jwtgate_token_cache_lookups_total{outcome=\"hit\"} 1",
            "jwtgate_token_cache_lookups_total{outcome=\"miss\"} 0",
            "jwtgate_check_duration_seconds_bucket{le=\"0.000025\",door=\"grpc\",decision=\"allow\"} 0",
            "jwtgate_check_duration_seconds_bucket{le=\"0.00005\",door=\"grpc\",decision=\"allow\"} 1",
            "jwtgate_check_duration_seconds_count{door=\"grpc\",decision=\"allow\"} 1",
            "jwtgate_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(m.render(Format::OpenMetrics).ends_with("# EOF\n"));
        assert_eq!(m.cache_hits(), 1);
    }

    #[test]
    fn algorithm_names_follow_the_algorithm_list() {
        for (alg, name) in ALGORITHMS.iter().zip(ALGORITHM_NAMES) {
            assert_eq!(format!("{alg:?}"), name);
        }
    }
}
