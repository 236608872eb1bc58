//! The client side of each front door: one check request in, allowed / denied / failed out.
//!
//! gRPC: `--connections` HTTP/2 connections (one tonic `Channel` each) carrying many concurrent
//! streams. HTTP: Envoy's HTTP ext_authz mode under [`super::ENVOY_PREFIX`] over keep-alive
//! HTTP/1.1 connections ([`super::h1`]); HTTP/1.1 does not multiplex, so every concurrent request
//! (worker) has its own connection, opened on first use and again after an error.
//! Every door sends the same request: `GET` [`super::PATH`] on [`super::HOST`] with the headers
//! Envoy typically forwards; Nginx `auth_request` and forward-auth (Traefik, Caddy) send it as
//! `GET /auth` naming the original request in `X-Original-*` or `X-Forwarded-*` headers.

use std::collections::HashMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::h1;
use super::{Door, ENVOY_PREFIX, FORWARD_AUTH_PATH, HOST, PATH};

/// What became of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// gRPC status OK / HTTP 200.
    Allowed,
    /// A denial (gRPC `CheckResponse` with a non-OK status / HTTP 401 or 403).
    Denied,
    /// No allow-or-deny answer: a transport error, a gRPC error status, or another HTTP status;
    /// the text says which (short, for counting).
    Failed(String),
}

/// A connected client for one door.
pub enum DoorClient {
    /// One client per HTTP/2 connection.
    Grpc(Vec<AuthorizationClient<Channel>>),
    /// One keep-alive HTTP/1.1 connection per worker.
    Http {
        /// The server.
        addr: SocketAddr,
        /// `/ext_authz/api/items`, `/auth` for Nginx, or the forward-auth door.
        target: String,
        /// The headers naming the original request, for Nginx and forward-auth (the path, the
        /// method and the host are in the target and `Host` for Envoy's HTTP mode).
        original: &'static [(&'static str, &'static str)],
        /// Worker `i` uses connection `i` (`None` until connected, and after an error).
        connections: Vec<Mutex<Option<h1::Connection>>>,
    },
}

/// An HTTP client for the servers' side doors (`/readyz`, the JWKS hit counter) that never goes
/// through a proxy from the environment.
pub fn admin_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl DoorClient {
    /// Connects to `addr`: `connections` HTTP/2 connections for gRPC; for HTTP, `concurrency`
    /// keep-alive connections, opened on first use.
    pub async fn connect(door: Door, addr: SocketAddr, connections: usize, concurrency: usize) -> Result<Self, String> {
        match door {
            Door::Grpc => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| e.to_string())?
                    .tcp_nodelay(true);
                let mut clients = Vec::with_capacity(connections);
                for _ in 0..connections.max(1) {
                    let channel = endpoint
                        .connect()
                        .await
                        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
                    clients.push(AuthorizationClient::new(channel));
                }
                Ok(Self::Grpc(clients))
            }
            Door::Http | Door::Nginx | Door::ForwardAuth => Ok(Self::Http {
                addr,
                target: match door {
                    Door::Http => format!("{ENVOY_PREFIX}{PATH}"),
                    Door::ForwardAuth => FORWARD_AUTH_PATH.to_owned(),
                    _ => "/auth".to_owned(),
                },
                original: match door {
                    Door::Nginx => &[
                        ("x-original-uri", PATH),
                        ("x-original-method", "GET"),
                        ("x-original-host", HOST),
                    ],
                    Door::ForwardAuth => &[
                        ("x-forwarded-uri", PATH),
                        ("x-forwarded-method", "GET"),
                        ("x-forwarded-host", HOST),
                    ],
                    _ => &[],
                },
                connections: (0..concurrency.max(1)).map(|_| Mutex::new(None)).collect(),
            }),
        }
    }

    /// Sends one check for `worker` with this `Authorization` value (the worker picks the
    /// connection).
    pub async fn check(&self, worker: usize, authorization: String, request_id: u64) -> Answer {
        match self {
            Self::Grpc(clients) => {
                let mut client = clients[worker % clients.len()].clone();
                match client.check(check_request(authorization, request_id)).await {
                    Ok(r) if r.get_ref().status.as_ref().is_none_or(|s| s.code == 0) => Answer::Allowed,
                    Ok(_) => Answer::Denied,
                    Err(status) => Answer::Failed(format!("gRPC {:?}", status.code())),
                }
            }
            Self::Http {
                addr,
                target,
                original,
                connections,
            } => {
                let mut slot = connections[worker % connections.len()].lock().await;
                if slot.is_none() {
                    match h1::Connection::connect(*addr).await {
                        Ok(c) => *slot = Some(c),
                        Err(e) => return Answer::Failed(format!("HTTP connect: {}", e.kind())),
                    }
                }
                let Some(conn) = slot.as_mut() else {
                    return Answer::Failed("HTTP connect".into());
                };
                let id = request_id.to_string();
                let headers = [
                    ("host", HOST),
                    ("authorization", authorization.as_str()),
                    ("user-agent", "jwtgate-bench"),
                    ("accept", "application/json"),
                    ("x-forwarded-proto", "https"),
                    ("x-request-id", id.as_str()),
                ];
                match conn.get(target, headers.iter().chain(*original)).await {
                    Ok((status, keep)) => {
                        if !keep {
                            *slot = None;
                        }
                        match status {
                            200 => Answer::Allowed,
                            401 | 403 => Answer::Denied,
                            other => Answer::Failed(format!("HTTP {other}")),
                        }
                    }
                    Err(e) => {
                        *slot = None;
                        Answer::Failed(format!("HTTP transport ({e})"))
                    }
                }
            }
        }
    }
}

/// The check for `GET /api/items` with Envoy's usual headers and this `Authorization`.
pub fn check_request(authorization: String, request_id: u64) -> CheckRequest {
    let id = request_id.to_string();
    let headers = HashMap::from([
        (":authority".to_owned(), HOST.to_owned()),
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), PATH.to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
        ("user-agent".to_owned(), "jwtgate-bench".to_owned()),
        ("accept".to_owned(), "application/json".to_owned()),
        ("x-forwarded-proto".to_owned(), "https".to_owned()),
        ("x-request-id".to_owned(), id.clone()),
        ("authorization".to_owned(), authorization),
    ]);
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                time: None,
                http: Some(HttpRequest {
                    id,
                    method: "GET".into(),
                    path: PATH.into(),
                    host: HOST.into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}
