//! `jwtgate-bench soak`: load through the gRPC door of a real `jwtgate serve` for a set time while
//! everything around it fails on a schedule, counting every check that did not get the right
//! answer.
//!
//! Around the replica: an issuer ([`issuer`]) that rotates its signing key unannounced every
//! `--rotate-every` and goes down for `--outage` every `--outage-every`; the config file
//! rewritten and `SIGHUP` sent every `--reload-every`; the Redis holding the revocations
//! ([`processes::Redis`]) killed and started again every `--redis-restart-every`; a token revoked
//! every `--revoke-every` (by `jti` and by subject cut-off in turn), retried until acknowledged.
//! During every outage a second replica is started with the same key cache and must be ready and
//! allow the current tokens (a restart during an issuer outage). The load ([`load`]) sends valid
//! tokens, which must be allowed, and revoked ones, which must be denied; a failed check is any
//! other denial or any RPC error. The replica's RSS is sampled every second.
//!
//! The soak passes with 0 failed checks, 0 revoked tokens allowed and every fault carried out.

pub mod issuer;
pub mod load;
pub mod processes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jwtgate::admin::client::{Client as AdminClient, ClientError, ClientTls};
use jwtgate::admin::pb;
use serde::Serialize;
use tokio::sync::Mutex;

use self::issuer::{ISSUER, Issuer};
use self::load::{Door, Tally, Tokens};
use self::processes::{Jwtgate, Listen, Redis};
use crate::report::RssUse;

/// `aud` of the soak's tokens.
pub const AUDIENCE: &str = "api";
/// The static admin token the soak's replicas accept (only ever on loopback).
const ADMIN_TOKEN: &str = "soak-admin-token-0123456789";
/// Valid tokens minted per key.
const POOL: usize = 64;
/// How long a rotation waits for the replica's first fetch of the new key set before an outage
/// may begin.
const ROTATION_FETCH_WAIT: Duration = Duration::from_secs(2);
/// How long Redis stays dead on a restart.
const REDIS_DOWN: Duration = Duration::from_secs(2);
/// How long a revocation is retried before the soak counts it as lost.
const REVOKE_PATIENCE: Duration = Duration::from_secs(30);
/// Checks sent through the replica started during an outage.
const RESTART_CHECKS: u64 = 200;

/// The soak's settings (`jwtgate-bench soak …`).
#[derive(Debug, Clone, clap::Args)]
pub struct SoakSettings {
    /// How long the load runs.
    #[arg(long, default_value = "10m", value_parser = jwtgate_core::config::duration::parse)]
    pub duration: Duration,
    /// Checks per second, in all (fixed rate).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Concurrent workers sending them.
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// The issuer rotates its signing key (unannounced) this often, unless it is down.
    #[arg(long, default_value = "30s", value_parser = jwtgate_core::config::duration::parse)]
    pub rotate_every: Duration,
    /// How long each issuer outage lasts.
    #[arg(long, default_value = "20s", value_parser = jwtgate_core::config::duration::parse)]
    pub outage: Duration,
    /// An outage starts this often (the first after half of it).
    #[arg(long, default_value = "2m", value_parser = jwtgate_core::config::duration::parse)]
    pub outage_every: Duration,
    /// The config is rewritten and `SIGHUP` sent this often.
    #[arg(long, default_value = "10s", value_parser = jwtgate_core::config::duration::parse)]
    pub reload_every: Duration,
    /// Redis is killed and started again this often.
    #[arg(long, default_value = "90s", value_parser = jwtgate_core::config::duration::parse)]
    pub redis_restart_every: Duration,
    /// A token is revoked this often.
    #[arg(long, default_value = "5s", value_parser = jwtgate_core::config::duration::parse)]
    pub revoke_every: Duration,
    /// The jwtgate binary [default: `jwtgate` beside this one].
    #[arg(long)]
    pub jwtgate: Option<PathBuf>,
    /// The redis-server binary [default: `$JWTGATE_REDIS_SERVER`, else `redis-server` on PATH].
    #[arg(long)]
    pub redis_server: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl SoakSettings {
    fn check(&self) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0) || self.workers == 0 {
            return Err("--rate must be positive and --workers at least 1".into());
        }
        for (flag, d) in [
            ("--duration", self.duration),
            ("--rotate-every", self.rotate_every),
            ("--outage", self.outage),
            ("--outage-every", self.outage_every),
            ("--reload-every", self.reload_every),
            ("--redis-restart-every", self.redis_restart_every),
            ("--revoke-every", self.revoke_every),
        ] {
            if d.is_zero() {
                return Err(format!("{flag} must be more than 0s"));
            }
        }
        if self.outage >= self.outage_every {
            return Err("--outage must be shorter than --outage-every".into());
        }
        Ok(())
    }

    fn jwtgate_binary(&self, exe: &Path) -> PathBuf {
        self.jwtgate
            .clone()
            .unwrap_or_else(|| exe.with_file_name(format!("jwtgate{}", std::env::consts::EXE_SUFFIX)))
    }

    fn redis_binary(&self) -> PathBuf {
        self.redis_server
            .clone()
            .or_else(|| {
                std::env::var_os("JWTGATE_REDIS_SERVER")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("redis-server"))
    }
}

/// What the faults came to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Faults {
    /// Unannounced key rotations.
    pub rotations: u64,
    /// Issuer outages.
    pub outages: u64,
    /// Config rewrites + `SIGHUP`.
    pub reloads_sent: u64,
    /// `jwtgate_config_reloads_total{outcome="success"}` at the end (a rewrite and its `SIGHUP`
    /// are two reloads: the file watcher sees the change, the signal asks again).
    pub reloads_applied: u64,
    /// `jwtgate_config_reloads_total{outcome="failure"}` at the end.
    pub reloads_refused: u64,
    /// Redis kills and restarts.
    pub redis_restarts: u64,
    /// Revocations acknowledged.
    pub revocations: u64,
    /// Revocation attempts refused while Redis was down, and retried.
    pub revocation_retries: u64,
    /// Revocations never acknowledged within 30 s.
    pub revocations_lost: u64,
    /// JWKS requests the issuer answered.
    pub jwks_fetches: u64,
    /// Replicas started during an outage (each must be ready with `state: restored` and allow).
    pub restarted_replicas: u64,
    /// How long the slowest of them took to be ready, ms.
    pub restarted_ready_ms: u64,
    /// Their key state as `/readyz` said, one per start.
    pub restarted_states: Vec<String>,
    /// Faults the soak could not carry out (each fails the soak).
    pub problems: Vec<String>,
}

/// The soak's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Seconds of load.
    pub seconds: f64,
    /// Checks per second asked for.
    pub rate: f64,
    /// Every check through the replica under test and the restarted ones.
    pub tally: Tally,
    /// What was done to them.
    pub faults: Faults,
    /// The replica's RSS over the run.
    pub rss: Option<RssUse>,
    /// RSS samples, MiB, one per tenth of the run (flat when nothing leaks).
    pub rss_tenths_mib: Vec<f64>,
}

impl SoakReport {
    /// Whether nothing was lost: no failed check, no revoked token allowed, every fault done.
    pub fn passed(&self) -> bool {
        self.tally.failed() == 0
            && self.tally.revoked_allowed == 0
            && self.faults.revocations_lost == 0
            && self.faults.problems.is_empty()
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let t = &self.tally;
        let f = &self.faults;
        let mut out = format!(
            "soak: {:.0}s at {:.0} checks/s through the gRPC door: {}\n\
             checks {}: allowed {}, revoked denied {}; FAILED {} (valid denied {}, no answer {}); REVOKED ALLOWED {}\n\
             faults: {} rotations, {} outages ({} JWKS fetches answered), {} reloads sent ({} applied, {} refused), \
             {} Redis restarts, {} revocations ({} retried while Redis was down, {} lost)\n\
             replicas started during an outage: {} (slowest ready in {} ms; key state {})\n",
            self.seconds,
            self.rate,
            if self.passed() { "PASSED" } else { "FAILED" },
            t.checks,
            t.allowed,
            t.revoked_denied,
            t.failed(),
            t.unintended_denials.values().sum::<u64>(),
            t.errors.values().sum::<u64>(),
            t.revoked_allowed,
            f.rotations,
            f.outages,
            f.jwks_fetches,
            f.reloads_sent,
            f.reloads_applied,
            f.reloads_refused,
            f.redis_restarts,
            f.revocations,
            f.revocation_retries,
            f.revocations_lost,
            f.restarted_replicas,
            f.restarted_ready_ms,
            if f.restarted_states.is_empty() {
                "-".to_owned()
            } else {
                f.restarted_states.join(", ")
            },
        );
        if let Some(rss) = &self.rss {
            let tenths: Vec<String> = self.rss_tenths_mib.iter().map(|m| format!("{m:.1}")).collect();
            out += &format!(
                "RSS MiB: start {:.1}, end {:.1}, max {:.1}; by tenth of the run: {}\n",
                rss.start_mib,
                rss.end_mib,
                rss.max_mib,
                tenths.join(" ")
            );
        }
        for (why, n) in t.unintended_denials.iter().chain(&t.errors) {
            out += &format!("  {n} × {why}\n");
        }
        for e in &t.examples {
            out += &format!("  e.g. {e}\n");
        }
        for p in &f.problems {
            out += &format!("  problem: {p}\n");
        }
        out
    }
}

/// One replica's config. `variant` changes with every reload (a public route's name and path),
/// so each reload really swaps the routes; everything about the provider stays, as in an
/// operator's routine change.
///
/// `refetch_wait` is the longest allowed (1 s), not the 100 ms default: the soak asks whether a
/// rotation or an outage ever loses a request, and on a loaded 2-core CI machine running debug
/// builds a loopback JWKS fetch has once taken longer than 100 ms (one `UNAVAILABLE` in 6,421
/// checks). That the wait is bounded is `tests/it/rotation.rs`'s to prove, not the soak's.
fn config_text(listen: Listen, issuer: &Issuer, redis_url: &str, dir: &Path, variant: u64) -> String {
    format!(
        r#"# jwtgate-bench soak: reload #{variant}
listen: {{ grpc: "{grpc}", http: "{http}", admin: "{admin}" }}
shutdown_drain: 1s
shutdown_grace: 5s
admin: {{ token: {{ file: admin.token }} }}
key_cache: {{ dir: "{keys}" }}
revocation: {{ store: redis, url: "{redis}" }}
providers:
  - name: soak
    issuer: "{ISSUER}"
    jwks_uri: "{jwks}"
    audiences: [{AUDIENCE}]
    require_jti: true
    claims_to_headers: {{ sub: x-jwt-sub }}
    keys: {{ refresh_interval: 10s, min_refetch_interval: 5s, max_stale: 1h, refetch_wait: 1s }}
routes:
  - name: public-{variant}
    match: {{ path_prefix: /public-{variant} }}
    auth: public
  - name: api
    match: {{ path_prefix: /api }}
"#,
        grpc = listen.grpc,
        http = listen.http,
        admin = listen.admin,
        keys = dir.join("keys").display(),
        redis = redis_url,
        jwks = issuer.jwks_uri(),
    )
}

/// Everything the fault tasks share.
struct World {
    issuer: Arc<Issuer>,
    tokens: Arc<Tokens>,
    redis: Mutex<Redis>,
    /// Its URL (the port stays across restarts).
    redis_url: String,
    dir: PathBuf,
    binary: PathBuf,
    replica: Mutex<Jwtgate>,
    http: reqwest::Client,
    start: Instant,
    until: Instant,
    faults: std::sync::Mutex<Faults>,
    tally: std::sync::Mutex<Tally>,
    variant: AtomicU64,
    /// Held by a rotation until the replica has fetched the new key set, and by an outage
    /// while it begins: an outage that began between a rotation and the replica's first fetch
    /// would deny tokens nobody outside the issuer could have verified (not jwtgate's fault).
    issuer_change: Mutex<()>,
}

impl World {
    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn problem(&self, what: String) {
        self.faults().problems.push(what);
    }

    /// Sleeps `d`; false when the soak ends first.
    async fn wait(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        if end >= self.until {
            tokio::time::sleep_until(self.until.into()).await;
            return false;
        }
        tokio::time::sleep(d).await;
        true
    }

    async fn write_config(&self, name: &str, listen: Listen, variant: u64) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        let text = config_text(listen, &self.issuer, &self.redis_url, &self.dir, variant);
        processes::write_atomically(&path, &text)?;
        Ok(path)
    }
}

/// Runs the soak (blocking; builds its own runtime).
pub fn soak(settings: &SoakSettings, exe: &Path) -> Result<SoakReport, String> {
    settings.check()?;
    let binary = settings.jwtgate_binary(exe);
    if !binary.is_file() {
        return Err(format!(
            "no jwtgate binary at {}: build it (`cargo build --release --bin jwtgate`) or pass --jwtgate",
            binary.display()
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let dir = std::env::temp_dir().join(format!("jwtgate-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let report = rt.block_on(run(settings, binary, dir.clone()));
    match &report {
        Ok(r) if r.passed() => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => eprintln!("jwtgate-bench soak: logs and files kept in {}", dir.display()),
    }
    report
}

async fn run(settings: &SoakSettings, binary: PathBuf, dir: PathBuf) -> Result<SoakReport, String> {
    let http = crate::door::admin_client()?;
    let issuer = Issuer::start().await?;
    let redis = Redis::start(&settings.redis_binary(), &dir.join("redis")).await?;
    std::fs::write(dir.join("admin.token"), ADMIN_TOKEN).map_err(|e| format!("cannot write the admin token: {e}"))?;
    let tokens = Arc::new(Tokens::default());
    tokens.valid.store(Arc::new(
        issuer
            .mint_pool(POOL)?
            .into_iter()
            .map(|t| format!("Bearer {t}"))
            .collect(),
    ));

    let listen = Listen::free()?;
    let config_path = dir.join("replica.yaml");
    processes::write_atomically(&config_path, &config_text(listen, &issuer, &redis.url(), &dir, 0))?;
    let mut replica = Jwtgate::spawn(&binary, &config_path, listen, &dir.join("replica.log"))?;
    replica.wait_ready(&http, Duration::from_secs(30)).await?;
    let door = Door::connect(listen.grpc).await?;
    let pid = replica.pid();

    let start = Instant::now();
    let until = start + settings.duration;
    let world = Arc::new(World {
        issuer,
        tokens: tokens.clone(),
        redis_url: redis.url(),
        redis: Mutex::new(redis),
        dir: dir.clone(),
        binary,
        replica: Mutex::new(replica),
        http,
        start,
        until,
        faults: std::sync::Mutex::default(),
        tally: std::sync::Mutex::default(),
        variant: AtomicU64::new(0),
        issuer_change: Mutex::new(()),
    });

    let faults = vec![
        tokio::spawn(rotations(world.clone(), settings.rotate_every)),
        tokio::spawn(outages(world.clone(), settings.outage, settings.outage_every)),
        tokio::spawn(reloads(world.clone(), settings.reload_every)),
        tokio::spawn(redis_restarts(world.clone(), settings.redis_restart_every)),
        tokio::spawn(revocations(world.clone(), listen, settings.revoke_every)),
    ];
    let rss = tokio::spawn(sample_rss(pid, until));
    let mut tally = load::drive(door, tokens, settings.rate, settings.workers, start, until).await;
    for task in faults {
        if task.await.is_err() {
            world.problem("a fault task panicked".into());
        }
    }
    let samples = rss.await.unwrap_or_default();

    let replica = world.replica.lock().await;
    let metrics = replica.metrics(&world.http).await.unwrap_or_default();
    let mut faults = world.faults().clone();
    faults.reloads_applied = processes::counter_sum(&metrics, "jwtgate_config_reloads_total", "outcome=\"success\"");
    faults.reloads_refused = processes::counter_sum(&metrics, "jwtgate_config_reloads_total", "outcome=\"failure\"");
    faults.jwks_fetches = world.issuer.hits();
    drop(replica);
    tally.merge(&world.tally.lock().unwrap_or_else(|p| p.into_inner()));
    if let Ok(world) = Arc::try_unwrap(world) {
        world.replica.into_inner().stop(Duration::from_secs(10)).await;
    }
    let tenths = (1..=10)
        .filter_map(|i| samples.get((samples.len() * i / 10).saturating_sub(1)))
        .map(|k| *k as f64 / 1024.0)
        .collect();
    Ok(SoakReport {
        seconds: settings.duration.as_secs_f64(),
        rate: settings.rate,
        tally,
        faults,
        rss: RssUse::of(&samples),
        rss_tenths_mib: tenths,
    })
}

/// Unannounced rotations, skipped while the issuer is down (it issues nothing then).
async fn rotations(world: Arc<World>, every: Duration) {
    while world.wait(every).await {
        let _change = world.issuer_change.lock().await;
        if !world.issuer.is_up() {
            continue;
        }
        let hits = world.issuer.hits();
        let issuer = world.issuer.clone();
        // RSA key generation and signing the pool take a while: off the load's threads.
        match tokio::task::spawn_blocking(move || issuer.rotate(POOL)).await {
            Ok(Ok(pool)) => {
                world
                    .tokens
                    .valid
                    .store(Arc::new(pool.into_iter().map(|t| format!("Bearer {t}")).collect()));
                world.faults().rotations += 1;
            }
            Ok(Err(e)) => world.problem(format!("rotation: {e}")),
            Err(e) => world.problem(format!("rotation: {e}")),
        }
        // The first request with the new kid makes the replica fetch; bounded.
        let fetched_by = Instant::now() + ROTATION_FETCH_WAIT;
        while world.issuer.hits() == hits && Instant::now() < fetched_by {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Issuer outages; during each, a second replica is started with the same key cache.
async fn outages(world: Arc<World>, outage: Duration, every: Duration) {
    if !world.wait(every / 2).await {
        return;
    }
    loop {
        if Instant::now() + outage >= world.until {
            return;
        }
        {
            let _change = world.issuer_change.lock().await;
            world.issuer.go_down();
        }
        world.faults().outages += 1;
        let began = Instant::now();
        // Let the replica's refresh fail at least once before the restart.
        if world.wait(outage / 4).await {
            restarted_replica(&world, began + outage).await;
        }
        tokio::time::sleep_until((began + outage).into()).await;
        if let Err(e) = world.issuer.come_back().await {
            world.problem(e);
            return;
        }
        if !world.wait(every - outage).await {
            return;
        }
    }
}

/// A replica started while the issuer is down: it must restore its keys from the key cache, be
/// ready, allow the current tokens and deny the revoked ones. Stopped before `deadline`.
async fn restarted_replica(world: &World, deadline: Instant) {
    let listen = match Listen::free() {
        Ok(l) => l,
        Err(e) => return world.problem(e),
    };
    let variant = world.variant.load(Ordering::Relaxed);
    let config = match world.write_config("restarted.yaml", listen, variant).await {
        Ok(c) => c,
        Err(e) => return world.problem(e),
    };
    let n = world.faults().restarted_replicas + 1;
    let log = world.dir.join(format!("restarted-{n}.log"));
    let mut replica = match Jwtgate::spawn(&world.binary, &config, listen, &log) {
        Ok(r) => r,
        Err(e) => return world.problem(e),
    };
    let ready = match replica.wait_ready(&world.http, Duration::from_secs(15)).await {
        Ok(d) => d,
        Err(e) => return world.problem(format!("replica started during the outage: {e}")),
    };
    let state = replica
        .readyz(&world.http)
        .await
        .and_then(|r| {
            r["providers"]
                .as_array()?
                .iter()
                .find(|p| p["provider"] == "soak")
                .and_then(|p| p["state"].as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into());
    {
        let mut f = world.faults();
        f.restarted_replicas += 1;
        f.restarted_ready_ms = f.restarted_ready_ms.max(ready.as_millis() as u64);
        f.restarted_states.push(state);
    }
    let door = match Door::connect(listen.grpc).await {
        Ok(d) => d,
        Err(e) => return world.problem(format!("replica started during the outage: {e}")),
    };
    let mut tally = Tally::default();
    for i in 0..RESTART_CHECKS {
        if Instant::now() >= deadline {
            break;
        }
        let (token, expect_allow) = world.tokens.pick(i % 4 == 3, i as usize);
        let answer = door.check(&token, i).await;
        tally.record(world.start.elapsed(), expect_allow, answer, "restarted replica");
    }
    world.tally.lock().unwrap_or_else(|p| p.into_inner()).merge(&tally);
    replica.stop(Duration::from_secs(5)).await;
}

/// Config rewrites (a new public route each time) followed by `SIGHUP`.
async fn reloads(world: Arc<World>, every: Duration) {
    while world.wait(every).await {
        let variant = world.variant.fetch_add(1, Ordering::Relaxed) + 1;
        let listen = world.replica.lock().await.listen;
        let result = match world.write_config("replica.yaml", listen, variant).await {
            Ok(_) => world.replica.lock().await.reload(),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => world.faults().reloads_sent += 1,
            Err(e) => world.problem(format!("reload: {e}")),
        }
    }
}

/// Redis killed and started again.
async fn redis_restarts(world: Arc<World>, every: Duration) {
    while world.wait(every).await {
        let result = world.redis.lock().await.restart(REDIS_DOWN).await;
        match result {
            Ok(()) => world.faults().redis_restarts += 1,
            Err(e) => {
                world.problem(format!("Redis restart: {e}"));
                return;
            }
        }
    }
}

/// A fresh token revoked every `every`, by `jti` and by subject cut-off in turn (also while the
/// JWKS is down: signing does not need it, and the key is one the replica knows): sent once while
/// valid (so it sits in the verified-token cache), revoked through the admin API, retried while
/// the store refuses (Redis down), and handed to the load once acknowledged.
async fn revocations(world: Arc<World>, listen: Listen, every: Duration) {
    let url = format!("http://{}", listen.admin);
    let mut admin = None;
    let mut n = 0u64;
    while world.wait(every).await {
        n += 1;
        let subject = format!("victim-{n}");
        let (token, iat) = match world.issuer.mint(&subject) {
            Ok(t) => t,
            Err(e) => return world.problem(format!("minting a token to revoke: {e}")),
        };
        let bearer = format!("Bearer {token}");
        if let Ok(door) = Door::connect(listen.grpc).await {
            let answer = door.check(&bearer, n).await;
            world.tally.lock().unwrap_or_else(|p| p.into_inner()).record(
                world.start.elapsed(),
                true,
                answer,
                "before revocation",
            );
        }
        let began = Instant::now();
        loop {
            let client = match &mut admin {
                Some(c) => c,
                None => match AdminClient::connect(&url, Some(ADMIN_TOKEN), &ClientTls::default()).await {
                    Ok(c) => admin.insert(c),
                    Err(e) => return world.problem(format!("admin API: {e}")),
                },
            };
            let outcome = if n.is_multiple_of(2) {
                client
                    .revoke_subject(pb::RevokeSubjectRequest {
                        issuer: ISSUER.into(),
                        subject: subject.clone(),
                        issued_before: iat + 1,
                        reason: "soak".into(),
                    })
                    .await
            } else {
                client
                    .revoke_token(pb::RevokeTokenRequest {
                        target: Some(pb::revoke_token_request::Target::Token(token.clone())),
                        reason: "soak".into(),
                    })
                    .await
            };
            match outcome {
                Ok(_) => {
                    world.tokens.revoked_now(bearer);
                    world.faults().revocations += 1;
                    break;
                }
                Err(ClientError::Status(s)) if s.code() == tonic::Code::Unavailable => {
                    world.faults().revocation_retries += 1;
                }
                Err(e) => {
                    world.problem(format!("revocation refused: {e}"));
                    break;
                }
            }
            if began.elapsed() > REVOKE_PATIENCE {
                world.faults().revocations_lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The replica's RSS (KiB), every second until `until`.
async fn sample_rss(pid: u32, until: Instant) -> Vec<u64> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < until {
        tick.tick().await;
        if let Some(kib) = crate::os::rss_kib(pid) {
            samples.push(kib);
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        soak: SoakSettings,
    }

    #[test]
    fn settings_refuse_what_cannot_run() {
        let parse = |args: &[&str]| Cmd::parse_from(std::iter::once("soak").chain(args.iter().copied())).soak;
        assert!(parse(&[]).check().is_ok());
        assert_eq!(parse(&[]).duration, Duration::from_secs(600));
        assert!(parse(&["--rate", "0"]).check().is_err());
        assert!(parse(&["--revoke-every", "0s"]).check().is_err());
        let long_outage = parse(&["--outage", "2m", "--outage-every", "2m"]).check();
        assert_eq!(long_outage.unwrap_err(), "--outage must be shorter than --outage-every");
    }

    #[tokio::test]
    async fn every_reload_variant_is_a_valid_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
        let issuer = Issuer::start().await.unwrap();
        let listen = Listen::free().unwrap();
        for variant in [0, 1, 2] {
            let text = config_text(listen, &issuer, "redis://127.0.0.1:6379/0", dir.path(), variant);
            let config = jwtgate_core::config::Config::parse(&text, "soak.yaml", dir.path()).unwrap();
            assert_eq!(config.routes.len(), 2);
            assert_eq!(config.providers[0].issuer, ISSUER);
        }
    }
}
