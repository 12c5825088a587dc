//! One simulated node: the real WAL, Raft group and shard state machine
//! over the simulator's disk and network, driven the way the shard's
//! glommio driver drives them (`crate::shard`): messages in, tick, propose
//! what was gathered, Ready rounds until quiet.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use super::disk::SimDisk;
use super::net::{Net, SimOutbox};
use crate::raft::{check_from_peer, Elections, Membership, PeerMessage, RaftGroup};
use crate::shard::background::{Background, Done, Finished};
use crate::shard::compact::Compaction;
use crate::shard::pull::{PullMessage, PullReply};
use crate::shard::read_batches;
use crate::shard::reclaim::{reclaim, Policy, Work};
use crate::shard::state::{recover, RecoverError, State};
use crate::test_rng::Rng;
use crate::types::{PartitionId, RaftIndex};
use crate::wal::WalReader;
use bytes::Bytes;

/// Small segments, so a run rolls many times.
pub const SEGMENT_BYTES: u64 = 32 << 10;
/// Applied entries kept for lagging followers (the rest are read back).
const RETAIN_BYTES: usize = 16 << 10;
const WAL_DIR: &str = "/sim/wal";
/// Ready rounds one drive of a node runs at most before yielding.
const MAX_ROUNDS: usize = 16;

/// A metadata command: create or delete a partition.
pub fn meta_create(p: PartitionId) -> Vec<u8> {
    let mut v = b"c".to_vec();
    v.extend_from_slice(&p.0.to_le_bytes());
    v
}

pub fn meta_delete(p: PartitionId) -> Vec<u8> {
    let mut v = b"d".to_vec();
    v.extend_from_slice(&p.0.to_le_bytes());
    v
}

/// What a committed metadata command does to a node's partitions.
fn apply_meta(state: &mut State, command: &[u8]) {
    let Some((&kind, id)) = command.split_first() else {
        return;
    };
    let Ok(id) = <[u8; 4]>::try_from(id).map(u32::from_le_bytes) else {
        return;
    };
    match kind {
        b'c' => {
            state.create_partitions(&[PartitionId(id)]);
            set_retention(state, PartitionId(id));
        }
        b'd' => state.delete_partitions(&[PartitionId(id)]),
        _ => {}
    }
}

/// Every third partition keeps at most 2 KB (retention.bytes), the others
/// 6 KB: their leaders trim them as they grow, and the WAL segments they
/// let go of are reclaimed, but for every fifth, which keeps everything
/// (its batches move to cold files). Every fourth keeps its batches for 2 s
/// (retention.ms, by the producers' timestamps and the nodes' skewed clocks).
fn set_retention(state: &mut State, id: PartitionId) {
    if compacted(id) {
        // Keeps the last record of each key: compaction rewrites it into
        // cold files, and its other batches pin segments, and move.
        let c = Compaction {
            min_dirty_ratio: 0.2,
            ..Compaction::default()
        };
        state.set_compaction(id, Some(c));
        return;
    }
    let limit = if id.0.is_multiple_of(3) { 2_000 } else { 6_000 };
    state.set_retention_bytes(id, Some(limit));
    if id.0 % 4 == 1 {
        state.set_retention_ms(id, Some(RETENTION_MS));
    }
}

const RETENTION_MS: i64 = 2_000;

/// Every fifth partition is compacted (and not trimmed).
pub fn compacted(id: PartitionId) -> bool {
    id.0 % 5 == 2
}

/// Ticks (about 100 ms each) a voter may be silent before releases go on
/// without it.
const RELEASE_PAST_DOWN_TICKS: u64 = 20;

/// Reclaims as soon as a segment is free: small segments, and every
/// checkpoint and removal a chance for a fault.
const RECLAIM: Policy = Policy {
    recheck_min_ms: 50,
    recheck_us_per_partition: 0,
    recheck_max_ms: 50,
    freed_per_checkpoint_byte: 0,
    remove_bytes: 3 * SEGMENT_BYTES,
    stall_ms: 300,
};

/// A running incarnation of a node.
pub struct Up {
    pub state: State,
    pub group: RaftGroup<SimDisk>,
    pub reader: WalReader<SimDisk>,
    /// A read of old entries for a follower finished.
    woken: Rc<Cell<bool>>,
    pub inbox: Vec<PeerMessage>,
    /// The storage failed: writes are refused until a restart.
    pub failed: bool,
    /// Metadata commands committed here, in order.
    pub metas: Vec<(RaftIndex, Bytes)>,
    /// A move or compaction job done, its result held back for this many
    /// more drives (in the shard it waits for the driver's quiet point,
    /// Raft rounds having run meanwhile).
    pub background: Option<(Done<SimDisk>, u64)>,
}

pub struct Node {
    pub id: u64,
    pub disk: SimDisk,
    pub up: Option<Up>,
    /// When a node that is down comes back.
    pub down_until_ms: u64,
    /// This node's tick period and the time of its next tick (clock skew).
    pub tick_ms: u64,
    pub next_tick_ms: u64,
    /// Offset of this node's wall clock from the simulation's.
    pub clock_offset_ms: i64,
    pub restarts: u64,
    /// WAL segments this node reclaimed, and starts from a checkpoint.
    pub reclaimed: u64,
    pub checkpoint_starts: u64,
    /// Times the leader found batches past their retention.ms.
    pub time_trims: u64,
    /// Bytes moved to cold files.
    pub moved: u64,
    /// Moves and compaction jobs that met a log changed while they ran.
    pub stale_background: u64,
    /// Snapshots installed, and batch bytes pulled after them.
    pub snapshots: u64,
    pub pulled: u64,
    /// Pulled bytes a checkpoint saved (a restart does not pull them again).
    pub pulled_saved: u64,
    /// Compaction passes this node completed.
    pub compactions: u64,
    /// How long a move or compaction job's result is held back.
    rng: Rng,
}

/// Why a start failed.
pub enum StartError {
    /// An I/O fault (a failed sync, a full disk): try again later.
    Io(String),
    /// The log is corrupt: an invariant broke.
    Corrupt(String),
}

impl Node {
    pub fn new(id: u64, seed: u64) -> Self {
        Self {
            id,
            disk: SimDisk::new(seed),
            up: None,
            down_until_ms: 0,
            tick_ms: 100,
            next_tick_ms: 0,
            clock_offset_ms: 0,
            restarts: 0,
            reclaimed: 0,
            checkpoint_starts: 0,
            time_trims: 0,
            moved: 0,
            stale_background: 0,
            snapshots: 0,
            pulled: 0,
            pulled_saved: 0,
            compactions: 0,
            rng: Rng::new(seed ^ 0xb4c6_92d0),
        }
    }

    pub fn wall_ms(&self, now_ms: u64) -> i64 {
        now_ms as i64 + self.clock_offset_ms
    }

    /// Recovers the node from its disk, as a restarted process does.
    pub async fn start(
        &mut self,
        voters: &[u64],
        net: &Rc<std::cell::RefCell<Net>>,
        now_ms: u64,
    ) -> Result<(), StartError> {
        let mut state = State::new(&[], 0);
        let wall = self.wall_ms(now_ms);
        let recovered = match recover(self.disk.clone(), Path::new(WAL_DIR), SEGMENT_BYTES, &mut state, wall).await {
            Ok(r) => r,
            Err(e @ RecoverError::Wal(_)) => return Err(StartError::Io(e.to_string())),
            Err(e @ (RecoverError::RewritesCommitted | RecoverError::Checkpoint(_))) => {
                return Err(StartError::Corrupt(e.to_string()))
            }
        };
        self.checkpoint_starts += recovered.from_checkpoint as u64;
        let reader = recovered.reader;
        // Retention is configuration, not log state: set again at start
        // for the partitions a checkpoint brought back.
        let restored: Vec<PartitionId> = state.partitions.keys().copied().collect();
        for id in restored {
            set_retention(&mut state, id);
        }
        let mut metas = Vec::new();
        for (index, command) in recovered.meta {
            apply_meta(&mut state, &command);
            metas.push((index, command));
        }
        let woken = Rc::new(Cell::new(false));
        let wake = woken.clone();
        let mut group = RaftGroup::start(
            recovered.writer,
            reader.clone(),
            recovered.raft,
            Membership {
                me: self.id,
                voters: voters.to_vec(),
            },
            RETAIN_BYTES,
            Rc::new(move || wake.set(true)),
            Elections::Fixed,
        )
        .map_err(|e| StartError::Corrupt(format!("raft refused the recovered state: {e}")))?;
        group.set_transport(Rc::new(SimOutbox {
            net: net.clone(),
            from: self.id,
        }));
        // A snapshot's batches not all pulled before the restart.
        state.settle_pull(&mut group);
        // Runs are short: a node down for 2 s no longer holds the others'
        // releases back, so nodes that come back find their peers' WAL
        // gone past their log and install snapshots over it.
        group.set_release_past_down_ticks(RELEASE_PAST_DOWN_TICKS);
        self.up = Some(Up {
            state,
            group,
            reader,
            woken,
            inbox: Vec::new(),
            failed: false,
            metas,
            background: None,
        });
        Ok(())
    }

    /// Power cut: the incarnation is gone, and so is what its disk had not
    /// synced.
    pub fn crash(&mut self, now_ms: u64, down_ms: u64) {
        self.up = None;
        self.disk = self.disk.crash();
        self.down_until_ms = now_ms + down_ms;
        self.restarts += 1;
    }

    /// Its disk is replaced by an empty one (a failed drive, a wiped data
    /// directory): it comes back with nothing and rebuilds from its peers.
    pub fn wipe(&mut self, now_ms: u64, seed: u64) {
        self.up = None;
        self.disk = SimDisk::new(seed);
        self.down_until_ms = now_ms + 100;
        self.restarts += 1;
    }

    /// Runs the node until it has nothing to do. Returns whether it did
    /// anything. A storage failure marks it failed (the harness restarts
    /// it, as systemd restarts the broker).
    pub async fn drive(&mut self, tick: bool, now_ms: u64) -> bool {
        let wall = self.wall_ms(now_ms);
        let Some(up) = self.up.as_mut() else {
            return false;
        };
        if up.failed {
            return false;
        }
        let mut tick = tick;
        let mut busy = false;
        for _ in 0..MAX_ROUNDS {
            for msg in std::mem::take(&mut up.inbox) {
                match msg {
                    // As the transport does: a malformed peer message never
                    // reaches Raft.
                    PeerMessage::Raft(m) => {
                        if check_from_peer(&m).is_ok() {
                            up.group.receive(m);
                        }
                    }
                    PeerMessage::Pull(PullMessage::Request(req)) => {
                        up.group.note_pulling(req.from);
                        let served = up.state.serve_pull(&req, up.group.applied().0);
                        let entries: Vec<_> = served.iter().flat_map(|(_, es)| es.iter().copied()).collect();
                        if let Ok(data) = read_batches(up.reader.clone(), &entries).await {
                            let reply = PullReply {
                                from: self.id,
                                at: req.at,
                                parts: served.into_iter().map(|(p, _)| p).collect(),
                                data,
                            };
                            up.group.send_pull(req.from, PullMessage::Reply(reply));
                        }
                    }
                    PeerMessage::Pull(PullMessage::Reply(reply)) => {
                        let checked = up.state.check_pull_reply(reply);
                        let Ok(Some(chunk)) = checked else {
                            continue;
                        };
                        let file = if chunk.data.is_empty() {
                            None
                        } else {
                            match up.group.wal_mut().write_cold(&chunk.data).await {
                                Ok(file) => Some(file),
                                Err(_) => continue, // asked again after the timeout
                            }
                        };
                        let before = up.state.pull.bytes;
                        up.state.pulled(&chunk, file);
                        self.pulled += up.state.pull.bytes - before;
                    }
                }
            }
            if std::mem::take(&mut tick) {
                up.group.tick();
                // The shard's retention.ms wake-up, at the tick's rate.
                if up.state.expire_by_time(wall) {
                    self.time_trims += 1;
                }
            }
            up.woken.set(false);
            up.state.propose_gathered(&mut up.group);
            match up.group.step().await {
                Ok(Some(out)) => {
                    busy = true;
                    let installing = out.installed.is_some();
                    let committed = up.state.apply(out, wall);
                    if installing {
                        self.snapshots += 1;
                        up.state.settle_pull(&mut up.group);
                        if let Some((_, image)) = up.state.installed_meta.take() {
                            up.metas = decode_metas(&image);
                            for (_, command) in up.metas.clone() {
                                apply_meta(&mut up.state, &command);
                            }
                        }
                        let ids: Vec<PartitionId> = up.state.partitions.keys().copied().collect();
                        for id in ids {
                            set_retention(&mut up.state, id);
                        }
                    }
                    for (index, command) in committed {
                        apply_meta(&mut up.state, &command);
                        up.metas.push((index, command));
                    }
                    up.state.observe_role(&up.group);
                    if up.group.snapshot_wanted() {
                        let data = up.state.snapshot_data(up.group.applied(), encode_metas(&up.metas));
                        up.group.offer_snapshot(data.encode().into());
                    }
                }
                Ok(None) => {
                    up.state.observe_role(&up.group);
                    if up.inbox.is_empty() && !up.woken.get() {
                        break;
                    }
                }
                Err(e) => {
                    up.state.fail(e.to_string());
                    up.failed = true;
                    break;
                }
            }
        }
        // A snapshot's batches: the next chunk, from the leader or a peer
        // in turn.
        up.state.settle_pull(&mut up.group);
        if up.state.pulling() {
            if let Some(req) = up.state.next_pull(self.id, wall) {
                let peers: Vec<u64> = up.group.membership().peers().collect();
                let to = up
                    .group
                    .leader_id()
                    .filter(|&l| l != self.id)
                    .unwrap_or_else(|| peers[(req.at as usize + up.state.pull.requests as usize) % peers.len()]);
                up.group.send_pull(to, PullMessage::Request(req));
            }
        }
        // As the shard's driver does once its rounds are quiet: a move or
        // compaction job's result is applied, then (none running) the next
        // reclaim look, and one step of compaction.
        if let Some((done, wait)) = up.background.take() {
            if wait > 0 && !up.failed {
                up.background = Some((done, wait - 1));
            } else if !up.failed {
                match done.finish(&mut up.state, up.group.wal_mut()) {
                    Finished::Moved { bytes, stale, .. } => {
                        self.moved += bytes;
                        self.stale_background += stale as u64;
                    }
                    Finished::Compacted { stale } => self.stale_background += stale as u64,
                    Finished::MoveFailed(_) | Finished::CompactionFailed(_) => {}
                }
                busy = true;
            }
        }
        if up.background.is_none() && !up.failed {
            match up.state.plan_reclaim(&up.group, u64::MAX, wall, RECLAIM) {
                None => {}
                Some(Work::Move(m)) => {
                    let cold = up.group.wal_mut().reserve_cold();
                    let state = &mut up.state;
                    let done = Background::Move(m)
                        .run(up.reader.clone(), cold, |step: &mut dyn FnMut(&mut State)| step(state))
                        .await;
                    up.background = Some((done, self.rng.below(4)));
                }
                Some(Work::Reclaim(plan)) => {
                    let pulled = plan.pulled;
                    if let Ok(n) = reclaim(plan, &mut up.group).await {
                        self.reclaimed += n as u64;
                        up.state.saved_pulled(pulled);
                        self.pulled_saved += pulled;
                    }
                }
            }
        }
        // A wake that is due yet plans nothing would wake the driver again
        // at once: it must plan something within a few looks, or the
        // driver spins.
        if up.background.is_none() && !up.failed {
            let runs = up.state.cleaner.runs;
            let active = up.group.wal().active_segment();
            let mut job = up.state.plan_compaction(active, wall);
            let mut looks = 1;
            while job.is_none() && up.state.compaction_wake_ms().is_some_and(|at| at <= wall) {
                assert!(
                    looks < 3,
                    "{}: compaction wake due at {wall} ms, yet nothing planned: the driver would spin",
                    self.id
                );
                job = up.state.plan_compaction(active, wall);
                looks += 1;
            }
            self.compactions += up.state.cleaner.runs - runs;
            if let Some(job) = job {
                let cold = up.group.wal_mut().reserve_cold();
                let state = &mut up.state;
                let done = Background::Compact(job)
                    .run(up.reader.clone(), cold, |step: &mut dyn FnMut(&mut State)| step(state))
                    .await;
                up.background = Some((done, self.rng.below(4)));
                busy = true;
            }
        }
        busy
    }

    pub fn woken(&self) -> bool {
        self.up
            .as_ref()
            .is_some_and(|u| u.woken.get() || u.background.is_some())
    }
}

/// The metadata commands a snapshot carries (`index u64 | len u32 | command`
/// each): the simulator's stand-in for the node's metadata log.
fn encode_metas(metas: &[(RaftIndex, Bytes)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, command) in metas {
        out.extend_from_slice(&index.0.to_le_bytes());
        out.extend_from_slice(&(command.len() as u32).to_le_bytes());
        out.extend_from_slice(command);
    }
    out
}

fn decode_metas(mut b: &[u8]) -> Vec<(RaftIndex, Bytes)> {
    let mut out = Vec::new();
    while let Some((index, rest)) = b.split_first_chunk::<8>() {
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some(command) = rest.get(..len) else { break };
        out.push((RaftIndex(u64::from_le_bytes(*index)), Bytes::copy_from_slice(command)));
        b = &rest[len..];
    }
    out
}
