//! Giving disk space back: a WAL segment goes once nothing in it is needed,
//! that is when
//! - no partition retains a batch in it (retention, DeleteRecords and
//!   deleted topics moved every log start past it),
//! - every voter holds its entries (a committed release entry says so:
//!   no peer will ask for them), and the state machine applied them,
//! - and a checkpoint of the state machine, written first, covers them
//!   (a restart starts from it instead of replaying them).
//!
//! A checkpoint also saves a replica's pulled snapshot data: without one
//! that names the cold files a pull wrote, a restart pulls it all again
//! (and the replica may not lead until it has). Bytes pulled since the
//! last checkpoint weigh as bytes freed, and the end of a pull is saved
//! at once.
//!
//! Looked at when a trim or a release was applied, and acted on only when
//! the segments freed outweigh the checkpoint written for them several
//! times over, so that a shard of a million partitions does not rewrite
//! its state for one segment. A look passes over the shard's partitions,
//! so looks are spaced in proportion to them (30 µs a partition: a look
//! spends 0.3-0.4 µs on each, so about 1% of the core), from 10 ms apart
//! up to a second; a look put off by that
//! sets the shard's one wake-up (an idle shard has none). The spacing is
//! what the WAL overshoots by at full rate: looked at once a second, a
//! shard taking 450 MiB/s held 6-13 segments of 64 MiB for 256 MiB
//! retained; every 10 ms, 5-8.
//!
//! A partition that keeps its data longer than the others (no retention,
//! a long one, `__consumer_offsets`) would pin every segment since its
//! oldest batch: once the segments it pins are more than half dead, its
//! batches there are copied, once, into a cold file (the partitions' runs
//! one after another, so files grow with data volume, not with partition
//! count), the index points there, and the segments go. Cold files whose
//! batches are mostly gone are merged the same way, and go when empty.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::checkpoint::{estimate_bytes, Checkpoint};
use super::state::State;
use crate::partition::{IndexEntry, Partition};
use crate::raft::RaftGroup;
use crate::types::{Offset, PartitionId, RaftIndex};
use crate::wal::{ColdFile, ColdWriter, Disk, WalError, WalPos, WalReader, WalStart, WrittenCold, REMOTE};

/// When to look at what may be reclaimed, and when to act on it.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Looks are at least `recheck_min_ms` apart, and `recheck_us_per_partition`
    /// per partition the shard holds, up to `recheck_max_ms`.
    pub recheck_min_ms: u64,
    pub recheck_us_per_partition: u64,
    pub recheck_max_ms: u64,
    /// Segments go only when they free this many times the bytes of the
    /// checkpoint written for them.
    pub freed_per_checkpoint_byte: u64,
    /// At most this many bytes of files go at once (or what one checkpoint
    /// must free, if more): the filesystem frees their blocks when its
    /// journal next commits, which is the WAL's next sync. On this VM's
    /// ext4, 85 segments of 32 MiB removed at once held one sync 0.7 s.
    pub remove_bytes: u64,
    /// A partition's batches move to a cold file only once it pinned free
    /// segments this long without its log start moving: a partition whose
    /// retention is catching up (the frontier of a uniform retention)
    /// frees them by itself, and copying it would write its bytes twice.
    /// One with no `retention.bytes` whose oldest batch does not expire
    /// within this long will not free them by itself: it moves at once.
    pub stall_ms: u64,
}

impl Policy {
    pub const PRODUCTION: Policy = Policy {
        recheck_min_ms: 10,
        recheck_us_per_partition: 30,
        recheck_max_ms: 1_000,
        freed_per_checkpoint_byte: 4,
        remove_bytes: 128 << 20,
        stall_ms: 10_000,
    };

    /// How far apart looks at a shard of `partitions` partitions are.
    pub fn recheck_ms(&self, partitions: usize) -> u64 {
        let spread = (partitions as u64).saturating_mul(self.recheck_us_per_partition) / 1_000;
        spread.clamp(self.recheck_min_ms, self.recheck_max_ms)
    }
}

/// A checkpoint to write, then the segments before `keep_from` and the
/// cold files in `cold` to remove.
pub struct Plan {
    pub checkpoint: Vec<u8>,
    pub keep_from: RaftIndex,
    pub segments: usize,
    pub cold: Vec<RaftIndex>,
    /// Pulled bytes the checkpoint names that no earlier one did
    /// (`State::saved_pulled` once it is written).
    pub pulled: u64,
}

/// Batches to copy into a new cold file, in this order: those that pin
/// segments otherwise free, or the live rest of cold files mostly dead.
pub struct Move {
    pub batches: Vec<(PartitionId, IndexEntry)>,
    pub bytes: u64,
}

pub enum Work {
    Move(Move),
    Reclaim(Plan),
}

/// Most bytes one move copies (read into memory, then written).
const MOVE_MAX_BYTES: u64 = 64 << 20;
/// Beyond this many cold files, the small ones are merged.
const MAX_COLD_FILES: usize = 64;

impl State {
    /// Whether a look at what may be reclaimed was put off.
    pub fn reclaim_pending(&self) -> bool {
        self.reclaim_dirty
    }

    /// How far apart looks at what may be reclaimed are, in ms.
    pub fn reclaim_spacing_ms(&self, policy: Policy) -> u64 {
        policy.recheck_ms(self.partitions.len())
    }

    /// What to do now to give disk space back, if anything. `meta_durable`:
    /// the last metadata entry the node's metadata log holds (a checkpoint
    /// must not cover a metadata command the node could still lose).
    pub fn plan_reclaim<D: Disk>(
        &mut self,
        group: &RaftGroup<D>,
        meta_durable: u64,
        now_ms: i64,
        policy: Policy,
    ) -> Option<Work> {
        if !self.reclaim_dirty || now_ms.abs_diff(self.reclaim_checked_ms) < self.reclaim_spacing_ms(policy) {
            return None;
        }
        self.reclaim_checked_ms = now_ms;
        self.reclaim_dirty = false;
        let applied = group.applied();
        let through = self.released.min(applied.0);
        let wal = group.wal();
        // Cheap first: would any segment go without pins, or is there a
        // cold file at all? If not, nothing will until the next trim or
        // release.
        let free = wal.reclaimable(through, None, usize::MAX);
        if free.is_none() && wal.cold_files().is_empty() {
            return None;
        }
        if self.last_meta > meta_durable {
            self.reclaim_dirty = true; // the node tells when its metadata log has it
            return None;
        }
        let (mut batches, mut producers) = (0, 0);
        let mut pinned: Option<RaftIndex> = None;
        let mut cold_live: BTreeMap<RaftIndex, u64> = wal.cold_files().keys().map(|&id| (id, 0)).collect();
        for p in self.partitions.values() {
            batches += p.batches();
            producers += p.producers().map_or(0, |ps| ps.len());
            if let Some(pos) = p.first_position() {
                pinned = Some(pinned.map_or(pos.segment, |s| s.min(pos.segment)));
            }
            for (file, bytes) in p.cold_bytes() {
                *cold_live.entry(file).or_default() += bytes;
            }
        }
        if crate::planted::active(crate::planted::Bug::ReclaimRetained) {
            pinned = None;
        }
        // Segments free but for a few retained batches: move those batches
        // (once more than half of the segments is dead, so that a topic of
        // short retention beside a long one is not copied while it lives).
        match free {
            Some((keep_all, n)) if pinned.is_some_and(|p| p < keep_all) => {
                let (stalled, waiting) = self.stalled_pins(keep_all, now_ms, policy.stall_ms);
                if waiting {
                    // Looked at again once they stalled, even if nothing
                    // is written by then.
                    self.reclaim_dirty = true;
                }
                let live: u64 = stalled
                    .iter()
                    .flat_map(|id| self.partitions[id].in_segments_before(keep_all))
                    .map(|e| e.len as u64)
                    .sum();
                if live > 0 && live * 2 <= n as u64 * wal.segment_bytes() {
                    return Some(Work::Move(self.gather(&stalled, |p| p.in_segments_before(keep_all))));
                }
            }
            _ => {}
        }
        // Cold files mostly dead, or too many small ones: merge their live
        // batches into one.
        let sizes = wal.cold_files();
        let mut merge: BTreeSet<RaftIndex> = cold_live
            .iter()
            .filter(|&(id, &live)| live > 0 && live * 2 < sizes.get(id).copied().unwrap_or(0))
            .map(|(&id, _)| id)
            .collect();
        if sizes.len() > MAX_COLD_FILES {
            let small = wal.segment_bytes() / 8;
            merge.extend(sizes.iter().filter(|&(_, &size)| size < small).map(|(&id, _)| id));
        }
        // Not while a snapshot's batches are pulled: the merge copies a
        // partition's cold run whole, and batches not held yet sit in it.
        if !self.pulling() && (merge.len() >= 2 || merge.iter().any(|id| cold_live[id] * 2 < sizes[id])) {
            let mut all: Vec<PartitionId> = self.partitions.keys().copied().collect();
            all.sort();
            let m = self.gather(&all, |p| p.cold().skip_while(|e| !merge.contains(&e.pos.segment)));
            if m.bytes > 0 {
                return Some(Work::Move(m));
            }
        }
        let estimate = estimate_bytes(self.partitions.len(), batches, producers);
        // What goes at once: dead cold files, then segments, within the
        // budget (at least one file); the rest at the next look.
        let budget = policy.remove_bytes.max(estimate * policy.freed_per_checkpoint_byte);
        let (mut spent, mut capped) = (0u64, false);
        let mut dead_cold: Vec<RaftIndex> = Vec::new();
        for (&id, _) in cold_live.iter().filter(|&(_, &l)| l == 0) {
            let size = sizes[&id];
            if spent > 0 && spent + size > budget {
                capped = true;
                break;
            }
            dead_cold.push(id);
            spent += size;
        }
        let most = match budget.saturating_sub(spent) / wal.segment_bytes() {
            0 if spent == 0 => 1,
            n => n as usize,
        };
        let (keep_from, segments) = wal
            .reclaimable(through, pinned, most)
            .unwrap_or_else(|| (wal.first_segment(), 0));
        capped |= wal
            .reclaimable(through, pinned, usize::MAX)
            .is_some_and(|(_, all)| all > segments);
        if capped {
            self.reclaim_dirty = true;
        }
        let freed = segments as u64 * wal.segment_bytes()
            + dead_cold.iter().map(|id| sizes[id]).sum::<u64>()
            + self.pull.unsaved;
        // A pull just completed is saved whatever it weighs: a restart
        // from an older checkpoint could not lead until it pulled again.
        let pull_ended = self.pull.unsaved > 0 && !self.pulling();
        if !pull_ended && (freed == 0 || freed < estimate * policy.freed_per_checkpoint_byte) {
            return None; // until more is free
        }
        let checkpoint = self.checkpoint(applied, group, keep_from);
        Some(Work::Reclaim(Plan {
            checkpoint: checkpoint.encode(),
            keep_from,
            segments,
            cold: dead_cold,
            pulled: self.pull.unsaved,
        }))
    }

    /// A plan's checkpoint was written: what it pulled is saved.
    pub fn saved_pulled(&mut self, pulled: u64) {
        self.pull.unsaved = self.pull.unsaved.saturating_sub(pulled);
    }

    /// The batches `pick` chooses of each partition, in partition order
    /// (the same on every run of a seed), oldest first, up to about
    /// `MOVE_MAX_BYTES` (a partition's cold batches stay a prefix of its
    /// log: what is left of a run moves next time).
    fn gather<'a, I: Iterator<Item = IndexEntry> + 'a>(
        &'a self,
        ids: &[PartitionId],
        pick: impl Fn(&'a Partition) -> I,
    ) -> Move {
        let mut m = Move {
            batches: Vec::new(),
            bytes: 0,
        };
        'partitions: for id in ids {
            let id = *id;
            for e in pick(&self.partitions[&id]) {
                if m.bytes > 0 && m.bytes + e.len as u64 > MOVE_MAX_BYTES {
                    break 'partitions;
                }
                m.batches.push((id, e));
                m.bytes += e.len as u64;
            }
        }
        m
    }

    /// The partitions (in id order) that pin segments before `keep_all`
    /// and will not clear their pins by themselves soon: their log start
    /// has not moved for `stall_ms`, or nothing will move it within that
    /// long (no `retention.bytes`, and no `retention.ms` expiry due by
    /// then); and whether others pin them for less long so far. Notes
    /// since when each pinning partition's log start has not moved.
    fn stalled_pins(&mut self, keep_all: RaftIndex, now_ms: i64, stall_ms: u64) -> (Vec<PartitionId>, bool) {
        let partitions = &self.partitions;
        self.pinning.retain(|id, _| partitions.contains_key(id));
        let mut stalled = Vec::new();
        let mut waiting = false;
        for (&id, p) in partitions {
            if p.first_position().is_none_or(|pos| pos.segment >= keep_all) {
                continue;
            }
            let start = p.log_start();
            let seen = self.pinning.entry(id).or_insert((start, now_ms));
            if seen.0 != start {
                *seen = (start, now_ms);
            }
            let trims_soon = self.retention_bytes.contains_key(&id)
                || self
                    .time_retention
                    .due(id)
                    .is_some_and(|at| at <= now_ms.saturating_add(stall_ms as i64));
            if !trims_soon || now_ms.abs_diff(seen.1) >= stall_ms {
                stalled.push(id);
            } else {
                waiting = true;
            }
        }
        stalled.sort();
        (stalled, waiting)
    }

    /// The batches of `m` now live in cold file `file`, one after another:
    /// each partition's index points there (unless the batch went since).
    /// The segments or cold files they came from may go at the next look,
    /// which comes at once.
    /// Returns how many batches it pointed there.
    pub fn moved(&mut self, m: &Move, file: RaftIndex) -> usize {
        let mut at = 0u64;
        let mut pointed = 0;
        // The batches come partition by partition: one run each.
        for run in m.batches.chunk_by(|a, b| a.0 == b.0) {
            let moves: Vec<(Offset, WalPos, WalPos)> = run
                .iter()
                .map(|&(_, e)| {
                    let to = WalPos {
                        segment: file,
                        offset: at,
                    };
                    at += e.len as u64;
                    (e.base, e.pos, to)
                })
                .collect();
            if let Some(p) = self.partitions.get_mut(&run[0].0) {
                pointed += p.moved(&moves);
            }
        }
        self.reclaim_dirty = true;
        self.reclaim_checked_ms = i64::MIN;
        pointed
    }

    /// The state as of `applied`, which is where the state machine is.
    fn checkpoint<D: Disk>(&self, applied: (u64, u64), group: &RaftGroup<D>, keep_from: RaftIndex) -> Checkpoint {
        let mut partitions: Vec<_> = self.partitions.values().map(Partition::saved).collect();
        partitions.sort_by_key(|p| p.id);
        let mut deleted: Vec<PartitionId> = self.deleted.iter().copied().collect();
        deleted.sort();
        Checkpoint {
            applied,
            hard_state: group.hard_state(),
            released: self.released,
            wal: WalStart {
                keep_from,
                before: group.wal().entry_before(keep_from),
            },
            known_below: self.known_below,
            deleted,
            partitions,
            cleaned: self.cleaner.cleaned(),
        }
    }

    /// Takes the state a checkpoint saved. Partitions the node's metadata
    /// deleted since (below `known_below`, not among those it holds) stay
    /// deleted.
    pub(crate) fn restore(&mut self, c: Checkpoint) -> Result<(), String> {
        let at = c.applied.0;
        self.released = c.released;
        self.known_below = self.known_below.max(c.known_below);
        let held: HashSet<PartitionId> = self.partitions.keys().copied().collect();
        self.deleted.extend(c.deleted);
        for saved in c.partitions {
            let id = saved.id;
            let dropped = self.deleted.contains(&id) || (id.0 < self.known_below && !held.contains(&id));
            let p = Partition::restore(saved)?;
            // Its data is what the checkpoint says: compaction's progress
            // on what was here before does not apply to it.
            self.cleaner.forget(id);
            if !dropped {
                if p.producers().is_some() {
                    self.with_producers.insert(id);
                }
                self.partitions.insert(id, p);
            }
        }
        for (id, to) in c.cleaned {
            if let Some(p) = self.partitions.get(&id) {
                self.cleaner.restore(id, to, p);
            }
        }
        // Batches of a snapshot not pulled before the checkpoint: pulled
        // again (from peers that applied as far as it).
        self.start_pull(at);
        Ok(())
    }

    /// A partition holding a batch in a WAL segment or cold file that is
    /// not there (a checkpoint that does not match its files), if any.
    pub(crate) fn batch_outside<D: Disk>(&self, reader: &WalReader<D>) -> Option<PartitionId> {
        self.partitions
            .values()
            .find(|p| {
                p.first_position().is_some_and(|pos| !reader.has_segment(pos.segment))
                    || p.cold()
                        .any(|e| e.pos.segment != REMOTE && !reader.has_segment(e.pos.segment))
            })
            .map(|p| p.id)
    }
}

/// Writes the plan's checkpoint, then removes the segments and cold files
/// it no longer names. A failure leaves everything as it was, or a
/// checkpoint that a later reclaim or start completes: nothing is lost.
pub async fn reclaim<D: Disk>(plan: Plan, group: &mut RaftGroup<D>) -> Result<usize, WalError> {
    group.wal().write_checkpoint(&plan.checkpoint).await?;
    group.wal_mut().remove_cold(&plan.cold)?;
    group.wal_mut().remove_before(plan.keep_from)
}

/// Copies the batches of `m` into the cold file `cold`, each checked
/// whole (its CRC, not only where the index says it is) so that a bit
/// flipped on the way is never made permanent. Read, checked and written
/// a piece (about 4 MiB) at a time: the WAL's writes and syncs queue
/// behind one piece of this, not behind all of it. The caller then adopts
/// the file and points the index there (`background::Done::finish`).
pub async fn copy_to_cold<D: Disk>(
    m: &Move,
    reader: WalReader<D>,
    cold: ColdFile<D>,
) -> Result<WrittenCold<D>, WalError> {
    let entries: Vec<IndexEntry> = m.batches.iter().map(|&(_, e)| e).collect();
    let mut out = cold.create().await?;
    for piece in pieces(&entries, MOVE_PIECE_BYTES) {
        if let Err(e) = copy_piece(piece, &reader, &mut out).await {
            out.abandon().await;
            return Err(e);
        }
    }
    out.finish().await
}

/// Bytes of batches a move reads and writes at once.
const MOVE_PIECE_BYTES: u64 = 4 << 20;

/// `entries` cut into runs of at most `bytes` each (a larger batch alone).
fn pieces(entries: &[IndexEntry], bytes: u64) -> Vec<&[IndexEntry]> {
    let (mut out, mut start, mut sum) = (Vec::new(), 0, 0u64);
    for (i, e) in entries.iter().enumerate() {
        if i > start && sum + e.len as u64 > bytes {
            out.push(&entries[start..i]);
            (start, sum) = (i, 0);
        }
        sum += e.len as u64;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

async fn copy_piece<D: Disk>(
    entries: &[IndexEntry],
    reader: &WalReader<D>,
    out: &mut ColdWriter<D>,
) -> Result<(), WalError> {
    let bytes = super::read_batches(reader.clone(), entries).await?;
    let mut at = 0usize;
    for e in entries {
        let b = &bytes[at..at + e.len as usize];
        if let Err(why) = crate::batch::validate_stored(b) {
            return Err(WalError::Read(
                e.pos.segment,
                format!("the batch at offset {} to move: {why}", e.base),
            ));
        }
        at += e.len as usize;
    }
    out.append(&bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RaftIndex;

    #[test]
    fn a_move_is_cut_into_pieces_that_keep_every_batch_once_in_order() {
        let entry = |base: i64, len: u32| IndexEntry {
            base: Offset(base),
            last: Offset(base),
            pos: WalPos {
                segment: RaftIndex(1),
                offset: base as u64 * 10,
            },
            len,
            max_timestamp_ms: 0,
        };
        let lens = [3, 4, 2, 9, 1, 1, 5, 12, 4];
        let entries: Vec<IndexEntry> = lens.iter().enumerate().map(|(i, &l)| entry(i as i64, l)).collect();
        let cut = pieces(&entries, 8);
        let sizes: Vec<Vec<u32>> = cut.iter().map(|p| p.iter().map(|e| e.len).collect()).collect();
        // At most 8 bytes a piece, a larger batch alone.
        assert_eq!(
            sizes,
            vec![vec![3, 4], vec![2], vec![9], vec![1, 1, 5], vec![12], vec![4]]
        );
        let rejoined: Vec<IndexEntry> = cut.concat();
        assert_eq!(rejoined, entries);
        assert!(pieces(&[], 8).is_empty());
    }
}
