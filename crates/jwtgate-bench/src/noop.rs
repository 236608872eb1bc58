//! The no-op baseline: the same stack as jwtgate's listeners (tonic routes served the same way,
//! with the default `limits:`, the
//! health service beside it, served through [`jwtgate::server::transport`] — `TCP_NODELAY` and
//! corked writes on accepted connections; axum served the same way)
//! answering OK to everything without looking at the request. What jwtgate costs beyond this is
//! what deciding costs.

use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use jwtgate::server::transport::{self, Listening};
use jwtgate_core::config::limits::{Limits, Listener};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// An `Authorization` service that allows every request.
pub struct NoopAuthorization;

#[tonic::async_trait]
impl Authorization for NoopAuthorization {
    async fn check(&self, _: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            dynamic_metadata: None,
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
        }))
    }
}

/// An HTTP router answering 200 with an empty body on every path and method.
pub fn router() -> Router {
    Router::new().fallback(|| async { StatusCode::OK })
}

/// Serves the no-op gRPC and HTTP servers on ephemeral loopback ports until `shutdown` fires;
/// returns their addresses.
pub async fn serve(shutdown: CancellationToken) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
    let http_listener = TcpListener::bind("127.0.0.1:0").await?;
    let addrs = (grpc_listener.local_addr()?, http_listener.local_addr()?);

    let (_reporter, health_service) = tonic_health::server::health_reporter();
    let limits = Limits::default();
    let grpc = tonic::service::Routes::new(health_service).add_service(AuthorizationServer::new(NoopAuthorization));
    let grpc = transport::serve_grpc(
        grpc,
        grpc_listener,
        Listening::plaintext(Listener::Grpc, &limits),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = grpc.await {
            eprintln!("noop gRPC server failed: {e}");
        }
    });
    let http = transport::serve_http(
        router(),
        http_listener,
        Listening::plaintext(Listener::Http, &limits),
        shutdown,
    );
    tokio::spawn(async move {
        if let Err(e) = http.await {
            eprintln!("noop HTTP server failed: {e}");
        }
    });
    Ok(addrs)
}
