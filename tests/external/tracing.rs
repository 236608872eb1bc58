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

use crate::common;
use crate::common::tracing::*;
use common::*;
use serde_json::json;
use std::time::Duration;

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
