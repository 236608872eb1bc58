//! How the listeners serve: connections are taken within the listener's bounds
//! ([`super::accept`]: a cap, timeouts, an accept loop that pauses when out of descriptors),
//! over TLS when the listener has it ([`crate::tls`]), and each is served by hyper in a task of
//! its own ([`super::connection`]: requests counted in flight and cut at `request_timeout`, the
//! connection closed when idle, a graceful shutdown). The gRPC listeners serve tonic's routes
//! over HTTP/2 with corked writes (see the `cork` module: one socket write per batch of ready
//! responses); the HTTP listeners serve axum over HTTP/1.1 (hyper's header-read timer in force)
//! and HTTP/2, the peer address known. `jwtgate serve` serves through these functions, and so
//! does `jwtgate-bench`'s no-op baseline, so the two run the same stack and the difference
//! between them is what deciding costs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use jwtgate_core::config::limits::Limits;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::{self, Bounds, Conn, ConnectionMetrics, Slot};
use super::connection::{self, Activity, Served, Tracked};
use super::cork::Corked;
use crate::tls::{self, ServerTls, TlsMetrics};
use jwtgate_core::metrics::Metrics;

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

/// Serves the gRPC services of `routes` on `listener` over HTTP/2 until `shutdown`, then lets
/// in-flight calls finish.
pub async fn serve_grpc(
    routes: tonic::service::Routes,
    listener: TcpListener,
    listening: Listening,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let accepted = accept::accept(listener, &listening.bounds, &listening.metrics, shutdown.clone());
    let served = served(&listening, shutdown);
    let limits = served.limits.clone();
    let builder = grpc_builder(&limits);
    let each = move |io: Io, _peer, served: &Served| {
        let activity = Activity::new(limits.grpc_concurrency_per_connection);
        let service = Tracked {
            inner: routes.clone(),
            activity: activity.clone(),
            timeout: limits.request_timeout,
            timed_out: || tonic::Status::deadline_exceeded("limits.request_timeout").into_http(),
            counter: served.request_timeouts.clone(),
        };
        let conn = builder.serve_connection(TokioIo::new(Corked::new(io)), TowerToHyperService::new(service));
        connection::spawn(conn, activity, served);
    };
    serve_each(connections(accepted, &listening, &served.limits), &served, each).await;
    Ok(())
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2; handlers may read the peer's address as
/// axum's `ConnectInfo<SocketAddr>`) until `shutdown`, then lets in-flight requests finish.
pub async fn serve_http(
    router: axum::Router,
    listener: TcpListener,
    listening: Listening,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let accepted = accept::accept(listener, &listening.bounds, &listening.metrics, shutdown.clone());
    let served = served(&listening, shutdown);
    let limits = served.limits.clone();
    let builder = http_builder(&limits);
    let each = move |io: Io, peer: SocketAddr, served: &Served| {
        let activity = Activity::new(None);
        let with_peer = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let service = Tracked {
            inner: with_peer,
            activity: activity.clone(),
            timeout: limits.request_timeout,
            timed_out: || (axum::http::StatusCode::REQUEST_TIMEOUT, "request timeout\n").into_response(),
            counter: served.request_timeouts.clone(),
        };
        let conn = builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        connection::spawn(conn, activity, served);
    };
    serve_each(connections(accepted, &listening, &served.limits), &served, each).await;
    Ok(())
}

/// What the connections of `listening` share.
fn served(listening: &Listening, shutdown: CancellationToken) -> Served {
    let name = listening.bounds.listener.name();
    let connections = listening.metrics.families::<ConnectionMetrics>();
    let counter = |reason| connections.refused(name, reason);
    Served {
        limits: listening.bounds.limits.clone(),
        header_timeouts: counter("header_timeout"),
        idle_closed: counter("idle_timeout"),
        request_timeouts: counter("request_timeout"),
        shutdown,
        tracker: TaskTracker::new(),
    }
}

/// A served connection: plaintext or TLS, closing itself when silent.
type Io = Either<Conn<TcpStream>, Conn<TlsStream<TcpStream>>>;

/// The accepted connections ready to serve: wrapped, after their TLS handshake when the
/// listener has TLS.
fn connections(
    mut accepted: mpsc::Receiver<(TcpStream, SocketAddr, Slot)>,
    listening: &Listening,
    limits: &Limits,
) -> mpsc::Receiver<(Io, SocketAddr)> {
    let (conns, taken) = mpsc::channel(1);
    let limits = limits.clone();
    match listening.tls.clone() {
        None => {
            tokio::spawn(async move {
                while let Some((s, peer, slot)) = accepted.recv().await {
                    if conns
                        .send((Either::Left(Conn::new(s, slot, &limits)), peer))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        Some(tls) => {
            let mut ready = tls_handshakes(accepted, tls, &listening.metrics, limits);
            tokio::spawn(async move {
                while let Some((s, peer)) = ready.recv().await {
                    if conns.send((Either::Right(s), peer)).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    taken
}

/// Hands each connection to `each` until shutdown, then waits for the connections to finish.
async fn serve_each(
    mut conns: mpsc::Receiver<(Io, SocketAddr)>,
    served: &Served,
    mut each: impl FnMut(Io, SocketAddr, &Served),
) {
    loop {
        tokio::select! {
            () = served.shutdown.cancelled() => break,
            conn = conns.recv() => match conn {
                Some((io, peer)) => each(io, peer, served),
                None => break,
            },
        }
    }
    drop(conns);
    served.tracker.close();
    served.tracker.wait().await;
}

/// hyper's HTTP/2 server for gRPC with `limits`: the stream cap and keep-alive pings.
fn grpc_builder(limits: &Limits) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.grpc_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout);
    builder
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
    let handshakes = metrics.families::<TlsMetrics>();
    let [succeeded, failed, timed_out] =
        ["success", "failure", "timeout"].map(|outcome| handshakes.handshakes(name, outcome));
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
