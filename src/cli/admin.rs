//! `jwtgate revoke …`, `jwtgate keys status` and `jwtgate introspect`: admin API calls from the
//! command line, one line printed per revocation, provider or token; exit 0 on success (an
//! active token), 1 with the reason on failure (an inactive token).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::admin::client::{Client, ClientError, ClientTls};
use crate::admin::pb::{self, RevocationKind};

use super::{Flavor, run};

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoint {
    /// Admin API URL.
    #[arg(long = "admin", env = "JWTGATE_ADMIN", default_value = "http://127.0.0.1:9003")]
    pub url: String,
    /// Bearer credential: the static `admin.token`, or a token from `admin.provider` with
    /// `admin.role`.
    #[arg(long, env = "JWTGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// PEM CA certificates the admin listener's certificate must chain to (an https:// URL
    /// without it trusts the system's roots).
    #[arg(long, env = "JWTGATE_ADMIN_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for an admin listener with `client_ca` (mutual TLS).
    #[arg(long, env = "JWTGATE_ADMIN_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, env = "JWTGATE_ADMIN_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// One admin command.
#[derive(Debug, Clone)]
pub enum Call {
    /// Revoke one token.
    RevokeToken(pb::RevokeTokenRequest),
    /// Revoke a subject's tokens issued before a time.
    RevokeSubject(pb::RevokeSubjectRequest),
    /// Print every revocation in force, fetched this many at a time.
    List {
        /// Entries per page.
        page_size: u32,
    },
    /// Print each provider's key state.
    KeyStatus,
    /// Print what introspecting this token finds.
    Introspect(String),
}

/// Runs `call` against the admin API at `endpoint`.
pub fn admin(endpoint: &Endpoint, call: Call) -> ExitCode {
    run(Flavor::OneShot, async {
        match perform(endpoint, call).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("jwtgate: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs the call; `Ok(false)` for an answer that is a refusal (an inactive token).
async fn perform(endpoint: &Endpoint, call: Call) -> Result<bool, ClientError> {
    let tls = ClientTls {
        ca: endpoint.ca.clone(),
        cert: endpoint.cert.clone(),
        key: endpoint.key.clone(),
    };
    let mut client = Client::connect(&endpoint.url, endpoint.admin_token.as_deref(), &tls).await?;
    match call {
        Call::RevokeToken(m) => print_revoked(client.revoke_token(m).await?),
        Call::RevokeSubject(m) => print_revoked(client.revoke_subject(m).await?),
        Call::List { page_size } => {
            client
                .each_revocation(page_size, |r| println!("{}", revocation_line(r)))
                .await?;
        }
        Call::KeyStatus => {
            for p in client.key_status().await?.providers {
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
        Call::Introspect(token) => {
            let answer = client.introspect(token).await?;
            println!("{}", introspection_line(&answer));
            return Ok(answer.active);
        }
    }
    Ok(true)
}

/// An introspection answer as one JSON object: RFC 7662's members, then `provider` and, for an
/// inactive token, `reason`.
fn introspection_line(a: &pb::IntrospectResponse) -> String {
    let mut o = serde_json::Map::new();
    o.insert("active".into(), a.active.into());
    if a.active {
        o.insert("iss".into(), a.iss.clone().into());
        let text = |o: &mut serde_json::Map<_, _>, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                o.insert(k.to_owned(), v.clone().into());
            }
        };
        text(&mut o, "sub", &a.sub);
        match a.aud.as_slice() {
            [] => {}
            [one] => {
                o.insert("aud".into(), one.clone().into());
            }
            all => {
                o.insert("aud".into(), all.to_vec().into());
            }
        }
        for (k, v) in [("exp", a.exp), ("iat", a.iat), ("nbf", a.nbf)] {
            if let Some(v) = v {
                o.insert(k.into(), v.into());
            }
        }
        text(&mut o, "jti", &a.jti);
        text(&mut o, "scope", &a.scope);
        text(&mut o, "client_id", &a.client_id);
        o.insert("token_type".into(), a.token_type.clone().into());
    }
    if !a.provider.is_empty() {
        o.insert("provider".into(), a.provider.clone().into());
    }
    if !a.active {
        o.insert("reason".into(), a.inactive_reason.clone().into());
    }
    serde_json::Value::Object(o).to_string()
}

fn print_revoked(answer: pb::RevokeResponse) {
    match answer.revocation {
        Some(r) => println!("revoked {}", revocation_line(&r)),
        None => println!("nothing to do: {}", answer.note),
    }
}

/// One revocation on one line; strings are quoted.
fn revocation_line(r: &pb::Revocation) -> String {
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
