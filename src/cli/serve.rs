//! `jwtgate serve`: logs and traces ([`crate::telemetry`]), the listeners, reload on `SIGHUP`
//! and on file change, and a graceful shutdown on `SIGTERM`/`SIGINT`: not ready but serving for
//! `shutdown_drain`, then no new connections and in-flight checks finished within
//! `shutdown_grace`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use jwtgate_core::metrics::Metrics;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{Flavor, load_config, run};
use crate::telemetry;
use crate::telemetry::export::SpansDropped;

/// How long queued spans may take to reach the collector at shutdown.
const SPAN_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Serves until a shutdown signal, then drains.
pub fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    run(Flavor::Server, async move {
        let metrics = Arc::new(Metrics::default());
        let telemetry = match telemetry::install(&config.tracing, metrics.families::<SpansDropped>().counter()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("jwtgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Installed before the listeners start: a SIGHUP from then on reloads, never terminates
        // (its default action) a process that already said it listens.
        let hup = signal(SignalKind::hangup());
        let shutdown = CancellationToken::new();
        let running = match crate::server::start_with_metrics(&config, metrics, shutdown.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("jwtgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(running.live.clone().watch(path.to_path_buf()));
        let live = running.live.clone();
        let reload_path = path.to_path_buf();
        tokio::spawn(async move {
            let Ok(mut hup) = hup else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                let _ = live.reload(&reload_path);
            }
        });
        wait_for_signal().await;
        // Not ready first, still serving: load balancers and proxies stop sending.
        tracing::info!(drain = ?config.shutdown_drain, "draining: reporting not ready, still serving");
        running.draining.cancel();
        tokio::select! {
            () = tokio::time::sleep(config.shutdown_drain) => {}
            () = wait_for_signal() => tracing::info!("second signal: ending the drain early"),
        }
        tracing::info!("shutting down: no new connections, finishing in-flight checks");
        shutdown.cancel();
        if tokio::time::timeout(config.shutdown_grace, running.wait())
            .await
            .is_err()
        {
            tracing::warn!("in-flight checks still running after the grace period; exiting");
        }
        telemetry.shutdown(SPAN_FLUSH_GRACE).await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
