//! The shard's cache of recently written batches: the Raft entry payloads
//! just persisted, kept by reference (the same `Bytes` the entry holds, no
//! copy), so consumers that keep up with producers are served from memory
//! instead of an O_DIRECT read. Its bytes are charged to the shard's memory
//! budget and given back first when the budget is short.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::budget::Charge;
use crate::types::RaftIndex;
use crate::wal::WalPos;

struct Cached {
    segment: RaftIndex,
    /// Offset of `data[0]` in the segment.
    start: u64,
    data: Bytes,
    _charge: Option<Charge>,
}

pub struct ReadCache {
    /// In WAL order: (segment, start) increasing.
    entries: VecDeque<Cached>,
    bytes: usize,
    cap_bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl ReadCache {
    pub fn new(cap_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            cap_bytes,
            hits: 0,
            misses: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets the oldest entry; false when there is none.
    pub fn evict_oldest(&mut self) -> bool {
        match self.entries.pop_front() {
            Some(e) => {
                self.bytes -= e.data.len();
                true
            }
            None => false,
        }
    }

    /// Keeps `data`, which starts at `pos` in the WAL. Positions must come
    /// in WAL order.
    pub fn insert(&mut self, pos: WalPos, data: Bytes, charge: Option<Charge>) {
        if data.len() > self.cap_bytes {
            return;
        }
        if let Some(last) = self.entries.back() {
            assert!(
                (last.segment, last.start) < (pos.segment, pos.offset),
                "read cache entries out of WAL order"
            );
        }
        while self.bytes + data.len() > self.cap_bytes && self.evict_oldest() {}
        self.bytes += data.len();
        self.entries.push_back(Cached {
            segment: pos.segment,
            start: pos.offset,
            data,
            _charge: charge,
        });
    }

    /// Whether one cached entry holds the `len` bytes at `pos`.
    pub fn holds(&self, pos: WalPos, len: usize) -> bool {
        self.find(pos, len).is_some()
    }

    fn find(&self, pos: WalPos, len: usize) -> Option<Bytes> {
        let i = self
            .entries
            .partition_point(|e| (e.segment, e.start) <= (pos.segment, pos.offset));
        i.checked_sub(1).and_then(|i| {
            let e = &self.entries[i];
            if e.segment != pos.segment {
                return None;
            }
            let from = (pos.offset - e.start) as usize;
            (from + len <= e.data.len()).then(|| e.data.slice(from..from + len))
        })
    }

    /// The `len` bytes at `pos`, if one cached entry holds all of them.
    pub fn get(&mut self, pos: WalPos, len: usize) -> Option<Bytes> {
        let hit = self.find(pos, len);
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(segment: u64, offset: u64) -> WalPos {
        WalPos {
            segment: RaftIndex(segment),
            offset,
        }
    }

    #[test]
    fn serves_slices_of_cached_entries_and_evicts_oldest() {
        let mut c = ReadCache::new(100);
        c.insert(pos(1, 0), Bytes::from(vec![1u8; 40]), None);
        c.insert(pos(1, 100), Bytes::from((0u8..40).collect::<Vec<_>>()), None);
        assert_eq!(&c.get(pos(1, 110), 5).unwrap()[..], &[10, 11, 12, 13, 14]);
        assert!(c.get(pos(1, 130), 20).is_none(), "runs past the entry");
        assert!(c.get(pos(2, 0), 1).is_none(), "other segment");
        c.insert(pos(2, 0), Bytes::from(vec![3u8; 40]), None);
        assert_eq!(c.bytes(), 80);
        assert!(c.get(pos(1, 0), 1).is_none(), "evicted: the cap is 100 bytes");
        assert!(c.get(pos(2, 39), 1).is_some());
        assert_eq!((c.hits, c.misses), (2, 3));
        c.insert(pos(3, 0), Bytes::from(vec![0u8; 500]), None);
        assert_eq!(c.bytes(), 80, "larger than the whole cache: not kept");
    }
}
