//! Finding the raw token in a request: a header with a scheme prefix (matched
//! case-insensitively), a cookie, or a query parameter, in the configured order.
//!
//! This module neither parses nor verifies the token.

use std::borrow::Cow;

use crate::config::Source;
use crate::request::Request;

/// Longest header, cookie or query value considered; longer ones are cut off here and refused
/// by the size check.
const MAX_SCAN_BYTES: usize = 64 * 1024;

/// The first token found in `sources`, with the source it came from.
pub fn extract<'r, 's>(req: &'r Request, sources: &'s [Source]) -> Option<(Cow<'r, str>, &'s Source)> {
    sources.iter().find_map(|s| from_source(req, s).map(|t| (t, s)))
}

/// The credential in a header `value` that starts with `prefix` (a scheme such as `"Bearer "`,
/// matched case-insensitively), trimmed; `None` when it does not start so or nothing follows.
pub fn after_scheme<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let value = value.trim();
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let credential = value.get(prefix.len()..)?.trim();
    (!credential.is_empty()).then_some(credential)
}

fn from_source<'r>(req: &'r Request, source: &Source) -> Option<Cow<'r, str>> {
    match source {
        Source::Header { name, prefix } => after_scheme(req.header(name)?, prefix).map(Cow::Borrowed),
        Source::Cookie(name) => {
            let cookies = req.header("cookie")?;
            cookies.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name && !v.is_empty()).then(|| Cow::Borrowed(v.trim_matches('"')))
            })
        }
        Source::Query(name) => {
            let query = req.path.split_once('?')?.1;
            let query = query.split('#').next().unwrap_or_default();
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == name && !v.is_empty()).then(|| percent_decode(v))
            })
        }
    }
}

/// The `cookie` header `cookies` without any cookie named `name` (the token's, when it must not
/// reach the upstream), or `None` when no other cookie is left.
pub fn without_cookie(cookies: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = cookies
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k).trim() != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Decodes `%XX` escapes (and `+` as space); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) || s.len() > MAX_SCAN_BYTES {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], path: &str) -> Request {
        Request {
            path: path.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Request::default()
        }
    }

    fn bearer() -> Source {
        Source::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }

    #[test]
    fn the_token_cookie_is_cut_out_and_the_others_kept() {
        assert_eq!(
            without_cookie("theme=dark; at=abc.def; lang=en", "at").as_deref(),
            Some("theme=dark; lang=en")
        );
        assert_eq!(without_cookie("at=abc;at=again", "at"), None);
        assert_eq!(without_cookie(" at = x ;; ", "at"), None);
        assert_eq!(without_cookie("at2=x; xat=y", "at").as_deref(), Some("at2=x; xat=y"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for h in ["Bearer abc", "bearer abc", "BEARER   abc  "] {
            let r = req(&[("authorization", h)], "/");
            assert_eq!(extract(&r, &[bearer()]).unwrap().0, "abc");
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_missing() {
        for h in ["Basic dXNlcjpwYXNz", "Bearer ", "Bear", "Bearerabc"] {
            let r = req(&[("authorization", h)], "/");
            assert!(extract(&r, &[bearer()]).is_none(), "{h}");
        }
    }

    #[test]
    fn sources_are_tried_in_order() {
        let sources = [
            bearer(),
            Source::Cookie("at".into()),
            Source::Query("access_token".into()),
        ];
        let r = req(&[("cookie", "x=1; at=fromcookie")], "/p?access_token=fromquery");
        let (t, s) = extract(&r, &sources).unwrap();
        assert_eq!((t.as_ref(), s), ("fromcookie", &sources[1]));
        let r = req(&[], "/p?a=1&access_token=a%2Eb#frag");
        assert_eq!(extract(&r, &sources).unwrap().0, "a.b");
        let r = req(&[], "/p?access_token=x");
        assert!(extract(&r, &sources[..2]).is_none(), "query is opt-in");
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("a+b%41"), "a bA");
    }
}
