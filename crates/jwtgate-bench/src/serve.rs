//! The server side of a run, executed in a child process of the bench binary (so that it can be
//! pinned to its own CPU): `serve-jwtgate` and `serve-noop`.
//!
//! Protocol with the parent ([`super::child`]): the child prints one line on stdout, either
//! `READY grpc=ADDR http=ADDR [jwks=ADDR]` or `ERROR reason`, then serves until its stdin closes
//! (the parent closes it, or dies), and then removes its files and exits.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::{AUDIENCE, ENVOY_PREFIX, FORWARD_AUTH_PATH, HS_ISSUER, ISSUER, fixture};

/// The first word of the line a ready child prints.
pub const READY: &str = "READY";

/// How `serve-jwtgate` sets jwtgate up (its command-line arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct JwtgateSetup {
    /// `cache.max_entries` (0 turns the verified-token cache off).
    #[arg(long)]
    pub cache_entries: u64,
    /// Serve the JWKS from a loopback HTTP server (`jwks_uri`) instead of a file (`jwks_file`).
    #[arg(long)]
    pub jwks_over_http: bool,
    /// Where the fixture keys are.
    #[arg(long)]
    pub keys_dir: PathBuf,
    /// jwtgate's log filter (as `JWTGATE_LOG`); `off` installs no logger. Logs go to stderr,
    /// which the parent points at /dev/null.
    #[arg(long)]
    pub log: String,
    /// jwtgate's `telemetry.tracing` block (flow YAML); absent: no tracing.
    #[arg(long)]
    pub tracing: Option<String>,
    /// jwtgate's `rate_limits` block (flow YAML); absent: none.
    #[arg(long)]
    pub rate_limits: Option<String>,
    /// jwtgate's `redis.url`.
    #[arg(long)]
    pub redis_url: Option<String>,
}

impl JwtgateSetup {
    /// These settings as `serve-jwtgate` arguments.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--cache-entries".into(),
            self.cache_entries.to_string().into(),
            "--keys-dir".into(),
            self.keys_dir.clone().into(),
            "--log".into(),
            self.log.clone().into(),
        ];
        if self.jwks_over_http {
            args.push("--jwks-over-http".into());
        }
        for (flag, value) in [
            ("--tracing", &self.tracing),
            ("--rate-limits", &self.rate_limits),
            ("--redis-url", &self.redis_url),
        ] {
            if let Some(value) = value {
                args.push(flag.into());
                args.push(value.into());
            }
        }
        args
    }
}

/// The jwtgate config under test. The provider's key source is `key_source` (one YAML line).
fn config_text(key_source: &str, cache_entries: u64, extra: &Extra<'_>) -> String {
    format!(
        r#"listen: {{ grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0" }}
http_auth: {{ envoy_prefix: "{ENVOY_PREFIX}", doors: [{{ path: "{FORWARD_AUTH_PATH}", original_request: forwarded }}] }}
providers:
  - name: bench
    issuer: "{ISSUER}"
    {key_source}
    audiences: [{AUDIENCE}]
    claims_to_headers: {{ sub: x-jwt-sub }}
    keys: {{ min_refetch_interval: 30s }}
  - name: bench-hs
    issuer: "{HS_ISSUER}"
    hmac_secret: {{ file: hs.secret }}
    audiences: [{AUDIENCE}]
    claims_to_headers: {{ sub: x-jwt-sub }}
{cache}{tracing}{rate_limits}{redis}"#,
        cache = cache_section(cache_entries),
        tracing = extra
            .tracing
            .map_or(String::new(), |t| format!("telemetry: {{ tracing: {t} }}\n")),
        rate_limits = extra
            .rate_limits
            .map_or(String::new(), |r| format!("rate_limits: {r}\n")),
        redis = extra
            .redis_url
            .map_or(String::new(), |u| format!("redis: {{ url: \"{u}\" }}\n")),
    )
}

/// Optional blocks of the config under test (flow YAML), from the setup's arguments.
#[derive(Debug, Default, Clone, Copy)]
struct Extra<'a> {
    tracing: Option<&'a str>,
    rate_limits: Option<&'a str>,
    redis_url: Option<&'a str>,
}

impl JwtgateSetup {
    fn extra(&self) -> Extra<'_> {
        Extra {
            tracing: self.tracing.as_deref(),
            rate_limits: self.rate_limits.as_deref(),
            redis_url: self.redis_url.as_deref(),
        }
    }
}

/// THE ONE PLACE the `cache:` section of the config under test is written.
fn cache_section(max_entries: u64) -> String {
    format!("cache: {{ max_entries: {max_entries} }}\n")
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // As `jwtgate serve` builds it: one worker per CPU the process may run on.
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

fn fail(why: impl std::fmt::Display) -> ExitCode {
    println!("ERROR {why}");
    let _ = std::io::stdout().flush();
    ExitCode::FAILURE
}

fn ready(grpc: SocketAddr, http: SocketAddr, jwks: Option<SocketAddr>) {
    let jwks = jwks.map(|a| format!(" jwks={a}")).unwrap_or_default();
    println!("{READY} grpc={grpc} http={http}{jwks}");
    let _ = std::io::stdout().flush();
}

/// Resolves when stdin reaches end of file or on Ctrl-C.
async fn until_parent_leaves() {
    let stdin = tokio::task::spawn_blocking(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    });
    tokio::select! {
        _ = stdin => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `serve-noop`: the no-op gRPC and HTTP servers.
pub fn serve_noop() -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        match super::noop::serve(shutdown.clone()).await {
            Ok((grpc, http)) => ready(grpc, http, None),
            Err(e) => return fail(format!("cannot listen: {e}")),
        }
        until_parent_leaves().await;
        shutdown.cancel();
        ExitCode::SUCCESS
    })
}

/// `serve-jwtgate`: jwtgate from a temporary config with the fixture keys.
pub fn serve_jwtgate(setup: &JwtgateSetup) -> ExitCode {
    // With tracing, jwtgate's own subscriber (logs and spans) is installed inside the runtime.
    if setup.log != "off" && setup.tracing.is_none() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&setup.log))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let dir = std::env::temp_dir().join(format!("jwtgate-bench-{}", std::process::id()));
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let code = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let (running, telemetry) = match start_jwtgate(setup, &dir, shutdown.clone()).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        until_parent_leaves().await;
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), running.wait()).await;
        if let Some(telemetry) = telemetry {
            telemetry.shutdown(Duration::from_secs(1)).await;
        }
        ExitCode::SUCCESS
    });
    let _ = std::fs::remove_dir_all(&dir);
    code
}

async fn start_jwtgate(
    setup: &JwtgateSetup,
    dir: &Path,
    shutdown: CancellationToken,
) -> Result<(jwtgate::server::Running, Option<jwtgate::telemetry::Telemetry>), String> {
    let io = |what: &str, e: std::io::Error| format!("cannot {what} in {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory", e))?;
    let jwks = fixture::jwks(&setup.keys_dir)?.to_string();
    std::fs::write(dir.join("hs.secret"), fixture::HMAC_SECRET).map_err(|e| io("write hs.secret", e))?;
    let (key_source, jwks_addr) = if setup.jwks_over_http {
        let addr = serve_jwks(jwks, shutdown.clone())
            .await
            .map_err(|e| format!("cannot start the JWKS server: {e}"))?;
        (format!("jwks_uri: \"http://{addr}/jwks\""), Some(addr))
    } else {
        std::fs::write(dir.join("jwks.json"), jwks).map_err(|e| io("write jwks.json", e))?;
        ("jwks_file: jwks.json".to_owned(), None)
    };
    let text = config_text(&key_source, setup.cache_entries, &setup.extra());
    std::fs::write(dir.join("jwtgate.yaml"), &text).map_err(|e| io("write jwtgate.yaml", e))?;
    let config = jwtgate_core::config::Config::parse(&text, "jwtgate.yaml", dir).map_err(|e| e.to_string())?;
    let metrics = std::sync::Arc::new(jwtgate_core::metrics::Metrics::default());
    let mut telemetry = None;
    if setup.tracing.is_some() {
        let log = tracing_subscriber::EnvFilter::new(&setup.log);
        telemetry = Some(
            jwtgate::telemetry::install_with(
                &config.tracing,
                metrics.families::<jwtgate::telemetry::export::SpansDropped>().counter(),
                log,
                false,
            )
            .map_err(|e| e.to_string())?,
        );
    }
    let running = jwtgate::server::start_with_metrics(&config, metrics, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    ready(running.grpc_addr, running.http_addr, jwks_addr);
    Ok((running, telemetry))
}

/// A loopback JWKS server for a fixed key set, on an ephemeral port until `shutdown`.
async fn serve_jwks(jwks: String, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    serve_jwks_on(
        listener,
        Arc::new(arc_swap::ArcSwap::from_pointee(jwks)),
        Arc::default(),
        shutdown,
    );
    Ok(addr)
}

/// Serves a JWKS on `listener` until `shutdown`: `GET /jwks` answers `body` as it is at that
/// moment and counts the hit in `hits`, `GET /hits` says how many there were. At `shutdown` the
/// listener closes and idle keep-alive connections are closed too (axum's graceful shutdown).
pub fn serve_jwks_on(
    listener: tokio::net::TcpListener,
    body: Arc<arc_swap::ArcSwap<String>>,
    hits: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    #[derive(Clone)]
    struct Jwks {
        body: Arc<arc_swap::ArcSwap<String>>,
        hits: Arc<AtomicU64>,
    }
    let router = Router::new()
        .route(
            "/jwks",
            get(|State(s): State<Jwks>| async move {
                s.hits.fetch_add(1, Ordering::Relaxed);
                ([("content-type", "application/json")], s.body.load().to_string())
            }),
        )
        .route(
            "/hits",
            get(|State(s): State<Jwks>| async move { s.hits.load(Ordering::Relaxed).to_string() }),
        )
        .with_state(Jwks { body, hits });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtgate_core::config::http_auth::Family;

    #[test]
    fn setup_round_trips_through_its_arguments() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            setup: JwtgateSetup,
        }
        let setup = JwtgateSetup {
            cache_entries: 7,
            jwks_over_http: true,
            keys_dir: "/k".into(),
            log: "off".into(),
            tracing: Some("{sample_ratio: 0.5}".into()),
            rate_limits: Some("{rules: []}".into()),
            redis_url: Some("redis://127.0.0.1:1".into()),
        };
        let mut argv = vec![std::ffi::OsString::from("x")];
        argv.extend(setup.to_args());
        let parsed = Cmd::parse_from(argv);
        assert_eq!(parsed.setup.cache_entries, 7);
        assert!(parsed.setup.jwks_over_http);
        assert_eq!(parsed.setup.keys_dir, PathBuf::from("/k"));
        assert_eq!(parsed.setup.log, "off");
        assert_eq!(parsed.setup.tracing.as_deref(), Some("{sample_ratio: 0.5}"));
        assert_eq!(parsed.setup.rate_limits.as_deref(), Some("{rules: []}"));
        assert_eq!(parsed.setup.redis_url.as_deref(), Some("redis://127.0.0.1:1"));
    }

    #[test]
    fn config_under_test_is_valid_for_both_key_sources() {
        let dir = std::env::temp_dir().join(format!("jwtgate-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hs.secret"), fixture::HMAC_SECRET).unwrap();
        std::fs::write(dir.join("jwks.json"), "{\"keys\":[]}").unwrap();
        for (source, entries) in [
            ("jwks_file: jwks.json", 0),
            ("jwks_uri: \"http://127.0.0.1:9/jwks\"", 100_000),
        ] {
            let config =
                jwtgate_core::config::Config::parse(&config_text(source, entries, &Extra::default()), "t.yaml", &dir)
                    .unwrap();
            assert_eq!(config.cache.max_entries, entries);
            assert_eq!(config.providers.len(), 2);
            let door = |path: &str| config.http_auth.door(path).map(|(d, _)| d.family);
            assert_eq!(door(&format!("{ENVOY_PREFIX}{}", crate::PATH)), Some(Family::Envoy));
            assert_eq!(door(FORWARD_AUTH_PATH), Some(Family::Forwarded));
            assert_eq!(door("/auth"), Some(Family::Nginx));
        }
        let tracing = "{otlp_endpoint: 'http://127.0.0.1:4317', sample_ratio: 0.01}";
        let extra = Extra {
            tracing: Some(tracing),
            rate_limits: Some("{rules: [{name: global, limit: 1000, per: 1s}]}"),
            redis_url: None,
        };
        let text = config_text("jwks_file: jwks.json", 0, &extra);
        let config = jwtgate_core::config::Config::parse(&text, "t.yaml", &dir).unwrap();
        assert_eq!(config.tracing.sample_ratio, 0.01);
        assert!(config.tracing.export.is_some());
        assert_eq!(config.rate_limits.rules.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
