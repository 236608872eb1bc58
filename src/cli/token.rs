//! `jwtgate token mint` and `jwtgate token jwks`: development tooling around the core's
//! [`mint`](jwtgate_core::mint).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use jsonwebtoken::Algorithm;
use jwtgate_core::config::duration;
use jwtgate_core::mint::{self, MintError};

/// Why a token command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not an algorithm name.
    #[error("unknown algorithm `{0}`")]
    UnknownAlgorithm(String),
    /// `--claims` is not JSON.
    #[error("--claims is not JSON: {0}")]
    ClaimsNotJson(serde_json::Error),
    /// `--claims` is JSON but not an object.
    #[error("--claims must be a JSON object")]
    ClaimsNotObject,
    /// `--ttl` is not a duration.
    #[error("--ttl: {0}")]
    Ttl(String),
    /// A `--key` of `jwks` is not `PEM_FILE:ALG:KID`.
    #[error("--key `{0}`: expected PEM_FILE:ALG:KID")]
    KeySpec(String),
    /// Loading the key or signing failed.
    #[error(transparent)]
    Mint(#[from] MintError),
    /// The JWKS could not be rendered.
    #[error(transparent)]
    Json(serde_json::Error),
}

/// What `token mint` is asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct MintArgs {
    /// Private key: PEM (RSA/EC/Ed25519), or for HS* an oct JWK or the raw secret.
    #[arg(long)]
    pub key: PathBuf,
    /// Algorithm, e.g. RS256, ES256, EdDSA, HS256.
    #[arg(long)]
    pub alg: String,
    /// Key id for the header.
    #[arg(long)]
    pub kid: Option<String>,
    /// Claims as a JSON object, or @FILE.
    #[arg(long)]
    pub claims: String,
    /// Lifetime added as `exp` (and `iat`) when the claims have none, e.g. 1h.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

/// `token mint`: the signed token.
pub fn mint(args: MintArgs) -> Result<String, TokenError> {
    let alg = algorithm(&args.alg)?;
    let key = mint::signing_key(&read(&args.key)?, alg)?;
    let claims = match args.claims.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.into(),
            source,
        })?,
        None => args.claims,
    };
    let claims: serde_json::Value = serde_json::from_str(&claims).map_err(TokenError::ClaimsNotJson)?;
    let claims = claims.as_object().ok_or(TokenError::ClaimsNotObject)?;
    let ttl = duration::parse(&args.ttl).map_err(TokenError::Ttl)?;
    Ok(mint::mint(&key, alg, args.kid.as_deref(), claims, ttl.as_secs())?)
}

/// `token jwks`: the public JWKS of private PEM keys, each given as `PEM_FILE:ALG:KID`.
pub fn jwks(specs: &[String]) -> Result<String, TokenError> {
    let mut out = Vec::new();
    for spec in specs {
        let mut parts = spec.rsplitn(3, ':');
        let (kid, alg, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(k), Some(a), Some(p)) => (k, a, p),
            _ => return Err(TokenError::KeySpec(spec.clone())),
        };
        let pem = read(Path::new(path))?;
        out.push(mint::public_jwk(&pem, algorithm(alg)?, kid)?);
    }
    serde_json::to_string_pretty(&serde_json::json!({ "keys": out })).map_err(TokenError::Json)
}

fn algorithm(name: &str) -> Result<Algorithm, TokenError> {
    Algorithm::from_str(name).map_err(|_| TokenError::UnknownAlgorithm(name.to_owned()))
}

fn read(path: &Path) -> Result<Vec<u8>, TokenError> {
    std::fs::read(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })
}
