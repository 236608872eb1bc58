//! One connection served: its requests counted while in flight and cut at
//! `limits.request_timeout`; the connection closed (HTTP/2: `GOAWAY`, then whatever streams it
//! still holds dropped [`CLOSE_GRACE`] later) once no request has been in flight for
//! `limits.idle_timeout` — the rule gRPC servers call `MaxConnectionIdle`. Answering pings, or
//! holding streams whose answers it never reads, keeps no connection open.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http;
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulConnection;
use jwtgate_core::config::limits::Limits;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connection closed as idle may take to finish its open streams before it is
/// dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// What every connection of one listener shares: its limits, its counters, the shutdown signal,
/// and the tracker shutdown waits on.
#[derive(Debug, Clone)]
pub struct Served {
    /// The limits in force.
    pub limits: Limits,
    /// Connections closed for want of a request head in time.
    pub header_timeouts: Counter,
    /// Connections closed as idle.
    pub idle_closed: Counter,
    /// Requests cut at `request_timeout`.
    pub request_timeouts: Counter,
    /// Fires at shutdown: connections finish their requests and close.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// A connection's requests in flight and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the last request's start or end.
    last_ms: AtomicU64,
    /// `grpc_concurrency_per_connection`, when set.
    permits: Option<Arc<Semaphore>>,
}

impl Activity {
    /// A fresh connection's, allowing `concurrency` requests at once when given.
    pub fn new(concurrency: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            permits: concurrency.map(|n| Arc::new(Semaphore::new(n))),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
                continue;
            }
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep(idle).await;
        }
    }
}

/// A request in flight; its end is recorded when dropped (answered, cut, or reset).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service whose requests count as the connection's activity and are cut at `timeout`,
/// answered then with `timed_out()`.
pub struct Tracked<S, R> {
    /// The service.
    pub inner: S,
    /// The connection's activity.
    pub activity: Arc<Activity>,
    /// `limits.request_timeout`.
    pub timeout: Duration,
    /// The answer to a request cut at the timeout.
    pub timed_out: fn() -> R,
    /// Counts requests cut.
    pub counter: Counter,
}

impl<S: Clone, R> Clone for Tracked<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            activity: self.activity.clone(),
            timeout: self.timeout,
            timed_out: self.timed_out,
            counter: self.counter.clone(),
        }
    }
}

impl<S, R> tower::Service<http::Request<Incoming>> for Tracked<S, R>
where
    S: tower::Service<http::Request<Incoming>, Response = R, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = R;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<R, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        let mut inner = self.inner.clone();
        let in_flight = InFlight::begin(&self.activity);
        let permits = self.activity.permits.clone();
        let (timeout, timed_out, counter) = (self.timeout, self.timed_out, self.counter.clone());
        Box::pin(async move {
            let _in_flight = in_flight;
            let answered = tokio::time::timeout(timeout, async move {
                let _permit = match permits {
                    Some(p) => p.acquire_owned().await.ok(),
                    None => None,
                };
                tower::ServiceExt::ready(&mut inner).await?;
                inner.call(req).await
            })
            .await;
            match answered {
                Ok(answer) => answer,
                Err(_) => {
                    counter.inc();
                    Ok(timed_out())
                }
            }
        })
    }
}

/// Serves `conn` in a task of `served`'s tracker until it ends, shutdown closes it, or it has
/// been idle for `idle_timeout` (see the module docs).
pub fn spawn<C>(conn: C, activity: Arc<Activity>, served: &Served)
where
    C: GracefulConnection + Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let served = served.clone();
    served.tracker.clone().spawn(async move {
        tokio::pin!(conn);
        let idle = activity.idle(served.limits.idle_timeout);
        tokio::pin!(idle);
        let dropped = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(dropped);
        let (mut closing, mut idle_closed) = (false, false);
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                            served.header_timeouts.inc();
                        }
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                () = served.shutdown.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = &mut idle, if !closing => {
                    closing = true;
                    idle_closed = true;
                    served.idle_closed.inc();
                    conn.as_mut().graceful_shutdown();
                    dropped.as_mut().reset(Instant::now() + CLOSE_GRACE);
                }
                () = &mut dropped, if idle_closed => {
                    tracing::debug!("idle connection dropped: its streams were still open after the grace");
                    return;
                }
            }
        }
    });
}
