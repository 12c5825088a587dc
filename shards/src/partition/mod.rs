//! Partition bookkeeping: a few offsets and a compact index from offset to
//! WAL position, one entry per stored batch (`index`: about 10 bytes each
//! once frozen). A partition owns no thread, timer, file or buffer (DESIGN
//! invariant 7); its data lives in the shard's WAL.

mod index;
pub mod store;

pub use index::{decode_entries, encode_entries, OffsetIndex};

use crate::producer::{Producers, SavedProducer};
use crate::types::{Offset, PartitionId};
use crate::wal::{is_cold, WalPos};

/// One stored batch: offsets `[base, last]` at `pos`, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub base: Offset,
    pub last: Offset,
    pub pos: WalPos,
    pub len: u32,
    pub max_timestamp_ms: i64,
}

impl IndexEntry {
    /// This batch, written at its `pos.offset` in file `file` (entries built
    /// for a chunk name their offset in it, before the file exists).
    pub fn in_file(self, file: crate::types::RaftIndex) -> IndexEntry {
        IndexEntry {
            pos: WalPos {
                segment: file,
                offset: self.pos.offset,
            },
            ..self
        }
    }
}

#[derive(Debug)]
pub struct Partition {
    pub id: PartitionId,
    /// Next offset the leader hands out. Invariant: `>= indexed_end()`.
    next_offset: Offset,
    /// Offsets below it are committed and visible to consumers.
    /// Invariant: `log_start <= high_watermark <= indexed_end()`.
    high_watermark: Offset,
    log_start: Offset,
    /// Sorted, dense: each entry's base is the previous one's last + 1.
    /// Its byte total is what DescribeLogDirs reports.
    index: OffsetIndex,
    /// Idempotent producers writing here; allocated on first use.
    producers: Option<Box<Producers>>,
}

/// A partition's committed state, as a checkpoint saves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPartition {
    pub id: PartitionId,
    pub log_start: Offset,
    pub high_watermark: Offset,
    /// The committed batches from the log start on.
    pub index: Vec<IndexEntry>,
    pub producers: Vec<SavedProducer>,
}

impl Partition {
    /// What a checkpoint keeps: the committed log (batches below the high
    /// watermark) and the producers as of it; the uncommitted tail is in
    /// the WAL past the checkpoint and replayed from there.
    pub fn saved(&self) -> SavedPartition {
        SavedPartition {
            id: self.id,
            log_start: self.log_start,
            high_watermark: self.high_watermark,
            index: self.index.iter().take_while(|e| e.last < self.high_watermark).collect(),
            producers: self
                .producers
                .as_ref()
                .map_or_else(Vec::new, |p| p.saved_below(self.high_watermark)),
        }
    }

    /// A partition as a checkpoint saved it. The checkpoint comes from
    /// disk: a state that breaks the partition's invariants is refused.
    pub fn restore(saved: SavedPartition) -> Result<Self, String> {
        let SavedPartition {
            id,
            log_start,
            high_watermark,
            index,
            producers,
        } = saved;
        let bad = |why: String| Err(format!("partition {id}: {why}"));
        if log_start.0 < 0 || high_watermark < log_start {
            return bad(format!("log start {log_start} past high watermark {high_watermark}"));
        }
        let cold = index.partition_point(|e| is_cold(e.pos.segment));
        if index[cold..].iter().any(|e| is_cold(e.pos.segment)) {
            return bad("batches in cold files after batches in the WAL".into());
        }
        // An offset range that is empty, or whose last offset has no next
        // offset, is corruption; checked first so the sums below cannot wrap.
        if index
            .iter()
            .any(|e| e.last < e.base || e.base.0 < 0 || e.last.0 == i64::MAX)
        {
            return bad("an empty or out-of-range batch".into());
        }
        for (i, pair) in index.windows(2).enumerate() {
            let in_wal = i >= cold;
            if pair[1].base.0 != pair[0].last.0 + 1 || (in_wal && pair[1].pos <= pair[0].pos) {
                return bad("batches not dense in offsets, or not in WAL order".into());
            }
        }
        match (index.first(), index.last()) {
            (Some(first), Some(last)) if first.last < log_start || last.last.0 + 1 != high_watermark.0 => {
                return bad("batches do not span log start to high watermark".into())
            }
            (None, _) if log_start != high_watermark => return bad("no batches below the high watermark".into()),
            _ => {}
        }
        Ok(Self {
            id,
            next_offset: high_watermark,
            high_watermark,
            log_start,
            index: OffsetIndex::from_entries(index),
            producers: (!producers.is_empty()).then(|| Box::new(Producers::restore(producers))),
        })
    }

    /// The WAL position of the oldest batch this partition retains in a
    /// WAL segment: the segments before it hold none of its data. (Its
    /// older batches, if any, were moved to cold files: they come first.)
    pub fn first_position(&self) -> Option<WalPos> {
        self.not_cold().next().map(|e| e.pos)
    }

    /// The batches from the first one in a WAL segment on (blocks of cold
    /// batches skipped unread).
    fn not_cold(&self) -> impl Iterator<Item = IndexEntry> + '_ {
        let from = self.index.spans().find(|s| !s.all_cold).map(|s| s.base);
        from.map(|f| self.index.iter_from(f))
            .into_iter()
            .flatten()
            .skip_while(|e| is_cold(e.pos.segment))
    }

    /// Its offset index, for questions its block summaries answer.
    pub(crate) fn index(&self) -> &OffsetIndex {
        &self.index
    }

    /// Writes its index blocks stored in `files` again elsewhere
    /// (`store::sparse_files`). Returns how many moved.
    pub fn relocate_index(&mut self, files: &[u64]) -> usize {
        self.index.relocate(files)
    }

    /// The batches held in cold files (the oldest ones).
    pub fn cold(&self) -> impl Iterator<Item = IndexEntry> + '_ {
        self.index.iter().take_while(|e| is_cold(e.pos.segment))
    }

    /// The bytes of its batches in cold files, as (file, bytes) items to
    /// add up per file (from block summaries where it can).
    pub fn cold_bytes(&self) -> impl Iterator<Item = (crate::types::RaftIndex, u64)> + '_ {
        self.index.cold_bytes()
    }

    /// The batches a snapshot named that this replica does not hold yet
    /// (`wal::REMOTE`): among the oldest, as cold ones are.
    pub fn remote(&self) -> impl Iterator<Item = IndexEntry> + '_ {
        self.index.cold_in(crate::wal::REMOTE)
    }

    /// The offsets `[first base, last + 1)` of the batches not held yet.
    pub fn remote_range(&self) -> Option<(Offset, Offset)> {
        let mut remote = self.remote();
        let first = remote.next()?;
        let last = remote.last().unwrap_or(first);
        Some((first.base, Offset(last.last.0 + 1)))
    }

    /// The batches held in WAL segments before `segment`.
    pub fn in_segments_before(&self, segment: crate::types::RaftIndex) -> impl Iterator<Item = IndexEntry> + '_ {
        self.not_cold().take_while(move |e| e.pos.segment < segment)
    }

    /// Points each batch of `moves` (base, where it was, where it is now:
    /// oldest first, dense) that is still where it was at its new place.
    /// Returns how many it pointed.
    pub fn moved(&mut self, moves: &[(Offset, WalPos, WalPos)]) -> usize {
        // Batches trimmed since are gone.
        let start = self.index.first().map_or(Offset(i64::MAX), |e| e.base);
        let moves = &moves[moves.partition_point(|m| m.0 < start)..];
        let Some(&(first, _, _)) = moves.first() else { return 0 };
        let mut done = 0;
        // One pass when the run is as it was (the usual case)...
        self.index.edit(first, moves.len(), |run| {
            for (e, &(base, from, to)) in run.iter_mut().zip(moves) {
                if e.base == base && e.pos == from {
                    e.pos = to;
                    done += 1;
                }
            }
            done > 0
        });
        if done < moves.len() {
            // ...else (compaction rewrote part of it since) batch by batch.
            for &(base, from, to) in moves {
                self.index.edit(base, 1, |run| {
                    let hit = run[0].pos == from;
                    if hit {
                        run[0].pos = to;
                        done += 1;
                    }
                    hit
                });
            }
        }
        done
    }

    /// Replaces the run of batches `old` (still as they were) with `new`,
    /// which covers the same offsets (compaction rewrote them). Returns
    /// whether it did.
    pub fn replace_run(&mut self, old: &[IndexEntry], new: Vec<IndexEntry>) -> bool {
        let (Some(first), Some(last)) = (old.first(), old.last()) else {
            return false;
        };
        assert!(
            new.first().is_some_and(|n| n.base == first.base)
                && new.last().is_some_and(|n| n.last == last.last)
                && new.windows(2).all(|w| w[1].base.0 == w[0].last.0 + 1),
            "partition {}: a rewritten run must cover the offsets it replaces, densely",
            self.id
        );
        self.index.edit(first.base, old.len(), |run| {
            if run[..] != *old {
                return false;
            }
            *run = new;
            true
        })
    }

    /// Batches pulled from a peer (`held`, dense, in a cold file) take the
    /// place of the not-held entries (`wal::REMOTE`) over their offsets; a
    /// not-held entry they cover only in part keeps the rest of its range
    /// (the peer's batches may be cut elsewhere: replicas compact their
    /// own copies). Entries trimmed since are skipped. Returns the bytes
    /// now held.
    pub fn fill_remote(&mut self, held: Vec<IndexEntry>) -> u64 {
        let remote = |e: &IndexEntry| e.pos.segment == crate::wal::REMOTE;
        let start = self.index.first().map_or(self.log_start, |e| e.base);
        let held: Vec<IndexEntry> = held.into_iter().filter(|e| e.last >= start).collect();
        let (Some(first), Some(last)) = (held.first().copied(), held.last().copied()) else {
            return 0;
        };
        // The entries the held batches cover, and the one after them.
        let mut covered = Vec::new();
        let mut after = None;
        for e in self.index.iter_from(first.base) {
            if e.last <= last.last {
                covered.push(e);
            } else {
                after = Some(e);
                break;
            }
        }
        let Some(&at) = covered.first().or(after.as_ref()) else {
            return 0;
        };
        // The first batch held starts where the entry it replaces does, or
        // anywhere up to the log start (what is below it is not served).
        let fits = (at.base == first.base || (at.base == start && first.base <= self.log_start))
            && covered.iter().all(remote)
            && after.is_none_or(|e| e.base > last.last || remote(&e));
        if !fits {
            return 0; // changed since it was asked for: what is lacked is asked again
        }
        // A not-held entry they cover only in part keeps the rest.
        let rest = after.filter(|e| e.base <= last.last);
        let count = covered.len() + usize::from(rest.is_some());
        let bytes: u64 = held.iter().map(|e| e.len as u64).sum();
        let done = self.index.edit(at.base, count, |run| {
            let mut new = held;
            if let Some(mut rest) = rest {
                rest.base = Offset(last.last.0 + 1);
                new.push(rest);
            }
            *run = new;
            true
        });
        if done {
            bytes
        } else {
            0
        }
    }

    /// Index entries held (a checkpoint's size grows with them).
    pub fn batches(&self) -> usize {
        self.index.len()
    }

    pub fn new(id: PartitionId) -> Self {
        Self {
            id,
            next_offset: Offset(0),
            high_watermark: Offset(0),
            log_start: Offset(0),
            index: OffsetIndex::default(),
            producers: None,
        }
    }

    pub fn producers(&self) -> Option<&Producers> {
        self.producers.as_deref()
    }

    pub fn producers_mut(&mut self) -> &mut Producers {
        self.producers.get_or_insert_with(Default::default)
    }

    /// Forgets producers idle since before `before_ms` (and the producer
    /// table itself once empty); returns how many.
    pub fn expire_producers(&mut self, before_ms: i64) -> usize {
        let Some(ps) = self.producers.as_mut() else {
            return 0;
        };
        let n = ps.expire(before_ms);
        if ps.is_empty() {
            self.producers = None;
        }
        n
    }

    /// Bytes of the stored batches this partition holds from its log start.
    pub fn size_bytes(&self) -> u64 {
        self.index.bytes()
    }

    /// Memory the offset index holds.
    pub fn index_heap_bytes(&self) -> usize {
        self.index.heap_bytes()
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn log_start(&self) -> Offset {
        self.log_start
    }

    /// End of the stored (persisted) log: one past the last indexed offset.
    pub fn indexed_end(&self) -> Offset {
        self.index.end().unwrap_or(self.log_start)
    }

    /// Reserves `count` offsets for a batch the leader is about to propose.
    pub fn assign(&mut self, count: u32) -> Offset {
        let base = self.next_offset;
        self.next_offset = Offset(base.0 + count as i64);
        base
    }

    /// Records a persisted batch. Offsets must continue the log densely.
    pub fn index_batch(&mut self, entry: IndexEntry) {
        assert_eq!(
            entry.base,
            self.indexed_end(),
            "partition {}: offsets not dense (batch at {} after end {})",
            self.id,
            entry.base,
            self.indexed_end()
        );
        assert!(entry.last >= entry.base, "partition {}: empty batch range", self.id);
        self.index.push(entry);
        if self.next_offset < self.indexed_end() {
            // Recovery replays batches that this leader did not assign.
            self.next_offset = self.indexed_end();
        }
    }

    /// The log start that keeps at most `limit` bytes of committed batches
    /// (the newest ones; never past the high watermark), if it is past the
    /// current one.
    pub fn start_keeping(&self, limit: u64) -> Option<Offset> {
        let mut excess = self.index.bytes().checked_sub(limit)?;
        let mut to = None;
        'spans: for span in self.index.spans() {
            if excess == 0 {
                break;
            }
            // A committed block wholly in the excess goes whole, unread.
            if span.last < self.high_watermark && span.bytes <= excess {
                excess -= span.bytes;
                to = Some(Offset(span.last.0 + 1));
                continue;
            }
            for e in self.index.entries_of(&span) {
                if excess == 0 || e.last >= self.high_watermark {
                    break 'spans;
                }
                excess = excess.saturating_sub(e.len as u64);
                to = Some(Offset(e.last.0 + 1));
            }
        }
        to.filter(|&t| t > self.log_start)
    }

    /// The largest timestamp of the oldest committed batch: when it is
    /// older than `retention.ms`, that batch is the next to go.
    pub fn oldest_committed_timestamp(&self) -> Option<i64> {
        self.index
            .first()
            .filter(|e| e.last < self.high_watermark)
            .map(|e| e.max_timestamp_ms)
    }

    /// The log start that drops the committed batches whose largest
    /// timestamp is before `cutoff_ms`, oldest first up to the first one
    /// that is not (Kafka deletes whole segments by their largest
    /// timestamp, likewise from the oldest), if it is past the current one.
    pub fn start_after_expired(&self, cutoff_ms: i64) -> Option<Offset> {
        let mut to = None;
        'spans: for span in self.index.spans() {
            // A committed block whose every batch expired goes whole, unread.
            if span.last < self.high_watermark && span.max_timestamp_ms < cutoff_ms {
                to = Some(Offset(span.last.0 + 1));
                continue;
            }
            for e in self.index.entries_of(&span) {
                if e.last >= self.high_watermark || e.max_timestamp_ms >= cutoff_ms {
                    break 'spans;
                }
                to = Some(Offset(e.last.0 + 1));
            }
            break;
        }
        to.filter(|&t| t > self.log_start)
    }

    /// Moves the log start up to `offset` (DeleteRecords, retention: a
    /// committed trim entry) and forgets the batches wholly below it.
    /// Returns whether it moved. The leader never asks past the high
    /// watermark, and every replica has applied as far when it applies the
    /// trim; the entry comes from a peer all the same, so a trim past it
    /// stops at it (the caller logs that) rather than stopping the shard.
    pub fn trim_to(&mut self, offset: Offset) -> bool {
        let offset = offset.min(self.high_watermark);
        if offset <= self.log_start {
            return false;
        }
        self.log_start = offset;
        self.index.remove_below(offset);
        true
    }

    /// Drops the stored batches from `offset` on: an uncommitted tail that
    /// a new Raft leader replaced. Committed offsets never go.
    pub fn truncate_from(&mut self, offset: Offset) {
        assert!(
            offset >= self.high_watermark,
            "partition {}: truncating to {} below the high watermark {}",
            self.id,
            offset,
            self.high_watermark
        );
        self.index.remove_from(offset);
        self.forget_unstored();
    }

    /// Takes back offsets handed out for batches that were never stored
    /// (the leader lost its leadership before they were written).
    pub fn forget_unstored(&mut self) {
        self.next_offset = self.indexed_end();
        if let Some(p) = self.producers.as_deref_mut() {
            p.forget_from(self.next_offset);
        }
    }

    /// Makes offsets below `end` visible. Never moves backwards.
    pub fn advance_high_watermark(&mut self, end: Offset) -> bool {
        assert!(
            end <= self.indexed_end(),
            "partition {}: high watermark past the stored log",
            self.id
        );
        if end > self.high_watermark {
            self.high_watermark = end;
            true
        } else {
            false
        }
    }

    /// Batches holding committed offsets from `offset` on, up to about
    /// `max_bytes` (the first batch is always included, so a consumer can
    /// always make progress, as KIP-74 requires).
    pub fn committed_batches_from(&self, offset: Offset, max_bytes: usize) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in self.index.iter_from(offset) {
            if e.last >= self.high_watermark {
                break;
            }
            if !out.is_empty() && bytes + e.len as usize > max_bytes {
                break;
            }
            bytes += e.len as usize;
            out.push(e);
        }
        out
    }

    /// The first committed batch at `from` or later (and at the log start
    /// or later) whose max timestamp reaches `timestamp_ms`: the batch that
    /// may hold the first record at or after that time.
    pub fn batch_for_timestamp(&self, timestamp_ms: i64, from: Offset) -> Option<IndexEntry> {
        let from = from.max(self.log_start);
        // Blocks wholly before `from`, or with no batch that late, are
        // skipped by their summaries.
        let span = self
            .index
            .spans()
            .take_while(|s| s.base < self.high_watermark)
            .find(|s| s.last >= from && s.max_timestamp_ms >= timestamp_ms)?;
        self.index
            .entries_of(&span)
            .into_iter()
            .take_while(|e| e.last < self.high_watermark)
            .find(|e| e.last >= from && e.max_timestamp_ms >= timestamp_ms)
    }

    /// The first committed batch holding the largest timestamp (the first,
    /// as Kafka keeps the first offset that reached the maximum).
    pub fn batch_of_max_timestamp(&self) -> Option<IndexEntry> {
        let mut best: Option<IndexEntry> = None;
        for span in self.index.spans() {
            if span.base >= self.high_watermark {
                break;
            }
            // A committed block that cannot beat the best so far is skipped.
            if span.last < self.high_watermark && best.is_some_and(|b| span.max_timestamp_ms <= b.max_timestamp_ms) {
                continue;
            }
            for e in self.index.entries_of(&span) {
                if e.last >= self.high_watermark {
                    break;
                }
                if best.is_none_or(|b| e.max_timestamp_ms > b.max_timestamp_ms) {
                    best = Some(e);
                }
            }
        }
        best
    }

    /// The committed batches holding offsets at `from` or later and at the
    /// log start or later.
    pub(crate) fn committed_from(&self, from: Offset) -> impl Iterator<Item = IndexEntry> + '_ {
        let hw = self.high_watermark;
        self.index
            .iter_from(from.max(self.log_start))
            .take_while(move |e| e.last < hw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RaftIndex;

    fn entry(base: i64, last: i64, len: u32) -> IndexEntry {
        IndexEntry {
            base: Offset(base),
            last: Offset(last),
            pos: WalPos {
                segment: RaftIndex(1),
                offset: base as u64 * 100,
            },
            len,
            max_timestamp_ms: base * 10,
        }
    }

    #[test]
    fn a_checkpoint_with_offsets_at_the_end_of_the_range_is_refused_not_a_panic() {
        // Found by the checkpoint fuzz target in CI: a batch ending at
        // i64::MAX overflowed the density check.
        let saved = |index: Vec<IndexEntry>, hw: i64| SavedPartition {
            id: PartitionId(1),
            log_start: Offset(0),
            high_watermark: Offset(hw),
            index,
            producers: Vec::new(),
        };
        assert!(Partition::restore(saved(vec![entry(0, i64::MAX, 1)], i64::MAX)).is_err());
        assert!(Partition::restore(saved(vec![entry(0, i64::MAX, 1), entry(1, 2, 1)], 3)).is_err());
        assert!(Partition::restore(saved(vec![entry(0, 1, 1), entry(2, 3, 1)], 4)).is_ok());
    }

    #[test]
    fn retention_keeps_the_newest_bytes_of_committed_batches() {
        let mut p = Partition::new(PartitionId(1));
        for i in 0..10 {
            p.index_batch(entry(i * 2, i * 2 + 1, 100));
        }
        assert_eq!(p.size_bytes(), 1000);
        p.advance_high_watermark(Offset(16)); // 8 batches committed
        assert_eq!(p.start_keeping(1000), None);
        assert_eq!(
            p.start_keeping(750),
            Some(Offset(6)),
            "three batches go, 700 bytes stay"
        );
        assert_eq!(p.start_keeping(0), Some(Offset(16)), "never past the high watermark");
        assert!(p.trim_to(Offset(6)));
        assert_eq!((p.log_start(), p.size_bytes()), (Offset(6), 700));
        assert_eq!(p.start_keeping(700), None);
        // Batch i has max timestamp 20 * i (entry() stamps base * 10).
        assert_eq!(p.oldest_committed_timestamp(), Some(60));
        assert_eq!(p.start_after_expired(60), None, "nothing strictly older");
        assert_eq!(
            p.start_after_expired(101),
            Some(Offset(12)),
            "batches at 60, 80 and 100 go"
        );
        assert_eq!(
            p.start_after_expired(i64::MAX),
            Some(Offset(16)),
            "committed batches only"
        );
        assert!(!p.trim_to(Offset(2)), "never back");
        assert!(p.trim_to(Offset(99)), "a trim past the high watermark stops there");
        assert_eq!(p.log_start(), Offset(16));
        p.index_batch(entry(20, 21, 100));
        p.truncate_from(Offset(18));
        assert_eq!(p.size_bytes(), 100);
    }

    #[test]
    fn reads_stop_at_high_watermark_and_size() {
        let mut p = Partition::new(PartitionId(1));
        assert_eq!(p.assign(3), Offset(0));
        p.index_batch(entry(0, 2, 100));
        assert_eq!(p.assign(2), Offset(3));
        p.index_batch(entry(3, 4, 100));
        assert!(p.committed_batches_from(Offset(0), 1 << 20).is_empty());
        p.advance_high_watermark(Offset(3));
        assert_eq!(p.committed_batches_from(Offset(1), 1 << 20).len(), 1);
        p.advance_high_watermark(Offset(5));
        assert_eq!(p.committed_batches_from(Offset(0), 150).len(), 1);
        assert_eq!(p.committed_batches_from(Offset(0), 1 << 20).len(), 2);
        assert_eq!(p.committed_batches_from(Offset(4), 1).len(), 1);
        assert!(p.committed_batches_from(Offset(5), 1 << 20).is_empty());
        let at = |ts, from| p.batch_for_timestamp(ts, Offset(from)).map(|e| e.base);
        assert_eq!(at(1, 0), Some(Offset(3)));
        assert_eq!(at(31, 0), None);
        assert_eq!(at(0, 3), Some(Offset(3)));
        assert_eq!(at(0, 5), None);
        assert_eq!(p.batch_of_max_timestamp().map(|e| e.base), Some(Offset(3)));
    }

    #[test]
    #[should_panic(expected = "not dense")]
    fn gap_in_offsets_is_corruption() {
        let mut p = Partition::new(PartitionId(1));
        p.index_batch(entry(0, 2, 100));
        p.index_batch(entry(4, 5, 100));
    }
}
