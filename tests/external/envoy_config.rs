//! `examples/envoy/envoy.yaml` is a bootstrap Envoy accepts: parsed into
//! `envoy.config.bootstrap.v3.Bootstrap` with Envoy's own generated protos (Python `xds-protos`,
//! `tests/fixtures/envoy_bootstrap_check.py`), every `typed_config` resolved, unknown fields
//! refused; and it says what docs/integrations.md ("Envoy") promises of the ext_authz filter.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use common::tools;

use std::io::Write;
use std::process::{Command, Stdio};

use common::repo;
use serde_json::Value;

/// An example as JSON (YAML read by the same parser jwtgate reads its config with).
fn example_file(name: &str) -> Value {
    let text = std::fs::read_to_string(repo(&format!("examples/envoy/{name}"))).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn example() -> Value {
    example_file("envoy.yaml")
}

/// What the checker says of `bootstrap`: Ok(summary) or Err(why).
fn parse(bootstrap: &Value) -> Result<String, String> {
    let mut child = Command::new(tools::PYTHON.path())
        .arg(repo("tests/fixtures/envoy_bootstrap_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `bash tests/run.sh` (it creates .venv)",
                tools::PYTHON.path().display()
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bootstrap.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.stderr.is_empty() || out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() { Ok(stdout) } else { Err(stdout) }
}

fn ext_authz(bootstrap: &Value) -> &Value {
    let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "envoy.filters.http.ext_authz")
        .map(|f| &f["typed_config"])
        .unwrap()
}

#[test]
fn the_envoy_example_is_a_valid_bootstrap_with_the_promised_ext_authz_settings() {
    let bootstrap = example();
    assert_eq!(parse(&bootstrap), Ok("OK 1 listeners, 2 clusters".into()));
    let f = ext_authz(&bootstrap);
    assert_eq!(f["transport_api_version"], "V3");
    assert_eq!(f["failure_mode_allow"], false);
    assert_eq!(f["include_peer_certificate"], true);
    assert!(
        f.get("with_request_body").is_none(),
        "bodies are never buffered for jwtgate"
    );
    assert_eq!(f["grpc_service"]["envoy_grpc"]["cluster_name"], "jwtgate");
    assert!(f.get("clear_route_cache").is_none_or(|v| v == false));
}

#[test]
fn the_tls_example_is_a_valid_bootstrap_whose_jwtgate_cluster_talks_mutual_tls() {
    let bootstrap = example_file("envoy-tls.yaml");
    assert_eq!(parse(&bootstrap), Ok("OK 1 listeners, 2 clusters".into()));
    let f = ext_authz(&bootstrap);
    assert_eq!(f["failure_mode_allow"], false);
    assert_eq!(f["include_peer_certificate"], true);
    let cluster = &bootstrap["static_resources"]["clusters"][0];
    assert_eq!(cluster["name"], "jwtgate");
    let tls = &cluster["transport_socket"]["typed_config"];
    assert_eq!(
        tls["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    let context = &tls["common_tls_context"];
    assert_eq!(
        context["alpn_protocols"],
        serde_json::json!(["h2"]),
        "jwtgate's gRPC ALPN"
    );
    assert!(
        context["tls_certificates"][0]["private_key"]["filename"].is_string(),
        "a client certificate for client_ca"
    );
    assert!(context["validation_context"]["trusted_ca"]["filename"].is_string());
    assert_eq!(
        context["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
        tls["sni"]
    );

    // The TLS context is checked field by field too.
    let mut misspelt = bootstrap.clone();
    let context =
        &mut misspelt["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]["common_tls_context"];
    let v = context.as_object_mut().unwrap().remove("validation_context").unwrap();
    context["validation_contxt"] = v;
    assert!(parse(&misspelt).unwrap_err().contains("validation_contxt"));
}

#[test]
fn the_checker_refuses_a_misspelt_field_and_an_unknown_type() {
    let mut bootstrap = example();
    let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_array_mut().unwrap();
    let mut misspelt = filters[0]["typed_config"].as_object().unwrap().clone();
    let allow = misspelt.remove("failure_mode_allow").unwrap();
    misspelt.insert("failure_mode_alow".into(), allow);
    let original = filters[0]["typed_config"].clone();
    filters[0]["typed_config"] = Value::Object(misspelt);
    let e = parse(&bootstrap).unwrap_err();
    assert!(e.contains("failure_mode_alow"), "{e}");

    let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_array_mut().unwrap();
    let mut unknown = original;
    unknown["@type"] = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuth".into();
    filters[0]["typed_config"] = unknown;
    assert!(parse(&bootstrap).is_err());
}
