//! The parent's handle on a server child (`serve-noop` or `serve-jwtgate`, see [`super::serve`]):
//! start it (pinned with `taskset` when asked), learn its addresses, wait until it is ready, read
//! its counters, stop it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Target;
use super::serve::{JwtgateSetup, READY};

/// The subcommand that runs the no-op servers.
pub const SERVE_NOOP: &str = "serve-noop";
/// The subcommand that runs jwtgate.
pub const SERVE_JWTGATE: &str = "serve-jwtgate";

/// A running server child; killed when dropped.
pub struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its gRPC address.
    pub grpc: SocketAddr,
    /// Its HTTP address (`/readyz`, and the Envoy-HTTP-mode door).
    pub http: SocketAddr,
    /// Its loopback JWKS server, if jwtgate fetches keys over HTTP.
    pub jwks: Option<SocketAddr>,
}

/// What the server's key machinery did, read from jwtgate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// `/readyz` `providers[bench].fetches`: key-set loads attempted since start.
    pub fetches: Option<u64>,
    /// Requests the loopback JWKS server answered.
    pub jwks_hits: Option<u64>,
}

impl ServerChild {
    /// Starts `exe` as the server for `target` (on the CPUs of the `taskset -c` list `cpus` when
    /// given) and waits for its `READY` line.
    pub fn spawn(exe: &Path, target: Target, cpus: Option<&str>, setup: &JwtgateSetup) -> Result<Self, String> {
        let mut cmd = super::os::pinned_command(exe, cpus);
        match target {
            Target::Noop => cmd.arg(SERVE_NOOP),
            Target::Jwtgate => cmd.arg(SERVE_JWTGATE).args(setup.to_args()),
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let mut this = Self {
            child,
            stdin,
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            jwks: None,
        };
        let line = line.trim();
        let Some(fields) = line.strip_prefix(READY) else {
            let status = this.child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(format!("the {target:?} server did not start ({status}): {line}"));
        };
        for field in fields.split_whitespace() {
            let (key, value) = field.split_once('=').unwrap_or((field, ""));
            let addr: SocketAddr = value
                .parse()
                .map_err(|_| format!("the {target:?} server printed a bad address: {line}"))?;
            match key {
                "grpc" => this.grpc = addr,
                "http" => this.http = addr,
                "jwks" => this.jwks = Some(addr),
                _ => {}
            }
        }
        Ok(this)
    }

    /// The child's process id (its CPU time is read from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to 10s) until `/readyz` answers 200 (the no-op HTTP server answers 200 to
    /// anything).
    pub async fn wait_ready(&self, http: &reqwest::Client) -> Result<(), String> {
        match until_ready(http, self.http, Duration::from_secs(10), || None).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("the server at {} did not become ready within 10s", self.http)),
        }
    }

    /// Reads jwtgate's key-fetch counters (`None` where there is nothing to read).
    pub async fn counters(&self, http: &reqwest::Client) -> Counters {
        let fetches = async {
            let text = http
                .get(format!("http://{}/readyz", self.http))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let body: Value = serde_json::from_str(&text).ok()?;
            body["providers"]
                .as_array()?
                .iter()
                .find(|p| p["provider"] == "bench")?["fetches"]
                .as_u64()
        };
        let jwks_hits = async {
            let url = format!("http://{}/hits", self.jwks?);
            http.get(url).send().await.ok()?.text().await.ok()?.trim().parse().ok()
        };
        Counters {
            fetches: fetches.await,
            jwks_hits: jwks_hits.await,
        }
    }

    /// Asks the child to leave (closes its stdin), waits up to 5s, then kills it.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `http://{addr}/readyz` every 20 ms until it answers 200 (how long that took) or `limit`
/// passes (`Err(None)`). `exited` is asked first each round: a reason from it ends the wait
/// (`Err(Some(reason))`), for a server process that is gone.
pub async fn until_ready(
    http: &reqwest::Client,
    addr: SocketAddr,
    limit: Duration,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<Duration, Option<String>> {
    let url = format!("http://{addr}/readyz");
    let began = Instant::now();
    while began.elapsed() < limit {
        if let Some(why) = exited() {
            return Err(Some(why));
        }
        if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(None)
}
