//! `examples/envoy_check.py`, the Python client built from Envoy's own protos (`xds-protos` +
//! `grpcio`), against jwtgate in this process with keys from a real JWKS server on loopback.
//!
//! The interpreter is `$JWTGATE_PYTHON`, else `<repo>/.venv/bin/python`; `bash tests/run.sh`
//! creates that venv. Without either, these tests fail: they never pass without having run.

use crate::common;
use common::tools;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// Upper bound on one client run, start-up included.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What one run of the client said.
#[derive(Debug)]
struct Run {
    code: i32,
    out: Value,
    stderr: String,
}

/// Runs `envoy_check.py --addr <grpc> ARGS…` on a blocking thread, so the in-process server
/// keeps answering on this runtime.
async fn envoy_check(addr: SocketAddr, args: &[&str]) -> Run {
    let python = tools::PYTHON.path();
    let mut cmd = Command::new(&python);
    cmd.arg(repo().join("examples/envoy_check.py"))
        .args(["--addr", &addr.to_string(), "--timeout", "10"])
        .args(args)
        .stdin(Stdio::null());
    // grpcio honours proxy variables; these checks stay on loopback.
    for var in ["http_proxy", "https_proxy", "grpc_proxy", "all_proxy"] {
        cmd.env_remove(var).env_remove(var.to_uppercase());
    }
    let output = tokio::task::spawn_blocking(move || run_bounded(cmd))
        .await
        .expect("client thread")
        .unwrap_or_else(|e| panic!("running {}: {e}; run `bash tests/run.sh`", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output.status.code().unwrap_or(-1);
    let out = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}; stderr: {stderr}"))
    };
    Run { code, out, stderr }
}

/// Runs `cmd` to completion, killing it after [`RUN_LIMIT`].
fn run_bounded(mut cmd: Command) -> Result<Output, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish within {RUN_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    })
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

async fn setup() -> (Issuer, Gatekeeper) {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), ""), &[]).await;
    gk.wait_ready().await;
    (issuer, gk)
}

fn token(issuer: &Issuer) -> String {
    sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()))
}

#[tokio::test]
async fn valid_token_is_allowed_with_identity_headers_and_metadata() {
    let (issuer, gk) = setup().await;
    let r = envoy_check(gk.grpc_addr, &["--token", &token(&issuer), "--path", "/api"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.out["allowed"], true, "{r:?}");
    assert_eq!(r.out["grpc_code"], 0);
    assert_eq!(r.out["http_status"], Value::Null);
    assert_eq!(r.out["headers"]["x-jwt-sub"], "alice");
    assert_eq!(r.out["body"], Value::Null);
    assert_eq!(
        r.out["metadata"],
        json!({"jwtgate": {"provider": "corp", "iss": issuer.url(), "sub": "alice"}})
    );
}

#[tokio::test]
async fn missing_token_is_denied_with_401_challenge_and_json_body() {
    let (_issuer, gk) = setup().await;
    let r = envoy_check(
        gk.grpc_addr,
        &[
            "--header",
            "X-Request-Id=py-request-1",
            "--header",
            "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.out["allowed"], false);
    assert_eq!(r.out["grpc_code"], 16, "UNAUTHENTICATED");
    assert_eq!(r.out["http_status"], 401);
    assert_eq!(
        r.out["headers"]["www-authenticate"], "Bearer realm=\"jwtgate\"",
        "no token: no error code (RFC 6750 §3.1)"
    );
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(r.out["headers"]["x-jwtgate-trace-id"], trace_id);
    assert_eq!(
        r.out["body"],
        json!({"error": "missing_token", "reason": "missing token", "trace_id": trace_id})
    );
    assert_eq!(r.out["metadata"], json!({}));
}

#[tokio::test]
async fn bad_signature_is_denied_with_the_reason() {
    let (issuer, gk) = setup().await;
    let forged = sign(&pem("rsa-b.pem"), Algorithm::RS256, Some("rsa"), claims(&issuer.url()));
    let r = envoy_check(gk.grpc_addr, &["--token", &forged]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.out["allowed"], false);
    assert_eq!(r.out["grpc_code"], 16);
    assert_eq!(r.out["http_status"], 401);
    assert_eq!(r.out["body"]["error"], "invalid_token");
    assert_eq!(r.out["body"]["reason"], "invalid signature");
    assert_eq!(
        r.out["headers"]["www-authenticate"],
        "Bearer realm=\"jwtgate\", error=\"invalid_token\", error_description=\"invalid signature\""
    );
}

#[tokio::test]
async fn client_sent_identity_header_is_overwritten() {
    let (issuer, gk) = setup().await;
    let r = envoy_check(
        gk.grpc_addr,
        &["--token", &token(&issuer), "--header", "x-jwt-sub=mallory"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.out["headers"]["x-jwt-sub"], "alice",
        "set with append=false: Envoy overwrites mallory"
    );
    assert_eq!(r.out["headers_to_remove"], json!([]));
}

#[tokio::test]
async fn keys_unavailable_is_a_grpc_error_and_exit_2() {
    let issuer = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "rsa")]).await;
    issuer.set_mode(Mode::Status(500));
    let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), ""), &[]).await;
    let r = envoy_check(gk.grpc_addr, &["--token", &token(&issuer)]).await;
    assert_eq!(r.code, 2, "no decision, not a denial: {r:?}");
    assert_eq!(r.out, Value::Null, "nothing on stdout");
    assert!(r.stderr.contains("UNAVAILABLE"), "{r:?}");
    assert!(r.stderr.contains("signing keys unavailable"), "{r:?}");
}

#[tokio::test]
async fn unreachable_service_is_exit_2() {
    // Bind then drop: a loopback port with nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let r = envoy_check(addr, &["--timeout", "3"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("UNAVAILABLE"), "{r:?}");
}

/// jwtgate with a provider whose tokens must be bound to the client certificate (RFC 8705) and
/// one with DPoP required; tokens, thumbprints and proofs from `jose`, certificates from rcgen.
async fn bound_setup(jose: &common::jose::Jose) -> Gatekeeper {
    // Certificate-bound tokens come through the gRPC door only (`source.certificate`).
    let yaml = format!(
        "{}http_auth: {{ client_cert_header: none }}\n",
        common::jose::BOUND_PROVIDERS
    );
    let gk = Gatekeeper::start(&yaml, &[("jwks.json", &jose.jwks())]).await;
    gk.wait_ready().await;
    gk
}

#[tokio::test]
async fn a_certificate_bound_token_passes_with_its_certificate_in_source_certificate_only() {
    let jose = common::jose::Jose::new();
    let gk = bound_setup(&jose).await;
    let ca = common::certs::Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    ca.client("workload-a").write(dir.path(), "a");
    ca.client("workload-b").write(dir.path(), "b");
    let (cert_a, cert_b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
    let x5t = jose.x5t(&cert_a);
    let token =
        jose.token(json!({ "iss": "https://mesh.test", "sub": "svc-a", "aud": "api", "cnf": { "x5t#S256": x5t } }));
    let cert_arg = |p: &Path| p.to_str().unwrap().to_owned();
    let r = envoy_check(
        gk.grpc_addr,
        &["--token", &token, "--peer-certificate", &cert_arg(&cert_a)],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.out["headers"]["x-jwt-sub"], "svc-a");
    for (what, args, reason) in [
        ("no certificate", vec![], "no client certificate"),
        (
            "another certificate",
            vec!["--peer-certificate".to_owned(), cert_arg(&cert_b)],
            "client certificate does not match the token's cnf x5t#S256",
        ),
    ] {
        let mut all = vec!["--token".to_owned(), token.clone()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let r = envoy_check(gk.grpc_addr, &all).await;
        assert_eq!(r.code, 1, "{what}: {r:?}");
        assert_eq!(r.out["http_status"], 401, "{what}");
        assert_eq!(r.out["body"]["reason"], reason, "{what}");
        assert_eq!(r.out["body"]["error"], "invalid_token", "{what}");
    }
    let unbound = jose.token(json!({ "iss": "https://mesh.test", "sub": "svc-a", "aud": "api" }));
    let r = envoy_check(
        gk.grpc_addr,
        &["--token", &unbound, "--peer-certificate", &cert_arg(&cert_a)],
    )
    .await;
    assert_eq!(
        r.out["body"]["reason"], "token is not certificate-bound (no cnf x5t#S256)",
        "{r:?}"
    );
}

#[tokio::test]
async fn a_dpop_proof_sent_by_envoys_own_message_is_checked() {
    let jose = common::jose::Jose::new();
    let gk = bound_setup(&jose).await;
    let token = jose.bound_token(
        json!({ "iss": "https://strict.test", "sub": "alice", "aud": "api" }),
        "a",
        "ES256",
    );
    let proof = |htm: &str| {
        jose.proof(json!({ "client": "a", "alg": "ES256", "htm": htm, "htu": "https://api.example.com/orders", "token": token }))
    };
    let args = |p: &str| {
        vec![
            "--token".to_owned(),
            token.clone(),
            "--dpop".to_owned(),
            p.to_owned(),
            "--method".to_owned(),
            "POST".to_owned(),
            "--path".to_owned(),
            "/orders?id=7".to_owned(),
        ]
    };
    let run = async |p: String| {
        let a = args(&p);
        envoy_check(gk.grpc_addr, &a.iter().map(String::as_str).collect::<Vec<_>>()).await
    };
    let r = run(proof("POST")).await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(proof("GET")).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.out["body"]["reason"],
        "DPoP proof htm does not match the request method"
    );
    let challenge = r.out["headers"]["www-authenticate"].as_str().unwrap();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains("error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
}
