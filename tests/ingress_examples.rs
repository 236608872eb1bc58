//! The Kubernetes ingress examples against their APIs: `examples/ingress-nginx/ingress.yaml` with
//! `kubernetes-validate --strict` (the Kubernetes schemas, from PyPI; `bash tests/run.sh` puts
//! it into `.venv`) and its annotations against ingress-nginx's own list
//! (internal/ingress/annotations/authreq/main.go at controller-v1.15.1); and
//! `examples/envoy-gateway/security-policy.yaml` field by field against Envoy Gateway's API
//! (api/v1alpha1 at d32f2829, 2026-08-21: `SecurityPolicySpec`, `ExtAuth`,
//! `HTTPExtAuthService`, `BackendCluster`; Gateway API's `BackendObjectReference`,
//! `LocalPolicyTargetReferenceWithSectionName` and `ReferenceGrant`), whose CRDs are not packaged
//! in this project's registries. Both examples point at the door a jwtgate config names. What
//! each proxy sends jwtgate is exercised in tests/http_door.rs.
#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{fields_within, repo};
use serde_json::Value;

/// ingress-nginx's external-auth annotations (`authreq`), and its client-certificate one.
const INGRESS_NGINX_AUTH_ANNOTATIONS: &[&str] = &[
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-snippet",
    "auth-cache-key",
    "auth-keepalive",
    "auth-keepalive-share-vars",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-cache-duration",
    "auth-response-headers",
    "auth-proxy-set-headers",
    "auth-request-redirect",
    "auth-always-set-cookie",
    "auth-tls-pass-certificate-to-upstream",
];

/// `SecurityPolicySpec` (with the inline `PolicyTargetReferences`).
const SECURITY_POLICY_SPEC: &[&str] = &[
    "targetRef",
    "targetRefs",
    "targetSelectors",
    "mergeType",
    "apiKeyAuth",
    "cors",
    "csrf",
    "basicAuth",
    "jwt",
    "oidc",
    "extAuth",
    "authorization",
];
/// `ExtAuth`.
const EXT_AUTH: &[&str] = &[
    "grpc",
    "http",
    "headersToExtAuth",
    "bodyToExtAuth",
    "timeout",
    "failOpen",
    "recomputeRoute",
    "includeRouteMetadata",
    "contextExtensions",
    "statusOnError",
];
/// `HTTPExtAuthService` (with the inline `BackendCluster`).
const HTTP_EXT_AUTH: &[&str] = &[
    "backendRef",
    "backendRefs",
    "backendSettings",
    "path",
    "pathOverride",
    "headersToBackend",
];
/// Envoy Gateway's `BackendRef`: Gateway API's `BackendObjectReference`, `weight`, `fallback`.
const BACKEND_REF: &[&str] = &["group", "kind", "name", "namespace", "port", "weight", "fallback"];
/// `LocalPolicyTargetReferenceWithSectionName`.
const TARGET_REF: &[&str] = &["group", "kind", "name", "sectionName"];
/// `ReferenceGrant` spec, `ReferenceGrantFrom`, `ReferenceGrantTo`.
const GRANT: &[&str] = &["from", "to"];
const GRANT_FROM: &[&str] = &["group", "kind", "namespace"];
const GRANT_TO: &[&str] = &["group", "kind", "name"];

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str(doc).unwrap())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_ascii_lowercase())
        .collect()
}

#[test]
fn the_ingress_nginx_example_is_a_valid_ingress_asking_jwtgates_auth_door() {
    let validate = std::env::var_os("JWTGATE_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo(".venv/bin/kubernetes-validate"));
    assert!(
        validate.is_file(),
        "no kubernetes-validate at {}: run `bash tests/run.sh` (it installs tests/requirements.txt into .venv)",
        validate.display()
    );
    let file = repo("examples/ingress-nginx/ingress.yaml");
    let out = Command::new(&validate).arg("--strict").arg(&file).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("passed for resource ingress/app"), "{report}");

    let ingress = &documents("examples/ingress-nginx/ingress.yaml")[0];
    let annotations = ingress["metadata"]["annotations"].as_object().unwrap();
    for name in annotations.keys() {
        let short = name
            .strip_prefix("nginx.ingress.kubernetes.io/")
            .unwrap_or_else(|| panic!("{name}: not an ingress-nginx annotation"));
        assert!(
            INGRESS_NGINX_AUTH_ANNOTATIONS.contains(&short),
            "{name}: not one of ingress-nginx's auth annotations"
        );
    }
    let url = annotations["nginx.ingress.kubernetes.io/auth-url"].as_str().unwrap();
    assert!(url.ends_with(":9002/auth"), "jwtgate's listen.http and /auth: {url}");
    let copied = annotations["nginx.ingress.kubernetes.io/auth-response-headers"]
        .as_str()
        .unwrap();
    assert!(copied.split(',').any(|h| h.trim() == "X-Jwt-Sub"), "{copied}");
    assert!(
        !annotations.contains_key("nginx.ingress.kubernetes.io/auth-snippet"),
        "no snippet: many controllers refuse them"
    );
}

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
