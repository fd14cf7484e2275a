#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bursar_fuzz::key_entry_form(data));
