//! The other side of a proxy test: an application on loopback that echoes what it received
//! (and counts requests), and a client that records what came back.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};

/// Serves `router` on an ephemeral loopback port for the rest of the test.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// The application: answers every request with what it received, and counts requests.
pub async fn echo_app(hits: Arc<AtomicUsize>) -> SocketAddr {
    serve(
        Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            hits.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (k, v) in &headers {
                    seen.entry(k.as_str().to_owned())
                        .or_default()
                        .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                }
                Json(json!({ "method": method.as_str(), "uri": uri.to_string(), "headers": seen }))
            }
        }),
    )
    .await
}

/// What the client got from the proxy.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The headers the application received, when the request reached it.
    pub fn app_saw(&self, name: &str) -> Vec<String> {
        let body: Value = serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not from the app: {self:?}"));
        serde_json::from_value(body["headers"][name].clone()).unwrap_or_default()
    }
}

pub async fn get(url: String, headers: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}
