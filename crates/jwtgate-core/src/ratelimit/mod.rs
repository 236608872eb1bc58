//! Rate limits decided with the check: every rule whose `match` holds is charged under a key
//! built from the request (claims, headers, client address, route, provider), all or nothing,
//! and the request is refused when any rule is exhausted. [`gcra`] is the arithmetic;
//! [`local`] keeps the counters in this process, [`redis`] in Redis for every replica.

pub mod gcra;
pub mod local;
pub mod redis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::claims;
use crate::config::rate_limits::{KeyPart, LimitStore, OnStoreError, RateLimits, RateRule};
use crate::rejection::RateLimitExceeded;
use crate::request::{Headroom, Request};
use gcra::{Rates, Step};
use local::{Charge, LocalCounters};
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

/// The value a key part takes when the request lacks it: a request never escapes a limit by
/// leaving a claim or header out; it is counted with every other request that lacks it.
const ABSENT: &str = "-";

impl RateLimiter {
    /// The rules of `config`, counting in Redis when the config says so and `redis` is given,
    /// else in `local` (a one-shot `jwtgate check` explains against fresh local counters).
    pub fn new(config: &RateLimits, local: Arc<LocalCounters>, redis: Option<Arc<RedisCounters>>) -> Self {
        let counters = match (&config.store, redis) {
            (LimitStore::Redis { .. }, Some(r)) => Counters::Redis(r),
            _ => Counters::Local(local),
        };
        Self {
            rules: config.rules.iter().map(|r| (r.clone(), Rates::of(r))).collect(),
            counters,
            on_store_error: config.on_store_error,
        }
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

/// A rule's counter key: its name, then each part length-prefixed (so no two requests with
/// different parts share a key), or `-` when the request lacks it.
fn key(rule: &RateRule, s: &Subject<'_>) -> String {
    let mut key = rule.name.clone();
    for part in &rule.by {
        let value: Option<String> = match part {
            KeyPart::Claim(path) => s
                .claims
                .and_then(|c| claims::claim_path(c, path))
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                }),
            KeyPart::Header(name) => s.req.header(name).map(str::to_owned),
            KeyPart::ClientIp => s.req.client_ip.map(|ip| ip.to_string()),
            KeyPart::Route => s.route.map(str::to_owned),
            KeyPart::Provider => s.provider.map(str::to_owned),
        };
        key.push('\u{1f}');
        match value {
            Some(v) => {
                key.push_str(&v.len().to_string());
                key.push(':');
                key.push_str(&v);
            }
            None => key.push_str(ABSENT),
        }
    }
    key
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
