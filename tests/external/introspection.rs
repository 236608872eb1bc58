//! The RFC 7662 endpoint jwtgate serves (`listen.introspection`), end to end over real HTTP on
//! loopback, against a real JWKS server: an active token's members; exactly `{"active":false}`
//! for every kind of bad token (revoked ones included, through the real admin API); the same
//! verdict as a `Check`; callers refused without the right credentials; the admin API's
//! `Introspect` (generated gRPC client) and the `jwtgate introspect` CLI.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use crate::common::introspection::*;
use common::tools;
use common::*;
use serde_json::{Value, json};
use std::process::Command;

#[tokio::test]
async fn curl_with_basic_auth_gets_the_answer() {
    let curl = tools::CURL.path();
    let iss = issuer().await;
    let gk = start(&iss).await;
    let t = token(&iss, json!({"jti": "curl-1"}));
    let url = format!("http://{}/introspect", gk.introspection_addr.unwrap());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(curl)
            .args([
                "-sS",
                "--max-time",
                "10",
                "-u",
                &format!("billing-worker:{CLIENT_SECRET}"),
                "-d",
                &format!("token={t}"),
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (answer["active"].clone(), answer["jti"].clone()),
        (json!(true), json!("curl-1"))
    );
}

#[tokio::test]
async fn the_endpoint_serves_mutual_tls_like_the_other_listeners() {
    let curl = tools::CURL.path();
    let iss = issuer().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = common::certs::Ca::new("introspection test CA");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    ca.server().write(dir.path(), "server");
    ca.client("billing-worker").write(dir.path(), "client");
    let text = config(&iss).replace(
        "introspection: \"127.0.0.1:0\" }",
        "introspection: \"127.0.0.1:0\", introspection_tls: { cert: server.pem, key: server.key, client_ca: ca.pem } }",
    );
    let gk = Gatekeeper::start_text(dir, &text, FILES).await;
    gk.wait_ready().await;
    let t = token(&iss, json!({}));
    let url = format!("https://127.0.0.1:{}/introspect", gk.introspection_addr.unwrap().port());
    let dir = gk.dir().to_owned();
    let ask = move |with_cert: bool| {
        let mut cmd = Command::new(&curl);
        cmd.current_dir(&dir)
            .args(["-sS", "--max-time", "10", "--cacert", "ca.pem"])
            .args([
                "-u",
                &format!("billing-worker:{CLIENT_SECRET}"),
                "-d",
                &format!("token={t}"),
            ]);
        if with_cert {
            cmd.args(["--cert", "client.pem", "--key", "client.key"]);
        }
        cmd.arg(&url).output().unwrap()
    };
    let (ask2, ask3) = (ask.clone(), ask);
    let out = tokio::task::spawn_blocking(move || ask2(true)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["active"], true, "over mutual TLS");
    let out = tokio::task::spawn_blocking(move || ask3(false)).await.unwrap();
    assert!(!out.status.success(), "without a client certificate: no answer");
}
