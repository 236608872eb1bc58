//! The HTTP listener: `/healthz` (the process is alive) and `/readyz` (every provider has usable
//! keys, with a JSON body naming each provider's key state). It decides nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::gate::Gate;
use crate::keys::KeyStatus;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The gate (for key status).
    pub gate: Arc<Gate>,
    /// Fires at shutdown; `/readyz` then answers 503.
    pub shutdown: CancellationToken,
}

/// The `/readyz` body.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Every provider has usable keys and the process is not shutting down.
    pub ready: bool,
    /// Whether shutdown has begun.
    pub shutting_down: bool,
    /// Each provider's key state.
    pub providers: Vec<KeyStatus>,
}

/// Readiness now: every provider's keys usable.
pub fn readiness(gate: &Gate, shutdown: &CancellationToken) -> Readiness {
    let mut providers: Vec<KeyStatus> = gate.verifier().providers().map(|p| p.keys.status()).collect();
    providers.sort_by(|a, b| a.provider.cmp(&b.provider));
    let keys_ready = gate.verifier().providers().all(|p| p.keys.usable().is_some());
    Readiness {
        ready: keys_ready && !shutdown.is_cancelled(),
        shutting_down: shutdown.is_cancelled(),
        providers,
    }
}

/// The HTTP router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let r = readiness(&state.gate, &state.shutdown);
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r))
}
