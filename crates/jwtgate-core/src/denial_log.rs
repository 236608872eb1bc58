//! A budget for denial log lines: at most `log.denials_per_second` a second, the rest counted and
//! reported in one summary line, so a flood of bad tokens neither floods the log pipeline nor
//! costs the server a formatted line and a `write` per request. Every denial is still counted in
//! the metrics; below the budget every denial has its line (findable by trace id).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Per-second budget shared by every check of one config.
#[derive(Debug)]
pub struct DenialLog {
    per_second: u32,
    start: Instant,
    /// Second (since `start`) in the high 32 bits, lines logged in it in the low 32.
    window: AtomicU64,
    /// Denials not logged since the last summary.
    skipped: AtomicU64,
}

/// What to do about one denial's line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Log it.
    Log,
    /// Log it, and first say how many earlier denials went unlogged.
    LogAfterSkipping(u64),
    /// Over budget: count it, do not log it.
    Skip,
}

impl DenialLog {
    /// A budget of `per_second` lines (0: no denial lines at all).
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            start: crate::clock::now().instant,
            window: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Takes one line from this second's budget: `true` means log the denial. The first line
    /// admitted after skipped ones is preceded by a summary saying how many were skipped.
    pub fn admit(&self) -> bool {
        match self.admit_at(self.start.elapsed().as_secs()) {
            Verdict::Log => true,
            Verdict::LogAfterSkipping(n) => {
                tracing::warn!(
                    skipped = n,
                    "{n} denials were not logged (over log.denials_per_second); the metrics count every one"
                );
                true
            }
            Verdict::Skip => false,
        }
    }

    fn admit_at(&self, second: u64) -> Verdict {
        let mut current = self.window.load(Ordering::Relaxed);
        let admitted = loop {
            let (window, used) = (current >> 32, current & u64::from(u32::MAX));
            let next = if window == second {
                if used >= u64::from(self.per_second) {
                    break false;
                }
                current + 1
            } else {
                if self.per_second == 0 {
                    break false;
                }
                (second << 32) | 1
            };
            match self
                .window
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break true,
                Err(seen) => current = seen,
            }
        };
        if !admitted {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Verdict::Skip;
        }
        match self.skipped.swap(0, Ordering::Relaxed) {
            0 => Verdict::Log,
            n => Verdict::LogAfterSkipping(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_admits_its_budget_then_skips_and_the_next_reports_the_skipped() {
        let log = DenialLog::new(2);
        assert_eq!(log.admit_at(5), Verdict::Log);
        assert_eq!(log.admit_at(5), Verdict::Log);
        assert_eq!(log.admit_at(5), Verdict::Skip);
        assert_eq!(log.admit_at(5), Verdict::Skip);
        assert_eq!(log.admit_at(6), Verdict::LogAfterSkipping(2));
        assert_eq!(log.admit_at(6), Verdict::Log);
        assert_eq!(log.admit_at(6), Verdict::Skip);
        assert_eq!(log.admit_at(9), Verdict::LogAfterSkipping(1));
    }

    #[test]
    fn a_zero_budget_logs_nothing() {
        let log = DenialLog::new(0);
        for second in [0, 0, 1, 2] {
            assert_eq!(log.admit_at(second), Verdict::Skip);
        }
    }

    #[test]
    fn threads_sharing_a_budget_log_exactly_the_budget_in_one_second() {
        let log = std::sync::Arc::new(DenialLog::new(100));
        let logged: u64 = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || (0..1000).filter(|_| log.admit_at(7) != Verdict::Skip).count() as u64)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(logged, 100);
        assert_eq!(log.skipped.load(Ordering::Relaxed), 3900);
    }
}
