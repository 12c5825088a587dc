//! A shard's state machine: its partitions, the produce requests staged for
//! the next Raft proposal and those waiting for durability, and what every
//! Ready round of the Raft group does to them (index, truncate, commit,
//! answer waiters, follow the leadership). No I/O, no executor, no clock of
//! its own (the caller passes the time): the glommio driver (`super`) and
//! the simulator (`crate::sim`) run this same code.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

use super::checkpoint::Checkpoint;
use super::{Durability, Listing, OffsetQuery, ProduceItem, ProduceResult, ShardError};
use crate::batch;
use crate::partition::{IndexEntry, Partition};
use crate::planted::{self, Bug};
use crate::producer::{SeqCheck, PRODUCER_ID_EXPIRATION_MS};
use crate::raft::entry::{encode_trims, items, trims, EntryBuilder};
use crate::raft::{entry_of, is_data, RaftGroup, ReadyOutcome, RecoveredRaft};
use crate::types::{Offset, PartitionId, RaftIndex};
use crate::wal::{self, decode_hard_state, Disk, Record, RecordKind, WalPos, WalReader, WalWriter};

/// How often, at most, a shard that writes producer state looks for
/// expired producers (a pass over its partitions).
const PRODUCER_SWEEP_MS: i64 = 60_000;

/// Who hears whether a produce request is as durable as it asked.
pub type Done = flume::Receiver<Result<(), ShardError>>;

pub(crate) struct Waiter {
    durability: Durability,
    done: flume::Sender<Result<(), ShardError>>,
}

/// Where a metadata proposal's hand-over to Raft is reported.
pub(crate) type MetaVerdict = flume::Sender<Result<(), ShardError>>;

/// A change of the group's leader seen after a Ready round.
pub struct LeaderChange {
    pub leader: Option<u64>,
    /// This node stopped leading: everything waiting on it was answered
    /// NotLeader.
    pub lost: bool,
}

#[derive(Default)]
pub struct State {
    pub(crate) partitions: HashMap<PartitionId, Partition>,
    proposal: EntryBuilder,
    proposal_waiters: Vec<Waiter>,
    /// Partitions with batches in `proposal`.
    staged: HashSet<PartitionId>,
    /// Log start moves to propose (DeleteRecords, retention), and who waits
    /// for them.
    pub(super) trims: Vec<(PartitionId, Offset)>,
    trim_waiters: Vec<Waiter>,
    /// `retention.bytes` of the partitions that have one (no entry: no
    /// limit), and the log start a retention trim in flight will reach.
    pub(super) retention_bytes: HashMap<PartitionId, u64>,
    pub(super) retention_in_flight: HashMap<PartitionId, Offset>,
    /// `retention.ms`: when each partition's oldest batch expires.
    pub(super) time_retention: super::retention::TimeRetention,
    /// Partitions whose high watermark moved in this Ready round.
    grown: Vec<PartitionId>,
    inflight: VecDeque<(RaftIndex, Vec<Waiter>)>,
    /// Fetches long-polling a partition; only present while someone waits.
    pub(crate) data_waiters: HashMap<PartitionId, Vec<flume::Sender<()>>>,
    pub(crate) failed: Option<String>,
    /// Metadata commands to propose, each with who waits for the verdict.
    pub(crate) meta_proposals: Vec<(Vec<u8>, MetaVerdict)>,
    /// Partition ids below this one that the shard does not hold were
    /// deleted; ids at or above it, met in an entry before the metadata
    /// that creates them arrived (a follower), are created on sight.
    pub(super) known_below: u32,
    pub(super) deleted: HashSet<PartitionId>,
    /// Record batches staged for the log (divided by WAL appends: how many
    /// batches each group commit carried).
    pub(crate) batches_staged: u64,
    /// Producers forgotten after `PRODUCER_ID_EXPIRATION_MS` idle, and
    /// evicted beyond `MAX_PRODUCERS_PER_PARTITION`.
    pub(crate) producers_expired: u64,
    pub(crate) producers_evicted: u64,
    /// When producer state was last looked at for expiry (ms since epoch).
    producers_swept_ms: i64,
    /// Partitions that hold producer state: what an expiry pass visits
    /// (not every partition of the shard).
    pub(super) with_producers: HashSet<PartitionId>,
    /// Every voter holds the log up to this index (committed release
    /// entries): no replica needs the WAL before it from another. And the
    /// last release this leader proposed.
    pub(crate) released: u64,
    release_proposed: u64,
    /// The last metadata entry applied (shard 0's group): a checkpoint past
    /// it waits until the node's metadata log holds it.
    pub(super) last_meta: u64,
    /// Something that may free WAL segments (a trim, a release) was applied
    /// since the last look, and when that look was (ms).
    pub(super) reclaim_dirty: bool,
    pub(super) reclaim_checked_ms: i64,
    /// Partitions seen pinning otherwise free segments: their log start,
    /// and since when it has not moved (ms).
    pub(super) pinning: HashMap<PartitionId, (Offset, i64)>,
    /// Compaction: which partitions are compacted, and the pass under way.
    pub(crate) cleaner: super::compact::Cleaner,
    /// Batches an installed snapshot named that this replica still pulls.
    pub(crate) pull: super::pull::Pull,
    /// The metadata an installed snapshot carried, with its index, for the
    /// node to take (group 0).
    pub(crate) installed_meta: Option<(u64, Vec<u8>)>,
    /// Whether this node leads the group, and who does as far as it knows.
    pub(crate) leader: bool,
    pub(crate) leader_id: Option<u64>,
    /// Whether the leader has applied an entry of its own term (until it
    /// has, its high watermarks may lag what the previous leader exposed)
    /// and holds its lease (no other leader can have been elected).
    serving: bool,
}

/// What recovery hands the Raft group and the node, besides the state.
pub struct Recovered<D: Disk> {
    pub writer: WalWriter<D>,
    pub reader: WalReader<D>,
    pub raft: RecoveredRaft,
    /// Metadata commands the recorded commit index passed, in log order.
    pub meta: Vec<(RaftIndex, Bytes)>,
    /// Whether the state started from a checkpoint.
    pub from_checkpoint: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error("WAL rewrites a committed Raft entry; the log is corrupt")]
    RewritesCommitted,
    #[error("the shard checkpoint cannot be used: {0}")]
    Checkpoint(String),
}

/// Opens the WAL in `dir` and replays it into `state`: one recovery for the
/// glommio shard and the simulator.
pub async fn recover<D: Disk>(
    disk: D,
    dir: &std::path::Path,
    segment_bytes: u64,
    state: &mut State,
    now_ms: i64,
) -> Result<Recovered<D>, RecoverError> {
    let mut replay = Replay::default();
    disk.create_dir_all(dir).map_err(|e| wal::WalError::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let checkpoint = match wal::checkpoint::read(&disk, dir).await? {
        Some(body) => Some(Checkpoint::decode(&body).map_err(RecoverError::Checkpoint)?),
        None => None,
    };
    let start = checkpoint.as_ref().map(|c| c.wal);
    let from_checkpoint = checkpoint.is_some();
    let saved_hard_state = checkpoint.as_ref().map(|c| c.hard_state);
    if let Some(c) = checkpoint {
        replay.applied = c.applied;
        replay.skip_through = c.applied.0;
        replay.skip_term = c.applied.1;
        state.restore(c).map_err(RecoverError::Checkpoint)?;
    }
    let (writer, reader) = wal::open(disk, dir, segment_bytes, start, |rec, pos| {
        state.replay_record(&mut replay, rec, pos, now_ms)
    })
    .await?;
    if replay.rewrites_committed {
        return Err(RecoverError::RewritesCommitted);
    }
    if let Some(missing) = state.batch_outside(&reader) {
        return Err(RecoverError::Checkpoint(format!(
            "partition {missing} has batches in WAL segments that are gone"
        )));
    }
    // Term and vote changes are always written to the WAL, so the last hard
    // state there is at least as new as the checkpoint's, except for a
    // commit index that moved without a write.
    replay.hard_state = match (replay.hard_state, saved_hard_state) {
        (Some(mut hs), Some(saved)) if hs.term >= saved.term => {
            hs.commit = hs.commit.max(saved.commit);
            Some(hs)
        }
        (None, saved) | (Some(_), saved @ Some(_)) => saved,
        (hs, None) => hs,
    };
    Ok(Recovered {
        writer,
        reader,
        raft: RecoveredRaft {
            hard_state: replay.hard_state,
            applied: replay.applied,
            unapplied: replay.unapplied,
        },
        meta: replay.meta,
        from_checkpoint,
    })
}

/// Entries replayed from the WAL, applied as the recorded commit index passes them.
#[derive(Default)]
struct Replay {
    hard_state: Option<wal::HardState>,
    applied: (u64, u64),
    unapplied: Vec<raft::prelude::Entry>,
    /// Metadata commands the recorded commit index passed.
    meta: Vec<(RaftIndex, Bytes)>,
    /// Set when the WAL rewrites a committed entry: corruption.
    rewrites_committed: bool,
    /// Entries up to here are in the checkpoint the state came from.
    skip_through: u64,
    /// The term of the entry at `skip_through`.
    skip_term: u64,
}

impl State {
    pub fn new(partitions: &[PartitionId], known_below: u32) -> Self {
        let mut st = State {
            known_below,
            ..Default::default()
        };
        for &p in partitions {
            st.partitions.insert(p, Partition::new(p));
        }
        st
    }

    /// Partition ids are never reused: an id deleted once stays deleted
    /// (a create that reaches a shard after the delete, as a replayed log
    /// can order them, must not bring back an empty partition that its
    /// peers do not have).
    pub fn create_partitions(&mut self, ids: &[PartitionId]) {
        for &id in ids {
            if !self.deleted.contains(&id) {
                self.partitions.entry(id).or_insert_with(|| Partition::new(id));
            }
        }
    }

    pub fn delete_partitions(&mut self, ids: &[PartitionId]) {
        for id in ids {
            self.partitions.remove(id);
            self.deleted.insert(*id);
            self.data_waiters.remove(id);
            self.retention_bytes.remove(id);
            self.time_retention.forget(*id);
            self.forget_compaction(*id);
        }
    }

    /// Sets (or, `None`, lifts) a partition's `retention.bytes`.
    pub fn set_retention_bytes(&mut self, id: PartitionId, limit: Option<u64>) {
        match limit {
            Some(l) => self.retention_bytes.insert(id, l),
            None => self.retention_bytes.remove(&id),
        };
    }

    pub fn partition(&self, id: PartitionId) -> Option<&Partition> {
        self.partitions.get(&id)
    }

    /// Whether this node leads and may serve reads and writes: it has
    /// applied an entry of its term, so its high watermarks are at least
    /// those any earlier leader exposed, and holds its lease, so no later
    /// leader has exposed more.
    pub fn serves(&self) -> bool {
        self.leader && self.serving
    }

    /// Stages one produce request for the next proposal: assigns offsets,
    /// checks idempotent sequences. Returns each item's outcome, and, when
    /// any was staged, where its durability will be reported.
    pub fn produce(
        &mut self,
        items: &[ProduceItem],
        durability: Durability,
        now_ms: i64,
    ) -> (Vec<ProduceResult>, Option<Done>) {
        if let Some(reason) = &self.failed {
            let e = ShardError::Storage(reason.clone());
            return (items.iter().map(|_| Err(e.clone())).collect(), None);
        }
        if !self.serves() {
            return (items.iter().map(|_| Err(ShardError::NotLeader)).collect(), None);
        }
        let mut results = Vec::with_capacity(items.len());
        let mut any = false;
        for item in items {
            results.push(self.stage(item, now_ms));
            any |= results.last().is_some_and(|r| r.is_ok());
        }
        if !any {
            return (results, None);
        }
        let (tx, rx) = flume::bounded(1);
        self.proposal_waiters.push(Waiter { durability, done: tx });
        (results, Some(rx))
    }

    /// Assigns offsets to one item's batches and adds them to the proposal.
    fn stage(&mut self, item: &ProduceItem, now_ms: i64) -> ProduceResult {
        let p = self
            .partitions
            .get_mut(&item.partition)
            .ok_or(ShardError::UnknownPartition(item.partition))?;
        let (mut first, mut recorded) = (None, false);
        for (i, &(start, count)) in item.batches.iter().enumerate() {
            let end = item.batches.get(i + 1).map_or(item.records.len(), |b| b.0);
            let bytes = &item.records[start..end];
            let (producer_id, epoch, seq) = batch::producer(bytes);
            if producer_id >= 0 {
                let check = p
                    .producers()
                    .map_or(Ok(SeqCheck::Append), |ps| ps.check(producer_id, epoch, seq, count))?;
                if let SeqCheck::Duplicate(base) = check {
                    first.get_or_insert(base);
                    continue;
                }
            }
            let base = p.assign(count);
            if producer_id >= 0 {
                if p.producers_mut().record(producer_id, epoch, seq, count, base, now_ms) {
                    self.producers_evicted += 1;
                }
                recorded = true;
            }
            first.get_or_insert(base);
            self.proposal.push(item.partition, base, bytes);
            self.staged.insert(item.partition);
            self.batches_staged += 1;
        }
        let log_start = p.log_start();
        if recorded {
            self.with_producers.insert(item.partition);
            self.maybe_expire_producers(now_ms);
        }
        Ok(super::Appended {
            base: first.expect("a produce item has at least one batch"),
            log_start,
        })
    }

    /// DeleteRecords: moves `partition`'s log start up to `offset` (`None`:
    /// the high watermark) through a Raft entry. Returns the low watermark
    /// it will have, and where the commit is reported (`None` when the log
    /// start is there already).
    pub fn delete_records(
        &mut self,
        partition: PartitionId,
        offset: Option<Offset>,
    ) -> Result<(Offset, Option<Done>), ShardError> {
        if let Some(reason) = &self.failed {
            return Err(ShardError::Storage(reason.clone()));
        }
        let p = self.served(partition)?;
        let (start, hw) = (p.log_start(), p.high_watermark());
        let offset = offset.unwrap_or(hw);
        if offset.0 < 0 || offset > hw {
            return Err(ShardError::OffsetOutOfRange {
                offset,
                log_start: start,
                high_watermark: hw,
            });
        }
        if offset <= start {
            return Ok((start, None));
        }
        // Another request may have asked for more already (not yet proposed).
        let queued = self.trims.iter().filter(|t| t.0 == partition).map(|t| t.1).max();
        self.trims.push((partition, offset));
        let (tx, rx) = flume::bounded(1);
        self.trim_waiters.push(Waiter {
            durability: Durability::Committed,
            done: tx,
        });
        Ok((offset.max(queued.unwrap_or(offset)), Some(rx)))
    }

    /// Hands what was gathered since the last round to Raft: metadata
    /// commands, every staged batch as one entry (the group commit), then
    /// the log start moves.
    pub fn propose_gathered<D: Disk>(&mut self, group: &mut RaftGroup<D>) {
        for (command, done) in std::mem::take(&mut self.meta_proposals) {
            let _ = done.try_send(group.propose_meta(command).map_err(ShardError::from));
        }
        let payload = self.proposal.take();
        let waiters = std::mem::take(&mut self.proposal_waiters);
        let staged = std::mem::take(&mut self.staged);
        if !payload.is_empty() {
            match group.propose(payload) {
                Ok(idx) => self.inflight.push_back((idx, waiters)),
                Err(e) => {
                    // Nothing of this payload reaches the log: take back
                    // the offsets and producer sequences it staged, or a
                    // retry would be answered as a duplicate of a batch
                    // never written. (Every earlier proposal is persisted
                    // and indexed by now: the driver runs a Ready round
                    // after each.)
                    for id in staged {
                        if let Some(p) = self.partitions.get_mut(&id) {
                            p.forget_unstored();
                        }
                    }
                    let e = ShardError::from(e);
                    for w in waiters {
                        let _ = w.done.try_send(Err(e.clone()));
                    }
                }
            }
        } else if !waiters.is_empty() {
            // Nothing new to write (retries of stored batches): answer
            // once what is already in flight is durable.
            match self.inflight.back_mut() {
                Some((_, ws)) => ws.extend(waiters),
                None => waiters.into_iter().for_each(|w| {
                    let _ = w.done.try_send(Ok(()));
                }),
            }
        }
        if let Some(index) = group.release_due(self.released.max(self.release_proposed)) {
            if group.propose_release(index).is_ok() {
                self.release_proposed = index;
            }
        }
        if !self.trims.is_empty() {
            let payload = encode_trims(&std::mem::take(&mut self.trims));
            let waiters = std::mem::take(&mut self.trim_waiters);
            match group.propose_trim(payload) {
                Ok(idx) => self.inflight.push_back((idx, waiters)),
                Err(e) => {
                    // Retention proposes again at the next write.
                    self.retention_in_flight.clear();
                    let e = ShardError::from(e);
                    for w in waiters {
                        let _ = w.done.try_send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Applies one Ready round to the partitions and answers the waiters
    /// it satisfied. Returns the metadata commands it committed.
    pub fn apply(&mut self, mut out: ReadyOutcome, now_ms: i64) -> Vec<(RaftIndex, Bytes)> {
        if let Some(snapshot) = out.installed.take() {
            self.install(snapshot);
        }
        if !out.overwritten.is_empty() {
            tracing::info!(
                entries = out.overwritten.len(),
                "a new leader's log replaced uncommitted entries; their batches are dropped"
            );
        }
        if !planted::active(Bug::KeepOverwrittenTail) {
            for payload in &out.overwritten {
                self.truncate_entry(payload);
            }
        }
        for (_, payload, pos) in &out.persisted {
            // A leader recorded its producers' sequences when it staged
            // the batches; a follower learns them here.
            self.index_entry(payload, *pos, !out.persisted_own, now_ms);
        }
        for (_, payload) in &out.committed {
            self.commit_entry(payload);
        }
        // After the data: a trim never passes what committed before it.
        for (_, payload) in &out.committed_trims {
            self.trim_entry(payload);
        }
        if let Some(index) = out.committed_release {
            self.set_released(index);
        }
        if let Some((index, _)) = out.committed_meta.last() {
            self.last_meta = index.0;
        }
        self.enforce_retention_bytes();
        self.complete_waiters(out.persisted_index, out.committed_index);
        out.committed_meta
    }

    /// Follows the group's role after a Ready round: a leader that lost
    /// its leadership answers everything waiting on it with NotLeader and
    /// takes back the offsets it handed out for batches never written.
    /// Returns the new leader when it changed.
    pub fn observe_role<D: Disk>(&mut self, group: &RaftGroup<D>) -> Option<LeaderChange> {
        let leading = group.is_leader();
        self.serving = leading && group.committed_in_term() && group.has_lease();
        let lost = std::mem::replace(&mut self.leader, leading) && !leading;
        if lost {
            self.forget_waiters();
        }
        let leader = group.leader_id();
        (std::mem::replace(&mut self.leader_id, leader) != leader || lost).then_some(LeaderChange { leader, lost })
    }

    /// Answers everything waiting on this replica's log NotLeader (it will
    /// not commit here) and takes back the offsets handed out for batches
    /// never written.
    pub(super) fn forget_waiters(&mut self) {
        let waiting: Vec<Waiter> = self
            .inflight
            .drain(..)
            .flat_map(|(_, ws)| ws)
            .chain(self.proposal_waiters.drain(..))
            .chain(self.trim_waiters.drain(..))
            .collect();
        self.trims.clear();
        self.retention_in_flight.clear();
        self.release_proposed = 0;
        for w in waiting {
            let _ = w.done.try_send(Err(ShardError::NotLeader));
        }
        self.proposal.take();
        self.staged.clear();
        for p in self.partitions.values_mut() {
            p.forget_unstored();
        }
    }

    /// Moves the index blocks out of the store files that mostly hold
    /// blocks given up, so that those files go (`store::sparse_files`).
    /// Returns how many blocks moved.
    pub fn relocate_index(&mut self, files: &[u64]) -> usize {
        self.partitions.values_mut().map(|p| p.relocate_index(files)).sum()
    }

    /// The WAL failed: every waiter hears why, and writes are refused until
    /// a restart recovers the log.
    pub fn fail(&mut self, reason: String) {
        let e = ShardError::Storage(reason.clone());
        for (_, ws) in self.inflight.drain(..) {
            for w in ws {
                let _ = w.done.try_send(Err(e.clone()));
            }
        }
        for w in self.proposal_waiters.drain(..).chain(self.trim_waiters.drain(..)) {
            let _ = w.done.try_send(Err(e.clone()));
        }
        self.trims.clear();
        for (_, done) in self.meta_proposals.drain(..) {
            let _ = done.try_send(Err(e.clone()));
        }
        self.failed = Some(reason);
    }

    /// What a fetch of `partition` from `offset` reads: committed batches
    /// up to about `max_bytes` (at least one when `at_least_one`), with the
    /// high watermark and log start it answers with.
    pub fn plan_read(
        &self,
        partition: PartitionId,
        offset: Offset,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<(Vec<IndexEntry>, Offset, Offset), ShardError> {
        let p = self
            .partitions
            .get(&partition)
            .ok_or(ShardError::UnknownPartition(partition))?;
        let (hw, start) = (p.high_watermark(), p.log_start());
        if offset < start || offset > hw {
            return Err(ShardError::OffsetOutOfRange {
                offset,
                log_start: start,
                high_watermark: hw,
            });
        }
        let batches = if max_bytes > 0 || at_least_one {
            p.committed_batches_from(offset, max_bytes)
        } else {
            Vec::new()
        };
        Ok((batches, hw, start))
    }

    /// A partition this node serves as leader.
    fn served(&self, partition: PartitionId) -> Result<&Partition, ShardError> {
        if !self.serves() {
            return Err(ShardError::NotLeader);
        }
        self.partitions
            .get(&partition)
            .ok_or(ShardError::UnknownPartition(partition))
    }

    /// The answer to `query`, or for a timestamp the batch (at `from` or
    /// later) whose records hold it, with the log start records must reach.
    pub fn list_offset(&self, partition: PartitionId, query: OffsetQuery, from: Offset) -> Result<Listing, ShardError> {
        let p = self.served(partition)?;
        let batch = match query {
            OffsetQuery::Earliest => return Ok(Listing::Answer(Some((p.log_start(), -1)))),
            OffsetQuery::Latest => return Ok(Listing::Answer(Some((p.high_watermark(), -1)))),
            OffsetQuery::MaxTimestamp => p.batch_of_max_timestamp(),
            OffsetQuery::AtOrAfter(ts) => p.batch_for_timestamp(ts, from),
        };
        Ok(batch.map_or(Listing::Answer(None), |e| Listing::Batch(e, p.log_start())))
    }

    /// At most once a minute, and only when producer state is written:
    /// forgets producers idle for `PRODUCER_ID_EXPIRATION_MS` in every
    /// partition of the shard (no timer, and nothing while idle).
    fn maybe_expire_producers(&mut self, now_ms: i64) {
        if now_ms - self.producers_swept_ms < PRODUCER_SWEEP_MS {
            return;
        }
        self.producers_swept_ms = now_ms;
        let before_ms = now_ms.saturating_sub(PRODUCER_ID_EXPIRATION_MS);
        let partitions = &mut self.partitions;
        let mut expired = 0;
        self.with_producers.retain(|id| match partitions.get_mut(id) {
            Some(p) => {
                expired += p.expire_producers(before_ms);
                p.producers().is_some()
            }
            None => false, // deleted
        });
        self.producers_expired += expired as u64;
    }

    /// The partition an entry's batch belongs to, created on sight if the
    /// metadata that creates it has not arrived yet; `None` if deleted.
    fn entry_partition(&mut self, id: PartitionId) -> Option<&mut Partition> {
        if !self.partitions.contains_key(&id) {
            if id.0 < self.known_below || self.deleted.contains(&id) {
                return None;
            }
            self.partitions.insert(id, Partition::new(id));
        }
        self.partitions.get_mut(&id)
    }

    /// Indexes the batches of a persisted entry, and records the producer
    /// sequences they carry when `record_producers` (replay, followers).
    /// A producer's last write is timed by this broker's clock (`now_ms`),
    /// not by the batch's timestamps: a client's clock, or old data it
    /// replays, would expire a producer that is writing now.
    fn index_entry(&mut self, payload: &[u8], pos: WalPos, record_producers: bool, now_ms: i64) {
        let mut evicted = 0;
        for it in items(payload) {
            let Some(p) = self.entry_partition(it.partition) else {
                continue; // deleted since
            };
            let b = &payload[it.at..it.at + it.len];
            let delta = batch::last_offset_delta(b);
            let last = Offset(it.base.0 + delta as i64);
            let (producer_id, epoch, seq) = batch::producer(b);
            if record_producers
                && producer_id >= 0
                && p.producers_mut()
                    .record(producer_id, epoch, seq, delta + 1, it.base, now_ms)
            {
                evicted += 1;
            }
            p.index_batch(IndexEntry {
                base: it.base,
                last,
                pos: WalPos {
                    segment: pos.segment,
                    offset: pos.offset + it.at as u64,
                },
                len: it.len as u32,
                max_timestamp_ms: batch::max_timestamp(b),
            });
            if record_producers && producer_id >= 0 {
                self.with_producers.insert(it.partition);
            }
        }
        self.producers_evicted += evicted;
        if record_producers {
            self.maybe_expire_producers(now_ms);
        }
    }

    /// Undoes `index_entry` for an uncommitted entry a new leader replaced.
    fn truncate_entry(&mut self, payload: &[u8]) {
        for it in items(payload) {
            if let Some(p) = self.partitions.get_mut(&it.partition) {
                p.truncate_from(it.base);
            }
        }
    }

    /// A leader trims partitions whose committed batches exceed their
    /// `retention.bytes` by an eighth of it (at least 4 KiB: one trim entry
    /// per few writes, not per write), down to at most the limit, oldest
    /// batches first, as Kafka deletes whole old segments. Runs when a
    /// high watermark moves: no timer.
    fn enforce_retention_bytes(&mut self) {
        let grown = std::mem::take(&mut self.grown);
        if self.retention_bytes.is_empty() || !self.serves() {
            return;
        }
        for id in grown {
            let (Some(&limit), Some(p)) = (self.retention_bytes.get(&id), self.partitions.get(&id)) else {
                continue;
            };
            let slack = (limit / 8).max(4096);
            if p.size_bytes() <= limit.saturating_add(slack) {
                continue;
            }
            let Some(to) = p.start_keeping(limit) else { continue };
            if self.retention_in_flight.get(&id).is_some_and(|&t| t >= to) {
                continue;
            }
            self.retention_in_flight.insert(id, to);
            self.trims.push((id, to));
        }
    }

    /// Applies a committed trim entry: each partition's log start moves
    /// (never back), and its batches below it are forgotten.
    fn trim_entry(&mut self, payload: &[u8]) {
        self.reclaim_dirty = true;
        for (id, offset) in trims(payload) {
            if let Some(p) = self.partitions.get_mut(&id) {
                if offset > p.high_watermark() {
                    tracing::warn!(partition = %id, offset = offset.0, high_watermark = p.high_watermark().0,
                        "a trim entry past the high watermark; trimming to the high watermark");
                }
                p.trim_to(offset);
            }
            if self.time_retention.limited(id) {
                self.time_retention.reschedule(id, self.partitions.get(&id));
            }
            if self.retention_in_flight.get(&id).is_some_and(|&t| t <= offset) {
                self.retention_in_flight.remove(&id);
            }
        }
    }

    fn release_entry(&mut self, payload: &[u8]) {
        if let Ok(index) = crate::raft::entry::release(payload) {
            self.set_released(index);
        }
    }

    fn set_released(&mut self, index: u64) {
        if index > self.released {
            self.released = index;
            self.reclaim_dirty = true;
        }
    }

    fn commit_entry(&mut self, payload: &[u8]) {
        for it in items(payload) {
            let Some(p) = self.partitions.get_mut(&it.partition) else {
                continue;
            };
            let b = &payload[it.at..it.at + it.len];
            let end = Offset(it.base.0 + batch::last_offset_delta(b) as i64 + 1);
            if p.advance_high_watermark(end) {
                if !self.retention_bytes.is_empty() && self.retention_bytes.contains_key(&it.partition) {
                    self.grown.push(it.partition);
                }
                if self.time_retention.limited(it.partition) && !self.time_retention.scheduled(it.partition) {
                    self.time_retention.reschedule(it.partition, Some(&*p));
                }
                if let Some(ws) = self.data_waiters.remove(&it.partition) {
                    for w in ws {
                        let _ = w.try_send(());
                    }
                }
            }
        }
    }

    fn complete_waiters(&mut self, persisted: Option<RaftIndex>, committed: Option<RaftIndex>) {
        if let Some(persisted) = persisted {
            let early = planted::active(Bug::AckBeforeCommit);
            for (idx, ws) in self.inflight.iter_mut() {
                if *idx > persisted {
                    break;
                }
                ws.retain(|w| {
                    let done = w.durability == Durability::Persisted || early;
                    if done {
                        let _ = w.done.try_send(Ok(()));
                    }
                    !done
                });
            }
        }
        if let Some(committed) = committed {
            while self.inflight.front().is_some_and(|(idx, _)| *idx <= committed) {
                let (_, ws) = self.inflight.pop_front().expect("front exists");
                for w in ws {
                    let _ = w.done.try_send(Ok(()));
                }
            }
        }
    }

    /// Replays one WAL record at start-up: entries are indexed as they
    /// come, applied as the recorded commit index passes them.
    fn replay_record(&mut self, replay: &mut Replay, rec: Record, pos: WalPos, now_ms: i64) {
        match rec.kind {
            RecordKind::HardState => {
                let Some(hs) = decode_hard_state(&rec.payload) else {
                    return;
                };
                replay.hard_state = Some(hs);
                let commit = hs.commit.0;
                let n = replay.unapplied.iter().take_while(|e| e.index <= commit).count();
                for e in replay.unapplied.drain(..n) {
                    match crate::raft::record_kind(&e) {
                        _ if is_data(&e) => self.commit_entry(&e.data),
                        RecordKind::Meta => {
                            self.last_meta = e.index;
                            replay.meta.push((RaftIndex(e.index), e.data.clone()))
                        }
                        RecordKind::Trim => self.trim_entry(&e.data),
                        RecordKind::Release => self.release_entry(&e.data),
                        _ => {}
                    }
                    replay.applied = (e.index, e.term);
                }
            }
            kind => {
                // A lower index than the last is a Raft overwrite of an
                // uncommitted tail: what it replaces is gone. (Also when
                // the overwrite itself is in the checkpoint: the entries
                // after the checkpoint that it replaced are gone too.)
                let keep = replay.unapplied.partition_point(|e| e.index < rec.index);
                for e in replay.unapplied.drain(keep..) {
                    if is_data(&e) {
                        self.truncate_entry(&e.data);
                    }
                }
                if rec.index <= replay.skip_through {
                    return; // in the checkpoint
                }
                if rec.term < replay.skip_term {
                    // An entry of a term older than the checkpoint's last
                    // one cannot follow it in the log: a tail that a later
                    // leader overwrote (its replacement comes later in the
                    // WAL). Its batches would not continue the
                    // checkpoint's partitions.
                    return;
                }
                if rec.index <= replay.applied.0 {
                    replay.rewrites_committed = true;
                    return;
                }
                if kind == RecordKind::Entry && !rec.payload.is_empty() {
                    self.index_entry(&rec.payload, pos, true, now_ms);
                }
                replay.unapplied.push(entry_of(kind, rec.term, rec.index, rec.payload));
            }
        }
    }
}
