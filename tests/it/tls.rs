//! TLS and mutual TLS on the listeners (`listen.grpc_tls`, `listen.http_tls`,
//! `listen.admin_tls`), through the real binary with certificates made here (rcgen): a real
//! tonic client checks over TLS and mTLS, clients without the right certificate (or trust) get
//! nothing, the HTTP door speaks HTTPS over HTTP/2 and HTTP/1.1, the admin command line talks
//! mTLS with `--ca/--cert/--key`, certificate rotation reaches new connections without dropping
//! an open one, a bad file at reload keeps the old certificate and says why, and bad files at
//! start are refused with file, field and reason.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::certs::Ca;
use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A CA (`ca.pem`) with a server certificate (`server.pem`/`.key`) and a client certificate
/// (`client.pem`/`.key`); another CA (`other-ca.pem`) with its own client certificate
/// (`stranger.pem`/`.key`).
fn pki(dir: &Path) -> Ca {
    let ca = Ca::new("jwtgate test CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    ca.server().write(dir, "server");
    ca.client("billing-worker").write(dir, "client");
    let other = Ca::new("someone else's CA");
    std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
    other.client("stranger").write(dir, "stranger");
    ca
}

/// A config in `dir` with ephemeral loopback listeners, `tls` (more `listen:` lines, indented),
/// the issuer's provider and the static admin token.
fn config(dir: &Path, tls: &str, issuer: &Issuer) -> PathBuf {
    std::fs::write(dir.join("admin.token"), ADMIN_TOKEN).unwrap();
    let text = format!(
        "listen:\n  grpc: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\n{tls}providers:\n{}admin: {{ token: {{ file: admin.token }} }}\nrevocation: {{ path: data }}\n",
        jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
    );
    let file = dir.join("jwtgate.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// jwtgate (the binary) with `tls` (more `listen:` lines) in a fresh directory holding [`pki`]'s
/// files: the directory, the CA, the issuer and the process (listening, not necessarily ready).
async fn serving(tls: &str) -> (tempfile::TempDir, Ca, Issuer, ServeProcess) {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let issuer = rsa_issuer().await;
    let served = ServeProcess::start(&config(dir.path(), tls, &issuer), &[]);
    (dir, ca, issuer, served)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// A tonic client config trusting `ca`, presenting `identity` (a `NAME` of `NAME.pem`/`.key`).
fn client_tls(dir: &Path, ca: &str, identity: Option<&str>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(dir, ca)));
    match identity {
        Some(name) => config.identity(Identity::from_pem(
            read(dir, &format!("{name}.pem")),
            read(dir, &format!("{name}.key")),
        )),
        None => config,
    }
}

/// A Check through a fresh TLS connection to `addr`: the answer's gRPC code, or the call's
/// error code when the connection or the call failed.
async fn check_over(addr: &str, tls: ClientTlsConfig, token: &str) -> Result<i32, tonic::Code> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap();
    let channel = endpoint.connect().await.map_err(|_| tonic::Code::Unavailable)?;
    let answer = check(&mut AuthorizationClient::new(channel), bearer(token)).await?;
    Ok(answer.grpc_code)
}

/// A rustls client config trusting the PEM CA file `ca` and offering ALPN `h2`.
fn rustls_client(dir: &Path, ca: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join(ca)).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Opens a TLS connection to `addr`: the certificate the server presented.
async fn presented(addr: &str, config: Arc<rustls::ClientConfig>) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

fn der(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Replaces `dir/name` at once, as kubelet and cert-manager do (write aside, rename over).
fn replace(dir: &Path, name: &str, content: &str) {
    let aside = dir.join(format!(".{name}.new"));
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(aside, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_checks_over_mutual_tls_and_clients_without_the_right_certificate_get_nothing() {
    bounded(Duration::from_secs(60), async {
        let (dir, _, issuer, served) =
            serving("  grpc_tls: { cert: server.pem, key: server.key, client_ca: ca.pem }\n").await;
        let d = dir.path();
        served.wait_ready().await;
        let grpc = served.addr("grpc");
        let good = rsa_token(&issuer.url(), json!({}));
        let bad = format!("{}x", &good[..good.len() - 1]);

        // With the CA's client certificate: decided as over plaintext.
        let mtls = || client_tls(d, "ca.pem", Some("client"));
        assert_eq!(check_over(&grpc, mtls(), &good).await, Ok(0), "valid token over mTLS");
        assert_eq!(check_over(&grpc, mtls(), &bad).await, Ok(16), "bad signature over mTLS");

        // No client certificate, one from another CA, a server it does not trust, plaintext.
        let no_cert = check_over(&grpc, client_tls(d, "ca.pem", None), &good).await;
        assert!(no_cert.is_err(), "no client certificate: {no_cert:?}");
        let stranger = check_over(&grpc, client_tls(d, "ca.pem", Some("stranger")), &good).await;
        assert!(stranger.is_err(), "a client certificate of another CA: {stranger:?}");
        let untrusted = check_over(&grpc, client_tls(d, "other-ca.pem", Some("client")), &good).await;
        assert!(
            untrusted.is_err(),
            "a server certificate the client does not trust: {untrusted:?}"
        );
        let plaintext = AuthorizationClient::connect(format!("http://{grpc}")).await;
        if let Ok(mut client) = plaintext {
            let answer = check(&mut client, bearer(&good)).await;
            assert!(answer.is_err(), "plaintext to a TLS listener: {answer:?}");
        }

        let m = scrape(served.addr("http")).await;
        let handshakes = |outcome: &str| {
            m.get(&format!(
                "jwtgate_tls_handshakes_total{{listener=\"grpc\",outcome=\"{outcome}\"}}"
            ))
            .copied()
            .unwrap_or(0.0)
        };
        assert!(handshakes("success") >= 2.0, "{m:?}");
        assert!(handshakes("failure") >= 3.0, "stranger, untrusted and plaintext: {m:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_door_serves_https_over_http2_and_http1() {
    bounded(Duration::from_secs(60), async {
        let (dir, _, issuer, served) = serving("  http_tls: { cert: server.pem, key: server.key }\n").await;
        let d = dir.path();
        let base = format!("https://{}", served.addr("http"));
        let ca = reqwest::Certificate::from_pem(&read(d, "ca.pem")).unwrap();
        let h2 = reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .build()
            .unwrap();
        let h1 = reqwest::Client::builder()
            .add_root_certificate(ca)
            .http1_only()
            .build()
            .unwrap();
        let token = rsa_token(&issuer.url(), json!({"sub": "alice"}));
        for (client, version) in [(&h2, reqwest::Version::HTTP_2), (&h1, reqwest::Version::HTTP_11)] {
            let mut ready = None;
            for _ in 0..100 {
                let r = client.get(format!("{base}/readyz")).send().await.unwrap();
                if r.status() == 200 {
                    ready = Some(r);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(ready.expect("ready within 5s").version(), version);
            let allowed = client
                .get(format!("{base}/auth"))
                .header("x-original-uri", "/api/orders")
                .header("x-original-method", "GET")
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(allowed.status(), 200, "{version:?}");
            assert_eq!(allowed.headers()["x-jwt-sub"], "alice");
            let denied = client
                .get(format!("{base}/auth"))
                .header("x-original-uri", "/api/orders")
                .header("x-original-method", "GET")
                .send()
                .await
                .unwrap();
            assert_eq!(denied.status(), 401, "{version:?}");
        }
        // Plain HTTP on the TLS port gets no answer.
        assert!(
            reqwest::get(format!("http://{}/healthz", served.addr("http")))
                .await
                .is_err()
        );
    })
    .await;
}

/// `jwtgate ARGS` with the admin token in the environment: exit code, stdout, stderr.
async fn cli(args: Vec<String>) -> (Option<i32>, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(args)
            .env("JWTGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_line_talks_mutual_tls_with_ca_cert_and_key() {
    bounded(Duration::from_secs(60), async {
        let (dir, _, _issuer, served) =
            serving("  admin_tls: { cert: server.pem, key: server.key, client_ca: ca.pem }\n").await;
        let d = dir.path();
        served.wait_ready().await;
        let url = format!("https://{}", served.addr("admin"));
        let path = |name: &str| d.join(name).display().to_string();
        let args = |extra: &[&str]| {
            let mut a: Vec<String> = ["keys", "status", "--admin", &url].map(String::from).to_vec();
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };

        let (code, stdout, stderr) = cli(args(&[
            "--ca",
            &path("ca.pem"),
            "--cert",
            &path("client.pem"),
            "--key",
            &path("client.key"),
        ]))
        .await;
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.contains("corp"), "{stdout}");

        // Without a client certificate the listener refuses the connection.
        let (code, _, stderr) = cli(args(&["--ca", &path("ca.pem")])).await;
        assert_eq!(code, Some(1), "{stderr}");
        // Not trusting the server's CA: refused before anything is sent.
        let (code, _, stderr) = cli(args(&[
            "--ca",
            &path("other-ca.pem"),
            "--cert",
            &path("client.pem"),
            "--key",
            &path("client.key"),
        ]))
        .await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("cannot reach the admin API"), "{stderr}");
        // A certificate without its key is an argument error.
        let (code, _, stderr) = cli(args(&["--cert", &path("client.pem")])).await;
        assert_eq!(code, Some(2), "{stderr}");
        // TLS options with a plaintext URL are refused, not ignored.
        let plain = [
            "keys",
            "status",
            "--admin",
            "http://127.0.0.1:9",
            "--ca",
            &path("ca.pem"),
        ];
        let (code, _, stderr) = cli(plain.map(String::from).to_vec()).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("need an https:// --admin URL"), "{stderr}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_reaches_new_connections_without_dropping_open_ones() {
    bounded(Duration::from_secs(60), async {
        let (dir, ca, issuer, served) = serving("  grpc_tls: { cert: server.pem, key: server.key }\n").await;
        let d = dir.path();
        let first = std::fs::read_to_string(d.join("server.pem")).unwrap();
        served.wait_ready().await;
        let grpc = served.addr("grpc");
        let tls = rustls_client(d, "ca.pem");
        let token = rsa_token(&issuer.url(), json!({}));

        // A client that counts its connections and keeps the certificate each one saw.
        let connects = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connector = {
            let (connects, seen, tls, grpc) = (connects.clone(), seen.clone(), tls.clone(), grpc.clone());
            tower::service_fn(move |_: http::Uri| {
                let (connects, seen, tls, grpc) = (connects.clone(), seen.clone(), tls.clone(), grpc.clone());
                async move {
                    connects.fetch_add(1, Ordering::SeqCst);
                    let tcp = TcpStream::connect(&grpc).await?;
                    let name = ServerName::try_from("127.0.0.1").unwrap();
                    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
                    seen.lock()
                        .unwrap()
                        .push(stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned());
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            })
        };
        let channel: Channel = Endpoint::from_static("http://127.0.0.1")
            .connect_with_connector(connector)
            .await
            .unwrap();
        let mut client = AuthorizationClient::new(channel);
        assert_eq!(check(&mut client, bearer(&token)).await.unwrap().grpc_code, 0);
        assert_eq!(presented(&grpc, tls.clone()).await, der(&first));

        // cert-manager renews: a new key and certificate from the same CA.
        let renewed = ca.server();
        replace(d, "server.key", &renewed.key);
        replace(d, "server.pem", &renewed.cert);
        let reloaded = served.wait_for("TLS certificate files changed: reloaded");
        assert_eq!(reloaded["fields"]["field"], "listen.grpc_tls");
        assert_eq!(
            presented(&grpc, tls.clone()).await,
            der(&renewed.cert),
            "a new connection"
        );
        assert_eq!(check(&mut client, bearer(&token)).await.unwrap().grpc_code, 0);
        assert_eq!(connects.load(Ordering::SeqCst), 1, "the open connection was kept");
        assert_eq!(*seen.lock().unwrap(), [der(&first)]);

        // A broken file at reload: the renewed certificate stays, and the log says why.
        replace(d, "server.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
        let kept =
            served.wait_for("TLS certificate files changed but cannot be used: keeping the certificate in force");
        let reason = kept["fields"]["reason"].as_str().unwrap();
        assert!(reason.starts_with("listen.grpc_tls.cert: "), "{reason}");
        assert!(reason.contains("server.pem"), "{reason}");
        assert_eq!(presented(&grpc, tls.clone()).await, der(&renewed.cert));
        assert_eq!(check(&mut client, bearer(&token)).await.unwrap().grpc_code, 0);
        assert_eq!(connects.load(Ordering::SeqCst), 1);

        let m = scrape(served.addr("http")).await;
        let reloads =
            |outcome: &str| m[&format!("jwtgate_tls_reloads_total{{listener=\"grpc\",outcome=\"{outcome}\"}}")];
        assert_eq!((reloads("success"), reloads("failure")), (1.0, 1.0), "{m:?}");
    })
    .await;
}

#[test]
fn bad_tls_files_are_refused_at_start_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    std::fs::write(d.join("garbage.pem"), "hello\n").unwrap();
    let cases = [
        (
            "  grpc_tls: { cert: missing.pem, key: server.key }\n",
            "listen.grpc_tls.cert: cannot read ",
        ),
        (
            "  grpc_tls: { cert: server.pem, key: client.key }\n",
            "listen.grpc_tls.key: ",
        ),
        (
            "  http_tls: { cert: server.pem, key: server.key, client_ca: garbage.pem }\n",
            "listen.http_tls.client_ca: ",
        ),
        (
            "  admin_tls: { cert: garbage.pem, key: server.key }\n",
            "holds no PEM certificate",
        ),
        (
            "  admin_tls: { cert: server.pem }\n",
            "listen.admin_tls.key: is required",
        ),
        (
            "  grpc_tls: { cert: server.pem, key: server.key, ca: ca.pem }\n",
            "listen.grpc_tls",
        ),
    ];
    let providers = "providers:\n  - { name: corp, issuer: corp, jwks_file: jwks.json }\n";
    std::fs::write(d.join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    for (tls, want) in cases {
        let file = d.join("bad.yaml");
        std::fs::write(
            &file,
            format!(
                "listen:\n  grpc: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\n{tls}{providers}"
            ),
        )
        .unwrap();
        for args in [&["validate-config"][..], &["serve", "--config"][..]] {
            let stderr = refused(args, &file, &[]);
            assert!(
                stderr.contains(&format!("{}: ", file.display())),
                "{args:?} {tls}: {stderr}"
            );
            assert!(stderr.contains(want), "{args:?} {tls}: want {want:?} in {stderr}");
        }
    }
}

#[tokio::test]
async fn a_tls_session_that_sends_nothing_after_its_handshake_is_closed_within_header_read_timeout() {
    bounded(Duration::from_secs(30), async {
        let limits = "limits: { header_read_timeout: 1s, idle_timeout: 3s, http2_keepalive_interval: 1s, http2_keepalive_timeout: 1s }\n";
        let (dir, _, _issuer, served) = serving(&format!("  grpc_tls: {{ cert: server.pem, key: server.key }}\n{limits}")).await;
        let tcp = TcpStream::connect(served.addr("grpc")).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(rustls_client(dir.path(), "ca.pem"))
            .connect(name, tcp)
            .await
            .unwrap();
        let start = std::time::Instant::now();
        let mut buf = vec![0u8; 4096];
        // The server's SETTINGS may come first; then the close.
        loop {
            use tokio::io::AsyncReadExt;
            match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
                Err(_) => panic!("a silent TLS session was still open after 5 s"),
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(4), "closed after {took:?}");
    })
    .await;
}
