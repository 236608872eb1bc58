//! Opaque tokens decided from introspection answers served in-process at fixed endpoints (no
//! authorization server needed): jwtgate's own revocations apply to them, refresh tokens are
//! refused in each identity provider's spelling, a numeric `sub` or `jti` is refused unless read
//! as decimal, and a sender-constrained answer is refused by a provider that does not check the
//! binding. Against a real authorization server (panva's `oidc-provider`, Node):
//! `tests/external/opaque_tokens.rs`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use crate::common::opaque_tokens::*;
use common::*;

#[tokio::test]
async fn jwtgates_own_revocations_apply_to_introspected_tokens() {
    let issuer = "https://opaque.example";
    let endpoint = fixed_endpoint(serde_json::json!({
        "active": true, "iss": issuer, "sub": "bob", "jti": "op-1", "aud": "api", "scope": "read",
        "iat": now() - 60, "exp": now() + 600,
    }))
    .await;
    let (gk, mut client) = behind_fixed_endpoint(issuer, &endpoint).await;
    assert_eq!(at(&mut client, "/api", "opaque-1").await.unwrap().grpc_code, 0);
    let mut admin = gk.admin().await;
    use jwtgate::admin::pb;
    admin
        .revoke_token(authed(
            pb::RevokeTokenRequest {
                target: Some(pb::revoke_token_request::Target::Id(pb::TokenId {
                    issuer: issuer.into(),
                    jti: "op-1".into(),
                    expires_at: now() + 600,
                })),
                reason: String::new(),
            },
            ADMIN,
        ))
        .await
        .unwrap();
    let a = at(&mut client, "/api", "opaque-1").await.unwrap();
    assert_eq!((a.grpc_code, a.reason().as_str()), (16, "token revoked"), "by jti");

    let endpoint = fixed_endpoint(serde_json::json!({
        "active": true, "sub": "carol", "aud": "api", "iat": now() - 60, "exp": now() + 600,
    }))
    .await;
    let (gk, mut client) = behind_fixed_endpoint(issuer, &endpoint).await;
    assert_eq!(at(&mut client, "/api", "opaque-2").await.unwrap().grpc_code, 0);
    gk.admin()
        .await
        .revoke_subject(authed(
            pb::RevokeSubjectRequest {
                issuer: issuer.into(),
                subject: "carol".into(),
                issued_before: now(),
                reason: String::new(),
            },
            ADMIN,
        ))
        .await
        .unwrap();
    let a = at(&mut client, "/api", "opaque-2").await.unwrap();
    assert_eq!(
        (a.grpc_code, a.reason().as_str()),
        (16, "token revoked"),
        "by subject cut-off"
    );
}

/// A refresh token is no access token: Ory Hydra says so with `token_use`, Keycloak with
/// `typ`, RFC 7662 with `token_type`. Refused by default (case-insensitively); a provider may
/// list other types to refuse, or none.
#[tokio::test]
async fn an_introspected_refresh_token_is_refused_in_each_idps_spelling() {
    let issuer = "https://opaque.example";
    for (idp, extra) in [
        ("hydra", serde_json::json!({"token_use": "refresh_token"})),
        ("keycloak", serde_json::json!({"typ": "Refresh"})),
        ("keycloak offline", serde_json::json!({"typ": "Offline"})),
        ("rfc 7662", serde_json::json!({"token_type": "refresh_token"})),
        (
            "rfc 7662, upper case",
            serde_json::json!({"token_type": "REFRESH_TOKEN"}),
        ),
    ] {
        let endpoint = fixed_endpoint(active(issuer, extra)).await;
        let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
        let a = at(&mut client, "/api", "opaque-refresh").await.unwrap();
        assert_eq!(
            (a.grpc_code, a.http_status, a.reason().as_str()),
            (16, Some(401), "token is a refresh token"),
            "{idp}: {a:?}"
        );
    }
    for (idp, extra) in [
        ("hydra", serde_json::json!({"token_use": "access_token"})),
        ("keycloak", serde_json::json!({"typ": "Bearer"})),
        ("rfc 7662", serde_json::json!({"token_type": "Bearer"})),
        ("none said", serde_json::json!({})),
    ] {
        let endpoint = fixed_endpoint(active(issuer, extra)).await;
        let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
        let a = at(&mut client, "/api", "opaque-access").await.unwrap();
        assert_eq!(a.grpc_code, 0, "{idp}: {a:?}");
    }
    // Opted out: refresh tokens accepted; or another type refused.
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"token_use": "refresh_token"}))).await;
    let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", ", refuse_token_types: []").await;
    assert_eq!(at(&mut client, "/api", "opaque-r").await.unwrap().grpc_code, 0);
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"typ": "ID"}))).await;
    let (_gk, mut client) =
        behind_fixed_endpoint_with(issuer, &endpoint, "", ", refuse_token_types: [refresh_token, id]").await;
    let a = at(&mut client, "/api", "opaque-id").await.unwrap();
    assert_eq!(
        (a.grpc_code, a.reason().as_str()),
        (16, "token is not an access token (type id)"),
        "{a:?}"
    );
}

/// RFC 7662 §2.2 takes `sub` and `jti` from RFC 7519, where both are strings: an answer with a
/// number is refused, unless the provider reads integers as their decimal text.
#[tokio::test]
async fn an_introspected_numeric_sub_or_jti_is_refused_unless_read_as_decimal() {
    let issuer = "https://opaque.example";
    for (extra, reason) in [
        (serde_json::json!({"sub": 42}), "sub must be a string"),
        (serde_json::json!({"jti": 7}), "jti must be a string"),
    ] {
        let endpoint = fixed_endpoint(active(issuer, extra)).await;
        let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
        let a = at(&mut client, "/api", "opaque-n").await.unwrap();
        assert_eq!((a.grpc_code, a.reason().as_str()), (16, reason), "{a:?}");
    }
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"sub": 42, "jti": 7}))).await;
    let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "    numeric_ids: decimal\n", "").await;
    let a = at(&mut client, "/api", "opaque-n").await.unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
    assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("42"));
}

/// An answer whose `cnf` binds the token to a key or a certificate, from a provider that
/// checks neither, is refused as a bound JWT is.
#[tokio::test]
async fn an_introspected_sender_constrained_token_is_refused_by_a_provider_without_binding() {
    let issuer = "https://opaque.example";
    let endpoint = fixed_endpoint(active(issuer, serde_json::json!({"cnf": {"jkt": "abc"}}))).await;
    let (_gk, mut client) = behind_fixed_endpoint_with(issuer, &endpoint, "", "").await;
    let a = at(&mut client, "/api", "opaque-b").await.unwrap();
    assert_eq!(
        (a.grpc_code, a.reason().as_str()),
        (16, "token is sender-constrained (cnf.jkt)"),
        "{a:?}"
    );
}
