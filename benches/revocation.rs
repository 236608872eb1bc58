//! Revocation lookups on the request path (memory only) with a 10,000-entry live set, and the
//! memory that set costs. `cargo bench --bench revocation`.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use jwtgate_core::revocation::{Revocation, RevocationSet, Target};

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn fill(set: &RevocationSet, n: usize) {
    for i in 0..n {
        set.insert(Revocation {
            target: Target::Token {
                issuer: "https://idp.example.com/".into(),
                jti: format!("{:032x}", i * 7919),
            },
            expires_at: u64::MAX,
            created_at: 1_700_000_000,
            reason: "logout".into(),
        });
    }
}

fn bench(c: &mut Criterion) {
    // Memory: RSS before and after 10,000 revocations (uuid-sized jtis, one issuer).
    let before = rss();
    let set = RevocationSet::default();
    fill(&set, 10_000);
    let after = rss();
    eprintln!(
        "memory: 10,000 revocations → RSS +{} KiB ({} bytes per entry)",
        (after - before) / 1024,
        (after - before) / 10_000
    );

    let hit = format!("{:032x}", 500 * 7919);
    let mut group = c.benchmark_group("revocation_check");
    group.bench_function("miss (10k entries)", |b| {
        b.iter(|| set.check("https://idp.example.com/", Some("not-revoked"), Some("alice"), Some(1)))
    });
    group.bench_function("hit (10k entries)", |b| {
        b.iter(|| set.check("https://idp.example.com/", Some(&hit), Some("alice"), Some(1)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
