//! The decision, computed in one place for every front door: `Request` in, `Decision` out.
//!
//! Order of steps: find the token ([`crate::token`]) → verify it ([`crate::verify`]) → check the
//! token came from a source its provider enables → allow with identity headers. Route policies,
//! revocation and rate limits slot in between verification and the decision.
//! Nothing here knows gRPC or HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{Config, Source};
use crate::rejection::{Rejection, tonic_code};
use crate::token;
use crate::verify::{ProviderKeys, Verified, Verifier};

/// The request being checked, as the proxy described it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Path including the query string.
    pub path: String,
    /// Host (`:authority`).
    pub host: String,
    /// Headers, names lower-case; repeated headers joined with `,`.
    pub headers: HashMap<String, String>,
    /// Envoy `context_extensions`.
    pub context: HashMap<String, String>,
    /// The proxy's request id, if it sent one.
    pub request_id: Option<String>,
}

impl Request {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
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
    /// Who the caller is, for dynamic metadata and logs.
    pub identity: Option<Identity>,
    /// Trace id for logs.
    pub trace_id: String,
}

/// Who a verified caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Provider name.
    pub provider: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`, if a string.
    pub subject: Option<String>,
}

/// A refused request: the status, the `WWW-Authenticate` challenge and the JSON body are all
/// derived from the one [`Rejection`], so both doors answer alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// Why.
    pub rejection: Rejection,
    /// Trace id the client can quote.
    pub trace_id: String,
    realm: Arc<str>,
}

impl Deny {
    /// HTTP status for the client.
    pub fn http_status(&self) -> u16 {
        self.rejection.http_status()
    }

    /// gRPC status code for Envoy.
    pub fn grpc_code(&self) -> tonic_code::Code {
        self.rejection.grpc_code()
    }

    /// Response headers for the client: the RFC 6750 challenge on 401/403, the JSON content
    /// type and the trace id.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(3);
        if matches!(self.http_status(), 401 | 403) {
            headers.push(("www-authenticate", self.www_authenticate()));
        }
        headers.push(("content-type", "application/json".into()));
        headers.push(("x-jwtgate-trace-id", self.trace_id.clone()));
        headers
    }

    /// `WWW-Authenticate` per RFC 6750 §3.
    pub fn www_authenticate(&self) -> String {
        match self.rejection.oauth_error() {
            None => format!("Bearer realm=\"{}\"", self.realm),
            Some(code) => format!(
                "Bearer realm=\"{}\", error=\"{code}\", error_description=\"{}\"",
                self.realm,
                quoted_safe(&self.rejection.reason())
            ),
        }
    }

    /// JSON body `{error, reason, trace_id}`.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": self.rejection.body_error(),
            "reason": self.rejection.reason(),
            "trace_id": self.trace_id,
        })
        .to_string()
    }
}

/// RFC 6750 `error_description` allows %x20-21 / %x23-5B / %x5D-7E only.
fn quoted_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '_',
        })
        .collect()
}

/// Orders the steps of a decision.
pub struct Gate {
    verifier: Verifier,
    sources: Vec<Source>,
    identity_headers: Vec<String>,
    realm: Arc<str>,
}

impl Gate {
    /// Builds the gate (and every provider's key store) from a validated config.
    pub fn new(config: &Config, client: &reqwest::Client) -> Self {
        let mut sources: Vec<Source> = Vec::new();
        let mut identity_headers: Vec<String> = Vec::new();
        for p in &config.providers {
            for s in &p.sources {
                if !sources.contains(s) {
                    sources.push(s.clone());
                }
            }
            for h in p.claims_to_headers.iter().map(|(_, h)| h).chain(p.payload_header.iter()) {
                if !identity_headers.contains(h) {
                    identity_headers.push(h.clone());
                }
            }
        }
        Self {
            verifier: Verifier::new(config, client),
            sources,
            identity_headers,
            realm: Arc::from(config.realm.as_str()),
        }
    }

    /// The verifier, for key status and background refresh.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// May this request pass, and with which identity?
    pub async fn decide(&self, req: &Request) -> Decision {
        let trace_id = trace_id(req);
        match self.authenticate(req).await {
            Ok((verified, provider, source)) => {
                let allow = self.allow(req, &verified, provider, source, trace_id);
                tracing::debug!(trace_id = %allow.trace_id, provider = %verified.provider, "allow");
                Decision::Allow(allow)
            }
            Err(rejection) => {
                tracing::info!(trace_id = %trace_id, reason = rejection.label(), method = %req.method, "deny");
                Decision::Deny(Deny {
                    rejection,
                    trace_id,
                    realm: self.realm.clone(),
                })
            }
        }
    }

    async fn authenticate<'g>(&'g self, req: &Request) -> Result<(Verified, &'g Arc<ProviderKeys>, &'g Source), Rejection> {
        let (token, source) = token::extract(req, &self.sources).ok_or(Rejection::MissingToken)?;
        let (verified, provider) = self.verifier.verify(&token).await?;
        if !provider.config.sources.contains(source) {
            return Err(Rejection::SourceNotAllowed);
        }
        Ok((verified, provider, source))
    }

    fn allow(&self, req: &Request, v: &Verified, provider: &ProviderKeys, source: &Source, trace_id: String) -> Allow {
        let p = &provider.config;
        let mut set_headers = Vec::new();
        for (claim, header) in &p.claims_to_headers {
            if let Some(value) = claim_path(&v.claims, claim).and_then(header_value) {
                set_headers.push((header.clone(), value));
            }
        }
        if let Some(h) = &p.payload_header {
            set_headers.push((h.clone(), v.payload_b64.clone()));
        }
        let mut remove_headers: Vec<String> = self
            .identity_headers
            .iter()
            .filter(|h| req.headers.contains_key(*h) && !set_headers.iter().any(|(s, _)| s == *h))
            .cloned()
            .collect();
        if let (false, Source::Header { name, .. }) = (p.forward_token, source) {
            remove_headers.push(name.clone());
        }
        Allow {
            set_headers,
            remove_headers,
            identity: Some(Identity {
                provider: v.provider.to_string(),
                issuer: v.issuer.clone(),
                subject: v.subject.clone(),
            }),
            trace_id,
        }
    }
}

/// Looks up a dot path such as `realm_access.roles`.
pub fn claim_path<'c>(claims: &'c serde_json::Map<String, Value>, path: &str) -> Option<&'c Value> {
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// Renders a claim as a header value: strings as is, numbers and booleans as text, arrays of
/// scalars joined with `,`, objects as JSON. Values with control characters are dropped.
fn header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(_) | Value::Bool(_) => Some(i.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .join(","),
        Value::Object(_) => v.to_string(),
        Value::Null => return None,
    };
    (!text.chars().any(char::is_control) && text.len() <= 8192).then_some(text)
}

/// The proxy's request id, else the W3C trace id, else a fresh one; always short and printable.
fn trace_id(req: &Request) -> String {
    let from_traceparent = || {
        req.header("traceparent")
            .and_then(|tp| tp.split('-').nth(1))
            .map(str::to_owned)
    };
    req.request_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| req.header("x-request-id").map(str::to_owned))
        .or_else(from_traceparent)
        .filter(|id| id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_paths_walk_objects() {
        let c = json!({"realm_access":{"roles":["a","b"]},"sub":"x"});
        let c = c.as_object().unwrap();
        assert_eq!(claim_path(c, "realm_access.roles"), Some(&json!(["a", "b"])));
        assert_eq!(claim_path(c, "sub.x"), None);
        assert_eq!(claim_path(c, "nope"), None);
    }

    #[test]
    fn header_values_render_scalars_and_refuse_control_chars() {
        assert_eq!(header_value(&json!("a")), Some("a".into()));
        assert_eq!(header_value(&json!(5)), Some("5".into()));
        assert_eq!(header_value(&json!(["a", 1])), Some("a,1".into()));
        assert_eq!(header_value(&json!("a\r\nx-evil: 1")), None);
        assert_eq!(header_value(&json!(null)), None);
    }

    #[test]
    fn www_authenticate_follows_rfc6750() {
        let d = |r| Deny { rejection: r, trace_id: "t".into(), realm: Arc::from("jwtgate") };
        assert_eq!(d(Rejection::MissingToken).www_authenticate(), "Bearer realm=\"jwtgate\"");
        assert_eq!(
            d(Rejection::Expired).www_authenticate(),
            "Bearer realm=\"jwtgate\", error=\"invalid_token\", error_description=\"token expired\""
        );
        let body: Value = serde_json::from_str(&d(Rejection::Expired).body()).unwrap();
        assert_eq!(body, json!({"error":"invalid_token","reason":"token expired","trace_id":"t"}));
        assert!(d(Rejection::KeysUnavailable).headers().iter().all(|(k, _)| *k != "www-authenticate"));
    }

    #[test]
    fn trace_ids_are_taken_only_when_safe() {
        let mut r = Request { request_id: Some("abc-123".into()), ..Request::default() };
        assert_eq!(trace_id(&r), "abc-123");
        r.request_id = Some("evil\"\r\n".into());
        assert_eq!(trace_id(&r).len(), 32);
        r.request_id = None;
        r.headers.insert("traceparent".into(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        assert_eq!(trace_id(&r), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
