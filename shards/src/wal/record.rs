//! WAL record framing: `len u32 | crc32c u32 | term u64 | index u64 | kind u8 | payload`.
//!
//! The CRC covers the length field and everything after the CRC, so a torn
//! or corrupted record of any shape fails the check. Preallocated segment
//! space reads as zeros, whose CRC never matches: the end of the log and a
//! torn tail are found by the same test.

use bytes::Bytes;

use crate::types::{NodeId, RaftIndex, Term};

pub const HEADER_BYTES: usize = 25;

/// What a record holds. Entries mirror raft-rs `EntryType`; a metadata
/// entry is a normal Raft entry of the metadata group (shard 0) whose
/// payload is a cluster metadata command, not partition batches; hard state
/// is the Raft `(term, vote, commit)` triple, persisted beside the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    Entry = 1,
    ConfChange = 2,
    ConfChangeV2 = 3,
    HardState = 4,
    Meta = 5,
    /// Moves partitions' log starts (DeleteRecords, retention): a Raft
    /// entry, so every replica trims at the same point of the log.
    Trim = 6,
    /// Every voter holds the log up to an index: the WAL before it may be
    /// reclaimed on every replica (`raft::entry::release`).
    Release = 7,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Entry),
            2 => Some(Self::ConfChange),
            3 => Some(Self::ConfChangeV2),
            4 => Some(Self::HardState),
            5 => Some(Self::Meta),
            6 => Some(Self::Trim),
            7 => Some(Self::Release),
            _ => None,
        }
    }
}

/// A record to append: borrowed payload, framed straight into the DMA buffer.
#[derive(Clone, Debug)]
pub struct RecordRef<'a> {
    pub term: u64,
    pub index: u64,
    pub kind: RecordKind,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    pub fn framed_len(&self) -> usize {
        HEADER_BYTES + self.payload.len()
    }

    /// Writes the framed record at the start of `out` (which must be large
    /// enough) and returns its length.
    pub fn encode_into(&self, out: &mut [u8]) -> usize {
        let n = self.framed_len();
        assert!(out.len() >= n, "record buffer too small");
        let len = u32::try_from(self.payload.len()).expect("WAL record payload over 4 GiB");
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out[8..16].copy_from_slice(&self.term.to_le_bytes());
        out[16..24].copy_from_slice(&self.index.to_le_bytes());
        out[24] = self.kind as u8;
        out[HEADER_BYTES..n].copy_from_slice(self.payload);
        let crc = checksum(&out[0..4], &out[8..n]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        n
    }
}

fn checksum(len_field: &[u8], rest: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_field), rest)
}

/// A record read back from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub term: u64,
    pub index: u64,
    pub kind: RecordKind,
    pub payload: Bytes,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid record of `framed` bytes.
    Record { record: Record, framed: usize },
    /// The header is plausible but the buffer holds only part of the record.
    NeedMore { framed: usize },
    /// Not a valid record here: the log ends (or is cut) at this position.
    Invalid,
}

/// Decodes the record at the start of `buf`. `space_left` is how many bytes
/// the segment has from this position, so a corrupted length can never ask
/// for more than the file holds.
pub fn decode(buf: &[u8], space_left: u64) -> Decoded {
    if buf.len() < HEADER_BYTES {
        return if (HEADER_BYTES as u64) <= space_left {
            Decoded::NeedMore { framed: HEADER_BYTES }
        } else {
            Decoded::Invalid
        };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let framed = HEADER_BYTES + len;
    if framed as u64 > space_left {
        return Decoded::Invalid;
    }
    if buf.len() < framed {
        return Decoded::NeedMore { framed };
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if checksum(&buf[0..4], &buf[8..framed]) != crc {
        return Decoded::Invalid;
    }
    let Some(kind) = RecordKind::from_u8(buf[24]) else {
        return Decoded::Invalid;
    };
    Decoded::Record {
        record: Record {
            term: u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes")),
            index: u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes")),
            kind,
            payload: Bytes::copy_from_slice(&buf[HEADER_BYTES..framed]),
        },
        framed,
    }
}

/// The Raft hard state as a WAL record keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: Term,
    /// Who this node voted for in `term` (`NodeId(0)`: nobody).
    pub vote: NodeId,
    pub commit: RaftIndex,
}

/// Hard state payload: term, vote, commit, little endian.
pub fn encode_hard_state(hs: HardState) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..8].copy_from_slice(&hs.term.0.to_le_bytes());
    b[8..16].copy_from_slice(&hs.vote.0.to_le_bytes());
    b[16..24].copy_from_slice(&hs.commit.0.to_le_bytes());
    b
}

pub fn decode_hard_state(p: &[u8]) -> Option<HardState> {
    let p: &[u8; 24] = p.try_into().ok()?;
    let at = |i: usize| {
        u64::from_le_bytes([
            p[i],
            p[i + 1],
            p[i + 2],
            p[i + 3],
            p[i + 4],
            p[i + 5],
            p[i + 6],
            p[i + 7],
        ])
    };
    Some(HardState {
        term: Term(at(0)),
        vote: NodeId(at(8)),
        commit: RaftIndex(at(16)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(term: u64, index: u64, payload: &[u8]) -> Vec<u8> {
        let r = RecordRef {
            term,
            index,
            kind: RecordKind::Entry,
            payload,
        };
        let mut out = vec![0u8; r.framed_len()];
        r.encode_into(&mut out);
        out
    }

    #[test]
    fn roundtrip() {
        let b = framed(3, 7, b"hello");
        match decode(&b, b.len() as u64) {
            Decoded::Record { record, framed } => {
                assert_eq!(framed, b.len());
                assert_eq!((record.term, record.index), (3, 7));
                assert_eq!(&record.payload[..], b"hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zeros_partial_and_flipped_bits() {
        assert_eq!(decode(&[0u8; 64], 64), Decoded::Invalid);
        let b = framed(1, 1, b"payload");
        assert_eq!(decode(&b[..10], 4096), Decoded::NeedMore { framed: HEADER_BYTES });
        assert_eq!(decode(&b[..30], 4096), Decoded::NeedMore { framed: b.len() });
        assert_eq!(decode(&b, 10), Decoded::Invalid);
        for byte in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode(&c, 4096), Decoded::Record { .. }),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }
}
