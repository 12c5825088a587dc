//! `raft::Storage` over the WAL: the durable log is the WAL itself; this
//! struct holds what raft-rs reads back — the hard state, the voters, and
//! in memory the entries not yet applied (plus recent ones followers still
//! need). Older entries are read back from the WAL when a lagging follower
//! needs them: raft-rs's asynchronous fetch (the `entries` call answers
//! "temporarily unavailable", the group reads them and calls
//! `on_entries_fetched`), so a follower catches up from the WAL while it
//! holds the entries. Once a prefix was reclaimed, a follower behind it
//! gets a snapshot: `snapshot()` answers "temporarily unavailable" and
//! asks for one, the shard builds it from its state (`offer`), and the
//! next call hands it over.

use std::cell::RefCell;
use std::rc::Rc;

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::wal::EntryIndex;

/// An asynchronous read of old entries raft-rs asked for.
pub struct Fetch {
    pub low: u64,
    pub context: GetEntriesContext,
}

pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the entry just before `entries` (the last one
    /// released; 0 for an empty log).
    offset_index: u64,
    offset_term: u64,
    /// Entries `offset_index + 1 ..= last_index()`, contiguous: the ones
    /// not yet applied, and applied ones a lagging follower still needs.
    entries: Vec<Entry>,
    /// Payload bytes in `entries`, and how many applied entries may hold
    /// at most for followers (beyond it, the oldest are released).
    bytes: usize,
    retain_bytes: usize,
    /// Where every entry the WAL holds sits (shared with the WAL writer).
    wal: Rc<RefCell<EntryIndex>>,
    /// Old entries read back from the WAL, from the given index on.
    fetched: Option<(u64, Vec<Entry>)>,
    /// Reads raft-rs asked for and nobody started yet.
    fetches: RefCell<Vec<Fetch>>,
    /// The last snapshot the shard built, and whether raft-rs asked for
    /// one that it does not answer (too old, or none).
    snapshot: Option<Snapshot>,
    snapshot_wanted: std::cell::Cell<bool>,
}

impl LogStore {
    pub fn new(
        voters: Vec<u64>,
        hard_state: HardState,
        applied: (u64, u64),
        entries: Vec<Entry>,
        retain_bytes: usize,
        wal: Rc<RefCell<EntryIndex>>,
    ) -> Self {
        let mut s = Self {
            hard_state,
            conf_state: ConfState::from((voters, vec![])),
            offset_index: applied.0,
            offset_term: applied.1,
            entries: Vec::new(),
            bytes: 0,
            retain_bytes,
            wal,
            fetched: None,
            fetches: RefCell::new(Vec::new()),
            snapshot: None,
            snapshot_wanted: std::cell::Cell::new(false),
        };
        s.append(&entries);
        s
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The held entries from `index` on (those an append at `index` replaces).
    pub fn tail_from(&self, index: u64) -> &[Entry] {
        let from = index.saturating_sub(self.offset_index + 1) as usize;
        &self.entries[from.min(self.entries.len())..]
    }

    /// Appends persisted entries; an index at or below the last one replaces
    /// the tail from there (Raft log overwrite).
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        assert!(
            first.index > self.offset_index && first.index > self.hard_state.commit.min(self.last()),
            "Raft append at {} rewrites committed entries (commit {})",
            first.index,
            self.hard_state.commit
        );
        let keep = (first.index - self.offset_index - 1) as usize;
        assert!(keep <= self.entries.len(), "append leaves a gap in the Raft log");
        for e in self.entries.drain(keep..) {
            self.bytes -= e.data.len();
        }
        for (i, e) in ents.iter().enumerate() {
            assert_eq!(e.index, first.index + i as u64, "Raft entries not contiguous");
            self.bytes += e.data.len();
        }
        self.entries.extend_from_slice(ents);
    }

    /// Releases entries up to `keep_after` (what every follower has), and
    /// more, up to `applied`, while the held bytes exceed the limit.
    /// Entries not yet applied are always kept.
    pub fn release(&mut self, keep_after: u64, applied: u64) {
        let mut n = keep_after.min(applied).saturating_sub(self.offset_index) as usize;
        let max = (applied.saturating_sub(self.offset_index) as usize).min(self.entries.len());
        n = n.min(max);
        let mut bytes = self.bytes - self.entries[..n].iter().map(|e| e.data.len()).sum::<usize>();
        while bytes > self.retain_bytes && n < max {
            bytes -= self.entries[n].data.len();
            n += 1;
        }
        if n == 0 {
            return;
        }
        self.offset_term = self.entries[n - 1].term;
        self.offset_index = self.entries[n - 1].index;
        self.entries.drain(..n);
        self.bytes = bytes;
    }

    /// Whether raft-rs asked for a snapshot it did not get (once).
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// A snapshot of the state machine as of `(index, term)`, for the
    /// followers raft-rs sends one to.
    pub fn offer(&mut self, (index, term): (u64, u64), data: bytes::Bytes) {
        let mut snap = Snapshot::default();
        snap.set_data(data);
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        self.snapshot = Some(snap);
    }

    /// This replica's log now starts after the snapshot `(index, term)`:
    /// nothing before it is held, everything after it comes from the
    /// leader.
    pub fn installed(&mut self, index: u64, term: u64) {
        self.offset_index = index;
        self.offset_term = term;
        self.entries.clear();
        self.bytes = 0;
        self.fetched = None;
        self.hard_state.commit = self.hard_state.commit.max(index);
    }

    /// Reads raft-rs is waiting for.
    pub fn take_fetches(&self) -> Vec<Fetch> {
        std::mem::take(&mut *self.fetches.borrow_mut())
    }

    /// Entries read back from the WAL from `low` on, for `entries()`.
    pub fn set_fetched(&mut self, low: u64, entries: Vec<Entry>) {
        self.fetched = Some((low, entries));
    }

    fn first(&self) -> u64 {
        self.offset_index + 1
    }

    fn last(&self) -> u64 {
        self.offset_index + self.entries.len() as u64
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low < self.first() {
            // Released from memory: served from what was read back, or read.
            if let Some((from, ents)) = &self.fetched {
                if (*from..from + ents.len() as u64).contains(&low) {
                    let at = (low - from) as usize;
                    let upto = ((high - from) as usize).min(ents.len());
                    let mut out = ents[at..upto].to_vec();
                    raft::util::limit_size(&mut out, max_size);
                    return Ok(out);
                }
            }
            if low < self.wal.borrow().first_index() || !context.can_async() {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            self.fetches.borrow_mut().push(Fetch { low, context });
            return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        }
        assert!(high <= self.last() + 1, "entries() past the last index");
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size);
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.offset_index {
            return Ok(self.offset_term);
        }
        if idx < self.first() {
            let wal = self.wal.borrow();
            return match wal.term(idx) {
                Some(t) => Ok(t),
                None if idx == 0 => Ok(0),
                None => Err(raft::Error::Store(StorageError::Compacted)),
            };
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first().min(self.wal.borrow().first_index()))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Asked for when a follower needs entries before the first one
        // held. The last snapshot built serves while the log still goes on
        // from it (its next entry is held); otherwise the shard builds a
        // new one and raft-rs asks again at the next heartbeat.
        let first = self.first_index()?;
        if let Some(snap) = &self.snapshot {
            let index = snap.get_metadata().index;
            if index + 1 >= first && index >= request_index {
                return Ok(snap.clone());
            }
        }
        self.snapshot_wanted.set(true);
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn append_overwrite_and_compact() {
        let mut s = LogStore::new(
            vec![1],
            HardState::default(),
            (0, 0),
            vec![],
            1 << 20,
            Default::default(),
        );
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert_eq!(s.last_index().unwrap(), 3);
        s.append(&[entry(3, 2), entry(4, 2)]);
        assert_eq!(s.term(3).unwrap(), 2);
        s.release(2, 4);
        assert_eq!(s.first(), 3);
        assert_eq!(s.term(2).unwrap(), 1);
        assert!(s.entries(1, 3, None, GetEntriesContext::empty(false)).is_err());
        // With the entries in the WAL, an asynchronous caller gets a read
        // started instead, and the entries once they were read back.
        for (i, t) in [(1, 1), (2, 1), (3, 2), (4, 2)] {
            let pos = crate::wal::WalPos {
                segment: crate::types::RaftIndex(1),
                offset: i * 100,
            };
            s.wal.borrow_mut().record(i, t, pos, 100);
        }
        assert_eq!(s.first_index().unwrap(), 1);
        assert_eq!(
            s.entries(1, 3, None, GetEntriesContext::empty(true)),
            Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable))
        );
        assert_eq!(s.take_fetches().iter().map(|f| f.low).collect::<Vec<_>>(), vec![1]);
        s.set_fetched(1, vec![entry(1, 1), entry(2, 1)]);
        assert_eq!(s.entries(1, 3, None, GetEntriesContext::empty(true)).unwrap().len(), 2);
        assert_eq!(s.term(1).unwrap(), 1);
        assert_eq!(s.entries(3, 5, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
    }
}
