//! The load: `connections × streams` concurrent workers sending checks for the warmup, then for
//! the measured duration.
//!
//! - Max rate (closed loop): each worker sends its next check as soon as the last one is
//!   answered; latency runs from sending to the answer.
//! - Fixed rate (open loop): a pacer task releases send times at `rate` per second on a fixed
//!   schedule, whatever the answers do; an idle worker takes the next one. Latency runs from the
//!   *intended* send time, so a stall delays every request scheduled behind it and shows in the
//!   percentiles instead of silently lowering the rate (no coordinated omission). The generator's
//!   own lag (actual minus intended send time) is recorded separately: if it grows, the client
//!   could not keep the schedule and the latencies measure the client.
//!
//!   The pacer runs inside the client's runtime, not on a thread of its own: on a pinned client
//!   core, a pacer thread sleeping in `nanosleep` between sends costs a context switch per
//!   request and competes with the runtime for the core. Instead it goes to the back of the run
//!   queue (`futures_lite::future::yield_now`, which wakes the task and returns pending once, unlike tokio's, which waits for an idle worker; the runtime polls its I/O every 61 polls) until the next send time,
//!   and sleeps on the runtime's timer (1 ms granularity) only for gaps over [`SPIN_BELOW`]. So
//!   the client core shows busy during a fixed-rate run even when the load is light.
//!
//! A request counts when its send (or intended send) time is inside the measured window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};

use super::door::{Answer, DoorClient};
use super::tokens::TokenSource;

/// Longest latency the histograms resolve (60s); longer ones are recorded as 60s.
const MAX_MICROS: u64 = 60_000_000;

/// With a fixed rate, how long after the window the backlog may still be sent.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The pacer sleeps on the runtime timer until this long before a send time, then yields.
pub const SPIN_BELOW: Duration = Duration::from_millis(2);

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// gRPC: HTTP/2 connections.
    pub connections: usize,
    /// Concurrent requests per connection.
    pub streams: usize,
    /// Requests per second on a fixed schedule; `None` is as fast as answers come.
    pub rate: Option<f64>,
}

impl Load {
    /// Concurrent workers.
    pub fn concurrency(&self) -> usize {
        (self.connections * self.streams).max(1)
    }
}

/// When a run starts, when measuring starts (after the warmup) and when it ends.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Load starts.
    pub start: Instant,
    /// Warmup over: requests sent from now on count.
    pub measure_from: Instant,
    /// No request is sent from now on (fixed rate: none is scheduled).
    pub end: Instant,
}

impl Window {
    /// A window starting now.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now();
        Self {
            start,
            measure_from: start + warmup,
            end: start + warmup + duration,
        }
    }

    /// The measured duration.
    pub fn measured(&self) -> Duration {
        self.end - self.measure_from
    }
}

/// What the measured requests came to.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency in µs of every measured request (failed ones included).
    pub latency: Histogram<u64>,
    /// Fixed rate only: how late each request was sent, in µs.
    pub send_lag: Option<Histogram<u64>>,
    /// Measured requests.
    pub requests: u64,
    /// Denied although an allow was expected.
    pub unexpected_deny: u64,
    /// Allowed although a denial was expected.
    pub unexpected_allow: u64,
    /// No allow-or-deny answer, by kind.
    pub failed: BTreeMap<String, u64>,
    /// Fixed rate only: scheduled requests never sent because the backlog outlived the grace.
    pub unsent: u64,
}

/// An empty histogram for µs from 1 to [`MAX_MICROS`] at 3 significant figures.
pub fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).map_err(|e| format!("cannot make a histogram: {e}"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS)
}

impl Tally {
    /// An empty tally whose histograms are shaped like `template`.
    pub fn new(template: &Histogram<u64>, fixed_rate: bool) -> Self {
        Self {
            latency: Histogram::new_from(template),
            send_lag: fixed_rate.then(|| Histogram::new_from(template)),
            requests: 0,
            unexpected_deny: 0,
            unexpected_allow: 0,
            failed: BTreeMap::new(),
            unsent: 0,
        }
    }

    fn record(&mut self, latency: Duration, answer: Answer, expect_allow: Option<bool>) {
        self.requests += 1;
        self.latency.saturating_record(micros(latency));
        match answer {
            Answer::Allowed if expect_allow == Some(false) => self.unexpected_allow += 1,
            Answer::Denied if expect_allow == Some(true) => self.unexpected_deny += 1,
            Answer::Allowed | Answer::Denied => {}
            Answer::Failed(kind) => *self.failed.entry(kind).or_default() += 1,
        }
    }

    /// Adds `other` into this tally.
    pub fn merge(&mut self, other: Self) {
        let _ = self.latency.add(&other.latency);
        if let (Some(mine), Some(theirs)) = (&mut self.send_lag, &other.send_lag) {
            let _ = mine.add(theirs);
        }
        self.requests += other.requests;
        self.unexpected_deny += other.unexpected_deny;
        self.unexpected_allow += other.unexpected_allow;
        for (kind, n) in other.failed {
            *self.failed.entry(kind).or_default() += n;
        }
        self.unsent += other.unsent;
    }

    /// Every request that did not get the expected answer.
    pub fn errors(&self) -> u64 {
        self.unexpected_deny + self.unexpected_allow + self.failed.values().sum::<u64>() + self.unsent
    }
}

/// What every worker shares.
struct Shared {
    client: DoorClient,
    tokens: Arc<TokenSource>,
    expect_allow: Option<bool>,
    window: Window,
    ids: AtomicU64,
    template: Histogram<u64>,
}

impl Shared {
    async fn send(&self, worker: usize) -> Answer {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.client.check(worker, self.tokens.next(), id).await
    }
}

/// Drives `client` with `load` over `window` and tallies the measured requests. `expect_allow`
/// says which answer is correct (`None`: any answer is).
pub async fn drive(
    client: DoorClient,
    tokens: Arc<TokenSource>,
    expect_allow: Option<bool>,
    load: Load,
    window: Window,
) -> Result<Tally, String> {
    let template = histogram()?;
    let mut tally = Tally::new(&template, load.rate.is_some());
    let shared = Arc::new(Shared {
        client,
        tokens,
        expect_allow,
        window,
        ids: AtomicU64::new(0),
        template,
    });
    let mut tasks = Vec::with_capacity(load.concurrency());
    match load.rate {
        None => {
            for worker in 0..load.concurrency() {
                tasks.push(tokio::spawn(closed_loop(shared.clone(), worker)));
            }
        }
        Some(rate) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let rx = Arc::new(Mutex::new(rx));
            tokio::spawn(pace(tx, rate, window));
            for worker in 0..load.concurrency() {
                tasks.push(tokio::spawn(open_loop(shared.clone(), rx.clone(), worker)));
            }
        }
    }
    for task in tasks {
        if let Ok(t) = task.await {
            tally.merge(t);
        }
    }
    Ok(tally)
}

async fn closed_loop(shared: Arc<Shared>, worker: usize) -> Tally {
    let mut tally = Tally::new(&shared.template, false);
    loop {
        let begin = Instant::now();
        if begin >= shared.window.end {
            return tally;
        }
        let answer = shared.send(worker).await;
        if begin >= shared.window.measure_from {
            tally.record(begin.elapsed(), answer, shared.expect_allow);
        }
    }
}

async fn open_loop(
    shared: Arc<Shared>,
    schedule: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    worker: usize,
) -> Tally {
    let mut tally = Tally::new(&shared.template, true);
    loop {
        let next = schedule.lock().await.recv().await;
        let Some(intended) = next else { return tally };
        let begin = Instant::now();
        let measured = intended >= shared.window.measure_from;
        if begin > shared.window.end + DRAIN_GRACE {
            tally.unsent += u64::from(measured);
            continue;
        }
        let answer = shared.send(worker).await;
        if measured {
            tally.record(intended.elapsed(), answer, shared.expect_allow);
            if let Some(lag) = &mut tally.send_lag {
                lag.saturating_record(micros(begin.saturating_duration_since(intended)));
            }
        }
    }
}

/// Releases send times `1/rate` apart from `window.start` until `window.end`, each no earlier
/// than its time (late ones at once, so the schedule never slips).
async fn pace(tx: mpsc::UnboundedSender<Instant>, rate: f64, window: Window) {
    let mut i: u64 = 0;
    loop {
        let intended = window.start + Duration::from_secs_f64(i as f64 / rate);
        if intended >= window.end {
            return;
        }
        let now = Instant::now();
        if intended > now {
            let gap = intended - now;
            if gap > SPIN_BELOW {
                tokio::time::sleep(gap - SPIN_BELOW).await;
            } else {
                futures_lite::future::yield_now().await;
            }
            continue;
        }
        if tx.send(intended).is_err() {
            return;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_sorts_answers_by_expectation() {
        let template = histogram().unwrap();
        let mut t = Tally::new(&template, false);
        t.record(Duration::from_micros(100), Answer::Allowed, Some(true));
        t.record(Duration::from_micros(200), Answer::Denied, Some(true));
        t.record(
            Duration::from_micros(300),
            Answer::Failed("gRPC Unavailable".into()),
            Some(true),
        );
        t.record(Duration::from_micros(50), Answer::Denied, None);
        let mut other = Tally::new(&template, false);
        other.record(Duration::from_micros(400), Answer::Allowed, Some(false));
        t.merge(other);
        assert_eq!(t.requests, 5);
        assert_eq!((t.unexpected_deny, t.unexpected_allow), (1, 1));
        assert_eq!(t.failed["gRPC Unavailable"], 1);
        assert_eq!(t.errors(), 3);
        assert_eq!(t.latency.max(), 400);
    }

    #[tokio::test]
    async fn pacer_keeps_the_schedule() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let window = Window::starting_now(Duration::ZERO, Duration::from_millis(50));
        let pacer = tokio::spawn(pace(tx, 1_000.0, window));
        let mut times = Vec::new();
        while let Some(t) = rx.recv().await {
            assert!(Instant::now() >= t, "released before its time");
            times.push(t);
        }
        pacer.await.unwrap();
        assert_eq!(times.len(), 50);
        let step = (times[10] - times[0]).as_secs_f64();
        assert!((step - 0.010).abs() < 1e-6, "{step}");
        assert!(Instant::now() >= window.start + Duration::from_millis(49));
    }
}
