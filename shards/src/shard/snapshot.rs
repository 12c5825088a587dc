//! Raft snapshots of a shard: what a replica behind the leader's WAL (one
//! that lost its disk, or was down while its peers reclaimed) installs
//! instead of the entries that are gone.
//!
//! A snapshot is the state machine as of the leader's last applied entry,
//! in the checkpoint's form (`checkpoint.rs`): per partition log start,
//! high watermark, producers and the *manifest* of its retained batches
//! (offsets, sizes, timestamps), with no positions: the batches themselves
//! are not in it. The replica installs it at once (its log then goes on
//! from the snapshot's index), and pulls the batches from its peers in
//! chunks afterwards (`pull.rs`); until it holds them all it serves
//! nothing and cannot lead. Group 0's snapshot also carries the node's
//! metadata (`meta`), opaque here: the metadata entries it replaces.
//!
//! Layout: `CSSNAP01 | checkpoint len u64 LE | checkpoint | meta`.

use super::checkpoint::Checkpoint;
use super::state::State;
use crate::partition::Partition;
use crate::types::PartitionId;
use crate::wal::{WalPos, WalStart, REMOTE};

const MAGIC: &[u8; 8] = b"CSSNAP01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    /// The state; every batch position is `REMOTE`.
    pub checkpoint: Checkpoint,
    /// The node's metadata as of the snapshot (group 0), or empty.
    pub meta: Vec<u8>,
}

impl SnapshotData {
    pub fn encode(&self) -> Vec<u8> {
        let c = self.checkpoint.encode();
        let mut out = Vec::with_capacity(16 + c.len() + self.meta.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(c.len() as u64).to_le_bytes());
        out.extend_from_slice(&c);
        out.extend_from_slice(&self.meta);
        out
    }

    /// Decodes what a peer sent: anything malformed is refused, and so is
    /// a batch that claims a position (a snapshot names none).
    pub fn decode(data: &[u8]) -> Result<Self, String> {
        let rest = data.strip_prefix(MAGIC).ok_or("not a corestream snapshot")?;
        let (len, rest) = rest.split_first_chunk::<8>().ok_or("snapshot ends early")?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| "snapshot length")?;
        if len > rest.len() {
            return Err("snapshot ends early".into());
        }
        let (body, meta) = rest.split_at(len);
        let checkpoint = Checkpoint::decode(body)?;
        let positioned = checkpoint
            .partitions
            .iter()
            .find(|p| p.index.iter().any(|e| e.pos.segment != REMOTE));
        if let Some(p) = positioned {
            return Err(format!("partition {} has a batch with a position", p.id));
        }
        for p in &checkpoint.partitions {
            Partition::restore(p.clone())?;
        }
        Ok(Self {
            checkpoint,
            meta: meta.to_vec(),
        })
    }
}

impl State {
    /// Takes the state of a snapshot the Raft group installed: partitions,
    /// producers, log starts as the leader had them, their batches still
    /// to pull. What waited on the old log is answered (it will not
    /// commit here), partitions this replica knew that the snapshot does
    /// not name start empty (unless it deleted them).
    pub(crate) fn install(&mut self, data: SnapshotData) {
        let SnapshotData { checkpoint, meta } = data;
        let at = checkpoint.applied.0;
        self.forget_waiters();
        let held: Vec<PartitionId> = self
            .partitions
            .keys()
            .copied()
            .filter(|id| checkpoint.deleted.binary_search(id).is_err())
            .collect();
        self.partitions.clear();
        self.with_producers.clear();
        self.pinning.clear();
        for id in held {
            self.partitions.insert(id, Partition::new(id));
        }
        if let Err(why) = self.restore(checkpoint) {
            // Checked when it arrived (`raft::check_from_peer`).
            self.fail(format!("installing a snapshot: {why}"));
            return;
        }
        let ids: Vec<PartitionId> = self.partitions.keys().copied().collect();
        for id in ids {
            self.time_retention.reschedule(id, self.partitions.get(&id));
        }
        self.installed_meta = Some((at, meta));
        self.reclaim_dirty = true;
    }

    /// The state as of `applied` (where the state machine is) as a
    /// snapshot, with the node's metadata `meta`.
    pub fn snapshot_data(&self, applied: (u64, u64), meta: Vec<u8>) -> SnapshotData {
        let mut partitions: Vec<_> = self
            .partitions
            .values()
            .map(|p| {
                let mut saved = p.saved();
                for e in &mut saved.index {
                    e.pos = WalPos {
                        segment: REMOTE,
                        offset: 0,
                    };
                }
                saved
            })
            .collect();
        partitions.sort_by_key(|p| p.id);
        let mut deleted: Vec<PartitionId> = self.deleted.iter().copied().collect();
        deleted.sort();
        SnapshotData {
            checkpoint: Checkpoint {
                applied,
                hard_state: Default::default(),
                released: self.released,
                wal: WalStart {
                    keep_from: Default::default(),
                    before: (0, 0),
                },
                known_below: self.known_below,
                deleted,
                partitions,
                // The replica cleans what it pulls whole, once: the batches
                // a peer sends may be compacted less than these are.
                cleaned: Vec::new(),
            },
            meta,
        }
    }
}
