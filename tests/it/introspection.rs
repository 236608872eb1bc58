//! The RFC 7662 endpoint jwtgate serves (`listen.introspection`), end to end over real HTTP on
//! loopback, against a real JWKS server: an active token's members; exactly `{"active":false}`
//! for every kind of bad token (revoked ones included, through the real admin API); the same
//! verdict as a `Check`; callers refused without the right credentials; the admin API's
//! `Introspect` (generated gRPC client) and the `jwtgate introspect` CLI. With curl, and over
//! mutual TLS: `tests/external/introspection.rs`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use crate::common::introspection::*;
use common::*;
use jsonwebtoken::Algorithm;
use jwtgate::admin::pb;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

#[tokio::test]
async fn an_accepted_token_is_active_with_its_rfc7662_members_cached_or_not() {
    let iss = issuer().await;
    let gk = start(&iss).await;
    let exp = now() + 300;
    let t = token(
        &iss,
        json!({"exp": exp, "iat": now() - 5, "jti": "t-1", "scope": "read write", "client_id": "web", "roles": ["x"]}),
    );
    let want = json!({
        "active": true, "iss": iss.url(), "sub": "alice", "aud": "api", "exp": exp, "iat": now() - 5,
        "jti": "t-1", "scope": "read write", "client_id": "web", "token_type": "Bearer",
    });
    assert_eq!(introspect(&gk, &t).await, want, "first answer (verified)");
    assert_eq!(check_code(&gk, &t).await, 0, "a Check allows it too");
    assert_eq!(
        introspect(&gk, &t).await,
        want,
        "through the verified-token cache: the same members"
    );

    // `scp` arrays are joined; `azp` stands in for a missing client_id.
    let t = token(&iss, json!({"scp": ["a", "b"], "azp": "cli", "aud": ["api", "other"]}));
    let got = introspect(&gk, &t).await;
    assert_eq!(
        (got["scope"].clone(), got["client_id"].clone()),
        (json!("a b"), json!("cli"))
    );
    assert_eq!(got["aud"], json!(["api", "other"]));

    let m = scrape(gk.http_addr).await;
    assert_eq!(
        m.get(r#"jwtgate_introspections_total{direction="served",provider="corp",outcome="active"}"#),
        Some(&3.0)
    );
}

#[tokio::test]
async fn every_refused_token_is_exactly_active_false_and_a_check_refuses_it_too() {
    let iss = issuer().await;
    let gk = start(&iss).await;
    let mut admin = gk.admin().await;
    let revoked = token(&iss, json!({"jti": "gone"}));
    admin
        .revoke_token(authed(
            pb::RevokeTokenRequest {
                target: Some(pb::revoke_token_request::Target::Id(pb::TokenId {
                    issuer: iss.url(),
                    jti: "gone".into(),
                    expires_at: now() + 600,
                })),
                reason: "test".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();
    let cut_off = token(&iss, json!({"sub": "mallory", "iat": now() - 10}));
    admin
        .revoke_subject(authed(
            pb::RevokeSubjectRequest {
                issuer: iss.url(),
                subject: "mallory".into(),
                issued_before: now(),
                reason: "test".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();
    let mut other = claims(&iss.url());
    other["iss"] = json!("https://unknown.example");
    let cases = [
        (
            "expired",
            token(&iss, json!({"exp": now() - 120, "iat": now() - 700})),
            "expired",
        ),
        (
            "bad signature",
            sign(&pem("rsa-b.pem"), Algorithm::RS256, Some("rsa"), claims(&iss.url())),
            "bad_signature",
        ),
        (
            "wrong audience",
            token(&iss, json!({"aud": "elsewhere"})),
            "wrong_audience",
        ),
        (
            "unknown issuer",
            sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), other),
            "unknown_issuer",
        ),
        ("revoked by jti", revoked, "revoked"),
        ("cut off by subject", cut_off, "revoked"),
        ("not a token", "not-a-jwt".to_owned(), "malformed"),
        (
            "DPoP-bound, and corp checks no DPoP",
            token(
                &iss,
                json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
            ),
            "sender_constrained",
        ),
        ("a numeric sub", token(&iss, json!({"sub": 42})), "claim_not_string"),
    ];
    for (what, t, _) in &cases {
        let (status, headers, body) = post(
            &gk,
            Some(&basic("billing-worker", CLIENT_SECRET)),
            &format!("token={t}"),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"active":false}"#),
            "{what}: nothing but active false"
        );
        assert_eq!(headers["cache-control"], "no-store", "{what}");
        assert_ne!(check_code(&gk, t).await, 0, "{what}: a Check refuses it as well");
    }
    // The reasons go to the metrics (and the log), not to the caller.
    let m = scrape(gk.http_addr).await;
    for (what, _, label) in &cases {
        let found = m.iter().any(|(k, v)| {
            k.starts_with("jwtgate_introspections_total{direction=\"served\"")
                && k.contains(&format!("outcome=\"{label}\""))
                && *v >= 1.0
        });
        assert!(
            found,
            "{what}: no served introspection counted with outcome {label}: {m:?}"
        );
    }
}

#[tokio::test]
async fn callers_without_the_right_credentials_get_401_and_bad_forms_400() {
    let iss = issuer().await;
    let gk = start(&iss).await;
    let t = token(&iss, json!({}));
    let form = format!("token={t}");
    for (what, auth) in [
        ("no credentials", None),
        (
            "wrong secret",
            Some(basic("billing-worker", "billing-secret-01234567890")),
        ),
        ("unknown client", Some(basic("someone", CLIENT_SECRET))),
        ("a corp token without the role", Some(format!("Bearer {t}"))),
        ("another scheme", Some("Digest abc".to_owned())),
    ] {
        let (status, headers, body) = post(&gk, auth.as_deref(), &form).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "invalid_client",
            "{what}"
        );
        assert_eq!(
            headers["www-authenticate"], "Basic realm=\"jwtgate\", Bearer realm=\"jwtgate\"",
            "{what}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{what}");
    }
    let m = scrape(gk.http_addr).await;
    assert_eq!(
        m.get(r#"jwtgate_introspections_total{direction="served",provider="",outcome="unauthorized"}"#),
        Some(&5.0)
    );

    // A corp token with the role may ask.
    let caller = token(&iss, json!({"sub": "worker", "roles": [ROLE]}));
    let (status, _, body) = post(&gk, Some(&format!("Bearer {caller}")), &form).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["active"].clone()),
        (200, json!(true))
    );

    let ok = basic("billing-worker", CLIENT_SECRET);
    for (what, form) in [
        ("no token", "token_type_hint=access_token"),
        ("empty token", "token="),
        ("two tokens", "token=a&token=b"),
    ] {
        let (status, _, body) = post(&gk, Some(&ok), form).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "invalid_request"
        );
    }
    let json_body = reqwest::Client::new()
        .post(format!("http://{}/introspect", gk.introspection_addr.unwrap()))
        .header("authorization", &ok)
        .header("content-type", "application/json")
        .body(format!("{{\"token\":\"{t}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400, "only form bodies");
    let huge = format!("token={}", "a".repeat(64 * 1024));
    let (status, _, _) = post(&gk, Some(&ok), &huge).await;
    assert_eq!(status, 413, "a body past 3 × max_token_bytes is refused unread");
    // The hint is optional and does not change the answer.
    let (status, _, body) = post(&gk, Some(&ok), &format!("token={t}&token_type_hint=refresh_token")).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["active"].clone()),
        (200, json!(true))
    );
}

#[tokio::test]
async fn while_keys_are_unavailable_the_answer_is_503_not_inactive() {
    let iss = issuer().await;
    iss.set_mode(Mode::Status(500));
    let gk = Gatekeeper::start_text(tempfile::tempdir().unwrap(), &config(&iss), FILES).await;
    let t = token(&iss, json!({}));
    let (status, headers, body) = post(
        &gk,
        Some(&basic("billing-worker", CLIENT_SECRET)),
        &format!("token={t}"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "temporarily_unavailable"
    );
    let mut client = gk.client().await;
    assert_eq!(
        check(&mut client, bearer(&t)).await.map(|a| a.grpc_code),
        Err(tonic::Code::Unavailable),
        "a Check says UNAVAILABLE as well"
    );
}

#[tokio::test]
async fn the_admin_api_and_the_cli_introspect_with_the_reason() {
    let iss = issuer().await;
    let gk = start(&iss).await;
    let mut admin = gk.admin().await;
    let t = token(&iss, json!({"jti": "cli-1", "scope": "read"}));
    let a = admin
        .introspect(authed(pb::IntrospectRequest { token: t.clone() }, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(a.active);
    assert_eq!(
        (a.iss.as_str(), a.sub.as_deref(), a.aud.as_slice()),
        (iss.url().as_str(), Some("alice"), &["api".to_owned()][..])
    );
    assert_eq!(
        (a.jti.as_deref(), a.scope.as_deref(), a.provider.as_str()),
        (Some("cli-1"), Some("read"), "corp")
    );
    assert_eq!(a.token_type, "Bearer");
    let refused = admin
        .introspect(tonic::Request::new(pb::IntrospectRequest { token: t.clone() }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::Unauthenticated,
        "admin credentials required"
    );

    let admin_url = format!("http://{}", gk.admin_addr);
    let cli = move |token: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["introspect", "-", "--admin", &admin_url])
            .env("JWTGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let (t2, cli2) = (t.clone(), cli.clone());
    let out = tokio::task::spawn_blocking(move || cli2(&t2)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (line["active"].clone(), line["jti"].clone(), line["provider"].clone()),
        (json!(true), json!("cli-1"), json!("corp"))
    );

    admin
        .revoke_token(authed(
            pb::RevokeTokenRequest {
                target: Some(pb::revoke_token_request::Target::Token(t.clone())),
                reason: String::new(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();
    let a = admin
        .introspect(authed(pb::IntrospectRequest { token: t.clone() }, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (a.active, a.inactive_reason.as_str(), a.provider.as_str()),
        (false, "revoked", "corp")
    );
    let out = tokio::task::spawn_blocking(move || cli(&t)).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "inactive: exit 1");
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line, json!({"active": false, "provider": "corp", "reason": "revoked"}));
}

#[tokio::test]
async fn without_introspection_enabled_the_admin_method_is_refused() {
    let iss = issuer().await;
    let gk = Gatekeeper::start(
        &format!(
            "{}admin: {{ token: {{ file: admin-token.txt }} }}\n",
            jwks_provider("corp", &iss.url(), &iss.jwks_uri(), "")
        ),
        &[("admin-token.txt", ADMIN_TOKEN.as_bytes())],
    )
    .await;
    gk.wait_ready().await;
    assert_eq!(gk.introspection_addr, None);
    let refused = gk
        .admin()
        .await
        .introspect(authed(
            pb::IntrospectRequest {
                token: token(&iss, json!({})),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
}

/// Issue #33: a token client (`{provider, role}`) with no route reading roles. Its token is
/// kept in the verified-token cache after the first call; the kept copy must still hold the
/// roles claim, or every later call within `cache.max_ttl` is 401.
#[tokio::test]
async fn a_token_client_is_answered_on_every_call_not_only_the_first() {
    let iss = issuer().await;
    let gk = start(&iss).await;
    let t = token(&iss, json!({"jti": "asked-about"}));
    let caller = token(&iss, json!({"sub": "worker", "roles": [ROLE]}));
    for call in 1..=3 {
        let (status, _, body) = post(&gk, Some(&format!("Bearer {caller}")), &format!("token={t}")).await;
        assert_eq!(status, 200, "call {call}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["active"],
            json!(true),
            "call {call}"
        );
    }
}
