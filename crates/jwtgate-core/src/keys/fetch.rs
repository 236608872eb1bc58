//! Bounded HTTP fetches from issuers: a time limit on the whole exchange, a size limit on the
//! body, no redirects to another host, and `Cache-Control: max-age` read for the refresh timer.
//! Key-set fetches are counted by provider and outcome ([`KeyFetchMetrics`]; each key store
//! counts its own).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};
use reqwest::redirect;

use crate::metrics::{Families, ProviderOutcome};

/// Largest JWKS or discovery document read.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Why a document could not be fetched. Messages name the URL and never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No complete answer within `fetch_timeout`.
    #[error("no complete answer from {url} within {}", crate::config::duration::format(*.timeout))]
    Timeout {
        /// What was asked for.
        url: String,
        /// The bound.
        timeout: Duration,
    },
    /// The request failed (connection refused, TLS, protocol).
    #[error("GET {url}: {reason}")]
    Request {
        /// What was asked for.
        url: String,
        /// reqwest's words, without the URL they repeat.
        reason: String,
    },
    /// A redirect to another host, or too many redirects.
    #[error("GET {url}: redirect to another host or too many redirects refused")]
    Redirect {
        /// What was asked for.
        url: String,
    },
    /// A status other than 2xx.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// What was asked for.
        url: String,
        /// The status answered.
        status: reqwest::StatusCode,
    },
    /// A declared length over [`MAX_BODY_BYTES`].
    #[error("GET {url}: body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit")]
    DeclaredTooLarge {
        /// What was asked for.
        url: String,
        /// The `Content-Length` answered.
        length: u64,
    },
    /// A body that grew past [`MAX_BODY_BYTES`].
    #[error("GET {url}: body is over the {MAX_BODY_BYTES}-byte limit")]
    TooLarge {
        /// What was asked for.
        url: String,
    },
    /// An HTML page (a login page or a proxy's error page), not a JSON document.
    #[error("GET {url}: answered with HTML, not JSON")]
    Html {
        /// What was asked for.
        url: String,
    },
}

/// Why OIDC discovery did not yield a usable `jwks_uri`.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The discovery document could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// It is not JSON.
    #[error("discovery document is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// It names another issuer (OIDC Discovery §4.3).
    #[error("discovery document names a different issuer")]
    OtherIssuer,
    /// It names no issuer.
    #[error("discovery document has no `issuer`")]
    NoIssuer,
    /// It lacks the member asked for (`jwks_uri`, `introspection_endpoint`).
    #[error("discovery document has no `{0}`")]
    Missing(&'static str),
    /// That member is not an http(s) URL.
    #[error("discovery `{0}` is not an http(s) URL")]
    BadUrl(&'static str),
}

/// A fetched document.
#[derive(Debug)]
pub struct Fetched {
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
    /// `Cache-Control: max-age`, if the issuer sent one.
    pub max_age: Option<Duration>,
}

/// The HTTP client used for every key fetch. Fails only when the TLS roots cannot be loaded
/// (e.g. an image without CA certificates).
pub fn client() -> Result<reqwest::Client, ClientError> {
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
        .map_err(|e| ClientError(crate::errors::chain(&e)))
}

/// The key-fetching HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up HTTPS for key fetches: {0} (are the system's CA certificates installed?)")]
pub struct ClientError(String);

/// GETs `url`, bounded in time and size.
pub async fn get(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Fetched, FetchError> {
    tokio::time::timeout(timeout, get_unbounded_time(client, url))
        .await
        .map_err(|_| FetchError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
}

async fn get_unbounded_time(client: &reqwest::Client, url: &str) -> Result<Fetched, FetchError> {
    let failed = |e: reqwest::Error| FetchError::Request {
        url: url.to_owned(),
        reason: without_url(&e),
    };
    let span = tracing::Span::current();
    if let Some(host) = reqwest::Url::parse(url).ok().as_ref().and_then(|u| u.host_str()) {
        span.record("server.address", host);
    }
    let mut resp = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(failed)?;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_redirection() {
        return Err(FetchError::Redirect { url: url.to_owned() });
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }
    if let Some(length) = resp.content_length()
        && length > MAX_BODY_BYTES as u64
    {
        return Err(FetchError::DeclaredTooLarge {
            url: url.to_owned(),
            length,
        });
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
        return Err(FetchError::Html { url: url.to_owned() });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(FetchError::TooLarge { url: url.to_owned() });
        }
        body.extend_from_slice(&chunk);
    }
    span.record("http.response.body.size", body.len());
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

/// Fetches `{issuer}/.well-known/openid-configuration` and returns its URL `member`
/// (`jwks_uri`, `introspection_endpoint`), after checking that the document names the
/// configured issuer exactly (OIDC Discovery §4.3).
pub async fn discover(
    client: &reqwest::Client,
    issuer: &str,
    member: &'static str,
    timeout: Duration,
) -> Result<String, DiscoveryError> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let doc = get(client, &url, timeout).await?;
    discovered_url(&doc.body, issuer, member)
}

/// The URL `member` of an OIDC discovery document, which must name `issuer` exactly and give an
/// http(s) URL there.
pub fn discovered_url(body: &[u8], issuer: &str, member: &'static str) -> Result<String, DiscoveryError> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(DiscoveryError::NotJson)?;
    match doc.get("issuer").and_then(|v| v.as_str()) {
        Some(i) if i == issuer => {}
        Some(_) => return Err(DiscoveryError::OtherIssuer),
        None => return Err(DiscoveryError::NoIssuer),
    }
    let url = doc
        .get(member)
        .and_then(|v| v.as_str())
        .ok_or(DiscoveryError::Missing(member))?;
    // The URL as it will be fetched: `https:2/keys` parses (as `https://0.0.0.2/keys`), so
    // what is logged and fetched is the parsed form, never the text as written.
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u.into()),
        _ => Err(DiscoveryError::BadUrl(member)),
    }
}

/// `jwtgate_key_fetches_total`: key-set fetches by provider and outcome.
#[derive(Debug, Default)]
pub struct KeyFetchMetrics(Family<ProviderOutcome, Counter>);

impl Families for KeyFetchMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "jwtgate_key_fetches",
            "Key-set fetches, by provider and outcome",
            m.0.clone(),
        );
        m
    }
}

impl KeyFetchMetrics {
    /// The fetch counters of `provider`'s key store.
    pub fn counters(&self, provider: &str) -> FetchCounters {
        let counter = |outcome| {
            self.0
                .get_or_create(&ProviderOutcome {
                    provider: provider.to_owned(),
                    outcome,
                })
                .clone()
        };
        FetchCounters {
            success: counter("success"),
            failure: counter("failure"),
        }
    }
}

/// A key store's fetch counters.
#[derive(Debug, Clone)]
pub struct FetchCounters {
    /// Fetches that loaded a key set.
    pub success: Counter,
    /// Fetches that failed (the last good keys keep serving).
    pub failure: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_discovered_jwks_uri_is_the_url_that_will_be_fetched() {
        let doc = |uri: &str| format!(r#"{{"issuer":"https://idp","jwks_uri":"{uri}"}}"#);
        let got = |uri: &str| discovered_url(doc(uri).as_bytes(), "https://idp", "jwks_uri");
        assert_eq!(got("https://idp/keys").unwrap(), "https://idp/keys");
        // Found by the discovery fuzz target: written without `//`, it is another host.
        assert_eq!(got("https:2/idp/keys").unwrap(), "https://0.0.0.2/idp/keys");
        assert!(matches!(
            got("file:///etc/passwd"),
            Err(DiscoveryError::BadUrl("jwks_uri"))
        ));
        assert!(matches!(got("https://"), Err(DiscoveryError::BadUrl("jwks_uri"))));
        assert!(matches!(
            discovered_url(
                br#"{"issuer":"https://other","jwks_uri":"https://idp/k"}"#,
                "https://idp",
                "jwks_uri"
            ),
            Err(DiscoveryError::OtherIssuer)
        ));
        // Any URL member, e.g. the introspection endpoint of providers that introspect.
        let idp = br#"{"issuer":"https://idp","introspection_endpoint":"https://idp/introspect"}"#;
        assert_eq!(
            discovered_url(idp, "https://idp", "introspection_endpoint").unwrap(),
            "https://idp/introspect"
        );
        assert!(matches!(
            discovered_url(idp, "https://idp", "jwks_uri"),
            Err(DiscoveryError::Missing("jwks_uri"))
        ));
    }

    #[test]
    fn reads_max_age() {
        assert_eq!(max_age("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
