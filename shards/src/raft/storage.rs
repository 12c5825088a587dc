//! `raft::Storage` over the WAL: the durable log is the WAL itself; this
//! struct holds what raft-rs reads back — the hard state, the voters, and
//! the entries not yet applied (the applied prefix is the partitions' state,
//! rebuilt from the WAL at start, which is our "snapshot").

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry folded into the state machine.
    applied_index: u64,
    applied_term: u64,
    /// Entries `applied_index + 1 ..= last_index()`, contiguous.
    entries: Vec<Entry>,
}

impl LogStore {
    pub fn new(voters: Vec<u64>, hard_state: HardState, applied: (u64, u64), entries: Vec<Entry>) -> Self {
        let mut s = Self {
            hard_state,
            conf_state: ConfState::from((voters, vec![])),
            applied_index: applied.0,
            applied_term: applied.1,
            entries: Vec::new(),
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

    /// Appends persisted entries; an index at or below the last one replaces
    /// the tail from there (Raft log overwrite).
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        assert!(first.index > self.applied_index, "append below the applied index");
        let keep = (first.index - self.applied_index - 1) as usize;
        assert!(keep <= self.entries.len(), "append leaves a gap in the Raft log");
        self.entries.truncate(keep);
        for (i, e) in ents.iter().enumerate() {
            assert_eq!(e.index, first.index + i as u64, "Raft entries not contiguous");
        }
        self.entries.extend_from_slice(ents);
    }

    /// Drops entries up to `index`, once the state machine holds them.
    pub fn compact_to(&mut self, index: u64) {
        if index <= self.applied_index {
            return;
        }
        let n = ((index - self.applied_index) as usize).min(self.entries.len());
        if n == 0 {
            return;
        }
        self.applied_term = self.entries[n - 1].term;
        self.applied_index = self.entries[n - 1].index;
        self.entries.drain(..n);
    }

    fn first(&self) -> u64 {
        self.applied_index + 1
    }

    fn last(&self) -> u64 {
        self.applied_index + self.entries.len() as u64
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
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(high <= self.last() + 1, "entries() past the last index");
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.applied_index {
            return Ok(self.applied_term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Followers that fall behind the compacted prefix are caught up from
        // the WAL by the replication transport, not by raft snapshots.
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
        let mut s = LogStore::new(vec![1], HardState::default(), (0, 0), vec![]);
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert_eq!(s.last_index().unwrap(), 3);
        s.append(&[entry(3, 2), entry(4, 2)]);
        assert_eq!(s.term(3).unwrap(), 2);
        s.compact_to(2);
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 1);
        assert!(s.entries(1, 3, None, GetEntriesContext::empty(false)).is_err());
        assert_eq!(s.entries(3, 5, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
    }
}
