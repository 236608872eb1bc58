//! `jwtgate check`: explains one decision with the same gate as `serve` — the matched route, the
//! provider, every check, how the check would be traced, and the answer. The token's provider is found through the configured
//! sources exactly as a check finds the token, and its keys are loaded once first.

use std::path::PathBuf;
use std::process::ExitCode;

use jwtgate_core::config::Config;
use jwtgate_core::gate::{Gate, Shared};
use jwtgate_core::keys::fetch;
use jwtgate_core::request::{ClientCert, Decision, Request};

use super::{Flavor, UNUSABLE, load_config, run};
use crate::server::render;
use crate::telemetry;

/// The config and the request to explain, as given on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Config file.
    #[arg(long, env = "JWTGATE_CONFIG")]
    pub config: PathBuf,
    /// The bearer token (sent as `Authorization: Bearer T`); omit to check an anonymous request.
    #[arg(long)]
    pub token: Option<String>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Path, with query if any.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Host.
    #[arg(long, default_value = "")]
    pub host: String,
    /// Extra request header `NAME: VALUE`, repeatable.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Envoy context extension `KEY=VALUE`, repeatable.
    #[arg(long = "context")]
    pub context: Vec<String>,
    /// A DPoP proof (RFC 9449): the token is then sent as `Authorization: DPoP T` with this
    /// proof in the `DPoP` header.
    #[arg(long, requires = "token")]
    pub dpop: Option<String>,
    /// The request's absolute URL (`https://host/path?query`): sets the scheme, the host and the
    /// path, as a proof's `htu` is compared with them.
    #[arg(long, conflicts_with_all = ["path", "host"])]
    pub url: Option<String>,
    /// The client's TLS certificate (PEM file), as the proxy would pass it, for
    /// certificate-bound tokens (RFC 8705).
    #[arg(long)]
    pub client_cert: Option<PathBuf>,
}

/// An argument that does not say what it should.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// `--header` without a colon.
    #[error("--header wants `NAME: VALUE`, got `{0}`")]
    Header(String),
    /// `--context` without an equals sign.
    #[error("--context wants `KEY=VALUE`, got `{0}`")]
    Context(String),
    /// `--url` that is not an absolute http(s) URL.
    #[error("--url wants an absolute URL like `https://api.example.com/orders`, got `{0}`")]
    Url(String),
    /// `--client-cert` that cannot be read.
    #[error("--client-cert {0}: {1}")]
    ClientCert(PathBuf, std::io::Error),
}

/// Explains the decision for the request in `args` under its config: exit 0 allow, 1 deny, 2 an
/// unusable config or argument.
pub fn check(args: Args) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = match request(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jwtgate: {e}");
            return ExitCode::from(UNUSABLE);
        }
    };
    run(Flavor::OneShot, explain(&config, &req))
}

/// The request the gate sees.
fn request(args: Args) -> Result<Request, ArgError> {
    let mut req = Request {
        method: args.method,
        path: args.path,
        host: args.host,
        ..Request::default()
    };
    if let Some(url) = args.url {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, r)| matches!(*s, "http" | "https") && !r.is_empty())
            .ok_or_else(|| ArgError::Url(url.clone()))?;
        let (host, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| rest.split_at(i));
        req.scheme = scheme.to_owned();
        req.host = host.to_owned();
        req.path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
    }
    if let Some(file) = args.client_cert {
        let pem = std::fs::read_to_string(&file).map_err(|e| ArgError::ClientCert(file, e))?;
        req.client_cert = Some(ClientCert::Encoded(pem));
    }
    for h in args.headers {
        let Some((k, v)) = h.split_once(':') else {
            return Err(ArgError::Header(h));
        };
        req.headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    for c in args.context {
        let Some((k, v)) = c.split_once('=') else {
            return Err(ArgError::Context(c));
        };
        req.context.insert(k.to_owned(), v.to_owned());
    }
    match (args.token, args.dpop) {
        (Some(t), Some(proof)) => {
            req.headers.insert("authorization".into(), format!("DPoP {t}"));
            req.headers.insert("dpop".into(), proof);
        }
        (Some(t), None) => {
            req.headers.insert("authorization".into(), format!("Bearer {t}"));
        }
        (None, _) => {}
    }
    Ok(req)
}

async fn explain(config: &Config, req: &Request) -> ExitCode {
    let client = match fetch::client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jwtgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gate = Gate::new(config, &client, Shared::default());
    for p in gate.token_providers(req) {
        if let Err(e) = p.keys.load_once().await {
            println!("keys for provider {}: {e}", p.config.name);
        }
    }
    let (decision, ex) = gate.explain(req).await;
    println!("request:  {} {} (host {:?})", req.method, req.path, req.host);
    if req.client_cert.is_some() {
        println!("client certificate given");
    }
    if let Some(path) = &ex.path {
        println!("path:     {path} (normalised)");
    }
    println!("route:    {}", ex.route.as_deref().unwrap_or("(none matched)"));
    println!("provider: {}", ex.provider.as_deref().unwrap_or("-"));
    for step in &ex.steps {
        match &step.outcome {
            Ok(()) => println!("  pass  {}", step.what),
            Err(why) => println!("  FAIL  {}: {}", step.what, why.reason()),
        }
    }
    if let Some(r) = &ex.dry_run_denial {
        println!(
            "dry run: would deny ({} {}), allowed",
            render::http_status(r),
            r.reason()
        );
    }
    println!(
        "trace:    {}",
        telemetry::explain(&config.tracing, &telemetry::GateHeaders(&req.headers))
    );
    match decision {
        Decision::Allow(allow) => {
            println!("decision: ALLOW");
            for (k, v) in &allow.set_headers {
                println!("  set     {k}: {v}");
            }
            for k in &allow.remove_headers {
                println!("  remove  {k}");
            }
            for k in &allow.remove_query_parameters {
                println!("  remove  query parameter {k}");
            }
            ExitCode::SUCCESS
        }
        Decision::Deny(deny) => {
            println!(
                "decision: DENY {} {}",
                render::http_status(&deny.rejection),
                deny.rejection.reason()
            );
            println!("  www-authenticate: {}", render::www_authenticate(&deny));
            ExitCode::from(1)
        }
    }
}
