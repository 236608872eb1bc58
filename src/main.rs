//! The `jwtgate` command: argument handling only; everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{ArgGroup, Parser, Subcommand};
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
    /// Revoke tokens and subjects, and list revocations, through a running jwtgate's admin API;
    /// exit 0 on success, 1 on failure.
    Revoke {
        #[command(subcommand)]
        command: RevokeCommand,
    },
    /// Provider keys of a running jwtgate, through its admin API.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Where the admin API is and how to authenticate to it.
#[derive(clap::Args)]
struct AdminArgs {
    /// Admin API URL.
    #[arg(long = "admin", env = "JWTGATE_ADMIN", default_value = "http://127.0.0.1:9003")]
    url: String,
    /// Bearer credential: the static `admin.token`, or a token from `admin.provider` with
    /// `admin.role`.
    #[arg(long, env = "JWTGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(Subcommand)]
enum RevokeCommand {
    /// Revoke one token: by `--issuer` and `--jti`, or by the token itself (`--token`).
    #[command(group(ArgGroup::new("which").required(true).args(["jti", "token"])))]
    Token {
        /// The token's `jti` (with --issuer).
        #[arg(long, requires = "issuer")]
        jti: Option<String>,
        /// The token's issuer: a configured provider's `issuer` (with --jti).
        #[arg(long, requires = "jti")]
        issuer: Option<String>,
        /// Keep the revocation until this Unix time (the token's `exp`); by default, for the
        /// provider's longest token lifetime from now.
        #[arg(long, requires = "jti")]
        expires_at: Option<u64>,
        /// The token itself: it must verify and carry a `jti`; kept until its `exp`.
        #[arg(long, conflicts_with_all = ["jti", "issuer", "expires_at"])]
        token: Option<String>,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke every token of a subject issued before a time.
    Subject {
        /// A configured provider's `issuer`.
        #[arg(long)]
        issuer: String,
        /// The subject (`sub`).
        #[arg(long)]
        subject: String,
        /// Cut-off as a Unix time: tokens issued before it are revoked; default now.
        #[arg(long)]
        before: Option<u64>,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print every revocation in force, one per line (all pages).
    List {
        /// Entries fetched per request (at most 1000).
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print each provider's key state, one per line.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
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
        Command::Revoke { command } => admin(AdminCommand::Revoke(command)),
        Command::Keys { command } => admin(AdminCommand::Keys(command)),
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
                eprintln!("jwtgate: {e}");
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

/// A command for a running jwtgate's admin API.
enum AdminCommand {
    Revoke(RevokeCommand),
    Keys(KeysCommand),
}

/// Runs an admin command: 0 on success, 1 with the gRPC status message on failure.
fn admin(command: AdminCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jwtgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(admin_call(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwtgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn admin_call(command: AdminCommand) -> Result<(), String> {
    use jwtgate::admin::pb;
    use pb::revoke_token_request::Target;
    match command {
        AdminCommand::Revoke(RevokeCommand::Token {
            jti,
            issuer,
            expires_at,
            token,
            reason,
            admin,
        }) => {
            let target = match (token, issuer, jti) {
                (Some(t), _, _) => Target::Token(t),
                (None, Some(issuer), Some(jti)) => Target::Id(pb::TokenId {
                    issuer,
                    jti,
                    expires_at: expires_at.unwrap_or(0),
                }),
                _ => return Err("give --token, or --issuer with --jti".into()),
            };
            let msg = pb::RevokeTokenRequest {
                target: Some(target),
                reason,
            };
            let (mut client, auth) = connect(&admin).await?;
            let answer = client.revoke_token(auth.request(msg)).await.map_err(status)?;
            print_revoked(answer.into_inner());
        }
        AdminCommand::Revoke(RevokeCommand::Subject {
            issuer,
            subject,
            before,
            reason,
            admin,
        }) => {
            let msg = pb::RevokeSubjectRequest {
                issuer,
                subject,
                issued_before: before.unwrap_or(0),
                reason,
            };
            let (mut client, auth) = connect(&admin).await?;
            let answer = client.revoke_subject(auth.request(msg)).await.map_err(status)?;
            print_revoked(answer.into_inner());
        }
        AdminCommand::Revoke(RevokeCommand::List { page_size, admin }) => {
            let (mut client, auth) = connect(&admin).await?;
            let mut page_token = String::new();
            loop {
                let msg = pb::ListRevocationsRequest {
                    page_size,
                    page_token: page_token.clone(),
                };
                let page = client
                    .list_revocations(auth.request(msg))
                    .await
                    .map_err(status)?
                    .into_inner();
                for r in &page.revocations {
                    println!("{}", revocation_line(r));
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                if page.next_page_token == page_token {
                    return Err("the admin API returned the same page twice".into());
                }
                page_token = page.next_page_token;
            }
        }
        AdminCommand::Keys(KeysCommand::Status { admin }) => {
            let (mut client, auth) = connect(&admin).await?;
            let answer = client
                .key_status(auth.request(pb::KeyStatusRequest {}))
                .await
                .map_err(status)?;
            for p in answer.into_inner().providers {
                let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                print!(
                    "{} {} keys={} kids={} last_loaded={} age={} fetches={} issuer={:?}",
                    p.provider,
                    p.state,
                    p.keys,
                    p.kids.join(","),
                    opt(p.last_loaded_unix),
                    opt(p.age_seconds),
                    p.fetches,
                    p.issuer
                );
                match &p.last_error {
                    Some(e) => println!(" error={e:?}"),
                    None => println!(),
                }
            }
        }
    }
    Ok(())
}

/// The bearer credential each admin request carries.
struct AdminAuthHeader(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl AdminAuthHeader {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        req
    }
}

async fn connect(
    admin: &AdminArgs,
) -> Result<
    (
        jwtgate::admin::pb::admin_client::AdminClient<tonic::transport::Channel>,
        AdminAuthHeader,
    ),
    String,
> {
    let auth = match &admin.admin_token {
        None => AdminAuthHeader(None),
        Some(t) => AdminAuthHeader(Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| "--admin-token is not a valid header value")?,
        )),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(admin.url.clone())
        .map_err(|e| format!("--admin {}: {e}", admin.url))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach the admin API at {}: {}", admin.url, error_chain(&e)))?;
    Ok((jwtgate::admin::pb::admin_client::AdminClient::new(channel), auth))
}

fn status(s: tonic::Status) -> String {
    format!("{} ({:?})", s.message(), s.code())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Layers often repeat their inner error's words.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn print_revoked(answer: jwtgate::admin::pb::RevokeResponse) {
    match answer.revocation {
        Some(r) => println!("revoked {}", revocation_line(&r)),
        None => println!("nothing to do: {}", answer.note),
    }
}

/// One revocation on one line; strings are quoted.
fn revocation_line(r: &jwtgate::admin::pb::Revocation) -> String {
    use jwtgate::admin::pb::RevocationKind;
    let what = match r.kind() {
        RevocationKind::Token => format!("token issuer={:?} jti={:?}", r.issuer, r.jti),
        RevocationKind::Subject => format!(
            "subject issuer={:?} subject={:?} issued_before={}",
            r.issuer, r.subject, r.issued_before
        ),
        RevocationKind::Unspecified => format!("unknown issuer={:?}", r.issuer),
    };
    format!(
        "{what} expires_at={} created_at={} reason={:?}",
        r.expires_at, r.created_at, r.reason
    )
}
