//! Taking connections within a listener's bounds (`limits:`): a cap on open connections (the
//! excess closed at accept and counted), an accept loop that pauses instead of spinning when the
//! process is out of file descriptors, and connections that close themselves when silent.
//!
//! Every listener gets its own accept task and its own cap, so a flood on one (the HTTP door is
//! often the one a client can reach) cannot take the file descriptors the others need: the
//! default caps are a share of the process's file limit, which start raises to its hard limit
//! as Go's runtime does.
//!
//! A [`Conn`] counts as open from accept until dropped (`jwtgate_connections{listener}`), TLS
//! handshake included. It closes itself (a read fails with `TimedOut`) when its first
//! [`FIRST_BYTES`] have not arrived within `header_read_timeout` — a silent gRPC connection, a
//! TLS session with nothing in it. HTTP/1 request heads have hyper's own `header_read_timeout`
//! on top (see `transport`); once serving, a connection with no request in flight for
//! `idle_timeout` is closed by `connection`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use jwtgate_core::config::limits::{Limits, Listener};
use jwtgate_core::metrics::{Families, Metrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// Bytes a connection must send within `header_read_timeout`: an HTTP/2 connection preface
/// (and shorter than any HTTP/1.1 request head with its `Host`).
pub const FIRST_BYTES: u64 = 24;
/// File descriptors kept out of the listeners' default shares: key fetches, Redis, the OTLP
/// exporter, the key cache, the config file.
pub const RESERVED_FILES: u64 = 128;
/// First pause after an accept that failed for want of file descriptors or memory; it doubles
/// up to [`MAX_ACCEPT_PAUSE`] while accepts keep failing.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between failed accepts.
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// At most one warning per listener and reason in this interval (the rest are counted in it).
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the server (or a TLS handshake) to take them.
const QUEUE: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerReason {
    listener: &'static str,
    reason: &'static str,
}

/// The connection families: open connections (counted by [`accept`] and [`Slot`]) and the ones
/// a listener closed or could not take (counted here, by `transport` and by `connection`), by
/// listener.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabels, Gauge>,
    refused: Family<ListenerReason, Counter>,
}

impl Families for ConnectionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwtgate_connections",
            "Open connections on each listener (TLS handshakes in progress included)",
            m.open.clone(),
        );
        registry.register(
            "jwtgate_connections_refused",
            "Connections a listener closed or could not take, by listener and reason (max_connections: closed at accept, the listener's cap was reached; out_of_files: accept failed for want of file descriptors or memory, retried after a pause; header_timeout: no request head in time; idle_timeout: nothing read or written in time)",
            m.refused.clone(),
        );
        m
    }
}

impl ConnectionMetrics {
    /// The open-connections gauge of `listener` (`grpc`, `http`, `admin`, `introspection`).
    pub fn open(&self, listener: &'static str) -> Gauge {
        self.open.get_or_create(&ListenerLabels { listener }).clone()
    }

    /// The counter of connections `listener` closed or could not take, for `reason`.
    pub fn refused(&self, listener: &'static str, reason: &'static str) -> Counter {
        self.refused.get_or_create(&ListenerReason { listener, reason }).clone()
    }
}

/// One listener's bounds, resolved at start.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Which listener.
    pub listener: Listener,
    /// Most connections open at once.
    pub max_connections: usize,
    /// The timeouts and stream limits in force.
    pub limits: Limits,
}

impl Bounds {
    /// `listener`'s bounds under `limits`, with its cap (see [`caps`]).
    pub fn new(listener: Listener, limits: &Limits, max_connections: usize) -> Self {
        Self {
            listener,
            max_connections,
            limits: limits.clone(),
        }
    }
}

/// Raises the soft file limit to the hard one (what Go's runtime does at start) and returns it;
/// `None` when it cannot be read.
pub fn raise_file_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// Each listener's connection cap: the config's, else its default bounded by an equal share of
/// `files` (the process's file limit) less [`RESERVED_FILES`], so that one listener full leaves
/// the others their descriptors. Also whether the caps together exceed that budget (then a
/// flood on one can still starve the rest: worth a warning).
pub fn caps(limits: &Limits, listeners: &[Listener], files: Option<u64>) -> (Vec<usize>, bool) {
    let budget = files.map(|f| usize::try_from(f.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX));
    let share = budget.map(|b| (b / listeners.len().max(1)).max(1));
    let caps: Vec<usize> = listeners
        .iter()
        .map(|&l| {
            limits.max_connections(l).unwrap_or_else(|| {
                let default = l.default_max_connections();
                share.map_or(default, |s| default.min(s))
            })
        })
        .collect();
    let over = budget.is_some_and(|b| caps.iter().sum::<usize>() > b);
    (caps, over)
}

/// Holds a place under a listener's cap; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
    header_timeouts: Counter,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Accepts connections on `listener` until `shutdown`, within `bounds`; see the module docs.
/// Each accepted connection comes with the [`Slot`] it holds.
pub fn accept(
    listener: TcpListener,
    bounds: &Bounds,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> mpsc::Receiver<(TcpStream, SocketAddr, Slot)> {
    let (queue, taken) = mpsc::channel(QUEUE);
    let name = bounds.listener.name();
    let cap = bounds.max_connections;
    let places = Arc::new(Semaphore::new(cap));
    let metrics = metrics.families::<ConnectionMetrics>();
    let open = metrics.open(name);
    let [over_cap, out_of_files, header_timeouts] =
        ["max_connections", "out_of_files", "header_timeout"].map(|reason| metrics.refused(name, reason));
    tokio::spawn(async move {
        let mut pause = FIRST_ACCEPT_PAUSE;
        let mut cap_warning = Throttled::default();
        let mut files_warning = Throttled::default();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if out_of_resources(&e) => {
                    out_of_files.inc();
                    if let Some(more) = files_warning.due() {
                        tracing::warn!(
                            listener = name,
                            also = more,
                            "accept failed: {e}; pausing accepts (raise the file limit, or lower limits.max_connections)"
                        );
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
                    continue;
                }
                Err(e) => {
                    // The peer gave up before accept (ECONNABORTED) and the like.
                    tracing::debug!(listener = name, "accept failed: {e}");
                    continue;
                }
            };
            pause = FIRST_ACCEPT_PAUSE;
            let Ok(permit) = places.clone().try_acquire_owned() else {
                over_cap.inc();
                if let Some(more) = cap_warning.due() {
                    tracing::warn!(listener = name, max_connections = cap, %peer, also = more, "connection closed at accept: the listener's limits.max_connections is reached");
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            open.inc();
            let slot = Slot {
                _permit: permit,
                open: open.clone(),
                header_timeouts: header_timeouts.clone(),
            };
            if queue.send((stream, peer, slot)).await.is_err() {
                return;
            }
        }
    });
    taken
}

/// Failures that mean the process (or system) is out of descriptors or memory: accepting again
/// at once would fail again.
fn out_of_resources(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// Lets one warning through per [`WARN_INTERVAL`] and counts the ones held back.
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    held: u64,
}

impl Throttled {
    /// `Some(held back since the last one)` when a warning is due.
    fn due(&mut self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < WARN_INTERVAL) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// A connection within its listener's bounds: holds its [`Slot`] and closes itself when its
/// first bytes are late (see the module docs).
#[derive(Debug)]
pub struct Conn<S> {
    io: S,
    slot: Slot,
    /// Bytes still owed of the first [`FIRST_BYTES`].
    owed: u64,
    /// `header_read_timeout` from the handover, while bytes are owed; then gone.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Conn<S> {
    /// Wraps an accepted connection (after its TLS handshake, when there is one).
    pub fn new(io: S, slot: Slot, limits: &Limits) -> Self {
        Self {
            io,
            slot,
            owed: FIRST_BYTES,
            deadline: Some(Box::pin(tokio::time::sleep(limits.header_read_timeout))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let Some(deadline) = self.deadline.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                let read = (buf.filled().len() - before) as u64;
                self.owed = self.owed.saturating_sub(read);
                if self.owed == 0 {
                    self.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                self.slot.header_timeouts.inc();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within limits.header_read_timeout",
                )))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(files: &[(Listener, Option<usize>)]) -> Limits {
        let mut yaml = String::from(
            "providers: [{ name: corp, issuer: \"https://idp.example.com/\", jwks_uri: \"https://idp.example.com/keys\" }]\nlimits:\n  max_connections: {",
        );
        for (l, n) in files {
            if let Some(n) = n {
                yaml.push_str(&format!(" {}: {n},", l.name()));
            }
        }
        yaml.push_str(" }\n");
        jwtgate_core::config::Config::parse(&yaml, "t.yaml", std::path::Path::new("."))
            .expect("valid")
            .limits
    }

    #[test]
    fn default_caps_share_a_low_file_limit_and_stay_at_their_default_under_a_high_one() {
        let l = limits(&[]);
        let three = [Listener::Grpc, Listener::Http, Listener::Admin];
        assert_eq!(caps(&l, &three, Some(256)), (vec![42, 42, 42], false));
        assert_eq!(caps(&l, &three, Some(1 << 20)), (vec![4096, 4096, 64], false));
        assert_eq!(caps(&l, &three, None), (vec![4096, 4096, 64], false));
    }

    #[test]
    fn configured_caps_are_kept_and_flagged_when_they_exceed_the_budget() {
        let l = limits(&[(Listener::Http, Some(500))]);
        let (caps, over) = caps(&l, &[Listener::Grpc, Listener::Http], Some(256));
        assert_eq!(caps, vec![64, 500]);
        assert!(over);
    }

    #[test]
    fn a_throttled_warning_passes_once_per_interval_and_counts_the_rest() {
        let mut t = Throttled::default();
        let start = Instant::now();
        assert_eq!(t.due_at(start), Some(0));
        assert_eq!(t.due_at(start + Duration::from_secs(1)), None);
        assert_eq!(t.due_at(start + Duration::from_secs(9)), None);
        assert_eq!(t.due_at(start + WARN_INTERVAL), Some(2));
        assert_eq!(t.due_at(start + WARN_INTERVAL), None);
    }
}
