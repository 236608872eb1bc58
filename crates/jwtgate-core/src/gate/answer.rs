//! The answer: an allow with every identity header set or removed and the token stripped where
//! its provider says so, or a denial logged within its budget; the trace id; what the check's
//! span records.

use super::{Caller, Gate};
use std::sync::Arc;

use crate::config::Source;
use crate::rejection::Rejection;
use crate::request::{Allow, Decision, Deny, Request};
use crate::token;
use crate::verify::Verified;

impl Gate {
    /// What the check decided, on the door's `ext_authz.check` span (when it is traced): the
    /// route, the provider, the decision, the reason, and the subject only with
    /// `record_subject`. Never a token or a claim value otherwise.
    pub(super) fn record_on_span(
        &self,
        route_name: &str,
        verified: Option<&Verified>,
        result: &Result<(), Rejection>,
        dry_run: bool,
    ) {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return;
        }
        span.record("route", route_name);
        if let Some(v) = verified {
            span.record("provider", &*v.provider);
            if self.record_subject
                && let Some(sub) = &v.subject
            {
                span.record("enduser.id", sub.as_str());
            }
        }
        match result {
            Ok(()) => span.record("decision", "allow"),
            Err(rejection) => {
                span.record("decision", if dry_run { "allow" } else { "deny" });
                span.record("dry_run", dry_run);
                span.record("reason", rejection.label())
            }
        };
    }

    /// A denial, logged within the denial log's budget (the caller counts it).
    pub(super) fn deny(
        &self,
        req: &Request,
        route_name: &str,
        rejection: Rejection,
        trace_id: String,
        dpop_algs: Option<Arc<str>>,
    ) -> Decision {
        if self.denial_log.admit() {
            let request_id = req.request_id.as_deref();
            tracing::info!(trace_id = %trace_id, request_id, route = route_name, reason = rejection.label(), method = %req.method, "deny");
        }
        Decision::Deny(Deny {
            rejection,
            trace_id,
            realm: self.realm.clone(),
            dpop_algs,
        })
    }

    /// An allow: the identity headers of the caller's tokens set, every other identity header
    /// removed, and tokens stripped from the request where their provider does not forward them.
    pub(super) fn allow(
        &self,
        req: &Request,
        caller: Option<&Caller<'_>>,
        also: &[Caller<'_>],
        trace_id: String,
    ) -> Allow {
        let mut set_headers: Vec<(String, String)> = Vec::new();
        let identity = caller.map(|c| c.verified.identity());
        let callers = caller.into_iter().chain(also);
        for Caller {
            verified: v, provider, ..
        } in callers.clone()
        {
            let p = &provider.config;
            for ((_, header), value) in p.claims_to_headers.iter().zip(v.header_values.iter()) {
                // With all_of, the first token that names a header sets it.
                if let Some(value) = value
                    && !set_headers.iter().any(|(h, _)| h == header)
                {
                    set_headers.push((header.clone(), value.clone()));
                }
            }
            if let (Some(h), Some(payload)) = (&p.payload_header, &v.payload_b64)
                && !set_headers.iter().any(|(s, _)| s == h)
            {
                set_headers.push((h.clone(), payload.clone()));
            }
        }
        // Every identity header is answered, set or removed, whether or not the check request
        // showed it: Envoy's HTTP mode sends only its `allowed_headers`, so a forged copy the
        // client sent may reach the upstream unseen unless the answer removes it.
        let mut remove_headers: Vec<String> = self
            .identity_headers
            .iter()
            .filter(|h| !set_headers.iter().any(|(s, _)| s == *h))
            .cloned()
            .collect();
        let mut remove_query_parameters = Vec::new();
        for Caller { source, .. } in callers.filter(|c| !c.provider.config.forward_token) {
            match source {
                Source::Header { name, .. } => remove_headers.push(name.clone()),
                Source::Cookie(name) => {
                    // Several all_of tokens in cookies: cut each out of what is left.
                    let current = match set_headers.iter().position(|(h, _)| h == "cookie") {
                        Some(i) => Some(set_headers.remove(i).1),
                        None if remove_headers.iter().any(|h| h == "cookie") => None,
                        None => req.header("cookie").map(str::to_owned),
                    };
                    match current.and_then(|c| token::without_cookie(&c, name)) {
                        Some(rest) => set_headers.push(("cookie".into(), rest)),
                        None if !remove_headers.iter().any(|h| h == "cookie") => remove_headers.push("cookie".into()),
                        None => {}
                    }
                }
                Source::Query(name) => remove_query_parameters.push(name.clone()),
            }
        }
        Allow {
            set_headers,
            remove_headers,
            remove_query_parameters,
            identity,
            trace_id,
            rate_limit: None,
        }
    }

    /// A denial decided by a front door before the gate could run (e.g. the HTTP door cannot
    /// tell which request to check); counted and logged like any other.
    pub fn refuse(&self, req: &Request, rejection: Rejection) -> Decision {
        self.counters.denied(None, None, &rejection);
        self.deny(req, "(none)", rejection, trace_id(req), None)
    }
}

/// The check's W3C trace id: the door's span's, else the `traceparent`'s, else a fresh one —
/// always 32 lower-case hex digits, so it is safe in a header, a body and a log line.
pub(super) fn trace_id(req: &Request) -> String {
    let valid = |id: &str| {
        id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) && id.bytes().any(|b| b != b'0')
    };
    req.trace_id
        .as_deref()
        .filter(|id| valid(id))
        .or_else(|| {
            req.header("traceparent")
                .and_then(|tp| tp.trim().split('-').nth(1))
                .filter(|id| valid(id))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    #[test]
    fn trace_ids_are_the_spans_else_the_traceparents_else_new_and_always_w3c() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut r = Request {
            request_id: Some("abc-123".into()),
            ..Request::default()
        };
        let fresh = trace_id(&r);
        assert!(
            fresh.len() == 32 && fresh.bytes().all(|b| b.is_ascii_hexdigit()),
            "{fresh}"
        );
        assert_ne!(fresh, trace_id(&r), "a fresh id each time");
        r.headers.insert("traceparent".into(), tp.into());
        assert_eq!(trace_id(&r), "4bf92f3577b34da6a3ce929d0e0e4736");
        r.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        assert_eq!(trace_id(&r), "0af7651916cd43dd8448eb211c80319c");
        for bad in [
            "evil\"\r\n",
            "00000000000000000000000000000000",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
        ] {
            r.trace_id = None;
            r.headers
                .insert("traceparent".into(), format!("00-{bad}-00f067aa0ba902b7-01"));
            assert_ne!(trace_id(&r), bad);
            assert_eq!(trace_id(&r).len(), 32);
        }
    }
}
