//! How long a revocation is kept, and where a subject cut-off falls: the rules the admin API
//! and the CLI apply when they record one. A revocation must outlive every token it refuses,
//! or the token is accepted again once the revocation is purged.

use std::time::Duration;

use crate::config::Provider;
use crate::verify::MAX_NUMERIC_DATE;

/// Until when a revocation of `p`'s tokens valid at `from` must be kept: `from` plus how long
/// such a token can live — its `max_lifetime`, else `subject_retention` (the longer of the
/// provider's in force and `retention_at_start`: tokens accepted before a reload shortened it may
/// still live) — plus skew. A provider whose tokens may never expire (`require_exp: false`
/// without `max_lifetime`): for good, the year 9999.
pub fn kept_until(p: &Provider, from: u64, retention_at_start: Duration) -> u64 {
    let life = match (p.max_lifetime, p.subject_retention) {
        (Some(max), _) => max,
        (None, Some(retention)) => retention.max(retention_at_start),
        (None, None) => return MAX_NUMERIC_DATE,
    };
    from.saturating_add(life.as_secs())
        .saturating_add(p.clock_skew.as_secs())
        .min(MAX_NUMERIC_DATE)
}

/// Until when the revocation of one token of `p` is kept: its `exp` (read from the verified
/// token, or given by the caller) plus skew — the token is accepted that long past `exp` — else
/// as [`kept_until`] from `now`.
pub fn token_kept_until(p: &Provider, exp: Option<u64>, now: u64, retention_at_start: Duration) -> u64 {
    match exp {
        Some(exp) => exp.saturating_add(p.clock_skew.as_secs()).min(MAX_NUMERIC_DATE),
        None => kept_until(p, now, retention_at_start),
    }
}

/// The cut-off of a subject revocation asked for `asked` (0: now): tokens issued before it are
/// refused. `None` when `asked` is in the future beyond `p`'s skew.
pub fn issued_before(p: &Provider, asked: u64, now: u64) -> Option<u64> {
    match asked {
        // `iat` has one-second resolution: "now" must also cover tokens issued earlier in this
        // very second (a session that logs in again gets a token from the next second).
        0 => Some(now + 1),
        t if t > now.saturating_add(p.clock_skew.as_secs()) => None,
        t => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(max_lifetime: Option<u64>, retention: Option<u64>) -> Provider {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "providers:\n  - { name: p, issuer: https://i/, jwks_uri: https://i/k }\n";
        let mut p = crate::config::Config::parse(yaml, "t", dir.path())
            .unwrap()
            .providers
            .remove(0);
        p.max_lifetime = max_lifetime.map(Duration::from_secs);
        p.subject_retention = retention.map(Duration::from_secs);
        p.clock_skew = Duration::from_secs(60);
        p
    }

    #[test]
    fn a_revocation_outlives_every_token_it_refuses() {
        let day = Duration::from_secs(86_400);
        assert_eq!(kept_until(&provider(Some(600), Some(86_400)), 1_000, day), 1_660);
        assert_eq!(
            kept_until(&provider(None, Some(3_600)), 1_000, day),
            1_000 + 86_400 + 60
        );
        assert_eq!(
            kept_until(&provider(None, Some(172_800)), 1_000, day),
            1_000 + 172_800 + 60
        );
        assert_eq!(kept_until(&provider(None, None), 1_000, day), MAX_NUMERIC_DATE);
        assert_eq!(
            kept_until(&provider(Some(600), None), u64::MAX - 1, day),
            MAX_NUMERIC_DATE
        );
        let p = provider(Some(600), None);
        assert_eq!(token_kept_until(&p, Some(5_000), 1_000, day), 5_060);
        assert_eq!(token_kept_until(&p, None, 1_000, day), 1_660);
        assert_eq!(
            token_kept_until(&p, Some(MAX_NUMERIC_DATE), 1_000, day),
            MAX_NUMERIC_DATE
        );
    }

    #[test]
    fn a_cut_off_is_now_plus_one_second_or_as_asked_never_in_the_future() {
        let p = provider(None, Some(3_600));
        assert_eq!(issued_before(&p, 0, 1_000), Some(1_001));
        assert_eq!(issued_before(&p, 900, 1_000), Some(900));
        assert_eq!(issued_before(&p, 1_060, 1_000), Some(1_060), "within skew");
        assert_eq!(issued_before(&p, 1_061, 1_000), None);
    }
}
