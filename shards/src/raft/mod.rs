//! The shard's Raft group: a raft-rs `RawNode` whose log storage is the
//! shard WAL. Shard k of every node of a cluster forms Raft group k; a
//! single node runs the same code with one voter.
//!
//! `RaftGroup::step` runs the Ready loop in raft-rs order: send messages,
//! apply committed entries, persist entries and hard state (one WAL append,
//! which is the group commit), send persisted messages, advance, apply what
//! the advance committed. A single voter needs no timer: it runs when a
//! proposal arrives, so an idle shard does nothing. With peers, one tick
//! per shard (not per partition) drives heartbeats and elections.
//!
//! - `entry.rs`: the payload of a data entry (batches of many partitions).
//! - `storage.rs`: `raft::Storage` over what the WAL holds.
//! - `transport.rs`: the connections to the same shard on the other nodes.

pub mod entry;
pub mod storage;
pub mod transport;

use std::rc::Rc;

use bytes::Bytes;
use raft::prelude::{Entry, EntryType, HardState, Message};
use raft::{Config, RawNode};

use crate::shard::pull::PullMessage;
use crate::shard::snapshot::SnapshotData;
use crate::types::{NodeId, RaftIndex, Term};
use crate::wal::{encode_hard_state, Disk, DmaDisk, RecordKind, RecordRef, WalError, WalPos, WalReader, WalWriter};
use storage::{Fetch, LogStore};

/// Where a group's messages to its peers go: the TCP transport in
/// production, the simulator's network in tests. Delivery may fail
/// silently: Raft tolerates lost messages.
pub trait Outbox {
    fn send(&self, msgs: Vec<Message>);
    /// A pull of snapshot data (`shard::pull`), also fire and forget: the
    /// puller asks again when no answer comes.
    fn send_pull(&self, to: u64, msg: PullMessage);
}

/// What the same shard on two nodes sends each other.
#[derive(Clone)]
pub enum PeerMessage {
    Raft(Message),
    Pull(PullMessage),
}

/// Marks a proposal (the Raft entry `context`) as a cluster metadata
/// command rather than partition batches.
pub const META_CONTEXT: &[u8] = b"meta";
/// Marks a proposal that moves partitions' log starts (`entry::trims`).
pub const TRIM_CONTEXT: &[u8] = b"trim";
/// Marks a proposal saying every voter holds the log up to an index.
pub const RELEASE_CONTEXT: &[u8] = b"release";

/// Ticks between heartbeats, and before a follower that heard nothing
/// starts an election (randomised up to twice that by raft-rs).
pub const HEARTBEAT_TICKS: usize = 2;
pub const ELECTION_TICKS: usize = 10;
/// How often a shard of a cluster ticks its Raft group: elections after
/// 1-2 s of silence.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);
/// How often (in ticks) a leader checks whether the group's preferred
/// leader is ready to take over.
pub const BALANCE_TICKS: u64 = 50;
/// A leader serves while a quorum answered it within this many ticks. A
/// follower that heard from its leader refuses to vote for
/// `ELECTION_TICKS` of its own ticks (check-quorum), and a restarted node
/// votes only after as long; the lease ends well before that, leaving
/// room for clocks that run at up to twice each other's rate and for the
/// answer's time on the wire. So no other leader can have been elected
/// while a leader holds its lease, and a deposed leader that does not know
/// it yet (cut off) stops serving stale reads after a few ticks.
pub const LEASE_TICKS: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("this shard is not the leader of its Raft group")]
    NotLeader,
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("snapshot: {0}")]
    Snapshot(String),
}

/// Who is in the group: this node's Raft id and every voter's (raft-rs ids
/// are non-zero; the node layer maps broker ids onto them).
#[derive(Debug, Clone)]
pub struct Membership {
    pub me: u64,
    pub voters: Vec<u64>,
}

impl Membership {
    pub fn single(me: u64) -> Self {
        Self { me, voters: vec![me] }
    }

    pub fn peers(&self) -> impl Iterator<Item = u64> + '_ {
        self.voters.iter().copied().filter(move |&v| v != self.me)
    }

    pub fn is_single(&self) -> bool {
        self.voters.len() == 1
    }
}

/// What one Ready round did, for the shard to apply to its partitions.
#[derive(Default)]
pub struct ReadyOutcome {
    /// Data entries now durable, with the WAL position of their payload.
    pub persisted: Vec<(RaftIndex, Bytes, WalPos)>,
    /// Whether `persisted` came from this node's own proposals (it leads
    /// in their term) rather than from a leader.
    pub persisted_own: bool,
    /// Highest index known durable after this round.
    pub persisted_index: Option<RaftIndex>,
    /// Payloads of uncommitted data entries that a new leader's log
    /// replaced (a Raft overwrite), oldest first: their batches are gone.
    pub overwritten: Vec<Bytes>,
    /// Data entries now committed, in log order.
    pub committed: Vec<(RaftIndex, Bytes)>,
    /// Metadata commands now committed, in log order.
    pub committed_meta: Vec<(RaftIndex, Bytes)>,
    /// Log start moves (trim entries) now committed, in log order.
    pub committed_trims: Vec<(RaftIndex, Bytes)>,
    /// The highest index a committed release entry says every voter holds.
    pub committed_release: Option<u64>,
    /// Highest index known committed after this round.
    pub committed_index: Option<RaftIndex>,
    /// A snapshot from the leader replaced this replica's log and state
    /// (applied before anything else of the round).
    pub installed: Option<SnapshotData>,
}

/// State recovered from the WAL for the Raft group.
pub struct RecoveredRaft {
    pub hard_state: Option<crate::wal::HardState>,
    pub applied: (u64, u64),
    pub unapplied: Vec<Entry>,
}

pub struct RaftGroup<D: Disk = DmaDisk> {
    node: RawNode<LogStore>,
    /// Ticks since the group started.
    ticks: u64,
    /// When (tick) each peer last answered this node in a term: the lease.
    answered: std::collections::HashMap<u64, (u64, u64)>,
    wal: WalWriter<D>,
    membership: Membership,
    transport: Option<Rc<dyn Outbox>>,
    fetcher: Fetcher<D>,
    /// Whether this replica holds every batch its state names: until a
    /// snapshot's data is pulled it must not lead (see `set_promotable`).
    promotable: bool,
    /// When (tick) a leader was last heard from.
    heard_leader: u64,
    /// Peers that asked this node for a snapshot's data within the last
    /// ticks (when): not ready to lead, so not handed the leadership.
    pulling: std::collections::HashMap<u64, u64>,
    /// Since when (tick) each peer has waited for a snapshot.
    snapshot_since: std::collections::HashMap<u64, u64>,
    /// Snapshots sent and installed.
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    /// Since when (tick) this node leads, if it does.
    led_since: Option<u64>,
    /// How long (ticks) a voter may be silent before releases go on
    /// without it.
    release_past_down_ticks: u64,
}

/// A voter silent this long (5 minutes) no longer holds back the releases
/// that let its peers reclaim their WAL.
pub const RELEASE_PAST_DOWN_TICKS: u64 = 3_000;

/// The index of an append rejection that means "this follower lost the
/// log it acknowledged; it ends at `reject_hint`" (no append has it).
const LOST_LOG: u64 = u64::MAX;

/// A peer that was sent a snapshot and did not answer within this many
/// ticks is sent another (the message may have been lost: raft-rs waits
/// for a report otherwise).
const SNAPSHOT_WAIT_TICKS: u64 = 2 * ELECTION_TICKS as u64;
/// A peer that asked for snapshot data within this many ticks is pulling.
const PULLING_TICKS: u64 = 2 * ELECTION_TICKS as u64;

/// Most payload bytes one read of old entries for a follower brings back.
const FETCH_BYTES: usize = 4 << 20;

/// A finished read: its first index, and the entries (or why not).
type FetchResult = (u64, Result<Vec<Entry>, WalError>);

/// Reads of old entries for lagging followers: in flight by first index
/// (with every raft-rs request waiting on it), and finished ones.
struct Fetcher<D: Disk> {
    reader: WalReader<D>,
    wake: Rc<dyn Fn()>,
    in_flight: std::collections::HashMap<u64, Vec<raft::GetEntriesContext>>,
    done: Rc<std::cell::RefCell<Vec<FetchResult>>>,
    /// The last read failure reported: a failure that repeats (raft-rs
    /// asks again at every heartbeat) is logged once.
    last_error: Option<String>,
}

/// Where a follower's election timeout comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elections {
    /// raft-rs draws it from `[ELECTION_TICKS, 2 * ELECTION_TICKS)` with
    /// the thread's random generator (production).
    Randomized,
    /// Always `ELECTION_TICKS`; the caller jitters its ticks instead (the
    /// simulator, whose runs must replay from their seed alone).
    Fixed,
}

fn raft_config(id: u64, applied: u64, elections: Elections) -> Config {
    let (min_election_tick, max_election_tick) = match elections {
        Elections::Randomized => (0, 0), // raft-rs's defaults
        Elections::Fixed => (ELECTION_TICKS, ELECTION_TICKS + 1),
    };
    Config {
        min_election_tick,
        max_election_tick,
        id,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        applied,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

impl<D: Disk> RaftGroup<D> {
    /// Starts the group from recovered state. A single voter elects itself
    /// at once (no election timer needed); a cluster member waits for
    /// ticks and messages.
    /// `wake` runs when a read of old entries finishes: the group wants a
    /// `step` then.
    pub fn start(
        wal: WalWriter<D>,
        reader: WalReader<D>,
        recovered: RecoveredRaft,
        membership: Membership,
        retain_bytes: usize,
        wake: Rc<dyn Fn()>,
        elections: Elections,
    ) -> Result<Self, RaftError> {
        let mut hs = HardState::default();
        if let Some(saved) = recovered.hard_state {
            hs.term = saved.term.0;
            hs.vote = saved.vote.0;
            hs.commit = saved.commit.0.max(recovered.applied.0);
        } else {
            hs.commit = recovered.applied.0;
        }
        let store = LogStore::new(
            membership.voters.clone(),
            hs,
            recovered.applied,
            recovered.unapplied,
            retain_bytes,
            reader.entry_index(),
        );
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let config = raft_config(membership.me, recovered.applied.0, elections);
        config.validate()?;
        let mut node = RawNode::new(&config, store, &logger)?;
        if membership.is_single() {
            node.campaign()?;
        }
        Ok(Self {
            node,
            ticks: 0,
            answered: Default::default(),
            wal,
            membership,
            transport: None,
            fetcher: Fetcher {
                reader,
                wake,
                in_flight: Default::default(),
                done: Default::default(),
                last_error: None,
            },
            promotable: true,
            heard_leader: 0,
            pulling: Default::default(),
            snapshot_since: Default::default(),
            snapshots_sent: 0,
            snapshots_installed: 0,
            led_since: None,
            release_past_down_ticks: RELEASE_PAST_DOWN_TICKS,
        })
    }

    /// How long a voter may be silent before releases go on without it
    /// (the simulator's runs are shorter than `RELEASE_PAST_DOWN_TICKS`).
    pub fn set_release_past_down_ticks(&mut self, ticks: u64) {
        self.release_past_down_ticks = ticks;
    }

    /// Whether this replica may lead: not while it lacks batches its state
    /// names (a snapshot's data still being pulled). It then votes but
    /// never campaigns nor takes a hand-over, and forgets a leader it has
    /// not heard from for an election timeout (so that it votes for the
    /// next one).
    pub fn set_promotable(&mut self, promotable: bool) {
        self.promotable = promotable;
    }

    pub fn promotable(&self) -> bool {
        self.promotable
    }

    /// Notes that `peer` asked for a snapshot's data: it cannot lead yet.
    pub fn note_pulling(&mut self, peer: u64) {
        self.pulling.insert(peer, self.ticks);
    }

    /// Whether raft-rs asked for a snapshot that the shard should build.
    pub fn snapshot_wanted(&self) -> bool {
        self.node.store().take_snapshot_wanted()
    }

    /// The state machine's snapshot as of the last applied entry.
    pub fn offer_snapshot(&mut self, data: Bytes) {
        let applied = self.applied();
        self.node.mut_store().offer(applied, data);
    }

    /// Where messages to peers go (a cluster member has one).
    pub fn set_transport(&mut self, transport: Rc<dyn Outbox>) {
        self.transport = Some(transport);
    }

    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let snapshots = msgs
            .iter()
            .filter(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot)
            .count();
        self.snapshots_sent += snapshots as u64;
        match &self.transport {
            Some(t) => t.send(msgs),
            None => debug_assert!(false, "a single voter has no one to send to"),
        }
    }

    /// Sends a pull of snapshot data to a peer.
    pub fn send_pull(&self, to: u64, msg: PullMessage) {
        if let Some(t) = &self.transport {
            t.send_pull(to, msg);
        }
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == raft::StateRole::Leader
    }

    /// The leader's Raft id, if this node knows one.
    pub fn leader_id(&self) -> Option<u64> {
        Some(self.node.raft.leader_id).filter(|&id| id != raft::INVALID_ID)
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// Index of the last entry in this node's log.
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// Whether this node has applied an entry of the current term: a new
    /// leader knows (and its state machine holds) every entry any earlier
    /// leader committed only from then on. Knowing the commit is not
    /// enough: the entries below it may still be on their way to the state
    /// machine (read back from the WAL first).
    pub fn committed_in_term(&self) -> bool {
        let log = &self.node.raft.raft_log;
        log.term(log.applied).is_ok_and(|t| t == self.node.raft.term)
    }

    pub fn wal(&self) -> &WalWriter<D> {
        &self.wal
    }

    /// Proposes one data entry and returns the index it will have.
    pub fn propose(&mut self, payload: Vec<u8>) -> Result<RaftIndex, RaftError> {
        if !self.is_leader() {
            return Err(RaftError::NotLeader);
        }
        self.node.propose(vec![], payload)?;
        Ok(RaftIndex(self.node.raft.raft_log.last_index()))
    }

    /// Proposes moving partitions' log starts; returns the entry's index.
    pub fn propose_trim(&mut self, payload: Vec<u8>) -> Result<RaftIndex, RaftError> {
        if !self.is_leader() {
            return Err(RaftError::NotLeader);
        }
        self.node.propose(TRIM_CONTEXT.to_vec(), payload)?;
        Ok(RaftIndex(self.node.raft.raft_log.last_index()))
    }

    /// With every voter holding the log past a WAL segment boundary of
    /// this leader's beyond `released` (the last release applied or
    /// proposed), the index every voter holds: worth a release entry, so
    /// that every replica may reclaim its WAL up to it. `None` otherwise,
    /// and on a follower. A voter silent for long does not count (see
    /// `RELEASE_PAST_DOWN_TICKS`); it, and a replica that lost its disk,
    /// gets a snapshot when it needs what was released.
    pub fn release_due(&self, released: u64) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        // A voter silent for `release_past_down_ticks` no longer holds the
        // others' disks back: it is sent a snapshot when it returns.
        // (Not before this leader's first tick: a single voter has none.)
        let since = self.led_since.unwrap_or(self.ticks);
        let term = self.node.raft.term;
        let down = |id: u64| {
            let heard = self
                .answered
                .get(&id)
                .filter(|(t, _)| *t == term)
                .map_or(since, |&(_, at)| at);
            id != self.membership.me && self.ticks.saturating_sub(heard.max(since)) > self.release_past_down_ticks
        };
        let held = self
            .node
            .raft
            .prs()
            .iter()
            .filter(|(&id, _)| !down(id))
            .map(|(_, pr)| pr.matched)
            .min()?;
        let held = held.min(self.node.raft.raft_log.committed);
        if held <= released {
            return None;
        }
        let next_boundary = self.wal.entry_index().borrow().segment_start_after(released + 1)?;
        (next_boundary <= held + 1).then_some(held)
    }

    /// Proposes a release entry (see `release_due`).
    pub fn propose_release(&mut self, index: u64) -> Result<RaftIndex, RaftError> {
        if !self.is_leader() {
            return Err(RaftError::NotLeader);
        }
        self.node
            .propose(RELEASE_CONTEXT.to_vec(), entry::encode_release(index))?;
        Ok(RaftIndex(self.node.raft.raft_log.last_index()))
    }

    /// The index and term of the last entry handed to the state machine.
    pub fn applied(&self) -> (u64, u64) {
        let log = &self.node.raft.raft_log;
        (log.applied, log.term(log.applied).unwrap_or(0))
    }

    /// The hard state as last persisted (or learned).
    pub fn hard_state(&self) -> crate::wal::HardState {
        let hs = self.node.store().hard_state();
        crate::wal::HardState {
            term: Term(hs.term),
            vote: NodeId(hs.vote),
            commit: RaftIndex(hs.commit),
        }
    }

    pub fn wal_mut(&mut self) -> &mut WalWriter<D> {
        &mut self.wal
    }

    /// Proposes a metadata command. A follower forwards it to the leader;
    /// the proposer learns the outcome when the command is applied.
    pub fn propose_meta(&mut self, command: Vec<u8>) -> Result<(), RaftError> {
        match self.node.propose(META_CONTEXT.to_vec(), command) {
            // No leader to forward it to (an election is on).
            Err(raft::Error::ProposalDropped) => Err(RaftError::NotLeader),
            other => Ok(other?),
        }
    }

    /// Advances the group's logical clock by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.led_since = if self.is_leader() {
            self.led_since.or(Some(self.ticks))
        } else {
            None
        };
        let raft = &mut self.node.raft;
        if !self.promotable && raft.state != raft::StateRole::Leader {
            // Never reaches the election timeout (no campaign), and a
            // leader gone silent is forgotten, so the vote of a replica
            // still pulling elects the next one.
            raft.election_elapsed = raft.election_elapsed.min(ELECTION_TICKS - 2);
            if self.ticks.saturating_sub(self.heard_leader) > ELECTION_TICKS as u64 {
                raft.leader_id = raft::INVALID_ID;
            }
        }
        self.node.tick();
        self.resend_stuck_snapshots();
    }

    /// raft-rs waits for a sent snapshot's outcome before it sends that
    /// peer anything more; a snapshot lost on the way is reported failed
    /// after a while, and the peer is probed (and sent one) again.
    fn resend_stuck_snapshots(&mut self) {
        if !self.is_leader() {
            self.snapshot_since.clear();
            return;
        }
        let ticks = self.ticks;
        let waiting: Vec<u64> = self
            .node
            .raft
            .prs()
            .iter()
            .filter(|(_, pr)| pr.state == raft::ProgressState::Snapshot)
            .map(|(&id, _)| id)
            .collect();
        self.snapshot_since.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let since = *self.snapshot_since.entry(id).or_insert(ticks);
            if ticks - since >= SNAPSHOT_WAIT_TICKS {
                self.node.report_snapshot(id, raft::SnapshotStatus::Failure);
                self.snapshot_since.remove(&id);
            }
        }
    }

    /// Whether this node leads and may serve: a quorum answered it within
    /// `LEASE_TICKS` (see there), and it is not handing the leadership over
    /// (the peer it hands to campaigns without waiting).
    pub fn has_lease(&self) -> bool {
        let raft = &self.node.raft;
        if raft.state != raft::StateRole::Leader || raft.lead_transferee.is_some() {
            return false;
        }
        let recent = self
            .membership
            .peers()
            .filter(|p| {
                self.answered
                    .get(p)
                    .is_some_and(|&(term, tick)| term == raft.term && tick + LEASE_TICKS >= self.ticks)
            })
            .count();
        (recent + 1) * 2 > self.membership.voters.len()
    }

    /// Hands the leadership to `preferred` when this node leads, and that
    /// peer is up (`live`: heard from within the last second) and holds
    /// the whole log: so that each node leads its share of the groups
    /// (Kafka's preferred leader) instead of whichever won the last
    /// election leading them all. Returns whether it did. (raft-rs's own
    /// `recent_active` is no guide here: check-quorum clears it every
    /// election timeout.)
    pub fn hand_to_preferred(&mut self, preferred: u64, live: bool) -> bool {
        if !live || !self.is_leader() || preferred == self.membership.me {
            return false;
        }
        let ready = self.caught_up(preferred);
        if ready {
            self.node.transfer_leader(preferred);
        }
        ready
    }

    /// Hands the leadership to any peer that holds the whole log (a
    /// controlled shutdown); returns which, if one does.
    pub fn hand_to_caught_up(&mut self) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let to = self.membership.peers().find(|&p| self.caught_up(p))?;
        self.node.transfer_leader(to);
        Some(to)
    }

    /// Whether `peer` is replicating, has every entry of this leader's log
    /// and holds the data of its state (it is not pulling a snapshot's).
    fn caught_up(&self, peer: u64) -> bool {
        let last = self.node.raft.raft_log.last_index();
        let pulling = self
            .pulling
            .get(&peer)
            .is_some_and(|&at| self.ticks.saturating_sub(at) < PULLING_TICKS);
        !pulling
            && self
                .node
                .raft
                .prs()
                .get(peer)
                .is_some_and(|pr| pr.state == raft::ProgressState::Replicate && pr.matched == last)
    }

    /// Takes in a message from a peer. Stale or misrouted messages are
    /// dropped (raft-rs tolerates loss).
    pub fn receive(&mut self, mut msg: Message) {
        use raft::eraftpb::MessageType as T;
        match msg.get_msg_type() {
            // A leader sends a follower the commit index up to what it
            // believes the follower holds; a node that lost its disk (a
            // replaced drive, a wiped data dir) holds less than its leader
            // remembers, and raft-rs stops the process on a commit past its
            // log. What it holds came from this leader, so committing up
            // to its end is what the leader meant; the rest arrives with
            // the appends that follow.
            T::MsgHeartbeat if msg.commit > self.node.raft.raft_log.last_index() => {
                tracing::trace!(
                    from = msg.from,
                    commit = msg.commit,
                    "heartbeat commit past this log's end"
                );
                let last = self.node.raft.raft_log.last_index();
                msg.commit = last;
                // The leader believes this node holds what it acknowledged
                // before it lost it, and sends it nothing while no new
                // entry comes: tell it where this log ends (`LOST_LOG`).
                let mut lost = Message::default();
                lost.set_msg_type(T::MsgAppendResponse);
                lost.to = msg.from;
                lost.from = self.membership.me;
                lost.term = msg.term;
                lost.reject = true;
                lost.index = LOST_LOG;
                lost.reject_hint = last;
                self.send(vec![lost]);
            }
            // A follower lost the log it acknowledged (see above): it is
            // probed again from where its log ends, and sent a snapshot
            // where this WAL no longer goes back as far. raft-rs takes
            // acknowledged entries as held for good, so this leader moves
            // the follower's progress itself; lowering it never lowers the
            // commit index.
            T::MsgAppendResponse if msg.reject && msg.index == LOST_LOG => {
                if msg.term == self.node.raft.term && self.is_leader() {
                    if let Some(pr) = self.node.raft.mut_prs().get_mut(msg.from) {
                        if pr.matched > msg.reject_hint {
                            pr.matched = msg.reject_hint;
                            pr.become_probe();
                        }
                    }
                }
                return;
            }
            T::MsgAppendResponse | T::MsgHeartbeatResponse if msg.term == self.node.raft.term => {
                self.answered.insert(msg.from, (msg.term, self.ticks));
            }
            // A replica still pulling a snapshot's data cannot lead.
            T::MsgTimeoutNow if !self.promotable => return,
            // A node that just started may have answered a leader before it
            // stopped, and that leader may still count on it (its lease):
            // it votes only once an election timeout has passed. A leader
            // handing over its leadership asks for votes itself.
            T::MsgRequestVote | T::MsgRequestPreVote
                if self.ticks < ELECTION_TICKS as u64 && msg.context.as_ref() != raft::CAMPAIGN_TRANSFER =>
            {
                return;
            }
            _ => {}
        }
        if matches!(msg.get_msg_type(), T::MsgAppend | T::MsgHeartbeat | T::MsgSnapshot)
            && msg.term >= self.node.raft.term
        {
            self.heard_leader = self.ticks;
        }
        if let Err(e) = self.node.step(msg) {
            tracing::trace!(error = %e, "raft message dropped");
        }
    }

    pub fn has_ready(&self) -> bool {
        self.node.has_ready()
    }

    /// Hands finished reads of old entries to raft-rs (which sends them on)
    /// and starts the reads it asked for since.
    fn pump_fetches(&mut self) {
        let done = std::mem::take(&mut *self.fetcher.done.borrow_mut());
        for (low, result) in done {
            let waiting = self.fetcher.in_flight.remove(&low).unwrap_or_default();
            match result {
                Ok(entries) if !entries.is_empty() => {
                    self.fetcher.last_error = None;
                    self.node.mut_store().set_fetched(low, entries);
                    for context in waiting {
                        self.node.on_entries_fetched(context);
                    }
                }
                failed => {
                    let why = failed.map_or_else(|e| e.to_string(), |_| "the WAL holds no such entry".into());
                    if self.fetcher.last_error.as_ref() != Some(&why) {
                        tracing::warn!(low, error = %why, "reading old entries for a follower failed");
                        self.fetcher.last_error = Some(why);
                    }
                }
            }
        }
        for Fetch { low, context } in self.node.store().take_fetches() {
            let waiting = self.fetcher.in_flight.entry(low).or_default();
            waiting.push(context);
            if waiting.len() > 1 {
                continue; // that read is under way
            }
            let (reader, done, wake) = (
                self.fetcher.reader.clone(),
                self.fetcher.done.clone(),
                self.fetcher.wake.clone(),
            );
            glommio::spawn_local(async move {
                let read = reader.read_entries(low, u64::MAX, FETCH_BYTES).await;
                let entries = read.map(|recs| {
                    recs.into_iter()
                        .map(|r| entry_of(r.kind, r.term, r.index, r.payload))
                        .collect()
                });
                done.borrow_mut().push((low, entries));
                wake();
            })
            .detach();
        }
    }

    /// Runs one Ready round. Returns `None` when there was nothing to do.
    pub async fn step(&mut self) -> Result<Option<ReadyOutcome>, RaftError> {
        self.pump_fetches();
        if !self.node.has_ready() {
            return Ok(None);
        }
        let mut out = ReadyOutcome::default();
        let mut rd = self.node.ready();
        // A leader's appends go out before its own write: the followers'
        // writes and its own overlap.
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            out.installed = Some(self.install(rd.snapshot(), rd.hs()).await?);
        }
        collect_committed(&mut out, rd.take_committed_entries());
        let entries = rd.take_entries();
        let hs = rd.hs().cloned();
        // Term and vote must be durable before any message goes out; the
        // commit index need not be (a restarted node learns it again from
        // the leader, and a lone voter re-commits its log when it wins its
        // election). A Ready that only moves the commit index writes
        // nothing: the next entries carry it to disk.
        let stored = self.node.store().hard_state();
        let hs_needs_write = hs
            .as_ref()
            .is_some_and(|h| !entries.is_empty() || h.term != stored.term || h.vote != stored.vote);
        if let (Some(h), false) = (&hs, hs_needs_write) {
            self.node.mut_store().set_hard_state(h.clone());
        }
        let hs = hs.filter(|_| hs_needs_write);
        out.persisted_own = self.is_leader() && entries.iter().all(|e| e.term == self.term());
        if !entries.is_empty() || hs.is_some() {
            self.persist(&entries, hs.as_ref(), &mut out).await?;
        }
        self.send(rd.take_persisted_messages());
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        collect_committed(&mut out, light.take_committed_entries());
        self.node.advance_apply();
        self.release_entries();
        self.pump_fetches();
        out.committed_index = Some(RaftIndex(self.node.raft.raft_log.committed));
        Ok(Some(out))
    }

    /// Makes a snapshot from the leader this replica's log and state: the
    /// WAL starts over after it and a checkpoint of its state (its batches
    /// not held yet: the shard pulls them) is written before the old log
    /// goes, so that a crash at any step leaves the old log or the new
    /// one. The state machine takes the state in `State::apply`.
    async fn install(
        &mut self,
        snap: &raft::prelude::Snapshot,
        hs: Option<&HardState>,
    ) -> Result<SnapshotData, RaftError> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let mut data = SnapshotData::decode(snap.get_data()).map_err(RaftError::Snapshot)?;
        let keep_from = self.wal.restart_at(index).await?;
        let stored = hs.cloned().unwrap_or_else(|| self.node.store().hard_state().clone());
        let c = &mut data.checkpoint;
        c.applied = (index, term);
        c.hard_state = crate::wal::HardState {
            term: Term(stored.term),
            vote: NodeId(stored.vote),
            commit: RaftIndex(stored.commit.max(index)),
        };
        c.wal = crate::wal::WalStart {
            keep_from,
            before: (index, term),
        };
        self.wal.write_checkpoint(&c.encode()).await?;
        let cold: Vec<RaftIndex> = self.wal.cold_files().keys().copied().collect();
        self.wal.restart_done(keep_from, (index, term), &cold)?;
        self.node.mut_store().installed(index, term);
        self.snapshots_installed += 1;
        Ok(data)
    }

    /// Drops entries the state machine holds, except those a follower
    /// still needs (within the store's byte limit).
    fn release_entries(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        let mut keep_after = applied;
        if self.is_leader() {
            let me = self.membership.me;
            for (&id, pr) in self.node.raft.prs().iter() {
                if id != me {
                    keep_after = keep_after.min(pr.matched);
                }
            }
        }
        self.node.mut_store().release(keep_after, applied);
    }

    async fn persist(
        &mut self,
        entries: &[Entry],
        hs: Option<&HardState>,
        out: &mut ReadyOutcome,
    ) -> Result<(), RaftError> {
        let hs_bytes = hs.map(|h| {
            encode_hard_state(crate::wal::HardState {
                term: Term(h.term),
                vote: NodeId(h.vote),
                commit: RaftIndex(h.commit),
            })
        });
        let mut records: Vec<RecordRef<'_>> = entries
            .iter()
            .map(|e| RecordRef {
                term: e.term,
                index: e.index,
                kind: record_kind(e),
                payload: &e.data,
            })
            .collect();
        if let Some(b) = hs_bytes.as_ref() {
            records.push(RecordRef {
                term: 0,
                index: 0,
                kind: RecordKind::HardState,
                payload: b,
            });
        }
        if let Some(first) = entries.first() {
            out.overwritten = self
                .node
                .store()
                .tail_from(first.index)
                .iter()
                .filter(|e| is_data(e))
                .map(|e| e.data.clone())
                .collect();
        }
        let positions = self.wal.append(&records).await?;
        for (e, pos) in entries.iter().zip(positions) {
            if is_data(e) {
                out.persisted.push((RaftIndex(e.index), e.data.clone(), pos));
            }
        }
        if let Some(last) = entries.last() {
            out.persisted_index = Some(RaftIndex(last.index));
        }
        let store = self.node.mut_store();
        store.append(entries);
        if let Some(h) = hs {
            store.set_hard_state(h.clone());
        }
        Ok(())
    }
}

/// How an entry is framed in the WAL.
pub fn record_kind(e: &Entry) -> RecordKind {
    match e.get_entry_type() {
        EntryType::EntryNormal if e.context.as_ref() == META_CONTEXT => RecordKind::Meta,
        EntryType::EntryNormal if e.context.as_ref() == TRIM_CONTEXT => RecordKind::Trim,
        EntryType::EntryNormal if e.context.as_ref() == RELEASE_CONTEXT => RecordKind::Release,
        EntryType::EntryNormal => RecordKind::Entry,
        EntryType::EntryConfChange => RecordKind::ConfChange,
        EntryType::EntryConfChangeV2 => RecordKind::ConfChangeV2,
    }
}

/// The entry a WAL record holds (recovery).
pub fn entry_of(kind: RecordKind, term: u64, index: u64, payload: Bytes) -> Entry {
    let mut e = Entry {
        term,
        index,
        data: payload,
        ..Default::default()
    };
    match kind {
        RecordKind::ConfChange => e.set_entry_type(EntryType::EntryConfChange),
        RecordKind::ConfChangeV2 => e.set_entry_type(EntryType::EntryConfChangeV2),
        RecordKind::Meta => e.context = Bytes::from_static(META_CONTEXT),
        RecordKind::Trim => e.context = Bytes::from_static(TRIM_CONTEXT),
        RecordKind::Release => e.context = Bytes::from_static(RELEASE_CONTEXT),
        RecordKind::Entry | RecordKind::HardState => {}
    }
    e
}

/// A normal entry carrying partition batches (not the empty entry a new
/// leader appends, not a metadata command).
pub fn is_data(e: &Entry) -> bool {
    record_kind(e) == RecordKind::Entry && !e.data.is_empty()
}

/// Checks what a peer sent before Raft sees it: a follower persists and
/// applies the leader's entries and snapshots as they are, so a malformed
/// payload would reach the WAL and stop the shard at every restart.
pub fn check_from_peer(m: &Message) -> Result<(), String> {
    if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
        let snap = m.get_snapshot();
        if snap.get_metadata().index == 0 {
            return Err("an empty snapshot".into());
        }
        SnapshotData::decode(snap.get_data()).map_err(|e| format!("snapshot at {}: {e}", snap.get_metadata().index))?;
        return Ok(());
    }
    for e in m.get_entries() {
        let checked = match record_kind(e) {
            _ if is_data(e) => entry::validate_payload(&e.data),
            RecordKind::Trim => entry::validate_trims(&e.data),
            RecordKind::Release => entry::release(&e.data).map(|_| 1),
            _ => Ok(0),
        };
        checked.map_err(|err| format!("entry {} (term {}): {err}", e.index, e.term))?;
    }
    Ok(())
}

fn collect_committed(out: &mut ReadyOutcome, entries: Vec<Entry>) {
    for e in entries {
        match record_kind(&e) {
            RecordKind::Meta => out.committed_meta.push((RaftIndex(e.index), e.data)),
            RecordKind::Trim => out.committed_trims.push((RaftIndex(e.index), e.data)),
            RecordKind::Release => {
                if let Ok(index) = entry::release(&e.data) {
                    out.committed_release = out.committed_release.max(Some(index));
                }
            }
            _ if is_data(&e) => out.committed.push((RaftIndex(e.index), e.data)),
            _ => {}
        }
    }
}
