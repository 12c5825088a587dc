//! One shard: the partitions it owns, its WAL and Raft group, its memory
//! budget. Everything here is `Rc`/`RefCell` and reached only from the
//! shard's own executor; other shards send it messages.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::ReadResult;

use crate::batch;
use crate::budget::Budget;
use crate::metrics::{StorageReport, WalMetrics};
use crate::partition::{IndexEntry, Partition};
use crate::producer::{SeqCheck, SeqError, PRODUCER_ID_EXPIRATION_MS};

/// How often, at most, a shard that writes producer state looks for
/// expired producers (a pass over its partitions).
const PRODUCER_SWEEP_MS: i64 = 60_000;

/// A producer's last write is timed by this broker's clock, not by the
/// batch's timestamps (a client's clock, or old data it replays, would
/// expire a producer that is writing now); replayed and followed batches
/// count as written when this broker indexes them.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
use crate::raft::entry::{items, EntryBuilder};
use crate::raft::transport::Transport;
use crate::raft::{entry_of, is_data, Membership, RaftError, RaftGroup, ReadyOutcome, RecoveredRaft};
use crate::read_ahead::{Lookup, ReadAhead};
use crate::read_cache::ReadCache;
use crate::types::{Offset, PartitionId, RaftIndex, ShardId};
use crate::wal::{self, decode_hard_state, Record, RecordKind, WalError, WalPos, WalReader};

/// The read cache, and the read-ahead, may each hold up to this fraction
/// (1/N) of the memory budget.
const READ_CACHE_SHARE: u64 = 8;
/// Applied Raft entries kept in memory for followers that lag behind may
/// take up to this fraction (1/N) of the memory budget.
const RAFT_RETAIN_SHARE: u64 = 4;

/// Part of a partition's read: in memory, a read-ahead still reading, or a
/// WAL read in flight.
enum Piece {
    Cached(Bytes),
    Ahead(glommio::Task<Result<Bytes, WalError>>),
    Disk(glommio::Task<Result<ReadResult, WalError>>),
}

#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub id: ShardId,
    pub wal_dir: PathBuf,
    pub segment_bytes: u64,
    pub memory_bytes: u64,
    /// This node and the voters of the shard's Raft group.
    pub membership: Membership,
    /// With peers: this shard's Raft port, and each peer's (same shard).
    pub raft_listen: Option<SocketAddr>,
    pub peers: Vec<(u64, SocketAddr)>,
}

/// What a shard tells the node about, in order, through `Shard::events`.
#[derive(Debug)]
pub enum ShardEvent {
    /// A metadata command committed in this shard's group (shard 0's).
    MetaCommitted { index: RaftIndex, command: Bytes },
    /// The group's leader changed: its Raft id, `None` while unknown.
    Leader { leader: Option<u64> },
}

/// Errors a shard reports per partition; the Kafka layer maps each to one
/// error code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("partition {0} is not hosted by this shard")]
    UnknownPartition(PartitionId),
    #[error("this shard does not lead the partition's Raft group")]
    NotLeader,
    #[error("offset {offset} is outside [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start: Offset,
        high_watermark: Offset,
    },
    #[error("storage failure: {0}")]
    Storage(String),
    #[error(transparent)]
    Sequence(#[from] SeqError),
}

impl From<RaftError> for ShardError {
    fn from(e: RaftError) -> Self {
        match e {
            RaftError::NotLeader => ShardError::NotLeader,
            other => ShardError::Storage(other.to_string()),
        }
    }
}

impl From<WalError> for ShardError {
    fn from(e: WalError) -> Self {
        ShardError::Storage(e.to_string())
    }
}

/// How durable a write must be before its producer hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On the leader's disk (acks=0 and acks=1).
    Persisted,
    /// Committed: on a majority's disk (acks=all).
    Committed,
}

/// One partition's share of a produce request, already validated.
#[derive(Debug, Clone)]
pub struct ProduceItem {
    pub partition: PartitionId,
    /// One or more complete record batches, as the client sent them.
    pub records: Bytes,
    /// `(start, record_count)` of each batch inside `records`.
    pub batches: Vec<(usize, u32)>,
}

pub type ProduceResult = Result<Offset, ShardError>;

struct Waiter {
    durability: Durability,
    done: flume::Sender<Result<(), ShardError>>,
}

/// What a fetch of one partition returns.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub high_watermark: Offset,
    pub log_start: Offset,
    pub records: Bytes,
}

#[derive(Debug, Clone, Copy)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    MaxTimestamp,
    AtOrAfter(i64),
}

/// Where a metadata proposal's hand-over to Raft is reported.
type MetaVerdict = flume::Sender<Result<(), ShardError>>;

#[derive(Default)]
struct State {
    partitions: HashMap<PartitionId, Partition>,
    proposal: EntryBuilder,
    proposal_waiters: Vec<Waiter>,
    inflight: VecDeque<(RaftIndex, Vec<Waiter>)>,
    /// Fetches long-polling a partition; only present while someone waits.
    data_waiters: HashMap<PartitionId, Vec<flume::Sender<()>>>,
    failed: Option<String>,
    /// Metadata commands to propose, each with who waits for the verdict.
    meta_proposals: Vec<(Vec<u8>, MetaVerdict)>,
    /// Partition ids below this one that the shard does not hold were
    /// deleted; ids at or above it, met in an entry before the metadata
    /// that creates them arrived (a follower), are created on sight.
    known_below: u32,
    deleted: HashSet<PartitionId>,
    /// Record batches staged for the log (divided by WAL appends: how many
    /// batches each group commit carried).
    batches_staged: u64,
    /// Producers forgotten after `PRODUCER_ID_EXPIRATION_MS` idle.
    producers_expired: u64,
    /// When producer state was last looked at for expiry (ms since epoch).
    producers_swept_ms: i64,
    /// Partitions that hold producer state: what an expiry pass visits
    /// (not every partition of the shard).
    with_producers: HashSet<PartitionId>,
}

pub struct Shard {
    pub id: ShardId,
    state: RefCell<State>,
    reader: WalReader,
    kick: LocalSender<()>,
    pub budget: Budget,
    cache: RefCell<ReadCache>,
    ahead: Rc<RefCell<ReadAhead>>,
    leader: Cell<bool>,
    leader_id: Cell<Option<u64>>,
    raft_term: Cell<u64>,
    raft_commit: Cell<u64>,
    wal_metrics: Rc<WalMetrics>,
    /// Messages from peers and clock ticks, for the Raft driver.
    raft_inbox: RefCell<Vec<raft::prelude::Message>>,
    tick_due: Cell<bool>,
    /// Shutting down: hand the group's leadership to a caught-up peer.
    hand_off: Cell<bool>,
    transport: Option<Rc<Transport>>,
    events: LocalSender<ShardEvent>,
    events_rx: RefCell<Option<LocalReceiver<ShardEvent>>>,
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
}

impl Shard {
    /// Opens the shard's WAL, rebuilds its partitions from it, starts its Raft
    /// group and the driver task that runs it.
    pub async fn open(cfg: ShardConfig, partitions: &[PartitionId], known_below: u32) -> Result<Rc<Shard>, ShardError> {
        let mut state = State {
            known_below,
            ..Default::default()
        };
        for &p in partitions {
            state.partitions.insert(p, Partition::new(p));
        }
        let mut replay = Replay::default();
        let (writer, reader) = wal::open(&cfg.wal_dir, cfg.segment_bytes, |rec, pos| {
            replay_record(&mut state, &mut replay, rec, pos)
        })
        .await?;
        if replay.rewrites_committed {
            return Err(ShardError::Storage(
                "WAL rewrites a committed Raft entry; the log is corrupt".into(),
            ));
        }
        let membership = cfg.membership.clone();
        let (kick, kicked) = local_channel::new_bounded(1);
        let wake: Rc<RefCell<Option<std::rc::Weak<Shard>>>> = Rc::new(RefCell::new(None));
        let wake_group = wake.clone();
        let mut group = RaftGroup::start(
            writer,
            reader.clone(),
            RecoveredRaft {
                hard_state: replay.hard_state,
                applied: replay.applied,
                unapplied: replay.unapplied,
            },
            membership.clone(),
            (cfg.memory_bytes / RAFT_RETAIN_SHARE) as usize,
            Rc::new(move || {
                if let Some(shard) = wake_group.borrow().as_ref().and_then(|w| w.upgrade()) {
                    let _ = shard.kick.try_send(());
                }
            }),
        )?;
        let (events, events_rx) = local_channel::new_unbounded();
        for (index, command) in replay.meta {
            let _ = events.try_send(ShardEvent::MetaCommitted { index, command });
        }
        let shard = Rc::new_cyclic(|weak: &std::rc::Weak<Shard>| {
            let transport = cfg.raft_listen.filter(|_| !membership.is_single()).map(|listen| {
                let weak = weak.clone();
                Transport::start(membership.me, listen, &cfg.peers, move |msg| {
                    if let Some(shard) = weak.upgrade() {
                        shard.raft_inbox.borrow_mut().push(msg);
                        let _ = shard.kick.try_send(());
                    }
                })
            });
            let (transport, bind_error) = match transport {
                Some(Ok(t)) => (Some(t), None),
                Some(Err(e)) => (None, Some(e.to_string())),
                None => (None, None),
            };
            Shard {
                id: cfg.id,
                state: RefCell::new(State {
                    failed: bind_error,
                    ..state
                }),
                reader,
                kick,
                budget: Budget::new(cfg.memory_bytes),
                cache: RefCell::new(ReadCache::new((cfg.memory_bytes / READ_CACHE_SHARE) as usize)),
                ahead: Rc::new(RefCell::new(ReadAhead::new(
                    (cfg.memory_bytes / READ_CACHE_SHARE) as usize,
                ))),
                leader: Cell::new(group.is_leader()),
                leader_id: Cell::new(None),
                raft_term: Cell::new(group.term()),
                raft_commit: Cell::new(group.commit_index()),
                wal_metrics: group.wal().metrics(),
                raft_inbox: RefCell::new(Vec::new()),
                tick_due: Cell::new(false),
                hand_off: Cell::new(false),
                transport,
                events,
                events_rx: RefCell::new(Some(events_rx)),
            }
        });
        if let Some(reason) = shard.state.borrow().failed.clone() {
            return Err(ShardError::Storage(reason));
        }
        *wake.borrow_mut() = Some(Rc::downgrade(&shard));
        if let Some(t) = &shard.transport {
            group.set_transport(t.clone());
            glommio::spawn_local(tick(shard.clone())).detach();
        }
        glommio::spawn_local(drive(shard.clone(), group, kicked)).detach();
        // Elections and recovered entries produce a first Ready.
        let _ = shard.kick.try_send(());
        Ok(shard)
    }

    /// The shard's events (metadata commits, leader changes), for the one
    /// node task that follows them. `None` once taken.
    pub fn take_events(&self) -> Option<LocalReceiver<ShardEvent>> {
        self.events_rx.borrow_mut().take()
    }

    /// The Raft id of the group's leader, as far as this shard knows.
    pub fn leader_id(&self) -> Option<u64> {
        self.leader_id.get()
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get()
    }

    /// Asks the Raft driver to hand this group's leadership to a caught-up
    /// peer (controlled shutdown). True while this node still leads a
    /// group that has peers: the caller waits, asking again, until false.
    pub fn hand_off_leadership(&self) -> bool {
        if self.transport.is_none() || !self.is_leader() {
            return false;
        }
        self.hand_off.set(true);
        let _ = self.kick.try_send(());
        true
    }

    /// Peers (Raft ids) this shard heard from within `within`.
    pub fn live_peers(&self, within: std::time::Duration) -> Vec<u64> {
        self.transport.as_ref().map_or_else(Vec::new, |t| t.live_peers(within))
    }

    /// Proposes a metadata command to the group (any member may: a
    /// follower forwards it to the leader). Ok means it was handed to Raft,
    /// not that it committed: a `MetaCommitted` event tells that.
    pub async fn propose_meta(&self, command: Vec<u8>) -> Result<(), ShardError> {
        if let Some(reason) = &self.state.borrow().failed {
            return Err(ShardError::Storage(reason.clone()));
        }
        let (tx, rx) = flume::bounded(1);
        self.state.borrow_mut().meta_proposals.push((command, tx));
        let _ = self.kick.try_send(());
        rx.recv_async()
            .await
            .unwrap_or_else(|_| Err(ShardError::Storage("shard stopped".into())))
    }

    /// The shard's storage-side state, for a metrics scrape or a health check.
    pub fn report(&self) -> StorageReport {
        let st = self.state.borrow();
        let wal = &self.wal_metrics;
        StorageReport {
            partitions: st.partitions.len() as u64,
            budget_limit_bytes: self.budget.limit_bytes(),
            budget_used_bytes: self.budget.used_bytes(),
            budget_waits: self.budget.waits(),
            wal_appends: wal.appends.get(),
            wal_bytes: wal.bytes.get(),
            wal_records: wal.records.get(),
            wal_segments: wal.segments.get(),
            wal_fsync: wal.fsync_summary(),
            raft_term: self.raft_term.get(),
            raft_commit_index: self.raft_commit.get(),
            raft_leader: self.leader.get(),
            batches_staged: st.batches_staged,
            producers_expired: st.producers_expired,
            read_cache_bytes: self.cache.borrow().bytes() as u64,
            read_cache_hits: self.cache.borrow().hits,
            read_cache_misses: self.cache.borrow().misses,
            read_ahead_bytes: self.ahead.borrow().bytes() as u64,
            read_ahead_runs: self.ahead.borrow().started,
            read_ahead_hits: self.ahead.borrow().hits,
            failed: st.failed.clone(),
        }
    }

    pub fn create_partitions(&self, ids: &[PartitionId]) {
        let mut st = self.state.borrow_mut();
        for &id in ids {
            st.partitions.entry(id).or_insert_with(|| Partition::new(id));
        }
    }

    /// Forgets partitions; their bytes stay in the WAL until its segments
    /// are reclaimed. Fetches waiting on them return at once.
    pub fn delete_partitions(&self, ids: &[PartitionId]) {
        let mut st = self.state.borrow_mut();
        for id in ids {
            st.partitions.remove(id);
            st.deleted.insert(*id);
            st.data_waiters.remove(id);
            self.ahead.borrow_mut().forget(*id);
        }
    }

    /// Appends the batches of one produce request (for partitions of this
    /// shard) and waits until they are as durable as `durability` asks.
    /// Returns each item's base offset, in order.
    pub async fn produce(&self, items: Vec<ProduceItem>, durability: Durability) -> Vec<ProduceResult> {
        let (results, done) = {
            let mut st = self.state.borrow_mut();
            if let Some(reason) = &st.failed {
                let e = ShardError::Storage(reason.clone());
                return items.iter().map(|_| Err(e.clone())).collect();
            }
            if !self.leader.get() {
                return items.iter().map(|_| Err(ShardError::NotLeader)).collect();
            }
            let mut results = Vec::with_capacity(items.len());
            let mut any = false;
            for item in &items {
                results.push(st.stage(item));
                any |= results.last().is_some_and(|r| r.is_ok());
            }
            if !any {
                return results;
            }
            let (tx, rx) = flume::bounded(1);
            st.proposal_waiters.push(Waiter { durability, done: tx });
            (results, rx)
        };
        let _ = self.kick.try_send(());
        match done.recv_async().await {
            Ok(Ok(())) => results,
            Ok(Err(e)) => results.into_iter().map(|r| r.and(Err(e.clone()))).collect(),
            Err(_) => results
                .into_iter()
                .map(|r| r.and(Err(ShardError::Storage("shard stopped".into()))))
                .collect(),
        }
    }

    /// Reads committed batches of several partitions, in order: each from
    /// its offset, up to its own limit, and all together up to about
    /// `budget` bytes (the first batch found always goes, as KIP-74
    /// requires; partitions after the budget is spent return no records).
    /// Every WAL read of every partition is issued at once.
    pub async fn read_many(
        &self,
        reads: &[(PartitionId, Offset, usize)],
        budget: usize,
    ) -> Vec<Result<PartitionRead, ShardError>> {
        if !self.leader.get() {
            // Kafka clients fetch from leaders; a follower's data is not
            // theirs to read.
            return reads.iter().map(|_| Err(ShardError::NotLeader)).collect();
        }
        let mut plans = Vec::with_capacity(reads.len());
        let mut read_ahead = Vec::new();
        {
            let st = self.state.borrow();
            let mut remaining = budget;
            let mut taken_any = false;
            for &(partition, offset, max_bytes) in reads {
                let Some(p) = st.partitions.get(&partition) else {
                    plans.push(Err(ShardError::UnknownPartition(partition)));
                    continue;
                };
                let (hw, start) = (p.high_watermark(), p.log_start());
                if offset < start || offset > hw {
                    plans.push(Err(ShardError::OffsetOutOfRange {
                        offset,
                        log_start: start,
                        high_watermark: hw,
                    }));
                    continue;
                }
                let limit = max_bytes.min(remaining);
                let batches = if limit > 0 || !taken_any {
                    p.committed_batches_from(offset, limit)
                } else {
                    Vec::new()
                };
                let bytes: usize = batches.iter().map(|b| b.len as usize).sum();
                remaining = remaining.saturating_sub(bytes);
                taken_any |= bytes > 0;
                if let Some(next) = self.next_to_read_ahead(p, &batches, bytes) {
                    read_ahead.push((partition, next));
                }
                plans.push(Ok((partition, batches, hw, start)));
            }
        }
        // Start every read before waiting for any.
        let pending: Vec<_> = plans
            .into_iter()
            .map(|plan| {
                plan.map(|(partition, batches, hw, start)| {
                    let len = batches.iter().map(|b| b.len as usize).sum();
                    (self.start_reads(partition, &batches), len, hw, start)
                })
            })
            .collect();
        for (partition, batches) in read_ahead {
            self.start_read_ahead(partition, batches);
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Err(e) => Err(e),
                Ok((reads, len, high_watermark, log_start)) => {
                    Self::finish_reads(reads, len).await.map(|records| PartitionRead {
                        high_watermark,
                        log_start,
                        records,
                    })
                }
            });
        }
        out
    }

    /// Starts reading a partition's planned `batches`: what the read-ahead
    /// holds (or is reading) first, then one WAL read per run of batches
    /// that sit back to back in one segment, unless the read cache has it.
    fn start_reads(&self, partition: PartitionId, batches: &[IndexEntry]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut rest = batches;
        let found = self.ahead.borrow_mut().lookup(partition, batches);
        match found {
            Lookup::Miss => {}
            Lookup::Ready { bytes, covered } => {
                pieces.push(Piece::Cached(bytes));
                rest = &batches[covered..];
            }
            Lookup::Reading { done, covered } => {
                let (ahead, reader) = (self.ahead.clone(), self.reader.clone());
                let mine = batches[..covered].to_vec();
                pieces.push(Piece::Ahead(glommio::spawn_local(async move {
                    let _ = done.recv_async().await;
                    let again = ahead.borrow_mut().lookup(partition, &mine);
                    match again {
                        Lookup::Ready { bytes, covered } if covered == mine.len() => Ok(bytes),
                        // The read failed or was evicted already: read for ourselves.
                        _ => read_batches(reader, &mine).await,
                    }
                })));
                rest = &batches[covered..];
            }
        }
        if !pieces.is_empty() {
            self.ahead.borrow_mut().hits += 1;
        }
        let mut cache = self.cache.borrow_mut();
        pieces.extend(wal_runs(rest).into_iter().map(|(pos, len)| match cache.get(pos, len) {
            Some(bytes) => Piece::Cached(bytes),
            None => {
                let reader = self.reader.clone();
                Piece::Disk(glommio::spawn_local(async move { reader.read(pos, len).await }))
            }
        }));
        pieces
    }

    /// Gathers a partition's reads into one buffer: the only copy of the
    /// data on the read path before the response frame, and none when one
    /// piece in memory holds it all.
    async fn finish_reads(mut pieces: Vec<Piece>, len: usize) -> Result<Bytes, ShardError> {
        if pieces.len() == 1 {
            match pieces.pop().expect("one piece") {
                Piece::Cached(bytes) => return Ok(bytes),
                Piece::Ahead(read) => return Ok(read.await?),
                Piece::Disk(read) => return Ok(Bytes::copy_from_slice(&read.await?)),
            }
        }
        let mut out = BytesMut::with_capacity(len);
        for p in pieces {
            match p {
                Piece::Cached(bytes) => out.extend_from_slice(&bytes),
                Piece::Ahead(read) => out.extend_from_slice(&read.await?),
                Piece::Disk(read) => out.extend_from_slice(&read.await?),
            }
        }
        Ok(out.freeze())
    }

    /// The batches to read ahead after a fetch of `partition` planned
    /// `batches` (`bytes` in all): about as much again, if the fetch left
    /// committed data behind it that neither cache holds yet.
    fn next_to_read_ahead(&self, p: &Partition, batches: &[IndexEntry], bytes: usize) -> Option<Vec<IndexEntry>> {
        let next = Offset(batches.last()?.last.0 + 1);
        if next >= p.high_watermark() {
            return None; // at the tail: the read cache serves it
        }
        let ahead = self.ahead.borrow();
        let want = bytes.min(ahead.run_limit());
        let next_batches = p.committed_batches_from(next, want);
        let first = next_batches.first()?;
        if ahead.covers(p.id, first.pos) || self.cache.borrow().holds(first.pos, first.len as usize) {
            return None;
        }
        Some(next_batches)
    }

    /// Reads `batches` of `partition` into the read-ahead in the background,
    /// if the read-ahead and the budget have room for them now.
    fn start_read_ahead(&self, partition: PartitionId, batches: Vec<IndexEntry>) {
        let len: usize = batches.iter().map(|b| b.len as usize).sum();
        let charge = {
            let mut ahead = self.ahead.borrow_mut();
            if !ahead.make_room(len) {
                return;
            }
            loop {
                match self.budget.try_charge(len as u64) {
                    Some(c) => break c,
                    None if ahead.evict_oldest() => continue,
                    None => return,
                }
            }
        };
        let id = self.ahead.borrow_mut().begin(partition, &batches);
        let (ahead, reader) = (self.ahead.clone(), self.reader.clone());
        glommio::spawn_local(async move {
            match read_batches(reader, &batches).await {
                Ok(data) => ahead.borrow_mut().complete(partition, id, data, charge),
                Err(e) => {
                    // The fetch that wants these batches reads them itself
                    // and reports the error.
                    tracing::trace!(%partition, error = %e, "read-ahead failed");
                    ahead.borrow_mut().abort(partition, id);
                }
            }
        })
        .detach();
    }

    /// Keeps a just-persisted entry for readers, charged to the budget; the
    /// cache gives way (oldest first) when the budget is short.
    fn cache_entry(&self, pos: WalPos, payload: &Bytes) {
        let mut cache = self.cache.borrow_mut();
        let charge = loop {
            match self.budget.try_charge(payload.len() as u64) {
                Some(c) => break Some(c),
                None if cache.evict_oldest() => continue,
                None => break None,
            }
        };
        if charge.is_some() {
            cache.insert(pos, payload.clone(), charge);
        }
    }

    pub fn list_offset(&self, partition: PartitionId, query: OffsetQuery) -> Result<Option<(Offset, i64)>, ShardError> {
        if !self.leader.get() {
            return Err(ShardError::NotLeader);
        }
        let st = self.state.borrow();
        let p = st
            .partitions
            .get(&partition)
            .ok_or(ShardError::UnknownPartition(partition))?;
        Ok(match query {
            OffsetQuery::Earliest => Some((p.log_start(), -1)),
            OffsetQuery::Latest => Some((p.high_watermark(), -1)),
            OffsetQuery::MaxTimestamp => p.max_timestamp(),
            OffsetQuery::AtOrAfter(ts) => p.offset_for_timestamp(ts),
        })
    }

    /// Signals `notify` once `partition` has committed data at or past
    /// `offset` (at once if it already has, or if the partition is gone).
    pub fn watch(&self, partition: PartitionId, offset: Offset, notify: flume::Sender<()>) {
        let mut st = self.state.borrow_mut();
        let ready = match st.partitions.get(&partition) {
            Some(p) => p.high_watermark() > offset,
            None => true,
        };
        if ready {
            let _ = notify.try_send(());
            return;
        }
        let list = st.data_waiters.entry(partition).or_default();
        // Waiters whose fetch already returned are dropped here, so an idle
        // partition polled forever holds only live waiters.
        list.retain(|w| !w.is_disconnected());
        list.push(notify);
    }

    fn apply(&self, out: ReadyOutcome) {
        if out.persisted_own {
            // Followers do not serve reads: only a leader caches.
            for (_, payload, pos) in &out.persisted {
                self.cache_entry(*pos, payload);
            }
        }
        let mut st = self.state.borrow_mut();
        if !out.overwritten.is_empty() {
            tracing::info!(shard = %self.id, entries = out.overwritten.len(),
                "a new leader's log replaced uncommitted entries; their batches are dropped");
        }
        for payload in &out.overwritten {
            st.truncate_entry(payload);
        }
        for (_, payload, pos) in &out.persisted {
            // A leader recorded its producers' sequences when it staged
            // the batches; a follower learns them here.
            st.index_entry(payload, *pos, !out.persisted_own);
        }
        for (_, payload) in &out.committed {
            st.commit_entry(payload);
        }
        st.complete_waiters(out.persisted_index, out.committed_index);
        drop(st);
        for (index, command) in out.committed_meta {
            let _ = self.events.try_send(ShardEvent::MetaCommitted { index, command });
        }
    }

    /// Follows the group's role after a Ready round: a leader that lost
    /// its leadership answers everything waiting on it with NotLeader and
    /// takes back the offsets it handed out for batches never written;
    /// the node hears of every change of leader.
    fn observe_role(&self, group: &RaftGroup) {
        self.raft_term.set(group.term());
        self.raft_commit.set(group.commit_index());
        let leading = group.is_leader();
        if self.leader.replace(leading) && !leading {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            let waiting: Vec<Waiter> = st
                .inflight
                .drain(..)
                .flat_map(|(_, ws)| ws)
                .chain(st.proposal_waiters.drain(..))
                .collect();
            for w in waiting {
                let _ = w.done.try_send(Err(ShardError::NotLeader));
            }
            st.proposal.take();
            for p in st.partitions.values_mut() {
                p.forget_unstored();
            }
            tracing::info!(shard = %self.id, term = group.term(), "lost Raft leadership");
        }
        let leader = group.leader_id();
        if self.leader_id.replace(leader) != leader {
            if leading {
                tracing::info!(shard = %self.id, term = group.term(), "leading Raft group");
            }
            let _ = self.events.try_send(ShardEvent::Leader { leader });
        }
    }

    fn fail(&self, reason: String) {
        tracing::error!(shard = %self.id, %reason, "shard storage failed; refusing writes until restart");
        let mut st = self.state.borrow_mut();
        let e = ShardError::Storage(reason.clone());
        for (_, ws) in st.inflight.drain(..) {
            for w in ws {
                let _ = w.done.try_send(Err(e.clone()));
            }
        }
        for w in st.proposal_waiters.drain(..) {
            let _ = w.done.try_send(Err(e.clone()));
        }
        for (_, done) in st.meta_proposals.drain(..) {
            let _ = done.try_send(Err(e.clone()));
        }
        st.failed = Some(reason);
    }
}

/// The largest single WAL read. The executor's registered I/O memory (a
/// pool reused read after read, pinned once) serves reads of this size;
/// a larger one would get a fresh buffer whose pages the kernel must
/// fault in, zero and pin for every read.
const READ_CHUNK_BYTES: u64 = 1 << 20;

/// The WAL reads that fetch `batches`: runs of batches that sit back to
/// back in one segment, cut at `READ_CHUNK_BYTES` boundaries.
fn wal_runs(batches: &[IndexEntry]) -> Vec<(WalPos, usize)> {
    let mut runs: Vec<(WalPos, usize)> = Vec::new();
    for b in batches {
        match runs.last_mut() {
            Some((pos, len)) if pos.segment == b.pos.segment && pos.offset + *len as u64 == b.pos.offset => {
                *len += b.len as usize
            }
            _ => runs.push((b.pos, b.len as usize)),
        }
    }
    let mut reads = Vec::with_capacity(runs.len());
    for (mut pos, len) in runs {
        let end = pos.offset + len as u64;
        while pos.offset < end {
            let cut = ((pos.offset / READ_CHUNK_BYTES + 1) * READ_CHUNK_BYTES).min(end);
            reads.push((pos, (cut - pos.offset) as usize));
            pos.offset = cut;
        }
    }
    reads
}

/// Reads `batches` from the WAL, all runs at once, into one buffer.
async fn read_batches(reader: WalReader, batches: &[IndexEntry]) -> Result<Bytes, WalError> {
    let reads: Vec<_> = wal_runs(batches)
        .into_iter()
        .map(|(pos, len)| {
            let reader = reader.clone();
            glommio::spawn_local(async move { reader.read(pos, len).await })
        })
        .collect();
    let mut out = BytesMut::with_capacity(batches.iter().map(|b| b.len as usize).sum());
    for read in reads {
        out.extend_from_slice(&read.await?);
    }
    Ok(out.freeze())
}

impl State {
    /// Assigns offsets to one item's batches and adds them to the proposal.
    fn stage(&mut self, item: &ProduceItem) -> ProduceResult {
        let now_ms = wall_clock_ms();
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
                p.producers_mut().record(producer_id, epoch, seq, count, base, now_ms);
                recorded = true;
            }
            first.get_or_insert(base);
            self.proposal.push(item.partition, base, bytes);
            self.batches_staged += 1;
        }
        if recorded {
            self.with_producers.insert(item.partition);
            self.maybe_expire_producers(now_ms);
        }
        Ok(first.expect("a produce item has at least one batch"))
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
    fn index_entry(&mut self, payload: &[u8], pos: WalPos, record_producers: bool) {
        let now_ms = wall_clock_ms();
        for it in items(payload) {
            let Some(p) = self.entry_partition(it.partition) else {
                continue; // deleted since
            };
            let b = &payload[it.at..it.at + it.len];
            let delta = batch::last_offset_delta(b);
            let last = Offset(it.base.0 + delta as i64);
            let (producer_id, epoch, seq) = batch::producer(b);
            if record_producers && producer_id >= 0 {
                p.producers_mut()
                    .record(producer_id, epoch, seq, delta + 1, it.base, now_ms);
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

    fn commit_entry(&mut self, payload: &[u8]) {
        for it in items(payload) {
            let Some(p) = self.partitions.get_mut(&it.partition) else {
                continue;
            };
            let b = &payload[it.at..it.at + it.len];
            let end = Offset(it.base.0 + batch::last_offset_delta(b) as i64 + 1);
            if p.advance_high_watermark(end) {
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
            for (idx, ws) in self.inflight.iter_mut() {
                if *idx > persisted {
                    break;
                }
                ws.retain(|w| {
                    let done = w.durability == Durability::Persisted;
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
}

fn replay_record(state: &mut State, replay: &mut Replay, rec: Record, pos: WalPos) {
    match rec.kind {
        RecordKind::HardState => {
            let Some(hs) = decode_hard_state(&rec.payload) else {
                return;
            };
            replay.hard_state = Some(hs);
            let commit = hs.commit.0;
            let n = replay.unapplied.iter().take_while(|e| e.index <= commit).count();
            for e in replay.unapplied.drain(..n) {
                if is_data(&e) {
                    state.commit_entry(&e.data);
                } else if crate::raft::record_kind(&e) == RecordKind::Meta {
                    replay.meta.push((RaftIndex(e.index), e.data.clone()));
                }
                replay.applied = (e.index, e.term);
            }
        }
        kind => {
            if rec.index <= replay.applied.0 {
                replay.rewrites_committed = true;
                return;
            }
            // A lower index than the last is a Raft overwrite of an
            // uncommitted tail: what it replaces is gone.
            let keep = replay.unapplied.partition_point(|e| e.index < rec.index);
            for e in replay.unapplied.drain(keep..) {
                if is_data(&e) {
                    state.truncate_entry(&e.data);
                }
            }
            if kind == RecordKind::Entry && !rec.payload.is_empty() {
                state.index_entry(&rec.payload, pos, true);
            }
            replay.unapplied.push(entry_of(kind, rec.term, rec.index, rec.payload));
        }
    }
}

/// With peers, the group's clock: one tick per shard, whatever the number
/// of partitions.
async fn tick(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(crate::raft::TICK).await;
        shard.tick_due.set(true);
        let _ = shard.kick.try_send(());
    }
}

/// The shard's Raft driver: wakes on a proposal, a peer's message or a
/// tick, proposes everything gathered since the last round as one entry,
/// and runs Ready rounds until there is nothing left. Proposals that arrive
/// while a WAL write is in flight gather into the next one: group commit.
async fn drive(shard: Rc<Shard>, mut group: RaftGroup, kicked: LocalReceiver<()>) {
    // Group k's preferred leader: the k-th voter (round robin), so the
    // groups' leaders spread over the nodes.
    let voters = &group.membership().voters;
    let preferred = voters[shard.id.0 as usize % voters.len()];
    let mut ticks = 0u64;
    while kicked.recv().await.is_some() {
        loop {
            for msg in std::mem::take(&mut *shard.raft_inbox.borrow_mut()) {
                group.receive(msg);
            }
            if shard.tick_due.replace(false) {
                group.tick();
                ticks += 1;
                let live = || shard.live_peers(std::time::Duration::from_secs(1)).contains(&preferred);
                if ticks.is_multiple_of(crate::raft::BALANCE_TICKS) && group.hand_to_preferred(preferred, live()) {
                    tracing::info!(shard = %shard.id, to = preferred, "handing Raft leadership to the group's preferred leader");
                }
            }
            if shard.hand_off.replace(false) {
                if let Some(to) = group.hand_to_caught_up() {
                    tracing::info!(shard = %shard.id, to, "shutting down: handing Raft leadership over");
                }
            }
            let metas = std::mem::take(&mut shard.state.borrow_mut().meta_proposals);
            for (command, done) in metas {
                let _ = done.try_send(group.propose_meta(command).map_err(ShardError::from));
            }
            let (payload, waiters) = {
                let mut st = shard.state.borrow_mut();
                (st.proposal.take(), std::mem::take(&mut st.proposal_waiters))
            };
            if !payload.is_empty() {
                match group.propose(payload) {
                    Ok(idx) => shard.state.borrow_mut().inflight.push_back((idx, waiters)),
                    Err(e) => {
                        let e = ShardError::from(e);
                        for w in waiters {
                            let _ = w.done.try_send(Err(e.clone()));
                        }
                    }
                }
            } else if !waiters.is_empty() {
                // Nothing new to write (retries of stored batches): answer
                // once what is already in flight is durable.
                let mut st = shard.state.borrow_mut();
                match st.inflight.back_mut() {
                    Some((_, ws)) => ws.extend(waiters),
                    None => waiters.into_iter().for_each(|w| {
                        let _ = w.done.try_send(Ok(()));
                    }),
                }
            }
            let stepped = group.step().await;
            match stepped {
                Ok(Some(out)) => {
                    shard.apply(out);
                    shard.observe_role(&group);
                }
                Ok(None) => {
                    shard.observe_role(&group);
                    if shard.raft_inbox.borrow().is_empty() && !shard.tick_due.get() {
                        break;
                    }
                }
                Err(e) => {
                    // The WAL's state after a failed append is unknown: the
                    // group stops here, so nothing after the failure can be
                    // persisted past a gap. Reads go on; writes are refused.
                    shard.fail(e.to_string());
                    return;
                }
            }
        }
    }
}
