//! A bad `redis:` block (a URL that is not Redis, a CA file without TLS, unreadable or not PEM,
//! cluster nodes of another scheme, ...) is refused at start with file, field and reason. Redis
//! over TLS itself, with a private CA and an ACL user, against a real `redis-server --tls-port`:
//! `tests/external/redis_tls.rs`.
#![allow(clippy::unwrap_used)] // tests may panic

use crate::common;
use common::*;

#[test]
fn a_bad_redis_block_is_refused_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello").unwrap();
    let base = config_text(&jwks_provider(
        "corp",
        "https://idp.example/",
        "https://idp.example/jwks",
        "",
    ));
    let cases = [
        (
            "redis: { url: \"http://r:6379\" }",
            "redis.url: must start with redis:// or rediss:// (TLS)",
        ),
        (
            "redis: { url: \"redis://r:6379\", ca_file: ca.pem }",
            "redis.ca_file: goes with a rediss:// (TLS) url",
        ),
        (
            "redis: { url: \"rediss://r:6380\", ca_file: missing.pem }",
            "redis.ca_file: cannot read",
        ),
        (
            "redis: { url: \"rediss://r:6380\", ca_file: not-a-cert.pem }",
            "holds no PEM certificate",
        ),
        (
            "redis: { url: \"redis://r:6379\", cluster: true, nodes: [\"rediss://s:6380\"] }",
            "redis.nodes[0]: must use the same scheme",
        ),
        (
            "redis: { url: \"redis://r:6379\", cluster: true }\nrevocation: { store: redis, key_prefix: \"jg:\" }",
            "revocation.key_prefix: `jg:` needs a hash tag",
        ),
        (
            "redis: { url: \"redis://r:6379\", nodes: [\"redis://s:6379\"] }",
            "redis.nodes: goes with `cluster: true`",
        ),
        (
            "rate_limits: { store: redis }",
            "rate_limits.store: `redis` needs `redis.url`",
        ),
        (
            "redis: { url: \"redis://r:6379\", password_file: nope }",
            "redis.password_file.file: cannot read",
        ),
    ];
    let file = dir.path().join("jwtgate.yaml");
    for (block, expected) in cases {
        std::fs::write(&file, format!("{base}{block}\n")).unwrap();
        let stderr = refused(&["validate-config"], &file, &[]);
        assert!(stderr.contains(expected), "{block}: {stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    }
}
