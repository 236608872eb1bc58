//! Checks several sections share: an RFC 9110 token (a header name, a cookie name, a method), a
//! header name jwtgate may read a token from or write identity to, an http(s) URL.

use super::{ConfigError, Validator};

/// Whether `s` is an RFC 9110 token (§5.6.2): what a header name, a cookie name or a method is.
pub(crate) fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `text` is an http(s) URL with a host; the reason when not.
pub(super) fn check_http_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(format!("`{text}` must be an http(s) URL with a host")),
    }
}

impl Validator<'_> {
    /// A header name, lower-cased; never one that frames or routes the request (`host`,
    /// `content-length`…).
    pub(super) fn header_name(&self, field: &str, name: &str) -> Result<String, ConfigError> {
        let lower = name.to_ascii_lowercase();
        if !valid_token(&lower) {
            return Err(self.err(field, format!("`{name}` is not a valid HTTP header name")));
        }
        if [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "upgrade",
        ]
        .contains(&lower.as_str())
        {
            return Err(self.err(field, format!("`{name}` cannot carry identity")));
        }
        Ok(lower)
    }
}
