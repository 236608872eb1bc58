//! How the listeners serve: the gRPC listener's connections get `TCP_NODELAY` and corked writes
//! (see the `cork` module: one socket write per batch of ready responses), and the HTTP listener
//! is axum with the peer address known and a graceful shutdown; either over TLS when the
//! listener has it ([`crate::tls`]). `jwtgate serve` serves through these functions, and so does
//! `jwtgate-bench`'s no-op baseline, so the two run the same stack and the difference between
//! them is what deciding costs.

use std::net::SocketAddr;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;

use super::cork::Corked;
use crate::tls::{self, ListenerTls, TlsListener};

/// Serves the gRPC services of `router` on `listener` (over `tls` when given) until `shutdown`,
/// then lets in-flight calls finish.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: ListenerTls,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    match tls {
        None => {
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
        Some((tls, metrics)) => {
            let ready = tls::accept(listener, tls, &metrics, shutdown.clone());
            let incoming = ReceiverStream::new(ready).map(|(s, _)| Ok::<_, std::io::Error>(Corked::new(s)));
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
        }
    }
}

/// Serves `router` on `listener` (over `tls` when given; handlers may read the peer's
/// `SocketAddr`) until `shutdown`, then lets in-flight requests finish.
pub async fn serve_http(
    router: axum::Router,
    listener: TcpListener,
    tls: ListenerTls,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
        Some((tls, metrics)) => {
            // `tap_io` only to get axum's `ConnectInfo<SocketAddr>` for a listener of our own
            // (axum implements it for `TcpListener` and for tapped listeners).
            let listener = TlsListener::new(listener, tls, &metrics, shutdown.clone())?.tap_io(|_| ());
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}
