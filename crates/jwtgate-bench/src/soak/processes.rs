//! The soak's other processes: a real `redis-server` (append-only file, fsync on every write, so a
//! restart keeps what it acknowledged) that it kills and starts again on the same port, and real
//! `jwtgate serve` replicas that it reloads with `SIGHUP` and samples.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `count` free loopback ports (bound together, then released for the child to take).
pub fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

/// Sends `signal` (`HUP`, `TERM`, …) to `pid` with `kill(1)`.
fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {pid}: {status}"))
    }
}

/// Kills `child` if it still runs and reaps it.
fn reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A redis-server of the soak's own.
pub struct Redis {
    binary: PathBuf,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts `binary` on a free port with its data in `dir`, and waits until it answers.
    pub async fn start(binary: &Path, dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let port = free_ports(1)?[0];
        let mut this = Self {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        this.spawn().await?;
        Ok(this)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("redis-server on port {} did not answer within 10s", self.port))
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (`SIGKILL`: no goodbye to its clients), waits `down`, starts it again.
    pub async fn restart(&mut self, down: Duration) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            reap(&mut child);
        }
        tokio::time::sleep(down).await;
        self.spawn().await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            reap(child);
        }
    }
}

/// Whether a Redis on `port` answers `PING` with `PONG`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        conn.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = conn.read(&mut buf).await.ok()?;
        buf[..n].starts_with(b"+PONG").then_some(())
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// The three listeners of one replica.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    /// The ext_authz gRPC door.
    pub grpc: SocketAddr,
    /// The HTTP door (`/readyz`, `/metrics`).
    pub http: SocketAddr,
    /// The admin API.
    pub admin: SocketAddr,
}

impl Listen {
    /// Three free loopback ports.
    pub fn free() -> Result<Self, String> {
        let ports = free_ports(3)?;
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Ok(Self {
            grpc: at(ports[0]),
            http: at(ports[1]),
            admin: at(ports[2]),
        })
    }
}

/// A `jwtgate serve` process.
pub struct Jwtgate {
    child: Child,
    /// Where it listens.
    pub listen: Listen,
    /// Its config file.
    pub config: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Jwtgate {
    /// Starts `binary serve --config config`, logging to `log`.
    pub fn spawn(binary: &Path, config: &Path, listen: Listen, log: &Path) -> Result<Self, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("JWTGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Self {
            child,
            listen,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to `limit`) until `/readyz` answers 200; fails early if the process exits.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, limit: Duration) -> Result<Duration, String> {
        let child = &mut self.child;
        let exited = || match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        };
        crate::child::until_ready(http, self.listen.http, limit, exited)
            .await
            .map_err(|why| match why {
                Some(status) => format!("jwtgate exited ({status}); see {}", self.log.display()),
                None => format!("jwtgate was not ready within {limit:?}; see {}", self.log.display()),
            })
    }

    /// `/readyz` as JSON (whatever its status).
    pub async fn readyz(&self, http: &reqwest::Client) -> Option<serde_json::Value> {
        let url = format!("http://{}/readyz", self.listen.http);
        let text = http.get(url).send().await.ok()?.text().await.ok()?;
        serde_json::from_str(&text).ok()
    }

    /// `/metrics` as text.
    pub async fn metrics(&self, http: &reqwest::Client) -> Option<String> {
        let url = format!("http://{}/metrics", self.listen.http);
        http.get(url).send().await.ok()?.text().await.ok()
    }

    /// Asks it to reload its config (`SIGHUP`).
    pub fn reload(&self) -> Result<(), String> {
        signal(self.pid(), "HUP")
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `SIGTERM`, then up to `grace` for it to drain and exit, then `SIGKILL`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = signal(self.pid(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Jwtgate {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// Writes `text` to `path` as an operator's tooling would: a temporary file renamed over it.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {} over {}: {e}", tmp.display(), path.display()))
}

/// The sum of the samples of the counter `metric` whose labels contain `labels`, from a
/// Prometheus text exposition.
pub fn counter_sum(text: &str, metric: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let name = name_labels.split('{').next()?;
            (name == metric && name_labels.contains(labels)).then(|| value.parse::<u64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sum_adds_the_matching_samples_only() {
        let text = "# HELP jwtgate_config_reloads Config reloads\n\
                    jwtgate_config_reloads_total{outcome=\"success\"} 7\n\
                    jwtgate_config_reloads_total{outcome=\"failure\"} 2\n\
                    jwtgate_config_reloads_created{outcome=\"success\"} 1700000000\n\
                    jwtgate_checks_total{outcome=\"success\"} 99\n";
        assert_eq!(
            counter_sum(text, "jwtgate_config_reloads_total", "outcome=\"success\""),
            7
        );
        assert_eq!(counter_sum(text, "jwtgate_config_reloads_total", ""), 9);
        assert_eq!(counter_sum(text, "jwtgate_absent_total", ""), 0);
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).unwrap();
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }
}
