//! The `local` store: counters in this process, in shards of a hash map, each a TAT. A check
//! locks the shards of its counters (in shard order, so two checks never wait on each other in
//! a circle), takes every step, and writes only if all fit: all or nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Instant;

use super::gcra::{self, Rates, Step};

const SHARDS: usize = 16;
/// Most counters kept; past it, new keys of a rule share the rule's overflow counter (one per
/// shard), so a flood of distinct keys is still limited, together.
pub const MAX_COUNTERS: usize = 1 << 20;

/// Counters of every rule; kept across config reloads.
#[derive(Debug)]
pub struct LocalCounters {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    tats: HashMap<String, u64>,
    /// Sweep idle counters when the shard grows to this.
    sweep_at: usize,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }
}

/// One counter a check charges.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The counter's key: the rule's name, then its key parts, each after a `U+001F`.
    pub key: String,
    /// The rule's rates.
    pub rates: Rates,
}

/// The overflow counter of `key`'s rule (its name is the key up to the first `U+001F`).
fn overflow_key(key: &str) -> String {
    let rule = key.split('\u{1f}').next().unwrap_or(key);
    format!("{rule}\u{1f}(overflow)")
}

impl LocalCounters {
    /// Nanoseconds on this store's clock at `at`.
    pub fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes one step per charge at `now`: all of them are written if every one fits, none
    /// otherwise. Returns each step, in order.
    pub fn charge(&self, charges: &[Charge], now: u64) -> Vec<Step> {
        let mut order: Vec<usize> = charges.iter().map(|c| self.shard_of(&c.key)).collect();
        let wanted = order.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<std::sync::MutexGuard<'_, Shard>> = order
            .iter()
            .map(|&i| self.shards[i].lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        // Position of shard `i` among the locked ones.
        let shard = |i: usize| order.binary_search(&i).unwrap_or(0);
        let total: usize = guards.iter().map(|g| g.tats.len()).sum();
        let full = total * SHARDS / guards.len().max(1) >= MAX_COUNTERS;
        let mut steps = Vec::with_capacity(charges.len());
        let mut keys: Vec<Cow<'_, str>> = Vec::with_capacity(charges.len());
        for (c, &s) in charges.iter().zip(&wanted) {
            let g = &guards[shard(s)];
            let key = if !full || g.tats.contains_key(&c.key) {
                Cow::Borrowed(c.key.as_str())
            } else {
                Cow::Owned(overflow_key(&c.key))
            };
            steps.push(gcra::step(c.rates, g.tats.get(key.as_ref()).copied(), now));
            keys.push(key);
        }
        if steps.iter().all(|s| matches!(s, Step::Fits { .. })) {
            for ((key, step), &s) in keys.into_iter().zip(&steps).zip(&wanted) {
                if let Step::Fits { tat, .. } = step {
                    let g = &mut guards[shard(s)];
                    // A counter seen before is updated in place: no allocation.
                    match g.tats.get_mut(key.as_ref()) {
                        Some(t) => *t = *tat,
                        None => {
                            g.tats.insert(key.into_owned(), *tat);
                        }
                    }
                    if g.tats.len() >= g.sweep_at {
                        g.tats.retain(|_, t| *t > now);
                        g.sweep_at = (g.tats.len() * 2).max(1024);
                    }
                }
            }
        }
        steps
    }

    /// Counters held now (idle ones may not have been swept yet).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).tats.len())
            .sum()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, emission: u64, burst: u64) -> Charge {
        Charge {
            key: key.into(),
            rates: Rates {
                emission,
                tolerance: emission * burst,
                increment: emission,
            },
        }
    }

    #[test]
    fn nothing_is_charged_when_one_rule_refuses() {
        let store = LocalCounters::default();
        let (wide, narrow) = (charge("wide", 10, 100), charge("narrow", 10, 1));
        let both = [wide.clone(), narrow.clone()];
        assert!(store.charge(&both, 0).iter().all(|s| matches!(s, Step::Fits { .. })));
        let steps = store.charge(&both, 0);
        assert!(matches!(steps[1], Step::Exceeds { .. }), "{steps:?}");
        // `wide` was not charged by the refused check: 98 more fit alone.
        let fits = (0..200)
            .filter(|_| matches!(store.charge(std::slice::from_ref(&wide), 0)[0], Step::Fits { .. }))
            .count();
        assert_eq!(fits, 99);
    }

    #[test]
    fn idle_counters_are_swept() {
        let store = LocalCounters::default();
        for i in 0..20_000 {
            store.charge(&[charge(&format!("k{i}"), 10, 1)], 0);
        }
        assert_eq!(store.len(), 20_000, "all live at 0");
        for i in 0..20_000 {
            store.charge(&[charge(&format!("later{i}"), 10, 1)], 1_000);
        }
        assert!(
            store.len() < 30_000,
            "the first 20,000 went idle and were swept: {}",
            store.len()
        );
    }
}
