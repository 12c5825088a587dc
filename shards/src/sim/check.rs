//! What the simulator remembers of a run, and the invariants it checks:
//! online (as consumers read) and once the cluster converged (every
//! replica's log against each other and against what was acknowledged).

use std::collections::{BTreeMap, BTreeSet};

use super::workload::key_of;
use crate::types::{Offset, PartitionId};

/// A replica's committed records per partition: its log start, and
/// `(offset, record id)` from there.
pub type Logs = BTreeMap<PartitionId, (Offset, Vec<(Offset, u64)>)>;

#[derive(Default)]
pub struct History {
    /// Partitions the admin deleted: their records are not checked.
    pub deleted: BTreeSet<PartitionId>,
    /// acks=all records acknowledged: partition, offset, id.
    acked: Vec<(PartitionId, Offset, u64)>,
    /// What consumers read at each offset.
    seen: BTreeMap<(PartitionId, Offset), u64>,
    /// The highest high watermark, and log start, a serving leader
    /// answered with.
    high_watermarks: BTreeMap<PartitionId, (Offset, u64)>,
    log_starts: BTreeMap<PartitionId, (Offset, u64)>,
    sent: BTreeSet<u64>,
    /// Ids sent by idempotent producers: stored once at most.
    idempotent: BTreeSet<u64>,
}

impl History {
    pub fn sent(&mut self, ids: &[u64], idempotent: bool) {
        self.sent.extend(ids);
        if idempotent {
            self.idempotent.extend(ids);
        }
    }

    pub fn acked(&mut self, p: PartitionId, records: &[(Offset, u64)]) {
        self.acked.extend(records.iter().map(|&(o, id)| (p, o, id)));
    }

    /// A consumer read `id` at `offset`: no one ever reads anything else there.
    pub fn consumed(&mut self, p: PartitionId, offset: Offset, id: u64) -> Result<(), String> {
        match self.seen.insert((p, offset), id) {
            Some(before) if before != id => Err(format!(
                "partition {p}: offset {offset} was read as record {before:#x} and later as {id:#x}"
            )),
            _ => Ok(()),
        }
    }

    /// A serving leader answered a fetch with `hw`: never below what any
    /// leader answered before.
    pub fn high_watermark(&mut self, p: PartitionId, hw: Offset, node: u64) -> Result<(), String> {
        let best = self.high_watermarks.entry(p).or_insert((hw, node));
        if hw < best.0 {
            return Err(format!(
                "partition {p}: node {node} answered high watermark {hw} after node {} answered {}",
                best.1, best.0
            ));
        }
        *best = (hw, node);
        Ok(())
    }

    /// A serving leader answered a fetch with log start `start`: never
    /// below what any leader answered before (a trim is a committed entry).
    pub fn log_start(&mut self, p: PartitionId, start: Offset, node: u64) -> Result<(), String> {
        let best = self.log_starts.entry(p).or_insert((start, node));
        if start < best.0 {
            return Err(format!(
                "partition {p}: node {node} answered log start {start} after node {} answered {}",
                best.1, best.0
            ));
        }
        *best = (start, node);
        Ok(())
    }

    /// The converged replicas' logs (`logs[i]` is node i+1's).
    pub fn check(&self, logs: &[Logs]) -> Result<(), String> {
        let first = logs.first().ok_or("no replica")?;
        for (i, log) in logs.iter().enumerate().skip(1) {
            let a: Vec<_> = first.keys().collect();
            let b: Vec<_> = log.keys().collect();
            if a != b {
                return Err(format!("node 1 holds partitions {a:?}, node {} holds {b:?}", i + 1));
            }
            for (p, (start, records)) in log {
                let (their_start, theirs) = &first[p];
                if start != their_start {
                    return Err(format!(
                        "partition {p}: node {} starts its log at {start}, node 1 at {their_start}",
                        i + 1
                    ));
                }
                if super::node::compacted(*p) {
                    // Each replica compacts its own copy: what they hold at
                    // an offset agrees, and so does each key's last record.
                    let mine: BTreeMap<Offset, u64> = records.iter().copied().collect();
                    if let Some(&(o, id)) = theirs.iter().find(|(o, id)| mine.get(o).is_some_and(|x| x != id)) {
                        return Err(format!(
                            "partition {p}: node {} holds {:#x} at offset {o}, node 1 {id:#x}",
                            i + 1,
                            mine[&o]
                        ));
                    }
                    if last_per_key(records) != last_per_key(theirs) {
                        return Err(format!(
                            "partition {p}: node {} and node 1 differ in the last record of a key: {:?} and {:?}",
                            i + 1,
                            last_per_key(records),
                            last_per_key(theirs)
                        ));
                    }
                } else if records != theirs {
                    let at = records.iter().zip(theirs).position(|(x, y)| x != y);
                    return Err(format!(
                        "partition {p}: node {} and node 1 differ: {} and {} records, first difference at {at:?}",
                        i + 1,
                        records.len(),
                        theirs.len()
                    ));
                }
            }
        }
        for (p, (start, records)) in first {
            let mut once = BTreeSet::new();
            let compacted = super::node::compacted(*p);
            for (k, &(offset, id)) in records.iter().enumerate() {
                let dense = offset == Offset(start.0 + k as i64);
                let increasing = k == 0 && offset >= *start || k > 0 && offset > records[k - 1].0;
                if !(dense || compacted && increasing) {
                    return Err(format!(
                        "partition {p}: record {k} from the log start {start} has offset {offset}: not dense"
                    ));
                }
                if !self.sent.contains(&id) {
                    return Err(format!(
                        "partition {p}: offset {offset} holds {id:#x}, which no producer sent"
                    ));
                }
                if self.idempotent.contains(&id) && !once.insert(id) {
                    return Err(format!("partition {p}: idempotent record {id:#x} is stored twice"));
                }
            }
        }
        let start = |p: PartitionId| first.get(&p).map_or(Offset(0), |l| l.0);
        let held: BTreeMap<PartitionId, BTreeMap<Offset, u64>> = first
            .iter()
            .map(|(&p, (_, records))| (p, records.iter().copied().collect()))
            .collect();
        let at = |p: PartitionId, o: Offset| held.get(&p)?.get(&o).copied();
        // Compaction removed the record at `offset`: a later one of its key is there.
        let superseded = |p: PartitionId, offset: Offset, id: u64| {
            super::node::compacted(p)
                && at(p, offset).is_none()
                && held.get(&p).is_some_and(|h| {
                    h.range(Offset(offset.0 + 1)..)
                        .any(|(_, &later)| key_of(later) == key_of(id))
                })
        };
        for &(p, offset, id) in &self.acked {
            // Deleted partitions, and records DeleteRecords removed, are gone.
            if self.deleted.contains(&p) || offset < start(p) || superseded(p, offset, id) {
                continue;
            }
            if at(p, offset) != Some(id) {
                return Err(format!(
                    "partition {p}: acks=all record {id:#x} acknowledged at offset {offset} is lost (the log holds {:?})",
                    at(p, offset).map(|x| format!("{x:#x}"))
                ));
            }
        }
        for (&(p, offset), &id) in &self.seen {
            if self.deleted.contains(&p) || offset < start(p) || superseded(p, offset, id) {
                continue;
            }
            if at(p, offset) != Some(id) {
                return Err(format!(
                    "partition {p}: record {id:#x} a consumer read at offset {offset} disappeared"
                ));
            }
        }
        Ok(())
    }
}

/// Each key's last record: `(key, offset, id)`.
fn last_per_key(records: &[(Offset, u64)]) -> BTreeMap<u8, (Offset, u64)> {
    records.iter().map(|&(o, id)| (key_of(id), (o, id))).collect()
}
