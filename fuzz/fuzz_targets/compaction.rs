#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| corestream_shards::fuzz::compaction(data));
