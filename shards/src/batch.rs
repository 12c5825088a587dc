//! Kafka RecordBatch (magic 2) header: validation on produce, and the
//! baseOffset rewrite that is the only change the broker makes to a batch.
//!
//! Layout (big endian), from the Kafka protocol guide:
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
//!  crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
//!  maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
//!  recordCount i32 | records...`
//! The CRC (crc32c) covers everything from `attributes` to the end, so the
//! broker may rewrite `baseOffset` without recomputing it.

use thiserror::Error;

pub const HEADER_BYTES: usize = 61;
const LENGTH_FIELD_END: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch is truncated or its length field is inconsistent")]
    Truncated,
    #[error("record batch magic {0} is not supported (only magic 2)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch")]
    CrcMismatch,
    #[error("record batch has {count} records but lastOffsetDelta {last_delta}")]
    BadRecordCount { count: i32, last_delta: i32 },
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
}

/// What the broker needs to know about one validated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub bytes: usize,
    pub record_count: u32,
    pub base_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Total length of the batch that starts at `b`, from its length field.
pub fn batch_len(b: &[u8]) -> Result<usize, BatchError> {
    if b.len() < LENGTH_FIELD_END {
        return Err(BatchError::Truncated);
    }
    let body = be_i32(b, 8);
    if body < (HEADER_BYTES - LENGTH_FIELD_END) as i32 {
        return Err(BatchError::Truncated);
    }
    Ok(LENGTH_FIELD_END + body as usize)
}

/// Validates one complete batch (exactly `b`) as a producer sent it.
pub fn validate(b: &[u8], max_bytes: usize) -> Result<BatchInfo, BatchError> {
    check(b, max_bytes, true)
}

/// Validates one complete stored batch: as `validate`, but compaction may
/// have removed records, so a batch holds at most (not exactly) as many
/// records as its offset range, and maybe none.
pub fn validate_stored(b: &[u8]) -> Result<BatchInfo, BatchError> {
    check(b, usize::MAX, false)
}

fn check(b: &[u8], max_bytes: usize, as_produced: bool) -> Result<BatchInfo, BatchError> {
    let len = batch_len(b)?;
    if len != b.len() {
        return Err(BatchError::Truncated);
    }
    let magic = b[MAGIC_AT] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    if len > max_bytes {
        return Err(BatchError::TooLarge {
            size: len,
            max: max_bytes,
        });
    }
    let crc_stored = u32::from_be_bytes(b[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&b[ATTRIBUTES_AT..]) != crc_stored {
        return Err(BatchError::CrcMismatch);
    }
    let count = be_i32(b, RECORD_COUNT_AT);
    let last_delta = be_i32(b, LAST_OFFSET_DELTA_AT);
    let consistent = if as_produced {
        count > 0 && last_delta == count - 1
    } else {
        count >= 0 && last_delta >= 0 && count <= last_delta.saturating_add(1)
    };
    if !consistent {
        return Err(BatchError::BadRecordCount { count, last_delta });
    }
    Ok(BatchInfo {
        bytes: len,
        record_count: count as u32,
        base_timestamp_ms: be_i64(b, BASE_TIMESTAMP_AT),
        max_timestamp_ms: be_i64(b, MAX_TIMESTAMP_AT),
    })
}

/// Splits a produce request's `records` field into its batches, validating
/// each. A partition's data may hold several concatenated batches.
pub fn split_batches(records: &[u8], max_bytes: usize) -> Result<Vec<(usize, BatchInfo)>, BatchError> {
    split(records, |b| validate(b, max_bytes))
}

/// Splits stored batches (a read, a pull reply), validating each as stored.
pub fn split_stored(records: &[u8]) -> Result<Vec<(usize, BatchInfo)>, BatchError> {
    split(records, validate_stored)
}

fn split(
    records: &[u8],
    validate: impl Fn(&[u8]) -> Result<BatchInfo, BatchError>,
) -> Result<Vec<(usize, BatchInfo)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let len = batch_len(&records[at..])?;
        let end = at.checked_add(len).ok_or(BatchError::Truncated)?;
        if end > records.len() {
            return Err(BatchError::Truncated);
        }
        out.push((at, validate(&records[at..end])?));
        at = end;
    }
    if out.is_empty() {
        return Err(BatchError::Truncated);
    }
    Ok(out)
}

/// Header fields read back from a stored batch (the index keeps them).
pub fn last_offset_delta(b: &[u8]) -> u32 {
    be_i32(b, LAST_OFFSET_DELTA_AT) as u32
}

pub fn max_timestamp(b: &[u8]) -> i64 {
    be_i64(b, MAX_TIMESTAMP_AT)
}

/// Idempotent producer fields: `(producer id, epoch, base sequence)`;
/// producer id -1 means a plain producer.
pub fn producer(b: &[u8]) -> (i64, i16, i32) {
    (
        be_i64(b, PRODUCER_ID_AT),
        i16::from_be_bytes(b[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].try_into().expect("2 bytes")),
        be_i32(b, BASE_SEQUENCE_AT),
    )
}

/// The timestamp type bit of `attributes`: set, the batch's records all
/// take its largest timestamp, the broker's clock when it took the batch.
const LOG_APPEND_TIME: u8 = 0x08;

/// Whether the batch says its timestamps are the broker's (LogAppendTime).
pub fn log_append_time(b: &[u8]) -> bool {
    b[ATTRIBUTES_AT + 1] & LOG_APPEND_TIME != 0
}

/// Stamps a validated batch for a topic of `message.timestamp.type=
/// LogAppendTime`: its timestamp type and its largest timestamp (the one
/// every record then takes; the records' own stay, as Kafka leaves them),
/// and its CRC, which covers both, computed again.
pub fn stamp_log_append_time(b: &mut [u8], now_ms: i64) {
    b[ATTRIBUTES_AT + 1] |= LOG_APPEND_TIME;
    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// What the broker writes into a batch: the leader's offset for it (the
/// CRC does not cover it).
pub fn set_base_offset(b: &mut [u8], base: i64) {
    b[0..8].copy_from_slice(&base.to_be_bytes());
}

pub fn base_offset(b: &[u8]) -> i64 {
    be_i64(b, 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid batch with `count` empty-bodied records' worth of
    /// header; the record bytes are opaque to the broker.
    pub fn make_batch(count: i32, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_BYTES];
        b.extend_from_slice(payload);
        let body = (b.len() - LENGTH_FIELD_END) as i32;
        b[8..12].copy_from_slice(&body.to_be_bytes());
        b[MAGIC_AT] = 2;
        b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(count - 1).to_be_bytes());
        b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&1000i64.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&2000i64.to_be_bytes());
        b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_and_offset_rewrite_keeps_crc() {
        let mut b = make_batch(3, b"abc");
        let info = validate(&b, 1 << 20).unwrap();
        assert_eq!(info.record_count, 3);
        assert_eq!(info.max_timestamp_ms, 2000);
        set_base_offset(&mut b, 42);
        assert_eq!(base_offset(&b), 42);
        assert!(validate(&b, 1 << 20).is_ok());
    }

    #[test]
    fn a_log_append_time_stamp_keeps_the_batch_valid() {
        let mut b = make_batch(3, b"abc");
        assert!(!log_append_time(&b));
        stamp_log_append_time(&mut b, 1_700_000_000_123);
        let info = validate(&b, 1 << 20).unwrap();
        assert!(log_append_time(&b));
        assert_eq!(
            (info.base_timestamp_ms, info.max_timestamp_ms),
            (1000, 1_700_000_000_123)
        );
        let h = crate::records::Header::parse(&b).unwrap();
        assert!(h.log_append_time());
    }

    #[test]
    fn rejects_corruption_size_and_magic() {
        let mut b = make_batch(1, b"xyz");
        assert_eq!(validate(&b, 10), Err(BatchError::TooLarge { size: b.len(), max: 10 }));
        let n = b.len();
        b[n - 1] ^= 1;
        assert_eq!(validate(&b, 1 << 20), Err(BatchError::CrcMismatch));
        b[MAGIC_AT] = 1;
        assert_eq!(validate(&b, 1 << 20), Err(BatchError::UnsupportedMagic(1)));
        assert_eq!(validate(&b[..20], 1 << 20), Err(BatchError::Truncated));
    }

    #[test]
    fn splits_concatenated_batches() {
        let mut all = make_batch(2, b"a");
        let second = make_batch(5, b"bb");
        all.extend_from_slice(&second);
        let parts = split_batches(&all, 1 << 20).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1.record_count, 5);
        assert_eq!(
            split_batches(&all[..all.len() - 1], 1 << 20),
            Err(BatchError::Truncated)
        );
        assert_eq!(split_batches(&[], 1 << 20), Err(BatchError::Truncated));
    }
}

#[cfg(test)]
mod garbage_tests {
    use super::*;

    /// Produce payloads come from clients: garbage gets an error, never a panic.
    #[test]
    fn random_records_fields_never_panic() {
        let mut rng = crate::test_rng::Rng::new(0xD1B5_4A32_D192_ED03);
        let mut next = || rng.next();
        let valid = tests::make_batch(3, b"payload");
        for round in 0..5000 {
            let mut b = if round % 2 == 0 {
                valid.clone()
            } else {
                (0..(next() % 200) as usize).map(|_| next() as u8).collect()
            };
            if !b.is_empty() {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
                b.truncate(b.len() - (next() as usize % (b.len().min(3) + 1)));
            }
            let _ = split_batches(&b, 1 << 20);
        }
    }
}
