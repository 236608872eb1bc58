//! Every integration test that needs a tool from outside Cargo, in one binary behind the
//! `external-tests` feature: nginx and Caddy (through the real proxies), Redis (standalone,
//! Cluster, TLS), Helm and kubernetes-validate, podman, Python (Envoy's protos, rotel), Node
//! (panva's oidc-provider, jose), promtool and curl. `bash tests/run.sh` installs them and turns
//! the feature on; a plain `cargo test` leaves this binary out.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "../common/mod.rs"]
mod common;

mod caddy;
mod container;
mod dpop;
mod envoy_config;
mod helm;
mod ingress_examples;
mod introspection;
mod metrics;
mod nginx;
mod opaque_tokens;
mod python_client;
mod rate_limits;
mod redis_cluster;
mod redis_store;
mod redis_tls;
mod replicas;
mod tracing;
