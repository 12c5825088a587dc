//! What the simulator remembers of a run, and the invariants it checks:
//! online (as consumers read) and once the cluster converged (every
//! replica's log against each other and against what was acknowledged).

use std::collections::{BTreeMap, BTreeSet};

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
                if records != theirs {
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
            for (k, &(offset, id)) in records.iter().enumerate() {
                if offset != Offset(start.0 + k as i64) {
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
        let at = |p: PartitionId, o: Offset| {
            let (start, records) = first.get(&p)?;
            records.get(usize::try_from(o.0 - start.0).ok()?).map(|&(_, id)| id)
        };
        for &(p, offset, id) in &self.acked {
            // Deleted partitions, and records DeleteRecords removed, are gone.
            if self.deleted.contains(&p) || offset < start(p) {
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
            if self.deleted.contains(&p) || offset < start(p) {
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
