//! libFuzzer entry point; the target is [`jwtgate_fuzz::config_yaml`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jwtgate_fuzz::config_yaml(data));
