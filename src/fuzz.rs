//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and their
//! smoke test, for the decoders of outside bytes that live in the broker
//! (the storage ones are in `corestream_shards::fuzz`). None may panic,
//! whatever the bytes.

use bytes::Bytes;

use crate::group::records;
use crate::kafka::connection::{parse_frame, Parsed};

/// A Kafka request frame (without its length prefix) as a connection
/// reads it: API key and version checked, header and body decoded.
pub fn kafka_frame(data: &[u8]) {
    if let Ok(Parsed::Request { api, header, mut body }) = parse_frame(Bytes::copy_from_slice(data)) {
        let _ = crate::kafka::decode_request(api, header.request_api_version, &mut body);
    }
}

/// The metadata log (`metadata.log`) as a start replays it: the valid
/// prefix ends inside the file.
pub fn metadata_log(data: &[u8]) {
    let (_, end) = crate::controller::log::decode_all(data);
    assert!(end <= data.len(), "valid prefix ends past the file");
}

/// A `__consumer_offsets` record's key and value as a coordinator replays
/// them; what decodes encodes back to itself.
pub fn offsets_record(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Some(k) = records::decode_key(&bytes) {
        assert_eq!(
            records::encode_key(&k).ok().and_then(|b| records::decode_key(&b)),
            Some(k)
        );
    }
    if let Some(v) = records::decode_value(&bytes) {
        assert_eq!(
            records::encode_value(&v).ok().and_then(|b| records::decode_value(&b)),
            Some(v)
        );
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz targets' smoke test on stable Rust: random and mutated
    /// inputs from a seed (the cargo-fuzz run in scripts/fuzz goes further).
    #[test]
    fn decoders_of_outside_bytes_never_panic() {
        let seed: u64 = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed);
        println!("FUZZ_SEED={seed}");
        let mut x = seed | 1;
        let mut below = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        // A Metadata v1 request, an offsets key (group "g", topic "t", 0).
        let frames: [&[u8]; 2] = [
            b"\x00\x03\x00\x01\x00\x00\x00\x07\x00\x01c\x00\x00\x00\x01\x00\x01t",
            b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x00",
        ];
        for _ in 0..20_000 {
            let mut data = match below(3) {
                0 | 1 => frames[below(2) as usize].to_vec(),
                _ => {
                    let n = below(120);
                    (0..n).map(|_| below(256) as u8).collect()
                }
            };
            for _ in 0..below(5) {
                if !data.is_empty() {
                    let at = below(data.len() as u64) as usize;
                    data[at] = below(256) as u8;
                }
            }
            data.truncate(below(data.len() as u64 + 1) as usize);
            super::kafka_frame(&data);
            super::metadata_log(&data);
            super::offsets_record(&data);
        }
    }
}
