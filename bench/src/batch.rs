//! Record batches on the generator's hot path. kafka-protocol's `Record`
//! model allocates per record (key, value, header map); a generator that
//! must outrun the broker builds the v2 batch bytes directly instead, from
//! one template payload. The unit tests decode what this writes with
//! kafka-protocol's own decoder, so the format is checked independently.

use bytes::{BufMut, Bytes, BytesMut};

const HEADER_BYTES: usize = 61;

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            buf.put_u8(b);
            return;
        }
        buf.put_u8(b | 0x80);
    }
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// Builds an uncompressed magic-2 batch of `count` records, each carrying
/// `value`; record i gets timestamp `timestamps_ms[i]`. With `sent_us`,
/// the first 8 bytes of record i's value hold `sent_us[i]` (microseconds
/// since the epoch), so an end-to-end consumer measures latency finer than
/// Kafka's millisecond timestamps.
pub fn build(value: &[u8], timestamps_ms: &[i64], sent_us: Option<&[i64]>) -> Bytes {
    build_with(Codec::None, value, timestamps_ms, sent_us)
}

/// Compression of a batch's records, as the batch attributes encode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn attribute(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }
}

/// `build`, with the records section compressed by `codec` (through
/// kafka-protocol's codecs, so the framing is what Kafka clients expect).
pub fn build_with(codec: Codec, value: &[u8], timestamps_ms: &[i64], sent_us: Option<&[i64]>) -> Bytes {
    assert!(!timestamps_ms.is_empty(), "a batch holds at least one record");
    let base_ts = timestamps_ms[0];
    let max_ts = *timestamps_ms.iter().max().expect("non-empty");
    let mut buf = BytesMut::with_capacity(HEADER_BYTES + timestamps_ms.len() * (value.len() + 16));
    buf.put_i64(0); // baseOffset: the broker assigns it
    buf.put_i32(0); // batchLength, patched below
    buf.put_i32(-1); // partitionLeaderEpoch
    buf.put_i8(2); // magic
    buf.put_u32(0); // crc, patched below
    buf.put_i16(codec.attribute()); // compression; CreateTime
    buf.put_i32(timestamps_ms.len() as i32 - 1);
    buf.put_i64(base_ts);
    buf.put_i64(max_ts);
    buf.put_i64(-1); // producerId
    buf.put_i16(-1); // producerEpoch
    buf.put_i32(-1); // baseSequence
    buf.put_i32(timestamps_ms.len() as i32);
    let records_at = buf.len();
    for (i, ts) in timestamps_ms.iter().enumerate() {
        let delta_ts = ts - base_ts;
        let body_len = 1
            + varint_len(delta_ts)
            + varint_len(i as i64)
            + varint_len(-1)
            + varint_len(value.len() as i64)
            + value.len()
            + 1;
        put_varint(&mut buf, body_len as i64);
        buf.put_i8(0); // record attributes
        put_varint(&mut buf, delta_ts);
        put_varint(&mut buf, i as i64);
        put_varint(&mut buf, -1); // null key
        put_varint(&mut buf, value.len() as i64);
        match sent_us {
            Some(stamps) if value.len() >= 8 => {
                buf.put_i64(stamps[i]);
                buf.put_slice(&value[8..]);
            }
            _ => buf.put_slice(value),
        }
        put_varint(&mut buf, 0); // no headers
    }
    if codec != Codec::None {
        let raw = buf.split_off(records_at);
        compress(codec, &mut buf, &raw);
    }
    let len = (buf.len() - 12) as i32;
    buf[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

fn compress(codec: Codec, out: &mut BytesMut, raw: &[u8]) {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let put = |b: &mut BytesMut| -> anyhow::Result<()> {
        b.put_slice(raw);
        Ok(())
    };
    let r = match codec {
        Codec::None => unreachable!("not compressed"),
        Codec::Gzip => <Gzip as Compressor<BytesMut>>::compress(out, put),
        Codec::Snappy => <Snappy as Compressor<BytesMut>>::compress(out, put),
        Codec::Lz4 => <Lz4 as Compressor<BytesMut>>::compress(out, put),
        Codec::Zstd => <Zstd as Compressor<BytesMut>>::compress(out, put),
    };
    r.expect("compressing into memory does not fail");
}

/// What a fetched `records` field holds: (batches, records, bytes).
/// Reads batch headers only, so compressed batches count too.
pub fn count(records: &[u8]) -> (u64, u64, u64) {
    let (mut batches, mut n, mut at) = (0u64, 0u64, 0usize);
    while at + HEADER_BYTES <= records.len() {
        let len = 12 + i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4")) as usize;
        if at + len > records.len() {
            break; // a partial batch at the end of a fetch response
        }
        n += i32::from_be_bytes(records[at + 57..at + 61].try_into().expect("4")).max(0) as u64;
        batches += 1;
        at += len;
    }
    (batches, n, at as u64)
}

/// Last offset of the last whole batch in `records`, if any.
pub fn last_offset(records: &[u8]) -> Option<i64> {
    let mut at = 0usize;
    let mut last = None;
    while at + HEADER_BYTES <= records.len() {
        let len = 12 + i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4")) as usize;
        if at + len > records.len() {
            break;
        }
        let base = i64::from_be_bytes(records[at..at + 8].try_into().expect("8"));
        let delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().expect("4"));
        last = Some(base + delta as i64);
        at += len;
    }
    last
}

/// The send stamps (first 8 bytes of each value, see `build`) of the
/// records of the uncompressed batches in `records`.
pub fn sent_stamps(records: &[u8], out: &mut Vec<i64>) {
    let mut at = 0usize;
    while at + HEADER_BYTES <= records.len() {
        let len = 12 + i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4")) as usize;
        if at + len > records.len() {
            break;
        }
        let b = &records[at..at + len];
        if i16::from_be_bytes([b[21], b[22]]) & 0x7 == 0 {
            let mut p = HEADER_BYTES;
            while p < b.len() {
                let Some((body_len, n)) = get_varint(&b[p..]) else {
                    break;
                };
                let end = (p + n + body_len as usize).min(b.len());
                if let Some(v) = record_value(&b[p + n..end]) {
                    if v.len() >= 8 {
                        out.push(i64::from_be_bytes(v[..8].try_into().expect("8")));
                    }
                }
                p = end;
            }
        }
        at += len;
    }
}

/// The value of one record body (after its length varint).
fn record_value(body: &[u8]) -> Option<&[u8]> {
    let mut p = 1; // attributes
    for _ in 0..2 {
        p += get_varint(body.get(p..)?)?.1; // timestamp delta, offset delta
    }
    let (key_len, n) = get_varint(body.get(p..)?)?;
    p += n + key_len.max(0) as usize;
    let (value_len, n) = get_varint(body.get(p..)?)?;
    p += n;
    body.get(p..p + value_len.max(0) as usize)
}

fn get_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut z = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        z |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((z >> 1) as i64) ^ -((z & 1) as i64), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn kafka_protocol_decodes_what_we_build() {
        let value = b"0123456789".repeat(10);
        let ts: Vec<i64> = (0..50).map(|i| 1_700_000_000_000 + i * 3).collect();
        let sent: Vec<i64> = (0..50).map(|i| 1_700_000_000_000_000 + i * 7).collect();
        let batch = build(&value, &ts, Some(&sent));
        let mut buf = batch.clone();
        let set = RecordBatchDecoder::decode(&mut buf).expect("valid batch");
        assert_eq!(set.records.len(), 50);
        for (i, r) in set.records.iter().enumerate() {
            let v = r.value.as_deref().expect("a value");
            assert_eq!(&v[8..], &value[8..]);
            assert_eq!(i64::from_be_bytes(v[..8].try_into().unwrap()), sent[i]);
            assert_eq!(r.timestamp, ts[i]);
            assert_eq!(r.offset, i as i64);
            assert!(r.key.is_none());
        }
        assert_eq!(count(&batch), (1, 50, batch.len() as u64));
        let mut stamps = Vec::new();
        sent_stamps(&batch, &mut stamps);
        assert_eq!(stamps, sent);
    }

    #[test]
    fn compressed_batches_decode_with_kafka_protocol() {
        let value = b"abcdefghij".repeat(20);
        let ts: Vec<i64> = (0..30).map(|i| 1_000 + i).collect();
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let batch = build_with(codec, &value, &ts, None);
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(set.records.len(), 30, "{codec:?}");
            assert_eq!(set.records[29].value.as_deref(), Some(&value[..]));
            assert_eq!(count(&batch).1, 30, "{codec:?}: counted from the header");
            assert!(batch.len() < 30 * value.len(), "{codec:?} compresses");
        }
    }

    #[test]
    fn counting_stops_at_a_partial_batch() {
        let a = build(b"x", &[1, 2], None);
        let b = build(b"yy", &[3], None);
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_eq!(count(&both).1, 3);
        assert_eq!(count(&both[..both.len() - 1]).1, 2);
        assert_eq!(last_offset(&both), Some(0));
    }
}
