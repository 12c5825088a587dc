//! Work that reads and writes tens of megabytes, run beside the shard's
//! Raft rounds instead of inside them: a move of batches to a cold file
//! (up to 64 MiB) and a compaction job (up to 32 MiB). Run by the driver
//! itself, either held every write of the shard until its disk reads and
//! writes were done.
//!
//! One such piece of work runs at a time per shard. It is planned by the
//! driver (`State::plan_reclaim`, `State::plan_compaction`), takes a cold
//! file id from the WAL writer (`WalWriter::reserve_cold`), then reads,
//! checks and writes without the writer while the driver goes on with
//! Raft rounds; the driver applies its result at its next quiet point
//! (`Done::finish`). Anything may have happened to the partitions in
//! between (trims, truncations, a snapshot installed, a deletion): the
//! index is pointed at the new file only where it still holds the batches
//! the work read (`Partition::moved`, `Partition::replace_run`), and a
//! file nothing points to goes at the next reclaim. Crash safety is the
//! cold files' as before: a file is synced before the index points to it,
//! and a file no checkpoint names is removed at start.

use super::compact::{self, Job, Rewritten};
use super::reclaim::{self, Move};
use super::state::State;
use crate::wal::{ColdFile, Disk, WalError, WalReader, WalWriter, WrittenCold};

/// A piece of work to run beside the Raft rounds.
pub enum Background {
    Move(Move),
    Compact(Job),
}

/// What it came to, for the driver to apply.
pub enum Done<D: Disk> {
    Moved(Move, Result<WrittenCold<D>, WalError>),
    Compacted(Job, Result<Option<(Rewritten, WrittenCold<D>)>, WalError>),
}

/// What applying it did, for the driver's log. `stale`: the log changed
/// while it ran, so the index took less than the work wrote (some moved
/// batches, or a compacted chunk, not pointed to).
pub enum Finished {
    Moved { batches: usize, bytes: u64, stale: bool },
    Compacted { stale: bool },
    MoveFailed(WalError),
    CompactionFailed(WalError),
}

impl Background {
    /// Reads, checks and writes; touches the state only through `with`
    /// (a compaction job's map or rewrite), never across an await.
    pub async fn run<D: Disk>(
        self,
        reader: WalReader<D>,
        cold: ColdFile<D>,
        with: impl FnMut(&mut dyn FnMut(&mut State)),
    ) -> Done<D> {
        match self {
            Background::Move(m) => {
                let out = reclaim::copy_to_cold(&m, reader, cold).await;
                Done::Moved(m, out)
            }
            Background::Compact(job) => {
                let out = compact::run(&job, reader, cold, with).await;
                Done::Compacted(job, out)
            }
        }
    }
}

impl<D: Disk> Done<D> {
    /// Adopts the file written and points the partitions' indexes to it
    /// where they still hold what was read.
    pub fn finish(self, st: &mut State, wal: &mut WalWriter<D>) -> Finished {
        match self {
            Done::Moved(m, Ok(written)) => {
                let file = wal.adopt_cold(written);
                let pointed = st.moved(&m, file);
                Finished::Moved {
                    batches: m.batches.len(),
                    bytes: m.bytes,
                    stale: pointed < m.batches.len(),
                }
            }
            Done::Moved(_, Err(e)) => Finished::MoveFailed(e),
            Done::Compacted(job, Ok(Some((r, written)))) => {
                let file = wal.adopt_cold(written);
                let replaced = st.compacted(&job, &r, file);
                Finished::Compacted { stale: !replaced }
            }
            Done::Compacted(_, Ok(None)) => Finished::Compacted { stale: false },
            Done::Compacted(_, Err(e)) => {
                st.abandon_compaction();
                Finished::CompactionFailed(e)
            }
        }
    }
}
