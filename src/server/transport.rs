//! How the listeners serve: the gRPC listener's connections get `TCP_NODELAY` and corked writes
//! (see the `cork` module: one socket write per batch of ready responses), and the HTTP listener
//! is axum with the peer address known and a graceful shutdown. `jwtgate serve` serves through
//! these functions, and so does `jwtgate-bench`'s no-op baseline, so the two run the same stack
//! and the difference between them is what deciding costs.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use super::cork::Corked;

/// Serves the gRPC services of `router` on `listener` until `shutdown`, then lets in-flight
/// calls finish.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpListenerStream::new(listener).map(|s| {
        s.map(|s| {
            let _ = s.set_nodelay(true);
            Corked::new(s)
        })
    });
    router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

/// Serves `router` on `listener` (handlers may read the peer's `SocketAddr`) until `shutdown`,
/// then lets in-flight requests finish.
pub async fn serve_http(
    router: axum::Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
