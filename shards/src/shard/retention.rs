//! Time retention (`retention.ms`): a partition's oldest committed batches
//! go once their largest timestamp is older than its limit, as Kafka
//! deletes a segment once its largest timestamp is (so a producer that
//! writes old timestamps sees its data go at the next check, in Kafka too).
//!
//! No timer per partition: the shard keeps, for each partition with a
//! limit, when its oldest committed batch expires, ordered by that time;
//! one wake-up per shard every `retention_check_interval_ms` looks at the
//! first of them only, and does nothing when none is due. Every replica
//! keeps the schedule; the leader acts on it, through the same trim entry
//! as DeleteRecords, so the log start moves at the same point everywhere
//! (a new leader finds what its predecessor left due).

use std::collections::{BTreeSet, HashMap};

use super::state::State;
use crate::partition::Partition;
use crate::types::PartitionId;

#[derive(Default)]
pub(crate) struct TimeRetention {
    limits: HashMap<PartitionId, i64>,
    /// When each partition's oldest committed batch expires, by time.
    due: BTreeSet<(i64, PartitionId)>,
    due_of: HashMap<PartitionId, i64>,
}

impl TimeRetention {
    pub(crate) fn limited(&self, id: PartitionId) -> bool {
        self.limits.contains_key(&id)
    }

    /// Whether the partition has an expiry scheduled.
    pub(crate) fn scheduled(&self, id: PartitionId) -> bool {
        self.due_of.contains_key(&id)
    }

    pub(crate) fn set_limit(&mut self, id: PartitionId, limit: Option<i64>, p: Option<&Partition>) {
        match limit {
            Some(ms) => self.limits.insert(id, ms),
            None => self.limits.remove(&id),
        };
        self.reschedule(id, p);
    }

    /// Recomputes when `id`'s oldest committed batch expires (after a
    /// trim, a first commit, a new limit; `None`: the partition is gone).
    pub(crate) fn reschedule(&mut self, id: PartitionId, p: Option<&Partition>) {
        if let Some(at) = self.due_of.remove(&id) {
            self.due.remove(&(at, id));
        }
        let (Some(&limit), Some(ts)) = (self.limits.get(&id), p.and_then(Partition::oldest_committed_timestamp)) else {
            return;
        };
        let at = ts.saturating_add(limit);
        self.due.insert((at, id));
        self.due_of.insert(id, at);
    }

    /// When `id`'s oldest committed batch expires, if it has a limit.
    pub(crate) fn due(&self, id: PartitionId) -> Option<i64> {
        self.due_of.get(&id).copied()
    }

    pub(crate) fn forget(&mut self, id: PartitionId) {
        self.limits.remove(&id);
        self.reschedule(id, None);
    }

    /// The partitions whose oldest batch expired by `now_ms`, with their limit.
    fn due_by(&self, now_ms: i64) -> Vec<(PartitionId, i64)> {
        self.due
            .iter()
            .take_while(|&&(at, _)| at <= now_ms)
            .filter_map(|&(_, id)| self.limits.get(&id).map(|&limit| (id, limit)))
            .collect()
    }

    /// When the next partition's oldest batch expires.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.due.first().map(|&(at, _)| at)
    }
}

impl State {
    /// Sets (or, `None`, lifts) a partition's `retention.ms`.
    pub fn set_retention_ms(&mut self, id: PartitionId, limit: Option<i64>) {
        let p = self.partitions.get(&id);
        self.time_retention.set_limit(id, limit, p);
    }

    /// The leader queues trims for the partitions whose oldest committed
    /// batches passed their `retention.ms` by `now_ms` (this broker's
    /// clock). Returns whether it queued any (the driver proposes them).
    pub fn expire_by_time(&mut self, now_ms: i64) -> bool {
        if !self.serves() || self.time_retention.next_due().is_none_or(|at| at > now_ms) {
            return false;
        }
        let mut queued = false;
        for (id, limit) in self.time_retention.due_by(now_ms) {
            let to = self
                .partitions
                .get(&id)
                .and_then(|p| p.start_after_expired(now_ms.saturating_sub(limit)));
            let Some(to) = to else {
                // Its oldest batch changed since it was scheduled.
                self.time_retention.reschedule(id, self.partitions.get(&id));
                continue;
            };
            if self.retention_in_flight.get(&id).is_some_and(|&t| t >= to) {
                continue; // proposed; the trim reschedules it when applied
            }
            self.retention_in_flight.insert(id, to);
            self.trims.push((id, to));
            queued = true;
        }
        queued
    }
}
