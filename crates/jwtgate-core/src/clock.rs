//! The one clock: every read of the time goes through [`now`], so token checks, key ages and
//! revocation expiry agree on what "now" is. `clippy.toml` refuses `SystemTime::now` anywhere
//! else.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One reading of the clock: the wall clock for claims and stored times, the monotonic clock
/// for ages and intervals (which a wall-clock step must not bend).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Seconds since the Unix epoch (0 if the system clock is before it).
    pub unix: u64,
    /// The monotonic instant taken together with `unix`.
    pub instant: Instant,
}

/// Reads the clock.
#[allow(clippy::disallowed_methods)] // The one place the wall clock is read.
pub fn now() -> Now {
    let instant = Instant::now();
    Now { unix: unix(), instant }
}

/// Reads the wall clock alone: seconds since the Unix epoch (0 if the clock is before it), for
/// the many checks that need no monotonic instant (one clock read where [`now`] takes two).
#[allow(clippy::disallowed_methods)] // The one place the wall clock is read.
pub fn unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_after_2020_and_monotonic() {
        let (a, b) = (now(), now());
        assert!(a.unix > 1_577_836_800, "{}", a.unix);
        assert!(b.instant >= a.instant && b.unix >= a.unix);
        assert!(unix() >= b.unix);
    }
}
