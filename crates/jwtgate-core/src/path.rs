//! Path normalisation before route matching, so that a request cannot reach a weaker route by
//! spelling its path differently. [`normalize`] applies these rules, in this order:
//!
//! 1. **Query and fragment.** Everything from the first `?` or `#` on is dropped
//!    (`/admin?x=/public` → `/admin`, `/admin#frag` → `/admin`). Only what is left, the path, counts
//!    towards [`MAX_PATH_BYTES`] (measured as received, before decoding); a longer path is refused.
//! 2. **Absolute paths only.** An empty path is `/`. Any other path must start with `/`; anything
//!    else, including an absolute-form target such as `http://host/path` or `*`, is refused.
//! 3. **Percent-decoding, once.** An escape `%XX` of an unreserved character (RFC 3986: `A-Z a-z
//!    0-9 - . _ ~`) is decoded (`/%61dmin` → `/admin`, `%2e%2e` → `..`). Any other escape stays
//!    encoded, with its hex digits in upper case (`%2f` → `%2F`): an encoded slash is never a
//!    segment separator, as in Envoy's default. Decoding is not repeated (`%252e` stays `%252e`:
//!    `%25` is an escaped `%`, and the `2e` after it are plain characters). Refused: a `%` not
//!    followed by two hex digits, and a control character (byte `0x00`–`0x1F` or `0x7F`), whether
//!    raw or encoded (`%00`–`%1F`, `%7F`).
//! 4. **Empty segments** are merged (`//admin///x` → `/admin/x`).
//! 5. **Dot segments** are resolved as in RFC 3986 §5.2.4 (`remove_dot_segments`), after decoding:
//!    a `.` segment is removed, a `..` segment removes the segment before it, and `..` at the root
//!    stays at the root (`/a/./b` → `/a/b`, `/admin/../admin` → `/admin`, `/../admin` → `/admin`,
//!    `/x/%2E%2E/admin` → `/admin`).
//! 6. **Trailing slash.** The result ends in `/` when the input's last segment is empty, `.` or
//!    `..` (`/admin/` stays `/admin/`, `/admin/x/..` → `/admin/`, `/admin/.` → `/admin/`), and
//!    only then (or when nothing is left: `/`).
//! 7. **Case** is not changed, except for the hex digits of the escapes that stay encoded (rule 3):
//!    `/ADMIN` is not `/admin`; case-insensitive matching is up to the route.
//! 8. **Backslashes and non-ASCII characters** are kept as they are (`\` is not a separator).
//!
//! The result starts with `/`, holds no `//`, no `.` or `..` segment, no `?`, `#` or control
//! character, and normalising it again gives it back unchanged.

/// Longest path accepted, in bytes, as received: after the query and fragment are dropped, before
/// percent-decoding. A longer path is refused with [`PathError::TooLong`].
pub const MAX_PATH_BYTES: usize = 8192;

/// A request path that cannot be normalised safely; the request is denied with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is neither empty nor starts with `/` (e.g. `admin`, `http://host/admin`, `*`).
    #[error("path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding")]
    BadPercentEncoding,
    /// A control character (`0x00`–`0x1F`, `0x7F`), raw or percent-encoded.
    #[error("control character in path")]
    ControlCharacter,
    /// The path is longer than [`MAX_PATH_BYTES`].
    #[error("path too long")]
    TooLong,
}

/// Normalises `raw`, a request target as a proxy reports it (a path, maybe followed by `?query`
/// and `#fragment`), by the rules in the [module documentation](self).
///
/// ```
/// use jwtgate_core::path::{PathError, normalize};
///
/// assert_eq!(normalize("//x/%2e%2E/%61dmin/?q=1").as_deref(), Ok("/admin/"));
/// assert_eq!(normalize("/public%2f..%2fadmin").as_deref(), Ok("/public%2F..%2Fadmin"));
/// assert_eq!(normalize("/a%00"), Err(PathError::ControlCharacter));
/// ```
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let path = raw.find(['?', '#']).map_or(raw, |end| &raw[..end]);
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return if path.is_empty() {
            Ok("/".to_owned())
        } else {
            Err(PathError::NotAbsolute)
        };
    };
    // The output never grows past the input. It holds the resolved segments so far, each as `/`
    // plus the decoded segment; a decoded segment never holds a `/` (`%2F` stays encoded), so the
    // last `/` in `out` always starts the last segment.
    let mut out = String::with_capacity(path.len());
    let mut trailing_slash = false;
    for segment in rest.split('/') {
        let start = out.len();
        out.push('/');
        push_decoded(segment, &mut out)?;
        trailing_slash = match &out[start + 1..] {
            "" | "." => {
                out.truncate(start);
                true
            }
            ".." => {
                out.truncate(start);
                out.truncate(out.rfind('/').unwrap_or(0));
                true
            }
            _ => false,
        };
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Appends `segment` to `out`, decoding escapes of unreserved characters and upper-casing the hex
/// of the other escapes; refuses broken escapes and control characters.
fn push_decoded(segment: &str, out: &mut String) -> Result<(), PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = segment.as_bytes();
    // `segment[copied..i]` is still to be copied as is. Both only ever stop at ASCII bytes, so they
    // sit on character boundaries even when the path holds raw UTF-8.
    let mut copied = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_control(b) {
            return Err(PathError::ControlCharacter);
        }
        if b != b'%' {
            i += 1;
            continue;
        }
        out.push_str(&segment[copied..i]);
        let digit = |j: usize| bytes.get(j).copied().and_then(hex_value);
        let (Some(high), Some(low)) = (digit(i + 1), digit(i + 2)) else {
            return Err(PathError::BadPercentEncoding);
        };
        let byte = high << 4 | low;
        if is_control(byte) {
            return Err(PathError::ControlCharacter);
        }
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(high)]));
            out.push(char::from(HEX[usize::from(low)]));
        }
        i += 3;
        copied = i;
    }
    out.push_str(&segment[copied..]);
    Ok(())
}

/// The ASCII control characters, `0x00`–`0x1F` and `0x7F`.
fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// The value of one hex digit, either case.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` is `prefix` or lies below it, by whole segments: `/public` holds `/public`
/// and `/public/…`, never `/public-admin`; a prefix ending in `/` holds what starts with it.
pub fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> String {
        match normalize(p) {
            Ok(s) => s,
            Err(e) => panic!("{p:?} refused: {e}"),
        }
    }

    #[test]
    fn bypass_spellings_reach_admin() {
        for p in [
            "/admin",
            "/admin/../admin",
            "//admin",
            "/%61dmin",
            "/%61%64%6D%69%6e",
            "/./admin",
            "/%2e/admin",
            "/x/%2E%2E/admin",
            "/x/.%2e/admin",
            "/x/y/../../admin",
            "/../../admin",
            "/admin?x=/public",
            "/admin#frag",
            "/admin?",
            "/admin/.",
        ] {
            let got = n(p);
            assert!(got == "/admin" || got.starts_with("/admin/"), "{p} → {got}");
        }
        assert_eq!(n("/admin/../admin"), "/admin");
        assert_eq!(n("/public/../admin/users"), "/admin/users");
    }

    #[test]
    fn encoded_slash_is_not_a_separator() {
        assert_eq!(n("/public%2F..%2Fadmin"), "/public%2F..%2Fadmin");
        assert_eq!(n("/public%2f..%2fadmin"), "/public%2F..%2Fadmin");
        assert_eq!(n("/public%2F%2e%2e%2Fadmin"), "/public%2F..%2Fadmin");
        assert_eq!(n("/a%2F%2Fb"), "/a%2F%2Fb");
    }

    #[test]
    fn rule1_query_and_fragment_are_stripped() {
        assert_eq!(n("/admin?x=/public"), "/admin");
        assert_eq!(n("/admin#frag"), "/admin");
        assert_eq!(n("/a?b#c"), "/a");
        assert_eq!(n("/a#b?c"), "/a");
        assert_eq!(n("/a?%zz%00"), "/a", "the query is not checked");
        assert_eq!(n("?x"), "/");
        assert_eq!(n("#x"), "/");
        assert_eq!(n("/a%3Fb"), "/a%3Fb", "an encoded ? is part of the path");
        assert_eq!(n("/a%23b"), "/a%23b", "an encoded # is part of the path");
    }

    #[test]
    fn rule1_only_the_path_counts_towards_the_length_limit() {
        let longest = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert_eq!(normalize(&longest).as_deref(), Ok(longest.as_str()));
        assert_eq!(normalize(&format!("{longest}a")), Err(PathError::TooLong));
        assert_eq!(
            normalize(&format!("{longest}?{}", "q".repeat(MAX_PATH_BYTES))).as_deref(),
            Ok(longest.as_str())
        );
        // Measured before decoding: escapes count three bytes each.
        let escaped = format!("/{}", "%61".repeat(MAX_PATH_BYTES / 3 + 1));
        assert_eq!(normalize(&escaped), Err(PathError::TooLong));
        let fits = format!("/{}", "%61".repeat((MAX_PATH_BYTES - 1) / 3));
        assert_eq!(normalize(&fits).map(|p| p.len()), Ok(1 + (MAX_PATH_BYTES - 1) / 3));
    }

    #[test]
    fn rule2_path_must_be_absolute() {
        assert_eq!(n(""), "/");
        assert_eq!(n("/"), "/");
        assert_eq!(normalize("admin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("http://host/admin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("%2Fadmin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize(" /admin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("\\admin"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn rule3_unreserved_escapes_are_decoded() {
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/%41%5A%30%39%2D%2E%5F%7E"), "/AZ09-._~");
        assert_eq!(n("/%2d%2e%5f%7e"), "/-._~");
        assert_eq!(n("/a/%2e%2e"), "/");
    }

    #[test]
    fn rule3_other_escapes_stay_encoded_in_upper_case() {
        assert_eq!(n("/a%2f"), "/a%2F");
        assert_eq!(n("/a%3a%3A"), "/a%3A%3A");
        assert_eq!(n("/%20%21%25%5c%ff%c3%a9"), "/%20%21%25%5C%FF%C3%A9");
    }

    #[test]
    fn rule3_decoding_happens_once() {
        assert_eq!(n("/%252e"), "/%252e");
        assert_eq!(n("/%252E"), "/%252E");
        assert_eq!(n("/%25%32%65"), "/%252e", "%32 and %65 are decoded, %25 is not");
        assert_eq!(n("/x/%252e%252e/admin"), "/x/%252e%252e/admin");
    }

    #[test]
    fn rule3_broken_escapes_are_refused() {
        for p in [
            "/a%", "/a%2", "/a%zz", "/a%2g", "/a%g2", "/%%32%65", "/a%é9", "/a%2é", "/a% 20",
        ] {
            assert_eq!(normalize(p), Err(PathError::BadPercentEncoding), "{p}");
        }
    }

    #[test]
    fn rule3_control_characters_are_refused() {
        for p in [
            "/a%00b", "/a%0a", "/a%0D", "/a%1f", "/a%7F", "/a\nb", "/a\0", "/a\tb", "/a\x7f", "/\r",
        ] {
            assert_eq!(normalize(p), Err(PathError::ControlCharacter), "{p:?}");
        }
        assert_eq!(n("/a%20b"), "/a%20b", "a space is not a control character");
        assert_eq!(n("/a\u{85}b"), "/a\u{85}b", "only ASCII control characters are refused");
        assert_eq!(n("/a%C2%85b"), "/a%C2%85b");
    }

    #[test]
    fn rule4_empty_segments_are_merged() {
        assert_eq!(n("//admin///x"), "/admin/x");
        assert_eq!(n("//admin"), "/admin");
        assert_eq!(n("////"), "/");
        assert_eq!(n("/a//"), "/a/");
    }

    #[test]
    fn rule5_dot_segments_are_resolved() {
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/admin/../admin"), "/admin");
        assert_eq!(n("/../admin"), "/admin");
        assert_eq!(n("/a/b/c/./../../g"), "/a/g", "RFC 3986 §5.4.2");
        assert_eq!(n("/a/b/../../../../c"), "/c");
        assert_eq!(n("/a//../b"), "/b", "the empty segment is merged before `..` applies");
        assert_eq!(n("/.../a"), "/.../a", "`...` is an ordinary segment");
        assert_eq!(n("/.a/..a/a."), "/.a/..a/a.");
    }

    #[test]
    fn rule6_trailing_slash_is_kept() {
        assert_eq!(n("/admin/"), "/admin/");
        assert_eq!(n("/admin/x/.."), "/admin/");
        assert_eq!(n("/admin/."), "/admin/");
        assert_eq!(n("/admin/%2E"), "/admin/");
        assert_eq!(n("/admin//"), "/admin/");
        assert_eq!(n("/admin/?q"), "/admin/");
        assert_eq!(n("/admin"), "/admin");
        assert_eq!(n("/admin/./x"), "/admin/x");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/."), "/");
    }

    #[test]
    fn rule7_case_is_kept() {
        assert_eq!(n("/ADMIN"), "/ADMIN");
        assert_eq!(n("/Admin/%41"), "/Admin/A");
        assert_eq!(n("/%61"), "/a");
    }

    #[test]
    fn rule8_backslash_and_non_ascii_are_kept() {
        assert_eq!(n("/a\\b"), "/a\\b");
        assert_eq!(n("/public\\..\\admin"), "/public\\..\\admin");
        assert_eq!(n("/x/\\../admin"), "/x/\\../admin");
        assert_eq!(n("/ünï/../ç"), "/ç");
        assert_eq!(n("/日本/%e6%97%a5"), "/日本/%E6%97%A5");
    }

    /// Arbitrary strings, and strings built from the characters that matter to the rules.
    fn raw_paths() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[/%.?#\\\\aAfF0-9eEx2é]{0,48}",
            proptest::collection::vec(
                prop_oneof![
                    Just("/"),
                    Just("."),
                    Just(".."),
                    Just("%2e"),
                    Just("%2E"),
                    Just("%2f"),
                    Just("%25"),
                    Just("%61"),
                    Just("a"),
                    Just("?"),
                    Just("#"),
                    Just("\\"),
                    Just("%"),
                    Just("2e"),
                ],
                0..24,
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(raw in raw_paths()) {
            if let Ok(p) = normalize(&raw) {
                prop_assert_eq!(normalize(&p), Ok(p.clone()));
            }
        }

        #[test]
        fn normalised_paths_are_clean(raw in raw_paths()) {
            if let Ok(p) = normalize(&raw) {
                prop_assert!(p.starts_with('/'), "{:?}", p);
                prop_assert!(!p.contains("//"), "{:?}", p);
                prop_assert!(!p.contains(['?', '#']), "{:?}", p);
                prop_assert!(!p.split('/').any(|s| s == "." || s == ".."), "{:?}", p);
                prop_assert!(!p.bytes().any(is_control), "{:?}", p);
                prop_assert!(p.len() <= raw.len().max(1), "{:?}", p);
            }
        }

        #[test]
        fn never_panics_on_arbitrary_unicode(raw in any::<String>()) {
            let _ = normalize(&raw);
        }

        #[test]
        fn never_panics_on_percent_soup(raw in "[%0-9a-fA-Fg/.é\\x00]{0,64}") {
            let _ = normalize(&raw);
        }

        #[test]
        fn escaping_unreserved_characters_changes_nothing(
            path in "(/[A-Za-z0-9._~-]{0,6}){1,6}",
            mask in any::<u64>(),
            lower in any::<bool>(),
        ) {
            let mut escaped = String::new();
            for (i, c) in path.chars().enumerate() {
                if c != '/' && mask >> (i % 64) & 1 == 1 {
                    let e = format!("%{:02X}", u32::from(c));
                    escaped.push_str(&if lower { e.to_ascii_lowercase() } else { e });
                } else {
                    escaped.push(c);
                }
            }
            prop_assert_eq!(normalize(&escaped), normalize(&path));
        }

        #[test]
        fn extra_slashes_and_dot_segments_change_nothing(
            segments in proptest::collection::vec("[a-z]{1,5}", 1..6),
            noise in proptest::collection::vec(0..4usize, 6),
        ) {
            let plain: String = segments.iter().map(|s| format!("/{s}")).collect();
            let mut noisy = String::new();
            for (s, k) in segments.iter().zip(&noise) {
                noisy.push_str(["/", "//", "/./", "/zz/../"][*k]);
                noisy.push_str(s);
            }
            prop_assert_eq!(n(&noisy), plain);
        }
    }
}
