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

use crate::common;
use crate::common::ingress_examples::*;
use common::repo;
use common::tools;
use std::process::Command;

#[test]
fn the_ingress_nginx_example_is_a_valid_ingress_asking_jwtgates_auth_door() {
    let validate = tools::KUBERNETES_VALIDATE.path();
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
