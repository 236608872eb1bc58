//! The HTTP listener: the HTTP front door for Nginx `auth_request`, ingress-nginx, Envoy's HTTP
//! ext_authz mode (and Istio's `envoyExtAuthzHttp`, Envoy Gateway) and Traefik/Caddy
//! forward-auth, beside the operations endpoints ([`ops`]). It only translates: which door was
//! asked and what it was sent → [`Request`] ([`original::read`], which reads the one header
//! family the door's configuration names, believing only its trusted proxies), and the decision
//! → status, headers and body ([`render`]). The gate decides.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jwtgate_core::config::http_auth::Family;
use jwtgate_core::live::SharedGate;
use jwtgate_core::original::{self, Asked};
use jwtgate_core::request::{Decision, Headers, Request};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::metrics::DoorDurations;
use super::{ops, render};
use crate::telemetry::{self, Door};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The gate, swapped on reload.
    pub gate: SharedGate,
    /// Fires when draining begins (SIGTERM); `/readyz` then answers 503.
    pub draining: CancellationToken,
    /// Where the door's answers are timed.
    pub durations: DoorDurations,
}

/// The HTTP router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .merge(ops::router(state.gate.clone(), state.draining.clone()))
        .fallback(door)
        // One `Arc` per request (axum clones the state for each), not the gate's handle and the
        // drain token's lock-taking clone.
        .with_state(Arc::new(state))
}

/// Every door (`http_auth`: `/auth`, `envoy_prefix`, `doors`): the door asked reads the request
/// being checked from its own header family ([`original::read`]); any other path is 404. The
/// whole request is taken (not the `HeaderMap` extractor, which clones every header on each
/// check).
async fn door(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: HttpRequest,
) -> Response {
    let started = Instant::now();
    let gate = state.gate.load_full();
    let uri = request.uri();
    let Some((door, rest)) = gate.http_auth().door(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut req = Request {
        headers: gate_headers(request.headers()),
        ..Request::default()
    };
    let asked = Asked {
        method: request.method().as_str(),
        rest,
        query: uri.query(),
    };
    if let Err(refusal) = original::read(door, peer, asked, &mut req) {
        let refused = gate.refuse(&req, refusal);
        return answer(&state.durations, started, refused, door.family);
    }
    let trace = telemetry::check_span(Door::Http, &telemetry::GateHeaders(&req.headers));
    req.trace_id = Some(trace.trace_id);
    let decision = gate.decide(&req).instrument(trace.span).await;
    answer(&state.durations, started, decision, door.family)
}

/// Headers as the gate sees them: lower-case names, repeated values joined with `,` (`; ` for
/// `cookie`). A value with bytes beyond visible ASCII is kept — as UTF-8, or with U+FFFD for
/// what is not — never left out: a header that vanished would let the door fall back to another
/// (`X-Original-Host: admin.example.com:²`, which nginx serves as admin.example.com, would have
/// been decided on the check request's own `Host`). Packed: two allocations, not two per header.
pub fn gate_headers(headers: &HeaderMap) -> Headers {
    let bytes = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 2)
        .sum();
    let mut out = Headers::with_capacity(headers.keys_len(), bytes);
    for (name, value) in headers {
        match value.to_str() {
            Ok(value) => out.append(name.as_str(), value),
            Err(_) => out.append(name.as_str(), &String::from_utf8_lossy(value.as_bytes())),
        }
    }
    out
}

/// The response for `decision`, its time since `started` recorded.
fn answer(durations: &DoorDurations, started: Instant, decision: Decision, family: Family) -> Response {
    let allowed = matches!(decision, Decision::Allow(_));
    let response = render::http_response(decision, family == Family::Envoy);
    durations.answered(allowed, started.elapsed());
    response
}
