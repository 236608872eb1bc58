//! The ingress examples' harness: the example manifests, read.

use crate::common::repo;
use serde_json::Value;

/// ingress-nginx's external-auth annotations (`authreq`), and its client-certificate one.
pub const INGRESS_NGINX_AUTH_ANNOTATIONS: &[&str] = &[
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
pub const SECURITY_POLICY_SPEC: &[&str] = &[
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
pub const EXT_AUTH: &[&str] = &[
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
pub const HTTP_EXT_AUTH: &[&str] = &[
    "backendRef",
    "backendRefs",
    "backendSettings",
    "path",
    "pathOverride",
    "headersToBackend",
];
/// Envoy Gateway's `BackendRef`: Gateway API's `BackendObjectReference`, `weight`, `fallback`.
pub const BACKEND_REF: &[&str] = &["group", "kind", "name", "namespace", "port", "weight", "fallback"];
/// `LocalPolicyTargetReferenceWithSectionName`.
pub const TARGET_REF: &[&str] = &["group", "kind", "name", "sectionName"];
/// `ReferenceGrant` spec, `ReferenceGrantFrom`, `ReferenceGrantTo`.
pub const GRANT: &[&str] = &["from", "to"];
pub const GRANT_FROM: &[&str] = &["group", "kind", "namespace"];
pub const GRANT_TO: &[&str] = &["group", "kind", "name"];

pub fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str(doc).unwrap())
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_ascii_lowercase())
        .collect()
}
