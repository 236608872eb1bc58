//! The one place that looks inside a token before its signature is verified.
//!
//! Parses compact JWS (`header.payload.signature`) from hostile input: strict base64url, UTF-8
//! JSON objects without duplicate members, bounded `kid`, no `crit` extensions. Nothing returned
//! here is trustworthy until [`crate::verify`] has checked the signature.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::rejection::Rejection;

/// Longest `kid` looked up; longer ones are refused without a lookup.
pub const MAX_KID_BYTES: usize = 256;

/// Longest signature checked, in bytes: an RSA-8,192 one. Anything longer is refused unread
/// by the verifier ([`crate::keys::public_key`]); here it sizes the stack buffer a signature's
/// base64url is checked in.
pub const MAX_SIGNATURE_BYTES: usize = 1_024;

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    /// The protected header.
    pub header: Header,
    /// The claims object, free of duplicate members at every level.
    pub claims: Map<String, Value>,
    /// `base64url(header) . base64url(payload)`: what the signature covers.
    pub signing_input: &'a str,
    /// The payload segment as sent (for `payload_header`).
    pub payload_b64: &'a str,
    /// The signature segment as sent (base64url).
    pub signature_b64: &'a str,
}

/// The header members jwtgate uses. `jku`, `x5u`, `jwk` and `x5c` are deliberately not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Signing algorithm.
    pub alg: Algorithm,
    /// Key id, opaque and bounded.
    pub kid: Option<String>,
    /// Media type (`typ`), as sent.
    pub typ: Option<String>,
}

/// Whether `token` is JOSE-shaped (a JWS, or a JWE): a `.` and a first segment that is
/// base64url of a JSON object. Anything else is an opaque token, for the providers that
/// introspect (RFC 7662); this looks at the header only, never trusts it.
pub fn is_jose(token: &str) -> bool {
    let Some((header, _)) = token.split_once('.') else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|v| v.is_object())
}

/// Splits and decodes a compact JWS without verifying it.
pub fn parse_unverified(token: &str) -> Result<UnverifiedJws<'_>, Rejection> {
    if token.starts_with('{') {
        return Err(Rejection::Malformed(
            "JSON serialization is not accepted; send compact JWS",
        ));
    }
    // One pass over the token (`split` finds dots with memchr): five segments are a JWE.
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
        (segments.next(), segments.next(), segments.next())
    else {
        return Err(Rejection::Malformed("expected three dot-separated segments"));
    };
    match segments.count() {
        0 => {}
        2 => return Err(Rejection::Encrypted),
        _ => return Err(Rejection::Malformed("expected three dot-separated segments")),
    }
    let header = parse_header(object(&decode_segment(header_b64)?, "header is not a JSON object")?)?;
    if signature_b64.is_empty() {
        return Err(Rejection::Malformed("missing signature"));
    }
    let payload_json = decode_segment(payload_b64)?;
    if !is_base64url_text(signature_b64) {
        return Err(Rejection::Malformed("invalid base64url"));
    }
    let claims = object(&payload_json, "payload is not a JSON object")?;
    Ok(UnverifiedJws {
        header,
        claims,
        signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
        payload_b64,
        signature_b64,
    })
}

impl UnverifiedJws<'_> {
    /// The whole protected header, strictly parsed: for a DPoP proof, whose `jwk` is its key
    /// (a token's header members beyond [`Header`] are never read).
    pub fn header_object(&self) -> Result<Map<String, Value>, Rejection> {
        let header_b64 = self.signing_input.split('.').next().unwrap_or_default();
        object(&decode_segment(header_b64)?, "header is not a JSON object")
    }
}

/// Whether `text` is strict unpadded base64url: the alphabet only, no `=`, no bits left over
/// in the last symbol (the decoder's own checks). Decoded into a stack buffer when it fits one
/// (a signature always does: the verifier decodes it again, there), else into the heap.
fn is_base64url_text(text: &str) -> bool {
    let mut buf = [0u8; MAX_SIGNATURE_BYTES];
    if base64::decoded_len_estimate(text.len()) <= buf.len() {
        URL_SAFE_NO_PAD.decode_slice(text, &mut buf).is_ok()
    } else {
        URL_SAFE_NO_PAD.decode(text).is_ok()
    }
}

/// A non-empty segment, strictly decoded: the engine refuses padding, symbols outside the
/// base64url alphabet and non-zero leftover bits, so no separate scan is needed.
fn decode_segment(segment: &str) -> Result<Vec<u8>, Rejection> {
    if segment.is_empty() {
        return Err(Rejection::Malformed("empty segment"));
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Rejection::Malformed("invalid base64url"))
}

fn object(bytes: &[u8], not_object: &'static str) -> Result<Map<String, Value>, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|_| Rejection::Malformed("invalid UTF-8"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = de
        .deserialize_any(StrictVisitor)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            if e.to_string().starts_with(DUPLICATE) {
                Rejection::Malformed("duplicate JSON member")
            } else {
                Rejection::Malformed("invalid JSON")
            }
        })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Rejection::Malformed(not_object)),
    }
}

fn parse_header(mut h: Map<String, Value>) -> Result<Header, Rejection> {
    if h.contains_key("crit") {
        return Err(Rejection::UnsupportedCritical);
    }
    if h.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(Rejection::UnsupportedCritical);
    }
    if h.contains_key("enc") {
        return Err(Rejection::Encrypted);
    }
    if h.contains_key("zip") {
        return Err(Rejection::Malformed("compressed payloads are not accepted"));
    }
    let alg = match h.remove("alg") {
        Some(Value::String(a)) => a,
        Some(_) => return Err(Rejection::Malformed("alg is not a string")),
        None => return Err(Rejection::Malformed("alg is missing")),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(Rejection::Unsigned);
    }
    let alg = Algorithm::from_str(&alg).map_err(|_| Rejection::AlgorithmNotAllowed)?;
    // A `kid` is an opaque lookup string: a non-string value is looked up as its JSON text (so it
    // can only ever miss), and anything longer than the bound is refused before any lookup.
    let kid = match h.remove("kid") {
        None => None,
        Some(Value::String(k)) => Some(k),
        Some(other) => Some(other.to_string()),
    };
    if kid.as_ref().is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err(Rejection::Malformed("kid too long"));
    }
    let typ = match h.remove("typ") {
        None => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err(Rejection::Malformed("typ is not a string")),
    };
    Ok(Header { alg, kid, typ })
}

const DUPLICATE: &str = "duplicate member";

/// Builds a `serde_json::Value`, refusing duplicate object members at any depth: parsers
/// disagree on which duplicate wins, so refusing is the only safe answer.
struct StrictVisitor;

struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let serde_json::map::Entry::Vacant(slot) = out.entry(key) else {
                return Err(de::Error::custom(DUPLICATE));
            };
            let Strict(v) = map.next_value()?;
            slot.insert(v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_tokens_are_told_from_jose_by_their_first_segment() {
        assert!(is_jose("eyJhbGciOiJSUzI1NiJ9.e30.sig"));
        assert!(is_jose("eyJhbGciOiJSUzI1NiJ9.a.b.c.d"), "a JWE stays on the JOSE path");
        for opaque in ["AbC-12_xyz", "a.b.c", "no-dots-at-all", "", "eyJ.e30.x", "W10.e30.x"] {
            assert!(!is_jose(opaque), "{opaque}");
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, r#"{"sub":"a"}"#);
        let jws = parse_unverified(&t).unwrap();
        assert_eq!(jws.header.alg, Algorithm::RS256);
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims["sub"], "a");
        assert_eq!(jws.signature_b64, "c2ln");
        assert!(t.starts_with(jws.signing_input));
    }

    #[test]
    fn alg_none_in_any_casing_is_unsigned() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(parse_unverified(&t).unwrap_err(), Rejection::Unsigned);
            let stripped = format!("{}.{}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)), b64("{}"));
            assert_eq!(parse_unverified(&stripped).unwrap_err(), Rejection::Unsigned);
        }
    }

    #[test]
    fn duplicate_members_are_refused_in_header_and_claims() {
        let t = token(r#"{"alg":"RS256","alg":"none"}"#, "{}");
        assert_eq!(
            parse_unverified(&t).unwrap_err(),
            Rejection::Malformed("duplicate JSON member")
        );
        let t = token(r#"{"alg":"RS256"}"#, r#"{"a":{"b":1,"b":2}}"#);
        assert_eq!(
            parse_unverified(&t).unwrap_err(),
            Rejection::Malformed("duplicate JSON member")
        );
    }

    #[test]
    fn structure_errors_are_malformed_not_panics() {
        let cases = [
            "a.b",
            "a.b.c.d",
            "",
            "...",
            "eyJhbGciOiJSUzI1NiJ9.e30.",
            "eyJhbGciOiJSUzI1NiJ9.e30",
            "eyJhbGciOiJSUzI1NiJ9=.e30.c2ln",
            "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln",
            "eyJhbGciOiJSUzI1NiJ9.e+0.c2ln",
            // Each segment strictly base64url: no padding, no standard-alphabet or other symbols,
            // no bits left over in the last symbol.
            "eyJhbGciOiJSUzI1NiJ9.e30.c2k=",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2/n",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2l",
            "eyJhbGciOiJSUzI1NiJ9.e31.c2ln",
            "eyJhbGciOiJSUzI1NiJ9.e3 0.c2ln",
            " eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
            "{\"payload\":\"e30\",\"signatures\":[]}",
        ];
        for c in cases {
            assert!(matches!(parse_unverified(c), Err(Rejection::Malformed(_))), "{c}");
        }
        assert_eq!(parse_unverified("a.b.c.d.e").unwrap_err(), Rejection::Encrypted);
    }

    #[test]
    fn non_object_json_and_deep_nesting_are_refused() {
        let t = token(r#"{"alg":"RS256"}"#, "[1,2]");
        assert_eq!(
            parse_unverified(&t).unwrap_err(),
            Rejection::Malformed("payload is not a JSON object")
        );
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        let t = token(r#"{"alg":"RS256"}"#, &format!(r#"{{"x":{deep}}}"#));
        assert_eq!(parse_unverified(&t).unwrap_err(), Rejection::Malformed("invalid JSON"));
        let t = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe])
        );
        assert_eq!(parse_unverified(&t).unwrap_err(), Rejection::Malformed("invalid UTF-8"));
    }

    #[test]
    fn crit_and_b64_false_are_refused() {
        let t = token(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#, "{}");
        assert_eq!(parse_unverified(&t).unwrap_err(), Rejection::UnsupportedCritical);
        let t = token(r#"{"alg":"RS256","b64":false}"#, "{}");
        assert_eq!(parse_unverified(&t).unwrap_err(), Rejection::UnsupportedCritical);
    }

    #[test]
    fn kid_is_an_opaque_bounded_string() {
        let long = "k".repeat(MAX_KID_BYTES + 1);
        let t = token(&format!(r#"{{"alg":"RS256","kid":"{long}"}}"#), "{}");
        assert_eq!(parse_unverified(&t).unwrap_err(), Rejection::Malformed("kid too long"));
        let t = token(r#"{"alg":"RS256","kid":7}"#, "{}");
        assert_eq!(parse_unverified(&t).unwrap().header.kid.as_deref(), Some("7"));
        let t = token(r#"{"alg":"RS256","kid":{"a":1}}"#, "{}");
        assert_eq!(parse_unverified(&t).unwrap().header.kid.as_deref(), Some(r#"{"a":1}"#));
        let t = token(r#"{"alg":"RS256","kid":"../../dev/null\u0000' OR 1=1"}"#, "{}");
        assert_eq!(
            parse_unverified(&t).unwrap().header.kid.as_deref(),
            Some("../../dev/null\0' OR 1=1")
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,200}") {
            let _ = parse_unverified(&s);
        }

        #[test]
        fn arbitrary_segments_never_panic(h in "[A-Za-z0-9_-]{0,40}", p in "[A-Za-z0-9_-]{0,40}", s in "[A-Za-z0-9_=.-]{0,40}") {
            let _ = parse_unverified(&format!("{h}.{p}.{s}"));
        }
    }
}
