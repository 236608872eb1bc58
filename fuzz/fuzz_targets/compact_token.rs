//! libFuzzer entry point; the target is [`jwtgate_fuzz::compact_token`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::compact_token(data));
