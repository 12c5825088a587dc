//! Where the Raft entries sit in the WAL, sparsely: enough to hand a
//! lagging follower any entry the WAL still holds, without keeping them in
//! memory, and to answer raft-rs's `term(index)` for all of them.
//!
//! - `terms`: runs `(first index, term)`: terms change only at elections.
//! - `checkpoints`: `(index, position of its record)` at the start of each
//!   segment, every `CHECKPOINT_BYTES` of log, and wherever a new leader's
//!   entries replaced a tail (a Raft overwrite). From a checkpoint up to
//!   the next one, records follow each other with consecutive indexes and
//!   all of them are live: a record that an overwrite replaced always lies
//!   before the overwrite's checkpoint in index order, and reads of a span
//!   stop at the next checkpoint's index.

use super::WalPos;

/// Most log bytes between two checkpoints: a fetch reads at most this much
/// before the first entry it wants.
pub const CHECKPOINT_BYTES: u64 = 1 << 20;

#[derive(Debug, Default)]
pub struct EntryIndex {
    checkpoints: Vec<(u64, WalPos)>,
    terms: Vec<(u64, u64)>,
    last: u64,
    bytes_since_checkpoint: u64,
    /// Index and term of the last entry of the segments reclaimed (what
    /// raft-rs asks `term` of, just before the first entry held).
    before: Option<(u64, u64)>,
}

/// A run of live records to read: indexes `[from, to)` start at `pos`
/// (the record of `from`... or of the checkpoint before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index of the record at `pos`.
    pub start: u64,
    /// One past the last index that belongs to this span.
    pub end: u64,
    pub pos: WalPos,
}

impl EntryIndex {
    /// Notes one entry record (not hard state) at `pos` (the start of its
    /// frame), `framed` bytes long, in write order.
    pub fn record(&mut self, index: u64, term: u64, pos: WalPos, framed: u64) {
        let overwrite = index <= self.last;
        if overwrite {
            let keep = self.checkpoints.partition_point(|c| c.0 < index);
            self.checkpoints.truncate(keep);
            let keep = self.terms.partition_point(|t| t.0 < index);
            self.terms.truncate(keep);
        }
        let new_segment = self.checkpoints.last().is_none_or(|c| c.1.segment != pos.segment);
        if overwrite || new_segment || self.bytes_since_checkpoint >= CHECKPOINT_BYTES {
            self.checkpoints.push((index, pos));
            self.bytes_since_checkpoint = 0;
        }
        if self.terms.last().is_none_or(|t| t.1 != term) {
            self.terms.push((index, term));
        }
        self.last = index;
        self.bytes_since_checkpoint += framed;
    }

    /// The entry just before the first one held, once older segments were
    /// reclaimed (from the checkpoint at start, `drop_segments_before` after).
    pub fn set_before(&mut self, index: u64, term: u64) {
        self.before = Some((index, term));
        if self.checkpoints.is_empty() {
            self.last = self.last.max(index);
        }
    }

    /// Forgets the entries of segments before `segment` (reclaimed).
    pub fn drop_segments_before(&mut self, segment: crate::types::RaftIndex) {
        let gone = self.checkpoints.partition_point(|c| c.1.segment < segment);
        if gone == 0 {
            return;
        }
        let first = self.checkpoints.get(gone).map_or(self.last + 1, |c| c.0);
        let before_term = self.term(first - 1).unwrap_or(0);
        self.checkpoints.drain(..gone);
        let runs_before = self.terms.partition_point(|t| t.0 <= first).saturating_sub(1);
        self.terms.drain(..runs_before);
        self.before = Some((first - 1, before_term));
    }

    /// The first entry index of the first segment that starts past
    /// `index` (a binary search, then at most one segment's checkpoints).
    pub fn segment_start_after(&self, index: u64) -> Option<u64> {
        let i = self.checkpoints.partition_point(|c| c.0 <= index);
        let mut segment = i.checked_sub(1).map(|j| self.checkpoints[j].1.segment);
        for &(first, pos) in &self.checkpoints[i..] {
            if segment != Some(pos.segment) {
                return Some(first);
            }
            segment = Some(pos.segment);
        }
        None
    }

    /// The first entry index of each segment that holds entries, in order.
    pub fn segment_starts(&self) -> impl Iterator<Item = (crate::types::RaftIndex, u64)> + '_ {
        let mut prev = None;
        self.checkpoints.iter().filter_map(move |&(index, pos)| {
            let new = prev != Some(pos.segment);
            prev = Some(pos.segment);
            new.then_some((pos.segment, index))
        })
    }

    /// The first index the WAL holds (`last + 1` when it holds none).
    pub fn first_index(&self) -> u64 {
        self.checkpoints.first().map_or(self.last + 1, |c| c.0)
    }

    pub fn last_index(&self) -> u64 {
        self.last
    }

    /// The term of entry `index`, if the WAL holds it.
    pub fn term(&self, index: u64) -> Option<u64> {
        if let Some((before, term)) = self.before {
            if index == before {
                return Some(term);
            }
        }
        if index < self.first_index() || index > self.last {
            return None;
        }
        let i = self.terms.partition_point(|t| t.0 <= index);
        Some(self.terms[i.checked_sub(1)?].1)
    }

    /// The spans to read for indexes `[low, high)`.
    pub fn spans(&self, low: u64, high: u64) -> Vec<Span> {
        let high = high.min(self.last + 1);
        if low >= high {
            return Vec::new();
        }
        let first = self.checkpoints.partition_point(|c| c.0 <= low).saturating_sub(1);
        let mut out = Vec::new();
        for (k, &(start, pos)) in self.checkpoints.iter().enumerate().skip(first) {
            if start >= high {
                break;
            }
            let end = self.checkpoints.get(k + 1).map_or(self.last + 1, |c| c.0);
            out.push(Span { start, end, pos });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RaftIndex;

    fn at(segment: u64, offset: u64) -> WalPos {
        WalPos {
            segment: RaftIndex(segment),
            offset,
        }
    }

    #[test]
    fn overwrites_cut_terms_and_checkpoints() {
        let mut ix = EntryIndex::default();
        for i in 1..=10 {
            ix.record(i, 1, at(1, i * 100), 100);
        }
        assert_eq!((ix.first_index(), ix.last_index(), ix.term(7)), (1, 10, Some(1)));
        // A new leader (term 2) replaces 6.. with its own entries.
        for i in 6..=8 {
            ix.record(i, 2, at(1, 2000 + i * 100), 100);
        }
        assert_eq!(
            (ix.last_index(), ix.term(5), ix.term(6), ix.term(9)),
            (8, Some(1), Some(2), None)
        );
        let spans = ix.spans(3, 9);
        assert_eq!(
            spans,
            vec![
                Span {
                    start: 1,
                    end: 6,
                    pos: at(1, 100)
                },
                Span {
                    start: 6,
                    end: 9,
                    pos: at(1, 2600)
                },
            ]
        );
        // A new segment starts a span.
        ix.record(9, 2, at(9, 0), 100);
        assert_eq!(
            ix.spans(9, 10),
            vec![Span {
                start: 9,
                end: 10,
                pos: at(9, 0)
            }]
        );
        assert!(ix.spans(11, 20).is_empty());
        assert_eq!(ix.segment_start_after(3), Some(9), "the next segment starts at 9");
        assert_eq!(ix.segment_start_after(9), None);
        ix.drop_segments_before(RaftIndex(9));
        assert_eq!((ix.first_index(), ix.term(8), ix.term(9)), (9, Some(2), Some(2)));
        assert_eq!(ix.term(7), None, "reclaimed");
    }
}
