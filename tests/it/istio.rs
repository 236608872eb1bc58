//! `examples/istio/` against Istio's own API: every field of the extension providers and of the
//! AuthorizationPolicy must be one that Istio's protos define (lists taken from istio/api at
//! b8f8791d, 2026-07-21: `mesh/v1alpha1/config.proto` and
//! `security/v1beta1/authorization_policy.proto`, in their JSON names). Istio's CRD schemas are
//! not packaged in this project's registries, so the check is these field lists, not Istio's
//! validating webhook; a misspelt or invented field fails it.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use common::{fields_within, repo};
use serde_json::Value;

/// `MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider`.
const GRPC_PROVIDER: &[&str] = &[
    "service",
    "port",
    "timeout",
    "failOpen",
    "clearRouteCache",
    "statusOnError",
    "includeRequestBodyInCheck",
];

/// `MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationHttpProvider` (without the
/// deprecated `includeHeadersInCheck`).
const HTTP_PROVIDER: &[&str] = &[
    "service",
    "port",
    "timeout",
    "pathPrefix",
    "failOpen",
    "clearRouteCache",
    "statusOnError",
    "includeRequestHeadersInCheck",
    "includeAdditionalHeadersInCheck",
    "includeRequestBodyInCheck",
    "headersToUpstreamOnAllow",
    "headersToDownstreamOnDeny",
    "headersToDownstreamOnAllow",
];

/// `AuthorizationPolicy` (spec), `Rule`, `Rule.To`, `Operation`.
const POLICY: &[&str] = &["selector", "targetRef", "targetRefs", "rules", "action", "provider"];
const RULE: &[&str] = &["from", "to", "when"];
const TO: &[&str] = &["operation"];
const OPERATION: &[&str] = &[
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(repo(path)).unwrap()).unwrap()
}

#[test]
fn the_extension_providers_use_only_istios_fields() {
    let mesh = yaml("examples/istio/mesh-config.yaml");
    let providers = mesh["extensionProviders"].as_array().unwrap();
    assert_eq!(providers.len(), 2);
    for p in providers {
        fields_within(
            "extensionProviders[]",
            p,
            &["name", "envoyExtAuthzGrpc", "envoyExtAuthzHttp"],
        );
        if let Some(g) = p.get("envoyExtAuthzGrpc") {
            fields_within("envoyExtAuthzGrpc", g, GRPC_PROVIDER);
            assert_eq!(g["port"], 9001, "jwtgate's listen.grpc");
            assert_eq!(g["failOpen"], false);
        }
        if let Some(h) = p.get("envoyExtAuthzHttp") {
            fields_within("envoyExtAuthzHttp", h, HTTP_PROVIDER);
            assert_eq!(h["port"], 9002, "jwtgate's listen.http");
            let on_deny: Vec<&str> = h["headersToDownstreamOnDeny"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            for header in ["www-authenticate", "retry-after", "x-jwtgate-trace-id"] {
                assert!(on_deny.contains(&header), "{header} reaches the client on a denial");
            }
            // Every identity header is copied (so a client's copy of any is replaced).
            let on_allow: Vec<&str> = h["headersToUpstreamOnAllow"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(on_allow.contains(&"x-jwt-*"), "{on_allow:?}");
        }
    }
}

#[test]
fn the_authorization_policy_is_custom_with_the_jwtgate_provider() {
    let policy = yaml("examples/istio/authorization-policy.yaml");
    assert_eq!(policy["apiVersion"], "security.istio.io/v1");
    assert_eq!(policy["kind"], "AuthorizationPolicy");
    let spec = &policy["spec"];
    fields_within("spec", spec, POLICY);
    assert_eq!(spec["action"], "CUSTOM");
    let mesh = yaml("examples/istio/mesh-config.yaml");
    let names: Vec<&Value> = mesh["extensionProviders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert!(
        names.contains(&&spec["provider"]["name"]),
        "the provider is one of mesh-config.yaml's"
    );
    fields_within("spec.provider", &spec["provider"], &["name"]);
    for rule in spec["rules"].as_array().unwrap() {
        fields_within("rules[]", rule, RULE);
        for to in rule["to"].as_array().unwrap() {
            fields_within("rules[].to[]", to, TO);
            fields_within("rules[].to[].operation", &to["operation"], OPERATION);
        }
    }
}

#[test]
fn the_field_check_catches_a_misspelling() {
    let mut mesh = yaml("examples/istio/mesh-config.yaml");
    mesh["extensionProviders"][0]["envoyExtAuthzGrpc"]["failOpn"] = Value::Bool(false);
    let caught = std::panic::catch_unwind(|| {
        fields_within(
            "envoyExtAuthzGrpc",
            &mesh["extensionProviders"][0]["envoyExtAuthzGrpc"],
            GRPC_PROVIDER,
        )
    });
    assert!(caught.is_err());
}
