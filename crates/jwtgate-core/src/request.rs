//! What a door hands the gate and what it gets back: [`Request`] in, [`Decision`] out. Below
//! every pipeline step (it imports none of them), so a step can read the request without an
//! import circle. A [`Deny`] carries the rejection and the challenge data; the doors' render
//! module turns it into statuses, headers and bodies.

use std::collections::HashMap;
use std::sync::Arc;

pub use crate::binding::ClientCert;
pub use crate::headers::Headers;
use crate::rejection::Rejection;

/// The request being checked, as the proxy described it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Path including the query string.
    pub path: String,
    /// Host (`:authority`).
    pub host: String,
    /// `http` or `https`, as the proxy says (Envoy's `scheme`, a trusted `X-Forwarded-Proto`);
    /// empty when it did not say (a DPoP proof's `htu` is then compared as `https`).
    pub scheme: String,
    /// The client's TLS certificate, as the proxy passed it (for certificate-bound tokens).
    pub client_cert: Option<ClientCert>,
    /// Headers, names lower-case; repeated headers joined with `,`.
    pub headers: Headers,
    /// Envoy `context_extensions`.
    pub context: HashMap<String, String>,
    /// The proxy's request id, if it sent one (logged beside the trace id).
    pub request_id: Option<String>,
    /// The client's address: Envoy's `source.address`, or on the HTTP door the peer or, from a
    /// trusted proxy, the forwarded address.
    pub client_ip: Option<std::net::IpAddr>,
    /// The W3C trace id (32 lower-case hex digits) of the check's span, set by the door that
    /// traces the check; without it the gate takes the `traceparent`'s or makes a new one.
    pub trace_id: Option<String>,
}

impl Request {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// What the proxy is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through, with these changes to it.
    Allow(Allow),
    /// Refuse it.
    Deny(Deny),
}

/// An allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// Headers to set on the upstream request (overwriting any the client sent).
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove from the upstream request.
    pub remove_headers: Vec<String>,
    /// Query parameters to remove from the upstream request (a token taken from the query with
    /// `forward_token: false`).
    pub remove_query_parameters: Vec<String>,
    /// Who the caller is, for dynamic metadata and logs.
    pub identity: Option<Identity>,
    /// Trace id for logs.
    pub trace_id: String,
    /// The tightest rate-limit rule's room, for `RateLimit` headers on the answer
    /// (`rate_limits.headers_on_allow`).
    pub rate_limit: Option<Headroom>,
}

/// How much room a rule has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headroom {
    /// The rule's name.
    pub rule: String,
    /// Its `limit`.
    pub limit: u64,
    /// Its window in whole seconds (rounded up).
    pub window_secs: u64,
    /// Whole requests still allowed now.
    pub remaining: u64,
    /// Seconds (rounded up) until the rule is back to full.
    pub reset_secs: u64,
}

/// Who a verified caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Provider name (shared with the verified token: no copy per check).
    pub provider: Arc<str>,
    /// `iss` (shared likewise).
    pub issuer: Arc<str>,
    /// `sub`, if a string.
    pub subject: Option<String>,
}

/// A refused request: why, and what the challenge names. Both doors derive the status, the
/// `WWW-Authenticate` challenge and the JSON body from these alone, so they answer alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// Why.
    pub rejection: Rejection,
    /// Trace id the client can quote.
    pub trace_id: String,
    /// The realm the challenge names (`realm:` in the config).
    pub realm: Arc<str>,
    /// With DPoP in play, the proof algorithms the challenge offers: the challenge is then
    /// `DPoP … algs="…"` (RFC 9449 §7.1) instead of `Bearer`.
    pub dpop_algs: Option<Arc<str>>,
}
