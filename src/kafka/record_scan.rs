//! Record-level answers inside one stored batch, for ListOffsets by
//! timestamp: Kafka answers with the first *record* at or after the time
//! asked (and, for the max timestamp, the record that holds it), not with
//! the batch around it; a producer batch can hold thousands of records.
//!
//! The records are read as a stream (decompressed on the fly where the
//! batch is compressed), each record's length prefix used to skip its key,
//! value and headers: memory stays a few KiB whatever the batch expands
//! to, and a batch that expands past `MAX_SCANNED_BYTES` (a compression
//! bomb) is not followed further.
//!
//! Record layout (magic 2): `length varint | attributes i8 |
//! timestampDelta varlong | offsetDelta varint | key | value | headers`.

use std::io::{self, Read};

use corestream_shards::batch::HEADER_BYTES;

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

/// Most decompressed bytes one scan reads.
const MAX_SCANNED_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("batch header truncated")]
    Truncated,
    #[error("unknown compression codec {0}")]
    Codec(i16),
    #[error("records: {0}")]
    Records(#[from] io::Error),
}

/// The (offset, timestamp) of the record `wanted` names in `batch` (one
/// whole, CRC-checked batch), or `None` when no record of it qualifies.
pub fn scan(batch: &[u8], wanted: Wanted) -> Result<Option<(i64, i64)>, ScanError> {
    let field = |at: usize, n: usize| batch.get(at..at + n).ok_or(ScanError::Truncated);
    let i64_at = |at| field(at, 8).map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default()));
    let base_offset = i64_at(0)?;
    let attributes = field(21, 2).map(|b| i16::from_be_bytes([b[0], b[1]]))?;
    let base_timestamp = i64_at(27)?;
    let max_timestamp = i64_at(35)?;
    let count = field(57, 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
    let log_append_time = attributes & 0x8 != 0;
    let compressed = &batch[HEADER_BYTES..];
    let records: Box<dyn Read + '_> = match attributes & 0x7 {
        0 => Box::new(compressed),
        1 => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        2 => Box::new(Xerial::new(compressed)),
        3 => Box::new(lz4::Decoder::new(compressed)?),
        4 => Box::new(zstd::stream::read::Decoder::new(compressed)?),
        other => return Err(ScanError::Codec(other)),
    };
    let mut r = records.take(MAX_SCANNED_BYTES);
    for _ in 0..count.max(0) {
        let len = varint(&mut r)?;
        let mut rec = (&mut r).take(u64::try_from(len).map_err(|_| bad("negative record length"))?);
        let _attributes = byte(&mut rec)?;
        let ts_delta = varint(&mut rec)?;
        let offset_delta = varint(&mut rec)?;
        io::copy(&mut rec, &mut io::sink())?;
        let offset = base_offset.wrapping_add(offset_delta);
        // A log-append-time batch's records carry the batch's time.
        let timestamp = if log_append_time {
            max_timestamp
        } else {
            base_timestamp.wrapping_add(ts_delta)
        };
        let hit = match wanted {
            Wanted::AtOrAfter {
                timestamp: t,
                min_offset,
            } => offset >= min_offset && timestamp >= t,
            Wanted::Max { min_offset } => offset >= min_offset && timestamp == max_timestamp,
        };
        if hit {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

fn byte(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

/// A zigzag varint (Kafka's varint and varlong alike), at most 10 bytes.
fn varint(r: &mut impl Read) -> io::Result<i64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = byte(r)?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    Err(bad("varint longer than 10 bytes"))
}

/// Kafka's snappy: the xerial framing (`\x82SNAPPY\0`, two i32 versions,
/// then blocks of `len u32 BE | raw snappy`), or one raw snappy block
/// without it, as the Java client reads it.
struct Xerial<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    at: usize,
    framed: bool,
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\0";

impl<'a> Xerial<'a> {
    fn new(data: &'a [u8]) -> Self {
        let framed = data.starts_with(XERIAL_MAGIC);
        Self {
            rest: if framed {
                data.get(16..).unwrap_or_default()
            } else {
                data
            },
            block: Vec::new(),
            at: 0,
            framed,
        }
    }

    /// Decompresses the next block; false at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let raw = if self.framed {
            let (len, tail) = self
                .rest
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("snappy block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            let raw = tail.get(..len).ok_or_else(|| bad("snappy block truncated"))?;
            self.rest = &tail[len..];
            raw
        } else {
            std::mem::take(&mut self.rest)
        };
        let n = snap::raw::decompress_len(raw).map_err(|e| bad(&e.to_string()))?;
        if n as u64 > MAX_SCANNED_BYTES {
            return Err(bad("snappy block too large"));
        }
        self.block.resize(n, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut self.block)
            .map_err(|e| bad(&e.to_string()))?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for Xerial<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
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
            Err(ScanError::Codec(7))
        ));
    }
}
