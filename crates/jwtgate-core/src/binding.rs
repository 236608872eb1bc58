//! Sender-constrained tokens: what a token's `cnf` claim binds it to (RFC 7800), the client
//! certificate as a proxy passes it and its RFC 8705 thumbprint, and why a binding or a DPoP
//! proof does not hold (the refusals [`crate::rejection`] carries; [`crate::dpop`] checks
//! proofs).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A client certificate as a proxy passes it; decoded only when a certificate-bound token needs
/// it ([`cert_thumbprint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// PEM, URL-encoded or not (Envoy's `source.certificate`, nginx's
    /// `$ssl_client_escaped_cert`), or base64 DER without PEM armour (Traefik's
    /// `X-Forwarded-Tls-Client-Cert`).
    Encoded(String),
    /// Hex SHA-256 of the DER (`Hash=` of Envoy's `X-Forwarded-Client-Cert`).
    Sha256Hex(String),
}

/// Longest encoded client certificate decoded (a chain's leaf is a few KiB).
const MAX_CERT_BYTES: usize = 16 * 1024;

/// What a token's `cnf` claim binds it to (`None`: not bound that way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// `cnf.jkt`: the RFC 7638 SHA-256 thumbprint of the DPoP key (RFC 9449 §6).
    pub jkt: Option<String>,
    /// `cnf["x5t#S256"]`: base64url SHA-256 of the client certificate's DER (RFC 8705 §3.1).
    pub x5t_s256: Option<String>,
    /// A binding jwtgate cannot check, named for the refusal: a `cnf` that is not an object, a
    /// `jkt` or `x5t#S256` that is not a string, or another confirmation method (RFC 7800's
    /// `jwk`, `jwe`, `jku`, `kid`, …). Such a token is sender-constrained all the same.
    pub unsupported: Option<&'static str>,
}

impl Confirmation {
    /// The confirmation of `claims`, when its `cnf` holds any member (or is not an object).
    pub fn of(claims: &Map<String, Value>) -> Option<Box<Self>> {
        let cnf = match claims.get("cnf")? {
            Value::Null => return None,
            Value::Object(cnf) => cnf,
            _ => {
                return Some(Box::new(Self {
                    unsupported: Some("cnf (not an object)"),
                    ..Self::default()
                }));
            }
        };
        let mut c = Self::default();
        for (name, value) in cnf {
            match (name.as_str(), value.as_str()) {
                ("jkt", Some(v)) => c.jkt = Some(v.to_owned()),
                ("x5t#S256", Some(v)) => c.x5t_s256 = Some(v.to_owned()),
                ("jkt", None) => c.unsupported = Some("cnf.jkt (not a string)"),
                ("x5t#S256", None) => c.unsupported = Some("cnf x5t#S256 (not a string)"),
                _ => c.unsupported = c.unsupported.or(Some("cnf (another confirmation method)")),
            }
        }
        (c.jkt.is_some() || c.x5t_s256.is_some() || c.unsupported.is_some()).then(|| Box::new(c))
    }
}

/// Why a token's sender binding does not hold (a 401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// A DPoP-bound token (`cnf.jkt`) sent as `Bearer` (RFC 9449 §7.1).
    #[error("DPoP-bound token sent as Bearer; send it with the DPoP scheme and a proof")]
    BoundSentAsBearer,
    /// `dpop.mode: required` and the token came without DPoP.
    #[error("DPoP required: send a DPoP-bound token with the DPoP scheme and a proof")]
    DpopRequired,
    /// Sent with the DPoP scheme, but the token has no `cnf.jkt`.
    #[error("token is not DPoP-bound (no cnf.jkt)")]
    NotDpopBound,
    /// `mtls_binding: required` and the token has no `cnf["x5t#S256"]`.
    #[error("token is not certificate-bound (no cnf x5t#S256)")]
    NotCertificateBound,
    /// No client certificate came with the request.
    #[error("no client certificate")]
    NoClientCertificate,
    /// The client certificate the proxy passed cannot be read.
    #[error("client certificate unreadable")]
    UnreadableCertificate,
    /// Another certificate than the one the token is bound to.
    #[error("client certificate does not match the token's cnf x5t#S256")]
    CertificateMismatch,
}

/// Why a proof is refused (a 401 `invalid_dpop_proof`); each has a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No `DPoP` header.
    #[error("DPoP proof missing")]
    Missing,
    /// More than one `DPoP` header (or one value joined from several).
    #[error("more than one DPoP proof")]
    Multiple,
    /// Not a compact JWS with the members a proof needs.
    #[error("DPoP proof malformed")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ is not dpop+jwt")]
    WrongType,
    /// `alg` is `none`, symmetric, or not in `dpop.algorithms`.
    #[error("DPoP proof algorithm not allowed")]
    Algorithm,
    /// The `jwk` header is missing or not a usable public key for `alg`.
    #[error("DPoP proof jwk is not a usable public key")]
    Key,
    /// The `jwk` header carries private key members.
    #[error("DPoP proof jwk contains a private key")]
    PrivateKey,
    /// The signature does not verify with the proof's own `jwk`.
    #[error("DPoP proof signature invalid")]
    Signature,
    /// `htm` is not the request's method.
    #[error("DPoP proof htm does not match the request method")]
    Method,
    /// `htu` is not the request's URI.
    #[error("DPoP proof htu does not match the request URI")]
    Uri,
    /// `iat` older than `proof_max_age` (plus clock skew).
    #[error("DPoP proof too old")]
    TooOld,
    /// `iat` in the future beyond the clock skew.
    #[error("DPoP proof issued in the future")]
    FromTheFuture,
    /// `ath` is not the hash of the access token.
    #[error("DPoP proof ath does not match the access token")]
    AccessTokenHash,
    /// The proof's key is not the one the token's `cnf.jkt` names.
    #[error("DPoP proof key does not match the token's cnf.jkt")]
    KeyMismatch,
    /// The proof's `jti` was seen before within its lifetime.
    #[error("DPoP proof replayed")]
    Replayed,
}

impl ProofError {
    /// Every label [`ProofError::label`] returns, then `valid`: the `outcome` label set of
    /// `jwtgate_dpop_proofs_total`.
    pub const OUTCOMES: [&'static str; 16] = [
        "missing",
        "multiple",
        "malformed",
        "wrong_type",
        "algorithm",
        "key",
        "private_key",
        "signature",
        "htm",
        "htu",
        "too_old",
        "future",
        "ath",
        "jkt",
        "replayed",
        "valid",
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        Self::OUTCOMES[self as usize]
    }
}

/// Whether `cert` is the certificate whose thumbprint is `x5t_s256`, in constant time.
pub fn certificate_matches(cert: &ClientCert, x5t_s256: &str) -> Result<(), BindingError> {
    let thumbprint = cert_thumbprint(cert).ok_or(BindingError::UnreadableCertificate)?;
    let wanted = URL_SAFE_NO_PAD
        .decode(x5t_s256)
        .map_err(|_| BindingError::CertificateMismatch)?;
    if bool::from(wanted.as_slice().ct_eq(&thumbprint)) {
        Ok(())
    } else {
        Err(BindingError::CertificateMismatch)
    }
}

/// SHA-256 of the certificate's DER (`None`: unreadable). A PEM bundle's first certificate is
/// the client's own.
pub fn cert_thumbprint(cert: &ClientCert) -> Option<[u8; 32]> {
    match cert {
        ClientCert::Sha256Hex(hex) => {
            let hex = hex.trim().as_bytes();
            if hex.len() != 64 {
                return None;
            }
            let mut out = [0u8; 32];
            for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
                let digit = |b: u8| (b as char).to_digit(16);
                *o = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
            }
            Some(out)
        }
        ClientCert::Encoded(text) => {
            if text.len() > MAX_CERT_BYTES {
                return None;
            }
            let text = percent_decoded(text.trim())?;
            let body = match text.find("-----BEGIN CERTIFICATE-----") {
                Some(start) => {
                    let rest = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
                    &rest[..rest.find("-----END CERTIFICATE-----")?]
                }
                None => text.as_str(),
            };
            let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let der = STANDARD.decode(b64).ok()?;
            // A DER certificate is a SEQUENCE.
            (der.first() == Some(&0x30)).then(|| Sha256::digest(&der).into())
        }
    }
}

/// `%XX` escapes decoded (a `+` stays a `+`: it is a base64 character here); `None` when the
/// result is not UTF-8 or an escape is broken.
fn percent_decoded(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The client certificate in Envoy's `X-Forwarded-Client-Cert`: the `Hash=` of its first
/// element (the client that connected to the outermost proxy), else its `Cert=` (URL-encoded
/// PEM).
pub fn from_xfcc(value: &str) -> Option<ClientCert> {
    let first = value.split(',').next()?;
    let mut cert = None;
    for pair in first.split(';') {
        let (k, v) = pair.trim().split_once('=')?;
        let v = v.trim_matches('"');
        if k.eq_ignore_ascii_case("hash") {
            return Some(ClientCert::Sha256Hex(v.to_owned()));
        }
        if k.eq_ignore_ascii_case("cert") {
            cert = Some(ClientCert::Encoded(v.to_owned()));
        }
    }
    cert
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate's DER, base64 (any DER SEQUENCE will do for a thumbprint).
    const DER_B64: &str = "MIIBNTCB3KADAgECAhQ=";

    #[test]
    fn pem_url_encoded_pem_base64_der_and_xfcc_hash_give_one_thumbprint() {
        let der = STANDARD.decode(DER_B64).unwrap();
        let want: [u8; 32] = Sha256::digest(&der).into();
        let pem = format!("-----BEGIN CERTIFICATE-----\n{DER_B64}\n-----END CERTIFICATE-----\n");
        let escaped: String = form_urlencoded::byte_serialize(pem.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        for cert in [
            ClientCert::Encoded(pem.clone()),
            ClientCert::Encoded(escaped.clone()),
            ClientCert::Encoded(DER_B64.into()),
            ClientCert::Sha256Hex(hex.clone()),
            from_xfcc(&format!("By=spiffe://a;Hash={hex};Subject=\"CN=x\",Hash=00")).unwrap(),
            from_xfcc(&format!("Cert=\"{escaped}\"")).unwrap(),
        ] {
            assert_eq!(cert_thumbprint(&cert), Some(want), "{cert:?}");
        }
        let x5t = URL_SAFE_NO_PAD.encode(want);
        assert_eq!(certificate_matches(&ClientCert::Encoded(pem), &x5t), Ok(()));
        assert_eq!(
            certificate_matches(&ClientCert::Sha256Hex("00".repeat(32)), &x5t),
            Err(BindingError::CertificateMismatch)
        );
        for bad in ["", "%zz", "-----BEGIN CERTIFICATE-----\nAAAA", "bm90IGRlcg=="] {
            assert_eq!(cert_thumbprint(&ClientCert::Encoded(bad.into())), None, "{bad}");
        }
        assert_eq!(cert_thumbprint(&ClientCert::Sha256Hex("xy".repeat(32))), None);
    }

    #[test]
    fn every_refusal_has_its_own_label_and_valid_comes_last() {
        assert_eq!(ProofError::Missing.label(), "missing");
        assert_eq!(ProofError::Replayed.label(), "replayed");
        assert_eq!(ProofError::OUTCOMES[ProofError::Replayed as usize + 1], "valid");
        let seen: std::collections::HashSet<_> = ProofError::OUTCOMES.iter().collect();
        assert_eq!(seen.len(), ProofError::OUTCOMES.len());
    }

    #[test]
    fn cnf_members_are_read_only_as_strings() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        let c = Confirmation::of(&claims(serde_json::json!({"cnf": {"jkt": "abc", "x5t#S256": "def"}}))).unwrap();
        assert_eq!((c.jkt.as_deref(), c.x5t_s256.as_deref()), (Some("abc"), Some("def")));
        assert_eq!(c.unsupported, None);
        // Bound all the same, in ways jwtgate cannot check: refused wherever a binding is not
        // checked, named so.
        let unsupported = |cnf: serde_json::Value| {
            Confirmation::of(&claims(serde_json::json!({ "cnf": cnf }))).and_then(|c| c.unsupported)
        };
        assert_eq!(
            unsupported(serde_json::json!({"jkt": 1})),
            Some("cnf.jkt (not a string)")
        );
        assert_eq!(
            unsupported(serde_json::json!({"x5t#S256": null})),
            Some("cnf x5t#S256 (not a string)")
        );
        assert_eq!(unsupported(serde_json::json!("jkt")), Some("cnf (not an object)"));
        assert_eq!(unsupported(serde_json::json!([])), Some("cnf (not an object)"));
        for method in ["jwk", "jwe", "jku", "kid", "JKT"] {
            assert_eq!(
                unsupported(serde_json::json!({ method: "x" })),
                Some("cnf (another confirmation method)"),
                "{method}"
            );
        }
        assert_eq!(Confirmation::of(&claims(serde_json::json!({"cnf": {}}))), None);
        assert_eq!(Confirmation::of(&claims(serde_json::json!({"cnf": null}))), None);
        assert_eq!(Confirmation::of(&claims(serde_json::json!({}))), None);
    }
}
