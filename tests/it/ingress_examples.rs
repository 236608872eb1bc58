//! `examples/envoy-gateway/security-policy.yaml` field by field against Envoy Gateway's API
//! (api/v1alpha1 at d32f2829, 2026-08-21: `SecurityPolicySpec`, `ExtAuth`, `HTTPExtAuthService`,
//! `BackendCluster`; Gateway API's `BackendObjectReference`,
//! `LocalPolicyTargetReferenceWithSectionName` and `ReferenceGrant`), whose CRDs are not
//! packaged here. The ingress-nginx example against the Kubernetes schemas
//! (`kubernetes-validate`): `tests/external/ingress_examples.rs`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use crate::common::ingress_examples::*;
use common::fields_within;
use serde_json::Value;

#[test]
fn the_envoy_gateway_example_uses_only_envoy_gateways_fields_and_jwtgates_envoy_door() {
    let docs = documents("examples/envoy-gateway/security-policy.yaml");
    assert_eq!(docs.len(), 2);
    let policy = &docs[0];
    assert_eq!(policy["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(policy["kind"], "SecurityPolicy");
    let spec = &policy["spec"];
    fields_within("spec", spec, SECURITY_POLICY_SPEC);
    for t in spec["targetRefs"].as_array().unwrap() {
        fields_within("spec.targetRefs[]", t, TARGET_REF);
    }
    let ext = &spec["extAuth"];
    fields_within("spec.extAuth", ext, EXT_AUTH);
    assert_eq!(ext["failOpen"], false);
    let http = &ext["http"];
    fields_within("spec.extAuth.http", http, HTTP_EXT_AUTH);
    for b in http["backendRefs"].as_array().unwrap() {
        fields_within("spec.extAuth.http.backendRefs[]", b, BACKEND_REF);
        assert_eq!(b["port"], 9002, "jwtgate's listen.http");
    }
    // `path` is Envoy's path_prefix: jwtgate's `http_auth.envoy_prefix`.
    assert_eq!(http["path"], "/ext_authz");
    assert!(strings(&http["headersToBackend"]).contains(&"x-jwt-sub".to_owned()));
    let to_jwtgate = strings(&ext["headersToExtAuth"]);
    for h in ["authorization", "cookie", "x-forwarded-for", "x-forwarded-proto"] {
        assert!(
            to_jwtgate.contains(&h.to_owned()),
            "{h} reaches jwtgate: {to_jwtgate:?}"
        );
    }
    for h in &to_jwtgate {
        assert!(!h.starts_with("x-jwt-") && !h.starts_with("x-original-"), "{h} passed");
    }

    let grant = &docs[1];
    assert_eq!(grant["apiVersion"], "gateway.networking.k8s.io/v1beta1");
    assert_eq!(grant["kind"], "ReferenceGrant");
    fields_within("ReferenceGrant spec", &grant["spec"], GRANT);
    for f in grant["spec"]["from"].as_array().unwrap() {
        fields_within("ReferenceGrant from[]", f, GRANT_FROM);
        assert_eq!(f["kind"], "SecurityPolicy");
        assert_eq!(f["namespace"], policy["metadata"]["namespace"]);
    }
    for t in grant["spec"]["to"].as_array().unwrap() {
        fields_within("ReferenceGrant to[]", t, GRANT_TO);
    }
}

#[test]
fn the_field_check_catches_a_misspelling() {
    let mut docs = documents("examples/envoy-gateway/security-policy.yaml");
    docs[0]["spec"]["extAuth"]["http"]["headersToBackends"] = Value::Null;
    let caught = std::panic::catch_unwind(|| {
        fields_within("spec.extAuth.http", &docs[0]["spec"]["extAuth"]["http"], HTTP_EXT_AUTH)
    });
    assert!(caught.is_err());
}
