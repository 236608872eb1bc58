//! The server runtime runs one worker thread per CPU the process may use, not per CPU the host
//! has: `jwtgate serve` under `taskset -c 0` (an affinity of one CPU) runs one worker, says so in
//! its `jwtgate listening` log line (`workers`) and in `/metrics` (`jwtgate_worker_threads`);
//! `TOKIO_WORKER_THREADS` overrides the count. (A container's CPU quota, `podman run --cpus`, is
//! proven in `tests/external/container.rs`.)
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::time::Duration;

use common::*;

/// A config with one HMAC provider, in `dir`.
fn config(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("hs.secret"), "0123456789abcdef0123456789abcdef").unwrap();
    let file = dir.join("jwtgate.yaml");
    std::fs::write(
        &file,
        config_text("  - { name: legacy, issuer: legacy, hmac_secret: { file: hs.secret } }\n"),
    )
    .unwrap();
    file
}

/// The worker count `served` reports, from its log line and from `/metrics` (which must agree).
async fn workers(served: &ServeProcess) -> u64 {
    let logged = served.listening["workers"].as_u64().unwrap();
    let scraped = scrape(served.addr("http")).await["jwtgate_worker_threads"];
    assert_eq!(scraped, logged as f64, "/metrics and the log line disagree");
    logged
}

#[tokio::test]
async fn the_worker_count_follows_the_cpus_the_process_may_use() {
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let file = config(dir.path());
        let host = std::thread::available_parallelism().unwrap().get() as u64;

        let unpinned = ServeProcess::start(&file, &[]);
        assert_eq!(workers(&unpinned).await, host, "one worker per CPU this test may use");
        drop(unpinned);

        let pinned = ServeProcess::start_under(&["taskset", "-c", "0"], &file, &[]);
        assert_eq!(workers(&pinned).await, 1, "under taskset -c 0 (host: {host} CPUs)");
        drop(pinned);

        let told = ServeProcess::start(&file, &[("TOKIO_WORKER_THREADS", "3")]);
        assert_eq!(workers(&told).await, 3, "TOKIO_WORKER_THREADS=3");
    })
    .await;
}
