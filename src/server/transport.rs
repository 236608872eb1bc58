//! How the listeners serve: connections are taken within the listener's bounds
//! ([`super::accept`]: a cap, timeouts, an accept loop that pauses when out of descriptors),
//! over TLS when the listener has it ([`crate::tls`]); the gRPC listeners' connections get corked
//! writes (see the `cork` module: one socket write per batch of ready responses), and the HTTP
//! listeners are axum served by hyper with HTTP/1's header-read timeout in force, the peer
//! address known, and a graceful shutdown. `jwtgate serve` serves through these functions, and
//! so does `jwtgate-bench`'s no-op baseline, so the two run the same stack and the difference
//! between them is what deciding costs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use jwtgate_core::config::limits::Limits;
use jwtgate_core::metrics::Metrics;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::accept::{self, Bounds, Conn, Slot};
use super::cork::Corked;
use crate::tls::{self, ServerTls};

/// What a listener serves with: its bounds, its TLS (`None`: plaintext), and the metrics its
/// connections and handshakes count into.
#[derive(Debug, Clone)]
pub struct Listening {
    /// Its cap and timeouts.
    pub bounds: Bounds,
    /// Its TLS, when configured.
    pub tls: Option<Arc<ServerTls>>,
    /// Where connections and handshakes are counted.
    pub metrics: Arc<Metrics>,
}

impl Listening {
    /// Plaintext, at `listener`'s default cap under `limits`, counting into fresh metrics
    /// (`jwtgate-bench`'s no-op baseline).
    pub fn plaintext(listener: jwtgate_core::config::limits::Listener, limits: &Limits) -> Self {
        Self {
            bounds: Bounds::new(listener, limits, listener.default_max_connections()),
            tls: None,
            metrics: Arc::default(),
        }
    }
}

/// A gRPC server builder with `limits` in force: the HTTP/2 stream cap, keep-alive pings, and
/// the per-connection concurrency limit when set. Add services to it and serve it with
/// [`serve_grpc`].
pub fn grpc_server(limits: &Limits) -> tonic::transport::Server {
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.grpc_max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout));
    match limits.grpc_concurrency_per_connection {
        Some(n) => server.concurrency_limit_per_connection(n),
        None => server,
    }
}

/// Serves the gRPC services of `router` on `listener` until `shutdown`, then lets in-flight
/// calls finish.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    listening: Listening,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let accepted = accept::accept(listener, &listening.bounds, &listening.metrics, shutdown.clone());
    let limits = listening.bounds.limits;
    match listening.tls {
        None => {
            let incoming = ReceiverStream::new(accepted)
                .map(move |(s, _, slot)| Ok::<_, std::io::Error>(Corked::new(Conn::new(s, slot, &limits))));
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
        }
        Some(tls) => {
            let ready = tls_handshakes(accepted, tls, &listening.metrics, limits);
            let incoming = ReceiverStream::new(ready).map(|(s, _)| Ok::<_, std::io::Error>(Corked::new(s)));
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
        }
    }
}

/// Serves `router` on `listener` (handlers may read the peer's address as axum's
/// `ConnectInfo<SocketAddr>`) until `shutdown`, then lets in-flight requests finish.
pub async fn serve_http(
    router: axum::Router,
    listener: TcpListener,
    listening: Listening,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let accepted = accept::accept(listener, &listening.bounds, &listening.metrics, shutdown.clone());
    let limits = listening.bounds.limits.clone();
    let header_timeouts = listening
        .metrics
        .connections_refused(listening.bounds.listener.name(), "header_timeout");
    let builder = http_builder(&limits);
    match listening.tls {
        None => {
            let (plain, conns) = mpsc::channel(1);
            tokio::spawn(async move {
                let mut accepted = accepted;
                while let Some((s, peer, slot)) = accepted.recv().await {
                    if plain.send((Conn::new(s, slot, &limits), peer)).await.is_err() {
                        return;
                    }
                }
            });
            serve_http_conns(router, builder, conns, header_timeouts, shutdown).await
        }
        Some(tls) => {
            let ready = tls_handshakes(accepted, tls, &listening.metrics, limits);
            serve_http_conns(router, builder, ready, header_timeouts, shutdown).await
        }
    }
}

/// hyper's HTTP/1 and HTTP/2 server with `limits`: HTTP/1's header-read timeout (which also
/// bounds a kept-alive connection's wait for its next request), HTTP/2's stream cap and
/// keep-alive pings.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.grpc_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout);
    builder
}

async fn serve_http_conns<I>(
    router: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    mut conns: mpsc::Receiver<(I, SocketAddr)>,
    header_timeouts: prometheus_client::metrics::counter::Counter,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            conn = conns.recv() => match conn {
                Some(conn) => conn,
                None => break,
            },
        };
        let router = router.clone();
        let service =
            tower::ServiceExt::map_request(router, move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let served = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let served = graceful.watch(served);
        let header_timeouts = header_timeouts.clone();
        tokio::spawn(async move {
            if let Err(e) = served.await {
                if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                    header_timeouts.inc();
                }
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
    drop(conns);
    graceful.shutdown().await;
    Ok(())
}

/// Finished handshakes waiting for the server to take them.
const HANDSHAKEN_QUEUE: usize = 128;

/// Runs the TLS handshake of each connection `accepted` hands over, each in a task of its own
/// bounded by [`tls::HANDSHAKE_TIMEOUT`], and hands out the ones that finished, in the order
/// they finish.
fn tls_handshakes(
    mut accepted: mpsc::Receiver<(TcpStream, SocketAddr, Slot)>,
    tls: Arc<ServerTls>,
    metrics: &Metrics,
    limits: Limits,
) -> mpsc::Receiver<(Conn<TlsStream<TcpStream>>, SocketAddr)> {
    let (ready, handed_out) = mpsc::channel(HANDSHAKEN_QUEUE);
    let name = tls.listener();
    let [succeeded, failed, timed_out] =
        ["success", "failure", "timeout"].map(|outcome| metrics.tls_handshakes(name, outcome));
    tokio::spawn(async move {
        while let Some((stream, peer, slot)) = accepted.recv().await {
            let acceptor = tls.acceptor();
            let ready = ready.clone();
            let (succeeded, failed, timed_out) = (succeeded.clone(), failed.clone(), timed_out.clone());
            let limits = limits.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        succeeded.inc();
                        let _ = ready.send((Conn::new(tls, slot, &limits), peer)).await;
                    }
                    Ok(Err(e)) => {
                        failed.inc();
                        tracing::debug!(listener = name, %peer, "TLS handshake failed: {e}");
                    }
                    Err(_) => {
                        timed_out.inc();
                        tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    handed_out
}
