//! The soak's load: workers sending checks through the gRPC door at a fixed total rate, each
//! with a token whose right answer is known — a valid token from the issuer's current pool must
//! be allowed, a revoked one denied — and a tally of every answer that was not the right one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::door::check_request;

/// One check may take this long before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Every this many checks, a worker sends a revoked token (once there are any).
const REVOKED_EVERY: u64 = 10;
/// Failures described in the report (the rest are only counted).
const EXAMPLES: usize = 20;

/// The tokens the clients send: the issuer's current pool, and every token revoked so far.
#[derive(Default)]
pub struct Tokens {
    /// Valid tokens signed with the issuer's current key (`Bearer …`), replaced on rotation.
    pub valid: ArcSwap<Vec<String>>,
    /// Tokens whose revocation was acknowledged (`Bearer …`).
    pub revoked: ArcSwap<Vec<String>>,
}

impl Tokens {
    /// The `i`th token to send and whether it must be allowed: a revoked one when `revoked` is
    /// asked for and there is any, else a valid one.
    pub fn pick(&self, revoked: bool, i: usize) -> (String, bool) {
        let revoked_tokens = self.revoked.load();
        if revoked && !revoked_tokens.is_empty() {
            return (revoked_tokens[i % revoked_tokens.len()].clone(), false);
        }
        let valid = self.valid.load();
        (valid[i % valid.len()].clone(), true)
    }

    /// Adds an acknowledged revocation's token.
    pub fn revoked_now(&self, bearer: String) {
        self.revoked.rcu(|old| {
            let mut next = Vec::clone(old);
            next.push(bearer.clone());
            next
        });
    }
}

/// What every check of the soak came to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Checks answered or failed.
    pub checks: u64,
    /// Valid tokens allowed.
    pub allowed: u64,
    /// Revoked tokens denied (intended denials).
    pub revoked_denied: u64,
    /// Valid tokens denied, by `WWW-Authenticate` (failed checks).
    pub unintended_denials: BTreeMap<String, u64>,
    /// Checks without an answer: gRPC errors and timeouts, by kind (failed checks).
    pub errors: BTreeMap<String, u64>,
    /// Revoked tokens allowed.
    pub revoked_allowed: u64,
    /// The first failures, with the second of the soak they happened in.
    pub examples: Vec<String>,
}

impl Tally {
    /// Non-intended denials plus checks without an answer.
    pub fn failed(&self) -> u64 {
        self.unintended_denials.values().sum::<u64>() + self.errors.values().sum::<u64>()
    }

    fn example(&mut self, at: Duration, what: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(format!("t={:.1}s {what}", at.as_secs_f64()));
        }
    }

    /// Counts one answer to a check that should have been allowed (`expect_allow`) or denied.
    pub fn record(&mut self, at: Duration, expect_allow: bool, answer: Answer, via: &str) {
        self.checks += 1;
        match (expect_allow, answer) {
            (true, Answer::Allowed) => self.allowed += 1,
            (false, Answer::Denied(_)) => self.revoked_denied += 1,
            (true, Answer::Denied(why)) => {
                self.example(at, format!("{via}: valid token denied: {why}"));
                *self.unintended_denials.entry(why).or_default() += 1;
            }
            (false, Answer::Allowed) => {
                self.example(at, format!("{via}: revoked token allowed"));
                self.revoked_allowed += 1;
            }
            (_, Answer::Failed(why)) => {
                self.example(at, format!("{via}: no answer: {why}"));
                *self.errors.entry(why).or_default() += 1;
            }
        }
    }

    /// Adds `other` in.
    pub fn merge(&mut self, other: &Self) {
        self.checks += other.checks;
        self.allowed += other.allowed;
        self.revoked_denied += other.revoked_denied;
        self.revoked_allowed += other.revoked_allowed;
        for (k, v) in &other.unintended_denials {
            *self.unintended_denials.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for e in &other.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(e.clone());
            }
        }
    }
}

/// jwtgate's answer to one check.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `OK`.
    Allowed,
    /// A denial, with its `WWW-Authenticate` (or HTTP status).
    Denied(String),
    /// No answer: the gRPC error or the timeout.
    Failed(String),
}

/// A gRPC ext_authz client of one replica.
#[derive(Clone)]
pub struct Door {
    client: AuthorizationClient<Channel>,
}

impl Door {
    /// Connects to the gRPC door at `addr` (the channel reconnects by itself after errors).
    pub async fn connect(addr: std::net::SocketAddr) -> Result<Self, String> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        Ok(Self {
            client: AuthorizationClient::new(channel),
        })
    }

    /// One check of `GET /api/items` with this `Authorization`.
    pub async fn check(&self, authorization: &str, id: u64) -> Answer {
        let mut client = self.client.clone();
        let call = client.check(check_request(authorization.to_owned(), id));
        match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Err(_) => Answer::Failed(format!("no answer within {CHECK_TIMEOUT:?}")),
            Ok(Err(status)) => Answer::Failed(format!("gRPC {:?}: {}", status.code(), status.message())),
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if r.status.as_ref().is_none_or(|s| s.code == 0) {
                    return Answer::Allowed;
                }
                let why = match r.http_response {
                    Some(HttpResponse::DeniedResponse(d)) => d
                        .headers
                        .iter()
                        .filter_map(|h| h.header.as_ref())
                        .find(|h| h.key.eq_ignore_ascii_case("www-authenticate"))
                        .map(|h| h.value.clone())
                        .unwrap_or_else(|| format!("HTTP {}", d.status.map_or(0, |s| s.code))),
                    _ => "denied".into(),
                };
                Answer::Denied(why)
            }
        }
    }
}

/// Sends checks at `rate` per second in all from `workers` workers until `until`, then returns
/// their tally. Every [`REVOKED_EVERY`]th check of a worker carries a revoked token.
pub async fn drive(
    door: Door,
    tokens: Arc<Tokens>,
    rate: f64,
    workers: usize,
    start: Instant,
    until: Instant,
) -> Tally {
    let period = Duration::from_secs_f64(workers as f64 / rate);
    let ids = Arc::new(AtomicU64::new(0));
    let total = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (door, tokens, ids, total) = (door.clone(), tokens.clone(), ids.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            // Spread the workers' ticks over one period.
            let offset = period.mul_f64(worker as f64 / workers as f64);
            let mut tick = tokio::time::interval_at((Instant::now() + offset).into(), period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tick.tick().await;
                if Instant::now() >= until {
                    break;
                }
                n += 1;
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let (token, expect_allow) = tokens.pick(n.is_multiple_of(REVOKED_EVERY), id as usize);
                let answer = door.check(&token, id).await;
                tally.record(start.elapsed(), expect_allow, answer, "replica");
            }
            total.lock().unwrap_or_else(|p| p.into_inner()).merge(&tally);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    total.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wrong_answers_fail() {
        let mut tally = Tally::default();
        let at = Duration::from_secs(1);
        tally.record(at, true, Answer::Allowed, "r");
        tally.record(at, false, Answer::Denied("revoked".into()), "r");
        assert_eq!((tally.failed(), tally.revoked_allowed), (0, 0));
        tally.record(at, true, Answer::Denied("unknown signing key".into()), "r");
        tally.record(at, true, Answer::Failed("gRPC Unavailable".into()), "r");
        tally.record(at, false, Answer::Failed("timeout".into()), "r");
        tally.record(at, false, Answer::Allowed, "r");
        assert_eq!(tally.checks, 6);
        assert_eq!(tally.failed(), 3);
        assert_eq!(tally.revoked_allowed, 1);
        assert_eq!(tally.unintended_denials["unknown signing key"], 1);
        assert_eq!(tally.examples.len(), 4);
        assert!(tally.examples[0].starts_with("t=1.0s r: valid token denied"));
        let mut total = Tally::default();
        total.merge(&tally);
        total.merge(&tally);
        assert_eq!((total.checks, total.failed(), total.revoked_allowed), (12, 6, 2));
    }
}
