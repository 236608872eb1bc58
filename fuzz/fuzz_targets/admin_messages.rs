//! libFuzzer entry point; the target is [`jwtgate_fuzz::admin_messages`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::admin_messages(data));
