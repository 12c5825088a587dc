//! The payload of a data Raft entry: the batches of many partitions, each
//! `partition u32 | base_offset i64 | len u32 | batch bytes` (little endian
//! framing; the batch itself is the client's bytes with baseOffset set).

use crate::batch;
use crate::types::{Offset, PartitionId};

const ITEM_HEADER_BYTES: usize = 16;

/// Gathers batches for the next proposal.
#[derive(Default)]
pub struct EntryBuilder {
    buf: Vec<u8>,
    /// Size of the last entry taken: the next one starts with that much
    /// room, so a group commit of MiBs does not grow by doubling (each
    /// step a reallocation that copies everything gathered so far).
    last_len: usize,
}

impl EntryBuilder {
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Copies `batch_bytes` in (the one copy on the write path: into the
    /// entry that is then written to disk) and stamps its base offset.
    pub fn push(&mut self, partition: PartitionId, base: Offset, batch_bytes: &[u8]) {
        let len = u32::try_from(batch_bytes.len()).expect("batch over 4 GiB");
        if self.buf.capacity() == 0 {
            self.buf
                .reserve(self.last_len.max(ITEM_HEADER_BYTES + batch_bytes.len()));
        }
        self.buf.extend_from_slice(&partition.0.to_le_bytes());
        self.buf.extend_from_slice(&base.0.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(batch_bytes);
        batch::set_base_offset(&mut self.buf[at..], base.0);
    }

    pub fn take(&mut self) -> Vec<u8> {
        if !self.buf.is_empty() {
            self.last_len = self.buf.len();
        }
        std::mem::take(&mut self.buf)
    }
}

/// One batch inside an entry payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryItem {
    pub partition: PartitionId,
    pub base: Offset,
    /// Offset of the batch bytes inside the payload.
    pub at: usize,
    pub len: usize,
}

/// Why a data entry's payload is refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("item header at byte {at} overruns the {len}-byte payload")]
    HeaderOverrun { at: usize, len: usize },
    #[error("item at byte {at} claims {claimed} bytes, {left} are left")]
    ItemOverrun { at: usize, claimed: usize, left: usize },
    #[error("batch at byte {at}: {source}")]
    Batch { at: usize, source: batch::BatchError },
    #[error("a trim entry of {0} bytes (a multiple of 12, at least one item)")]
    TrimLength(usize),
    #[error("a trim to offset {0}")]
    NegativeTrim(i64),
    #[error("a release entry of {0} bytes (8)")]
    ReleaseLength(usize),
}

/// Checks a data entry's payload as `items` and the shard's apply will
/// read it: whole items, each a valid batch (header and CRC). Entries from
/// a peer pass this before Raft sees them, so a payload in the WAL that
/// fails it was written that way (a bug); returns the item count.
pub fn validate_payload(payload: &[u8]) -> Result<usize, EntryError> {
    let (mut at, mut count) = (0usize, 0usize);
    while at < payload.len() {
        let Some(h) = payload.get(at..at + ITEM_HEADER_BYTES) else {
            return Err(EntryError::HeaderOverrun { at, len: payload.len() });
        };
        let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
        let start = at + ITEM_HEADER_BYTES;
        let Some(b) = payload.get(start..start.saturating_add(len)) else {
            return Err(EntryError::ItemOverrun {
                at,
                claimed: len,
                left: payload.len() - start,
            });
        };
        batch::validate(b, usize::MAX).map_err(|source| EntryError::Batch { at, source })?;
        at = start + len;
        count += 1;
    }
    Ok(count)
}

/// A trim entry's payload: `partition u32 | log_start i64` (little
/// endian), once per partition whose log start moves.
const TRIM_ITEM_BYTES: usize = 12;

pub fn encode_trims(trims: &[(PartitionId, Offset)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(trims.len() * TRIM_ITEM_BYTES);
    for (p, offset) in trims {
        out.extend_from_slice(&p.0.to_le_bytes());
        out.extend_from_slice(&offset.0.to_le_bytes());
    }
    out
}

/// Checks a trim entry's payload as `trims` reads it.
pub fn validate_trims(payload: &[u8]) -> Result<usize, EntryError> {
    if payload.is_empty() || !payload.len().is_multiple_of(TRIM_ITEM_BYTES) {
        return Err(EntryError::TrimLength(payload.len()));
    }
    for t in trims(payload) {
        if t.1 .0 < 0 {
            return Err(EntryError::NegativeTrim(t.1 .0));
        }
    }
    Ok(payload.len() / TRIM_ITEM_BYTES)
}

/// The `(partition, new log start)` pairs of a trim entry (checked by
/// `validate_trims` when it came from a peer; a trailing partial item,
/// which only a bug could write, is ignored).
pub fn trims(payload: &[u8]) -> impl Iterator<Item = (PartitionId, Offset)> + '_ {
    payload.chunks_exact(TRIM_ITEM_BYTES).map(|c| {
        let (p, o) = c.split_at(4);
        (
            PartitionId(u32::from_le_bytes(p.try_into().expect("4 bytes"))),
            Offset(i64::from_le_bytes(o.try_into().expect("8 bytes"))),
        )
    })
}

/// A release entry's payload: the index (u64, little endian) up to which
/// every voter held the log when the leader proposed it.
pub fn encode_release(index: u64) -> Vec<u8> {
    index.to_le_bytes().to_vec()
}

/// The index of a release entry, if its payload is one.
pub fn release(payload: &[u8]) -> Result<u64, EntryError> {
    <[u8; 8]>::try_from(payload)
        .map(u64::from_le_bytes)
        .map_err(|_| EntryError::ReleaseLength(payload.len()))
}

/// Iterates the items of a payload. A malformed payload (which passed the
/// WAL CRC and, from a peer, `validate_payload`, so it was written that
/// way) is a bug: it panics.
pub fn items(payload: &[u8]) -> impl Iterator<Item = EntryItem> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= payload.len() {
            return None;
        }
        let h = &payload[at..at + ITEM_HEADER_BYTES];
        let partition = PartitionId(u32::from_le_bytes(h[0..4].try_into().expect("4")));
        let base = Offset(i64::from_le_bytes(h[4..12].try_into().expect("8")));
        let len = u32::from_le_bytes(h[12..16].try_into().expect("4")) as usize;
        let item = EntryItem {
            partition,
            base,
            at: at + ITEM_HEADER_BYTES,
            len,
        };
        assert!(item.at + len <= payload.len(), "entry payload item overruns the entry");
        at = item.at + len;
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::make_batch;

    #[test]
    fn builder_roundtrip_stamps_offsets() {
        let mut b = EntryBuilder::default();
        b.push(PartitionId(7), Offset(10), &make_batch(2, b"a"));
        b.push(PartitionId(9), Offset(0), &make_batch(1, b"bc"));
        let payload = b.take();
        let got: Vec<_> = items(&payload).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].partition, got[0].base), (PartitionId(7), Offset(10)));
        let first = &payload[got[0].at..got[0].at + got[0].len];
        assert_eq!(batch::base_offset(first), 10);
        assert!(batch::validate(first, 1 << 20).is_ok());
        assert_eq!(got[1].partition, PartitionId(9));
        assert!(b.is_empty());
    }

    #[test]
    fn trims_roundtrip_and_bad_ones_are_refused() {
        let t = [(PartitionId(3), Offset(40)), (PartitionId(u32::MAX), Offset(0))];
        let payload = encode_trims(&t);
        assert_eq!(validate_trims(&payload).unwrap(), 2);
        assert_eq!(trims(&payload).collect::<Vec<_>>(), t);
        assert!(validate_trims(&payload[..13]).is_err());
        assert!(validate_trims(&[]).is_err());
        assert!(validate_trims(&encode_trims(&[(PartitionId(1), Offset(-1))])).is_err());
    }
}
