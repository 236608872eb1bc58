//! The reusable parts of `jwtgate-bench`, the loopback load generator that measures jwtgate next
//! to a no-op baseline in the same run.
//!
//! One run: pre-mint the tokens ([`tokens`]), pin the client ([`os`]), then for each target start
//! its server as a child process of the bench binary ([`child`], which runs [`serve`] or
//! [`noop`]), drive it through one front door ([`door`]) with closed-loop or fixed-rate load
//! ([`runner`]), and compare ([`report`]). [`run`] ties these together. [`soak`] is the other
//! mode: faults under load against a real `jwtgate serve`.

pub mod child;
pub mod door;
pub mod fixture;
pub mod h1;
pub mod noop;
pub mod os;
pub mod report;
pub mod run;
pub mod runner;
pub mod serve;
pub mod soak;
pub mod tokens;

pub use run::{Settings, run};

use jsonwebtoken::Algorithm;
use serde::Serialize;

/// `iss` of asymmetric bench tokens (provider `bench`).
pub const ISSUER: &str = "https://issuer.bench.local";
/// `iss` of HS256 bench tokens (provider `bench-hs`).
pub const HS_ISSUER: &str = "https://hs.bench.local";
/// `aud` of every bench token; the providers accept only this audience.
pub const AUDIENCE: &str = "api";
/// The Envoy-HTTP-mode prefix the HTTP door is driven through.
pub const ENVOY_PREFIX: &str = "/ext_authz";
/// The forward-auth door (`http_auth.doors`, family `forwarded`); `/auth` reads nginx's.
pub const FORWARD_AUTH_PATH: &str = "/auth/forwarded";
/// The path of the request being authorized.
pub const PATH: &str = "/api/items";
/// The host of the request being authorized.
pub const HOST: &str = "api.example.com";

/// Which server a measurement runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A server on the same stack that answers OK without looking at the request.
    Noop,
    /// jwtgate itself.
    Jwtgate,
}

/// Which front door the requests go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Door {
    /// Envoy ext_authz v3 over gRPC (HTTP/2, multiplexed streams).
    Grpc,
    /// Envoy's HTTP ext_authz mode under [`ENVOY_PREFIX`] (HTTP/1.1 keep-alive).
    Http,
    /// Nginx `auth_request`: `GET /auth` with `X-Original-URI`, `-Method` and `-Host`.
    Nginx,
    /// Traefik/Caddy forward-auth: `GET` [`FORWARD_AUTH_PATH`] with `X-Forwarded-Uri`, `-Method`
    /// and `-Host`.
    ForwardAuth,
}

/// What tokens the requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// 1,000 valid tokens, cycling: after the first round every check is a cache hit.
    Warm,
    /// A fresh valid token every request, with jwtgate's cache off: every check verifies.
    Cold,
    /// Well-formed tokens for a known key with a wrong signature, a different token each time.
    BadSignature,
    /// Well-formed tokens naming a key id the provider does not have, a different one each time.
    RandomKid,
    /// 95% warm, 5% fresh (cache on).
    Mixed,
}

impl Mix {
    /// Whether jwtgate should allow these requests (otherwise it should deny them).
    pub fn expects_allow(self) -> bool {
        matches!(self, Self::Warm | Self::Cold | Self::Mixed)
    }

    /// The share of requests that carry a never-seen valid token.
    pub fn fresh_fraction(self) -> f64 {
        match self {
            Self::Cold => 1.0,
            Self::Mixed => 0.05,
            _ => 0.0,
        }
    }

    /// jwtgate's `cache.max_entries` for this mix: off for cold runs, 100,000 otherwise.
    pub fn cache_entries(self) -> u64 {
        if self == Self::Cold { 0 } else { 100_000 }
    }

    /// Whether jwtgate fetches its keys from a loopback HTTP JWKS server (so that unknown-kid
    /// refetches are real fetches) rather than from a file.
    pub fn jwks_over_http(self) -> bool {
        self == Self::RandomKid
    }
}

/// The signing algorithm of the bench tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Alg {
    /// RSA 2048 PKCS#1 v1.5 with SHA-256 (fixture `rsa-a.pem`).
    #[value(name = "RS256")]
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA P-256 (fixture `ec-p256.pem`).
    #[value(name = "ES256")]
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 (fixture `ed25519.pem`).
    #[value(name = "EdDSA")]
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// HMAC SHA-256 with a shared secret (provider `bench-hs`).
    #[value(name = "HS256")]
    #[serde(rename = "HS256")]
    Hs256,
}

impl Alg {
    /// The JOSE algorithm.
    pub fn jose(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Hs256 => Algorithm::HS256,
        }
    }

    /// The `kid` the JWKS publishes for this algorithm's key; HS256 tokens carry none.
    pub fn kid(self) -> Option<&'static str> {
        match self {
            Self::Rs256 => Some("bench-rsa"),
            Self::Es256 => Some("bench-ec"),
            Self::EdDsa => Some("bench-ed"),
            Self::Hs256 => None,
        }
    }

    /// The issuer whose provider verifies this algorithm.
    pub fn issuer(self) -> &'static str {
        if self == Self::Hs256 { HS_ISSUER } else { ISSUER }
    }

    /// How this algorithm is spelled in JOSE and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Hs256 => "HS256",
        }
    }
}
