//! What the criterion benchmarks share: the repository's fixture keys, the request they check
//! and the runtime they run it on.

/// A key file of `tests/fixtures/keys`, by name.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read the fixture key {}: {e}", path.display()))
}

/// `GET /api/orders?page=2` on `shop.example.com` with a few ordinary headers and `token` as
/// its bearer token (for the benchmarks that run `Gate::decide`; `verify` does not).
#[allow(dead_code)]
pub fn request(token: &str) -> jwtgate_core::request::Request {
    let mut r = jwtgate_core::request::Request {
        method: "GET".into(),
        path: "/api/orders?page=2".into(),
        host: "shop.example.com".into(),
        ..Default::default()
    };
    for (k, v) in [
        ("user-agent", "bench/1.0"),
        ("accept", "*/*"),
        ("x-request-id", "bench-1"),
    ] {
        r.headers.insert(k.into(), v.into());
    }
    r.headers.insert("authorization".into(), format!("Bearer {token}"));
    r
}

/// A current-thread tokio runtime with I/O and timers, for `to_async` and servers on a thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
