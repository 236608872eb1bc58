//! Tracing without a collector: an unreachable collector fails no check and the spans it lost
//! are counted; a bad `telemetry.tracing` block is refused at start with file, field and reason;
//! `jwtgate check` says whether `serve` would trace a request and as whose child. The spans at a
//! real OTLP collector (rotel): `tests/external/tracing.rs`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use crate::common::tracing::*;
use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

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
