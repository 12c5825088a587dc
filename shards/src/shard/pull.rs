//! Pulling a snapshot's batches: after a replica installed a snapshot
//! (`snapshot.rs`) its index names batches it does not hold (position
//! `REMOTE`). It asks a peer, the leader when it knows one, for them: one
//! request names up to `PULL_PARTITIONS` partitions and the offsets it
//! lacks in each; the peer answers with the committed batches it holds
//! in that range, up to `PULL_BYTES`, which the replica checks (CRC, and that
//! they are the batches its index names) and writes into one cold file.
//! A chunk gathers many partitions: files grow with data, not partitions.
//!
//! A peer answers only once it applied the log as far as the snapshot
//! (`at`): a peer behind it may not have a partition yet, or not its
//! batches. A peer whose log start passed what was asked answers from its
//! log start: a committed trim removed the rest, and the replica trims as
//! the trim entry will when it arrives. A deleted partition is answered
//! `Gone`, and the replica drops what it lacked of it.
//!
//! Until every batch is pulled the replica serves nothing and does not
//! lead (`RaftGroup::set_promotable`); a restart starts the pull over from
//! its checkpoint.
//!
//! Wire form (little endian; a frame of the Raft transport or a message
//! of the simulator's network): `kind u8` then
//! - request: `from u64 | at u64 | max_bytes u32 | n u32 | n x (partition u32 | from i64 | until i64)`
//! - reply: `from u64 | at u64 | n u32 | n x (partition u32 | status u8 | log_start i64 | bytes u32) | batches`

use std::collections::BTreeSet;

use bytes::Bytes;

use super::state::State;
use crate::partition::IndexEntry;
use crate::raft::RaftGroup;
use crate::types::{Offset, PartitionId, RaftIndex};
use crate::wal::Disk;
use crate::wal::{WalPos, REMOTE};

/// Most partitions one request names.
pub const PULL_PARTITIONS: usize = 1024;
/// Most batch bytes one reply carries (the first batch always goes).
pub const PULL_BYTES: u32 = 8 << 20;
/// A request not answered within this long is sent again (to another peer
/// when the leader is unknown).
pub const PULL_TIMEOUT_MS: i64 = 2_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// The Raft id of the replica asking.
    pub from: u64,
    /// The index of the snapshot it installed.
    pub at: u64,
    pub max_bytes: u32,
    /// Per partition, the offsets it lacks: `[from, until)`.
    pub wants: Vec<(PartitionId, Offset, Offset)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// The batches from `log_start` or the offset asked, whichever is
    /// later (maybe none: the chunk was full).
    Data = 0,
    /// The peer cannot answer for it yet (behind the snapshot, or pulling
    /// it itself).
    Behind = 1,
    /// The partition was deleted.
    Gone = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    pub partition: PartitionId,
    pub status: PullStatus,
    pub log_start: Offset,
    /// Bytes of this partition's batches in the reply's data.
    pub bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReply {
    pub from: u64,
    pub at: u64,
    pub parts: Vec<Pulled>,
    /// The partitions' batches one after another, in `parts` order.
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullMessage {
    Request(PullRequest),
    Reply(PullReply),
}

impl PullMessage {
    /// The Raft id of the node that sent it.
    pub fn from(&self) -> u64 {
        match self {
            PullMessage::Request(r) => r.from,
            PullMessage::Reply(r) => r.from,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            PullMessage::Request(r) => {
                out.push(0);
                out.extend_from_slice(&r.from.to_le_bytes());
                out.extend_from_slice(&r.at.to_le_bytes());
                out.extend_from_slice(&r.max_bytes.to_le_bytes());
                out.extend_from_slice(&(r.wants.len() as u32).to_le_bytes());
                for (p, from, until) in &r.wants {
                    out.extend_from_slice(&p.0.to_le_bytes());
                    out.extend_from_slice(&from.0.to_le_bytes());
                    out.extend_from_slice(&until.0.to_le_bytes());
                }
            }
            PullMessage::Reply(r) => {
                out.push(1);
                out.extend_from_slice(&r.from.to_le_bytes());
                out.extend_from_slice(&r.at.to_le_bytes());
                out.extend_from_slice(&(r.parts.len() as u32).to_le_bytes());
                for p in &r.parts {
                    out.extend_from_slice(&p.partition.0.to_le_bytes());
                    out.push(p.status as u8);
                    out.extend_from_slice(&p.log_start.0.to_le_bytes());
                    out.extend_from_slice(&p.bytes.to_le_bytes());
                }
                out.extend_from_slice(&r.data);
            }
        }
        out
    }

    /// Decodes what a peer sent; anything malformed is refused.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let mut d = Dec(b);
        let kind = d.take::<1>()?[0];
        let from = u64::from_le_bytes(d.take()?);
        let at = u64::from_le_bytes(d.take()?);
        match kind {
            0 => {
                let max_bytes = u32::from_le_bytes(d.take()?);
                let n = d.count(20)?;
                let wants = (0..n)
                    .map(|_| {
                        let p = PartitionId(u32::from_le_bytes(d.take()?));
                        let from = Offset(i64::from_le_bytes(d.take()?));
                        Ok((p, from, Offset(i64::from_le_bytes(d.take()?))))
                    })
                    .collect::<Result<_, String>>()?;
                d.end()?;
                Ok(PullMessage::Request(PullRequest {
                    from,
                    at,
                    max_bytes,
                    wants,
                }))
            }
            1 => {
                let n = d.count(17)?;
                let parts: Vec<Pulled> = (0..n)
                    .map(|_| {
                        let partition = PartitionId(u32::from_le_bytes(d.take()?));
                        let status = match d.take::<1>()?[0] {
                            0 => PullStatus::Data,
                            1 => PullStatus::Behind,
                            2 => PullStatus::Gone,
                            s => return Err(format!("pull status {s}")),
                        };
                        let log_start = Offset(i64::from_le_bytes(d.take()?));
                        let bytes = u32::from_le_bytes(d.take()?);
                        Ok(Pulled {
                            partition,
                            status,
                            log_start,
                            bytes,
                        })
                    })
                    .collect::<Result<_, String>>()?;
                let total: u64 = parts.iter().map(|p| p.bytes as u64).sum();
                if total != d.0.len() as u64 {
                    return Err(format!(
                        "pull reply names {total} bytes of batches and carries {}",
                        d.0.len()
                    ));
                }
                Ok(PullMessage::Reply(PullReply {
                    from,
                    at,
                    parts,
                    data: Bytes::copy_from_slice(d.0),
                }))
            }
            k => Err(format!("pull message kind {k}")),
        }
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or("pull message ends early")?;
        self.0 = rest;
        Ok(*head)
    }

    /// A count of items of at least `each` bytes, checked against what is left.
    fn count(&mut self, each: usize) -> Result<usize, String> {
        let n = u32::from_le_bytes(self.take()?) as usize;
        if n.saturating_mul(each) > self.0.len() {
            return Err(format!("pull message claims {n} items"));
        }
        Ok(n)
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes after the pull message", self.0.len()))
        }
    }
}

/// A replica's pull in progress.
#[derive(Debug, Default)]
pub struct Pull {
    /// Partitions holding batches not pulled yet (some may have lost them
    /// since to a trim or a delete: looked at lazily).
    pub(super) remote: BTreeSet<PartitionId>,
    /// The snapshot the batches belong to.
    pub(super) at: u64,
    /// The request in flight, and when it went (ms).
    in_flight: Option<i64>,
    /// How many requests went: which peer the next one goes to when the
    /// leader is unknown.
    pub(crate) requests: u64,
    /// Batch bytes pulled and written.
    pub(crate) bytes: u64,
    /// Of those, the bytes no checkpoint names yet: a restart would pull
    /// them again (`plan_reclaim` weighs them as it weighs freed bytes).
    pub(crate) unsaved: u64,
}

/// What a checked reply adds to a replica: the batches in `data`, which
/// the caller writes into a cold file, then `State::pulled`.
pub struct Chunk {
    pub(super) parts: Vec<(PartitionId, Offset, Vec<IndexEntry>)>,
    pub(super) gone: Vec<PartitionId>,
    pub data: Bytes,
}

impl State {
    /// Whether this replica lacks batches a snapshot named.
    pub fn pulling(&self) -> bool {
        !self.pull.remote.is_empty()
    }

    /// The one place the group's right to lead follows the pull: it may
    /// lead once this replica holds every batch its snapshot named,
    /// however the last lacked one went (pulled, trimmed by a committed
    /// trim, its partition deleted). Returns whether the pull ended just
    /// now. Drivers call it after a snapshot, a restart and each round of
    /// pull replies.
    pub fn settle_pull<D: Disk>(&mut self, group: &mut RaftGroup<D>) -> bool {
        self.forget_held();
        let done = !self.pulling();
        let ended = done && !group.promotable();
        group.set_promotable(done);
        ended
    }

    /// Drops the partitions that no longer lack a batch from those pulled.
    fn forget_held(&mut self) {
        let partitions = &self.partitions;
        self.pull
            .remote
            .retain(|id| partitions.get(id).is_some_and(|p| p.remote().next().is_some()));
    }

    /// The next request to send, if one is due: none is in flight (or the
    /// last one timed out) and batches are missing. The caller sends it to
    /// the leader, or to a peer in turn.
    pub fn next_pull(&mut self, me: u64, now_ms: i64) -> Option<PullRequest> {
        if self
            .pull
            .in_flight
            .is_some_and(|sent| now_ms.abs_diff(sent) < PULL_TIMEOUT_MS as u64)
        {
            return None;
        }
        let mut wants = Vec::new();
        let partitions = &self.partitions;
        self.pull.remote.retain(|id| {
            let range = partitions.get(id).and_then(|p| p.remote_range());
            if let (Some((first, end)), true) = (range, wants.len() < PULL_PARTITIONS) {
                wants.push((*id, first, end));
            }
            range.is_some()
        });
        if wants.is_empty() {
            self.pull.in_flight = None;
            return None;
        }
        self.pull.in_flight = Some(now_ms);
        self.pull.requests += 1;
        Some(PullRequest {
            from: me,
            at: self.pull.at,
            max_bytes: PULL_BYTES,
            wants,
        })
    }

    /// What this replica answers a peer's pull request with: for each
    /// partition its status and log start, and the committed batches to
    /// send (read by the caller), up to the request's byte limit.
    /// `applied`: the last entry this replica's state reflects.
    pub fn serve_pull(&self, req: &PullRequest, applied: u64) -> Vec<(Pulled, Vec<IndexEntry>)> {
        let mut budget = req.max_bytes.min(PULL_BYTES) as usize;
        let mut out = Vec::with_capacity(req.wants.len());
        for &(id, offset, until) in &req.wants {
            let mut part = Pulled {
                partition: id,
                status: PullStatus::Behind,
                log_start: Offset(0),
                bytes: 0,
            };
            let p = self.partitions.get(&id);
            let mut batches = Vec::new();
            match p {
                _ if applied < req.at => {}
                None if self.deleted.contains(&id) || id.0 < self.known_below => part.status = PullStatus::Gone,
                None => {}
                Some(p) => {
                    part.log_start = p.log_start();
                    let from = offset.max(p.log_start());
                    batches = p.committed_batches_from(from, budget);
                    batches.retain(|e| e.base < until);
                    if batches.first().is_some_and(|e| e.base > from) || batches.iter().any(|e| e.pos.segment == REMOTE)
                    {
                        batches.clear(); // pulling it too
                    } else {
                        part.status = PullStatus::Data;
                        if budget == 0 {
                            batches.clear();
                        }
                    }
                }
            }
            let bytes: usize = batches.iter().map(|e| e.len as usize).sum();
            budget = budget.saturating_sub(bytes);
            part.bytes = bytes as u32;
            out.push((part, batches));
        }
        out
    }

    /// Checks a peer's reply against what this replica lacks: the batches
    /// of each partition must pass their CRC and cover, densely, offsets
    /// its index names as not held, from the first of them. Replicas
    /// compact their own copies, so the peer's batches may be cut
    /// elsewhere than the snapshot's: a batch reaching before or past what
    /// is lacked is rebuilt around the records inside it. Returns the
    /// chunk to write, or why it is refused. A reply to an older pull, or
    /// from a peer behind, is ignored.
    pub fn check_pull_reply(&mut self, reply: PullReply) -> Result<Option<Chunk>, String> {
        if reply.at != self.pull.at {
            return Ok(None);
        }
        let mut chunk = Chunk {
            parts: Vec::new(),
            gone: Vec::new(),
            data: Bytes::new(),
        };
        let mut data: Vec<u8> = Vec::new();
        let mut at = 0usize;
        let mut answered = false;
        for part in &reply.parts {
            let bytes = &reply.data[at..at + part.bytes as usize];
            at += part.bytes as usize;
            match part.status {
                PullStatus::Behind => continue,
                PullStatus::Gone => {
                    answered = true;
                    chunk.gone.push(part.partition);
                    continue;
                }
                PullStatus::Data => answered = true,
            }
            let Some(p) = self.partitions.get(&part.partition) else {
                continue;
            };
            let Some((mut next, until)) = p.remote_range() else {
                continue;
            };
            let start_at = p.log_start().max(part.log_start);
            let mut entries = Vec::new();
            let batches = if bytes.is_empty() {
                Vec::new() // the chunk was full before this partition
            } else {
                crate::batch::split_stored(bytes).map_err(|e| e.to_string())?
            };
            let refuse = |why: String| Err(format!("partition {}: {why}", part.partition));
            for (off, info) in batches {
                let b = &bytes[off..off + info.bytes];
                let base = Offset(crate::batch::base_offset(b));
                let end = Offset(base.0 + i64::from(crate::batch::last_offset_delta(b)));
                if end < start_at || end < next {
                    continue; // trimmed here (or there) since it was asked for
                }
                if next >= until {
                    break;
                }
                if base > next && entries.is_empty() && base <= start_at {
                    next = base; // the log start passed what was asked: served from there
                } else if base > next {
                    return refuse(format!("a batch at offset {base} where {next} was lacked"));
                }
                let fitted;
                let b = if base < next || end >= until {
                    fitted = fit(b, next, until).map_err(|e| format!("partition {}: {e}", part.partition))?;
                    &fitted[..]
                } else {
                    b
                };
                let last = Offset(crate::batch::base_offset(b) + i64::from(crate::batch::last_offset_delta(b)));
                entries.push(IndexEntry {
                    base: next,
                    last,
                    pos: WalPos {
                        segment: REMOTE,
                        offset: data.len() as u64,
                    },
                    len: b.len() as u32,
                    max_timestamp_ms: crate::batch::max_timestamp(b),
                });
                data.extend_from_slice(b);
                next = Offset(last.0 + 1);
            }
            chunk.parts.push((part.partition, part.log_start, entries));
        }
        chunk.data = Bytes::from(data);
        if answered {
            self.pull.in_flight = None;
        }
        Ok(Some(chunk))
    }

    /// The chunk's batches now live in cold file `file` (at their offsets
    /// in the chunk): each partition's index points there, its log start
    /// follows the peer's, and a partition the peer deleted drops what it
    /// lacked. `settle_pull` then says whether the pull is complete.
    pub fn pulled(&mut self, chunk: &Chunk, file: Option<RaftIndex>) {
        for (id, log_start, entries) in &chunk.parts {
            let Some(p) = self.partitions.get_mut(id) else { continue };
            if *log_start > p.log_start() {
                p.trim_to(*log_start);
            }
            if let Some(file) = file {
                let held: Vec<IndexEntry> = entries.iter().map(|e| e.in_file(file)).collect();
                let added = p.fill_remote(held);
                self.pull.bytes += added;
                self.pull.unsaved += added;
            }
        }
        for id in &chunk.gone {
            if let Some(p) = self.partitions.get_mut(id) {
                if let Some((_, end)) = p.remote_range() {
                    p.trim_to(end);
                }
            }
        }
        self.forget_held();
        self.reclaim_dirty = true;
    }

    /// Starts pulling what an installed snapshot at `at` named.
    pub(super) fn start_pull(&mut self, at: u64) {
        self.pull.at = at;
        self.pull.in_flight = None;
        self.pull.unsaved = 0;
        if crate::planted::active(crate::planted::Bug::SnapshotNotPulled) {
            return;
        }
        self.pull.remote = self
            .partitions
            .iter()
            .filter(|(_, p)| p.remote().next().is_some())
            .map(|(&id, _)| id)
            .collect();
    }
}

/// `batch` cut down to the offsets `[from, until)`: the records outside go,
/// and the batch's range starts at `from` (or later, where it starts) and
/// ends before `until` (or earlier, where it ends).
fn fit(batch: &[u8], from: Offset, until: Offset) -> Result<Vec<u8>, crate::records::RecordsError> {
    use crate::records::{self, Header};
    let h = Header::parse(batch)?;
    let plain = records::decompress(batch, &h)?;
    let kept: Vec<_> = records::parse(&plain, h.count)?
        .into_iter()
        .map(|r| (r, h.base_offset.wrapping_add(r.offset_delta)))
        .filter(|&(_, o)| o >= from.0 && o < until.0)
        .collect();
    let base = h.base_offset.max(from.0);
    let last = h.last_offset().min(until.0 - 1);
    records::rebuild(&h, base, last, &kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::batch;

    fn remote(base: i64, last: i64) -> IndexEntry {
        IndexEntry {
            base: Offset(base),
            last: Offset(last),
            pos: WalPos {
                segment: REMOTE,
                offset: 0,
            },
            len: 100,
            max_timestamp_ms: 0,
        }
    }

    /// A replica that installed a snapshot naming batches [0,1] [2,3] [4,5]
    /// pulls from a peer that compacted its copy into [0,3] [4,7]: the
    /// batches are taken, the one reaching past what was lacked is cut, and
    /// the index stays dense.
    #[test]
    fn batches_cut_elsewhere_by_a_peers_compaction_fill_what_is_lacked() {
        let id = PartitionId(3);
        let mut st = State::new(&[], 4);
        let mut p = crate::partition::Partition::restore(crate::partition::SavedPartition {
            id,
            log_start: Offset(0),
            high_watermark: Offset(6),
            index: vec![remote(0, 1), remote(2, 3), remote(4, 5)],
            producers: Vec::new(),
        })
        .unwrap();
        p.index_batch(IndexEntry {
            base: Offset(6),
            last: Offset(7),
            pos: WalPos {
                segment: RaftIndex(9),
                offset: 0,
            },
            len: 80,
            max_timestamp_ms: 0,
        });
        st.partitions.insert(id, p);
        st.start_pull(50);
        let t = 1_000;
        let mut data = batch(0, &[(Some("a"), Some("a1"), t), (Some("b"), Some("b1"), t)], 1);
        crate::batch::set_base_offset(&mut data, 0);
        let mut b2 = batch(
            4,
            &[
                (Some("x"), Some("1"), t),
                (Some("y"), Some("2"), t),
                (Some("z"), Some("3"), t),
                (Some("w"), Some("4"), t),
            ],
            3,
        );
        crate::batch::set_base_offset(&mut b2, 4);
        // The peer's [0,1] became [0,3] (records at 2 and 3 compacted away).
        let mut wide = crate::records::Header::parse(&data).unwrap();
        wide.last_offset_delta = 3;
        let plain = crate::records::decompress(&data, &wide).unwrap();
        let recs: Vec<_> = crate::records::parse(&plain, 2)
            .unwrap()
            .into_iter()
            .map(|r| (r, r.offset_delta))
            .collect();
        let first = crate::records::rebuild(&wide, 0, 3, &recs).unwrap();
        let mut reply_data = first.clone();
        reply_data.extend_from_slice(&b2);
        let reply = PullReply {
            from: 1,
            at: 50,
            parts: vec![Pulled {
                partition: id,
                status: PullStatus::Data,
                log_start: Offset(0),
                bytes: reply_data.len() as u32,
            }],
            data: Bytes::from(reply_data),
        };
        let chunk = st.check_pull_reply(reply).unwrap().unwrap();
        let entries = &chunk.parts[0].2;
        let ranges: Vec<_> = entries.iter().map(|e| (e.base.0, e.last.0)).collect();
        assert_eq!(
            ranges,
            vec![(0, 3), (4, 5)],
            "the batch past what was lacked is cut at 5"
        );
        let cut = &chunk.data[first.len()..];
        let h = crate::records::Header::parse(cut).unwrap();
        assert_eq!((h.base_offset, h.last_offset(), h.count), (4, 5, 2));
        crate::batch::validate_stored(cut).unwrap();
        st.pulled(&chunk, Some(RaftIndex(crate::wal::COLD_BASE + 1)));
        assert!(!st.pulling(), "nothing is lacked any more");
        let p = st.partition(id).unwrap();
        let ranges: Vec<_> = p
            .committed_batches_from(Offset(0), usize::MAX)
            .iter()
            .map(|e| (e.base.0, e.last.0))
            .collect();
        assert_eq!(ranges, vec![(0, 3), (4, 5)]);
        assert_eq!(p.indexed_end(), Offset(8));
    }

    #[test]
    fn pull_messages_round_trip_and_garbage_is_refused() {
        let req = PullMessage::Request(PullRequest {
            from: 2,
            at: 900,
            max_bytes: 1 << 20,
            wants: vec![
                (PartitionId(3), Offset(40), Offset(90)),
                (PartitionId(9), Offset(0), Offset(1)),
            ],
        });
        assert_eq!(PullMessage::decode(&req.encode()), Ok(req.clone()));
        let reply = PullMessage::Reply(PullReply {
            from: 1,
            at: 900,
            parts: vec![Pulled {
                partition: PartitionId(3),
                status: PullStatus::Data,
                log_start: Offset(10),
                bytes: 3,
            }],
            data: Bytes::from_static(b"abc"),
        });
        assert_eq!(PullMessage::decode(&reply.encode()), Ok(reply.clone()));
        let bytes = reply.encode();
        for cut in 0..bytes.len() {
            assert!(PullMessage::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = req.encode();
        bad[0] = 7;
        assert!(PullMessage::decode(&bad).is_err());
    }
}
