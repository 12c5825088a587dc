#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| corestream::fuzz::sasl_exchange(data));
