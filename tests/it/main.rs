//! Every integration test in one binary (one link, one `tests/common`): the gRPC and HTTP
//! doors, the admin API, the CLI, reloads, limits and TLS through the real binary or the real
//! server, with nothing outside Cargo. Tests that need a tool from outside (nginx, Caddy, Redis,
//! Helm, podman, Python, Node, promtool, curl) are in `tests/external/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod architecture;
mod attacks;
mod cache;
mod check_cli;
mod cli;
mod drain;
mod grpc_check;
mod http_door;
mod ingress_examples;
mod introspection;
mod istio;
mod key_cache;
mod limits;
mod migration;
mod opaque_tokens;
mod rate_limits;
mod redis_tls;
mod reload;
mod rotation;
mod routes;
mod tls;
mod tracing;
mod traefik;
mod workers;
