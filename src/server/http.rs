//! The HTTP listener: the HTTP front door for Nginx `auth_request`, Envoy's HTTP ext_authz mode
//! (and Istio's `envoyExtAuthzHttp`) and Traefik/Caddy forward-auth, plus `/healthz`, `/readyz`
//! and `/metrics`. It only translates: which request is being checked → [`Request`], and the
//! decision → status, headers and body ([`render`]). The gate decides.
//!
//! Which request is being checked:
//! - under `http_auth.envoy_prefix` (Envoy HTTP mode): this request's method, and its path with
//!   the prefix removed; its `Host`;
//! - `/auth` with `X-Original-URI` and `X-Original-Method` (Nginx; host from `X-Original-Host`,
//!   else `Host`), or with `X-Forwarded-Method`, `X-Forwarded-Host` and `X-Forwarded-Uri`
//!   (Traefik, Caddy). These headers are believed only from `http_auth.trusted_proxies`; from
//!   anyone else, or when they are missing, the answer is 403 "original request unknown".

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use jwtgate_core::binding;
use jwtgate_core::config::routes::{HttpAuth, canonical_ip};
use jwtgate_core::gate::Gate;
use jwtgate_core::keys::KeyStatus;
use jwtgate_core::live::SharedGate;
use jwtgate_core::metrics::{Door, Format};
use jwtgate_core::rejection::Rejection;
use jwtgate_core::request::{ClientCert, Decision, Headers, Request};
use jwtgate_core::revocation::StoreStatus;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::render;
use crate::telemetry;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The gate, swapped on reload.
    pub gate: SharedGate,
    /// Fires when draining begins (SIGTERM); `/readyz` then answers 503.
    pub draining: CancellationToken,
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

/// Readiness now: every provider's keys usable.
pub fn readiness(gate: &Gate, shutdown: &CancellationToken) -> Readiness {
    let verifier = gate.verifier();
    Readiness {
        ready: gate.ready() && !shutdown.is_cancelled(),
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

/// The HTTP router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/auth", any(auth))
        .fallback(envoy_mode)
        // One `Arc` per request (axum clones the state for each), not the gate's handle and the
        // drain token's lock-taking clone.
        .with_state(Arc::new(state))
}

async fn readyz(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    let r = readiness(&state.gate.load(), &state.draining);
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
}

/// Prometheus text 0.0.4, or OpenMetrics when the scraper's `Accept` asks for it.
async fn metrics(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::from_accept(header(&headers, "accept"));
    let text = state.gate.load().metrics_text(format);
    ([("content-type", format.content_type())], text)
}

/// Nginx `auth_request` and Traefik/Caddy forward-auth. The whole request is taken (not the
/// `HeaderMap` extractor, which clones every header on each check).
async fn auth(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: HttpRequest,
) -> Response {
    let started = Instant::now();
    let raw = request.headers();
    let headers = gate_headers(raw);
    let gate = state.gate.load_full();
    let original = original_request(gate.http_auth(), peer, &headers);
    match original {
        Some((method, uri, host)) => decide(&gate, started, (method, uri, host), peer, (raw, headers), false).await,
        None => {
            let req = Request {
                headers,
                ..Request::default()
            };
            let refused = gate.refuse(&req, Rejection::OriginalRequestUnknown);
            answer(&gate, started, refused, false)
        }
    }
}

/// Envoy HTTP mode: any method, any path under `envoy_prefix`; anything else is 404.
async fn envoy_mode(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: HttpRequest,
) -> Response {
    let started = Instant::now();
    let (method, uri, headers) = (request.method(), request.uri(), request.headers());
    let gate = state.gate.load_full();
    let Some(prefix) = gate.http_auth().envoy_prefix.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(rest) = uri
        .path()
        .strip_prefix(prefix)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut path = if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    };
    if let Some(q) = uri.query() {
        path.push('?');
        path.push_str(q);
    }
    let headers = (headers, gate_headers(headers));
    let host = headers.1.get("host").unwrap_or_default().to_owned();
    decide(
        &gate,
        started,
        (method.as_str().to_owned(), path, host),
        peer,
        headers,
        true,
    )
    .await
}

/// The (method, URI, host) of the request being checked, from headers that a trusted proxy set.
fn original_request(cfg: &HttpAuth, peer: SocketAddr, headers: &Headers) -> Option<(String, String, String)> {
    if !cfg.trusts(peer.ip()) {
        return None;
    }
    let host = |h: Option<&str>| h.or_else(|| headers.get("host")).unwrap_or_default().to_owned();
    if let (Some(uri), Some(method)) = (headers.get("x-original-uri"), headers.get("x-original-method")) {
        return Some((method.to_owned(), uri.to_owned(), host(headers.get("x-original-host"))));
    }
    if let (Some(uri), Some(method)) = (headers.get("x-forwarded-uri"), headers.get("x-forwarded-method")) {
        return Some((method.to_owned(), uri.to_owned(), host(headers.get("x-forwarded-host"))));
    }
    None
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Headers as the gate sees them: lower-case names, repeated values joined with `,`, values that
/// are not visible ASCII left out. Packed: two allocations, not two per header.
pub fn gate_headers(headers: &HeaderMap) -> Headers {
    let bytes = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 1)
        .sum();
    let mut out = Headers::with_capacity(headers.keys_len(), bytes);
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        out.append(name.as_str(), value);
    }
    out
}

/// The client's address: the peer's, or, from a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy (walking from the right, where trusted
/// proxies append), else `X-Real-IP`.
fn client_ip(cfg: &HttpAuth, peer: SocketAddr, headers: &Headers) -> IpAddr {
    let peer = canonical_ip(peer.ip());
    if !cfg.trusts(peer) {
        return peer;
    }
    // Repeated `X-Forwarded-For` lines are joined with `,` (the gate's headers), as one list.
    let hops: Vec<&str> = headers
        .get("x-forwarded-for")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    if hops.is_empty() {
        return headers
            .get("x-real-ip")
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .map_or(peer, canonical_ip);
    }
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        // Past an entry that is not an address, nothing can be believed: the hop that wrote it.
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical_ip) else {
            return nearest;
        };
        if !cfg.trusts(ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// What a trusted proxy says of the client's connection: the scheme (`X-Forwarded-Proto`, its
/// first value) and the client certificate (`http_auth.client_cert_header`: Envoy's
/// `X-Forwarded-Client-Cert`, or a header holding the certificate). Nothing from anyone else.
fn forwarded_tls(
    cfg: &HttpAuth,
    peer: SocketAddr,
    (raw, headers): (&HeaderMap, &Headers),
) -> (String, Option<ClientCert>) {
    if !cfg.trusts(peer.ip()) {
        return (String::new(), None);
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|p| p.split(',').next())
        .map(|p| p.trim().to_ascii_lowercase())
        .unwrap_or_default();
    // The certificate header's first line alone, as sent (a second would not be one certificate).
    let cert = header(raw, &cfg.client_cert_header)
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| {
            if cfg.client_cert_header == "x-forwarded-client-cert" {
                binding::from_xfcc(v)
            } else {
                Some(ClientCert::Encoded(v.to_owned()))
            }
        });
    (scheme, cert)
}

/// The gate's view of the request being checked, from what the HTTP door was sent: the client's
/// address, scheme and certificate as a trusted proxy reports them, and the headers as the gate
/// reads them (`headers`: as sent, and as [`gate_headers`] made them). No trace id yet (the
/// check's span gives it).
pub fn to_gate_request(
    cfg: &HttpAuth,
    (method, path, host): (String, String, String),
    peer: SocketAddr,
    (raw, headers): (&HeaderMap, Headers),
) -> Request {
    let client_ip = client_ip(cfg, peer, &headers);
    let (scheme, client_cert) = forwarded_tls(cfg, peer, (raw, &headers));
    let request_id = headers.get("x-request-id").map(str::to_owned);
    Request {
        method,
        path,
        host,
        scheme,
        client_cert,
        headers,
        context: HashMap::new(),
        request_id,
        client_ip: Some(client_ip),
        trace_id: None,
    }
}

async fn decide(
    gate: &Gate,
    started: Instant,
    original: (String, String, String),
    peer: SocketAddr,
    headers: (&HeaderMap, Headers),
    envoy: bool,
) -> Response {
    let mut req = to_gate_request(gate.http_auth(), original, peer, headers);
    let trace = telemetry::check_span(Door::Http, &telemetry::GateHeaders(&req.headers));
    req.trace_id = Some(trace.trace_id);
    let decision = gate.decide(&req).instrument(trace.span).await;
    answer(gate, started, decision, envoy)
}

/// The response for `decision`, its time since `started` recorded.
fn answer(gate: &Gate, started: Instant, decision: Decision, envoy: bool) -> Response {
    let allowed = matches!(decision, Decision::Allow(_));
    let response = render::http_response(decision, envoy);
    gate.metrics().check_answered(Door::Http, allowed, started.elapsed());
    response
}
