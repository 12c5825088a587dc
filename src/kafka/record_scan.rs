//! Record-level answers inside one stored batch, for ListOffsets by
//! timestamp: Kafka answers with the first *record* at or after the time
//! asked (and, for the max timestamp, the record that holds it), not with
//! the batch around it; a producer batch can hold thousands of records.
//!
//! The records are read as a stream (decompressed on the fly where the
//! batch is compressed), each record's length prefix used to skip its key,
//! value and headers: memory stays a few KiB whatever the batch expands
//! to, and a batch that expands past `records::MAX_DECOMPRESSED_BYTES` (a
//! compression bomb) is not followed further.
//!
//! Record layout (magic 2): `length varint | attributes i8 |
//! timestampDelta varlong | offsetDelta varint | key | value | headers`.

use std::io::{self, Read};

use corestream_shards::records::{byte, reader, varint, Header, RecordsError};

/// What to find in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The first record at `min_offset` or later whose timestamp is at or
    /// after `timestamp`.
    AtOrAfter { timestamp: i64, min_offset: i64 },
    /// The first record at `min_offset` or later whose timestamp is the
    /// batch's max timestamp (Kafka's `offsetOfMaxTimestamp`).
    Max { min_offset: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error("records: {0}")]
    Io(#[from] io::Error),
}

/// The (offset, timestamp) of the record `wanted` names in `batch` (one
/// whole, CRC-checked batch), or `None` when no record of it qualifies.
pub fn scan(batch: &[u8], wanted: Wanted) -> Result<Option<(i64, i64)>, ScanError> {
    let h = Header::parse(batch)?;
    let mut r = reader(batch, &h)?;
    for _ in 0..h.count.max(0) {
        let len = varint(&mut r)?;
        let len =
            u64::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative record length"))?;
        let mut rec = (&mut r).take(len);
        let _attributes = byte(&mut rec)?;
        let ts_delta = varint(&mut rec)?;
        let offset_delta = varint(&mut rec)?;
        io::copy(&mut rec, &mut io::sink())?;
        let offset = h.base_offset.wrapping_add(offset_delta);
        let timestamp = h.timestamp_of(ts_delta);
        let hit = match wanted {
            Wanted::AtOrAfter {
                timestamp: t,
                min_offset,
            } => offset >= min_offset && timestamp >= t,
            Wanted::Max { min_offset } => offset >= min_offset && timestamp == h.max_timestamp,
        };
        if hit {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH,
        NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    };

    fn batch(base: i64, timestamps: &[i64], compression: Compression, kind: TimestampType) -> Vec<u8> {
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, &ts)| Record {
                transactional: false,
                delete_horizon: false,
                control: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: kind,
                offset: base + i as i64,
                sequence: i as i32, // the encoder starts a new batch where offset - sequence changes
                timestamp: ts,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 300 + i])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodes");
        buf.to_vec()
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn finds_the_first_record_at_or_after_a_time_under_every_codec() {
        let times = [1_000, 5_000, 3_000, 7_000, 7_000, 2_000];
        for codec in CODECS {
            let b = batch(100, &times, codec, TimestampType::Creation);
            let at = |timestamp, min_offset| scan(&b, Wanted::AtOrAfter { timestamp, min_offset }).unwrap();
            assert_eq!(at(0, 0), Some((100, 1_000)), "{codec:?}");
            assert_eq!(at(2_500, 0), Some((101, 5_000)), "{codec:?}");
            assert_eq!(at(6_000, 0), Some((103, 7_000)), "{codec:?}");
            assert_eq!(at(7_001, 0), None, "{codec:?}");
            // Records below the log start (DeleteRecords inside a batch) are skipped.
            assert_eq!(at(2_500, 102), Some((102, 3_000)), "{codec:?}");
            assert_eq!(at(4_000, 102), Some((103, 7_000)), "{codec:?}");
            assert_eq!(at(1_500, 105), Some((105, 2_000)), "{codec:?}");
            assert_eq!(scan(&b, Wanted::Max { min_offset: 0 }).unwrap(), Some((103, 7_000)));
            assert_eq!(scan(&b, Wanted::Max { min_offset: 104 }).unwrap(), Some((104, 7_000)));
            assert_eq!(scan(&b, Wanted::Max { min_offset: 105 }).unwrap(), None);
        }
    }

    /// Compaction's rebuilt batches (`records::rebuild`) read back with
    /// kafka-protocol's decoder, under every codec: the records kept, at
    /// their offsets and times, in a batch whose range stays as it was.
    #[test]
    fn a_batch_rebuilt_around_some_records_reads_back_with_another_decoder() {
        use corestream_shards::records::{self as recs, Header};
        use kafka_protocol::records::RecordBatchDecoder;
        let times = [1_000, 5_000, 3_000, 7_000, 2_000];
        for codec in CODECS {
            let b = batch(100, &times, codec, TimestampType::Creation);
            let h = Header::parse(&b).unwrap();
            let plain = recs::decompress(&b, &h).unwrap();
            let all = recs::parse(&plain, h.count).unwrap();
            let kept: Vec<_> = all
                .iter()
                .filter(|r| r.offset_delta % 2 == 1)
                .map(|r| (*r, h.base_offset + r.offset_delta))
                .collect();
            let rebuilt = recs::rebuild(&h, 100, 104, &kept).unwrap();
            corestream_shards::batch::validate_stored(&rebuilt).unwrap();
            let mut buf = Bytes::from(rebuilt);
            let set = RecordBatchDecoder::decode_all(&mut buf).expect("decodes");
            let got: Vec<(i64, i64, Option<Bytes>, usize)> = set
                .iter()
                .flat_map(|s| s.records.iter())
                .map(|r| {
                    (
                        r.offset,
                        r.timestamp,
                        r.key.clone(),
                        r.value.as_ref().map_or(0, |v| v.len()),
                    )
                })
                .collect();
            let want = vec![
                (101, 5_000, Some(Bytes::from("k1")), 301),
                (103, 7_000, Some(Bytes::from("k3")), 303),
            ];
            assert_eq!(got, want, "{codec:?}");
        }
    }

    #[test]
    fn a_log_append_time_batch_gives_every_record_the_batch_time() {
        let b = batch(10, &[9_000, 9_000, 9_000], Compression::None, TimestampType::LogAppend);
        let found = scan(
            &b,
            Wanted::AtOrAfter {
                timestamp: 0,
                min_offset: 11,
            },
        )
        .unwrap();
        assert_eq!(found, Some((11, 9_000)));
    }

    #[test]
    fn damaged_records_are_an_error_not_a_panic() {
        let b = batch(0, &[1, 2, 3], Compression::Gzip, TimestampType::Creation);
        for cut in [0, 20, 61, 70, b.len() - 5] {
            let _ = scan(&b[..cut], Wanted::Max { min_offset: 0 });
        }
        let mut flipped = b.clone();
        for i in (61..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
        }
        let _ = scan(&flipped, Wanted::Max { min_offset: 0 });
        let mut codec = b;
        codec[22] |= 0x7; // compression 7 does not exist
        assert!(matches!(
            scan(&codec, Wanted::Max { min_offset: 0 }),
            Err(ScanError::Records(RecordsError::Codec(7)))
        ));
    }
}
