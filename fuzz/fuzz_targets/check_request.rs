//! libFuzzer entry point; the target is [`jwtgate_fuzz::check_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::check_request(data));
