//! Giving disk space back: a WAL segment goes once nothing in it is needed,
//! that is when
//! - no partition retains a batch in it (retention, DeleteRecords and
//!   deleted topics moved every log start past it),
//! - every voter holds its entries (a committed release entry says so:
//!   no peer will ask for them), and the state machine applied them,
//! - and a checkpoint of the state machine, written first, covers them
//!   (a restart starts from it instead of replaying them).
//!
//! Looked at when a trim or a release was applied, at most once a second
//! (a look put off by that sets the shard's one wake-up; an idle shard has
//! none), and acted on only when the segments freed outweigh the
//! checkpoint written for them several times over, so that a shard of a
//! million partitions does not rewrite its state for one segment.
//!
//! Segments pinned by a partition that keeps its data longer than the
//! others (no retention, or a long one) stay until it lets go: moving such
//! batches to colder files is not built yet.

use std::collections::HashSet;

use super::checkpoint::{estimate_bytes, Checkpoint};
use super::state::State;
use crate::partition::Partition;
use crate::raft::RaftGroup;
use crate::types::{PartitionId, RaftIndex};
use crate::wal::{Disk, WalReader, WalStart};

/// When to look at what may be reclaimed, and when to act on it.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// At most one look per this long.
    pub recheck_ms: u64,
    /// Segments go only when they free this many times the bytes of the
    /// checkpoint written for them.
    pub freed_per_checkpoint_byte: u64,
}

impl Policy {
    pub const PRODUCTION: Policy = Policy {
        recheck_ms: 1_000,
        freed_per_checkpoint_byte: 4,
    };
}

/// A checkpoint to write, then the segments before `keep_from` to remove.
pub struct Plan {
    pub checkpoint: Vec<u8>,
    pub keep_from: RaftIndex,
    pub segments: usize,
}

impl State {
    /// Whether a look at what may be reclaimed was put off.
    pub fn reclaim_pending(&self) -> bool {
        self.reclaim_dirty
    }

    /// What to reclaim now, if anything. `meta_durable`: the last metadata
    /// entry the node's metadata log holds (a checkpoint must not cover a
    /// metadata command the node could still lose).
    pub fn plan_reclaim<D: Disk>(
        &mut self,
        group: &RaftGroup<D>,
        meta_durable: u64,
        now_ms: i64,
        policy: Policy,
    ) -> Option<Plan> {
        if !self.reclaim_dirty || now_ms.abs_diff(self.reclaim_checked_ms) < policy.recheck_ms {
            return None;
        }
        self.reclaim_checked_ms = now_ms;
        let applied = group.applied();
        let through = self.released.min(applied.0);
        let wal = group.wal();
        // Cheap first: without pins, would any segment go? If not, nothing
        // will until the next trim or release.
        self.reclaim_dirty = false;
        wal.reclaimable(through, None)?;
        if self.last_meta > meta_durable {
            self.reclaim_dirty = true; // the node tells when its metadata log has it
            return None;
        }
        let (mut batches, mut producers) = (0, 0);
        let mut pinned: Option<RaftIndex> = None;
        for p in self.partitions.values() {
            batches += p.batches();
            producers += p.producers().map_or(0, |ps| ps.len());
            if let Some(pos) = p.first_position() {
                pinned = Some(pinned.map_or(pos.segment, |s| s.min(pos.segment)));
            }
        }
        if crate::planted::active(crate::planted::Bug::ReclaimRetained) {
            pinned = None;
        }
        let (keep_from, segments) = wal.reclaimable(through, pinned)?;
        let estimate = estimate_bytes(self.partitions.len(), batches, producers);
        if (segments as u64) * wal.segment_bytes() < estimate * policy.freed_per_checkpoint_byte {
            return None; // until more segments are free
        }
        let checkpoint = self.checkpoint(applied, group, keep_from);
        Some(Plan {
            checkpoint: checkpoint.encode(),
            keep_from,
            segments,
        })
    }

    /// The state as of `applied`, which is where the state machine is.
    fn checkpoint<D: Disk>(&self, applied: (u64, u64), group: &RaftGroup<D>, keep_from: RaftIndex) -> Checkpoint {
        let mut partitions: Vec<_> = self.partitions.values().map(Partition::saved).collect();
        partitions.sort_by_key(|p| p.id);
        let mut deleted: Vec<PartitionId> = self.deleted.iter().copied().collect();
        deleted.sort();
        Checkpoint {
            applied,
            hard_state: group.hard_state(),
            released: self.released,
            wal: WalStart {
                keep_from,
                before: group.wal().entry_before(keep_from),
            },
            known_below: self.known_below,
            deleted,
            partitions,
        }
    }

    /// Takes the state a checkpoint saved. Partitions the node's metadata
    /// deleted since (below `known_below`, not among those it holds) stay
    /// deleted.
    pub(crate) fn restore(&mut self, c: Checkpoint) -> Result<(), String> {
        self.released = c.released;
        self.known_below = self.known_below.max(c.known_below);
        let held: HashSet<PartitionId> = self.partitions.keys().copied().collect();
        self.deleted.extend(c.deleted);
        for saved in c.partitions {
            let id = saved.id;
            let dropped = self.deleted.contains(&id) || (id.0 < self.known_below && !held.contains(&id));
            let p = Partition::restore(saved)?;
            if !dropped {
                if p.producers().is_some() {
                    self.with_producers.insert(id);
                }
                self.partitions.insert(id, p);
            }
        }
        Ok(())
    }

    /// A partition holding a batch in a WAL segment that is not there (a
    /// checkpoint that does not match its WAL), if any.
    pub(crate) fn batch_outside<D: Disk>(&self, reader: &WalReader<D>) -> Option<PartitionId> {
        self.partitions
            .values()
            .find(|p| p.first_position().is_some_and(|pos| !reader.has_segment(pos.segment)))
            .map(|p| p.id)
    }
}

/// Writes the plan's checkpoint, then removes the segments it covers.
/// A failure leaves everything as it was, or a checkpoint that a later
/// reclaim or start completes: nothing is lost either way.
pub async fn reclaim<D: Disk>(plan: Plan, group: &mut RaftGroup<D>) -> Result<usize, crate::wal::WalError> {
    group.wal().write_checkpoint(&plan.checkpoint).await?;
    group.wal_mut().remove_before(plan.keep_from)
}
