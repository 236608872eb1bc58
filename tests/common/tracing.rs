//! The tracing tests' harness: the rotel collector (OTLP) and jwtgate started to export to it.

use crate::common::*;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The rotel collector on loopback, printing every span it receives to `out`.
pub struct Rotel {
    pub child: Child,
    pub out: tempfile::NamedTempFile,
    pub grpc: u16,
    pub http: u16,
    pub _dir: tempfile::TempDir,
}

/// One span as the collector printed it.
#[derive(Debug, Clone, Default)]
pub struct SpanRecord {
    pub trace_id: String,
    pub parent_id: String,
    pub span_id: String,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

impl Rotel {
    pub fn start() -> Self {
        let (grpc, http) = (free_port(), free_port());
        let out = tempfile::NamedTempFile::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(crate::common::tools::ROTEL.path())
            .args(["start", "--exporter", "blackhole", "--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", http)).is_err()
        {
            assert!(Instant::now() < deadline, "rotel did not listen within 10s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            out,
            grpc,
            http,
            _dir: dir,
        }
    }

    /// Everything the collector printed so far.
    pub fn printed(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        let mut spans = Vec::new();
        for block in self.printed().split("\nSpan #").skip(1) {
            let mut span = SpanRecord::default();
            for line in block.lines().skip(1) {
                let line = line.trim();
                if line.starts_with("ResourceSpans #") || line.starts_with("ScopeSpans #") {
                    break;
                }
                if let Some(attr) = line.strip_prefix("-> ") {
                    let (key, value) = attr.split_once(": ").unwrap_or((attr, ""));
                    // `Str(x)`, `Int(1)`, `Bool(true)`: the value inside.
                    let value = value
                        .split_once('(')
                        .map_or(value, |(_, v)| v.strip_suffix(')').unwrap_or(v));
                    span.attributes.insert(key.to_owned(), value.to_owned());
                    continue;
                }
                let Some((key, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim().to_owned();
                match key.trim() {
                    "Trace ID" => span.trace_id = value,
                    "Parent ID" => span.parent_id = value,
                    "ID" => span.span_id = value,
                    "Name" => span.name = value,
                    _ => {}
                }
            }
            spans.push(span);
        }
        spans
    }

    /// Waits (bounded: 10 s) for a span that `matches`.
    pub async fn wait_for(&self, what: &str, matches: impl Fn(&SpanRecord) -> bool) -> SpanRecord {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.spans().into_iter().find(&matches) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no span {what} within 10s:\n{}",
                self.printed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `jwtgate serve` with `providers` and this `telemetry.tracing` block, in a scratch directory.
pub fn serve(providers: &str, tracing: &str) -> (ServeProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwtgate.yaml");
    let text = format!("{}telemetry:\n  tracing:\n{tracing}", config_text(providers));
    std::fs::write(&file, text).unwrap();
    (ServeProcess::start(&file, &[]), dir)
}

pub const PARENT_SPAN: &str = "00f067aa0ba902b7";

pub fn traceparent(trace_id: &str, sampled: bool) -> String {
    format!("00-{trace_id}-{PARENT_SPAN}-{}", if sampled { "01" } else { "00" })
}
