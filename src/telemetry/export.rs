//! Span export off the request path: a finished span goes into a bounded queue without waiting
//! ([`ExportQueue`]); one task on the runtime sends batches to the collector ([`Worker`]). A full
//! queue or a failed export drops spans and counts them in
//! `jwtgate_trace_spans_dropped_total`, so a slow or unreachable collector never slows a check.
//! (The SDK's own batch processor keeps its drop count private; this one is counted.)

use std::time::Duration;

use jwtgate_core::metrics::Families;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Spans waiting for export; more are dropped.
pub const QUEUE_CAPACITY: usize = 2048;
/// Spans sent in one export call.
pub const MAX_BATCH: usize = 512;
/// Longest a span waits in the queue before a partial batch is sent.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);

/// `jwtgate_trace_spans_dropped_total`: the counter the queue counts its losses in (shown as 0
/// by a server that exports nothing).
#[derive(Debug)]
pub struct SpansDropped(Counter);

impl Families for SpansDropped {
    fn register(registry: &mut Registry) -> Self {
        let dropped = Counter::default();
        registry.register(
            "jwtgate_trace_spans_dropped",
            "Finished spans not exported: the export queue was full or the collector failed",
            dropped.clone(),
        );
        Self(dropped)
    }
}

impl SpansDropped {
    /// The counter, for [`crate::telemetry::install`].
    pub fn counter(&self) -> Counter {
        self.0.clone()
    }
}

/// The span processor: hands finished, sampled spans to the [`Worker`].
#[derive(Debug)]
pub struct ExportQueue {
    tx: mpsc::Sender<SpanData>,
    dropped: Counter,
    closed: CancellationToken,
}

/// The task that exports; [`Worker::finish`] waits for the last batch.
pub struct Worker {
    task: JoinHandle<()>,
    closed: CancellationToken,
}

impl ExportQueue {
    /// The queue, and its worker started on the current Tokio runtime sending to `exporter`.
    pub fn start<E: SpanExporter + 'static>(exporter: E, dropped: Counter, timeout: Duration) -> (Self, Worker) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let closed = CancellationToken::new();
        let task = tokio::spawn(run(exporter, rx, dropped.clone(), timeout, closed.clone()));
        let worker = Worker {
            task,
            closed: closed.clone(),
        };
        (Self { tx, dropped, closed }, worker)
    }
}

impl SpanProcessor for ExportQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.closed.cancel();
        Ok(())
    }
}

impl Worker {
    /// Waits, at most `grace`, for the worker to export what was queued before shutdown.
    pub async fn finish(self, grace: Duration) {
        self.closed.cancel();
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

async fn run<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    dropped: Counter,
    timeout: Duration,
    closed: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let deadline = tokio::time::sleep(BATCH_DELAY);
        tokio::pin!(deadline);
        // Collect until the batch is full, the delay has passed, or shutdown.
        let last = loop {
            tokio::select! {
                biased;
                () = closed.cancelled() => break true,
                span = rx.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() == MAX_BATCH {
                            break false;
                        }
                    }
                    None => break true,
                },
                () = &mut deadline => break false,
            }
        };
        if last {
            while batch.len() < QUEUE_CAPACITY + MAX_BATCH
                && let Ok(span) = rx.try_recv()
            {
                batch.push(span);
            }
        }
        if !batch.is_empty() {
            let spans = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            let n = spans.len() as u64;
            match tokio::time::timeout(timeout, exporter.export(spans)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    dropped.inc_by(n);
                    tracing::warn!("trace export failed, {n} spans dropped: {e}");
                }
                Err(_) => {
                    dropped.inc_by(n);
                    tracing::warn!("trace export timed out after {timeout:?}, {n} spans dropped");
                }
            }
        }
        if last {
            let _ = exporter.shutdown();
            return;
        }
    }
}
