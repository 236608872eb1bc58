//! Rate limits decided with the check: every rule whose `match` holds is charged under a key
//! built from the request (claims, headers, client address, route, provider), all or nothing,
//! and the request is refused when any rule is exhausted. [`gcra`] is the arithmetic;
//! [`local`] keeps the counters in this process, [`redis`] in Redis for every replica.

pub mod gcra;
pub mod local;
pub mod metrics;
pub mod redis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::claims;
use crate::config::rate_limits::{KeyPart, LimitStore, OnStoreError, RateLimits, RateRule};
use crate::metrics::Metrics;
use crate::rejection::RateLimitExceeded;
use crate::request::{Headroom, Request};
use gcra::{Rates, Step};
use local::{Charge, LocalCounters};
use metrics::{RateLimitMetrics, RuleCounters};
use redis::RedisCounters;

/// What identifies a request to the rules.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The request.
    pub req: &'a Request,
    /// The matched route's name.
    pub route: Option<&'a str>,
    /// The verifying provider's name (no token, or not verified: none).
    pub provider: Option<&'a str>,
    /// The verified token's claims (those any rule or requirement reads).
    pub claims: Option<&'a Map<String, Value>>,
}

/// The rules of one config, over counters that outlive it.
#[derive(Debug)]
pub struct RateLimiter {
    rules: Vec<(RateRule, Rates)>,
    counters: Counters,
    on_store_error: OnStoreError,
    /// Refusals by rule position, and store errors.
    metrics: RuleCounters,
}

#[derive(Debug)]
enum Counters {
    Local(Arc<LocalCounters>),
    Redis(Arc<RedisCounters>),
}

/// A check's outcome: the verdict, the refusing rule's position, and whether the shared store
/// failed (the verdict is then `on_store_error`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What the rules say.
    pub verdict: Verdict,
    /// The refusing rule's position in the config.
    pub refused_by: Option<usize>,
    /// The shared store did not answer in time.
    pub store_failed: bool,
}

/// What the rules say about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule counts this request.
    Unlimited,
    /// Every matching rule had room; the tightest one after this request.
    Allowed(Headroom),
    /// A rule is exhausted; nothing was charged.
    Limited(RateLimitExceeded),
}

/// What a key part hashes as when the request lacks it: a request never escapes a limit by
/// leaving a claim or header out; it is counted with every other request that lacks it. (A
/// present part hashes its 8-byte length first; this is 9 bytes, so the two never meet.)
const ABSENT: [u8; 9] = [0xff; 9];

/// What a header key part hashes as when the header came on more than one line (or its value
/// holds `,`, which is how the proxies join repeated headers).
const AMBIGUOUS: [u8; 10] = [0xfe; 10];

/// Most bytes of one key part hashed (its length is hashed whole): two values longer than this
/// share a counter only if they also agree in length and in their first 1 KiB.
pub const MAX_PART_BYTES: usize = 1024;

impl RateLimiter {
    /// The rules of `config`, counting in Redis when the config says so and `redis` is given,
    /// else in `local` (a one-shot `jwtgate check` explains against fresh local counters); their
    /// refusals counted in `metrics`.
    pub fn new(
        config: &RateLimits,
        local: Arc<LocalCounters>,
        redis: Option<Arc<RedisCounters>>,
        metrics: &Metrics,
    ) -> Self {
        let counters = match (&config.store, redis) {
            (LimitStore::Redis { .. }, Some(r)) => Counters::Redis(r),
            _ => Counters::Local(local),
        };
        Self {
            rules: config.rules.iter().map(|r| (r.clone(), Rates::of(r))).collect(),
            counters,
            on_store_error: config.on_store_error,
            metrics: metrics.families::<RateLimitMetrics>().counters(config.rules.iter()),
        }
    }

    /// The handles its refusals and store errors are counted with.
    pub fn metrics(&self) -> &RuleCounters {
        &self.metrics
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in config order.
    pub fn rules(&self) -> impl Iterator<Item = &RateRule> {
        self.rules.iter().map(|(r, _)| r)
    }

    /// Charges every rule that matches `subject` (local counters at `now`; Redis on its clock).
    pub async fn check(&self, subject: &Subject<'_>, now: Instant) -> Checked {
        let checked = |verdict, refused_by| Checked {
            verdict,
            refused_by,
            store_failed: false,
        };
        let matching: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| r.matches(subject.route, &subject.req.method))
            .map(|(i, _)| i)
            .collect();
        if matching.is_empty() {
            return checked(Verdict::Unlimited, None);
        }
        let charges: Vec<Charge> = matching
            .iter()
            .map(|&i| {
                let (rule, rates) = &self.rules[i];
                Charge {
                    key: key(rule, subject),
                    rates: *rates,
                }
            })
            .collect();
        let steps = match &self.counters {
            Counters::Local(c) => c.charge(&charges, c.nanos(now)),
            Counters::Redis(r) => match r.charge(&charges).await {
                Ok(steps) => steps,
                Err(e) => return self.store_failed(&matching, &e),
            },
        };
        let mut tightest: Option<Headroom> = None;
        for (&i, step) in matching.iter().zip(&steps) {
            let rule = &self.rules[i].0;
            match *step {
                Step::Exceeds { retry_after } => {
                    return checked(Verdict::Limited(exceeded(rule, retry_after)), Some(i));
                }
                Step::Fits { remaining, reset, .. } => {
                    if tightest.as_ref().is_none_or(|t| remaining < t.remaining) {
                        tightest = Some(Headroom {
                            rule: rule.name.clone(),
                            limit: rule.limit,
                            window_secs: ceil_secs(rule.per),
                            remaining,
                            reset_secs: ceil_secs(reset),
                        });
                    }
                }
            }
        }
        checked(tightest.map_or(Verdict::Unlimited, Verdict::Allowed), None)
    }

    /// `on_store_error` for a check the shared store could not answer: allow uncounted, or
    /// refuse as the first matching rule.
    fn store_failed(&self, matching: &[usize], e: &redis::StoreFailure) -> Checked {
        tracing::warn!("rate-limit store: {e}; on_store_error: {:?}", self.on_store_error);
        let verdict = match (self.on_store_error, matching.first()) {
            (OnStoreError::Deny, Some(&i)) => Verdict::Limited(exceeded(&self.rules[i].0, Duration::from_secs(1))),
            _ => Verdict::Unlimited,
        };
        Checked {
            refused_by: matches!(verdict, Verdict::Limited(_)).then(|| matching[0]),
            verdict,
            store_failed: true,
        }
    }
}

fn exceeded(rule: &RateRule, retry_after: Duration) -> RateLimitExceeded {
    RateLimitExceeded {
        rule: rule.name.clone(),
        limit: rule.limit,
        window_secs: ceil_secs(rule.per),
        retry_after_secs: ceil_secs(retry_after).max(1),
    }
}

/// The top-level claims the rules' keys read ([`key`]'s `KeyPart::Claim` parts): what the
/// verified-token cache must keep of a token for a cached check to be counted as the first was.
pub fn claims_read(limits: &RateLimits) -> impl Iterator<Item = &str> {
    limits.rules.iter().flat_map(|r| &r.by).filter_map(|part| match part {
        KeyPart::Claim(path) => Some(claims::top_level(path)),
        KeyPart::Header(_) | KeyPart::ClientIp | KeyPart::Route | KeyPart::Provider => None,
    })
}

/// A rule's counter key: its name, `U+001F`, then the hex of a 128-bit SHA-256 digest (aws-lc) of its
/// parts, each length-prefixed (so no two requests with different parts share a key) and at
/// most [`MAX_PART_BYTES`] of it hashed, or the absent marker when the request lacks it. A
/// counter therefore costs the same whatever the caller sends — a 32 KiB `x-api-key` as much as
/// a 16-byte one — and neither this process nor Redis keeps the values themselves (API keys,
/// addresses, subjects). Unkeyed, so that every replica sharing Redis arrives at the same key;
/// a collision would need two inputs with equal 128-bit SHA-256 prefixes.
fn key(rule: &RateRule, s: &Subject<'_>) -> String {
    use std::fmt::Write;
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in &rule.by {
        let value: Option<std::borrow::Cow<'_, str>> = match part {
            KeyPart::Claim(path) => s
                .claims
                .and_then(|c| claims::claim_path(c, path))
                .and_then(|v| match v {
                    Value::String(s) => Some(s.as_str().into()),
                    Value::Null => None,
                    other => Some(other.to_string().into()),
                }),
            KeyPart::Header(name) => s.req.header(name).map(Into::into),
            KeyPart::ClientIp => s.req.client_ip.map(|ip| ip.to_string().into()),
            KeyPart::Route => s.route.map(Into::into),
            KeyPart::Provider => s.provider.map(Into::into),
        };
        match value {
            // Sent on two lines (or holding the separator): which value the upstream believes is
            // its own choice, so such requests share one counter per rule and cannot escape it
            // by varying a second copy.
            Some(v) if matches!(part, KeyPart::Header(_)) && v.contains(',') => digest.update(&AMBIGUOUS),
            Some(v) => {
                let bytes = v.as_bytes();
                digest.update(&(bytes.len() as u64).to_be_bytes());
                digest.update(&bytes[..bytes.len().min(MAX_PART_BYTES)]);
            }
            None => digest.update(&ABSENT),
        }
    }
    let digest = digest.finish();
    let digest = digest.as_ref();
    let mut key = String::with_capacity(rule.name.len() + 1 + 32);
    key.push_str(&rule.name);
    key.push('\u{1f}');
    for b in &digest[..16] {
        let _ = write!(key, "{b:02x}");
    }
    key
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> RateRule {
        RateRule {
            name: "per-key".into(),
            by: vec![KeyPart::Header("x-api-key".into()), KeyPart::Route],
            limit: 10,
            per: Duration::from_secs(1),
            burst: 10,
            cost: 1,
            routes: vec![],
            methods: vec![],
        }
    }

    fn key_for(api_key: Option<&str>, route: Option<&str>) -> String {
        let mut req = Request::default();
        if let Some(v) = api_key {
            req.headers = [("x-api-key".to_owned(), v.to_owned())].into_iter().collect();
        }
        let subject = Subject {
            req: &req,
            route,
            provider: None,
            claims: None,
        };
        key(&rule(), &subject)
    }

    #[test]
    fn a_key_costs_the_same_whatever_the_caller_sends() {
        let short = key_for(Some("k"), Some("api"));
        let long = key_for(Some(&"k".repeat(32 * 1024)), Some("api"));
        assert_eq!(short.len(), "per-key".len() + 1 + 32);
        assert_eq!(long.len(), short.len());
        assert_ne!(short, long);
        assert!(!long.contains("kkkk"), "the value itself is not kept: {long}");
    }

    #[test]
    fn different_parts_never_share_a_key_and_absent_is_its_own_value() {
        let keys = [
            key_for(Some("ab"), Some("c")),
            key_for(Some("a"), Some("bc")),
            key_for(None, Some("c")),
            key_for(Some("-"), Some("c")),
            key_for(Some(""), Some("c")),
            key_for(None, None),
        ];
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert_eq!(key_for(None, Some("c")), key_for(None, Some("c")));
    }

    #[test]
    fn a_repeated_key_header_counts_with_every_other_repeated_one() {
        assert_eq!(key_for(Some("kk5, r1"), None), key_for(Some("r2,kk5"), None));
        assert_ne!(key_for(Some("kk5, r1"), None), key_for(Some("kk5"), None));
        assert_ne!(key_for(Some("kk5, r1"), None), key_for(None, None));
    }

    #[test]
    fn only_the_first_kib_of_a_part_is_hashed_beside_its_whole_length() {
        let base = "x".repeat(MAX_PART_BYTES);
        assert_eq!(
            key_for(Some(&format!("{base}AAAA")), None),
            key_for(Some(&format!("{base}BBBB")), None)
        );
        assert_ne!(
            key_for(Some(&format!("{base}AAAA")), None),
            key_for(Some(&format!("{base}AAAAA")), None)
        );
    }
}
