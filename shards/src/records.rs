//! The records inside a stored batch (magic 2), for the work that needs
//! more than the batch header: compaction keeps some records of a batch
//! and rebuilds it around them; ListOffsets by timestamp reads their times.
//!
//! Record layout: `length varint | attributes i8 | timestampDelta varlong |
//! offsetDelta varint | keyLength varint | key | valueLength varint |
//! value | headers`, each varint zigzag-encoded; a length of -1 is null (a
//! null value is a tombstone). The records section is compressed as the
//! batch's attributes say (gzip, xerial-framed snappy, LZ4 frames, zstd).

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::batch::HEADER_BYTES;

/// Most bytes one batch's records may decompress to before reading stops
/// (a compression bomb is not followed further).
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

#[derive(Debug, Error)]
pub enum RecordsError {
    #[error("batch header truncated")]
    Truncated,
    #[error("unknown compression codec {0}")]
    Codec(i16),
    #[error("records: {0}")]
    Io(#[from] io::Error),
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// The header fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub count: i32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Header, RecordsError> {
        let h = b.get(..HEADER_BYTES).ok_or(RecordsError::Truncated)?;
        let i16_at = |at: usize| i16::from_be_bytes([h[at], h[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let i64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&h[at..at + 8]);
            i64::from_be_bytes(v)
        };
        Ok(Header {
            base_offset: i64_at(0),
            partition_leader_epoch: i32_at(12),
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            count: i32_at(57),
        })
    }

    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }

    pub fn log_append_time(&self) -> bool {
        self.attributes & 0x8 != 0
    }

    pub fn transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// A transaction marker (commit or abort), not data.
    pub fn control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// A record's timestamp: a log-append-time batch's records carry the
    /// batch's time.
    pub fn timestamp_of(&self, timestamp_delta: i64) -> i64 {
        if self.log_append_time() {
            self.max_timestamp
        } else {
            self.base_timestamp.wrapping_add(timestamp_delta)
        }
    }
}

/// The records section of `batch` (one whole batch), decompressed as it
/// is read.
pub fn reader<'a>(batch: &'a [u8], h: &Header) -> Result<impl Read + 'a, RecordsError> {
    let compressed = batch.get(HEADER_BYTES..).ok_or(RecordsError::Truncated)?;
    let records: Box<dyn Read + 'a> = match h.compression() {
        0 => Box::new(compressed),
        1 => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        2 => Box::new(Xerial::new(compressed)),
        3 => Box::new(lz4::Decoder::new(compressed)?),
        4 => Box::new(zstd::stream::read::Decoder::new(compressed)?),
        other => return Err(RecordsError::Codec(other)),
    };
    Ok(records.take(MAX_DECOMPRESSED_BYTES))
}

/// One record, borrowed from a decompressed records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Everything after the offset delta (key, value, headers), as stored.
    pub rest: &'a [u8],
}

impl Record<'_> {
    pub fn tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// The decompressed records section of `batch`, read whole.
pub fn decompress(batch: &[u8], h: &Header) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    reader(batch, h)?.read_to_end(&mut out)?;
    Ok(out)
}

/// The `count` records of a decompressed records section, in order.
pub fn parse(mut data: &[u8], count: i32) -> Result<Vec<Record<'_>>, RecordsError> {
    let mut out = Vec::with_capacity(count.clamp(0, 4096) as usize);
    for _ in 0..count.max(0) {
        let len = usize::try_from(varint(&mut data)?).map_err(|_| bad("negative record length"))?;
        let (mut rec, tail) = data.split_at_checked(len).ok_or_else(|| bad("record truncated"))?;
        data = tail;
        let attributes = byte(&mut rec)? as i8;
        let timestamp_delta = varint(&mut rec)?;
        let offset_delta = varint(&mut rec)?;
        let rest = rec;
        let key = bytes(&mut rec)?;
        let value = bytes(&mut rec)?;
        out.push(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            rest,
        });
    }
    Ok(out)
}

/// A length-prefixed byte string; length -1 is null.
fn bytes<'a>(data: &mut &'a [u8]) -> io::Result<Option<&'a [u8]>> {
    let len = varint(data)?;
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| bad("length"))?;
    let (b, tail) = data
        .split_at_checked(len)
        .ok_or_else(|| bad("key or value truncated"))?;
    *data = tail;
    Ok(Some(b))
}

pub fn byte(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

/// A zigzag varint (Kafka's varint and varlong alike), at most 10 bytes.
pub fn varint(r: &mut impl Read) -> io::Result<i64> {
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

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Rebuilds a batch around some of its records, as Kafka's log cleaner
/// does: the producer fields, attributes and base timestamp stay, the
/// offsets of the records kept stay (`offset` with each), and the batch
/// covers `[base, last]`, which may reach past its records on either side
/// (the offsets of records removed before or after them). The records are
/// compressed again with the batch's codec.
pub fn rebuild(h: &Header, base: i64, last: i64, kept: &[(Record<'_>, i64)]) -> Result<Vec<u8>, RecordsError> {
    let last_delta = last
        .checked_sub(base)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| bad("batch offset range too wide"))?;
    let mut plain = Vec::new();
    let mut max_timestamp = if kept.is_empty() { h.max_timestamp } else { i64::MIN };
    for (r, offset) in kept {
        let mut head = Vec::with_capacity(24);
        head.push(r.attributes as u8);
        put_varint(&mut head, r.timestamp_delta);
        put_varint(&mut head, offset.wrapping_sub(base));
        put_varint(&mut plain, (head.len() + r.rest.len()) as i64);
        plain.extend_from_slice(&head);
        plain.extend_from_slice(r.rest);
        max_timestamp = max_timestamp.max(h.timestamp_of(r.timestamp_delta));
    }
    let records = compress(h.compression(), &plain)?;
    let mut b = Vec::with_capacity(HEADER_BYTES + records.len());
    b.extend_from_slice(&base.to_be_bytes());
    b.extend_from_slice(&((HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]); // the CRC, below
    b.extend_from_slice(&h.attributes.to_be_bytes());
    b.extend_from_slice(&last_delta.to_be_bytes());
    b.extend_from_slice(&h.base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&(kept.len() as i32).to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// `plain` compressed with Kafka's codec `codec`, in the framing Kafka's
/// clients read: gzip, xerial-framed snappy, LZ4 frames of independent
/// 64 KiB blocks (the Java client reads no linked blocks), zstd.
pub fn compress(codec: i16, plain: &[u8]) -> Result<Vec<u8>, RecordsError> {
    Ok(match codec {
        0 => plain.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain)?;
            e.finish()?
        }
        2 => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut enc = snap::raw::Encoder::new();
            for block in plain.chunks(32 << 10) {
                let raw = enc.compress_vec(block).map_err(|e| bad(&e.to_string()))?;
                out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
                out.extend_from_slice(&raw);
            }
            out
        }
        3 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())?;
            e.write_all(plain)?;
            let (out, result) = e.finish();
            result?;
            out
        }
        4 => zstd::bulk::compress(plain, 3)?,
        other => return Err(RecordsError::Codec(other)),
    })
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
        if n as u64 > MAX_DECOMPRESSED_BYTES {
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
pub(crate) mod tests {
    use super::*;

    /// `(key, value, timestamp)` of one record; `None` value: a tombstone.
    pub type Rec<'a> = (Option<&'a str>, Option<&'a str>, i64);

    fn put_bytes(out: &mut Vec<u8>, b: Option<&str>) {
        match b {
            None => out.push(1), // zigzag -1
            Some(b) => {
                let mut len = Vec::new();
                put_varint(&mut len, b.len() as i64);
                out.extend_from_slice(&len);
                out.extend_from_slice(b.as_bytes());
            }
        }
    }

    /// A batch of `recs` at offsets `base..`, compressed with `codec`.
    pub fn batch(base: i64, recs: &[Rec<'_>], codec: i16) -> Vec<u8> {
        let rests: Vec<Vec<u8>> = recs
            .iter()
            .map(|(k, v, _)| {
                let mut rest = Vec::new();
                put_bytes(&mut rest, *k);
                put_bytes(&mut rest, *v);
                rest.push(0); // no headers
                rest
            })
            .collect();
        let t0 = recs[0].2;
        let kept: Vec<(Record<'_>, i64)> = recs
            .iter()
            .zip(&rests)
            .enumerate()
            .map(|(i, ((_, _, ts), rest))| {
                let r = Record {
                    attributes: 0,
                    timestamp_delta: ts - t0,
                    offset_delta: i as i64,
                    key: None,
                    value: None,
                    rest,
                };
                (r, base + i as i64)
            })
            .collect();
        let h = Header {
            base_offset: base,
            partition_leader_epoch: 0,
            attributes: codec,
            last_offset_delta: 0,
            base_timestamp: t0,
            max_timestamp: t0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            count: 0,
        };
        rebuild(&h, base, base + recs.len() as i64 - 1, &kept).unwrap()
    }
}
