//! The RFC 7662 introspection endpoint (`listen.introspection`): `POST /introspect` with a
//! form-encoded `token`, asked by a client of `introspection.clients` (HTTP Basic, or a bearer
//! token of a provider with a role). The gate decides ([`Gate::introspect`]); this only
//! authenticates the caller, reads the form and renders the answer.
//!
//! Answers: 200 with the token's members, or exactly `{"active":false}`; 401 `invalid_client`
//! for a caller that may not ask; 400 `invalid_request` for a form without one `token`; 413 for
//! a body past the bound; 503 when jwtgate cannot tell (keys or revocations unavailable). Every
//! answer carries `Cache-Control: no-store`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use jwtgate_core::config::introspection::IntrospectionClient;
use jwtgate_core::gate::Gate;
use jwtgate_core::introspect::Introspected;
use jwtgate_core::live::SharedGate;
use jwtgate_core::opaque::IntrospectionMetrics;
use jwtgate_core::rejection::Class;
use jwtgate_core::token::after_scheme;
use subtle::ConstantTimeEq;

/// The path the endpoint answers on.
pub const PATH: &str = "/introspect";

/// Room in a body beyond the token itself (its name, `token_type_hint`, escapes are counted
/// separately: a percent-encoded token may take three bytes per byte).
const BODY_SLACK: usize = 1024;

/// The endpoint's router, for the gate in force at each request; bodies beyond three times
/// `max_token_bytes` (plus slack) are refused with 413 before they are read in full.
pub fn router(gate: SharedGate, max_token_bytes: usize) -> Router {
    Router::new()
        .route(PATH, post(introspect))
        .layer(DefaultBodyLimit::max(max_token_bytes.saturating_mul(3) + BODY_SLACK))
        .with_state(gate)
}

async fn introspect(State(gate): State<SharedGate>, headers: HeaderMap, body: Bytes) -> Response {
    let gate = gate.load_full();
    if !gate.introspection().enabled {
        // A reload turned it off while the listener stays bound.
        return answer(
            StatusCode::NOT_FOUND,
            error("invalid_request", "introspection is not enabled"),
        );
    }
    match authenticate(&gate, &headers).await {
        Ok(()) => {}
        Err(ClientRefused::Unavailable) => return unavailable(),
        Err(ClientRefused::Unauthorized) => {
            gate.metrics()
                .families::<IntrospectionMetrics>()
                .served("", "unauthorized");
            let mut r = answer(
                StatusCode::UNAUTHORIZED,
                error("invalid_client", "client authentication failed"),
            );
            if let Ok(v) = HeaderValue::from_str(&challenge(&gate)) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return r;
        }
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return answer(
            StatusCode::BAD_REQUEST,
            error("invalid_request", "send application/x-www-form-urlencoded"),
        );
    }
    let token = match one_token(&body) {
        Ok(t) => t,
        Err(why) => return answer(StatusCode::BAD_REQUEST, error("invalid_request", why)),
    };
    match gate.introspect(&token).await {
        answered @ (Introspected::Active { .. } | Introspected::Inactive { .. }) => answer(
            StatusCode::OK,
            answered.body().unwrap_or_else(|| r#"{"active":false}"#.into()),
        ),
        Introspected::Unavailable { .. } => unavailable(),
    }
}

/// Why a caller may not ask.
enum ClientRefused {
    /// Missing or wrong credentials.
    Unauthorized,
    /// A bearer credential could not be checked now (its provider's keys are unavailable).
    Unavailable,
}

/// Whether the caller is one of `introspection.clients`: HTTP Basic with a client's id and
/// secret (each form-decoded, RFC 6749 §2.3.1; the secret compared in constant time), or a
/// bearer token that passes a token client's provider and role on a check's own path.
async fn authenticate(gate: &Gate, headers: &HeaderMap) -> Result<(), ClientRefused> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ClientRefused::Unauthorized)?;
    let clients = &gate.introspection().clients;
    if let Some(credential) = after_scheme(value, "Basic ") {
        let (id, secret) = basic(credential).ok_or(ClientRefused::Unauthorized)?;
        let known = clients.iter().any(|c| match c {
            IntrospectionClient::Secret { id: cid, secret: s } => {
                cid.as_bytes() == id.as_bytes() && bool::from(secret.as_bytes().ct_eq(s.expose()))
            }
            IntrospectionClient::Token { .. } => false,
        });
        return if known {
            Ok(())
        } else {
            Err(ClientRefused::Unauthorized)
        };
    }
    let credential = after_scheme(value, "Bearer ").ok_or(ClientRefused::Unauthorized)?;
    let mut unavailable = false;
    for requirement in clients.iter().filter_map(IntrospectionClient::requirement) {
        match gate.authorize(credential, &requirement).await {
            Ok(_) => return Ok(()),
            Err(refusal) => unavailable |= refusal.rejection.class() == Class::Unavailable,
        }
    }
    Err(if unavailable {
        ClientRefused::Unavailable
    } else {
        ClientRefused::Unauthorized
    })
}

/// `id` and `secret` of an HTTP Basic credential, each form-decoded.
fn basic(credential: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(credential).ok()?;
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// The form's one non-empty `token` (`token_type_hint` and unknown parameters are ignored, as
/// RFC 7662 §2.1 allows).
fn one_token(body: &[u8]) -> Result<String, &'static str> {
    let mut tokens = form_urlencoded::parse(body)
        .filter(|(k, _)| k == "token")
        .map(|(_, v)| v);
    match (tokens.next(), tokens.next()) {
        (Some(t), None) if !t.is_empty() => Ok(t.into_owned()),
        (Some(_), None) | (None, _) => Err("the `token` parameter is required"),
        (Some(_), Some(_)) => Err("send the `token` parameter once"),
    }
}

/// `WWW-Authenticate` for a refused caller: Basic when secret clients are configured, Bearer
/// when token clients are.
fn challenge(gate: &Gate) -> String {
    let clients = &gate.introspection().clients;
    let realm = gate.realm();
    let mut schemes = Vec::new();
    if clients.iter().any(|c| matches!(c, IntrospectionClient::Secret { .. })) {
        schemes.push(format!("Basic realm=\"{realm}\""));
    }
    if clients.iter().any(|c| matches!(c, IntrospectionClient::Token { .. })) {
        schemes.push(format!("Bearer realm=\"{realm}\""));
    }
    schemes.join(", ")
}

fn error(code: &str, description: &str) -> String {
    serde_json::json!({ "error": code, "error_description": description }).to_string()
}

fn unavailable() -> Response {
    let mut r = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        error("temporarily_unavailable", "cannot verify tokens now; retry"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A JSON answer that no cache keeps (RFC 7662 §4 and RFC 6749 §5.1).
fn answer(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded_after_base64() {
        let enc = base64::engine::general_purpose::STANDARD.encode("billing%3Aworker:s%2Bcret+x");
        assert_eq!(basic(&enc), Some(("billing:worker".into(), "s+cret x".into())));
        assert_eq!(basic("not base64!"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("abc");
        assert_eq!(basic(&no_colon), None);
    }

    #[test]
    fn the_form_must_hold_one_non_empty_token() {
        assert_eq!(
            one_token(b"token=abc&token_type_hint=access_token").as_deref(),
            Ok("abc")
        );
        assert_eq!(one_token(b"token=a%2Eb"), Ok("a.b".into()));
        assert!(one_token(b"token=").is_err());
        assert!(one_token(b"hint=x").is_err());
        assert!(one_token(b"token=a&token=b").is_err());
    }
}
