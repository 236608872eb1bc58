//! Envoy ext_authz v3 over gRPC (also Istio's `envoyExtAuthzGrpc`): translates a
//! `CheckRequest` into a [`gate::Request`] and a [`gate::Decision`] into a `CheckResponse`.
//! It decides nothing.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpResponse,
    HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

use crate::gate::{self, Allow, Decision, Deny};
use crate::rejection::tonic_code::Code;
use crate::server::SharedGate;

/// The `envoy.service.auth.v3.Authorization` service.
pub struct AuthorizationService {
    gate: SharedGate,
}

impl AuthorizationService {
    /// A service answering from `gate`.
    pub fn new(gate: SharedGate) -> Self {
        Self { gate }
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let req = to_gate_request(request.into_inner());
        let gate = self.gate.load_full();
        match gate.decide(&req).await {
            Decision::Allow(allow) => Ok(Response::new(ok_response(allow))),
            Decision::Deny(deny) if deny.grpc_code() == Code::Unavailable => Err(Status::unavailable(format!(
                "{} (trace id {})",
                deny.rejection.reason(),
                deny.trace_id
            ))),
            Decision::Deny(deny) => Ok(Response::new(denied_response(&deny))),
        }
    }
}

/// Moves what the gate needs out of Envoy's `AttributeContext`. Accepts both the `headers` map
/// and the newer `header_map` (repeated headers joined with `,`, as Envoy does for the map).
pub fn to_gate_request(check: CheckRequest) -> gate::Request {
    let Some(attrs) = check.attributes else {
        return gate::Request::default();
    };
    let context = attrs.context_extensions;
    let Some(http) = attrs.request.and_then(|r| r.http) else {
        return gate::Request {
            context,
            ..gate::Request::default()
        };
    };
    // Envoy sends lower-case names (HTTP/2 requires them); the map is rebuilt only if not.
    let mut headers = if http.headers.keys().any(|k| k.bytes().any(|b| b.is_ascii_uppercase())) {
        http.headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    } else {
        http.headers
    };
    if headers.is_empty()
        && let Some(map) = http.header_map
    {
        for h in map.headers {
            let value = if h.raw_value.is_empty() {
                h.value
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            headers
                .entry(h.key.to_ascii_lowercase())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert(value);
        }
    }
    let host = if http.host.is_empty() {
        headers.get(":authority").cloned().unwrap_or_default()
    } else {
        http.host
    };
    gate::Request {
        method: http.method,
        path: http.path,
        host,
        headers,
        context,
        request_id: (!http.id.is_empty()).then_some(http.id),
    }
}

#[allow(deprecated)] // `append` is what Envoy's ext_authz client reads; `false` means overwrite.
fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
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

fn ok_response(allow: Allow) -> CheckResponse {
    let dynamic_metadata = allow.identity.map(|id| {
        let mut fields = HashMap::from([
            ("provider".to_owned(), string(id.provider)),
            ("iss".to_owned(), string(id.issuer)),
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
            code: Code::Ok as i32,
            ..Default::default()
        }),
        dynamic_metadata,
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: allow.set_headers.into_iter().map(|(k, v)| header(&k, v)).collect(),
            headers_to_remove: allow.remove_headers,
            ..Default::default()
        })),
    }
}

fn denied_response(deny: &Deny) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: deny.grpc_code() as i32,
            message: deny.rejection.reason().into_owned(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(deny.http_status()),
            }),
            headers: deny.headers().into_iter().map(|(k, v)| header(k, v)).collect(),
            body: deny.body(),
        })),
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
