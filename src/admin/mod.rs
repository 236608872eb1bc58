//! The admin API (gRPC `jwtgate.admin.v1.Admin`, on `listen.admin`): revoke tokens and subjects,
//! list revocations, show key status. Who may call it is decided in [`auth`]; every call, allowed
//! or refused, leaves one event on the `jwtgate::audit` log target ([`audit`]). [`client`] is
//! the command line's side.

pub mod audit;
pub mod auth;
pub mod client;
pub mod service;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;

use crate::tls::{self, ListenerTls};

pub use service::AdminService;

/// Code generated from `proto/jwtgate/admin/v1/admin.proto`: messages, client and server.
pub mod pb {
    tonic::include_proto!("jwtgate.admin.v1");
}

/// Serves the admin API on `listener` (over `tls` when given) until `shutdown`, then finishes
/// in-flight calls.
pub async fn serve(listener: TcpListener, service: AdminService, tls: ListenerTls, shutdown: CancellationToken) {
    let router = tonic::transport::Server::builder().add_service(pb::admin_server::AdminServer::new(service));
    let served = match tls {
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
                .await
        }
        Some((tls, metrics)) => {
            let ready = tls::accept(listener, tls, &metrics, shutdown.clone());
            let incoming = ReceiverStream::new(ready).map(|(s, _)| Ok::<_, std::io::Error>(s));
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
        }
    };
    if let Err(e) = served {
        tracing::error!("admin server failed: {e}");
    }
}
