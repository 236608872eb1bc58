//! jwtgate's decision, free of any door: a [`request::Request`] goes in, a
//! [`request::Decision`] comes out, computed in one place ([`gate::Gate::decide`]).
//!
//! Data flows one way: request → path ([`path`]) → route ([`route`]) → token ([`token`]) →
//! key ([`keys`]) → signature and claims ([`jws`], [`verify`], [`claims`]) → revocation
//! ([`revocation`]) → requirements ([`policy`]) → rate limits ([`ratelimit`]) → decision
//! ([`request`]). The gate orders
//! these steps; [`live`] swaps a whole new gate in on reload. This crate depends on neither
//! tonic, axum nor envoy-types: the gRPC and HTTP doors live in the `jwtgate` package and only
//! translate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod binding;
pub mod cache;
pub mod claims;
pub mod clock;
pub mod config;
pub mod denial_log;
pub mod dpop;
pub mod errors;
pub mod file;
pub mod gate;
pub mod headers;
pub mod host;
pub mod introspect;
pub mod jws;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod mint;
pub mod opaque;
pub mod original;
pub mod path;
pub mod policy;
pub mod ratelimit;
pub mod redis_conn;
pub mod rejection;
pub mod request;
pub mod revocation;
pub mod route;
pub mod status;
pub mod token;
pub mod verify;
