//! `jwtgate-bench`: loopback load generator reporting jwtgate's throughput and latency next to a
//! no-op server on the same stack, measured in the same run. Argument handling only; the parts
//! live in the `jwtgate_bench` library.
//!
//! `cargo run --release --bin jwtgate-bench -- --mix warm --server-cpu 0 --client-cpu 1`
//! `cargo run --release --bin jwtgate-bench -- soak --duration 10m` (faults under load)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use jwtgate_bench::serve::JwtgateSetup;
use jwtgate_bench::{self as bench, Alg, Door, Mix, Settings, Target};

#[derive(Parser)]
#[command(
    name = "jwtgate-bench",
    about = "Load-test jwtgate over loopback next to a no-op baseline measured in the same run",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// What to measure; `both` measures the no-op baseline first, then jwtgate, same settings.
    #[arg(long, value_enum, default_value_t = Targets::Both)]
    target: Targets,
    /// Front door: Envoy ext_authz gRPC, Envoy's HTTP mode under /ext_authz, Nginx auth_request (`GET /auth`) or forward-auth (`GET /auth/forwarded`, a `forwarded` door); HTTP/1.1.
    #[arg(long, value_enum, default_value_t = Door::Grpc)]
    door: Door,
    /// gRPC: HTTP/2 connections. HTTP: connections × streams keep-alive connections.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Concurrent requests per connection.
    #[arg(long, default_value_t = 32)]
    streams: usize,
    /// Measured time per run.
    #[arg(long, default_value = "10s", value_parser = jwtgate_core::config::duration::parse)]
    duration: Duration,
    /// Unmeasured time before it (connections, caches and allocators warm up).
    #[arg(long, default_value = "2s", value_parser = jwtgate_core::config::duration::parse)]
    warmup: Duration,
    /// Fixed rate in requests/s (open loop, latency from the intended send time); absent = max rate.
    #[arg(long)]
    rate: Option<f64>,
    /// Tokens: warm (1,000 valid, cycling), cold (fresh each request, cache off), bad-signature,
    /// random-kid (unknown kid each request), mixed (95% warm, 5% fresh).
    #[arg(long, value_enum, default_value_t = Mix::Warm)]
    mix: Mix,
    /// Signing algorithm of the tokens.
    #[arg(long, value_enum, default_value_t = Alg::Rs256, ignore_case = true)]
    alg: Alg,
    /// Pin the server process to these CPUs (taskset; a comma-separated list, e.g. `0` or `0,1`:
    /// jwtgate then runs one worker per CPU).
    #[arg(long, value_delimiter = ',')]
    server_cpu: Vec<usize>,
    /// Pin this process, the client, to this CPU (taskset; after minting).
    #[arg(long)]
    client_cpu: Option<usize>,
    /// Runs per target, interleaved; the report gives medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Fresh tokens to pre-mint for cold and mixed (default: (warmup + duration) × rate × share).
    #[arg(long)]
    fresh_pool: Option<usize>,
    /// Requests/s assumed when sizing the fresh pool of a max-rate run [default: 25000 for cold
    /// RS256/ES256/EdDSA, 60000 for cold HS256 and mixed].
    #[arg(long)]
    expected_rate: Option<f64>,
    /// Directory of the fixture keys.
    #[arg(long, default_value_os_t = bench::fixture::default_keys_dir())]
    keys_dir: PathBuf,
    /// jwtgate's log filter (its default is `info`, which logs every denial); `off` for none.
    #[arg(long, default_value = "info")]
    server_log: String,
    /// jwtgate's `cache.max_entries` [default: 0 for cold, 100000 otherwise]; e.g. `--mix cold
    /// --cache-entries 100000 --fresh-pool 100000` fills the cache with 100,000 tokens.
    #[arg(long)]
    cache_entries: Option<u64>,
    /// jwtgate's `telemetry.tracing` block as flow YAML, e.g. `{otlp_endpoint:
    /// "http://127.0.0.1:4317", sample_ratio: 0.01}`; absent: no tracing.
    #[arg(long)]
    tracing: Option<String>,
    /// jwtgate's `rate_limits` block as flow YAML, e.g. `{rules: [{name: global, limit:
    /// 1000000000, per: 1s}]}`; absent: no rate limits.
    #[arg(long)]
    rate_limits: Option<String>,
    /// jwtgate's `redis.url` (for `rate_limits: {store: redis, …}`).
    #[arg(long)]
    redis_url: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Targets {
    Jwtgate,
    Noop,
    Both,
}

#[derive(Subcommand)]
enum Command {
    /// Load through the gRPC door of a real `jwtgate serve` while keys rotate, the issuer goes
    /// down, the config reloads, Redis restarts and tokens are revoked; fails on any lost check.
    Soak(jwtgate_bench::soak::SoakSettings),
    /// Run the no-op servers (started by the bench itself).
    #[command(hide = true)]
    ServeNoop,
    /// Run jwtgate with the bench config (started by the bench itself).
    #[command(hide = true)]
    ServeJwtgate(JwtgateSetup),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("jwtgate-bench: cannot find its own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &cli.command {
        Some(Command::ServeNoop) => return bench::serve::serve_noop(),
        Some(Command::ServeJwtgate(setup)) => return bench::serve::serve_jwtgate(setup),
        Some(Command::Soak(settings)) => return soak(settings, &exe),
        None => {}
    }
    let settings = Settings {
        targets: match cli.target {
            Targets::Jwtgate => vec![Target::Jwtgate],
            Targets::Noop => vec![Target::Noop],
            Targets::Both => vec![Target::Noop, Target::Jwtgate],
        },
        door: cli.door,
        connections: cli.connections,
        streams: cli.streams,
        duration: cli.duration,
        warmup: cli.warmup,
        rate: cli.rate,
        mix: cli.mix,
        alg: cli.alg,
        server_cpu: cli.server_cpu,
        client_cpu: cli.client_cpu,
        runs: cli.runs,
        fresh_pool: cli.fresh_pool,
        expected_rate: cli.expected_rate,
        keys_dir: cli.keys_dir,
        server_log: cli.server_log,
        cache_entries: cli.cache_entries,
        tracing: cli.tracing,
        rate_limits: cli.rate_limits,
        redis_url: cli.redis_url,
        exe,
    };
    match bench::run(&settings) {
        Ok(report) if cli.json => match serde_json::to_string_pretty(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jwtgate-bench: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            print!("{}", report.text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jwtgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn soak(settings: &jwtgate_bench::soak::SoakSettings, exe: &std::path::Path) -> ExitCode {
    match jwtgate_bench::soak::soak(settings, exe) {
        Ok(report) => {
            if settings.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => eprintln!("jwtgate-bench: {e}"),
                }
            } else {
                print!("{}", report.text());
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("jwtgate-bench soak: {e}");
            ExitCode::FAILURE
        }
    }
}
