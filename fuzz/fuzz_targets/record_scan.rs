#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| corestream::fuzz::record_scan(data));
