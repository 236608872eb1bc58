//! Graceful drain through the real binary: on SIGTERM jwtgate reports not ready first (503 on
//! `/readyz`, NOT_SERVING on gRPC health) and keeps answering for `shutdown_drain`, so a load
//! balancer that stops sending when it sees that loses no check; then it closes its listeners,
//! finishes in-flight checks and exits 0.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn load_across_sigterm_loses_no_check() {
    bounded(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hs.secret"), "0123456789abcdef0123456789abcdef").unwrap();
        let providers = "  - { name: legacy, issuer: legacy, hmac_secret: { file: hs.secret } }\nshutdown_drain: 1s\nshutdown_grace: 5s\n";
        let file = dir.path().join("jwtgate.yaml");
        std::fs::write(&file, config_text(providers)).unwrap();
        let mut served = ServeProcess::start(&file, &[]);
        served.wait_ready().await;
        let token = sign(
            b"0123456789abcdef0123456789abcdef",
            jsonwebtoken::Algorithm::HS256,
            None,
            serde_json::json!({"iss": "legacy", "sub": "alice"}),
        );
        let url = format!("http://{}", served.addr("grpc"));

        // A load balancer: sends while the health check says SERVING, and for a propagation
        // delay (300 ms) after it first says NOT_SERVING.
        let serving = Arc::new(AtomicBool::new(true));
        let (ok, failed, ok_while_draining) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut senders = Vec::new();
        for _ in 0..4 {
            let (serving, ok, failed, draining_ok) = (serving.clone(), ok.clone(), failed.clone(), ok_while_draining.clone());
            let mut client = served.client().await;
            let token = token.clone();
            senders.push(tokio::spawn(async move {
                let mut stopped_at = None;
                loop {
                    let draining = !serving.load(Ordering::SeqCst);
                    let now = std::time::Instant::now();
                    if draining && *stopped_at.get_or_insert(now) + Duration::from_millis(300) < now {
                        return;
                    }
                    match check(&mut client, bearer(&token)).await {
                        Ok(a) if a.grpc_code == 0 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                            if draining {
                                draining_ok.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
        let mut health = HealthClient::new(channel);
        let status = |h: &mut HealthClient<tonic::transport::Channel>| {
            let mut h = h.clone();
            async move {
                h.check(HealthCheckRequest { service: String::new() })
                    .await
                    .map(|r| r.into_inner().status)
                    .unwrap_or(ServingStatus::Unknown as i32)
            }
        };
        assert_eq!(status(&mut health).await, ServingStatus::Serving as i32);
        tokio::time::sleep(Duration::from_millis(300)).await;

        served.signal("TERM");
        while status(&mut health).await == ServingStatus::Serving as i32 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        serving.store(false, Ordering::SeqCst);
        let ready = reqwest::get(format!("http://{}/readyz", served.addr("http"))).await.unwrap();
        assert_eq!(ready.status(), 503, "not ready while draining");
        for s in senders {
            s.await.unwrap();
        }
        let status = served.wait_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "{status:?}");
        let (ok, failed, draining) = (
            ok.load(Ordering::SeqCst),
            failed.load(Ordering::SeqCst),
            ok_while_draining.load(Ordering::SeqCst),
        );
        assert_eq!(failed, 0, "{ok} answered, {failed} failed");
        assert!(draining > 0, "checks were answered while draining: {draining} of {ok}");
    })
    .await;
}
