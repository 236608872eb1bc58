//! libFuzzer entry point; the target is [`jwtgate_fuzz::discovery`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::discovery(data));
