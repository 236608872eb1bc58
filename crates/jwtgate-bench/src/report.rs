//! Results: one [`Measurement`] per run of a target, their medians per target ([`Summary`]), and
//! jwtgate against the no-op baseline ([`Comparison`]); as a text table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::runner::Tally;
use super::{Alg, Door, Mix, Target};

/// How the command line spells `v` (e.g. `bad-signature`).
pub fn label<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_owned())
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let q = |q: f64| h.value_at_quantile(q) as f64;
        Self {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64,
        }
    }

    fn median(all: &[Self]) -> Self {
        Self {
            p50: median(all.iter().map(|l| l.p50)),
            p90: median(all.iter().map(|l| l.p90)),
            p99: median(all.iter().map(|l| l.p99)),
            p999: median(all.iter().map(|l| l.p999)),
            max: median(all.iter().map(|l| l.max)),
        }
    }
}

/// Requests that did not get the expected answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    /// All of them.
    pub total: u64,
    /// No allow-or-deny answer (transport errors, gRPC error statuses, other HTTP statuses), by kind.
    pub failed: BTreeMap<String, u64>,
    /// Denied although an allow was expected.
    pub denied_expected_allow: u64,
    /// Allowed although a denial was expected.
    pub allowed_expected_deny: u64,
    /// Fixed rate: scheduled but never sent (the backlog outlived the run by 2s).
    pub unsent: u64,
}

impl Errors {
    fn add(&mut self, other: &Self) {
        self.total += other.total;
        for (kind, n) in &other.failed {
            *self.failed.entry(kind.clone()).or_default() += n;
        }
        self.denied_expected_allow += other.denied_expected_allow;
        self.allowed_expected_deny += other.allowed_expected_deny;
        self.unsent += other.unsent;
    }
}

/// CPU a process used during the measured window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// Cores busy on average (CPU time / wall time).
    pub cores: f64,
    /// CPU time per measured request, µs.
    pub us_per_request: f64,
}

impl CpuUse {
    /// From CPU time used over `wall` for `requests`.
    pub fn of(cpu: Duration, wall: Duration, requests: u64) -> Self {
        Self {
            cores: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
            us_per_request: cpu.as_secs_f64() * 1e6 / (requests.max(1) as f64),
        }
    }
}

/// The server's resident memory during the measured window, sampled every second.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RssUse {
    /// When measurement began, MiB.
    pub start_mib: f64,
    /// When it ended, MiB.
    pub end_mib: f64,
    /// The largest sample, MiB.
    pub max_mib: f64,
}

impl RssUse {
    /// From samples in KiB, in time order; `None` without any.
    pub fn of(samples_kib: &[u64]) -> Option<Self> {
        let mib = |k: u64| k as f64 / 1024.0;
        Some(Self {
            start_mib: mib(*samples_kib.first()?),
            end_mib: mib(*samples_kib.last()?),
            max_mib: mib(*samples_kib.iter().max()?),
        })
    }
}

/// What jwtgate's key machinery did during a run (warmup and measurement).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KeyActivity {
    /// Increase of `/readyz` `providers[bench].fetches`.
    pub fetches: Option<u64>,
    /// Requests the loopback JWKS server answered.
    pub jwks_hits: Option<u64>,
}

/// One run of one target.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Which server.
    pub target: Target,
    /// Measured requests.
    pub requests: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Requests per second.
    pub throughput: f64,
    /// Latency, µs (fixed rate: from the intended send time).
    pub latency_us: Latency,
    /// Fixed rate: how late the generator sent, µs.
    pub send_lag_us: Option<Latency>,
    /// Wrong or missing answers.
    pub errors: Errors,
    /// The server process's CPU (unknown without `/proc`).
    pub server_cpu: Option<CpuUse>,
    /// The bench process's CPU.
    pub client_cpu: Option<CpuUse>,
    /// The server process's resident memory (unknown without `/proc`).
    pub server_rss: Option<RssUse>,
    /// Key fetches (jwtgate only).
    pub keys: Option<KeyActivity>,
    /// "Fresh" tokens sent a second time because the pre-minted pool ran dry.
    pub fresh_tokens_reused: u64,
}

impl Measurement {
    /// Summarises a tally over `measured` seconds.
    pub fn of(target: Target, tally: &Tally, measured: Duration) -> Self {
        let seconds = measured.as_secs_f64();
        Self {
            target,
            requests: tally.requests,
            seconds,
            throughput: tally.requests as f64 / seconds.max(1e-9),
            latency_us: Latency::of(&tally.latency),
            send_lag_us: tally.send_lag.as_ref().map(Latency::of),
            errors: Errors {
                total: tally.errors(),
                failed: tally.failed.clone(),
                denied_expected_allow: tally.unexpected_deny,
                allowed_expected_deny: tally.unexpected_allow,
                unsent: tally.unsent,
            },
            server_cpu: None,
            client_cpu: None,
            server_rss: None,
            keys: None,
            fresh_tokens_reused: 0,
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn median_cpu(all: &[Measurement], pick: impl Fn(&Measurement) -> Option<CpuUse>) -> Option<CpuUse> {
    let cpus: Vec<CpuUse> = all.iter().filter_map(pick).collect();
    (!cpus.is_empty()).then(|| CpuUse {
        cores: median(cpus.iter().map(|c| c.cores)),
        us_per_request: median(cpus.iter().map(|c| c.us_per_request)),
    })
}

/// Every run of one target and the median of each figure across them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Which server.
    pub target: Target,
    /// Median requests per second.
    pub throughput: f64,
    /// Median of each percentile.
    pub latency_us: Latency,
    /// Median of each send-lag percentile (fixed rate).
    pub send_lag_us: Option<Latency>,
    /// Median server CPU.
    pub server_cpu: Option<CpuUse>,
    /// Median client CPU.
    pub client_cpu: Option<CpuUse>,
    /// Errors summed over all runs.
    pub errors: Errors,
    /// Requests summed over all runs.
    pub requests: u64,
    /// The runs.
    pub runs: Vec<Measurement>,
}

impl Summary {
    /// Medians over `runs` (all of one target).
    pub fn of(target: Target, runs: Vec<Measurement>) -> Self {
        let mut errors = Errors::default();
        for r in &runs {
            errors.add(&r.errors);
        }
        let lags: Vec<Latency> = runs.iter().filter_map(|r| r.send_lag_us).collect();
        Self {
            target,
            throughput: median(runs.iter().map(|r| r.throughput)),
            latency_us: Latency::median(&runs.iter().map(|r| r.latency_us).collect::<Vec<_>>()),
            send_lag_us: (!lags.is_empty()).then(|| Latency::median(&lags)),
            server_cpu: median_cpu(&runs, |r| r.server_cpu),
            client_cpu: median_cpu(&runs, |r| r.client_cpu),
            errors,
            requests: runs.iter().map(|r| r.requests).sum(),
            runs,
        }
    }
}

/// jwtgate against the no-op baseline (medians).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Comparison {
    /// jwtgate req/s ÷ noop req/s.
    pub throughput_ratio: f64,
    /// jwtgate's time per request ÷ noop's (1/throughput each): how many times the cost.
    pub cost_ratio: f64,
    /// 1/throughput difference, µs: what deciding adds per request at saturation.
    pub added_us_per_request: f64,
    /// Server CPU µs per request, jwtgate minus noop.
    pub added_server_cpu_us_per_request: Option<f64>,
    /// Server CPU µs per request, jwtgate ÷ noop: the cost ratio whichever side saturated.
    pub server_cpu_ratio: Option<f64>,
    /// p50 latency difference, µs.
    pub added_p50_us: f64,
    /// p99 latency difference, µs.
    pub added_p99_us: f64,
}

impl Comparison {
    /// jwtgate's summary against the no-op's.
    pub fn of(noop: &Summary, jwtgate: &Summary) -> Self {
        let per = |s: &Summary| 1e6 / s.throughput.max(1e-9);
        Self {
            throughput_ratio: jwtgate.throughput / noop.throughput.max(1e-9),
            cost_ratio: per(jwtgate) / per(noop),
            added_us_per_request: per(jwtgate) - per(noop),
            added_server_cpu_us_per_request: match (jwtgate.server_cpu, noop.server_cpu) {
                (Some(j), Some(n)) => Some(j.us_per_request - n.us_per_request),
                _ => None,
            },
            server_cpu_ratio: match (jwtgate.server_cpu, noop.server_cpu) {
                (Some(j), Some(n)) => Some(j.us_per_request / n.us_per_request.max(1e-9)),
                _ => None,
            },
            added_p50_us: jwtgate.latency_us.p50 - noop.latency_us.p50,
            added_p99_us: jwtgate.latency_us.p99 - noop.latency_us.p99,
        }
    }
}

/// How the run was set up, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Front door.
    pub door: Door,
    /// Token mix.
    pub mix: Mix,
    /// Signing algorithm.
    pub alg: Alg,
    /// gRPC connections.
    pub connections: usize,
    /// Concurrent requests per connection.
    pub streams: usize,
    /// Fixed rate, requests/s; `None` is max rate.
    pub rate: Option<f64>,
    /// Warmup seconds per run.
    pub warmup_s: f64,
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Runs per target.
    pub runs: usize,
    /// CPUs the server was pinned to (none: unpinned).
    pub server_cpu: Vec<usize>,
    /// CPU the client was pinned to.
    pub client_cpu: Option<usize>,
    /// jwtgate's `cache.max_entries`.
    pub cache_entries: u64,
    /// jwtgate's log filter.
    pub server_log: String,
    /// jwtgate's `telemetry.tracing` block, if any.
    pub tracing: Option<String>,
    /// jwtgate's `rate_limits` block, if any.
    pub rate_limits: Option<String>,
    /// Pre-minted fresh tokens.
    pub fresh_pool: usize,
    /// Seconds spent minting before the run.
    pub mint_s: f64,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Settings.
    pub setup: Setup,
    /// One per target, in the order measured.
    pub targets: Vec<Summary>,
    /// jwtgate against noop, when both ran.
    pub comparison: Option<Comparison>,
    /// Warnings and remarks.
    pub notes: Vec<String>,
}

impl Report {
    /// Builds the report and its comparison.
    pub fn new(setup: Setup, targets: Vec<Summary>, notes: Vec<String>) -> Self {
        let find = |t| targets.iter().find(|s| s.target == t);
        let comparison = match (find(Target::Noop), find(Target::Jwtgate)) {
            (Some(n), Some(j)) => Some(Comparison::of(n, j)),
            _ => None,
        };
        Self {
            setup,
            targets,
            comparison,
            notes,
        }
    }

    /// The human-readable table.
    pub fn text(&self) -> String {
        let s = &self.setup;
        let mut out = String::new();
        let rate = s
            .rate
            .map_or("max rate".to_owned(), |r| format!("fixed rate {r:.0} req/s"));
        let _ = writeln!(
            out,
            "door {}, mix {}, alg {}, {} connection(s) × {} streams, {rate}, warmup {}s + {}s measured, {} run(s) per target (medians)",
            label(&s.door),
            label(&s.mix),
            s.alg.name(),
            s.connections,
            s.streams,
            s.warmup_s,
            s.duration_s,
            s.runs
        );
        let pin = |c: Option<usize>| c.map_or("any CPU".to_owned(), |c| format!("CPU {c}"));
        let _ = writeln!(
            out,
            "server on {}, client on {}; jwtgate cache.max_entries {}, log {}",
            match s.server_cpu.as_slice() {
                [] => "any CPU".to_owned(),
                [one] => format!("CPU {one}"),
                many => format!("CPUs {}", super::os::cpu_list(many)),
            },
            pin(s.client_cpu),
            s.cache_entries,
            s.server_log
        );
        if let Some(tracing) = &s.tracing {
            let _ = writeln!(out, "jwtgate telemetry.tracing {tracing}");
        }
        if let Some(rate_limits) = &s.rate_limits {
            let _ = writeln!(out, "jwtgate rate_limits {rate_limits}");
        }
        if s.fresh_pool > 0 {
            let _ = writeln!(out, "{} fresh tokens pre-minted in {:.1}s", s.fresh_pool, s.mint_s);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>10} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7}  {:<20} {:<20}",
            "target",
            "req/s",
            "requests",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "errors",
            "server CPU",
            "client CPU"
        );
        let cpu = |c: Option<CpuUse>| {
            c.map_or("-".to_owned(), |c| {
                format!("{:.2} ({:.1} µs/req)", c.cores, c.us_per_request)
            })
        };
        for t in &self.targets {
            let l = t.latency_us;
            let _ = writeln!(
                out,
                "{:<8} {:>9.0} {:>10} {:>7.0} {:>7.0} {:>7.0} {:>8.0} {:>7.0} {:>7}  {:<20} {:<20}",
                label(&t.target),
                t.throughput,
                t.requests,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                t.errors.total,
                cpu(t.server_cpu),
                cpu(t.client_cpu)
            );
        }
        for t in &self.targets {
            if let Some(lag) = t.send_lag_us {
                let _ = writeln!(
                    out,
                    "{}: generator send lag p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
                    label(&t.target),
                    lag.p50,
                    lag.p99,
                    lag.max
                );
            }
            let e = &t.errors;
            if e.total > 0 {
                let mut kinds: Vec<String> = e.failed.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                if e.denied_expected_allow > 0 {
                    kinds.push(format!("denied (allow expected): {}", e.denied_expected_allow));
                }
                if e.allowed_expected_deny > 0 {
                    kinds.push(format!("allowed (denial expected): {}", e.allowed_expected_deny));
                }
                if e.unsent > 0 {
                    kinds.push(format!("never sent (backlog): {}", e.unsent));
                }
                let _ = writeln!(out, "{} errors: {}", label(&t.target), kinds.join(", "));
            }
            for (i, r) in t.runs.iter().enumerate() {
                if let Some(m) = r.server_rss {
                    let _ = writeln!(
                        out,
                        "{} run {}: server RSS {:.1} MiB when measurement began, {:.1} MiB at its end, max {:.1} MiB",
                        label(&t.target),
                        i + 1,
                        m.start_mib,
                        m.end_mib,
                        m.max_mib
                    );
                }
                if let Some(k) = r.keys
                    && (k.fetches.is_some_and(|f| f > 0) || k.jwks_hits.is_some())
                {
                    let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                    let _ = writeln!(
                        out,
                        "{} run {}: key-set fetches during warmup + measurement: {} (/readyz), JWKS server hits: {}",
                        label(&t.target),
                        i + 1,
                        n(k.fetches),
                        n(k.jwks_hits)
                    );
                }
            }
        }
        if let Some(c) = &self.comparison {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "jwtgate / noop: throughput {:.2}×, cost per request {:.2}× ({:+.1} µs per request at saturation)",
                c.throughput_ratio, c.cost_ratio, c.added_us_per_request
            );
            if let (Some(added), Some(ratio)) = (c.added_server_cpu_us_per_request, c.server_cpu_ratio) {
                let _ = writeln!(out, "server CPU per request: {ratio:.2}× ({added:+.1} µs)");
            }
            let _ = writeln!(
                out,
                "latency: p50 {:+.0} µs, p99 {:+.0} µs",
                c.added_p50_us, c.added_p99_us
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    fn summary(target: Target, throughput: f64) -> Summary {
        let m = Measurement {
            target,
            requests: 1,
            seconds: 1.0,
            throughput,
            latency_us: Latency::default(),
            send_lag_us: None,
            errors: Errors::default(),
            server_cpu: None,
            client_cpu: None,
            server_rss: None,
            keys: None,
            fresh_tokens_reused: 0,
        };
        Summary::of(target, vec![m])
    }

    #[test]
    fn comparison_turns_throughput_into_cost_per_request() {
        let c = Comparison::of(&summary(Target::Noop, 50_000.0), &summary(Target::Jwtgate, 25_000.0));
        assert!((c.throughput_ratio - 0.5).abs() < 1e-9);
        assert!((c.cost_ratio - 2.0).abs() < 1e-9);
        assert!((c.added_us_per_request - 20.0).abs() < 1e-9);
    }
}
