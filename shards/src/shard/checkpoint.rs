//! What a shard's checkpoint holds (the file itself: `wal::checkpoint`):
//! the state machine as of one applied Raft index, enough to start without
//! the WAL before it. Per partition: log start, high watermark, the index
//! of its committed batches (their WAL positions, all in segments the
//! checkpoint keeps) and its producers. Besides: the applied index and
//! term, the hard state, the release index, the deleted partition ids, and
//! where the WAL starts.
//!
//! Little endian throughout, with a version first. The body comes from
//! disk: decoding checks every length and refuses what does not parse.
//! Version 2 stores a partition's index entries as the offset index
//! encodes its blocks (about 9 bytes an entry instead of 44); version 3
//! adds where compaction got to in each compacted partition, so that a
//! restart does not clean them all whole again (Kafka keeps the same in
//! its cleaner-offset-checkpoint). Versions 1 and 2, written by earlier
//! releases, are still read.

use crate::partition::{decode_entries, encode_entries, IndexEntry, SavedPartition};
use crate::producer::SavedProducer;
use crate::types::{NodeId, Offset, PartitionId, RaftIndex, Term};
use crate::wal::{HardState, WalPos, WalStart};

const VERSION: u32 = 3;
/// An index entry in a version 1 checkpoint.
const V1_INDEX_ENTRY_BYTES: usize = 44;
/// About what an index entry takes in a version 2 checkpoint (a partition
/// written to among many: its batches far apart in the WAL).
const INDEX_ENTRY_BYTES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Index and term of the last entry the state below reflects.
    pub applied: (u64, u64),
    pub hard_state: HardState,
    /// Every voter holds the log up to here (committed release entries).
    pub released: u64,
    pub wal: WalStart,
    pub known_below: u32,
    pub deleted: Vec<PartitionId>,
    pub partitions: Vec<SavedPartition>,
    /// Per compacted partition, where its dirty part starts (what the
    /// cleaner cleaned up to), by partition id.
    pub cleaned: Vec<(PartitionId, Offset)>,
}

/// About how many bytes a checkpoint of these partitions takes.
pub fn estimate_bytes(partitions: usize, batches: usize, producers: usize) -> u64 {
    (128 + partitions * 32 + batches * INDEX_ENTRY_BYTES + producers * 96) as u64
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let batches: usize = self.partitions.iter().map(|p| p.index.len()).sum();
        let producers: usize = self.partitions.iter().map(|p| p.producers.len()).sum();
        let mut e = Enc(Vec::with_capacity(
            estimate_bytes(self.partitions.len(), batches, producers) as usize + self.deleted.len() * 4,
        ));
        e.u32(VERSION);
        e.u64(self.applied.0);
        e.u64(self.applied.1);
        e.u64(self.hard_state.term.0);
        e.u64(self.hard_state.vote.0);
        e.u64(self.hard_state.commit.0);
        e.u64(self.released);
        e.u64(self.wal.keep_from.0);
        e.u64(self.wal.before.0);
        e.u64(self.wal.before.1);
        e.u32(self.known_below);
        e.u32(self.deleted.len() as u32);
        for d in &self.deleted {
            e.u32(d.0);
        }
        e.u32(self.partitions.len() as u32);
        for p in &self.partitions {
            e.u32(p.id.0);
            e.u64(p.log_start.0 as u64);
            e.u64(p.high_watermark.0 as u64);
            e.u32(p.index.len() as u32);
            if let Some(first) = p.index.first() {
                e.u64(first.base.0 as u64);
                let at = e.0.len();
                e.u32(0); // the length, once known
                encode_entries(&p.index, &mut e.0);
                let len = (e.0.len() - at - 4) as u32;
                e.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
            e.u32(p.producers.len() as u32);
            for pr in &p.producers {
                e.u64(pr.id as u64);
                e.u16(pr.epoch as u16);
                e.u64(pr.last_ms as u64);
                e.u32(pr.recent.len() as u32);
                for &(first, last, base) in &pr.recent {
                    e.u32(first as u32);
                    e.u32(last as u32);
                    e.u64(base.0 as u64);
                }
            }
        }
        e.u32(self.cleaned.len() as u32);
        for &(id, to) in &self.cleaned {
            e.u32(id.0);
            e.u64(to.0 as u64);
        }
        e.0
    }

    pub fn decode(body: &[u8]) -> Result<Self, String> {
        let mut d = Dec(body);
        let version = d.u32()?;
        if !(1..=VERSION).contains(&version) {
            return Err(format!("checkpoint version {version}; this build reads 1 to {VERSION}"));
        }
        let applied = (d.u64()?, d.u64()?);
        let hard_state = HardState {
            term: Term(d.u64()?),
            vote: NodeId(d.u64()?),
            commit: RaftIndex(d.u64()?),
        };
        let released = d.u64()?;
        let wal = WalStart {
            keep_from: RaftIndex(d.u64()?),
            before: (d.u64()?, d.u64()?),
        };
        let known_below = d.u32()?;
        let deleted = (0..d.count(4)?)
            .map(|_| d.u32().map(PartitionId))
            .collect::<Result<_, _>>()?;
        let n = d.count(28)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let id = PartitionId(d.u32()?);
            let log_start = Offset(d.u64()? as i64);
            let high_watermark = Offset(d.u64()? as i64);
            let index = if version == 1 {
                Self::v1_index(&mut d)?
            } else {
                let count = d.u32()?;
                if count == 0 {
                    Vec::new()
                } else {
                    let base = Offset(d.u64()? as i64);
                    let len = d.count(1)?;
                    let (data, rest) = d.0.split_at(len);
                    d.0 = rest;
                    decode_entries(data, count, base).map_err(|why| format!("partition {id}: {why}"))?
                }
            };
            let producers = (0..d.count(22)?)
                .map(|_| {
                    let id = d.u64()? as i64;
                    let epoch = d.u16()? as i16;
                    let last_ms = d.u64()? as i64;
                    let recent = (0..d.count(16)?)
                        .map(|_| Ok((d.u32()? as i32, d.u32()? as i32, Offset(d.u64()? as i64))))
                        .collect::<Result<_, String>>()?;
                    Ok(SavedProducer {
                        id,
                        epoch,
                        last_ms,
                        recent,
                    })
                })
                .collect::<Result<_, String>>()?;
            partitions.push(SavedPartition {
                id,
                log_start,
                high_watermark,
                index,
                producers,
            });
        }
        let cleaned = if version >= 3 {
            (0..d.count(12)?)
                .map(|_| Ok((PartitionId(d.u32()?), Offset(d.u64()? as i64))))
                .collect::<Result<_, String>>()?
        } else {
            Vec::new()
        };
        if !d.0.is_empty() {
            return Err(format!("{} bytes after the last partition", d.0.len()));
        }
        Ok(Self {
            applied,
            hard_state,
            released,
            wal,
            known_below,
            deleted,
            partitions,
            cleaned,
        })
    }
    /// A partition's index as version 1 wrote it: fixed-size entries.
    fn v1_index(d: &mut Dec<'_>) -> Result<Vec<IndexEntry>, String> {
        (0..d.count(V1_INDEX_ENTRY_BYTES)?)
            .map(|_| {
                Ok(IndexEntry {
                    base: Offset(d.u64()? as i64),
                    last: Offset(d.u64()? as i64),
                    pos: WalPos {
                        segment: RaftIndex(d.u64()?),
                        offset: d.u64()?,
                    },
                    len: d.u32()?,
                    max_timestamp_ms: d.u64()? as i64,
                })
            })
            .collect()
    }
}

struct Enc(Vec<u8>);

impl Enc {
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| "checkpoint ends early".to_string())?;
        self.0 = rest;
        Ok(*head)
    }
    fn u16(&mut self) -> Result<u16, String> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.take().map(u64::from_le_bytes)
    }
    /// A count of items of at least `min_bytes` each, checked against what
    /// is left, so a damaged count cannot ask for a huge allocation.
    fn count(&mut self, min_bytes: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_bytes) > self.0.len() {
            return Err(format!("a count of {n} where {} bytes are left", self.0.len()));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            applied: (120, 3),
            hard_state: HardState {
                term: Term(3),
                vote: NodeId(2),
                commit: RaftIndex(121),
            },
            released: 100,
            wal: WalStart {
                keep_from: RaftIndex(90),
                before: (89, 2),
            },
            known_below: 7,
            deleted: vec![PartitionId(1), PartitionId(4)],
            partitions: vec![SavedPartition {
                id: PartitionId(5),
                log_start: Offset(3),
                high_watermark: Offset(10),
                index: vec![IndexEntry {
                    base: Offset(2),
                    last: Offset(9),
                    pos: WalPos {
                        segment: RaftIndex(90),
                        offset: 4096,
                    },
                    len: 300,
                    max_timestamp_ms: 1_700_000_000_000,
                }],
                producers: vec![SavedProducer {
                    id: 44,
                    epoch: 1,
                    last_ms: 5,
                    recent: vec![(0, 7, Offset(2))],
                }],
            }],
            cleaned: vec![(PartitionId(5), Offset(6))],
        }
    }

    #[test]
    fn a_checkpoint_reads_back_as_written_and_a_cut_one_is_refused() {
        let c = sample();
        let bytes = c.encode();
        assert_eq!(Checkpoint::decode(&bytes), Ok(c));
        for cut in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[80..84].copy_from_slice(&u32::MAX.to_le_bytes()); // the deleted count
        assert!(Checkpoint::decode(&huge).is_err());
    }

    #[test]
    fn the_fuzzer_s_version_1_body_reads_back_by_value() {
        // Found by the checkpoint fuzz target: a version 1 body, written
        // again as version 2, is the same state in other bytes.
        let found: &[u8] = &[
            1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 6, 247, 255, 0, 10, 0, 0, 0, 0,
            0, 0, 0, 0, 32, 131, 13, 72, 0, 0, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            205, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        crate::fuzz::checkpoint(found);
    }

    #[test]
    fn a_version_1_checkpoint_still_reads() {
        // Written as releases before the compact index encoding wrote it.
        let c = sample();
        let mut e = Enc(Vec::new());
        e.u32(1);
        for v in [
            c.applied.0,
            c.applied.1,
            c.hard_state.term.0,
            c.hard_state.vote.0,
            c.hard_state.commit.0,
        ] {
            e.u64(v);
        }
        e.u64(c.released);
        e.u64(c.wal.keep_from.0);
        e.u64(c.wal.before.0);
        e.u64(c.wal.before.1);
        e.u32(c.known_below);
        e.u32(c.deleted.len() as u32);
        for d in &c.deleted {
            e.u32(d.0);
        }
        e.u32(1);
        let p = &c.partitions[0];
        e.u32(p.id.0);
        e.u64(p.log_start.0 as u64);
        e.u64(p.high_watermark.0 as u64);
        e.u32(1);
        let b = p.index[0];
        for v in [b.base.0 as u64, b.last.0 as u64, b.pos.segment.0, b.pos.offset] {
            e.u64(v);
        }
        e.u32(b.len);
        e.u64(b.max_timestamp_ms as u64);
        e.u32(1);
        let pr = &p.producers[0];
        e.u64(pr.id as u64);
        e.u16(pr.epoch as u16);
        e.u64(pr.last_ms as u64);
        e.u32(1);
        e.u32(0);
        e.u32(7);
        e.u64(2);
        // Version 1 knew nothing of compaction's progress.
        assert_eq!(
            Checkpoint::decode(&e.0),
            Ok(Checkpoint {
                cleaned: Vec::new(),
                ..c
            })
        );
    }

    #[test]
    fn a_version_2_checkpoint_still_reads() {
        // Version 3 is version 2 with the cleaned offsets after the partitions.
        let c = Checkpoint {
            cleaned: Vec::new(),
            ..sample()
        };
        let mut v2 = c.encode();
        v2[..4].copy_from_slice(&2u32.to_le_bytes());
        v2.truncate(v2.len() - 4);
        assert_eq!(Checkpoint::decode(&v2), Ok(c));
    }

    #[test]
    fn index_entries_take_about_ten_bytes_and_damaged_ones_are_refused() {
        let mut c = sample();
        let mut offset = 4096;
        c.partitions[0].index = (0..1000)
            .map(|i| {
                let e = IndexEntry {
                    base: Offset(2 + i * 10),
                    last: Offset(11 + i * 10),
                    pos: WalPos {
                        segment: RaftIndex(90 + (i as u64) / 300),
                        offset,
                    },
                    len: 16_000 + (i as u32 % 7) * 100,
                    max_timestamp_ms: 1_700_000_000_000 + i * 3,
                };
                offset = (offset + 16_000 + 40_000 * (i as u64 % 3)) % (64 << 20);
                e
            })
            .collect();
        c.partitions[0].high_watermark = Offset(10_002);
        let bytes = c.encode();
        assert_eq!(Checkpoint::decode(&bytes), Ok(c.clone()));
        let empty = Checkpoint {
            partitions: vec![SavedPartition {
                index: Vec::new(),
                ..c.partitions[0].clone()
            }],
            ..c.clone()
        }
        .encode();
        let per_entry = (bytes.len() - empty.len()) as f64 / 1000.0;
        assert!(per_entry < 10.0, "{per_entry} bytes per entry");
        // Every byte of the encoded entries flipped in turn: refused, or
        // read as some other index (the partition's restore checks it).
        let at = empty.len() - 16 - 4 - 22 - 16; // where the entries start, near enough
        for i in at..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            let _ = Checkpoint::decode(&bad);
        }
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 60);
        assert!(Checkpoint::decode(&cut).is_err());
    }
}
