//! Batches read ahead of consumers that are behind the tail of the log.
//!
//! A consumer catching up fetches a partition range after range, each one
//! a round trip: without read-ahead the disk is idle while the response
//! travels and the client works, and the socket is idle while the next
//! O_DIRECT reads run. When a fetch leaves committed data behind it, the
//! shard reads the next range of that partition (about as much as the
//! fetch took) in the background, back to back in one buffer, the way a
//! fetch returns it: the next fetch is then answered with a slice of that
//! buffer, without waiting for the disk and without copying again.
//!
//! This is a cache of the shard, not a buffer of the partition (DESIGN
//! invariant 7): it is bounded as a whole, charged to the shard's memory
//! budget, and evicted oldest first. Entries are keyed by WAL position,
//! which never holds other bytes while the shard runs (the WAL only
//! appends), so a run cannot go stale.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::budget::Charge;
use crate::partition::IndexEntry;
use crate::types::PartitionId;
use crate::wal::WalPos;

/// The next fetch of a partition, as far as the read-ahead can answer it.
pub enum Lookup {
    /// The first `covered` planned batches, back to back.
    Ready {
        bytes: Bytes,
        covered: usize,
    },
    /// The first `covered` planned batches are being read; `done`
    /// disconnects when the read has finished (or failed).
    Reading {
        done: flume::Receiver<()>,
        covered: usize,
    },
    Miss,
}

enum RunState {
    /// Senders dropped (so receivers wake) when the read finishes.
    Reading(Vec<flume::Sender<()>>),
    Ready {
        data: Bytes,
        _charge: Charge,
    },
}

struct Run {
    id: u64,
    /// Positions of the run's batches, in offset order.
    positions: Vec<WalPos>,
    /// `ends[i]`: where batch `i` ends in the run's data.
    ends: Vec<usize>,
    state: RunState,
}

impl Run {
    fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }
}

pub struct ReadAhead {
    runs: HashMap<PartitionId, VecDeque<Run>>,
    /// Oldest first: the eviction order.
    order: VecDeque<(PartitionId, u64)>,
    /// Bytes of all runs, reading or ready.
    bytes: usize,
    cap_bytes: usize,
    next_id: u64,
    /// Runs started.
    pub started: u64,
    /// Fetches of a partition answered (partly) by a run; counted by the
    /// shard, which may look a run up twice for one fetch.
    pub hits: u64,
}

impl ReadAhead {
    pub fn new(cap_bytes: usize) -> Self {
        Self {
            runs: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            cap_bytes,
            next_id: 0,
            started: 0,
            hits: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The most one run may take: a few partitions can read ahead at once.
    pub fn run_limit(&self) -> usize {
        self.cap_bytes / 4
    }

    /// Whether a run holds (or is reading) the batch at `pos`.
    pub fn covers(&self, partition: PartitionId, pos: WalPos) -> bool {
        self.find(partition, pos).is_some()
    }

    fn find(&self, partition: PartitionId, pos: WalPos) -> Option<(usize, usize)> {
        let runs = self.runs.get(&partition)?;
        runs.iter()
            .enumerate()
            .find_map(|(r, run)| run.positions.binary_search(&pos).ok().map(|i| (r, i)))
    }

    /// How much of `planned` (a partition's next batches, in order) a run
    /// can answer, starting with the first.
    pub fn lookup(&mut self, partition: PartitionId, planned: &[IndexEntry]) -> Lookup {
        let Some(first) = planned.first() else {
            return Lookup::Miss;
        };
        let Some((r, i)) = self.find(partition, first.pos) else {
            return Lookup::Miss;
        };
        let run = &mut self.runs.get_mut(&partition).expect("found above")[r];
        let covered = planned
            .iter()
            .zip(&run.positions[i..])
            .take_while(|(b, pos)| b.pos == **pos)
            .count();
        debug_assert!(covered >= 1);
        debug_assert_eq!(
            run.ends[i] - run.start_of(i),
            first.len as usize,
            "a read-ahead batch changed length"
        );
        let range = run.start_of(i)..run.ends[i + covered - 1];
        match &mut run.state {
            RunState::Ready { data, .. } => Lookup::Ready {
                bytes: data.slice(range),
                covered,
            },
            RunState::Reading(waiters) => {
                let (tx, rx) = flume::bounded(1);
                waiters.push(tx);
                Lookup::Reading { done: rx, covered }
            }
        }
    }

    /// Makes room for `len` more bytes by forgetting the oldest finished
    /// runs; false if runs still reading hold too much.
    pub fn make_room(&mut self, len: usize) -> bool {
        if len > self.cap_bytes {
            return false;
        }
        while self.bytes + len > self.cap_bytes {
            if !self.evict_oldest() {
                return false;
            }
        }
        true
    }

    /// Forgets the oldest finished run; false when there is none.
    pub fn evict_oldest(&mut self) -> bool {
        let Some(at) = self.order.iter().position(|(p, id)| {
            self.runs
                .get(p)
                .and_then(|runs| runs.iter().find(|r| r.id == *id))
                .is_some_and(|r| matches!(r.state, RunState::Ready { .. }))
        }) else {
            return false;
        };
        let (p, id) = self.order.remove(at).expect("position found above");
        self.remove(p, id);
        true
    }

    /// Registers a read of `batches` (a partition's next batches, in
    /// order); the caller has made room and charged the budget.
    pub fn begin(&mut self, partition: PartitionId, batches: &[IndexEntry]) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut end = 0;
        let ends = batches
            .iter()
            .map(|b| {
                end += b.len as usize;
                end
            })
            .collect();
        let run = Run {
            id,
            positions: batches.iter().map(|b| b.pos).collect(),
            ends,
            state: RunState::Reading(Vec::new()),
        };
        self.bytes += run.len();
        self.runs.entry(partition).or_default().push_back(run);
        self.order.push_back((partition, id));
        self.started += 1;
        id
    }

    /// Stores a finished read and wakes the fetches waiting for it.
    pub fn complete(&mut self, partition: PartitionId, id: u64, data: Bytes, charge: Charge) {
        let Some(run) = self
            .runs
            .get_mut(&partition)
            .and_then(|runs| runs.iter_mut().find(|r| r.id == id))
        else {
            return; // forgotten meanwhile: the partition was deleted
        };
        assert_eq!(data.len(), run.len(), "read-ahead read returned a different length");
        // Dropping the senders wakes the waiters.
        run.state = RunState::Ready { data, _charge: charge };
    }

    /// Forgets a run whose read failed; its waiters read for themselves.
    pub fn abort(&mut self, partition: PartitionId, id: u64) {
        self.order.retain(|o| *o != (partition, id));
        self.remove(partition, id);
    }

    /// Forgets a deleted partition's runs.
    pub fn forget(&mut self, partition: PartitionId) {
        if let Some(runs) = self.runs.remove(&partition) {
            self.bytes -= runs.iter().map(Run::len).sum::<usize>();
            self.order.retain(|(p, _)| *p != partition);
        }
    }

    fn remove(&mut self, partition: PartitionId, id: u64) {
        let Some(runs) = self.runs.get_mut(&partition) else {
            return;
        };
        if let Some(at) = runs.iter().position(|r| r.id == id) {
            let run = runs.remove(at).expect("position found above");
            self.bytes -= run.len();
        }
        if runs.is_empty() {
            self.runs.remove(&partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use crate::types::{Offset, RaftIndex};

    fn batch(base: i64, offset: u64, len: u32) -> IndexEntry {
        IndexEntry {
            base: Offset(base),
            last: Offset(base),
            pos: WalPos {
                segment: RaftIndex(1),
                offset,
            },
            len,
            max_timestamp_ms: 0,
        }
    }

    #[test]
    fn answers_the_next_fetch_with_one_slice_and_evicts_oldest() {
        glommio::LocalExecutor::default().run(async {
            let budget = Budget::new(1 << 20);
            let p = PartitionId(7);
            let mut ra = ReadAhead::new(100);
            // Batches of the partition lie apart in the WAL (other
            // partitions' batches between them).
            let batches = [batch(0, 0, 10), batch(1, 50, 20), batch(2, 90, 5)];
            let id = ra.begin(p, &batches);
            assert!(ra.covers(p, batches[1].pos));
            let Lookup::Reading { done, covered } = ra.lookup(p, &batches[1..]) else {
                panic!("a fetch during the read waits for it");
            };
            assert_eq!(covered, 2);
            let data: Vec<u8> = (0..35).collect();
            ra.complete(p, id, Bytes::from(data), budget.try_charge(35).unwrap());
            assert!(done.recv().is_err(), "completion wakes the waiter");
            // A fetch from the second batch on, asking one batch further
            // than the run holds: the run answers the first two.
            let Lookup::Ready { bytes, covered } = ra.lookup(p, &[batches[1], batches[2], batch(3, 200, 1)]) else {
                panic!("ready");
            };
            assert_eq!(covered, 2);
            assert_eq!(&bytes[..], &(10u8..35).collect::<Vec<_>>()[..]);
            assert!(matches!(ra.lookup(p, &[batch(3, 200, 1)]), Lookup::Miss));
            assert!(matches!(ra.lookup(PartitionId(8), &batches), Lookup::Miss));

            // 35 bytes held: 65 more fit, and then the oldest must go.
            assert!(ra.make_room(65));
            assert_eq!(ra.bytes(), 35);
            let later = batch(4, 300, 65);
            let second = ra.begin(p, &[later]);
            assert_eq!(ra.bytes(), 100);
            assert!(ra.make_room(1));
            assert!(!ra.covers(p, batches[0].pos), "oldest evicted");
            assert!(!ra.make_room(40), "a run still reading cannot be evicted");
            ra.complete(p, second, Bytes::from(vec![0u8; 65]), budget.try_charge(65).unwrap());
            assert!(ra.covers(p, later.pos));
            assert!(ra.make_room(40));
            assert!(!ra.covers(p, later.pos));
            assert!(!ra.make_room(101), "larger than the cap");
            ra.begin(p, &[batch(5, 400, 10)]);
            ra.forget(p);
            assert_eq!(ra.bytes(), 0);
            assert_eq!(budget.used_bytes(), 0, "charges are given back with the runs");
        });
    }

    #[test]
    fn a_failed_read_wakes_waiters_and_leaves_nothing() {
        let p = PartitionId(1);
        let mut ra = ReadAhead::new(100);
        let batches = [batch(0, 0, 10)];
        let id = ra.begin(p, &batches);
        let Lookup::Reading { done, .. } = ra.lookup(p, &batches) else {
            panic!("reading");
        };
        ra.abort(p, id);
        assert!(done.recv().is_err());
        assert!(matches!(ra.lookup(p, &batches), Lookup::Miss));
        assert_eq!(ra.bytes(), 0);
    }
}
