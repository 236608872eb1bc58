//! One bench invocation: mint, pin, then measure each target `runs` times (targets interleaved,
//! the no-op first), and report medians.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::child::{Counters, ServerChild};
use super::door::{self, DoorClient};
use super::report::{CpuUse, KeyActivity, Measurement, Report, RssUse, Setup, Summary};
use super::runner::{self, Load, Window};
use super::serve::JwtgateSetup;
use super::tokens::{self, TokenSource, WARM_TOKENS};
use super::{Alg, Door, Mix, Target, fixture, os};

/// Everything a bench invocation needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Targets in the order measured.
    pub targets: Vec<Target>,
    /// Front door.
    pub door: Door,
    /// gRPC connections.
    pub connections: usize,
    /// Concurrent requests per connection.
    pub streams: usize,
    /// Measured time per run.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Fixed rate, requests/s; `None` for max rate.
    pub rate: Option<f64>,
    /// Token mix.
    pub mix: Mix,
    /// Signing algorithm.
    pub alg: Alg,
    /// Pin the server child to these CPUs (none: unpinned).
    pub server_cpu: Vec<usize>,
    /// Pin this process to this CPU (after minting).
    pub client_cpu: Option<usize>,
    /// Runs per target.
    pub runs: usize,
    /// Fresh tokens to pre-mint; `None` sizes the pool from the rate.
    pub fresh_pool: Option<usize>,
    /// Requests/s assumed when sizing the fresh pool for a max-rate run; `None` for
    /// [`default_expected_rate`].
    pub expected_rate: Option<f64>,
    /// Fixture key directory.
    pub keys_dir: PathBuf,
    /// jwtgate's log filter.
    pub server_log: String,
    /// jwtgate's `cache.max_entries`; `None` for the mix's own ([`Mix::cache_entries`]).
    pub cache_entries: Option<u64>,
    /// jwtgate's `telemetry.tracing` block (flow YAML); `None`: no tracing.
    pub tracing: Option<String>,
    /// jwtgate's `rate_limits` block (flow YAML); `None`: no rate limits.
    pub rate_limits: Option<String>,
    /// jwtgate's `redis.url`.
    pub redis_url: Option<String>,
    /// The bench binary, started again as the server child.
    pub exe: PathBuf,
}

impl Settings {
    fn check(&self) -> Result<(), String> {
        if self.targets.is_empty() {
            return Err("no target".into());
        }
        if self.connections == 0 || self.streams == 0 {
            return Err("--connections and --streams must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0s".into());
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err("--rate must be a positive number".into());
        }
        if self.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        if self.mix == Mix::RandomKid && self.alg == Alg::Hs256 {
            return Err("--mix random-kid needs a JWKS algorithm (RS256, ES256, EdDSA); HS256 has no kid".into());
        }
        Ok(())
    }

    /// Fresh tokens the run needs: (warmup + duration) × rate × the mix's fresh share, plus 1%.
    fn fresh_needed(&self) -> usize {
        let fraction = self.mix.fresh_fraction();
        if fraction == 0.0 {
            return 0;
        }
        if let Some(n) = self.fresh_pool {
            return n.max(1);
        }
        let rate = self
            .rate
            .or(self.expected_rate)
            .unwrap_or(default_expected_rate(self.mix, self.alg));
        let n = (self.warmup + self.duration).as_secs_f64() * rate * fraction * 1.01;
        (n.ceil() as usize).max(1)
    }
}

/// A fixed-rate run whose send lag p99 is above this (µs) is flagged.
const LAG_WARNING_US: f64 = 1_000.0;

/// How often the server's RSS is sampled during measurement.
const RSS_EVERY: Duration = Duration::from_secs(1);

/// The rate a max-rate run is assumed to reach, to size its fresh-token pool: cold asymmetric
/// runs are bound by signature verification (RS256, the cheapest of them to verify, reaches
/// ~22,000/s on one server core of the machine these defaults come from), mixed and HS256 runs
/// by the gRPC stack (~55,000/s).
pub fn default_expected_rate(mix: Mix, alg: Alg) -> f64 {
    if mix == Mix::Cold && alg != Alg::Hs256 {
        25_000.0
    } else {
        60_000.0
    }
}

/// Runs the bench. Blocks; builds its own runtime (after pinning, so it gets one worker per
/// client CPU).
pub fn run(settings: &Settings) -> Result<Report, String> {
    let mut s = settings.clone();
    s.check()?;
    let mut notes = Vec::new();
    if (!s.server_cpu.is_empty() || s.client_cpu.is_some()) && !os::have_taskset() {
        notes.push("taskset not found: server and client ran unpinned".into());
        eprintln!("warning: taskset not found; running unpinned");
        s.server_cpu.clear();
        s.client_cpu = None;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    let minted = Instant::now();
    let key = fixture::signing_key(&s.keys_dir, s.alg)?;
    let warm = if matches!(s.mix, Mix::Warm | Mix::Mixed) {
        tokens::mint_pool(&key, s.alg, WARM_TOKENS, cpus)?
    } else {
        Vec::new()
    };
    let need = s.fresh_needed();
    if need > 10_000 {
        eprintln!("minting {need} fresh {} tokens on {cpus} thread(s)…", s.alg.name());
    }
    let fresh = tokens::mint_pool(&key, s.alg, need, cpus)?;
    let mint_s = minted.elapsed().as_secs_f64();
    let tokens = Arc::new(TokenSource::new(s.mix, s.alg, &key, warm, fresh)?);

    let unpinned = s.client_cpu.and_then(|_| os::own_cpus());
    let server_cpus = server_cpus(&s, unpinned.as_deref());
    let client_cpus = match s.client_cpu {
        Some(cpu) => match os::pin_self(cpu) {
            Ok(()) => 1,
            Err(e) => {
                notes.push(format!("could not pin the client: {e}"));
                s.client_cpu = None;
                cpus
            }
        },
        None => cpus,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_cpus)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let setup = JwtgateSetup {
        cache_entries: s.cache_entries.unwrap_or(s.mix.cache_entries()),
        jwks_over_http: s.mix.jwks_over_http(),
        keys_dir: s.keys_dir.clone(),
        log: s.server_log.clone(),
        tracing: s.tracing.clone(),
        rate_limits: s.rate_limits.clone(),
        redis_url: s.redis_url.clone(),
    };
    let mut runs: Vec<(Target, Vec<Measurement>)> = s.targets.iter().map(|t| (*t, Vec::new())).collect();
    rt.block_on(async {
        for round in 0..s.runs {
            for (target, measured) in &mut runs {
                eprintln!("run {}/{}: {}…", round + 1, s.runs, super::report::label(target));
                measured.push(measure(&s, *target, server_cpus.as_deref(), &setup, &tokens).await?);
            }
        }
        Ok::<_, String>(())
    })?;

    let summaries: Vec<Summary> = runs.into_iter().map(|(t, m)| Summary::of(t, m)).collect();
    for sum in &summaries {
        if let Some(lag) = sum.send_lag_us
            && lag.p99 > LAG_WARNING_US
        {
            notes.push(format!(
                "the client could not keep the schedule during the {} runs (send lag p99 {:.0} µs): \
                 those latencies include the client's own delay; lower --rate",
                super::report::label(&sum.target),
                lag.p99
            ));
        }
        // At a fixed rate the pacer keeps the client core busy by design; the lag above tells.
        if let Some(c) = sum.client_cpu
            && s.rate.is_none()
            && c.cores > 0.9 * client_cpus as f64
        {
            notes.push(format!(
                "the client was CPU-bound during the {} runs ({:.2} of {client_cpus} CPU): that server may have had \
                 capacity left, so its throughput is a lower bound; compare server CPU per request",
                super::report::label(&sum.target),
                c.cores
            ));
        }
        let reused: u64 = sum.runs.iter().map(|r| r.fresh_tokens_reused).sum();
        if reused > 0 && sum.target == Target::Jwtgate {
            notes.push(format!(
                "the fresh-token pool ({}) ran dry: {reused} fresh tokens were sent again over {} run(s){}; raise --expected-rate or --fresh-pool",
                tokens.fresh_pool(),
                s.runs,
                if setup.cache_entries == 0 {
                    " (harmless with the cache off: each was verified in full)"
                } else {
                    " (those were cache hits, not misses)"
                }
            ));
        }
    }
    if s.mix == Mix::RandomKid {
        notes.push(
            "random-kid: jwtgate fetched keys from a loopback JWKS server with min_refetch_interval 30s; \
             an unknown kid triggers at most one refetch per 30s, every other such request is refused without a fetch"
                .into(),
        );
    }
    let report_setup = Setup {
        door: s.door,
        mix: s.mix,
        alg: s.alg,
        connections: s.connections,
        streams: s.streams,
        rate: s.rate,
        warmup_s: s.warmup.as_secs_f64(),
        duration_s: s.duration.as_secs_f64(),
        runs: s.runs,
        server_cpu: s.server_cpu.clone(),
        client_cpu: s.client_cpu,
        cache_entries: setup.cache_entries,
        server_log: s.server_log.clone(),
        tracing: s.tracing.clone(),
        rate_limits: s.rate_limits.clone(),
        fresh_pool: tokens.fresh_pool(),
        mint_s,
    };
    Ok(Report::new(report_setup, summaries, notes))
}

/// One run against one freshly started server.
async fn measure(
    s: &Settings,
    target: Target,
    server_cpus: Option<&str>,
    setup: &JwtgateSetup,
    tokens: &Arc<TokenSource>,
) -> Result<Measurement, String> {
    tokens.rewind();
    let server = ServerChild::spawn(&s.exe, target, server_cpus, setup)?;
    let admin = door::admin_client()?;
    server.wait_ready(&admin).await?;
    let load = Load {
        connections: s.connections,
        streams: s.streams,
        rate: s.rate,
    };
    let addr = match s.door {
        Door::Grpc => server.grpc,
        Door::Http | Door::Nginx | Door::ForwardAuth => server.http,
    };
    let client = DoorClient::connect(s.door, addr, s.connections, load.concurrency()).await?;
    let before = server.counters(&admin).await;

    let window = Window::starting_now(s.warmup, s.duration);
    let (server_pid, own_pid) = (server.pid(), std::process::id());
    let sampler = tokio::spawn(async move {
        let sample = || (os::cpu_time(server_pid), os::cpu_time(own_pid));
        tokio::time::sleep_until(window.measure_from.into()).await;
        let from = sample();
        let mut rss: Vec<u64> = os::rss_kib(server_pid).into_iter().collect();
        let mut next = window.measure_from + RSS_EVERY;
        while next < window.end {
            tokio::time::sleep_until(next.into()).await;
            rss.extend(os::rss_kib(server_pid));
            next += RSS_EVERY;
        }
        tokio::time::sleep_until(window.end.into()).await;
        let to = sample();
        rss.extend(os::rss_kib(server_pid));
        (from, to, rss)
    });
    // The no-op allows everything without looking: only jwtgate's answers are judged.
    let expect = (target == Target::Jwtgate).then(|| s.mix.expects_allow());
    let tally = runner::drive(client, tokens.clone(), expect, load, window).await?;
    let cpu = sampler.await.ok();
    let after = server.counters(&admin).await;
    server.stop().await;

    let mut m = Measurement::of(target, &tally, window.measured());
    let wall = window.measured();
    if let Some(((s0, c0), (s1, c1), rss)) = cpu {
        let used = |a: Option<Duration>, b: Option<Duration>| Some(CpuUse::of(b?.saturating_sub(a?), wall, m.requests));
        m.server_cpu = used(s0, s1);
        m.client_cpu = used(c0, c1);
        m.server_rss = RssUse::of(&rss);
    }
    if target == Target::Jwtgate {
        m.keys = Some(key_activity(before, after));
    }
    m.fresh_tokens_reused = tokens.reused();
    Ok(m)
}

/// The server's CPUs: the one asked for; else, when the client is pinned, every CPU this
/// process had before pinning (the child would inherit the client's CPU otherwise).
fn server_cpus(s: &Settings, unpinned: Option<&str>) -> Option<String> {
    if !s.server_cpu.is_empty() {
        return Some(os::cpu_list(&s.server_cpu));
    }
    s.client_cpu.and(unpinned.map(str::to_owned))
}

fn key_activity(before: Counters, after: Counters) -> KeyActivity {
    let diff = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    KeyActivity {
        fetches: diff(before.fetches, after.fetches),
        jwks_hits: diff(before.jwks_hits, after.jwks_hits),
    }
}
