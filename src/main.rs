//! The `jwtgate` command: argument handling only; each command lives in [`jwtgate::cli`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use jwtgate::admin::pb;
use jwtgate::cli::admin::{Call, Endpoint};
use jwtgate::cli::{self, check, token};

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
    Check(check::Args),
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
    /// Whether a running jwtgate finds a token active (RFC 7662, through its admin API; needs
    /// `introspection.enabled`): one JSON line with the token's members, or `active: false` with
    /// the reason; exit 0 active, 1 inactive or failure.
    Introspect {
        /// The token; `-` reads it from standard input (keeps it out of the process list).
        token: String,
        #[command(flatten)]
        admin: Endpoint,
    },
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
        /// The token's `exp` (Unix time): the revocation is kept until then plus the provider's
        /// `clock_skew`; by default, for the provider's longest token lifetime from now.
        #[arg(long, requires = "jti")]
        expires_at: Option<u64>,
        /// The token itself: it must verify and carry a `jti`; kept until its `exp`.
        #[arg(long, conflicts_with_all = ["jti", "issuer", "expires_at"])]
        token: Option<String>,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        admin: Endpoint,
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
        admin: Endpoint,
    },
    /// Print every revocation in force, one per line (all pages).
    List {
        /// Entries fetched per request (at most 1000).
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[command(flatten)]
        admin: Endpoint,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print each provider's key state, one per line.
    Status {
        #[command(flatten)]
        admin: Endpoint,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a token (for tests, demos and checking a setup).
    Mint(token::MintArgs),
    /// Print the public JWKS for private PEM keys, to publish or to use as `jwks_file`.
    Jwks {
        /// `PEM_FILE:ALG:KID`, repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => cli::serve::serve(&config),
        Command::ValidateConfig { file } => cli::validate_config(&file),
        Command::Check(args) => check::check(args),
        Command::Token { command } => {
            let out = match command {
                TokenCommand::Mint(args) => token::mint(args),
                TokenCommand::Jwks { keys } => token::jwks(&keys),
            };
            match out {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("jwtgate: {e}");
                    ExitCode::from(cli::UNUSABLE)
                }
            }
        }
        Command::Revoke { command } => {
            let (admin, call) = revoke(command);
            cli::admin::admin(&admin, call)
        }
        Command::Keys {
            command: KeysCommand::Status { admin },
        } => cli::admin::admin(&admin, Call::KeyStatus),
        Command::Introspect { token, admin } => match read_token(token) {
            Ok(token) => cli::admin::admin(&admin, Call::Introspect(token)),
            Err(e) => {
                eprintln!("jwtgate: cannot read the token from standard input: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The token argument, or with `-` standard input (bounded, trimmed).
fn read_token(arg: String) -> std::io::Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(std::io::stdin(), 1 << 20), &mut text)?;
    Ok(text.trim().to_owned())
}

/// The admin API call a `revoke` command asks for.
fn revoke(command: RevokeCommand) -> (Endpoint, Call) {
    use pb::revoke_token_request::Target;
    match command {
        RevokeCommand::Token {
            jti,
            issuer,
            expires_at,
            token,
            reason,
            admin,
        } => {
            // clap requires `--token`, or `--jti` with `--issuer`.
            let target = match (token, issuer, jti) {
                (Some(t), _, _) => Some(Target::Token(t)),
                (None, Some(issuer), Some(jti)) => Some(Target::Id(pb::TokenId {
                    issuer,
                    jti,
                    expires_at: expires_at.unwrap_or(0),
                })),
                _ => None,
            };
            (admin, Call::RevokeToken(pb::RevokeTokenRequest { target, reason }))
        }
        RevokeCommand::Subject {
            issuer,
            subject,
            before,
            reason,
            admin,
        } => (
            admin,
            Call::RevokeSubject(pb::RevokeSubjectRequest {
                issuer,
                subject,
                issued_before: before.unwrap_or(0),
                reason,
            }),
        ),
        RevokeCommand::List { page_size, admin } => (admin, Call::List { page_size }),
    }
}
