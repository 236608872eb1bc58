//! Bounded HTTP fetches from issuers: a time limit on the whole exchange, a size limit on the
//! body, no redirects to another host, and `Cache-Control: max-age` read for the refresh timer.

use std::time::Duration;

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};
use reqwest::redirect;

/// Largest JWKS or discovery document read.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A fetched document.
#[derive(Debug)]
pub struct Fetched {
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
    /// `Cache-Control: max-age`, if the issuer sent one.
    pub max_age: Option<Duration>,
}

/// The HTTP client used for every key fetch.
pub fn client() -> reqwest::Client {
    let policy = redirect::Policy::custom(|attempt| {
        let same_host = attempt.previous().first().is_some_and(|first| {
            first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if attempt.previous().len() > 3 || !same_host {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(policy)
        .user_agent(concat!("jwtgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// GETs `url`, bounded in time and size.
pub async fn get(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Fetched, String> {
    tokio::time::timeout(timeout, get_unbounded_time(client, url))
        .await
        .map_err(|_| {
            format!(
                "no complete answer from {url} within {}",
                crate::config::duration::format(timeout)
            )
        })?
}

async fn get_unbounded_time(client: &reqwest::Client, url: &str) -> Result<Fetched, String> {
    let mut resp = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", without_url(&e)))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(format!(
            "GET {url}: redirect to another host or too many redirects refused"
        ));
    }
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    if let Some(len) = resp.content_length()
        && len > MAX_BODY_BYTES as u64
    {
        return Err(format!(
            "GET {url}: body of {len} bytes is over the {MAX_BODY_BYTES}-byte limit"
        ));
    }
    let max_age = resp
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let html = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if html {
        return Err(format!("GET {url}: answered with HTML, not JSON"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("GET {url}: body is over the {MAX_BODY_BYTES}-byte limit"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, max_age })
}

fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(&format!(" for url ({url})"), "");
    }
    msg
}

/// Reads `max-age=N` from a `Cache-Control` value; `no-store`/`no-cache` mean 0.
pub fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        lower
            .strip_prefix("max-age=")
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

/// Fetches `{issuer}/.well-known/openid-configuration` and returns its `jwks_uri`, after
/// checking that the document names the configured issuer exactly (OIDC Discovery §4.3).
pub async fn discover(client: &reqwest::Client, issuer: &str, timeout: Duration) -> Result<String, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let doc = get(client, &url, timeout).await?;
    let doc: serde_json::Value =
        serde_json::from_slice(&doc.body).map_err(|e| format!("discovery document is not JSON: {e}"))?;
    match doc.get("issuer").and_then(|v| v.as_str()) {
        Some(i) if i == issuer => {}
        Some(_) => return Err("discovery document names a different issuer".into()),
        None => return Err("discovery document has no `issuer`".into()),
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or("discovery document has no `jwks_uri`")?;
    match reqwest::Url::parse(jwks_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(jwks_uri.to_owned()),
        _ => Err("discovery `jwks_uri` is not an http(s) URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_max_age() {
        assert_eq!(max_age("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
