//! The shard's write-ahead log: one log per shard, shared by all its
//! partitions, and the storage of its Raft group.
//!
//! Safety properties (each is tested):
//! 1. `WalWriter::append` returns only after the records are on disk
//!    (O_DIRECT write, then fdatasync).
//! 2. Recovery yields a prefix of what was appended: the scan stops at the
//!    first record whose CRC, length or index continuity is wrong, and every
//!    byte after that cut is zeroed or its segment removed before the log is
//!    written again, so a torn tail is never served or resurrected.
//! 3. Records are framed `len | crc32c | term | index | kind | payload`
//!    (`record.rs`); recovery is pure code over bytes (`recovery.rs`); the
//!    segment logic lives in `segment.rs`, over the file operations of
//!    `disk.rs` (glommio in production, the simulator's disk in tests).

pub mod checkpoint;
pub mod disk;
mod entry_index;
mod record;
mod recovery;
mod segment;
#[cfg(test)]
mod sim_tests;

pub use disk::{Disk, DiskFile, DmaDisk, Open};
pub use entry_index::EntryIndex;
pub use record::{decode_hard_state, encode_hard_state, HardState, Record, RecordKind, RecordRef};
pub use recovery::{scan_bytes, Continuity};
pub use segment::{
    is_cold, open, ColdFile, ColdWriter, WalPos, WalReader, WalStart, WalWriter, WrittenCold, COLD_BASE, REMOTE,
};

use std::path::PathBuf;

use crate::types::RaftIndex;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL {op} failed on {path}: {reason}")]
    Io {
        op: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("WAL segment {0} is not open")]
    MissingSegment(RaftIndex),
    #[error("WAL read from segment {0} failed: {1}")]
    Read(RaftIndex, String),
    #[error("WAL checkpoint: {0}")]
    Checkpoint(String),
}
