//! Path normalisation before route matching, so that a request cannot reach a weaker route by
//! spelling its path differently. In order:
//!
//! 1. The query (`?…`) and fragment (`#…`) are removed. An empty path is `/`; any other path must
//!    start with `/`.
//! 2. Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded once (`/%61dmin` →
//!    `/admin`, `%2e` → `.`); every other escape stays encoded, with upper-case hex (`%2f` →
//!    `%2F`: an encoded slash is never a separator). A `%` without two hex digits, and control
//!    characters, raw or encoded (`%00`–`%1F`, `%7F`), are refused.
//! 3. Empty segments are merged (`//admin` → `/admin`).
//! 4. Dot segments are resolved (RFC 3986 §5.2.4): `.` is dropped, `..` drops the segment before
//!    it and never climbs above the root (`/x/../admin`, `/../admin` → `/admin`). A path that ends
//!    in a `/`, `.` or `..` segment keeps a trailing `/`.
//! 5. Case, backslashes and non-ASCII characters are left as they are (routes may opt into
//!    case-insensitive matching).

/// Longest path accepted, in bytes, before normalisation.
pub const MAX_PATH_BYTES: usize = 8192;

/// A request path that cannot be normalised safely; the request is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Does not start with `/`.
    #[error("path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding")]
    BadPercentEncoding,
    /// A raw or encoded control character.
    #[error("control character in path")]
    ControlCharacter,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("path too long")]
    TooLong,
}

/// Normalises a request target (path, maybe with `?query` and `#fragment`).
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = &raw[..end];
    if path.is_empty() {
        return Ok("/".into());
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split('/').skip(1) {
        trailing = false;
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                segments.pop();
                trailing = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Decodes escapes of unreserved characters, upper-cases the hex of the rest, refuses control
/// characters and broken escapes.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
            let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) else {
                return Err(PathError::BadPercentEncoding);
            };
            let v = (h * 16 + l) as u8;
            if v < 0x20 || v == 0x7f {
                return Err(PathError::ControlCharacter);
            }
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
            i += 3;
            continue;
        }
        // Copy one whole character (paths may carry raw UTF-8).
        let ch = path[i..].chars().next().ok_or(PathError::BadPercentEncoding)?;
        if ch.is_control() {
            return Err(PathError::ControlCharacter);
        }
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap()
    }

    #[test]
    fn bypass_spellings_normalise_to_the_same_path() {
        for p in [
            "/admin",
            "/admin/../admin",
            "//admin",
            "/%61dmin",
            "/./admin",
            "/%2e/admin",
            "/x/%2E%2E/admin",
        ] {
            assert_eq!(n(p), "/admin", "{p}");
        }
        assert_eq!(n("/admin?x=/public"), "/admin");
        assert_eq!(n("/admin#frag"), "/admin");
        assert_eq!(n("/../admin"), "/admin");
        assert_eq!(n("/a/./b"), "/a/b");
    }

    #[test]
    fn encoded_slashes_stay_encoded() {
        assert_eq!(n("/public%2f..%2fadmin"), "/public%2F..%2Fadmin");
        assert_eq!(n("/a%3a"), "/a%3A");
        assert_eq!(n("/%252e"), "/%252e", "decoded once only");
    }

    #[test]
    fn trailing_slashes_are_kept() {
        assert_eq!(n("/admin/"), "/admin/");
        assert_eq!(n("/admin/x/.."), "/admin/");
        assert_eq!(n("/admin/."), "/admin/");
        assert_eq!(n(""), "/");
        assert_eq!(n("/"), "/");
        assert_eq!(n("/.."), "/");
    }

    #[test]
    fn refusals() {
        assert_eq!(normalize("admin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("http://h/admin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize("/a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(normalize("/a\nb"), Err(PathError::ControlCharacter));
        assert_eq!(
            normalize(&format!("/{}", "a".repeat(MAX_PATH_BYTES))),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn case_backslash_and_unicode_are_kept() {
        assert_eq!(n("/ADMIN"), "/ADMIN");
        assert_eq!(n("/a\\b"), "/a\\b");
        assert_eq!(n("/ünï"), "/ünï");
    }

    proptest! {
        #[test]
        fn normalised_paths_are_fixed_points_and_clean(raw in "(/|%|2|e|E|f|F|6|1|a|\\.|\\?|#|x){0,40}") {
            if let Ok(p) = normalize(&raw) {
                prop_assert!(p.starts_with('/'));
                prop_assert!(!p.contains("//"));
                prop_assert!(!p.contains('?') && !p.contains('#'));
                prop_assert!(!p.split('/').any(|s| s == "." || s == ".."));
                prop_assert_eq!(normalize(&p), Ok(p.clone()));
            }
        }

        #[test]
        fn never_panics(raw in any::<String>()) {
            let _ = normalize(&raw);
        }
    }
}
