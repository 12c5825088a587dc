//! The shard's Raft group: a raft-rs `RawNode` whose log storage is the
//! shard WAL. On one node it has one voter; replication adds voters and a
//! transport, not a new storage path.
//!
//! `RaftGroup::step` runs the Ready loop in raft-rs order: send messages,
//! apply committed entries, persist entries and hard state (one WAL append,
//! which is the group commit), send persisted messages, advance, apply what
//! the advance committed. No timer drives it: it runs when a proposal
//! arrives, so an idle shard does nothing.

pub mod entry;
pub mod storage;

use bytes::Bytes;
use raft::prelude::{Entry, EntryType, HardState};
use raft::{Config, RawNode};

use crate::types::RaftIndex;
use crate::wal::{encode_hard_state, RecordKind, RecordRef, WalError, WalPos, WalWriter};
use storage::LogStore;

/// This node's id inside its Raft groups (raft-rs ids must be non-zero).
pub const LOCAL_PEER: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("this shard is not the leader of its Raft group")]
    NotLeader,
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// What one Ready round did, for the shard to apply to its partitions.
#[derive(Default)]
pub struct ReadyOutcome {
    /// Data entries now durable, with the WAL position of their payload.
    pub persisted: Vec<(RaftIndex, Bytes, WalPos)>,
    /// Highest index known durable after this round.
    pub persisted_index: Option<RaftIndex>,
    /// Data entries now committed, in log order.
    pub committed: Vec<(RaftIndex, Bytes)>,
    /// Highest index known committed after this round.
    pub committed_index: Option<RaftIndex>,
}

/// State recovered from the WAL for the Raft group.
pub struct RecoveredRaft {
    pub hard_state: Option<(u64, u64, u64)>,
    pub applied: (u64, u64),
    pub unapplied: Vec<Entry>,
}

pub struct RaftGroup {
    node: RawNode<LogStore>,
    wal: WalWriter,
}

fn raft_config(applied: u64) -> Config {
    Config {
        id: LOCAL_PEER,
        election_tick: 10,
        heartbeat_tick: 2,
        applied,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

impl RaftGroup {
    /// Starts the group from recovered state and, with a single voter,
    /// elects itself at once (no election timer needed).
    pub fn start(wal: WalWriter, recovered: RecoveredRaft) -> Result<Self, RaftError> {
        let mut hs = HardState::default();
        if let Some((term, vote, commit)) = recovered.hard_state {
            hs.term = term;
            hs.vote = vote;
            hs.commit = commit.max(recovered.applied.0);
        } else {
            hs.commit = recovered.applied.0;
        }
        let store = LogStore::new(vec![LOCAL_PEER], hs, recovered.applied, recovered.unapplied);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let config = raft_config(recovered.applied.0);
        config.validate()?;
        let mut node = RawNode::new(&config, store, &logger)?;
        node.campaign()?;
        Ok(Self { node, wal })
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == raft::StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    pub fn wal(&self) -> &WalWriter {
        &self.wal
    }

    /// Proposes one entry and returns the index it will have.
    pub fn propose(&mut self, payload: Vec<u8>) -> Result<RaftIndex, RaftError> {
        if !self.is_leader() {
            return Err(RaftError::NotLeader);
        }
        self.node.propose(vec![], payload)?;
        Ok(RaftIndex(self.node.raft.raft_log.last_index()))
    }

    pub fn has_ready(&self) -> bool {
        self.node.has_ready()
    }

    /// Runs one Ready round. Returns `None` when there was nothing to do.
    pub async fn step(&mut self) -> Result<Option<ReadyOutcome>, RaftError> {
        if !self.node.has_ready() {
            return Ok(None);
        }
        let mut out = ReadyOutcome::default();
        let mut rd = self.node.ready();
        // Single voter: no peers to send to yet. The transport hooks in here.
        debug_assert!(rd.messages().is_empty());
        collect_committed(&mut out, rd.take_committed_entries());
        let entries = rd.take_entries();
        let hs = rd.hs().cloned();
        if !entries.is_empty() || hs.is_some() {
            self.persist(&entries, hs.as_ref(), &mut out).await?;
        }
        debug_assert!(rd.persisted_messages().is_empty());
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit);
        }
        collect_committed(&mut out, light.take_committed_entries());
        self.node.advance_apply();
        let applied = self.node.raft.raft_log.applied;
        self.node.mut_store().compact_to(applied);
        out.committed_index = Some(RaftIndex(self.node.raft.raft_log.committed));
        Ok(Some(out))
    }

    async fn persist(
        &mut self,
        entries: &[Entry],
        hs: Option<&HardState>,
        out: &mut ReadyOutcome,
    ) -> Result<(), RaftError> {
        let hs_bytes = hs.map(|h| encode_hard_state(h.term, h.vote, h.commit));
        let mut records: Vec<RecordRef<'_>> = entries
            .iter()
            .map(|e| RecordRef {
                term: e.term,
                index: e.index,
                kind: match e.get_entry_type() {
                    EntryType::EntryNormal => RecordKind::Entry,
                    EntryType::EntryConfChange => RecordKind::ConfChange,
                    EntryType::EntryConfChangeV2 => RecordKind::ConfChangeV2,
                },
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
        let positions = self.wal.append(&records).await?;
        for (e, pos) in entries.iter().zip(positions) {
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
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

fn collect_committed(out: &mut ReadyOutcome, entries: Vec<Entry>) {
    for e in entries {
        if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            out.committed.push((RaftIndex(e.index), e.data));
        }
    }
}
