//! A real `redis-server` of the test's own on an ephemeral loopback port, with no persistence:
//! started, answered PING within 10 s, stopped and restarted (empty) on the same port, killed on
//! drop.
//!
//! The binary comes from `$JWTGATE_REDIS_SERVER`, else `redis-server` on `PATH`, else
//! `/usr/bin/redis-server`; with none of them the test fails: `bash tests/run.sh` installs
//! Debian's redis-server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running (or stopped) redis-server.
pub struct RedisServer {
    pub port: u16,
    binary: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts one with extra arguments (e.g. `--requirepass`).
    pub async fn start_with(extra_args: &[&str]) -> Self {
        let port = super::free_port();
        let mut server = Self {
            port,
            binary: super::tools::REDIS_SERVER.path(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.launch().await;
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (SIGKILL: connections are reset, nothing is saved) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers, as a Redis that hangs.
    pub fn pause(&self) {
        super::kill(self.child.as_ref().expect("running").id(), "STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        super::kill(self.child.as_ref().expect("running").id(), "CONT");
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    async fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.answers_ping().await {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server exited ({status}) at start:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not answer PING within 10s:\n{}", self.log());
    }

    /// Whether it answers PING (`+PONG`, or `-NOAUTH` when it wants a password) right now.
    async fn answers_ping(&self) -> bool {
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"),
            _ => false,
        }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
