//! Logs and traces for `jwtgate serve`: one `tracing` subscriber with the log layer (text, or
//! JSON lines carrying `trace_id`/`span_id`) and, when `telemetry.tracing` names a collector, the
//! OpenTelemetry layer whose spans leave through [`export::ExportQueue`].
//!
//! A door asks [`check_span`] for each check: it reads the W3C `traceparent`/`tracestate` the
//! request carries, samples parent-based (a sampled parent is followed, an unsampled one too,
//! roots at `sample_ratio`), and gives the `ext_authz.check` span to run the gate in, with the
//! trace id the denial shows. Checks that are not sampled get no span at all (a trace id only),
//! so at `sample_ratio: 0.01` ninety-nine checks in a hundred pay a header lookup and a random
//! number.

pub mod export;
pub mod json_log;

use std::sync::OnceLock;
use std::time::Duration;

use jwtgate_core::config::{OtlpProtocol, TracingConfig};
use jwtgate_core::request::Headers;
pub use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider};
use prometheus_client::metrics::counter::Counter;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Bound on one export call to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Root sampling, set once when the OpenTelemetry layer is installed; unset, nothing is traced.
static SAMPLING: OnceLock<f64> = OnceLock::new();

/// Which front door answered a check: the `door` of its span and of its duration's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Envoy ext_authz over gRPC.
    Grpc,
    /// The HTTP door (Nginx, forward-auth, Envoy's HTTP mode).
    Http,
}

impl Door {
    /// The label value: `grpc` or `http`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// The installed pipeline; [`Telemetry::shutdown`] exports what is still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    queue: Option<export::Worker>,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("telemetry.tracing.otlp_endpoint: cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already set.
    #[error("cannot install the log and trace subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the process's subscriber: logs to stderr filtered by `JWTGATE_LOG` (default `info`),
/// JSON lines with `JWTGATE_LOG_FORMAT=json`; spans exported as `config` says, their losses
/// counted in `dropped`. Call it inside the Tokio runtime (the exporter runs on it).
pub fn install(config: &TracingConfig, dropped: Counter) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_env("JWTGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("JWTGATE_LOG_FORMAT").is_ok_and(|f| f == "json");
    install_with(config, dropped, filter, json)
}

/// [`install`] with the log filter and format given (JSON lines when `json`).
pub fn install_with(
    config: &TracingConfig,
    dropped: Counter,
    filter: EnvFilter,
    json: bool,
) -> Result<Telemetry, TelemetryError> {
    // The log layer sees events only: spans are the trace layer's (and cost it nothing). Every
    // filter states its most verbose level, so the subscriber's is the log filter's and a
    // `debug!` below it is skipped at the call site, as with no trace layer at all.
    let events = filter.and(filter_fn(|meta| meta.is_event()).with_max_level_hint(LevelFilter::TRACE));
    let log = if json {
        tracing_subscriber::fmt::layer()
            .event_format(json_log::JsonLines)
            .with_writer(std::io::stderr)
            .with_filter(events)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(events)
            .boxed()
    };
    let Some(otlp) = &config.export else {
        Registry::default().with(log).try_init()?;
        return Ok(Telemetry {
            provider: None,
            queue: None,
        });
    };
    let mut exporter = match otlp.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&otlp.url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?,
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&otlp.url)
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(
                reqwest::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()
                    .unwrap_or_default(),
            )
            .build()?,
    };
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
    let (queue, worker) = export::ExportQueue::start(exporter, dropped, EXPORT_TIMEOUT);
    // Which checks are traced is decided in `check_span`; a span that exists is recorded.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(queue)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build();
    let trace = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("jwtgate"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_context_activation(false)
        .with_filter(
            filter_fn(|meta| meta.is_span() && matches!(meta.name(), "ext_authz.check" | "jwks.fetch"))
                .with_max_level_hint(LevelFilter::INFO),
        );
    Registry::default().with(log).with(trace).try_init()?;
    let _ = SAMPLING.set(config.sample_ratio);
    tracing::info!(
        endpoint = %otlp.url,
        protocol = otlp.protocol.as_str(),
        sample_ratio = config.sample_ratio,
        "exporting traces"
    );
    Ok(Telemetry {
        provider: Some(provider),
        queue: Some(worker),
    })
}

impl Telemetry {
    /// Ends the pipeline: spans still queued are exported, within `grace`.
    pub async fn shutdown(self, grace: Duration) {
        if let Some(provider) = self.provider {
            // Closes the queue (the worker then exports what is left and stops).
            let _ = provider.shutdown();
        }
        if let Some(worker) = self.queue {
            worker.finish(grace).await;
        }
    }
}

/// A check's span (disabled when the check is not traced) and the trace id its denial shows.
pub struct CheckTrace {
    /// `ext_authz.check`, to run the gate in; the gate records route, provider, decision,
    /// reason (and `enduser.id` with `record_subject`) on it.
    pub span: tracing::Span,
    /// 32 lower-case hex digits: the parent's trace id, else the span's new one.
    pub trace_id: String,
}

/// A checked request's headers, as the trace propagator reads them (`traceparent`,
/// `tracestate`).
pub struct GateHeaders<'a>(pub &'a Headers);

impl Extractor for GateHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name).collect()
    }
}

/// The span for one check answered at `door`, with `headers` (lower-case names) as the proxy
/// sent them.
pub fn check_span(door: Door, headers: &dyn Extractor) -> CheckTrace {
    let parent = headers
        .get("traceparent")
        .is_some()
        .then(|| remote_parent(headers))
        .flatten();
    let sampled = match (SAMPLING.get(), &parent) {
        (None, _) => false,
        (Some(_), Some(parent)) => parent.is_sampled(),
        (Some(&ratio), None) => ratio >= 1.0 || rand::random::<f64>() < ratio,
    };
    if !sampled {
        let trace_id = parent.map_or_else(|| RandomIdGenerator::default().new_trace_id(), |p| p.trace_id());
        return CheckTrace {
            span: tracing::Span::none(),
            trace_id: format!("{trace_id:032x}"),
        };
    }
    let span = tracing::info_span!(
        "ext_authz.check",
        otel.kind = "server",
        door = door.label(),
        route = Empty,
        provider = Empty,
        decision = Empty,
        reason = Empty,
        dry_run = Empty,
        enduser.id = Empty,
    );
    if let Some(parent) = parent {
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
    let trace_id = span.context().span().span_context().trace_id();
    CheckTrace {
        span,
        trace_id: format!("{trace_id:032x}"),
    }
}

/// What `jwtgate serve` would do with the trace of a request with `headers`, in one line for
/// `jwtgate check` (which exports nothing itself).
pub fn explain(config: &TracingConfig, headers: &dyn Extractor) -> String {
    let parent = remote_parent(headers);
    let bad_header = headers.get("traceparent").is_some() && parent.is_none();
    let Some(otlp) = &config.export else {
        return "not exported (no telemetry.tracing.otlp_endpoint)".into();
    };
    let to = format!("exported to {} ({})", otlp.url, otlp.protocol.as_str());
    match parent {
        Some(p) if p.is_sampled() => format!(
            "traced as a child of span {:016x} of trace {:032x}, {to}",
            p.span_id(),
            p.trace_id()
        ),
        Some(p) => format!(
            "not traced: the traceparent's trace {:032x} is unsampled (its trace id is shown)",
            p.trace_id()
        ),
        None => format!(
            "a root{}: traced at sample_ratio {}, {to}",
            if bad_header {
                " (the traceparent is not valid W3C)"
            } else {
                ""
            },
            config.sample_ratio
        ),
    }
}

/// The caller's span from `traceparent` (and `tracestate`), if the header is valid W3C.
fn remote_parent(headers: &dyn Extractor) -> Option<SpanContext> {
    use opentelemetry::propagation::TextMapPropagator;
    let cx = TraceContextPropagator::new().extract(headers);
    let parent = cx.span().span_context().clone();
    parent.is_valid().then_some(parent)
}
