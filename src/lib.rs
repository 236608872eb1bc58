//! jwtgate: one verifier that Envoy (gRPC ext_authz), Istio (CUSTOM authorization) and HTTP
//! proxies ask "may this request pass, and with which identity?".
//!
//! Data flows one way: request → token → key → claims → decision → response. The protocol
//! adapters in [`server`] translate the wire into a [`gate::Request`] and render the
//! [`gate::Decision`]; everything in between knows nothing of gRPC or HTTP.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod bench;
pub mod cache;
pub mod claims;
pub mod config;
pub mod denial_log;
pub mod gate;
pub mod jws;
pub mod keys;
pub mod metrics;
pub mod mint;
pub mod policy;
pub mod rejection;
pub mod revocation;
pub mod route;
pub mod server;
pub mod token;
pub mod verify;
