//! `rate_limits:`, rules with generic-cell-rate semantics, each counting the requests it
//! matches under a key built from the request: its schema, its validated form and its validator.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_text;
use super::redis::RedisConnection;
use super::routes::Route;
use super::{ConfigError, Validator};

/// `rate_limits:`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// `local` (default) | `redis`.
    pub store: Option<String>,
    /// `allow` (default) | `deny`: when the shared store cannot answer in time.
    pub on_store_error: Option<String>,
    /// How long a check waits for the shared store (default 20ms).
    #[serde(default, deserialize_with = "serde_text::option")]
    pub store_timeout: Option<Duration>,
    /// Whether allowed requests get `RateLimit`/`RateLimit-Policy` (default false).
    pub headers_on_allow: Option<bool>,
    /// The rules, every matching one charged.
    #[serde(default)]
    pub rules: Vec<RawRateRule>,
}

/// One rate-limit rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateRule {
    /// `[a-z0-9_-]+`, unique.
    pub name: String,
    /// Counter key parts; empty: one global counter.
    #[serde(default)]
    pub by: Vec<String>,
    /// Requests per `per`.
    pub limit: u64,
    /// The window.
    #[serde(deserialize_with = "serde_text::required")]
    pub per: Duration,
    /// Requests allowed at once (default `limit`).
    pub burst: Option<u64>,
    /// Cells one request takes (default 1).
    pub cost: Option<u64>,
    /// Which requests the rule counts (default every request).
    #[serde(rename = "match", default)]
    pub matches: RawRateMatch,
}

/// A rule's `match:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateMatch {
    /// Route names.
    #[serde(default)]
    pub routes: Vec<String>,
    /// HTTP methods.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// `rate_limits:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Where the counters live.
    pub store: LimitStore,
    /// What a check gets when the shared store cannot answer within `store_timeout`.
    pub on_store_error: OnStoreError,
    /// How long a check waits for the shared store.
    pub store_timeout: Duration,
    /// Whether an allowed request's answer carries `RateLimit`/`RateLimit-Policy` of its
    /// tightest rule.
    pub headers_on_allow: bool,
    /// Every rule; a request is charged by each one that matches it.
    pub rules: Vec<RateRule>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            store: LimitStore::Local,
            on_store_error: OnStoreError::Allow,
            store_timeout: Duration::from_millis(20),
            headers_on_allow: false,
            rules: Vec::new(),
        }
    }
}

/// Where rate-limit counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitStore {
    /// In this process: each replica limits on its own.
    Local,
    /// In Redis (the `redis:` block): every replica shares the counters.
    Redis {
        /// The connection.
        connection: RedisConnection,
    },
}

/// The answer when the shared store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Let the request through (uncounted).
    Allow,
    /// Refuse it as limited.
    Deny,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRule {
    /// `[a-z0-9_-]+`; in headers, metrics and logs.
    pub name: String,
    /// The counter key's parts, in order; empty: one counter for every request matched.
    pub by: Vec<KeyPart>,
    /// Requests per `per` (the sustained rate).
    pub limit: u64,
    /// The window `limit` is counted over.
    pub per: Duration,
    /// Requests allowed at once.
    pub burst: u64,
    /// Cells one request takes.
    pub cost: u64,
    /// Route names the rule counts; empty: every route.
    pub routes: Vec<String>,
    /// Upper-case methods the rule counts; empty: every method.
    pub methods: Vec<String>,
}

impl RateRule {
    /// Whether a request on `route` with `method` is counted by this rule.
    pub fn matches(&self, route: Option<&str>, method: &str) -> bool {
        (self.routes.is_empty() || route.is_some_and(|r| self.routes.iter().any(|x| x == r)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| super::routes::method_holds(m, method)))
    }
}

/// One part of a counter key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// A claim of the verified token, by dot path.
    Claim(String),
    /// A request header (lower-case name).
    Header(String),
    /// The client's address.
    ClientIp,
    /// The matched route's name.
    Route,
    /// The verifying provider's name.
    Provider,
}

impl KeyPart {
    /// As written in the config, e.g. `claim:sub`.
    pub fn describe(&self) -> String {
        match self {
            Self::Claim(p) => format!("claim:{p}"),
            Self::Header(h) => format!("header:{h}"),
            Self::ClientIp => "client_ip".into(),
            Self::Route => "route".into(),
            Self::Provider => "provider".into(),
        }
    }
}

impl Validator<'_> {
    /// `rate_limits`; rules may name only routes in `routes`.
    pub(super) fn rate_limits(
        &self,
        raw: RawRateLimits,
        routes: &[Route],
        redis: Option<&RedisConnection>,
    ) -> Result<RateLimits, ConfigError> {
        let f = "rate_limits";
        let store = match raw.store.as_deref().unwrap_or("local") {
            "local" => LimitStore::Local,
            "redis" => LimitStore::Redis {
                connection: redis
                    .ok_or_else(|| {
                        self.err(
                            format!("{f}.store"),
                            "`redis` needs `redis.url` (or a `revocation.url` with `store: redis`)",
                        )
                    })?
                    .clone(),
            },
            other => return Err(self.err(format!("{f}.store"), format!("`{other}` is not one of local, redis"))),
        };
        let on_store_error = match raw.on_store_error.as_deref().unwrap_or("allow") {
            "allow" => OnStoreError::Allow,
            "deny" => OnStoreError::Deny,
            other => {
                return Err(self.err(
                    format!("{f}.on_store_error"),
                    format!("`{other}` is not one of allow, deny"),
                ));
            }
        };
        let store_timeout = raw.store_timeout.unwrap_or(Duration::from_millis(20));
        if store_timeout.is_zero() || store_timeout > Duration::from_secs(1) {
            return Err(self.err(format!("{f}.store_timeout"), "must be more than 0s and at most 1s"));
        }
        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            let field = format!("{f}.rules[{i}]");
            let rule = self.rate_rule(&field, r, routes)?;
            if !names.insert(rule.name.clone()) {
                return Err(self.err(format!("{field}.name"), format!("`{}` is used twice", rule.name)));
            }
            rules.push(rule);
        }
        Ok(RateLimits {
            store,
            on_store_error,
            store_timeout,
            headers_on_allow: raw.headers_on_allow.unwrap_or(false),
            rules,
        })
    }

    fn rate_rule(&self, field: &str, r: RawRateRule, routes: &[Route]) -> Result<RateRule, ConfigError> {
        let name_ok = |n: &str| {
            !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        };
        if !name_ok(&r.name) {
            return Err(self.err(
                format!("{field}.name"),
                format!("`{}` must be 1 to 64 of a-z, 0-9, _ and -", r.name),
            ));
        }
        let mut by = Vec::with_capacity(r.by.len());
        for (j, part) in r.by.iter().enumerate() {
            by.push(self.key_part(&format!("{field}.by[{j}]"), part)?);
        }
        if r.limit == 0 || r.limit > 1_000_000_000 {
            return Err(self.err(format!("{field}.limit"), "must be between 1 and 1000000000"));
        }
        if r.per < Duration::from_millis(1) || r.per > Duration::from_secs(366 * 86_400) {
            return Err(self.err(format!("{field}.per"), "must be between 1ms and 366 days"));
        }
        let burst = r.burst.unwrap_or(r.limit);
        if burst == 0 || burst > 1_000_000_000 {
            return Err(self.err(format!("{field}.burst"), "must be between 1 and 1000000000"));
        }
        let cost = r.cost.unwrap_or(1);
        if cost == 0 || cost > burst {
            return Err(self.err(
                format!("{field}.cost"),
                format!("must be between 1 and the rule's burst ({burst}): a larger cost could never pass"),
            ));
        }
        for (j, route) in r.matches.routes.iter().enumerate() {
            if !routes.iter().any(|x| &x.name == route) {
                return Err(self.err(format!("{field}.match.routes[{j}]"), format!("no route `{route}`")));
            }
        }
        let mut methods = Vec::with_capacity(r.matches.methods.len());
        for (j, m) in r.matches.methods.iter().enumerate() {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(self.err(
                    format!("{field}.match.methods[{j}]"),
                    format!("`{m}` is not an HTTP method"),
                ));
            }
            methods.push(m.to_ascii_uppercase());
        }
        Ok(RateRule {
            name: r.name,
            by,
            limit: r.limit,
            per: r.per,
            burst,
            cost,
            routes: r.matches.routes,
            methods,
        })
    }

    fn key_part(&self, field: &str, part: &str) -> Result<KeyPart, ConfigError> {
        let bad = |why: &str| self.err(field, format!("`{part}` {why}"));
        match part.split_once(':') {
            Some(("claim", path)) => {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(bad("needs a claim path such as claim:sub or claim:org.id"));
                }
                Ok(KeyPart::Claim(path.to_owned()))
            }
            Some(("header", name)) => {
                if !super::valid_token(name) {
                    return Err(bad("needs a header name such as header:x-api-key"));
                }
                Ok(KeyPart::Header(name.to_ascii_lowercase()))
            }
            None if part == "client_ip" => Ok(KeyPart::ClientIp),
            None if part == "route" => Ok(KeyPart::Route),
            None if part == "provider" => Ok(KeyPart::Provider),
            _ => Err(bad(
                "is not a key part: claim:<path>, header:<name>, client_ip, route or provider",
            )),
        }
    }
}
