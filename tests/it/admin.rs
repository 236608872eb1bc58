//! The admin API end to end: revocations made through the real gRPC admin API (generated client)
//! and the real `jwtgate revoke` CLI take effect at the Envoy Check door; credentials are refused
//! with the right codes in both admin modes; the embedded store keeps revocations across a
//! restart and purges expired ones; every call leaves an audit event.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm;
use jwtgate::admin::pb::admin_client::AdminClient;
use jwtgate::admin::pb::revoke_token_request::Target;
use jwtgate::admin::pb::{self, RevocationKind};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Status};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const ADMIN_ROLE: &str = "jwtgate-admin";
const HS_SECRET: &str = "other-provider-secret-0123456789-abcdef";

/// Every test runs under this bound.
const BOUND: Duration = Duration::from_secs(60);

fn corp(issuer: &Issuer) -> String {
    jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), "")
}

/// Config text (after `providers:`) with the static admin token and `extra` top-level YAML.
fn static_admin(issuer: &Issuer, extra: &str) -> String {
    format!(
        "{}admin: {{ token: {{ file: admin-token.txt }} }}\n{extra}",
        corp(issuer)
    )
}

const ADMIN_FILES: &[(&str, &[u8])] = &[("admin-token.txt", ADMIN_TOKEN.as_bytes())];

async fn gatekeeper(issuer: &Issuer, extra: &str) -> Gatekeeper {
    let gk = Gatekeeper::start(&static_admin(issuer, extra), ADMIN_FILES).await;
    gk.wait_ready().await;
    gk
}

/// A corp token for `sub: alice, aud: api` with `extra` claims merged in (600 s unless `exp` is
/// given).
fn token(issuer: &Issuer, extra: Value) -> String {
    let mut c = claims(&issuer.url());
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), c)
}

fn by_id(issuer: &str, jti: &str, expires_at: u64) -> pb::RevokeTokenRequest {
    pb::RevokeTokenRequest {
        target: Some(Target::Id(pb::TokenId {
            issuer: issuer.into(),
            jti: jti.into(),
            expires_at,
        })),
        reason: "test".into(),
    }
}

fn by_token(token: &str) -> pb::RevokeTokenRequest {
    pb::RevokeTokenRequest {
        target: Some(Target::Token(token.into())),
        reason: String::new(),
    }
}

async fn revoke(admin: &mut AdminClient<Channel>, req: pb::RevokeTokenRequest) -> Result<pb::RevokeResponse, Status> {
    admin
        .revoke_token(authed(req, ADMIN_TOKEN))
        .await
        .map(tonic::Response::into_inner)
}

async fn revoke_subject(
    admin: &mut AdminClient<Channel>,
    issuer: &str,
    subject: &str,
    issued_before: u64,
) -> Result<pb::RevokeResponse, Status> {
    let req = pb::RevokeSubjectRequest {
        issuer: issuer.into(),
        subject: subject.into(),
        issued_before,
        reason: "password change".into(),
    };
    admin
        .revoke_subject(authed(req, ADMIN_TOKEN))
        .await
        .map(tonic::Response::into_inner)
}

async fn list_page(admin: &mut AdminClient<Channel>, page_size: u32, page_token: &str) -> pb::ListRevocationsResponse {
    let req = pb::ListRevocationsRequest {
        page_size,
        page_token: page_token.into(),
    };
    admin
        .list_revocations(authed(req, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner()
}

/// The `jti`s (token revocations) and subjects (subject revocations) in force, in list order.
async fn listed(admin: &mut AdminClient<Channel>) -> Vec<String> {
    let page = list_page(admin, 1000, "").await;
    assert!(page.next_page_token.is_empty());
    page.revocations
        .iter()
        .map(|r| match r.kind() {
            RevocationKind::Token => r.jti.clone(),
            _ => r.subject.clone(),
        })
        .collect()
}

/// Asserts the Check door denies `t` as revoked.
async fn assert_revoked(gk: &Gatekeeper, t: &str) {
    let a = check(&mut gk.client().await, bearer(t)).await.unwrap();
    assert_eq!(a.http_status, Some(401), "{a:?}");
    assert_eq!(a.reason(), "token revoked", "{a:?}");
}

/// Asserts the Check door lets `t` through.
async fn assert_allowed(gk: &Gatekeeper, t: &str) {
    let a = check(&mut gk.client().await, bearer(t)).await.unwrap();
    assert_eq!(a.grpc_code, 0, "{a:?}");
}

#[tokio::test]
async fn revoking_a_jti_denies_that_token_at_the_check_door_and_no_other() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = gatekeeper(&iss, "").await;
        let revoked = token(&iss, json!({"jti": "j-1"}));
        let other = token(&iss, json!({"jti": "j-2"}));
        assert_allowed(&gk, &revoked).await;

        let mut admin = gk.admin().await;
        let before = now();
        let r = revoke(&mut admin, by_id(&iss.url(), "j-1", 0))
            .await
            .unwrap()
            .revocation
            .unwrap();
        assert_eq!(r.kind(), RevocationKind::Token);
        assert_eq!(
            (r.issuer.as_str(), r.jti.as_str(), r.reason.as_str()),
            (iss.url().as_str(), "j-1", "test")
        );
        // No max_lifetime: the default subject_retention (24h) plus the clock skew (60s).
        assert!((before + 86_460..=now() + 86_460).contains(&r.expires_at), "{r:?}");
        assert!((before..=now()).contains(&r.created_at));

        assert_revoked(&gk, &revoked).await;
        assert_allowed(&gk, &other).await;

        // An explicit expires_at is the token's exp: kept until then plus the skew (60 s), as a
        // token is accepted that long past its exp.
        let exp = now() + 3600;
        let r = revoke(&mut admin, by_id(&iss.url(), "j-3", exp))
            .await
            .unwrap()
            .revocation
            .unwrap();
        assert_eq!(r.expires_at, exp + 60);

        // An exp passed but within the skew: the token is still accepted, so it is revoked.
        let late_exp = now() - 30;
        let late = token(&iss, json!({"jti": "late", "exp": late_exp}));
        assert_allowed(&gk, &late).await;
        let r = revoke(&mut admin, by_id(&iss.url(), "late", late_exp)).await.unwrap();
        assert_eq!(r.revocation.map(|r| r.expires_at), Some(late_exp + 60), "{}", r.note);
        assert_revoked(&gk, &late).await;

        for (req, what) in [
            (by_id("https://unknown.example/", "j", 0), "not a configured provider"),
            (by_id(&iss.url(), "", 0), "jti is required"),
            (by_id("", "j", 0), "issuer is required"),
            (
                pb::RevokeTokenRequest {
                    target: None,
                    reason: String::new(),
                },
                "give the token",
            ),
        ] {
            let e = revoke(&mut admin, req).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
            assert!(e.message().contains(what), "{what}: {e:?}");
        }
    })
    .await
}

#[tokio::test]
async fn revoking_by_the_token_itself_keeps_it_until_its_exp_plus_skew() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = gatekeeper(&iss, "").await;
        let mut admin = gk.admin().await;
        let exp = now() + 900;
        let t = token(&iss, json!({"jti": "self-1", "exp": exp}));
        assert_allowed(&gk, &t).await;

        let r = revoke(&mut admin, by_token(&t)).await.unwrap().revocation.unwrap();
        assert_eq!((r.jti.as_str(), r.expires_at), ("self-1", exp + 60));
        assert_eq!(r.issuer, iss.url());
        assert_revoked(&gk, &t).await;

        let expired = token(&iss, json!({"jti": "old", "iat": now() - 7200, "exp": now() - 3600}));
        let answer = revoke(&mut admin, by_token(&expired)).await.unwrap();
        assert!(answer.revocation.is_none(), "{answer:?}");
        assert!(answer.note.contains("already expired"), "{answer:?}");

        let no_jti = token(&iss, json!({"jti": null})); // mint adds a jti unless one is given
        let e = revoke(&mut admin, by_token(&no_jti)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("revoke its subject"), "{e:?}");

        let forged = sign(
            &pem("rsa-b.pem"),
            Algorithm::RS256,
            Some("rsa"),
            json!({"iss": iss.url(), "aud": "api", "sub": "alice", "jti": "forged"}),
        );
        let e = revoke(&mut admin, by_token(&forged)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("invalid signature"), "{e:?}");

        assert_eq!(
            listed(&mut admin).await,
            ["self-1"],
            "only the verified, live token was revoked"
        );
    })
    .await
}

#[tokio::test]
async fn revoking_a_subject_denies_tokens_issued_before_the_cut_off_only() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = gatekeeper(&iss, "").await;
        let mut admin = gk.admin().await;
        let old = token(&iss, json!({"iat": now() - 120}));
        // Signed directly: minting adds `iat`. Without one, a token counts as issued at 0.
        let no_iat = {
            let mut c = claims(&iss.url());
            c["exp"] = json!(now() + 600);
            let key = jwtgate_core::mint::signing_key(&pem("rsa-a.pem"), Algorithm::RS256).unwrap();
            let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
            header.kid = Some("rsa".into());
            jsonwebtoken::encode(&header, &c, &key).unwrap()
        };
        let bob = token(&iss, json!({"sub": "bob", "iat": now() - 120}));
        assert_allowed(&gk, &old).await;

        let cut_off = now() - 30;
        let r = revoke_subject(&mut admin, &iss.url(), "alice", cut_off)
            .await
            .unwrap()
            .revocation
            .unwrap();
        assert_eq!(r.kind(), RevocationKind::Subject);
        assert_eq!((r.subject.as_str(), r.issued_before), ("alice", cut_off));
        assert_eq!(r.expires_at, cut_off + 86_400 + 60);
        assert_eq!(r.reason, "password change");

        assert_revoked(&gk, &old).await;
        assert_revoked(&gk, &no_iat).await;
        assert_allowed(&gk, &token(&iss, json!({"iat": now()}))).await;
        assert_allowed(&gk, &bob).await;

        // 0 means now, including tokens issued earlier in this second.
        let same_second = token(&iss, json!({"sub": "bob"}));
        let before = now() + 1;
        let r = revoke_subject(&mut admin, &iss.url(), "bob", 0)
            .await
            .unwrap()
            .revocation
            .unwrap();
        assert!((before..=now() + 1).contains(&r.issued_before));
        assert_revoked(&gk, &bob).await;
        assert_revoked(&gk, &same_second).await;

        let e = revoke_subject(&mut admin, "https://unknown.example/", "alice", 0)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("not a configured provider"), "{e:?}");
        let e = revoke_subject(&mut admin, &iss.url(), "alice", now() + 3600)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = revoke_subject(&mut admin, &iss.url(), "", 0).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        // A cut-off so old that every token issued before it has expired changes nothing.
        let answer = revoke_subject(&mut admin, &iss.url(), "carol", now() - 200_000)
            .await
            .unwrap();
        assert!(answer.revocation.is_none() && !answer.note.is_empty(), "{answer:?}");
        assert_eq!(listed(&mut admin).await, ["alice", "bob"]);
    })
    .await
}

#[tokio::test]
async fn revocations_are_listed_in_key_order_page_by_page() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = gatekeeper(&iss, "").await;
        let mut admin = gk.admin().await;
        for jti in ["e", "b", "d", "a", "c"] {
            revoke(&mut admin, by_id(&iss.url(), jti, 0)).await.unwrap();
        }
        revoke_subject(&mut admin, &iss.url(), "alice", 0).await.unwrap();

        let mut seen = Vec::new();
        let mut page_token = String::new();
        let mut pages = 0;
        loop {
            let page = list_page(&mut admin, 2, &page_token).await;
            assert!(page.revocations.len() <= 2);
            seen.extend(page.revocations);
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
            assert!(pages < 10, "paging does not end");
        }
        assert_eq!(pages, 3);
        // Subject keys (`s:`) sort before token keys (`t:`).
        let order: Vec<&str> = seen
            .iter()
            .map(|r| {
                if r.jti.is_empty() {
                    r.subject.as_str()
                } else {
                    r.jti.as_str()
                }
            })
            .collect();
        assert_eq!(order, ["alice", "a", "b", "c", "d", "e"]);

        let all = list_page(&mut admin, 0, "").await;
        assert_eq!(all.revocations.len(), 6, "page_size 0 means the default (100)");
        assert!(all.next_page_token.is_empty());

        let e = admin
            .list_revocations(authed(
                pb::ListRevocationsRequest {
                    page_size: 2,
                    page_token: "not base64!".into(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    })
    .await
}

#[tokio::test]
async fn key_status_shows_each_provider() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let yaml = format!(
            "{}  - name: legacy\n    issuer: monolith\n    hmac_secret: {{ file: hs.txt }}\nadmin: {{ token: {{ file: admin-token.txt }} }}\n",
            corp(&iss)
        );
        let gk = Gatekeeper::start(
            &yaml,
            &[
                ("admin-token.txt", ADMIN_TOKEN.as_bytes()),
                ("hs.txt", HS_SECRET.as_bytes()),
            ],
        )
        .await;
        gk.wait_ready().await;
        let status = gk
            .admin()
            .await
            .key_status(authed(pb::KeyStatusRequest {}, ADMIN_TOKEN))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = status.providers.iter().map(|p| p.provider.as_str()).collect();
        assert_eq!(names, ["corp", "legacy"]);
        let corp = &status.providers[0];
        assert_eq!((corp.state.as_str(), corp.keys), ("fresh", 1), "{corp:?}");
        assert_eq!(corp.kids, ["rsa"]);
        assert_eq!(corp.issuer, iss.url());
        assert!(corp.fetches >= 1, "{corp:?}");
        assert!(corp.last_loaded_unix.is_some_and(|t| t <= now()), "{corp:?}");
        assert!(corp.age_seconds.is_some() && corp.last_error.is_none(), "{corp:?}");
        assert_eq!(status.providers[1].issuer, "monolith");
        assert_eq!(status.providers[1].keys, 1);
    })
    .await
}

/// Calls each admin method with `credential` (none when `None`) and returns each outcome's code.
async fn codes(admin: &mut AdminClient<Channel>, credential: Option<&str>) -> Vec<Code> {
    fn req<T>(m: T, credential: Option<&str>) -> tonic::Request<T> {
        match credential {
            Some(c) => authed(m, c),
            None => tonic::Request::new(m),
        }
    }
    let code = |r: Result<(), Status>| r.map_or_else(|e| e.code(), |()| Code::Ok);
    vec![
        code(admin.revoke_token(req(by_id("i", "j", 0), credential)).await.map(drop)),
        code(
            admin
                .revoke_subject(req(pb::RevokeSubjectRequest::default(), credential))
                .await
                .map(drop),
        ),
        code(
            admin
                .list_revocations(req(pb::ListRevocationsRequest::default(), credential))
                .await
                .map(drop),
        ),
        code(
            admin
                .key_status(req(pb::KeyStatusRequest {}, credential))
                .await
                .map(drop),
        ),
    ]
}

#[tokio::test]
async fn static_token_mode_refuses_missing_and_wrong_credentials() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = gatekeeper(&iss, "").await;
        let mut admin = gk.admin().await;
        let unauthenticated = vec![Code::Unauthenticated; 4];
        assert_eq!(codes(&mut admin, None).await, unauthenticated);
        assert_eq!(
            codes(&mut admin, Some("wrong-token-0123456789abcdef")).await,
            unauthenticated
        );
        assert_eq!(
            codes(&mut admin, Some(&ADMIN_TOKEN[..20])).await,
            unauthenticated,
            "a prefix"
        );
        let user = token(&iss, json!({"roles": [ADMIN_ROLE]}));
        assert_eq!(
            codes(&mut admin, Some(&user)).await,
            unauthenticated,
            "no admin provider configured"
        );
        let mut basic = tonic::Request::new(pb::KeyStatusRequest {});
        basic
            .metadata_mut()
            .insert("authorization", format!("Basic {ADMIN_TOKEN}").parse().unwrap());
        assert_eq!(admin.key_status(basic).await.unwrap_err().code(), Code::Unauthenticated);

        // The right token: revoke_token and revoke_subject then fail only on their arguments.
        assert_eq!(
            codes(&mut admin, Some(ADMIN_TOKEN)).await,
            [Code::InvalidArgument, Code::InvalidArgument, Code::Ok, Code::Ok]
        );
        assert!(listed(&mut admin).await.is_empty(), "refused calls changed nothing");
    })
    .await
}

#[tokio::test]
async fn provider_mode_needs_a_valid_token_from_the_admin_provider_with_the_role() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let yaml = format!(
            "{}    roles_claim: realm_access.roles\n  - name: other\n    issuer: other-issuer\n    hmac_secret: {{ file: hs.txt }}\n    roles_claim: realm_access.roles\nadmin: {{ provider: corp, role: {ADMIN_ROLE} }}\n",
            corp(&iss)
        );
        let gk = Gatekeeper::start(&yaml, &[("hs.txt", HS_SECRET.as_bytes())]).await;
        gk.wait_ready().await;
        let mut admin = gk.admin().await;
        let roles = |r: &[&str]| json!({"realm_access": {"roles": r}});
        let claims_with = |extra: Value| {
            let mut c = roles(&[ADMIN_ROLE]);
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        let ops = token(&iss, claims_with(json!({"sub": "ops", "jti": "ops-1"})));
        let ops2 = token(&iss, claims_with(json!({"sub": "ops2", "jti": "ops-2"})));
        let ok = vec![Code::InvalidArgument, Code::InvalidArgument, Code::Ok, Code::Ok];
        assert_eq!(codes(&mut admin, Some(&ops)).await, ok);

        let denied = vec![Code::PermissionDenied; 4];
        let user = token(&iss, json!({"sub": "bob", "realm_access": {"roles": ["user"]}}));
        assert_eq!(codes(&mut admin, Some(&user)).await, denied, "no admin role");
        let top_level_role = token(&iss, json!({"roles": [ADMIN_ROLE]}));
        assert_eq!(
            codes(&mut admin, Some(&top_level_role)).await,
            denied,
            "the role must be in the provider's roles_claim"
        );
        let other = sign(
            HS_SECRET.as_bytes(),
            Algorithm::HS256,
            None,
            json!({"iss": "other-issuer", "sub": "x", "exp": now() + 600, "realm_access": {"roles": [ADMIN_ROLE]}}),
        );
        assert_eq!(codes(&mut admin, Some(&other)).await, denied, "another provider");

        let unauthenticated = vec![Code::Unauthenticated; 4];
        assert_eq!(codes(&mut admin, None).await, unauthenticated);
        assert_eq!(codes(&mut admin, Some(ADMIN_TOKEN)).await, unauthenticated, "no static token configured");
        let expired = token(&iss, claims_with(json!({"iat": now() - 7200, "exp": now() - 3600})));
        assert_eq!(codes(&mut admin, Some(&expired)).await, unauthenticated, "expired");
        let forged = sign(
            &pem("rsa-b.pem"),
            Algorithm::RS256,
            Some("rsa"),
            json!({"iss": iss.url(), "aud": "api", "sub": "ops", "realm_access": {"roles": [ADMIN_ROLE]}}),
        );
        assert_eq!(codes(&mut admin, Some(&forged)).await, unauthenticated, "bad signature");

        // An admin revokes another admin's token: that token no longer opens the admin API.
        let r = admin
            .revoke_token(authed(by_token(&ops2), &ops))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.revocation.unwrap().jti, "ops-2");
        assert_eq!(codes(&mut admin, Some(&ops2)).await, unauthenticated, "revoked");
        let page = admin
            .list_revocations(authed(pb::ListRevocationsRequest::default(), &ops))
            .await
            .unwrap()
            .into_inner();
        let jtis: Vec<&str> = page.revocations.iter().map(|r| r.jti.as_str()).collect();
        assert_eq!(jtis, ["ops-2"], "refused calls changed nothing");
    })
    .await
}

/// Admin callers go through the gate's own token path: a provider that requires `jti` refuses an
/// admin token without one, exactly as a check refuses it at the door.
#[tokio::test]
async fn a_require_jti_provider_refuses_an_admin_token_without_jti() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let yaml = format!(
            "{}    require_jti: true\nadmin: {{ provider: corp, role: {ADMIN_ROLE} }}\n",
            corp(&iss)
        );
        let gk = Gatekeeper::start(&yaml, &[]).await;
        gk.wait_ready().await;
        let mut admin = gk.admin().await;
        let roles = json!({"roles": [ADMIN_ROLE]});
        let with_jti = token(&iss, json!({"roles": [ADMIN_ROLE], "jti": "ops-1"}));
        let ok = vec![Code::InvalidArgument, Code::InvalidArgument, Code::Ok, Code::Ok];
        assert_eq!(codes(&mut admin, Some(&with_jti)).await, ok);

        let mut no_jti_claims = roles.clone();
        no_jti_claims["jti"] = Value::Null; // mint adds a jti unless one is given
        let without_jti = token(&iss, no_jti_claims);
        assert_eq!(
            codes(&mut admin, Some(&without_jti)).await,
            vec![Code::Unauthenticated; 4],
            "require_jti applies to admin callers"
        );
        let e = admin
            .key_status(authed(pb::KeyStatusRequest {}, &without_jti))
            .await
            .unwrap_err();
        assert!(e.message().contains("missing required claim jti"), "{e:?}");
        // The check door refuses the same token for the same reason.
        let a = check(&mut gk.client().await, bearer(&without_jti)).await.unwrap();
        assert_eq!(
            (a.http_status, a.reason().as_str()),
            (Some(401), "missing required claim jti")
        );
    })
    .await
}

#[tokio::test]
async fn with_no_admin_credentials_configured_every_call_is_refused() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = Gatekeeper::start(&corp(&iss), &[]).await;
        gk.wait_ready().await;
        let mut admin = gk.admin().await;
        let denied = vec![Code::PermissionDenied; 4];
        assert_eq!(codes(&mut admin, None).await, denied);
        assert_eq!(codes(&mut admin, Some(ADMIN_TOKEN)).await, denied);
        let e = admin
            .key_status(authed(pb::KeyStatusRequest {}, ADMIN_TOKEN))
            .await
            .unwrap_err();
        assert!(e.message().contains("disabled"), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn a_store_that_cannot_take_the_write_answers_unavailable() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        // A loopback port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let extra = format!("revocation: {{ store: redis, url: \"redis://127.0.0.1:{port}\" }}\n");
        let gk = Gatekeeper::start(&static_admin(&iss, &extra), ADMIN_FILES).await;
        let mut admin = gk.admin().await;
        let e = revoke(&mut admin, by_id(&iss.url(), "j", 0)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains("revocation store unavailable"), "{e:?}");
        let e = revoke_subject(&mut admin, &iss.url(), "alice", 0).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(listed(&mut admin).await.is_empty(), "nothing pretended to be revoked");
    })
    .await
}

#[tokio::test]
async fn revocations_survive_a_restart_with_the_embedded_store() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = gatekeeper(&iss, "").await;
        let t = token(&iss, json!({"jti": "persist-1"}));
        let old = token(&iss, json!({"sub": "mallory", "iat": now() - 60}));
        let mut admin = gk.admin().await;
        revoke(&mut admin, by_id(&iss.url(), "persist-1", 0)).await.unwrap();
        revoke_subject(&mut admin, &iss.url(), "mallory", 0).await.unwrap();
        assert!(
            gk.dir().join("jwtgate-data").is_dir(),
            "the embedded store lives beside the config"
        );
        drop(admin);

        let dir = gk.stop().await;
        let gk = Gatekeeper::start_in(dir, &static_admin(&iss, ""), ADMIN_FILES).await;
        gk.wait_ready().await;
        assert_revoked(&gk, &t).await;
        assert_revoked(&gk, &old).await;
        assert_allowed(&gk, &token(&iss, json!({"jti": "persist-2"}))).await;
        assert_eq!(listed(&mut gk.admin().await).await, ["mallory", "persist-1"]);
    })
    .await
}

#[tokio::test]
async fn expired_revocations_are_purged_from_memory_and_the_file() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let extra = "revocation: { purge_interval: 200ms }\n";
        let gk = gatekeeper(&iss, extra).await;
        let mut admin = gk.admin().await;
        // Its exp 58 s ago: kept two more seconds (the 60 s skew), then purged.
        revoke(&mut admin, by_id(&iss.url(), "short", now() - 58))
            .await
            .unwrap();
        revoke(&mut admin, by_id(&iss.url(), "long", 0)).await.unwrap();
        assert_eq!(listed(&mut admin).await, ["long", "short"]);

        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(&mut admin).await != ["long"] {
            assert!(
                Instant::now() < deadline,
                "the expired revocation was not purged within 10s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(admin);

        let dir = gk.stop().await;
        // The file itself, read without jwtgate's load-time filtering. The purge's write may
        // still be finishing when the store is dropped: retry the open briefly.
        let data = dir.path().join("jwtgate-data");
        let stored = {
            let mut attempts = 0;
            let store = loop {
                match jwtgate_core::revocation::embedded::EmbeddedStore::open(&data) {
                    Ok(s) => break s,
                    Err(_) if attempts < 50 => {
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("cannot reopen the store: {e}"),
                }
            };
            store.load().unwrap()
        };
        let jtis: Vec<String> = stored
            .iter()
            .filter_map(|r| match &r.target {
                jwtgate_core::revocation::Target::Token { jti, .. } => Some(jti.clone()),
                jwtgate_core::revocation::Target::Subject { .. } => None,
            })
            .collect();
        assert_eq!(jtis, ["long"], "the file no longer holds the expired entry");

        let gk = Gatekeeper::start_in(dir, &static_admin(&iss, extra), ADMIN_FILES).await;
        assert_eq!(listed(&mut gk.admin().await).await, ["long"]);
    })
    .await
}

/// `jwtgate serve` as a child process, killed when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next JSON log line of `lines` that `pick` accepts, waiting at most 10s.
async fn next_log(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .expect("no such log line within 10s")
            .expect("jwtgate exited");
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && pick(&v)
        {
            return v;
        }
    }
}

#[tokio::test]
async fn every_admin_call_leaves_one_audit_event_without_the_token() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin-token.txt"), ADMIN_TOKEN).unwrap();
        let file = dir.path().join("jwtgate.yaml");
        std::fs::write(&file, config_text(&static_admin(&iss, ""))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["serve", "--config"])
            .arg(&file)
            .env("JWTGATE_LOG_FORMAT", "json")
            .env("JWTGATE_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let _served = Served(child);
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let listening = next_log(&mut lines, |v| v["fields"]["message"] == "jwtgate listening").await;
        let admin_addr = listening["fields"]["admin"].as_str().unwrap().to_owned();
        // Ready: the keys are loaded (their log line may come before or after the one above).
        let readyz = format!("http://{}/readyz", listening["fields"]["http"].as_str().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reqwest::get(&readyz).await.is_ok_and(|r| r.status() == 200) {
            assert!(
                Instant::now() < deadline,
                "jwtgate serve did not become ready within 10s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let mut admin = AdminClient::connect(format!("http://{admin_addr}")).await.unwrap();
        let t = token(&iss, json!({"jti": "audited-1"}));
        revoke(&mut admin, by_token(&t)).await.unwrap();
        admin
            .list_revocations(tonic::Request::new(pb::ListRevocationsRequest::default()))
            .await
            .unwrap_err();
        revoke_subject(&mut admin, "https://unknown.example/", "eve", 0)
            .await
            .unwrap_err();

        let mut events = Vec::new();
        for _ in 0..3 {
            events.push(next_log(&mut lines, |v| v["target"] == "jwtgate::audit").await);
        }
        let text = events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        assert!(!text.contains(&t), "the audit log never holds a token: {text}");
        assert!(!text.contains(ADMIN_TOKEN), "nor the admin credential: {text}");
        let field = |i: usize, name: &str| events[i]["fields"][name].as_str().unwrap_or_default().to_owned();

        assert_eq!(field(0, "caller"), "static-token");
        assert_eq!(field(0, "method"), "RevokeToken");
        assert!(field(0, "target").contains("\"audited-1\""), "{text}");
        assert!(field(0, "outcome").starts_with("revoked"), "{text}");

        assert_eq!(field(1, "caller"), "anonymous");
        assert_eq!(field(1, "method"), "ListRevocations");
        assert_eq!(field(1, "outcome"), "refused");
        assert_eq!(field(1, "code"), "Unauthenticated");

        assert_eq!(field(2, "caller"), "static-token");
        assert_eq!(field(2, "method"), "RevokeSubject");
        assert!(field(2, "target").contains("\"eve\""), "{text}");
        assert_eq!(field(2, "code"), "InvalidArgument");
    })
    .await
}

// --- the CLI -------------------------------------------------------------------------------

/// Runs `jwtgate ARGS` (bounded: killed after 30s) off the async threads.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwtgate"));
    cmd.args(args)
        .env_remove("JWTGATE_ADMIN")
        .env_remove("JWTGATE_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("jwtgate did not exit within 30s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// `args` followed by the admin URL and credential.
fn with<'a>(admin: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    [args, admin].concat()
}

fn out(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_revokes_tokens_and_subjects_and_lists_them() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let gk = gatekeeper(&iss, "").await;
        let url = format!("http://{}", gk.admin_addr);
        let issuer = iss.url();
        let by_jti = token(&iss, json!({"jti": "cli-1"}));
        let itself = token(&iss, json!({"jti": "cli-2"}));
        let carol = token(&iss, json!({"sub": "carol", "iat": now() - 60}));
        let admin = ["--admin", url.as_str(), "--admin-token", ADMIN_TOKEN];

        let (code, stdout, stderr) = out(&cli(
            &with(
                &admin,
                &[
                    "revoke", "token", "--jti", "cli-1", "--issuer", &issuer, "--reason", "logout",
                ],
            ),
            &[],
        )
        .await);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("revoked token "), "{stdout}");
        assert!(
            stdout.contains("jti=\"cli-1\"") && stdout.contains("reason=\"logout\""),
            "{stdout}"
        );
        assert_revoked(&gk, &by_jti).await;

        // The URL and credential from the environment.
        let env = [("JWTGATE_ADMIN", url.as_str()), ("JWTGATE_ADMIN_TOKEN", ADMIN_TOKEN)];
        let (code, stdout, stderr) = out(&cli(&["revoke", "token", "--token", &itself], &env).await);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("jti=\"cli-2\""), "{stdout}");
        assert!(!stdout.contains(&itself));
        assert_revoked(&gk, &itself).await;

        let before = (now() - 5).to_string();
        let (code, stdout, stderr) = out(&cli(
            &with(
                &admin,
                &[
                    "revoke",
                    "subject",
                    "--issuer",
                    &issuer,
                    "--subject",
                    "carol",
                    "--before",
                    &before,
                ],
            ),
            &[],
        )
        .await);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.starts_with("revoked subject ") && stdout.contains(&format!("issued_before={before}")),
            "{stdout}"
        );
        assert_revoked(&gk, &carol).await;

        let (code, stdout, stderr) = out(&cli(&with(&admin, &["revoke", "list", "--page-size", "1"]), &[]).await);
        assert_eq!(code, 0, "{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "every page is followed: {stdout}");
        assert!(
            lines[0].starts_with("subject ") && lines[0].contains("subject=\"carol\""),
            "{stdout}"
        );
        assert!(
            lines[1].starts_with("token ") && lines[1].contains("jti=\"cli-1\""),
            "{stdout}"
        );
        assert!(lines[2].contains("jti=\"cli-2\""), "{stdout}");

        let (code, stdout, stderr) = out(&cli(&with(&admin, &["keys", "status"]), &[]).await);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("corp fresh keys=1 kids=rsa "), "{stdout}");

        // Failures: the gRPC status message and exit 1.
        let (code, _, stderr) = out(&cli(
            &[
                "revoke",
                "list",
                "--admin",
                &url,
                "--admin-token",
                "wrong-token-0123456789",
            ],
            &[],
        )
        .await);
        assert_eq!(code, 1);
        assert!(stderr.contains("invalid admin credentials"), "{stderr}");
        let (code, _, stderr) = out(&cli(&["revoke", "list", "--admin", &url], &[]).await);
        assert_eq!(code, 1);
        assert!(stderr.contains("missing credentials"), "{stderr}");
        let (code, _, stderr) = out(&cli(
            &with(
                &admin,
                &[
                    "revoke",
                    "subject",
                    "--issuer",
                    "https://unknown.example/",
                    "--subject",
                    "x",
                ],
            ),
            &[],
        )
        .await);
        assert_eq!(code, 1);
        assert!(stderr.contains("not a configured provider"), "{stderr}");
        let expired = token(&iss, json!({"jti": "gone", "iat": now() - 7200, "exp": now() - 3600}));
        let (code, stdout, stderr) = out(&cli(&with(&admin, &["revoke", "token", "--token", &expired]), &[]).await);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("nothing to do: "), "{stdout}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (code, _, stderr) = out(&cli(
            &[
                "revoke",
                "list",
                "--admin",
                &format!("http://{closed}"),
                "--admin-token",
                ADMIN_TOKEN,
            ],
            &[],
        )
        .await);
        assert_eq!(code, 1);
        assert!(stderr.contains("cannot reach the admin API"), "{stderr}");
    })
    .await
}

/// Issue #33: without `max_lifetime`, a subject cut-off is kept for `subject_retention`. A token
/// living longer than that, issued before the cut-off, would be accepted again once the cut-off
/// is purged; so such tokens are refused from the start, and across the purge.
#[tokio::test]
async fn a_token_that_would_outlive_a_subject_cut_off_is_refused_across_its_purge() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let provider = jwks_provider("corp", &iss.url(), &iss.jwks_uri(), "    clock_skew: 0s\n");
        let gk = Gatekeeper::start(
            &format!(
                "{provider}admin: {{ token: {{ file: admin-token.txt }} }}\nrevocation: {{ subject_retention: 2s, purge_interval: 100ms }}\n"
            ),
            ADMIN_FILES,
        )
        .await;
        gk.wait_ready().await;
        let mut admin = gk.admin().await;
        // Lives ten minutes: far longer than the 2 s a cut-off is kept.
        let long = token(&iss, json!({"iat": now(), "exp": now() + 600}));
        // Lives 2 s: no longer than a cut-off is kept.
        let short = token(&iss, json!({"sub": "bob", "iat": now(), "exp": now() + 2}));
        assert_allowed(&gk, &short).await;
        revoke_subject(&mut admin, &iss.url(), "alice", 0).await.unwrap();
        let refused = check(&mut gk.client().await, bearer(&long)).await.unwrap();
        assert_eq!(refused.http_status, Some(401), "{refused:?}");
        eventually("the cut-off is purged", Duration::from_secs(10), async || {
            listed(&mut admin).await.is_empty()
        })
        .await;
        let a = check(&mut gk.client().await, bearer(&long)).await.unwrap();
        assert_eq!(
            (a.http_status, a.reason().as_str()),
            (Some(401), "token lives longer than revocations are kept"),
            "after the purge: {a:?}"
        );
        let m = scrape(gk.http_addr).await;
        assert!(
            m.keys()
                .any(|k| k.starts_with("jwtgate_decisions_total") && k.contains("reason=\"lifetime_exceeds_retention\"")),
            "{m:?}"
        );
    })
    .await
}

/// With `require_exp: false` (and no `max_lifetime`), a token may never expire: a cut-off of
/// that provider's subject, and a `jti` revoked without `expires_at`, are then kept for good.
#[tokio::test]
async fn a_provider_whose_tokens_may_never_expire_keeps_its_revocations_for_good() {
    bounded(BOUND, async {
        let iss = rsa_issuer().await;
        let provider = jwks_provider("corp", &iss.url(), &iss.jwks_uri(), "    require_exp: false\n");
        let gk = Gatekeeper::start(
            &format!("{provider}admin: {{ token: {{ file: admin-token.txt }} }}\n"),
            ADMIN_FILES,
        )
        .await;
        gk.wait_ready().await;
        let mut admin = gk.admin().await;
        // A day-long token is fine here: no cut-off of this provider is ever forgotten.
        assert_allowed(&gk, &token(&iss, json!({"iat": now(), "exp": now() + 86_400 * 30}))).await;
        let r = revoke_subject(&mut admin, &iss.url(), "alice", 0)
            .await
            .unwrap()
            .revocation
            .unwrap();
        assert_eq!(r.expires_at, jwtgate_core::verify::MAX_NUMERIC_DATE);
        let r = revoke(&mut admin, by_id(&iss.url(), "j-1", 0))
            .await
            .unwrap()
            .revocation
            .unwrap();
        assert_eq!(r.expires_at, jwtgate_core::verify::MAX_NUMERIC_DATE);
    })
    .await
}
