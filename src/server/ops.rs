//! The operations endpoints on the HTTP listener: `/healthz` (the process answers), `/readyz`
//! (every provider has usable keys, revocations are loaded, not draining; with each store's
//! state) and `/metrics` (Prometheus text, or OpenMetrics when asked). They read the gate in
//! force through [`jwtgate_core::status`]; none of them decides anything.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use jwtgate_core::gate::Gate;
use jwtgate_core::keys::KeyStatus;
use jwtgate_core::live::SharedGate;
use jwtgate_core::metrics::Format;
use jwtgate_core::revocation::StoreStatus;
use jwtgate_core::status;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// What the operations endpoints read.
struct Ops {
    /// The gate, swapped on reload.
    gate: SharedGate,
    /// Fires when draining begins (SIGTERM); `/readyz` then answers 503.
    draining: CancellationToken,
}

/// `/healthz`, `/readyz` and `/metrics`, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>(gate: SharedGate, draining: CancellationToken) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Ops { gate, draining }))
}

/// The `/readyz` body.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Every provider has usable keys and the process is not shutting down.
    pub ready: bool,
    /// Whether draining (shutdown) has begun.
    pub shutting_down: bool,
    /// Each provider's key state.
    pub providers: Vec<KeyStatus>,
    /// The revocation store: a disconnected Redis is reported here but does not make jwtgate
    /// unready (every revocation already known is still enforced).
    pub revocation: Option<StoreStatus>,
    /// The shared rate-limit store, if any: disconnected, `on_store_error` applies (not unready).
    pub rate_limits: Option<RateStoreStatus>,
}

/// The shared rate-limit store's state in `/readyz`.
#[derive(Debug, Serialize)]
pub struct RateStoreStatus {
    /// `redis`.
    pub store: &'static str,
    /// Whether a connection is up.
    pub connected: bool,
}

/// Readiness now: every provider's keys usable, revocations loaded, not shutting down.
pub fn readiness(gate: &Gate, shutdown: &CancellationToken) -> Readiness {
    let verifier = gate.verifier();
    Readiness {
        ready: status::ready(gate) && !shutdown.is_cancelled(),
        shutting_down: shutdown.is_cancelled(),
        providers: verifier
            .providers_by_name()
            .into_iter()
            .map(|p| p.keys.status())
            .collect(),
        revocation: gate.shared().store.as_ref().map(|s| s.status()),
        rate_limits: gate.shared().rate_store.as_ref().map(|s| RateStoreStatus {
            store: "redis",
            connected: s.connected(),
        }),
    }
}

async fn readyz(State(state): State<Arc<Ops>>) -> impl IntoResponse {
    let r = readiness(&state.gate.load(), &state.draining);
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
}

/// Prometheus text 0.0.4, or OpenMetrics when the scraper's `Accept` asks for it.
async fn metrics(State(state): State<Arc<Ops>>, headers: HeaderMap) -> impl IntoResponse {
    let format = asked_format(&headers);
    let text = status::metrics_text(&state.gate.load(), format);
    ([("content-type", format.content_type())], text)
}

/// The format a scraper's `Accept` asks for: OpenMetrics when it names it, else classic.
fn asked_format(headers: &HeaderMap) -> Format {
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        Format::OpenMetrics
    } else {
        Format::Classic
    }
}
