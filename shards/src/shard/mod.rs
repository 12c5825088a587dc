//! One shard: the partitions it owns, its WAL and Raft group, its memory
//! budget. Everything here is `Rc`/`RefCell` and reached only from the
//! shard's own executor; other shards send it messages.
//!
//! - `mod.rs`: the public types, `Shard` (what the node calls) and its
//!   glommio driver: the task that runs the Raft group, the tick.
//! - `state.rs`: the state machine the driver runs (partitions, staging,
//!   waiters, apply, replay): no I/O, shared with the simulator.
//! - `reads.rs`: the read path (read cache, read-ahead, WAL reads).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::budget::Budget;
use crate::metrics::{StorageReport, WalMetrics};
use crate::producer::SeqError;

use crate::raft::transport::Transport;
use crate::raft::{Membership, PeerMessage, RaftError, RaftGroup, ReadyOutcome};
use crate::read_ahead::ReadAhead;
use crate::read_cache::ReadCache;
use crate::types::{Offset, PartitionId, RaftIndex, ShardId};
use crate::wal::{DmaDisk, WalError, WalReader};
use background::{Background, Finished};
use pull::{PullMessage, PullReply, PullRequest};

pub mod background;
pub mod checkpoint;
pub mod compact;
pub mod pull;
mod reads;
pub mod reclaim;
mod retention;
pub mod snapshot;
pub mod state;

pub use reads::read_batches;
pub use state::State;

/// The broker's clock, in ms since the epoch: producer expiry, retention,
/// LogAppendTime stamps, group offsets' expiry.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    /// Mutual TLS on the Raft transport, when the cluster has it.
    pub peer_tls: Option<crate::raft::transport::PeerTls>,
    /// How often the shard looks for batches past their `retention.ms`.
    pub retention_check_interval: std::time::Duration,
}

/// What a shard tells the node about, in order, through `Shard::events`.
#[derive(Debug)]
pub enum ShardEvent {
    /// A metadata command committed in this shard's group (shard 0's).
    MetaCommitted { index: RaftIndex, command: Bytes },
    /// A snapshot replaced this shard's log up to `index`; `image` is the
    /// metadata it carried (what `Shard::set_meta_image` gave the leader).
    MetaImage { index: RaftIndex, image: Vec<u8> },
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

/// Where a produce item went: its first offset, and the partition's log
/// start then (Kafka's Produce v5+ reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base: Offset,
    pub log_start: Offset,
}

pub type ProduceResult = Result<Appended, ShardError>;

/// What a fetch of one partition returns.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub high_watermark: Offset,
    pub log_start: Offset,
    pub records: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    MaxTimestamp,
    AtOrAfter(i64),
}

/// Finds a record inside one stored batch (the Kafka codec's side: it
/// knows records and their compression): `(batch, query, min_offset)`
/// gives the (offset, timestamp) of the record the timestamp query names
/// at `min_offset` or later, `Ok(None)` when none of the batch does, or
/// why its records do not read.
pub type RecordScan = fn(&[u8], OffsetQuery, Offset) -> Result<Option<(Offset, i64)>, String>;

/// Batches one timestamp lookup reads, each after a batch whose max
/// timestamp promised a record it did not hold (a producer's batch header
/// is not checked against its records), before it gives up.
const TIMESTAMP_SCAN_BATCHES: usize = 8;

/// What the state machine answers a ListOffsets query with: the answer,
/// or the batch to look inside and the partition's log start.
pub enum Listing {
    Answer(Option<(Offset, i64)>),
    Batch(crate::partition::IndexEntry, Offset),
}

/// The read cache, and the read-ahead, may each hold up to this fraction
/// (1/N) of the memory budget.
const READ_CACHE_SHARE: u64 = 8;
/// Applied Raft entries kept in memory for followers that lag behind may
/// take up to this fraction (1/N) of the memory budget.
const RAFT_RETAIN_SHARE: u64 = 4;
/// Most Raft messages, and entry bytes, waiting for the driver; beyond
/// them a peer's messages are dropped (`RaftInbox::push`).
const RAFT_INBOX_MAX_MESSAGES: usize = 16_384;
const RAFT_INBOX_MAX_BYTES: usize = 64 << 20;

/// Peers' Raft messages waiting for the driver, bounded.
#[derive(Default)]
struct RaftInbox {
    messages: Vec<raft::prelude::Message>,
    /// Entry bytes in `messages`.
    bytes: usize,
    /// Messages dropped because the inbox was full.
    dropped: u64,
}

impl RaftInbox {
    /// Queues `msg`, or drops it (and counts it) when the inbox holds its
    /// limit: Raft tolerates loss (the leader sends again), memory does
    /// not tolerate a peer that sends faster than this shard steps. One
    /// message always fits an empty inbox, however large.
    fn push(&mut self, msg: raft::prelude::Message) -> bool {
        let bytes: usize = msg.get_entries().iter().map(|e| e.data.len() + e.context.len()).sum();
        let full = self.messages.len() >= RAFT_INBOX_MAX_MESSAGES
            || (!self.messages.is_empty() && self.bytes + bytes > RAFT_INBOX_MAX_BYTES);
        if full {
            self.dropped += 1;
            return false;
        }
        self.bytes += bytes;
        self.messages.push(msg);
        true
    }

    fn take(&mut self) -> Vec<raft::prelude::Message> {
        self.bytes = 0;
        std::mem::take(&mut self.messages)
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

pub struct Shard {
    pub id: ShardId,
    /// This node's Raft id in the group.
    raft_me: u64,
    state: RefCell<State>,
    reader: WalReader<DmaDisk>,
    kick: LocalSender<()>,
    pub budget: Budget,
    cache: RefCell<ReadCache>,
    ahead: Rc<RefCell<ReadAhead>>,
    raft_term: Cell<u64>,
    raft_commit: Cell<u64>,
    wal_metrics: Rc<WalMetrics>,
    /// Messages from peers and clock ticks, for the Raft driver.
    raft_inbox: RefCell<RaftInbox>,
    tick_due: Cell<bool>,
    /// Shutting down: hand the group's leadership to a caught-up peer.
    hand_off: Cell<bool>,
    transport: Option<Rc<Transport>>,
    events: LocalSender<ShardEvent>,
    events_rx: RefCell<Option<LocalReceiver<ShardEvent>>>,
    /// The last metadata entry of this group the node's metadata log holds.
    meta_durable: Cell<u64>,
    /// A wake-up for a reclaim that was put off is set.
    reclaim_wake: Cell<bool>,
    /// A move or compaction job running beside the Raft rounds, and its
    /// result once done (`background`).
    background_running: Cell<bool>,
    background_done: RefCell<Option<background::Done<DmaDisk>>>,
    /// When the wake-up set for the cleaner fires (ms), if one is set.
    compact_wake: Cell<Option<i64>>,
    /// The last entry the state machine applied (what a pull is served
    /// against).
    raft_applied: Cell<u64>,
    /// Peers' answers to this replica's pulls, and peers that asked for a
    /// snapshot's data, for the driver.
    pull_replies: RefCell<Vec<PullReply>>,
    pulling_peers: RefCell<Vec<u64>>,
    /// The node's metadata as a snapshot of this group carries it.
    meta_image: RefCell<Option<MetaImage>>,
    snapshots_sent: Cell<u64>,
    snapshots_installed: Cell<u64>,
}

/// Gives the node's metadata as of now, for a snapshot (group 0).
pub type MetaImage = Box<dyn Fn() -> Result<Vec<u8>, String>>;

impl Shard {
    /// Opens the shard's WAL, rebuilds its partitions from it, starts its Raft
    /// group and the driver task that runs it.
    pub async fn open(cfg: ShardConfig, partitions: &[PartitionId], known_below: u32) -> Result<Rc<Shard>, ShardError> {
        // Before recovery rebuilds the partitions' indexes.
        let index_dir = cfg.wal_dir.parent().unwrap_or(&cfg.wal_dir).join("index");
        crate::partition::store::install(&index_dir)
            .map_err(|e| ShardError::Storage(format!("offset index files at {}: {e}", index_dir.display())))?;
        let mut state = State::new(partitions, known_below);
        let recovered = state::recover(DmaDisk, &cfg.wal_dir, cfg.segment_bytes, &mut state, wall_clock_ms())
            .await
            .map_err(|e| ShardError::Storage(e.to_string()))?;
        let reader = recovered.reader;
        let membership = cfg.membership.clone();
        let (kick, kicked) = local_channel::new_bounded(1);
        let wake: Rc<RefCell<Option<std::rc::Weak<Shard>>>> = Rc::new(RefCell::new(None));
        let wake_group = wake.clone();
        let mut group = RaftGroup::start(
            recovered.writer,
            reader.clone(),
            recovered.raft,
            membership.clone(),
            (cfg.memory_bytes / RAFT_RETAIN_SHARE) as usize,
            Rc::new(move || {
                if let Some(shard) = wake_group.borrow().as_ref().and_then(|w| w.upgrade()) {
                    let _ = shard.kick.try_send(());
                }
            }),
            crate::raft::Elections::Randomized,
        )?;
        let (events, events_rx) = local_channel::new_unbounded();
        for (index, command) in recovered.meta {
            let _ = events.try_send(ShardEvent::MetaCommitted { index, command });
        }
        let shard = Rc::new_cyclic(|weak: &std::rc::Weak<Shard>| {
            let transport = cfg.raft_listen.filter(|_| !membership.is_single()).map(|listen| {
                let weak = weak.clone();
                Transport::start(membership.me, listen, &cfg.peers, cfg.peer_tls.clone(), move |msg| {
                    if let Some(shard) = weak.upgrade() {
                        shard.take_from_peer(msg);
                    }
                })
            });
            let (transport, bind_error) = match transport {
                Some(Ok(t)) => (Some(t), None),
                Some(Err(e)) => (None, Some(e.to_string())),
                None => (None, None),
            };
            if let Some(reason) = bind_error {
                state.fail(reason);
            }
            Shard {
                id: cfg.id,
                raft_me: membership.me,
                state: RefCell::new(state),
                reader,
                kick,
                budget: Budget::new(cfg.memory_bytes),
                cache: RefCell::new(ReadCache::new((cfg.memory_bytes / READ_CACHE_SHARE) as usize)),
                ahead: Rc::new(RefCell::new(ReadAhead::new(
                    (cfg.memory_bytes / READ_CACHE_SHARE) as usize,
                ))),
                raft_term: Cell::new(group.term()),
                raft_commit: Cell::new(group.commit_index()),
                wal_metrics: group.wal().metrics(),
                raft_inbox: RefCell::new(RaftInbox::default()),
                tick_due: Cell::new(false),
                hand_off: Cell::new(false),
                transport,
                events,
                events_rx: RefCell::new(Some(events_rx)),
                meta_durable: Cell::new(0),
                reclaim_wake: Cell::new(false),
                background_running: Cell::new(false),
                background_done: RefCell::new(None),
                compact_wake: Cell::new(None),
                raft_applied: Cell::new(group.applied().0),
                pull_replies: RefCell::new(Vec::new()),
                pulling_peers: RefCell::new(Vec::new()),
                meta_image: RefCell::new(None),
                snapshots_sent: Cell::new(0),
                snapshots_installed: Cell::new(0),
            }
        });
        if let Some(reason) = shard.state.borrow().failed.clone() {
            return Err(ShardError::Storage(reason));
        }
        *wake.borrow_mut() = Some(Rc::downgrade(&shard));
        if let Some(t) = &shard.transport {
            group.set_transport(t.clone() as Rc<dyn crate::raft::Outbox>);
            glommio::spawn_local(tick(shard.clone())).detach();
        }
        // A snapshot's batches not all pulled before the restart.
        shard.state.borrow_mut().settle_pull(&mut group);
        glommio::spawn_local(drive(shard.clone(), group, kicked)).detach();
        glommio::spawn_local(expire_by_time(Rc::downgrade(&shard), cfg.retention_check_interval)).detach();
        // Elections and recovered entries produce a first Ready.
        let _ = shard.kick.try_send(());
        Ok(shard)
    }

    /// Queues a peer's Raft message for the driver, unless the queue holds
    /// `RAFT_INBOX_MAX_*` already (a peer sending faster than this shard
    /// steps): then it is dropped, which Raft tolerates (the leader sends
    /// again), rather than held without bound.
    fn take_from_peer(self: &Rc<Self>, msg: PeerMessage) {
        match msg {
            PeerMessage::Raft(msg) => {
                if self.raft_inbox.borrow_mut().push(msg) {
                    let _ = self.kick.try_send(());
                }
            }
            PeerMessage::Pull(PullMessage::Request(req)) => {
                self.pulling_peers.borrow_mut().push(req.from);
                glommio::spawn_local(self.clone().serve_pull(req)).detach();
            }
            PeerMessage::Pull(PullMessage::Reply(reply)) => {
                self.pull_replies.borrow_mut().push(reply);
                let _ = self.kick.try_send(());
            }
        }
    }

    /// Answers a peer's pull of snapshot data with the batches this
    /// replica holds (a read failure sends nothing: the peer asks again).
    async fn serve_pull(self: Rc<Self>, req: PullRequest) {
        let served = self.state.borrow().serve_pull(&req, self.raft_applied.get());
        let entries: Vec<_> = served.iter().flat_map(|(_, es)| es.iter().copied()).collect();
        let data = match read_batches(self.reader.clone(), &entries).await {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(shard = %self.id, peer = req.from, error = %e, "reading batches a peer pulls failed");
                return;
            }
        };
        let reply = PullReply {
            from: self.raft_me,
            at: req.at,
            parts: served.into_iter().map(|(p, _)| p).collect(),
            data,
        };
        tracing::trace!(shard = %self.id, peer = req.from, at = req.at, parts = ?reply.parts, "answering a pull");
        if let Some(t) = &self.transport {
            crate::raft::Outbox::send_pull(&**t, req.from, PullMessage::Reply(reply));
        }
    }

    /// The node's metadata, for snapshots of this group (shard 0).
    pub fn set_meta_image(&self, image: MetaImage) {
        *self.meta_image.borrow_mut() = Some(image);
    }

    /// The node's metadata log holds the metadata entries of this group up
    /// to `index`: a checkpoint may cover them.
    pub fn set_meta_durable(&self, index: u64) {
        if index > self.meta_durable.replace(self.meta_durable.get().max(index))
            && self.state.borrow().reclaim_pending()
        {
            let _ = self.kick.try_send(());
        }
    }

    /// The shard's events (metadata commits, leader changes), for the one
    /// node task that follows them. `None` once taken.
    pub fn take_events(&self) -> Option<LocalReceiver<ShardEvent>> {
        self.events_rx.borrow_mut().take()
    }

    /// The Raft id of the group's leader, as far as this shard knows.
    pub fn leader_id(&self) -> Option<u64> {
        self.state.borrow().leader_id
    }

    /// Whether this shard leads its group and serves reads and writes.
    pub fn is_leader(&self) -> bool {
        self.state.borrow().serves()
    }

    /// Whether this shard's Raft role is leader (serving or not: a new
    /// leader before its first commit, one without its lease, one
    /// handing over).
    pub fn leads_group(&self) -> bool {
        self.state.borrow().leader
    }

    /// Asks the Raft driver to hand this group's leadership to a caught-up
    /// peer (controlled shutdown). True while this node still leads a
    /// group that has peers: the caller waits, asking again, until false.
    pub fn hand_off_leadership(&self) -> bool {
        // The Raft role, not `is_leader`: a leader handing over has given
        // up its lease already, and leads until a peer takes over.
        if self.transport.is_none() || !self.leads_group() {
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
        let index_files = crate::partition::store::stats();
        StorageReport {
            partitions: st.partitions.len() as u64,
            budget_limit_bytes: self.budget.limit_bytes(),
            budget_used_bytes: self.budget.used_bytes(),
            budget_waits: self.budget.waits(),
            wal_appends: wal.appends.get(),
            wal_bytes: wal.bytes.get(),
            wal_records: wal.records.get(),
            wal_segments: wal.segments.get(),
            wal_segments_reclaimed: wal.segments_reclaimed.get(),
            wal_checkpoints: wal.checkpoints.get(),
            cold_files: wal.cold_files.get(),
            bytes_moved: wal.bytes_moved.get(),
            retained_bytes: st.partitions.values().map(|p| p.size_bytes()).sum(),
            index_file_bytes: index_files.file_bytes,
            index_live_bytes: index_files.live_bytes,
            wal_fsync: wal.fsync_summary(),
            raft_term: self.raft_term.get(),
            raft_commit_index: self.raft_commit.get(),
            raft_leader: st.leader,
            batches_staged: st.batches_staged,
            producers_expired: st.producers_expired,
            producers_evicted: st.producers_evicted,
            read_cache_bytes: self.cache.borrow().bytes() as u64,
            read_cache_hits: self.cache.borrow().hits,
            read_cache_misses: self.cache.borrow().misses,
            read_ahead_bytes: self.ahead.borrow().bytes() as u64,
            read_ahead_runs: self.ahead.borrow().started,
            read_ahead_hits: self.ahead.borrow().hits,
            raft_inbox_dropped: self.raft_inbox.borrow().dropped,
            snapshots_sent: self.snapshots_sent.get(),
            snapshots_installed: self.snapshots_installed.get(),
            snapshot_bytes_pulled: st.pull.bytes,
            pulling: st.pulling(),
            compaction_runs: st.cleaner.runs,
            compaction_bytes_read: st.cleaner.bytes_read,
            compaction_bytes_written: st.cleaner.bytes_written,
            failed: st.failed.clone(),
        }
    }

    pub fn create_partitions(&self, ids: &[PartitionId]) {
        self.state.borrow_mut().create_partitions(ids);
    }

    /// Forgets partitions; their bytes stay in the WAL until its segments
    /// are reclaimed. Fetches waiting on them return at once.
    pub fn delete_partitions(&self, ids: &[PartitionId]) {
        self.state.borrow_mut().delete_partitions(ids);
        for id in ids {
            self.ahead.borrow_mut().forget(*id);
        }
    }

    /// DeleteRecords: moves each partition's log start up to its offset
    /// (`None`: the high watermark) on every replica, through the Raft log
    /// (one entry for them all), and returns each low watermark once that
    /// committed.
    pub async fn delete_records(&self, trims: Vec<(PartitionId, Option<Offset>)>) -> Vec<Result<Offset, ShardError>> {
        let staged: Vec<_> = {
            let mut st = self.state.borrow_mut();
            trims.iter().map(|&(p, o)| st.delete_records(p, o)).collect()
        };
        let _ = self.kick.try_send(());
        let mut out = Vec::with_capacity(staged.len());
        for ((partition, _), staged) in trims.into_iter().zip(staged) {
            out.push(match staged {
                Err(e) => Err(e),
                Ok((low, None)) => Ok(low),
                Ok((low, Some(done))) => match done.recv_async().await {
                    Ok(Ok(())) => Ok(self
                        .state
                        .borrow()
                        .partition(partition)
                        .map_or(low, |p| p.log_start().max(low))),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(ShardError::Storage("shard stopped".into())),
                },
            });
        }
        out
    }

    /// Appends the batches of one produce request (for partitions of this
    /// shard) and waits until they are as durable as `durability` asks.
    /// Returns each item's base offset, in order.
    pub async fn produce(&self, items: Vec<ProduceItem>, durability: Durability) -> Vec<ProduceResult> {
        let (results, done) = self.state.borrow_mut().produce(&items, durability, wall_clock_ms());
        let Some(done) = done else {
            return results;
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

    /// Sets (or, `None`, lifts) a partition's `retention.bytes` and
    /// `retention.ms`; the leader trims it as writes pass the first and
    /// as time passes the second.
    pub fn set_retention(&self, partition: PartitionId, bytes: Option<u64>, ms: Option<i64>) {
        let mut st = self.state.borrow_mut();
        st.set_retention_bytes(partition, bytes);
        st.set_retention_ms(partition, ms);
    }

    /// Sets (or, `None`, lifts) a partition's compaction
    /// (`cleanup.policy=compact`).
    pub fn set_compaction(&self, partition: PartitionId, c: Option<compact::Compaction>) {
        let on = c.is_some();
        self.state.borrow_mut().set_compaction(partition, c);
        if on {
            let _ = self.kick.try_send(());
        }
    }

    /// Each partition's stored bytes on this replica (leader or not), or
    /// `None` for a partition this shard does not hold.
    pub fn partition_sizes(&self, ids: &[PartitionId]) -> Vec<Option<u64>> {
        let st = self.state.borrow();
        ids.iter().map(|&id| st.partition(id).map(|p| p.size_bytes())).collect()
    }

    /// ListOffsets on one partition: `(offset, timestamp)`, or `None` when
    /// no record is at or after the time asked. A timestamp is answered at
    /// record granularity, as Kafka does: the batch that holds it is read
    /// and `scan` finds the record inside. A batch whose max timestamp
    /// promised a record it does not hold sends the search on to the next;
    /// records that do not read are answered at batch granularity.
    pub async fn list_offset(
        &self,
        partition: PartitionId,
        query: OffsetQuery,
        scan: RecordScan,
    ) -> Result<Option<(Offset, i64)>, ShardError> {
        let mut from = Offset(0);
        for _ in 0..TIMESTAMP_SCAN_BATCHES {
            let (batch, log_start) = match self.state.borrow().list_offset(partition, query, from)? {
                Listing::Answer(answer) => return Ok(answer),
                Listing::Batch(batch, log_start) => (batch, log_start),
            };
            let bytes = reads::read_batches(self.reader.clone(), &[batch])
                .await
                .map_err(|e| ShardError::Storage(e.to_string()))?;
            let min_offset = from.max(log_start);
            match scan(&bytes, query, min_offset) {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) if matches!(query, OffsetQuery::AtOrAfter(_)) => from = Offset(batch.last.0 + 1),
                Ok(None) | Err(_) => return Ok(Some((batch.base.max(min_offset), batch.max_timestamp_ms))),
            }
        }
        Ok(None)
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

    /// Applies a Ready round: the leader keeps what it just wrote for
    /// readers (followers do not serve reads), the state machine does the
    /// rest; committed metadata goes to the node.
    fn apply(&self, out: ReadyOutcome, group: &mut RaftGroup) {
        if out.persisted_own {
            for (_, payload, pos) in &out.persisted {
                self.cache_entry(*pos, payload);
            }
        }
        let installing = out.installed.is_some();
        if installing {
            // The read cache and read-ahead hold batches of the old log.
            while self.cache.borrow_mut().evict_oldest() {}
            while self.ahead.borrow_mut().evict_oldest() {}
        }
        let metas = self.state.borrow_mut().apply(out, wall_clock_ms());
        if installing {
            let mut st = self.state.borrow_mut();
            st.settle_pull(group);
            self.snapshots_installed.set(group.snapshots_installed);
            tracing::info!(
                shard = %self.id,
                index = group.applied().0,
                partitions = st.partitions.len(),
                "installed a snapshot from the leader; pulling its batches"
            );
            if let Some((index, image)) = st.installed_meta.take().filter(|(_, image)| !image.is_empty()) {
                let _ = self.events.try_send(ShardEvent::MetaImage {
                    index: RaftIndex(index),
                    image,
                });
            }
        }
        for (index, command) in metas {
            let _ = self.events.try_send(ShardEvent::MetaCommitted { index, command });
        }
    }

    /// Follows the group's role after a Ready round; the node hears of
    /// every change of leader.
    fn observe_role(&self, group: &RaftGroup) {
        self.raft_term.set(group.term());
        self.raft_commit.set(group.commit_index());
        let Some(change) = self.state.borrow_mut().observe_role(group) else {
            return;
        };
        if change.lost {
            tracing::info!(shard = %self.id, term = group.term(), "lost Raft leadership");
        } else if group.is_leader() {
            tracing::info!(shard = %self.id, term = group.term(), "leading Raft group");
        }
        let _ = self.events.try_send(ShardEvent::Leader { leader: change.leader });
    }

    fn fail(&self, reason: String) {
        tracing::error!(shard = %self.id, %reason, "shard storage failed; refusing writes until restart");
        self.state.borrow_mut().fail(reason);
    }
}

/// `retention.ms`: one wake-up per shard and interval, whatever the number
/// of partitions; it does nothing unless the earliest expiry passed.
async fn expire_by_time(shard: std::rc::Weak<Shard>, every: std::time::Duration) {
    loop {
        glommio::timer::sleep(every).await;
        let Some(shard) = shard.upgrade() else { return };
        if shard.state.borrow_mut().expire_by_time(wall_clock_ms()) {
            let _ = shard.kick.try_send(());
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
            let inbox = shard.raft_inbox.borrow_mut().take();
            for msg in inbox {
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
            shard.state.borrow_mut().propose_gathered(&mut group);
            let stepped = group.step().await;
            match stepped {
                Ok(Some(out)) => {
                    shard.apply(out, &mut group);
                    shard.raft_applied.set(group.applied().0);
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
        snapshots(&shard, &mut group).await;
        finish_background(&shard, &mut group);
        if !shard.background_running.get() {
            maybe_reclaim(&shard, &mut group).await;
        }
        if !shard.background_running.get() {
            maybe_compact(&shard, &mut group);
        }
        if let Some(files) = crate::partition::store::sparse_files() {
            let moved = shard.state.borrow_mut().relocate_index(&files);
            tracing::debug!(shard = %shard.id, files = files.len(), blocks = moved, "offset index blocks moved out of sparse index files");
        }
        // A kick that is already there is taken without returning to the
        // executor: whatever wakes the driver at once, again and again,
        // must still leave the shard's network, timers and other tasks
        // their turn.
        glommio::yield_if_needed().await;
    }
}

/// Once the Ready rounds are quiet: one step of compaction if one is due
/// (a pass goes a job at a time, each beside the Raft rounds), and the
/// wake-up for the next.
fn maybe_compact(shard: &Rc<Shard>, group: &mut RaftGroup) {
    let now = wall_clock_ms();
    let job = shard
        .state
        .borrow_mut()
        .plan_compaction(group.wal().active_segment(), now);
    if let Some(job) = job {
        // Its end wakes the driver, which plans the next step then.
        start_background(shard, group, Background::Compact(job));
        return;
    }
    let Some(at) = shard.state.borrow().compaction_wake_ms() else {
        return;
    };
    if shard.compact_wake.get().is_some_and(|set| set <= at) {
        return;
    }
    shard.compact_wake.set(Some(at));
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let wait = u64::try_from(at.saturating_sub(wall_clock_ms())).unwrap_or(0);
        glommio::timer::sleep(std::time::Duration::from_millis(wait)).await;
        if shard.compact_wake.get() == Some(at) {
            shard.compact_wake.set(None);
        }
        let _ = shard.kick.try_send(());
    })
    .detach();
}

/// Starts a move or a compaction job in a task of its own: its disk reads
/// and writes go on while the driver runs Raft rounds (writes do not wait
/// for them). Its result waits for the driver (`finish_background`).
fn start_background(shard: &Rc<Shard>, group: &mut RaftGroup, work: Background) {
    assert!(
        !shard.background_running.replace(true),
        "shard {}: one move or compaction job at a time",
        shard.id
    );
    let cold = group.wal_mut().reserve_cold();
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let with = |step: &mut dyn FnMut(&mut State)| step(&mut shard.state.borrow_mut());
        let done = work.run(shard.reader.clone(), cold, with).await;
        *shard.background_done.borrow_mut() = Some(done);
        let _ = shard.kick.try_send(());
    })
    .detach();
}

/// Applies what a move or compaction job came to, once it is done.
fn finish_background(shard: &Rc<Shard>, group: &mut RaftGroup) {
    let Some(done) = shard.background_done.borrow_mut().take() else {
        return;
    };
    shard.background_running.set(false);
    let finished = done.finish(&mut shard.state.borrow_mut(), group.wal_mut());
    match finished {
        Finished::Moved { batches, bytes, stale } => {
            tracing::debug!(shard = %shard.id, batches, bytes, stale, "batches moved to a cold file")
        }
        Finished::Compacted { .. } => {}
        Finished::MoveFailed(e) => {
            tracing::warn!(shard = %shard.id, error = %e, "moving batches to a cold file failed; retrying at the next trim")
        }
        Finished::CompactionFailed(e) => {
            tracing::warn!(shard = %shard.id, error = %e, "compaction step failed; the partition is cleaned again at its next pass")
        }
    }
}

/// Once the Ready rounds are quiet: builds the snapshot raft-rs asked for
/// (a follower is behind what the WAL holds), takes in the answers to this
/// replica's pulls, and asks for the next chunk of what it lacks.
async fn snapshots(shard: &Rc<Shard>, group: &mut RaftGroup) {
    for peer in shard.pulling_peers.take() {
        group.note_pulling(peer);
    }
    if group.snapshot_wanted() {
        // Group 0's snapshot carries the node's metadata, which must hold
        // every metadata entry applied (as for a checkpoint).
        // (Asked again at the next heartbeat until the metadata log holds
        // every metadata entry applied.)
        let st = shard.state.borrow();
        if st.last_meta <= shard.meta_durable.get() {
            let image = shard
                .meta_image
                .borrow()
                .as_ref()
                .map_or_else(|| Ok(Vec::new()), |f| f());
            match image {
                Ok(image) => {
                    let data = st.snapshot_data(group.applied(), image).encode();
                    drop(st);
                    tracing::info!(shard = %shard.id, index = group.applied().0, bytes = data.len(), "built a snapshot for a follower behind the WAL");
                    group.offer_snapshot(data.into());
                }
                Err(why) => tracing::warn!(shard = %shard.id, %why, "no snapshot: reading the metadata log failed"),
            }
        }
    }
    shard.snapshots_sent.set(group.snapshots_sent);
    let replies = shard.pull_replies.take();
    for reply in replies {
        let from = reply.from;
        tracing::trace!(shard = %shard.id, peer = from, at = reply.at, parts = ?reply.parts, "a pull answered");
        let checked = shard.state.borrow_mut().check_pull_reply(reply);
        let chunk = match checked {
            Ok(Some(chunk)) => chunk,
            Ok(None) => continue,
            Err(why) => {
                tracing::warn!(shard = %shard.id, peer = from, %why, "a peer's snapshot data refused");
                continue;
            }
        };
        let file = if chunk.data.is_empty() {
            None
        } else {
            match group.wal_mut().write_cold(&chunk.data).await {
                Ok(file) => Some(file),
                Err(e) => {
                    tracing::warn!(shard = %shard.id, error = %e, "writing pulled snapshot data failed; asking again");
                    continue;
                }
            }
        };
        shard.state.borrow_mut().pulled(&chunk, file);
    }
    // Also where no reply ended it: a committed trim or a deleted
    // partition can take the last batches a pull lacked.
    if shard.state.borrow_mut().settle_pull(group) {
        tracing::info!(shard = %shard.id, bytes = shard.state.borrow().pull.bytes, "holds every batch of the snapshot it installed");
    }
    let request = shard
        .state
        .borrow_mut()
        .next_pull(group.membership().me, wall_clock_ms());
    if let Some(req) = request {
        let me = group.membership().me;
        let peers: Vec<u64> = group.membership().peers().collect();
        let turn = shard.state.borrow().pull.requests as usize;
        let to = group
            .leader_id()
            .filter(|&l| l != me)
            .or_else(|| peers.get(turn % peers.len().max(1)).copied());
        if let Some(to) = to {
            tracing::trace!(shard = %shard.id, to, at = req.at, wants = ?req.wants, "pulling");
            group.send_pull(to, PullMessage::Request(req));
        }
    }
}

/// Once the Ready rounds are quiet: gives disk space back if that is due
/// (batches moved to a cold file first, beside the Raft rounds; then the
/// checkpoint and the removals); a look put off (looks are spaced by the
/// shard's partition count) wakes the driver when it is due.
async fn maybe_reclaim(shard: &Rc<Shard>, group: &mut RaftGroup) {
    let policy = reclaim::Policy::PRODUCTION;
    let work = shard
        .state
        .borrow_mut()
        .plan_reclaim(group, shard.meta_durable.get(), wall_clock_ms(), policy);
    match work {
        None => {}
        // Its end wakes the driver, whose next look reclaims what it freed.
        Some(reclaim::Work::Move(m)) => start_background(shard, group, Background::Move(m)),
        Some(reclaim::Work::Reclaim(plan)) => {
            let (segments, pulled, bytes) = (plan.segments, plan.pulled, plan.checkpoint.len());
            let started = std::time::Instant::now();
            match reclaim::reclaim(plan, group).await {
                Ok(_) => {
                    shard.state.borrow_mut().saved_pulled(pulled);
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::debug!(shard = %shard.id, segments, pulled, checkpoint_bytes = bytes, ms, "checkpoint written, WAL segments reclaimed")
                }
                Err(e) => {
                    tracing::warn!(shard = %shard.id, error = %e, "reclaiming WAL segments failed; retrying at the next trim")
                }
            }
        }
    }
    if shard.state.borrow().reclaim_pending() && !shard.reclaim_wake.replace(true) {
        let spacing = shard.state.borrow().reclaim_spacing_ms(policy);
        let shard = shard.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(std::time::Duration::from_millis(spacing)).await;
            shard.reclaim_wake.set(false);
            let _ = shard.kick.try_send(());
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, Message};

    fn with_entry(bytes: usize) -> Message {
        let mut m = Message::default();
        m.mut_entries().push(Entry {
            data: vec![0u8; bytes].into(),
            ..Default::default()
        });
        m
    }

    #[test]
    fn the_raft_inbox_drops_what_exceeds_its_bounds() {
        let mut inbox = RaftInbox::default();
        assert!(
            inbox.push(with_entry(RAFT_INBOX_MAX_BYTES + 1)),
            "one message always fits an empty inbox"
        );
        assert!(!inbox.push(with_entry(1)));
        assert_eq!(inbox.take().len(), 1);
        for _ in 0..RAFT_INBOX_MAX_MESSAGES {
            assert!(inbox.push(Message::default()));
        }
        assert!(!inbox.push(Message::default()));
        assert_eq!(inbox.dropped, 2);
        assert_eq!(inbox.take().len(), RAFT_INBOX_MAX_MESSAGES);
        assert!(inbox.is_empty() && inbox.push(with_entry(1000)));
    }
}
