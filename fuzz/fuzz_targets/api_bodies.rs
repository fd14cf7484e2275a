#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bursar_fuzz::api_bodies(data));
