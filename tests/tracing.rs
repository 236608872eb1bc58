//! Traces at a real OTLP collector: `jwtgate serve` exports to the `rotel` collector (from PyPI;
//! `bash tests/run.sh` installs it and exports its `rotel-agent` as `JWTGATE_ROTEL`), started on
//! loopback with its debug exporter, whose printed spans are read back here.
//!
//! A check that carries a sampled `traceparent` is one `ext_authz.check` span with the caller's
//! trace id as its trace and the caller's span as its parent, with door, route, provider,
//! decision and reason, and no token; the denial body, the `x-jwtgate-trace-id` header and the
//! JSON `deny` log line show the same trace id (the log line also the span id). An unsampled
//! parent is followed (no span); a root check is traced at `sample_ratio`. Key fetches are
//! `jwks.fetch` spans. An unreachable collector fails no check and its lost spans are counted.
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn rotel_agent() -> PathBuf {
    let path = std::env::var_os("JWTGATE_ROTEL")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo(".venv/lib/python3.11/site-packages/rotel/rotel-agent"));
    assert!(
        path.exists(),
        "no rotel-agent at {}: run `bash tests/run.sh` (it installs rotel into .venv)",
        path.display()
    );
    path
}

/// The rotel collector on loopback, printing every span it receives to `out`.
struct Rotel {
    child: Child,
    out: tempfile::NamedTempFile,
    grpc: u16,
    http: u16,
    _dir: tempfile::TempDir,
}

/// One span as the collector printed it.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    trace_id: String,
    parent_id: String,
    span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

impl Rotel {
    fn start() -> Self {
        let (grpc, http) = (free_port(), free_port());
        let out = tempfile::NamedTempFile::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(rotel_agent())
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
    fn printed(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap()
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<SpanRecord> {
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
    async fn wait_for(&self, what: &str, matches: impl Fn(&SpanRecord) -> bool) -> SpanRecord {
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
fn serve(providers: &str, tracing: &str) -> (ServeProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwtgate.yaml");
    let text = format!("{}telemetry:\n  tracing:\n{tracing}", config_text(providers));
    std::fs::write(&file, text).unwrap();
    (ServeProcess::start(&file, &[]), dir)
}

const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str, sampled: bool) -> String {
    format!("00-{trace_id}-{PARENT_SPAN}-{}", if sampled { "01" } else { "00" })
}

#[tokio::test]
async fn a_check_with_a_sampled_traceparent_is_one_span_with_the_callers_ids_and_the_denials_trace_id() {
    bounded(Duration::from_secs(60), async {
        let rotel = Rotel::start();
        let issuer = rsa_issuer().await;
        let providers = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "");
        // Ratio 0: only a caller's sampling decision makes a check traced.
        let (served, _dir) = serve(
            &providers,
            &format!(
                "    otlp_endpoint: http://127.0.0.1:{}\n    protocol: grpc\n    sample_ratio: 0.0\n    service_name: gate-under-test\n",
                rotel.grpc
            ),
        );
        served.wait_ready().await;
        let mut client = served.client().await;

        // The key set's load is a span of its own.
        let fetch = rotel
            .wait_for("jwks.fetch", |s| s.name == "jwks.fetch")
            .await;
        assert_eq!(fetch.attributes["provider"], "corp");
        assert_eq!(fetch.attributes["server.address"], "127.0.0.1");
        assert_eq!(fetch.attributes["http.response.status_code"], "200");
        assert_eq!(fetch.attributes["outcome"], "success");
        assert!(fetch.attributes["http.response.body.size"].parse::<u64>().unwrap() > 100);

        // A denial: the span, the body, the header and the log line share the caller's trace id.
        let denied_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let a = check(
            &mut client,
            check_request("/api", &[("traceparent", &traceparent(denied_trace, true))]),
        )
        .await
        .unwrap();
        assert_eq!(a.http_status, Some(401));
        assert_eq!(a.headers["x-jwtgate-trace-id"], denied_trace);
        assert_eq!(a.body.as_ref().unwrap()["trace_id"], denied_trace);
        let span = rotel
            .wait_for("for the denial", |s| s.trace_id == denied_trace)
            .await;
        assert_eq!(span.name, "ext_authz.check");
        assert_eq!(span.parent_id, PARENT_SPAN, "the caller's span is the parent");
        assert_eq!(span.attributes["door"], "grpc");
        assert_eq!(span.attributes["route"], "default");
        assert_eq!(span.attributes["decision"], "deny");
        assert_eq!(span.attributes["reason"], "missing_token");
        let deny = served.wait_for("deny");
        assert_eq!(deny["fields"]["trace_id"], denied_trace);
        assert_eq!(deny["fields"]["request_id"], "req-1", "Envoy's request id is logged beside it");
        assert_eq!(deny["trace_id"], denied_trace);
        assert_eq!(deny["span_id"], span.span_id.as_str(), "the log line names its span");

        // An allow: provider and decision; no token and, without record_subject, no subject.
        let allowed_trace = "0af7651916cd43dd8448eb211c80319c";
        let token = rsa_token(&issuer.url(), json!({}));
        let a = check(
            &mut client,
            check_request(
                "/api",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("traceparent", &traceparent(allowed_trace, true)),
                    ("tracestate", "vendor=opaque"),
                ],
            ),
        )
        .await
        .unwrap();
        assert_eq!(a.grpc_code, 0, "{a:?}");
        let span = rotel
            .wait_for("for the allow", |s| s.trace_id == allowed_trace)
            .await;
        assert_eq!(span.attributes["provider"], "corp");
        assert_eq!(span.attributes["decision"], "allow");
        assert!(!span.attributes.contains_key("enduser.id"), "{span:?}");
        assert!(!span.attributes.contains_key("reason"), "{span:?}");

        // A tracing Envoy puts its ext_authz span in the call's metadata: that is the parent.
        let envoy_trace = "33333333333333333333333333333333";
        let mut call = tonic::Request::new(check_request(
            "/api",
            &[("traceparent", &traceparent(allowed_trace, true))],
        ));
        call.metadata_mut().insert(
            "traceparent",
            format!("00-{envoy_trace}-b7ad6b7169203331-01").parse().unwrap(),
        );
        let a = answer(client.check(call).await.unwrap().into_inner());
        assert_eq!(a.headers["x-jwtgate-trace-id"], envoy_trace);
        let span = rotel
            .wait_for("under Envoy's span", |s| s.trace_id == envoy_trace)
            .await;
        assert_eq!(span.parent_id, "b7ad6b7169203331");

        // An unsampled parent is followed: no span, the caller's trace id still shown.
        let unsampled_trace = "11111111111111111111111111111111";
        let a = check(
            &mut client,
            check_request("/api", &[("traceparent", &traceparent(unsampled_trace, false))]),
        )
        .await
        .unwrap();
        assert_eq!(a.headers["x-jwtgate-trace-id"], unsampled_trace);
        // A root check at ratio 0: no span, a new trace id.
        let a = check(&mut client, check_request("/api", &[])).await.unwrap();
        let root_trace = a.headers["x-jwtgate-trace-id"].clone();
        assert_eq!(root_trace.len(), 32);

        // A last sampled check flushes behind the two that must not appear.
        let last_trace = "22222222222222222222222222222222";
        check(
            &mut client,
            check_request("/api", &[("traceparent", &traceparent(last_trace, true))]),
        )
        .await
        .unwrap();
        rotel.wait_for("for the last check", |s| s.trace_id == last_trace).await;
        let spans = rotel.spans();
        assert!(
            !spans
                .iter()
                .any(|s| s.trace_id == unsampled_trace || s.trace_id == root_trace),
            "{spans:?}"
        );
        assert_eq!(
            spans.iter().filter(|s| s.name == "ext_authz.check").count(),
            4
        );
        let printed = rotel.printed();
        assert!(printed.contains("gate-under-test"), "service.name: {printed}");
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !printed.contains(&token) && !printed.contains(signature),
            "no token or signature reaches the collector"
        );
    })
    .await;
}

#[tokio::test]
async fn http_protobuf_export_traces_roots_at_ratio_one_and_records_the_subject_when_asked() {
    bounded(Duration::from_secs(60), async {
        let rotel = Rotel::start();
        let issuer = rsa_issuer().await;
        let providers = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "");
        let (served, _dir) = serve(
            &providers,
            &format!(
                "    otlp_endpoint: http://127.0.0.1:{}\n    protocol: http/protobuf\n    sample_ratio: 1.0\n    record_subject: true\n",
                rotel.http
            ),
        );
        served.wait_ready().await;
        let token = rsa_token(&issuer.url(), json!({}));
        let r = reqwest::Client::new()
            .get(format!("http://{}/auth", served.addr("http")))
            .header("authorization", format!("Bearer {token}"))
            .header("x-original-uri", "/api")
            .header("x-original-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let trace_id = r.headers()["x-jwtgate-trace-id"].to_str().unwrap().to_owned();
        let span = rotel
            .wait_for("for the root check", |s| s.trace_id == trace_id)
            .await;
        assert_eq!(span.name, "ext_authz.check");
        assert_eq!(span.parent_id, "", "a root span");
        assert_eq!(span.attributes["door"], "http");
        assert_eq!(span.attributes["enduser.id"], "alice");
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_collector_fails_no_check_and_its_lost_spans_are_counted() {
    bounded(Duration::from_secs(60), async {
        let issuer = rsa_issuer().await;
        let providers = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "");
        let closed = free_port();
        let (served, _dir) = serve(
            &providers,
            &format!("    otlp_endpoint: http://127.0.0.1:{closed}\n    sample_ratio: 1.0\n"),
        );
        served.wait_ready().await;
        let mut client = served.client().await;
        let token = rsa_token(&issuer.url(), json!({}));
        for _ in 0..20 {
            let a = check(&mut client, bearer(&token)).await.unwrap();
            assert_eq!(a.grpc_code, 0, "{a:?}");
        }
        let metrics = format!("http://{}/metrics", served.addr("http"));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            let dropped = samples(&text)
                .get("jwtgate_trace_spans_dropped_total")
                .copied()
                .unwrap();
            if dropped >= 20.0 {
                break;
            }
            assert!(Instant::now() < deadline, "dropped spans not counted: {dropped}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[test]
fn a_bad_tracing_block_is_refused_at_start_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwtgate.yaml");
    let base = config_text(&jwks_provider(
        "corp",
        "https://idp.example/",
        "https://idp.example/jwks",
        "",
    ));
    type Env = &'static [(&'static str, &'static str)];
    let cases: [(&str, Env, &str); 4] = [
        (
            "    protocol: zipkin\n",
            &[],
            "telemetry.tracing.protocol: `zipkin` is not one of grpc, http/protobuf",
        ),
        (
            "    sample_ratio: 2\n",
            &[],
            "telemetry.tracing.sample_ratio: must be between 0.0 and 1.0",
        ),
        (
            "    otlp_endpoint: collector:4317\n",
            &[],
            "telemetry.tracing.otlp_endpoint: `collector:4317` must start with http:// or https://",
        ),
        (
            "    service_name: gate\n",
            &[("OTEL_TRACES_SAMPLER_ARG", "often")],
            "telemetry.tracing.sample_ratio (from OTEL_TRACES_SAMPLER_ARG): `often` is not a number",
        ),
    ];
    for (block, env, expected) in cases {
        std::fs::write(&file, format!("{base}telemetry:\n  tracing:\n{block}")).unwrap();
        for command in [&["validate-config"][..], &["serve", "--config"][..]] {
            let stderr = refused(command, &file, env);
            assert!(
                stderr.contains(&format!("{}: {expected}", file.display())),
                "{command:?}: {stderr}"
            );
        }
    }
}

/// The JSON lines of a traced check name the check's span; a line outside any span has none.
#[tokio::test]
async fn json_log_lines_carry_trace_and_span_ids_only_inside_a_traced_span() {
    bounded(Duration::from_secs(30), async {
        let rotel = Rotel::start();
        let issuer = rsa_issuer().await;
        let providers = jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "");
        let (served, _dir) = serve(
            &providers,
            &format!("    otlp_endpoint: http://127.0.0.1:{}\n", rotel.grpc),
        );
        served.wait_ready().await;
        // Logged inside the `jwks.fetch` span.
        let loaded = served.wait_for("key set loaded");
        let fetch = rotel.wait_for("jwks.fetch", |s| s.name == "jwks.fetch").await;
        assert_eq!(loaded["trace_id"], fetch.trace_id.as_str());
        assert_eq!(loaded["span_id"], fetch.span_id.as_str());
        // Logged outside any span.
        let ready = served.wait_for("ready: every provider has usable keys, revocations loaded");
        assert!(
            ready.get("trace_id").is_none() && ready.get("span_id").is_none(),
            "{ready}"
        );
    })
    .await;
}

#[test]
fn jwtgate_check_says_whether_serve_would_trace_the_request_and_as_whose_child() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hs.secret"), "0123456789abcdef0123456789abcdef").unwrap();
    let providers = "  - { name: legacy, issuer: legacy, hmac_secret: { file: hs.secret } }\n";
    let explain = |tracing: &str, header: Option<&str>| {
        let file = dir.path().join("jwtgate.yaml");
        std::fs::write(&file, format!("{}{tracing}", config_text(providers))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwtgate"));
        cmd.args(["check", "--config"]).arg(&file);
        if let Some(h) = header {
            cmd.args(["--header", h]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("trace:    ").map(str::to_owned))
            .unwrap_or_else(|| panic!("no trace line: {stdout}"))
    };
    let exporting = "telemetry: { tracing: { otlp_endpoint: 'http://127.0.0.1:4317', sample_ratio: 0.25 } }\n";
    let sampled = format!("traceparent: {}", traceparent("4bf92f3577b34da6a3ce929d0e0e4736", true));
    assert_eq!(
        explain(exporting, Some(&sampled)),
        "traced as a child of span 00f067aa0ba902b7 of trace 4bf92f3577b34da6a3ce929d0e0e4736, exported to http://127.0.0.1:4317 (grpc)"
    );
    let unsampled = format!(
        "traceparent: {}",
        traceparent("4bf92f3577b34da6a3ce929d0e0e4736", false)
    );
    assert!(
        explain(exporting, Some(&unsampled))
            .starts_with("not traced: the traceparent's trace 4bf92f3577b34da6a3ce929d0e0e4736 is unsampled")
    );
    assert_eq!(
        explain(exporting, None),
        "a root: traced at sample_ratio 0.25, exported to http://127.0.0.1:4317 (grpc)"
    );
    assert!(explain(exporting, Some("traceparent: garbage")).contains("not valid W3C"));
    assert_eq!(
        explain("", Some(&sampled)),
        "not exported (no telemetry.tracing.otlp_endpoint)"
    );
}
