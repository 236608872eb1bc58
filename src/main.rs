//! The `jwtgate` command: argument handling only; everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Parser, Subcommand};
use jsonwebtoken::Algorithm;
use jwtgate::config::Config;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "jwtgate", version, about = "External authorization for Envoy, Istio and HTTP proxies: verifies JWTs against cached, rotating key sets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Envoy ext_authz (gRPC) and the HTTP health endpoints.
    Serve {
        /// Config file.
        #[arg(long, env = "JWTGATE_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file; exit 2 with the file, field and reason if it is unusable.
    ValidateConfig {
        /// Config file.
        file: PathBuf,
    },
    /// Development tooling for tokens and keys.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a token (for tests, demos and checking a setup).
    Mint {
        /// Private key: PEM (RSA/EC/Ed25519), or for HS* an oct JWK or the raw secret.
        #[arg(long)]
        key: PathBuf,
        /// Algorithm, e.g. RS256, ES256, EdDSA, HS256.
        #[arg(long)]
        alg: String,
        /// Key id for the header.
        #[arg(long)]
        kid: Option<String>,
        /// Claims as a JSON object, or @FILE.
        #[arg(long)]
        claims: String,
        /// Lifetime added as `exp` (and `iat`) when the claims have none, e.g. 1h.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Print the public JWKS for private PEM keys, to publish or to use as `jwks_file`.
    Jwks {
        /// `PEM_FILE:ALG:KID`, repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::ValidateConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!("{}: ok ({} provider(s))", file.display(), c.providers.len());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Token { command } => match token(command) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jwtgate: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn config_error(e: &jwtgate::config::ConfigError) -> ExitCode {
    eprintln!("jwtgate: invalid config: {e}");
    ExitCode::from(2)
}

fn serve(path: &std::path::Path) -> ExitCode {
    init_logging();
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jwtgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let running = match jwtgate::server::start(&config, shutdown.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("jwtgate: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections, finishing in-flight checks");
        shutdown.cancel();
        if tokio::time::timeout(config.shutdown_grace, running.wait()).await.is_err() {
            tracing::warn!("in-flight checks still running after the grace period; exiting");
        }
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JWTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("JWTGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn token(command: TokenCommand) -> Result<String, String> {
    match command {
        TokenCommand::Mint { key, alg, kid, claims, ttl } => {
            let alg = parse_alg(&alg)?;
            let key = std::fs::read(&key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            let key = jwtgate::mint::signing_key(&key, alg)?;
            let claims = match claims.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
                None => claims,
            };
            let claims: serde_json::Value = serde_json::from_str(&claims).map_err(|e| format!("--claims is not JSON: {e}"))?;
            let claims = claims.as_object().ok_or("--claims must be a JSON object")?;
            let ttl = jwtgate::config::duration::parse(&ttl).map_err(|e| format!("--ttl: {e}"))?;
            jwtgate::mint::mint(&key, alg, kid.as_deref(), claims, ttl.as_secs())
        }
        TokenCommand::Jwks { keys } => {
            let mut out = Vec::new();
            for spec in keys {
                let mut parts = spec.rsplitn(3, ':');
                let (kid, alg, path) = match (parts.next(), parts.next(), parts.next()) {
                    (Some(k), Some(a), Some(p)) => (k, a, p),
                    _ => return Err(format!("--key `{spec}`: expected PEM_FILE:ALG:KID")),
                };
                let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
                out.push(jwtgate::mint::public_jwk(&pem, parse_alg(alg)?, kid)?);
            }
            serde_json::to_string_pretty(&serde_json::json!({ "keys": out })).map_err(|e| e.to_string())
        }
    }
}

fn parse_alg(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(name).map_err(|_| format!("unknown algorithm `{name}`"))
}
