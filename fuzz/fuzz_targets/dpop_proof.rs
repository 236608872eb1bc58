//! libFuzzer entry point; the target is [`jwtgate_fuzz::dpop_proof`]. Built as a test (`cargo test
//! --all-targets`), it is an empty harness: the corpus replay is the crate's own test.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::dpop_proof(data));
