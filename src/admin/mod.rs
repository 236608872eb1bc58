//! The admin API (gRPC `jwtgate.admin.v1.Admin`, on `listen.admin`): revoke tokens and subjects,
//! list revocations, show key status. Who may call it is decided in [`auth`]; every call, allowed
//! or refused, leaves one event on the `jwtgate::audit` log target ([`audit`]). [`client`] is
//! the command line's side.

pub mod audit;
pub mod auth;
pub mod client;
pub mod service;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use service::AdminService;

/// Code generated from `proto/jwtgate/admin/v1/admin.proto`: messages, client and server.
pub mod pb {
    tonic::include_proto!("jwtgate.admin.v1");
}

/// Serves the admin API on `listener` until `shutdown`, then finishes in-flight calls.
pub async fn serve(listener: TcpListener, service: AdminService, shutdown: CancellationToken) {
    let server = tonic::transport::Server::builder()
        .add_service(pb::admin_server::AdminServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned());
    if let Err(e) = server.await {
        tracing::error!("admin server failed: {e}");
    }
}
