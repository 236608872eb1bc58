//! The admin API (gRPC `jwtgate.admin.v1.Admin`, on `listen.admin`): revoke tokens and subjects,
//! list revocations, show key status. Who may call it is decided in [`auth`]; every call, allowed
//! or refused, leaves one event on the `jwtgate::audit` log target ([`audit`]). [`client`] is
//! the command line's side.

pub mod audit;
pub mod auth;
pub mod client;
pub mod service;

pub use service::AdminService;

/// Code generated from `proto/jwtgate/admin/v1/admin.proto`: messages, client and server.
pub mod pb {
    tonic::include_proto!("jwtgate.admin.v1");
}

/// The admin API's gRPC routes, for the admin listener to serve (`server::start` serves it the
/// way it serves the ext_authz listener, limits and TLS included).
pub fn routes(service: AdminService) -> tonic::service::Routes {
    tonic::service::Routes::new(pb::admin_server::AdminServer::new(service))
}
