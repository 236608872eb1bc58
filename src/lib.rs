//! jwtgate, the server: the doors Envoy (gRPC ext_authz), Istio (CUSTOM authorization) and HTTP
//! proxies (Nginx, Traefik, Caddy, Envoy's HTTP mode) ask "may this request pass, and with which
//! identity?", the admin API and its client, and the command line.
//!
//! The decision itself lives in `jwtgate_core` and knows no door: [`server`] translates the wire
//! into a `jwtgate_core::request::Request`, the core's gate decides, and
//! [`server::render`] turns the decision into the answer both doors give. [`tls`] is what the
//! listeners (the doors' and the admin API's) serve TLS with.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod cli;
pub mod server;
pub mod telemetry;
pub mod tls;
