//! What the criterion benchmarks share: the repository's fixture keys.

/// A key file of `tests/fixtures/keys`, by name.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read the fixture key {}: {e}", path.display()))
}
