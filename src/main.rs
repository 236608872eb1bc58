//! The `jwtgate` command: argument handling only; everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Parser, Subcommand};
use jsonwebtoken::Algorithm;
use jwtgate::config::Config;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "jwtgate",
    version,
    about = "External authorization for Envoy, Istio and HTTP proxies: verifies JWTs against cached, rotating key sets"
)]
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
    /// Explain the decision for one request: matched route, provider, every check; exit 0 allow,
    /// 1 deny, 2 unusable config.
    Check {
        /// Config file.
        #[arg(long, env = "JWTGATE_CONFIG")]
        config: PathBuf,
        /// The bearer token (sent as `Authorization: Bearer T`); omit to check an anonymous request.
        #[arg(long)]
        token: Option<String>,
        /// HTTP method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Path, with query if any.
        #[arg(long, default_value = "/")]
        path: String,
        /// Host.
        #[arg(long, default_value = "")]
        host: String,
        /// Extra request header `NAME: VALUE`, repeatable.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Envoy context extension `KEY=VALUE`, repeatable.
        #[arg(long = "context")]
        context: Vec<String>,
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
        Command::Check {
            config,
            token,
            method,
            path,
            host,
            headers,
            context,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            let mut req = jwtgate::gate::Request {
                method,
                path,
                host,
                ..Default::default()
            };
            for h in headers {
                let Some((k, v)) = h.split_once(':') else {
                    eprintln!("jwtgate: --header wants `NAME: VALUE`, got `{h}`");
                    return ExitCode::from(2);
                };
                req.headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
            for c in context {
                let Some((k, v)) = c.split_once('=') else {
                    eprintln!("jwtgate: --context wants `KEY=VALUE`, got `{c}`");
                    return ExitCode::from(2);
                };
                req.context.insert(k.to_owned(), v.to_owned());
            }
            if let Some(t) = token {
                req.headers.insert("authorization".into(), format!("Bearer {t}"));
            }
            check(&config, &req)
        }
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
        tokio::spawn(running.live.clone().watch(path.to_path_buf()));
        let live = running.live.clone();
        let reload_path = path.to_path_buf();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                let _ = live.reload(&reload_path);
            }
        });
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections, finishing in-flight checks");
        shutdown.cancel();
        if tokio::time::timeout(config.shutdown_grace, running.wait())
            .await
            .is_err()
        {
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

/// `jwtgate check`: the same gate as `serve`, with the token's provider's keys loaded once.
fn check(config: &Config, req: &jwtgate::gate::Request) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jwtgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let gate = jwtgate::gate::Gate::new(config, &jwtgate::keys::fetch::client(), Default::default());
        let issuer = req
            .header("authorization")
            .and_then(|a| a.get(7..))
            .and_then(|t| jwtgate::jws::parse_unverified(t).ok())
            .and_then(|jws| jws.claims.get("iss").and_then(|i| i.as_str()).map(str::to_owned));
        if let Some(p) = issuer.as_deref().and_then(|i| gate.verifier().provider(i))
            && let Err(e) = p.keys.load_once().await
        {
            println!("keys for provider {}: {e}", p.config.name);
        }
        let (decision, ex) = gate.explain(req).await;
        println!("request:  {} {} (host {:?})", req.method, req.path, req.host);
        if let Some(path) = &ex.path {
            println!("path:     {path} (normalised)");
        }
        println!("route:    {}", ex.route.as_deref().unwrap_or("(none matched)"));
        println!("provider: {}", ex.provider.as_deref().unwrap_or("-"));
        for step in &ex.steps {
            match &step.outcome {
                Ok(()) => println!("  pass  {}", step.what),
                Err(why) => println!("  FAIL  {}: {why}", step.what),
            }
        }
        if let Some(r) = &ex.dry_run_denial {
            println!("dry run: would deny ({} {}), allowed", r.http_status(), r.reason());
        }
        match decision {
            jwtgate::gate::Decision::Allow(allow) => {
                println!("decision: ALLOW");
                for (k, v) in &allow.set_headers {
                    println!("  set     {k}: {v}");
                }
                for k in &allow.remove_headers {
                    println!("  remove  {k}");
                }
                ExitCode::SUCCESS
            }
            jwtgate::gate::Decision::Deny(deny) => {
                println!("decision: DENY {} {}", deny.http_status(), deny.rejection.reason());
                println!("  www-authenticate: {}", deny.www_authenticate());
                ExitCode::from(1)
            }
        }
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JWTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("JWTGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn token(command: TokenCommand) -> Result<String, String> {
    match command {
        TokenCommand::Mint {
            key,
            alg,
            kid,
            claims,
            ttl,
        } => {
            let alg = parse_alg(&alg)?;
            let key = std::fs::read(&key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            let key = jwtgate::mint::signing_key(&key, alg)?;
            let claims = match claims.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
                None => claims,
            };
            let claims: serde_json::Value =
                serde_json::from_str(&claims).map_err(|e| format!("--claims is not JSON: {e}"))?;
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
