//! The generic cell rate algorithm, as arithmetic on one number per counter: its theoretical
//! arrival time (TAT), in nanoseconds on a monotonic clock. A rule lets `burst` cells through at
//! once and refills one cell every `per / limit`. Both stores run exactly this.

use std::time::Duration;

use crate::config::rate_limits::RateRule;

/// A rule's rates in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Time one cell takes to refill: `per / limit`.
    pub emission: u64,
    /// How far the TAT may run ahead of now: `burst × emission`.
    pub tolerance: u64,
    /// Cells one request takes × `emission`.
    pub increment: u64,
}

impl Rates {
    /// The rates of `rule`.
    pub fn of(rule: &RateRule) -> Self {
        let per = u64::try_from(rule.per.as_nanos()).unwrap_or(u64::MAX);
        let emission = (per / rule.limit).max(1);
        Self {
            emission,
            tolerance: emission.saturating_mul(rule.burst),
            increment: emission.saturating_mul(rule.cost),
        }
    }
}

/// What one counter says about one request at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It fits: store `tat`; `remaining` cells are left, all are back after `reset`.
    Fits {
        /// The counter's new TAT.
        tat: u64,
        /// Whole cells still available after this request.
        remaining: u64,
        /// Until every cell is back.
        reset: Duration,
    },
    /// It does not fit; it would after `retry_after`.
    Exceeds {
        /// Until the request would fit.
        retry_after: Duration,
    },
}

/// One request against a counter whose TAT is `tat` (`None`: never seen, or long idle).
pub fn step(rates: Rates, tat: Option<u64>, now: u64) -> Step {
    let start = tat.map_or(now, |t| t.max(now));
    let next = start.saturating_add(rates.increment);
    let ahead = next - now;
    if ahead > rates.tolerance {
        return Step::Exceeds {
            retry_after: Duration::from_nanos(ahead - rates.tolerance),
        };
    }
    Step::Fits {
        tat: next,
        remaining: (rates.tolerance - ahead) / rates.emission,
        reset: Duration::from_nanos(ahead),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(limit: u64, per_ms: u64, burst: u64, cost: u64) -> Rates {
        Rates::of(&RateRule {
            name: "r".into(),
            by: vec![],
            limit,
            per: Duration::from_millis(per_ms),
            burst,
            cost,
            routes: vec![],
            methods: vec![],
        })
    }

    /// Runs `n` requests at `now`, returning how many fit and the last TAT.
    fn run(r: Rates, mut tat: Option<u64>, now: u64, n: u32) -> (u32, Option<u64>) {
        let mut fit = 0;
        for _ in 0..n {
            if let Step::Fits { tat: t, .. } = step(r, tat, now) {
                tat = Some(t);
                fit += 1;
            }
        }
        (fit, tat)
    }

    #[test]
    fn exactly_burst_fits_at_once_then_one_per_emission() {
        let r = rates(10, 1000, 5, 1); // one cell per 100 ms, 5 at once
        let (fit, tat) = run(r, None, 0, 20);
        assert_eq!(fit, 5);
        assert_eq!(run(r, tat, 99_000_000, 3).0, 0, "not yet refilled");
        assert_eq!(run(r, tat, 100_000_000, 3).0, 1, "one cell after 100 ms");
        assert_eq!(
            run(r, tat, 1_000_000_000, 20).0,
            5,
            "idle long enough: a full burst again"
        );
    }

    #[test]
    fn cost_takes_several_cells() {
        let r = rates(20, 1000, 20, 10);
        assert_eq!(run(r, None, 0, 5).0, 2, "burst 20, cost 10: two requests");
    }

    #[test]
    fn remaining_reset_and_retry_after_are_reported() {
        let r = rates(10, 1000, 5, 1);
        let Step::Fits { tat, remaining, reset } = step(r, None, 0) else {
            panic!("first request fits")
        };
        assert_eq!((remaining, reset), (4, Duration::from_millis(100)));
        let (_, tat) = run(r, Some(tat), 0, 4);
        assert_eq!(
            step(r, tat, 0),
            Step::Exceeds {
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            step(r, tat, 40_000_000),
            Step::Exceeds {
                retry_after: Duration::from_millis(60)
            }
        );
    }
}
