//! Decisions as the doors answer them: one place maps a [`Decision`] to the gRPC `CheckResponse`
//! (or gRPC error) and to the HTTP response, so that both doors always agree. A refusal's HTTP
//! status and gRPC code come from its [`Class`] together; its `WWW-Authenticate` challenge
//! (RFC 6750 §3), `Retry-After`, JSON body and trace-id header from the [`Deny`] alone.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderValue as EnvoyHeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use jwtgate_core::rejection::{Class, Rejection};
use jwtgate_core::request::{Allow, Decision, Deny};
use tonic::{Code, Status};

/// `Retry-After` on a 503 (keys unavailable): about one refetch backoff step.
pub const RETRY_AFTER_UNAVAILABLE_SECS: u32 = 5;

/// The header that carries the trace id on every answer.
pub const TRACE_ID_HEADER: &str = "x-jwtgate-trace-id";

/// A refusal's HTTP status and gRPC code, always set together.
pub fn status_and_code(rejection: &Rejection) -> (u16, Code) {
    match rejection.class() {
        Class::Unauthenticated => (401, Code::Unauthenticated),
        Class::Forbidden => (403, Code::PermissionDenied),
        Class::Unavailable => (503, Code::Unavailable),
        Class::Limited => (429, Code::ResourceExhausted),
        Class::BadRequest => (400, Code::InvalidArgument),
    }
}

/// The HTTP status a refusal is answered with.
pub fn http_status(rejection: &Rejection) -> u16 {
    status_and_code(rejection).0
}

/// `WWW-Authenticate` per RFC 6750 §3.
/// With DPoP in play (`Deny::dpop_algs`), the DPoP scheme and its `algs` (RFC 9449 §7.1).
pub fn www_authenticate(deny: &Deny) -> String {
    let realm = &deny.realm;
    let scheme = if deny.dpop_algs.is_some() { "DPoP" } else { "Bearer" };
    let mut v = format!("{scheme} realm=\"{realm}\"");
    if let Some(code) = deny.rejection.oauth_error() {
        v.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            quoted_safe(&deny.rejection.reason())
        ));
        if let Some(scope) = deny.rejection.required_scope() {
            v.push_str(&format!(", scope=\"{}\"", quoted_safe(&scope)));
        }
    }
    if let Some(algs) = &deny.dpop_algs {
        v.push_str(&format!(", algs=\"{algs}\""));
    }
    v
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) for one rule:
/// its quota over its window, what is left and when the quota is back (seconds).
pub fn rate_limit_headers(
    rule: &str,
    limit: u64,
    window_secs: u64,
    remaining: u64,
    reset_secs: u64,
) -> [(&'static str, String); 2] {
    [
        ("ratelimit-policy", format!("\"{rule}\";q={limit};w={window_secs}")),
        ("ratelimit", format!("\"{rule}\";r={remaining};t={reset_secs}")),
    ]
}

/// Response headers of a refusal: the RFC 6750 challenge on 401/403, `Retry-After` on 503 and
/// 429 (with the rule's `RateLimit-Policy` and `RateLimit`), the JSON content type and the trace
/// id.
pub fn deny_headers(deny: &Deny) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(5);
    match (&deny.rejection, deny.rejection.class()) {
        (Rejection::RateLimited(e), _) => {
            headers.push(("retry-after", e.retry_after_secs.to_string()));
            headers.extend(rate_limit_headers(
                &e.rule,
                e.limit,
                e.window_secs,
                0,
                e.retry_after_secs,
            ));
        }
        (_, Class::Unauthenticated | Class::Forbidden) => headers.push(("www-authenticate", www_authenticate(deny))),
        // Keys are being refetched in the background; a client may try again shortly.
        (_, Class::Unavailable | Class::Limited) => {
            headers.push(("retry-after", RETRY_AFTER_UNAVAILABLE_SECS.to_string()));
        }
        // Not a credential problem: no challenge, nothing to wait for.
        (_, Class::BadRequest) => {}
    }
    headers.push(("content-type", "application/json".into()));
    headers.push((TRACE_ID_HEADER, deny.trace_id.clone()));
    headers
}

/// The JSON body of a refusal: `{error, reason, trace_id}`.
pub fn deny_body(deny: &Deny) -> String {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        error: &'a str,
        reason: &'a str,
        trace_id: &'a str,
    }
    let body = Body {
        error: deny.rejection.body_error(),
        reason: &deny.rejection.reason(),
        trace_id: &deny.trace_id,
    };
    // Serialising three strings cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
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

/// The gRPC door's answer: `OK` with the identity headers, a `denied_response`, or — when jwtgate
/// cannot decide (keys unavailable) — the gRPC error `UNAVAILABLE`, so the proxy's failure mode
/// applies.
pub fn check_response(decision: Decision) -> Result<CheckResponse, Status> {
    match decision {
        Decision::Allow(allow) => Ok(ok_response(allow)),
        Decision::Deny(deny) => match status_and_code(&deny.rejection) {
            (_, Code::Unavailable) => Err(Status::unavailable(format!(
                "{} (trace id {})",
                deny.rejection.reason(),
                deny.trace_id
            ))),
            (status, code) => Ok(denied_response(&deny, status, code)),
        },
    }
}

#[allow(deprecated)] // `append` is what Envoy's ext_authz client reads; `false` means overwrite.
fn envoy_header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(EnvoyHeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

fn string(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

/// The `RateLimit` headers an allowed request's client gets (`rate_limits.headers_on_allow`).
fn allow_rate_limit_headers(allow: &Allow) -> Vec<(&'static str, String)> {
    allow.rate_limit.as_ref().map_or_else(Vec::new, |h| {
        rate_limit_headers(&h.rule, h.limit, h.window_secs, h.remaining, h.reset_secs).to_vec()
    })
}

fn ok_response(allow: Allow) -> CheckResponse {
    let response_headers_to_add = allow_rate_limit_headers(&allow)
        .into_iter()
        .map(|(k, v)| envoy_header(k, v))
        .collect();
    let dynamic_metadata = allow.identity.map(|id| {
        let mut fields = HashMap::from([
            ("provider".to_owned(), string(id.provider.to_string())),
            ("iss".to_owned(), string(id.issuer.to_string())),
        ]);
        if let Some(sub) = id.subject {
            fields.insert("sub".into(), string(sub));
        }
        Struct {
            fields: HashMap::from([(
                "jwtgate".to_owned(),
                Value {
                    kind: Some(Kind::StructValue(Struct { fields })),
                },
            )]),
        }
    });
    CheckResponse {
        status: Some(rpc::Status {
            code: Code::Ok.into(),
            ..Default::default()
        }),
        dynamic_metadata,
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: allow
                .set_headers
                .into_iter()
                .map(|(k, v)| envoy_header(&k, v))
                .collect(),
            headers_to_remove: allow.remove_headers,
            query_parameters_to_remove: allow.remove_query_parameters,
            response_headers_to_add,
            ..Default::default()
        })),
    }
}

fn denied_response(deny: &Deny, status: u16, code: Code) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: code.into(),
            message: deny.rejection.reason().into_owned(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(status),
            }),
            headers: deny_headers(deny)
                .into_iter()
                .map(|(k, v)| envoy_header(k, v))
                .collect(),
            body: deny_body(deny),
        })),
    }
}

/// The HTTP door's answer. Allow → exactly 200 with the identity headers (a removed identity
/// header is sent empty, so a proxy that copies it overwrites the client's copy); in Envoy's
/// HTTP mode also `x-envoy-auth-headers-to-remove`. Deny → the status, headers and JSON body.
pub fn http_response(decision: Decision, envoy: bool) -> Response {
    // Each map is sized to what goes in: one sized for 8 holds 12 entries, about 1.3 KiB, past
    // glibc's per-thread cache, so every answer also paid for merging the freed small blocks.
    fn put(out: &mut HeaderMap, k: &str, v: &str) {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            out.insert(k, v);
        }
    }
    match decision {
        Decision::Allow(allow) => {
            let rate_limit = allow_rate_limit_headers(&allow);
            let envoy_removes = envoy && !allow.remove_headers.is_empty();
            let count = allow.set_headers.len() + allow.remove_headers.len() + rate_limit.len() + 1;
            let mut out = HeaderMap::with_capacity(count + usize::from(envoy_removes));
            for (k, v) in &allow.set_headers {
                put(&mut out, k, v);
            }
            for k in &allow.remove_headers {
                put(&mut out, k, "");
            }
            if envoy_removes {
                put(
                    &mut out,
                    "x-envoy-auth-headers-to-remove",
                    &allow.remove_headers.join(", "),
                );
            }
            for (k, v) in rate_limit {
                put(&mut out, k, &v);
            }
            put(&mut out, TRACE_ID_HEADER, &allow.trace_id);
            with_parts(StatusCode::OK, out, Body::empty())
        }
        Decision::Deny(deny) => {
            let headers = deny_headers(&deny);
            let mut out = HeaderMap::with_capacity(headers.len());
            for (k, v) in headers {
                put(&mut out, k, &v);
            }
            let status = StatusCode::from_u16(http_status(&deny.rejection)).unwrap_or(StatusCode::FORBIDDEN);
            with_parts(status, out, Body::from(deny_body(&deny)))
        }
    }
}

/// A response of `status`, `headers` and `body`, the header map moved in whole (a
/// `(status, headers, body)` tuple copies it into the response's own map, header by header).
fn with_parts(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn deny(rejection: Rejection) -> Deny {
        Deny {
            rejection,
            trace_id: "t".into(),
            realm: Arc::from("jwtgate"),
            dpop_algs: None,
        }
    }

    #[test]
    fn dpop_refusals_challenge_with_the_dpop_scheme_and_its_algs() {
        use jwtgate_core::binding::BindingError;
        use jwtgate_core::binding::ProofError;
        let with_dpop = |r| Deny {
            dpop_algs: Some(Arc::from("ES256 EdDSA")),
            ..deny(r)
        };
        assert_eq!(
            www_authenticate(&with_dpop(Rejection::InvalidDpopProof(ProofError::Uri))),
            "DPoP realm=\"jwtgate\", error=\"invalid_dpop_proof\", error_description=\"DPoP proof htu does not match the request URI\", algs=\"ES256 EdDSA\""
        );
        assert_eq!(
            www_authenticate(&with_dpop(Rejection::Unbound(BindingError::BoundSentAsBearer))),
            "DPoP realm=\"jwtgate\", error=\"invalid_token\", error_description=\"DPoP-bound token sent as Bearer; send it with the DPoP scheme and a proof\", algs=\"ES256 EdDSA\""
        );
        let body: serde_json::Value = serde_json::from_str(&deny_body(&with_dpop(Rejection::InvalidDpopProof(
            ProofError::Replayed,
        ))))
        .unwrap();
        assert_eq!(body["error"], "invalid_dpop_proof");
        assert_eq!(http_status(&Rejection::InvalidDpopProof(ProofError::Replayed)), 401);
        assert_eq!(http_status(&Rejection::Unbound(BindingError::CertificateMismatch)), 401);
        assert_eq!(http_status(&Rejection::ReplayCheckUnavailable), 503);
    }

    #[test]
    fn www_authenticate_follows_rfc6750() {
        assert_eq!(
            www_authenticate(&deny(Rejection::MissingToken)),
            "Bearer realm=\"jwtgate\""
        );
        assert_eq!(
            www_authenticate(&deny(Rejection::Expired)),
            "Bearer realm=\"jwtgate\", error=\"invalid_token\", error_description=\"token expired\""
        );
        let body: serde_json::Value = serde_json::from_str(&deny_body(&deny(Rejection::Expired))).unwrap();
        assert_eq!(
            body,
            json!({"error":"invalid_token","reason":"token expired","trace_id":"t"})
        );
        assert!(
            deny_headers(&deny(Rejection::KeysUnavailable))
                .iter()
                .all(|(k, _)| *k != "www-authenticate")
        );
    }

    #[test]
    fn keys_unavailable_is_503_unavailable_not_401() {
        assert_eq!(status_and_code(&Rejection::KeysUnavailable), (503, Code::Unavailable));
        let headers = deny_headers(&deny(Rejection::KeysUnavailable));
        assert!(headers.contains(&("retry-after", "5".into())), "{headers:?}");
        let answer = check_response(Decision::Deny(deny(Rejection::KeysUnavailable))).unwrap_err();
        assert_eq!(answer.code(), Code::Unavailable);
    }

    #[test]
    fn bad_tokens_are_401_unauthenticated_and_missing_scope_403_permission_denied() {
        assert_eq!(
            status_and_code(&Rejection::Malformed("invalid base64url")),
            (401, Code::Unauthenticated)
        );
        let scope = Rejection::MissingScope(vec!["api.read".into(), "api.write".into()]);
        assert_eq!(status_and_code(&scope), (403, Code::PermissionDenied));
        assert_eq!(
            www_authenticate(&deny(scope)),
            "Bearer realm=\"jwtgate\", error=\"insufficient_scope\", error_description=\"missing scope: api.read api.write\", scope=\"api.read api.write\""
        );
    }

    #[test]
    fn both_doors_answer_a_denial_with_the_same_status_headers_and_body() {
        let d = deny(Rejection::MissingRole(vec!["admin".into()]));
        let grpc = check_response(Decision::Deny(d.clone())).unwrap();
        let Some(HttpResponse::DeniedResponse(denied)) = grpc.http_response else {
            panic!("a denied_response")
        };
        let http = http_response(Decision::Deny(d.clone()), false);
        assert_eq!(denied.status.map(|s| s.code), Some(i32::from(http.status().as_u16())));
        assert_eq!(grpc.status.map(|s| s.code), Some(i32::from(Code::PermissionDenied)));
        for h in denied.headers.iter().filter_map(|h| h.header.as_ref()) {
            assert_eq!(
                http.headers().get(&h.key).and_then(|v| v.to_str().ok()),
                Some(h.value.as_str()),
                "{}",
                h.key
            );
        }
        assert_eq!(denied.body, deny_body(&d));
    }
}
