//! `jwtgate serve`: logging, the listeners, reload on `SIGHUP` and on file change, and a
//! graceful shutdown on `SIGTERM`/`SIGINT` within `shutdown_grace`.

use std::path::Path;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{Flavor, load_config, run};

/// Serves until a shutdown signal, then drains.
pub fn serve(path: &Path) -> ExitCode {
    init_logging();
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    run(Flavor::Server, async move {
        let shutdown = CancellationToken::new();
        let running = match crate::server::start(&config, shutdown.clone()).await {
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
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                let _ = live.reload(&reload_path);
            }
        });
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections, finishing in-flight checks");
        shutdown.cancel();
        if tokio::time::timeout(config.shutdown_grace, running.wait())
            .await
            .is_err()
        {
            tracing::warn!("in-flight checks still running after the grace period; exiting");
        }
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

/// Logs to stderr, filtered by `JWTGATE_LOG` (default `info`), as JSON lines with
/// `JWTGATE_LOG_FORMAT=json`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JWTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("JWTGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
