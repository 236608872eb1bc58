//! The host a request names (`:authority`, `Host`, `X-Original-Host`, `X-Forwarded-Host`), read
//! as RFC 9110 §7.2 and RFC 3986 §3.2.2 define it, before any route is matched on it: a
//! reg-name or an IP literal, then an optional all-digit port. Anything else is refused, never
//! matched loosely: nginx serves `Host: admin.example.com:x` (or `:80:80`, `:%30`) from the
//! `admin.example.com` server, so a host route that did not recognise such a host would let a
//! weaker route decide a request the proxy sends to the admin application.
//!
//! What is accepted, and how it is compared:
//! - a reg-name of letters, digits, `-`, `.`, `_` and `~` (RFC 3986's unreserved characters),
//!   lower-cased; one trailing dot (`example.com.`, the absolute DNS form) is dropped. Stricter
//!   than RFC 3986, which also allows percent-escapes and sub-delimiters in a reg-name: no DNS
//!   name holds them, and a name that an upstream might decode differently is refused instead.
//!   An empty label (`a..b`, `.a`) and names over 253 characters are refused too;
//! - an IPv6 literal in brackets (`[::1]`), compared in its canonical form; IPvFuture and zone
//!   identifiers are refused;
//! - then `:` and a port of digits only (at most 5), which is dropped for matching.
//!
//! An empty host (HTTP/1.0, a proxy that sent none) is accepted and matches no host route.

use std::net::Ipv6Addr;

/// Why a host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Something after the host that is not `:` and a port of digits only.
    #[error("port is not a number")]
    Port,
    /// A character no DNS name holds (percent-escape, sub-delimiter, userinfo, space …).
    #[error("character not allowed in a host")]
    Character,
    /// An empty label (`a..b`, `.a`, `a..`).
    #[error("empty label in host")]
    EmptyLabel,
    /// Longer than a DNS name can be.
    #[error("host too long")]
    TooLong,
    /// `[…]` that is not an IPv6 address (IPvFuture, a zone identifier, a broken literal).
    #[error("invalid IP literal")]
    IpLiteral,
}

/// The longest name a host may be (RFC 1035's 253 characters of a DNS name, in text form).
const MAX_NAME: usize = 253;

/// The host as routes compare it: lower-case, without port or trailing dot, an IPv6 literal in
/// canonical form in brackets; or why it cannot be one.
pub fn normalize(authority: &str) -> Result<String, HostError> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(HostError::IpLiteral)?;
        port(after)?;
        let ip: Ipv6Addr = literal.parse().map_err(|_| HostError::IpLiteral)?;
        return Ok(format!("[{ip}]"));
    }
    let (name, after) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
    port(after)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_NAME {
        return Err(HostError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(HostError::Character);
    }
    if !name.is_empty() && name.split('.').any(str::is_empty) {
        return Err(HostError::EmptyLabel);
    }
    Ok(name.to_ascii_lowercase())
}

/// What may follow the host: nothing, or `:` and up to 5 digits (an empty port is allowed,
/// RFC 3986 §3.2.3).
fn port(after: &str) -> Result<(), HostError> {
    match after.strip_prefix(':') {
        None if after.is_empty() => Ok(()),
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(HostError::Port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_port_case_and_trailing_dot() {
        for (raw, host) in [
            ("Example.com:443", "example.com"),
            ("example.com.", "example.com"),
            ("EXAMPLE.com.:8443", "example.com"),
            ("api.internal:", "api.internal"),
            ("h", "h"),
            ("10.0.0.1:80", "10.0.0.1"),
            ("under_score.example", "under_score.example"),
            ("[::1]:8080", "[::1]"),
            ("[0:0::1]", "[::1]"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("", ""),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(host), "{raw:?}");
        }
    }

    #[test]
    fn hosts_nginx_would_serve_from_another_server_are_refused() {
        for (raw, why) in [
            ("admin.example.com:x", HostError::Port),
            ("admin.example.com:80:80", HostError::Port),
            ("admin.example.com:%30", HostError::Port),
            ("admin.example.com:123456", HostError::Port),
            ("admin.example.com: 80", HostError::Port),
            ("admin%2eexample.com", HostError::Character),
            ("user@admin.example.com", HostError::Character),
            ("admin.example.com,evil", HostError::Character),
            ("admin example.com", HostError::Character),
            ("admin.example.com/x", HostError::Character),
            ("a..example.com", HostError::EmptyLabel),
            (".example.com", HostError::EmptyLabel),
            ("example.com..", HostError::EmptyLabel),
            ("[::1", HostError::IpLiteral),
            ("[v1.x]", HostError::IpLiteral),
            ("[fe80::1%25eth0]", HostError::IpLiteral),
            ("[::1]x", HostError::Port),
            ("[::1]:x", HostError::Port),
        ] {
            assert_eq!(normalize(raw), Err(why), "{raw:?}");
        }
        assert_eq!(normalize(&"a".repeat(254)), Err(HostError::TooLong));
        assert!(normalize(&"a".repeat(253)).is_ok());
    }
}
