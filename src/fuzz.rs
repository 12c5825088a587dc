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

/// SASL tokens from a client that has not authenticated: the first byte
/// picks the mechanism, the rest is up to four tokens split at 0xFF, fed to
/// one exchange against a broker that knows user "fuzz".
pub fn sasl_exchange(data: &[u8]) {
    use crate::security::scram::{ScramCredential, ScramMechanism};
    use crate::security::{Authenticator, Credentials, Mechanism};
    struct One;
    impl Credentials for One {
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            static CREDS: std::sync::OnceLock<Vec<ScramCredential>> = std::sync::OnceLock::new();
            let creds = CREDS.get_or_init(|| {
                ScramMechanism::ALL
                    .iter()
                    .map(|m| m.credential(b"fuzz-salt", &m.salted_password(b"pw", b"fuzz-salt", 4096), 4096))
                    .collect()
            });
            (user == "fuzz").then(|| creds[m as usize].clone())
        }
    }
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut auth = Authenticator::new(Mechanism::ALL[which as usize % Mechanism::ALL.len()]);
    let Ok(logins) = crate::security::PlainLogins::new() else {
        return;
    };
    for token in rest.split(|&b| b == 0xff).take(4) {
        if auth.step(token, &One, &logins).is_err() {
            break;
        }
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

/// A stored batch's records as ListOffsets by timestamp reads them
/// (decompressed as a stream, under every codec).
pub fn record_scan(data: &[u8]) {
    use crate::kafka::record_scan::{scan, Wanted};
    let at = |i: usize| {
        data.get(i..i + 8)
            .map_or(0, |b| i64::from_be_bytes(b.try_into().unwrap_or_default()))
    };
    let _ = scan(data, Wanted::Max { min_offset: at(0) });
    let _ = scan(
        data,
        Wanted::AtOrAfter {
            timestamp: at(27),
            min_offset: 0,
        },
    );
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
        // A Metadata v1 request, an offsets key (group "g", topic "t", 0),
        // a gzip batch of two records.
        let batch = gzip_batch();
        let frames: [&[u8]; 5] = [
            b"\x00\x03\x00\x01\x00\x00\x00\x07\x00\x01c\x00\x00\x00\x01\x00\x01t",
            b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x00",
            &batch,
            // SCRAM-SHA-512's first and final messages; PLAIN's token.
            b"\x01n,,n=fuzz,r=abc\xffc=biws,r=abc,p=AAAA",
            b"\x02\x00fuzz\x00pw",
        ];
        for _ in 0..20_000 {
            let mut data = match below(3) {
                0 | 1 => frames[below(frames.len() as u64) as usize].to_vec(),
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
            super::record_scan(&data);
            // PLAIN runs PBKDF2 (4096 rounds) when the user matches: not
            // every input, to keep the smoke test short.
            if below(10) == 0 {
                super::sasl_exchange(&data);
            }
        }
    }

    fn gzip_batch() -> Vec<u8> {
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let records: Vec<Record> = (0..2)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_000 + i,
                key: None,
                value: Some(bytes::Bytes::from_static(b"value")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::Gzip,
        };
        let _ = RecordBatchEncoder::encode(&mut buf, &records, &options);
        buf.to_vec()
    }
}
