//! Envoy ext_authz v3 over gRPC (also Istio's `envoyExtAuthzGrpc`): translates a
//! `CheckRequest` into a [`Request`], runs the gate in the check's span, and hands the gate's
//! decision to [`render`]. It decides nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
use jwtgate_core::live::SharedGate;
use jwtgate_core::request::{ClientCert, Decision, Headers, Request};
use tonic::{Response, Status};
use tracing::Instrument;

use super::metrics::DoorDurations;
use super::render;
use crate::telemetry::{self, Door};

/// The `envoy.service.auth.v3.Authorization` service.
pub struct AuthorizationService {
    gate: SharedGate,
    durations: DoorDurations,
}

impl AuthorizationService {
    /// A service answering from `gate`, its answers timed in `durations`.
    pub fn new(gate: SharedGate, durations: DoorDurations) -> Self {
        Self { gate, durations }
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let envoy_span = trace_context(request.metadata());
        let mut req = to_gate_request(request.into_inner());
        let trace = match &envoy_span {
            Some(envoy) => telemetry::check_span(Door::Grpc, envoy),
            None => telemetry::check_span(Door::Grpc, &telemetry::GateHeaders(&req.headers)),
        };
        req.trace_id = Some(trace.trace_id);
        let gate = self.gate.load_full();
        let decision = gate.decide(&req).instrument(trace.span).await;
        let allowed = matches!(decision, Decision::Allow(_));
        let answer = render::check_response(decision).map(Response::new);
        self.durations.answered(allowed, started.elapsed());
        answer
    }
}

/// The W3C trace context of the gRPC call itself: Envoy, when it traces, sends its ext_authz
/// span there, the direct parent of the check. Without it the request's own headers (in the
/// `CheckRequest`) give the parent.
fn trace_context(metadata: &tonic::metadata::MetadataMap) -> Option<HashMap<String, String>> {
    let value = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let traceparent = value("traceparent")?;
    let mut context = HashMap::from([("traceparent".to_owned(), traceparent)]);
    if let Some(state) = value("tracestate") {
        context.insert("tracestate".into(), state);
    }
    Some(context)
}

/// The downstream client's IP: Envoy's `source.address` (a socket address; pipes and internal
/// addresses have none).
fn source_ip(source: Option<&Peer>) -> Option<IpAddr> {
    let address = source?.address.as_ref()?.address.as_ref()?;
    match address {
        address::Address::SocketAddress(s) => s.address.parse().ok(),
        _ => None,
    }
}

/// Moves what the gate needs out of Envoy's `AttributeContext`. Accepts both the `headers` map
/// and the newer `header_map` (repeated headers joined with `,` as Envoy does for the map, and
/// cookie crumbs with `; `).
pub fn to_gate_request(check: CheckRequest) -> Request {
    let Some(attrs) = check.attributes else {
        return Request::default();
    };
    let context = attrs.context_extensions;
    let client_ip = source_ip(attrs.source.as_ref());
    // URL-encoded PEM, when the filter has `include_peer_certificate: true`.
    let client_cert = attrs
        .source
        .as_ref()
        .map(|s| &s.certificate)
        .filter(|c| !c.is_empty())
        .map(|c| ClientCert::Encoded(c.clone()));
    let Some(http) = attrs.request.and_then(|r| r.http) else {
        return Request {
            context,
            client_ip,
            client_cert,
            ..Request::default()
        };
    };
    // Envoy sends lower-case names (HTTP/2 requires them); the map is rebuilt only if not.
    // (A fold, not `any`, so the scan of each name runs without a branch per byte.)
    let mixed_case = |k: &String| k.bytes().fold(false, |up, b| up | b.is_ascii_uppercase());
    let mut headers: Headers = if http.headers.keys().any(mixed_case) {
        http.headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    } else {
        http.headers.into()
    };
    if headers.is_empty()
        && let Some(map) = http.header_map
    {
        // Repeats joined as the gate reads them: `,`, or `; ` for cookie crumbs.
        for h in map.headers {
            let value = if h.raw_value.is_empty() {
                h.value
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            headers.append(&h.key.to_ascii_lowercase(), &value);
        }
    }
    let host = if http.host.is_empty() {
        headers.get(":authority").map(str::to_owned).unwrap_or_default()
    } else {
        http.host
    };
    Request {
        method: http.method,
        path: http.path,
        host,
        scheme: http.scheme,
        client_cert,
        headers,
        context,
        request_id: (!http.id.is_empty()).then_some(http.id),
        client_ip,
        trace_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};

    fn check_with_headers(headers: &[(&str, &str)]) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttrRequest {
                    http: Some(HttpRequest {
                        headers: headers
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn header_names_are_looked_up_lower_case_whatever_case_they_came_in() {
        let req = to_gate_request(check_with_headers(&[("Authorization", "Bearer x"), ("x-a", "1")]));
        assert_eq!(req.header("authorization"), Some("Bearer x"));
        assert_eq!(req.header("x-a"), Some("1"));
        let req = to_gate_request(check_with_headers(&[
            ("authorization", "Bearer y"),
            (":authority", "h"),
        ]));
        assert_eq!(req.header("authorization"), Some("Bearer y"));
        assert_eq!(req.host, "h");
    }
}
