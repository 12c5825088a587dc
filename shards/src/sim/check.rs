//! What the simulator remembers of a run, and the invariants it checks:
//! online (as consumers read) and once the cluster converged (every
//! replica's log against each other and against what was acknowledged).

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Offset, PartitionId};

/// A replica's committed records per partition: `(offset, record id)`.
pub type Logs = BTreeMap<PartitionId, Vec<(Offset, u64)>>;

#[derive(Default)]
pub struct History {
    /// Partitions the admin deleted: their records are not checked.
    pub deleted: BTreeSet<PartitionId>,
    /// acks=all records acknowledged: partition, offset, id.
    acked: Vec<(PartitionId, Offset, u64)>,
    /// What consumers read at each offset.
    seen: BTreeMap<(PartitionId, Offset), u64>,
    /// The highest high watermark a serving leader answered with.
    high_watermarks: BTreeMap<PartitionId, (Offset, u64)>,
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

    /// The converged replicas' logs (`logs[i]` is node i+1's).
    pub fn check(&self, logs: &[Logs]) -> Result<(), String> {
        let first = logs.first().ok_or("no replica")?;
        for (i, log) in logs.iter().enumerate().skip(1) {
            let a: Vec<_> = first.keys().collect();
            let b: Vec<_> = log.keys().collect();
            if a != b {
                return Err(format!("node 1 holds partitions {a:?}, node {} holds {b:?}", i + 1));
            }
            for (p, records) in log {
                let theirs = &first[p];
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
        for (p, records) in first {
            let mut once = BTreeSet::new();
            for (k, &(offset, id)) in records.iter().enumerate() {
                if offset != Offset(k as i64) {
                    return Err(format!("partition {p}: record {k} has offset {offset}: not dense"));
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
        let at = |p: PartitionId, o: Offset| first.get(&p).and_then(|r| r.get(o.0 as usize)).map(|&(_, id)| id);
        for &(p, offset, id) in &self.acked {
            if self.deleted.contains(&p) {
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
            if self.deleted.contains(&p) {
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
