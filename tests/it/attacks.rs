//! Every token-level case of `shared/reference/jwt-attacks.md`, sent through the real gRPC front
//! door; each must be denied with the right status and reason.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// A real 1024-bit RSA public key (from `rsa-1024.pem`, extracted with openssl).
fn weak_rsa_jwk() -> Value {
    let text = std::fs::read_to_string(fixture("rsa-1024.jwk.json")).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

struct World {
    issuer: Issuer,
    gk: Gatekeeper,
    client: AuthorizationClient<Channel>,
}

impl World {
    async fn start(extra: &str) -> Self {
        let issuer = Issuer::start(vec![
            jwk("rsa-a.pem", Algorithm::RS256, "rsa"),
            jwk("ec-p256.pem", Algorithm::ES256, "p256"),
            jwk("ec-p384.pem", Algorithm::ES384, "p384"),
            jwk("ed25519.pem", Algorithm::EdDSA, "ed"),
            weak_rsa_jwk(),
        ])
        .await;
        let gk = Gatekeeper::start(&jwks_provider("corp", &issuer.url(), &issuer.jwks_uri(), extra), &[]).await;
        gk.wait_ready().await;
        let client = gk.client().await;
        Self { issuer, gk, client }
    }

    fn iss(&self) -> String {
        self.issuer.url()
    }

    fn claims(&self) -> Value {
        claims(&self.iss())
    }

    /// Signs a valid RS256 token with extra or replaced claims.
    fn rs256(&self, patch: Value) -> String {
        let mut c = self.claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), c)
    }

    async fn allowed(&mut self, token: &str) -> Answer {
        let a = check(&mut self.client, bearer(token)).await.expect("a CheckResponse");
        assert_eq!(a.grpc_code, 0, "expected allow, got {a:?}");
        a
    }

    /// Asserts a 401 denial with the given reason.
    async fn denied(&mut self, token: &str, reason: &str) {
        let a = check(&mut self.client, bearer(token)).await.expect("a CheckResponse");
        assert_eq!((a.grpc_code, a.http_status), (16, Some(401)), "for {reason}: {a:?}");
        assert_eq!(a.reason(), reason);
        assert!(a.headers["www-authenticate"].contains("error=\"invalid_token\""));
    }
}

fn header_b64(v: Value) -> String {
    B64.encode(v.to_string())
}

/// Re-signs `header.payload` with a fixture key (RS256/ES256) after editing the header.
fn resign(key: &str, alg: Algorithm, header: Value, payload: &Value) -> String {
    let input = format!("{}.{}", header_b64(header), B64.encode(payload.to_string()));
    let k = jwtgate_core::mint::signing_key(&pem(key), alg).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k, alg).unwrap();
    format!("{input}.{sig}")
}

#[tokio::test]
async fn alg_none_in_any_casing_with_or_without_signature() {
    let mut w = World::start("").await;
    let payload = json!({"iss": w.iss(), "sub": "x", "aud": "api", "exp": now() + 600});
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = json!({"alg": alg, "typ": "JWT"});
        let unsigned = format!("{}.{}.", header_b64(h.clone()), B64.encode(payload.to_string()));
        w.denied(&unsigned, "unsigned tokens (alg none) are not accepted").await;
        let with_sig = format!("{}.{}.c2ln", header_b64(h), B64.encode(payload.to_string()));
        w.denied(&with_sig, "unsigned tokens (alg none) are not accepted").await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_providers_public_key_is_refused() {
    let mut w = World::start("").await;
    let pub_pem = pem("rsa-a.pub.pem");
    let jwk_json = jwk("rsa-a.pem", Algorithm::RS256, "rsa").to_string();
    let der = {
        let text = String::from_utf8(pub_pem.clone()).unwrap();
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
    };
    for secret in [pub_pem, jwk_json.into_bytes(), der] {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("rsa".into());
        let key = jsonwebtoken::EncodingKey::from_secret(&secret).unwrap();
        let t = jsonwebtoken::encode(&header, &w.claims(), &key).unwrap();
        w.denied(&t, "algorithm not allowed").await;
    }
}

#[tokio::test]
async fn algorithm_must_fit_the_keys_type_and_curve() {
    let mut w = World::start("").await;
    // ES256 token naming the P-384 key.
    let t = sign(&pem("ec-p256.pem"), Algorithm::ES256, Some("p384"), w.claims());
    w.denied(&t, "unknown signing key").await;
    // EdDSA token naming the RSA key.
    let t = sign(&pem("ed25519.pem"), Algorithm::EdDSA, Some("rsa"), w.claims());
    w.denied(&t, "unknown signing key").await;
    // An algorithm outside the allow-list.
    let mut w = World::start("    algorithms: [ES256]\n").await;
    let t = w.rs256(json!({}));
    w.denied(&t, "algorithm not allowed").await;
    let t = sign(&pem("ec-p256.pem"), Algorithm::ES256, Some("p256"), w.claims());
    w.allowed(&t).await;
}

#[tokio::test]
async fn key_material_offered_by_the_token_is_never_used() {
    let attacker = Issuer::start(vec![jwk("rsa-b.pem", Algorithm::RS256, "evil")]).await;
    let mut w = World::start("").await;
    let payload = json!({"iss": w.iss(), "sub": "x", "aud": "api", "exp": now() + 600});
    let evil_jwk = jwk("rsa-b.pem", Algorithm::RS256, "evil");
    let headers = [
        json!({"alg":"RS256","jwk": evil_jwk}),
        json!({"alg":"RS256","kid":"evil","jwk": evil_jwk}),
        json!({"alg":"RS256","kid":"evil","jku": attacker.jwks_uri()}),
        json!({"alg":"RS256","x5u": attacker.jwks_uri()}),
        json!({"alg":"RS256","x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
    ];
    for h in headers {
        let t = resign("rsa-b.pem", Algorithm::RS256, h.clone(), &payload);
        let a = check(&mut w.client, bearer(&t)).await.unwrap();
        assert_eq!(a.http_status, Some(401), "{h}");
        assert!(
            ["invalid signature", "unknown signing key"].contains(&a.reason().as_str()),
            "{h}: {}",
            a.reason()
        );
    }
    assert_eq!(attacker.jwks_hits(), 0, "jku/x5u must never be fetched");
}

#[tokio::test]
async fn hostile_kids_are_opaque_bounded_and_rate_limited() {
    let mut w = World::start("    keys: { min_refetch_interval: 60s }\n").await;
    let before = w.issuer.jwks_hits();
    let payload = w.claims();
    for kid in ["../../dev/null", "' OR 1=1 --", "a\u{0}b", "x"] {
        let t = resign(
            "rsa-a.pem",
            Algorithm::RS256,
            json!({"alg":"RS256","kid":kid}),
            &payload,
        );
        w.denied(&t, "unknown signing key").await;
    }
    let t = resign(
        "rsa-a.pem",
        Algorithm::RS256,
        json!({"alg":"RS256","kid":"k".repeat(2_000)}),
        &payload,
    );
    w.denied(&t, "malformed token: kid too long").await;
    // A 10 KB kid never gets as far as the header: the whole token is over max_token_bytes.
    let t = resign(
        "rsa-a.pem",
        Algorithm::RS256,
        json!({"alg":"RS256","kid":"k".repeat(10_240)}),
        &payload,
    );
    w.denied(&t, "token too large").await;
    for kid in [json!(42), json!({"a":1}), json!(["rsa"])] {
        let t = resign(
            "rsa-a.pem",
            Algorithm::RS256,
            json!({"alg":"RS256","kid":kid}),
            &payload,
        );
        w.denied(&t, "unknown signing key").await;
    }
    assert!(w.issuer.jwks_hits() - before <= 1, "at most one refetch in the window");
}

/// JWS ECDSA signatures are fixed-size R‖S; DER-encodes one for the attack.
fn der_from_raw(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let b: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
        let mut v = if b.first().is_some_and(|x| x & 0x80 != 0) {
            vec![0]
        } else {
            vec![]
        };
        v.extend(b);
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[tokio::test]
async fn ecdsa_psychic_wrong_length_and_der_signatures() {
    let mut w = World::start("").await;
    let t = sign(&pem("ec-p256.pem"), Algorithm::ES256, Some("p256"), w.claims());
    w.allowed(&t).await;
    let (input, sig) = t.rsplit_once('.').unwrap();
    let raw = B64.decode(sig).unwrap();
    assert_eq!(raw.len(), 64);
    let zero = format!("{input}.{}", B64.encode([0u8; 64]));
    w.denied(&zero, "invalid signature").await;
    let short = format!("{input}.{}", B64.encode(&raw[..63]));
    w.denied(&short, "invalid signature").await;
    let der = format!("{input}.{}", B64.encode(der_from_raw(&raw)));
    w.denied(&der, "invalid signature").await;
}

#[tokio::test]
async fn stripped_signatures() {
    let mut w = World::start("").await;
    let t = w.rs256(json!({}));
    let (input, _) = t.rsplit_once('.').unwrap();
    w.denied(&format!("{input}."), "malformed token: missing signature")
        .await;
    w.denied(input, "malformed token: expected three dot-separated segments")
        .await;
}

#[tokio::test]
async fn crit_extensions_are_refused() {
    let mut w = World::start("").await;
    let payload = w.claims();
    let t = resign(
        "rsa-a.pem",
        Algorithm::RS256,
        json!({"alg":"RS256","kid":"rsa","crit":["b64"],"b64":false}),
        &payload,
    );
    w.denied(&t, "unsupported critical header").await;
    let t = resign(
        "rsa-a.pem",
        Algorithm::RS256,
        json!({"alg":"RS256","kid":"rsa","crit":["exp"]}),
        &payload,
    );
    w.denied(&t, "unsupported critical header").await;
}

#[tokio::test]
async fn weak_rsa_keys_in_the_jwks_are_skipped() {
    let mut w = World::start("").await;
    // aws-lc refuses to sign with a 1024-bit key, so the token claims the weak kid; what matters is
    // that the served 1024-bit key never entered the key set.
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("weak"), w.claims());
    w.denied(&t, "unknown signing key").await;
    let (_, body) = w.gk.readyz().await;
    let kids = body["providers"][0]["kids"].as_array().unwrap();
    assert!(!kids.contains(&json!("weak")));
    assert_eq!(kids.len(), 4);
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_decoding() {
    let mut w = World::start("").await;
    let t = w.rs256(json!({"pad": "x".repeat(9000)}));
    w.denied(&t, "token too large").await;
    w.denied(&"a".repeat(20_000), "token too large").await;
}

#[tokio::test]
async fn malformed_structures_are_401_never_500() {
    let mut w = World::start("").await;
    let good = w.rs256(json!({}));
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases = [
        ("a.b", "malformed token: expected three dot-separated segments"),
        ("a.b.c.d", "malformed token: expected three dot-separated segments"),
        (&format!("{h}=.{p}.{s}") as &str, "malformed token: invalid base64url"),
        (&format!("{h}.{p}==.{s}"), "malformed token: invalid base64url"),
        (&format!("{h}.{p}.{s}="), "malformed token: invalid base64url"),
        (&format!("{h}.p!yl*ad.{s}"), "malformed token: invalid base64url"),
        (
            &format!("{h}.{}.{s}", B64.encode([0xc3, 0x28])),
            "malformed token: invalid UTF-8",
        ),
        (
            &format!("{h}.{}.{s}", B64.encode("[1,2,3]")),
            "malformed token: payload is not a JSON object",
        ),
        (
            &format!("{h}.{}.{s}", B64.encode("\"str\"")),
            "malformed token: payload is not a JSON object",
        ),
        (
            &format!("{}.{p}.{s}", B64.encode("42")),
            "malformed token: header is not a JSON object",
        ),
        (
            &format!(
                "{h}.{}.{s}",
                B64.encode(format!("{{\"a\":{}1{}}}", "[".repeat(1000), "]".repeat(1000)))
            ),
            "malformed token: invalid JSON",
        ),
        (
            &format!("{h}.{}.{s}", B64.encode("{\"n\":1e999999}")),
            "malformed token: invalid JSON",
        ),
    ];
    for (t, reason) in cases {
        w.denied(t, reason).await;
    }
}

#[tokio::test]
async fn duplicate_members_in_header_or_claims() {
    let mut w = World::start("").await;
    let good = w.rs256(json!({}));
    let (_, rest) = good.split_once('.').unwrap();
    let dup_header = format!("{}.{rest}", B64.encode(r#"{"alg":"RS256","kid":"rsa","alg":"none"}"#));
    w.denied(&dup_header, "malformed token: duplicate JSON member").await;
    let iss = w.iss();
    let payload = format!(
        r#"{{"iss":"{iss}","aud":"api","sub":"a","role":"user","role":"admin","exp":{}}}"#,
        now() + 600
    );
    let input = format!(
        "{}.{}",
        B64.encode(r#"{"alg":"RS256","kid":"rsa"}"#),
        B64.encode(payload)
    );
    let k = jwtgate_core::mint::signing_key(&pem("rsa-a.pem"), Algorithm::RS256).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k, Algorithm::RS256).unwrap();
    w.denied(&format!("{input}.{sig}"), "malformed token: duplicate JSON member")
        .await;
}

#[tokio::test]
async fn json_serialization_and_jwe_are_refused() {
    let mut w = World::start("").await;
    let good = w.rs256(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let general = json!({"payload": parts[1], "signatures": [{"protected": parts[0], "signature": parts[2]}, {"protected": parts[0], "signature": parts[2]}]});
    w.denied(
        &general.to_string(),
        "malformed token: JSON serialization is not accepted; send compact JWS",
    )
    .await;
    let flattened = json!({"payload": parts[1], "protected": parts[0], "signature": parts[2]});
    w.denied(
        &flattened.to_string(),
        "malformed token: JSON serialization is not accepted; send compact JWS",
    )
    .await;
    let jwe = format!("{}.a.b.c.d", B64.encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#));
    w.denied(&jwe, "encrypted tokens (JWE) are not accepted").await;
}

#[tokio::test]
async fn expiry_claim_cases() {
    let mut w = World::start("").await;
    // Signs the payload exactly as written (e.g. a number spelt with an exponent).
    let signed_as_written = |payload: &str| {
        let input = format!(
            "{}.{}",
            B64.encode(r#"{"alg":"RS256","kid":"rsa"}"#),
            B64.encode(payload)
        );
        let k = jwtgate_core::mint::signing_key(&pem("rsa-a.pem"), Algorithm::RS256).unwrap();
        format!(
            "{input}.{}",
            jsonwebtoken::crypto::sign(input.as_bytes(), &k, Algorithm::RS256).unwrap()
        )
    };
    let mut c = w.claims();
    c.as_object_mut().unwrap().remove("exp");
    let no_exp = signed_as_written(&c.to_string());
    w.denied(&no_exp, "token has no expiry").await;
    let n = now();
    w.denied(&w.rs256(json!({"exp": n - 120, "iat": n - 600})), "token expired")
        .await;
    w.allowed(&w.rs256(json!({"exp": n - 30, "iat": n - 600}))).await; // within the 60s skew
    for bad in [
        json!("9999999999"),
        json!(-5),
        json!(-0.5),
        json!(1e300),
        json!(u64::MAX),
    ] {
        w.denied(&w.rs256(json!({"exp": bad})), "invalid exp claim").await;
    }
    // NumericDates with a fraction or an exponent are numbers like any other (RFC 7519 §2).
    w.denied(&w.rs256(json!({"exp": 1.5e9})), "token expired").await;
    w.allowed(&w.rs256(json!({"exp": n as f64 + 600.5, "iat": n as f64 - 0.25})))
        .await;
    let mut c = w.claims();
    c["exp"] = json!("EXP");
    // An exponent (e.g. 1.797e9), ten minutes ahead: a lifetime within subject_retention.
    let exponent = format!("{:e}", (n + 600) as f64);
    let spelt = c.to_string().replace("\"EXP\"", &exponent);
    assert!(
        spelt.contains(&format!("\"exp\":{exponent}")) && exponent.contains('e'),
        "{spelt}"
    );
    w.allowed(&signed_as_written(&spelt)).await;
    let in_the_past = c.to_string().replace("\"EXP\"", "1.7e9");
    w.denied(&signed_as_written(&in_the_past), "token expired").await;
    w.denied(&w.rs256(json!({"nbf": n + 600})), "token not yet valid").await;
    w.denied(&w.rs256(json!({"iat": n + 3600})), "token issued in the future")
        .await;
    w.allowed(&w.rs256(json!({"nbf": n + 30}))).await;
}

#[tokio::test]
async fn issuer_cases_and_shared_kids_across_providers() {
    let a = Issuer::start(vec![jwk("rsa-a.pem", Algorithm::RS256, "shared")]).await;
    let b = Issuer::start(vec![jwk("rsa-b.pem", Algorithm::RS256, "shared")]).await;
    let providers = format!(
        "{}{}",
        jwks_provider("a", &a.url(), &a.jwks_uri(), ""),
        jwks_provider("b", &b.url(), &b.jwks_uri(), "")
    );
    let gk = Gatekeeper::start(&providers, &[]).await;
    gk.wait_ready().await;
    let mut client = gk.client().await;
    let deny = |a: Answer, reason: &str| {
        assert_eq!(a.http_status, Some(401));
        assert_eq!(a.reason(), reason);
    };
    // Signed by A's key, claiming B as issuer: B's key with the same kid must not verify it.
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("shared"), claims(&b.url()));
    deny(check(&mut client, bearer(&t)).await.unwrap(), "invalid signature");
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("shared"), claims(&a.url()));
    assert_eq!(check(&mut client, bearer(&t)).await.unwrap().grpc_code, 0);
    let t = sign(
        &pem("rsa-a.pem"),
        Algorithm::RS256,
        Some("shared"),
        json!({"sub":"x","aud":"api"}),
    );
    deny(check(&mut client, bearer(&t)).await.unwrap(), "unknown issuer");
    let t = sign(
        &pem("rsa-a.pem"),
        Algorithm::RS256,
        Some("shared"),
        json!({"iss":"https://nobody/","aud":"api"}),
    );
    deny(check(&mut client, bearer(&t)).await.unwrap(), "unknown issuer");
    let t = sign(
        &pem("rsa-a.pem"),
        Algorithm::RS256,
        Some("shared"),
        json!({"iss":[a.url()],"aud":"api"}),
    );
    deny(check(&mut client, bearer(&t)).await.unwrap(), "unknown issuer");
}

#[tokio::test]
async fn audience_cases() {
    let mut w = World::start("").await;
    w.allowed(&w.rs256(json!({"aud": ["other", "api"]}))).await;
    w.denied(&w.rs256(json!({"aud": "other"})), "audience not accepted")
        .await;
    w.denied(&w.rs256(json!({"aud": ["other"]})), "audience not accepted")
        .await;
    w.denied(&w.rs256(json!({"aud": 7})), "audience not accepted").await;
    let mut c = w.claims();
    c.as_object_mut().unwrap().remove("aud");
    let t = sign(&pem("rsa-a.pem"), Algorithm::RS256, Some("rsa"), c);
    w.denied(&t, "audience not accepted").await;
}

#[tokio::test]
async fn typ_confusion_is_refused_when_access_tokens_are_required() {
    let mut w = World::start("    token_types: [at+jwt]\n").await;
    let payload = json!({"iss": w.iss(), "sub": "x", "aud": "api", "exp": now() + 600});
    let id_token = resign(
        "rsa-a.pem",
        Algorithm::RS256,
        json!({"alg":"RS256","kid":"rsa","typ":"JWT"}),
        &payload,
    );
    w.denied(&id_token, "token type not accepted").await;
    let untyped = resign(
        "rsa-a.pem",
        Algorithm::RS256,
        json!({"alg":"RS256","kid":"rsa"}),
        &payload,
    );
    w.denied(&untyped, "token type not accepted").await;
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let at = resign(
            "rsa-a.pem",
            Algorithm::RS256,
            json!({"alg":"RS256","kid":"rsa","typ":typ}),
            &payload,
        );
        w.allowed(&at).await;
    }
}

#[tokio::test]
async fn unexpected_claim_types_are_treated_as_absent() {
    let mut w = World::start("").await;
    let a = w.allowed(&w.rs256(json!({"scope": {"x": 1}, "roles": 7}))).await;
    assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("alice"));
    // `sub: null` and `jti: null` are absent, as a required claim's null is.
    let a = w.allowed(&w.rs256(json!({"sub": null, "jti": null}))).await;
    let md = a.metadata.unwrap();
    assert!(md["jwtgate"].get("sub").is_none(), "null sub is absent: {md}");
}

/// RFC 7519 §4.1.2 and §4.1.7: `sub` and `jti` are strings. A number would be forwarded as
/// `x-jwt-sub: 42` while no subject cut-off or `jti` revocation could ever match it.
#[tokio::test]
async fn a_sub_or_jti_that_is_not_a_string_is_refused() {
    let mut w = World::start("").await;
    for sub in [
        json!(42),
        json!(4.2e1),
        json!({"id": "admin"}),
        json!(["alice"]),
        json!(true),
    ] {
        w.denied(&w.rs256(json!({"sub": sub})), "sub must be a string").await;
    }
    for jti in [json!(7), json!({"id": "7"}), json!(false)] {
        w.denied(&w.rs256(json!({"jti": jti})), "jti must be a string").await;
    }
}

/// A legacy issuer's integer subjects and ids, opted in with `numeric_ids: decimal`: read as
/// their decimal text everywhere (identity headers, metadata), so a subject cut-off of `"42"`
/// and a revocation of `jti` `"7"` match them.
#[tokio::test]
async fn numeric_ids_decimal_reads_integer_sub_and_jti_as_their_decimal_text() {
    let mut w = World::start("    numeric_ids: decimal\n").await;
    let t = w.rs256(json!({"sub": 42, "jti": 7}));
    let a = w.allowed(&t).await;
    assert_eq!(a.headers.get("x-jwt-sub").map(String::as_str), Some("42"));
    assert_eq!(a.metadata.unwrap()["jwtgate"]["sub"], "42");
    // Only integers: a fraction has no one decimal spelling an IdP would revoke by.
    w.denied(&w.rs256(json!({"sub": 4.2})), "sub must be a string").await;
    w.denied(&w.rs256(json!({"sub": {"id": 42}})), "sub must be a string")
        .await;

    use jwtgate_core::revocation::{Revocation, Target};
    let revocations = w.gk.live().gate().load_full().shared().revocations.clone();
    let revoke = |target| {
        revocations.insert(Revocation {
            target,
            expires_at: now() + 3600,
            created_at: now(),
            reason: String::new(),
        })
    };
    revoke(Target::Token {
        issuer: w.iss(),
        jti: "7".into(),
    });
    w.denied(&t, "token revoked").await;
    let other_jti = w.rs256(json!({"sub": 42, "jti": 8}));
    w.allowed(&other_jti).await;
    revoke(Target::Subject {
        issuer: w.iss(),
        subject: "42".into(),
        issued_before: now() + 1,
    });
    w.denied(&other_jti, "token revoked").await;
    w.allowed(&w.rs256(json!({"sub": 43, "jti": 9}))).await;
}

/// RFC 9449 §7.1 and RFC 8705 §3: a sender-constrained token is not a bearer token. A provider
/// that checks no binding (no `dpop`, no `mtls_binding`) refuses one rather than accept it
/// without its proof, unless it opts in with `accept_bound_tokens_as_bearer: true`.
#[tokio::test]
async fn bound_tokens_are_refused_by_a_provider_that_checks_no_binding() {
    let mut w = World::start("").await;
    let jkt = w.rs256(json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}));
    let x5t = w.rs256(json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}));
    w.denied(&jkt, "token is sender-constrained (cnf.jkt)").await;
    w.denied(&x5t, "token is sender-constrained (cnf x5t#S256)").await;
    // Bindings jwtgate never checks are bindings all the same (attack review: each was taken as
    // a bearer token).
    for (cnf, shown) in [
        (json!({"kid": "k"}), "another confirmation method"),
        (json!({"jwk": {"kty": "EC"}}), "another confirmation method"),
        (json!({"jku": "https://x/"}), "another confirmation method"),
        (json!({"jkt": null}), "cnf.jkt (not a string)"),
        (json!({"x5t#S256": 5}), "cnf x5t#S256 (not a string)"),
        (json!("jkt"), "cnf (not an object)"),
        (json!(["jkt"]), "cnf (not an object)"),
    ] {
        let token = w.rs256(json!({ "cnf": cnf }));
        w.denied(
            &token,
            &format!(
                "token is sender-constrained ({})",
                if shown.starts_with("cnf") {
                    shown.to_owned()
                } else {
                    format!("cnf ({shown})")
                }
            ),
        )
        .await;
    }
    // An empty or null `cnf` binds nothing.
    w.allowed(&w.rs256(json!({"cnf": {}}))).await;
    w.allowed(&w.rs256(json!({"cnf": null}))).await;

    let mut lax = World::start("    accept_bound_tokens_as_bearer: true\n").await;
    let jkt = lax.rs256(json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}));
    let x5t = lax.rs256(json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}));
    lax.allowed(&jkt).await;
    lax.allowed(&x5t).await;
    // The opt-in covers the two bindings jwtgate knows, not the ones it cannot check (second
    // attack review).
    let jwk = lax.rs256(json!({"cnf": {"jwk": {"kty": "EC"}}}));
    lax.denied(&jwk, "token is sender-constrained (cnf (another confirmation method))")
        .await;
}
