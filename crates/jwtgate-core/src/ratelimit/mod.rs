//! Rate limits decided with the check: every rule whose `match` holds is charged under a key
//! built from the request (claims, headers, client address, route, provider), all or nothing,
//! and the request is refused when any rule is exhausted. [`gcra`] is the arithmetic;
//! [`local`] keeps the counters in this process.

pub mod gcra;
pub mod local;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::claims;
use crate::config::rate_limits::{KeyPart, RateLimits, RateRule};
use crate::rejection::RateLimitExceeded;
use crate::request::{Headroom, Request};
use gcra::{Rates, Step};
use local::{Charge, LocalCounters};

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
    counters: Arc<LocalCounters>,
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
    /// The rules of `config`, counting in `counters`.
    pub fn new(config: &RateLimits, counters: Arc<LocalCounters>) -> Self {
        Self {
            rules: config.rules.iter().map(|r| (r.clone(), Rates::of(r))).collect(),
            counters,
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

    /// Charges every rule that matches `subject`, at `now`. Returns the verdict and, when limited,
    /// the refusing rule's position in the config.
    pub fn check(&self, subject: &Subject<'_>, now: Instant) -> (Verdict, Option<usize>) {
        let matching: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| r.matches(subject.route, &subject.req.method))
            .map(|(i, _)| i)
            .collect();
        if matching.is_empty() {
            return (Verdict::Unlimited, None);
        }
        let charges: Vec<Charge> = matching
            .iter()
            .map(|&i| {
                let (rule, rates) = &self.rules[i];
                Charge {
                    key: key(rule, subject),
                    rates: *rates,
                    overflow: format!("{}\u{1f}(overflow)", rule.name),
                }
            })
            .collect();
        let steps = self.counters.charge(&charges, self.counters.nanos(now));
        let mut tightest: Option<Headroom> = None;
        for (&i, step) in matching.iter().zip(&steps) {
            let rule = &self.rules[i].0;
            match *step {
                Step::Exceeds { retry_after } => {
                    return (
                        Verdict::Limited(RateLimitExceeded {
                            rule: rule.name.clone(),
                            limit: rule.limit,
                            window_secs: ceil_secs(rule.per),
                            retry_after_secs: ceil_secs(retry_after).max(1),
                        }),
                        Some(i),
                    );
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
        (tightest.map_or(Verdict::Unlimited, Verdict::Allowed), None)
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
