//! The metadata log: this node's record of the metadata changes it applied,
//! each with the index of the metadata Raft entry (group 0) it came from,
//! appended and fsynced before it takes effect, replayed at start (before
//! any shard opens, so placement is known). Entries of group 0 at or below
//! the last recorded index were applied already; later ones are applied
//! again from the Raft log. Records are `len u32 | crc32c u32 | JSON`;
//! replay stops at the first bad record and truncates the file there (a
//! torn last append was never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MetaChange;

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LogRecord {
    Applied {
        index: u64,
        changes: Vec<MetaChange>,
    },
    /// Written before metadata went through Raft: one change, no index.
    Local(MetaChange),
}

/// What the log holds: the changes in order and the last Raft index.
pub struct Replayed {
    pub changes: Vec<MetaChange>,
    pub index: u64,
}

pub struct MetaLog {
    path: PathBuf,
    file: File,
}

#[derive(Debug, thiserror::Error)]
#[error("metadata log {path}: {reason}")]
pub struct MetaLogError {
    pub path: PathBuf,
    pub reason: String,
}

impl MetaLog {
    /// Opens the log and returns the changes it holds, in order.
    pub fn open(dir: &Path) -> Result<(Self, Replayed), MetaLogError> {
        let path = dir.join("metadata.log");
        let err = |reason: String| MetaLogError {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("create directory: {e}")))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| err(format!("open: {e}")))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| err(format!("read: {e}")))?;
        let (replayed, valid) = decode_all(&bytes);
        if valid < bytes.len() {
            tracing::warn!(path = %path.display(), kept = valid, dropped = bytes.len() - valid,
                "metadata log has a torn or corrupt tail; cutting it");
            file.set_len(valid as u64).map_err(|e| err(format!("truncate: {e}")))?;
            file.sync_all().map_err(|e| err(format!("fsync: {e}")))?;
        }
        Ok((Self { path, file }, replayed))
    }

    /// The log as it is on disk, its valid records: what a snapshot of
    /// the metadata group carries to a node that lost its own.
    pub fn image(&self) -> Result<Vec<u8>, MetaLogError> {
        let mut bytes = std::fs::read(&self.path).map_err(|e| MetaLogError {
            path: self.path.clone(),
            reason: format!("read: {e}"),
        })?;
        let (_, valid) = decode_all(&bytes);
        bytes.truncate(valid);
        Ok(bytes)
    }

    /// Appends the changes of Raft entry `index` durably (write + fsync).
    pub fn append(&mut self, index: u64, changes: &[MetaChange]) -> Result<(), MetaLogError> {
        let record = LogRecord::Applied {
            index,
            changes: changes.to_vec(),
        };
        let json = serde_json::to_vec(&record).expect("metadata change serializes");
        let mut buf = Vec::with_capacity(json.len() + 8);
        buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
        buf.extend_from_slice(&json);
        let err = |reason: String| MetaLogError {
            path: self.path.clone(),
            reason,
        };
        self.file.write_all(&buf).map_err(|e| err(format!("write: {e}")))?;
        self.file.sync_data().map_err(|e| err(format!("fsync: {e}")))
    }
}

/// The records of a metadata log and where its valid prefix ends.
pub fn decode_all(bytes: &[u8]) -> (Replayed, usize) {
    let mut out = Replayed {
        changes: Vec::new(),
        index: 0,
    };
    let end = for_each_record(bytes, |record| match record {
        LogRecord::Applied { index, changes } => {
            out.changes.extend(changes);
            out.index = index;
        }
        LogRecord::Local(change) => out.changes.push(change),
    });
    (out, end)
}

/// The changes of each metadata entry a log holds, with the entry's
/// index (what a snapshot of the metadata group carries: `MetaLog::image`).
pub fn applied_records(bytes: &[u8]) -> Vec<(u64, Vec<MetaChange>)> {
    let mut out = Vec::new();
    for_each_record(bytes, |record| {
        if let LogRecord::Applied { index, changes } = record {
            out.push((index, changes));
        }
    });
    out
}

/// Visits the records of the log's valid prefix; returns where it ends.
fn for_each_record(bytes: &[u8], mut visit: impl FnMut(LogRecord)) -> usize {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4"));
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        match serde_json::from_slice::<LogRecord>(body) {
            Ok(record) => visit(record),
            Err(_) => break,
        }
        at += 8 + len;
    }
    at
}
