//! `jwtgate check`: explains one decision with the same gate as `serve` — the matched route, the
//! provider, every check, how the check would be traced, and the answer. The token's provider is found through the configured
//! sources exactly as a check finds the token, and its keys are loaded once first.

use std::path::PathBuf;
use std::process::ExitCode;

use jwtgate_core::config::Config;
use jwtgate_core::config::http_auth::Family;
use jwtgate_core::gate::{Gate, Shared};
use jwtgate_core::keys::fetch;
use jwtgate_core::original::{self, Asked};
use jwtgate_core::rejection::Rejection;
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
    #[arg(long, conflicts_with = "door")]
    pub client_cert: Option<PathBuf>,
    /// Explain the check as the HTTP door at this path (`/auth`, the `envoy_prefix`, a door of
    /// `http_auth.doors`) reads what its proxy sends: the request's method, path and host come
    /// from the `--header` lines of the door's header family (for an `envoy` door: `--method`,
    /// `--path` below the prefix, and a `host` header); the client's address and certificate
    /// from the headers the door names.
    #[arg(long, conflicts_with = "url")]
    pub door: Option<String>,
    /// With `--door`: the address the proxy asks from.
    #[arg(long, requires = "door", default_value = "127.0.0.1")]
    pub peer: std::net::IpAddr,
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
    /// `--door` at a path no door serves.
    #[error("--door {0}: no HTTP door at this path (doors: {1})")]
    Door(String, String),
}

/// Explains the decision for the request in `args` under its config: exit 0 allow, 1 deny, 2 an
/// unusable config or argument.
pub fn check(args: Args) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let door = args.door.clone().map(|path| (path, args.peer));
    let req = match request(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jwtgate: {e}");
            return ExitCode::from(UNUSABLE);
        }
    };
    let through = match door.map(|(path, peer)| through_door(&config, &path, peer, req.clone())) {
        None => Ok(req),
        Some(Ok(described)) => described,
        Some(Err(e)) => {
            eprintln!("jwtgate: {e}");
            return ExitCode::from(UNUSABLE);
        }
    };
    run(Flavor::OneShot, explain(&config, through))
}

/// `req` (its `--header` lines; for an `envoy` door also `--method` and `--path`, the path
/// below the prefix) as the door at `path` reads it from `peer`; the door's refusal when it
/// cannot tell which request it is asked about.
fn through_door(
    config: &Config,
    path: &str,
    peer: std::net::IpAddr,
    mut req: Request,
) -> Result<Result<Request, (Request, Rejection)>, ArgError> {
    let Some(door) = config.http_auth.doors().iter().find(|d| d.path == path) else {
        let paths: Vec<&str> = config.http_auth.doors().iter().map(|d| d.path.as_str()).collect();
        return Err(ArgError::Door(path.to_owned(), paths.join(", ")));
    };
    println!("door:     {}", door.describe());
    let asked_path = std::mem::take(&mut req.path);
    let (rest, query) = asked_path
        .split_once('?')
        .map_or((asked_path.as_str(), None), |(p, q)| (p, Some(q)));
    let method = std::mem::take(&mut req.method);
    let asked = Asked {
        method: &method,
        rest: if door.family == Family::Envoy { rest } else { "" },
        query,
    };
    Ok(match original::read(door, (peer, 0).into(), asked, &mut req) {
        Ok(()) => Ok(req),
        Err(rejection) => Err((req, rejection)),
    })
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

async fn explain(config: &Config, through: Result<Request, (Request, Rejection)>) -> ExitCode {
    let client = match fetch::client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jwtgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gate = Gate::new(config, &client, Shared::default());
    let req = match through {
        Ok(req) => req,
        Err((req, rejection)) => {
            println!(
                "  FAIL  the door can tell which request it is asked about: {}",
                rejection.reason()
            );
            return answer(gate.refuse(&req, rejection));
        }
    };
    let req = &req;
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
    answer(decision)
}

/// Prints the decision; exit 0 allow, 1 deny.
fn answer(decision: Decision) -> ExitCode {
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
            if let Some((name, value)) = render::deny_headers(&deny)
                .into_iter()
                .find(|(name, _)| *name == "www-authenticate")
            {
                println!("  {name}: {value}");
            }
            ExitCode::from(1)
        }
    }
}
