//! The checkpoint file: the shard's state as of one applied Raft index,
//! written whole before any WAL segment goes (`WalWriter::reclaim`), so
//! that the segments before it are never needed again. It is the one
//! record that decides where the WAL starts: segments it says were
//! reclaimed are removed at open, whatever else a crash left.
//!
//! Written as `checkpoint.tmp`, synced, renamed over `checkpoint`, and the
//! directory synced: a crash leaves the old checkpoint or the new one,
//! never a mix. The file is `magic | len u64 | crc32c u32 | body`; what the
//! body holds is the shard's business (`shard::checkpoint`).

use std::path::Path;

use super::disk::{Disk, DiskFile, Open};
use super::WalError;

pub const FILE: &str = "checkpoint";
const TMP: &str = "checkpoint.tmp";
const MAGIC: &[u8; 8] = b"CSCKPT01";
const HEADER_BYTES: usize = 8 + 8 + 4;
const ALIGN: usize = 4096;

fn io_err(op: &'static str, path: &Path, e: impl std::fmt::Display) -> WalError {
    WalError::Io {
        op,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads the checkpoint's body, if there is one. A leftover `checkpoint.tmp`
/// (a crash before its rename) is removed.
pub async fn read<D: Disk>(disk: &D, dir: &Path) -> Result<Option<Vec<u8>>, WalError> {
    let tmp = dir.join(TMP);
    match disk.remove(&tmp) {
        Ok(()) => disk.sync_dir(dir).map_err(|e| io_err("sync directory", dir, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp, e)),
    }
    let path = dir.join(FILE);
    let names = disk.list(dir).map_err(|e| io_err("list", dir, e))?;
    if !names.iter().any(|n| n == FILE) {
        return Ok(None);
    }
    let file = disk
        .open(&path, Open::Existing)
        .await
        .map_err(|e| io_err("open", &path, e))?;
    let size = file.size().await.map_err(|e| io_err("stat", &path, e))?;
    let bytes = file
        .read_at(0, size as usize)
        .await
        .map_err(|e| io_err("read", &path, e))?;
    let _ = file.close().await;
    decode(&bytes)
        .map(|body| Some(body.to_vec()))
        .ok_or_else(|| WalError::Checkpoint(format!("{} is damaged (length or checksum)", path.display())))
}

fn decode(bytes: &[u8]) -> Option<&[u8]> {
    let (magic, rest) = bytes.split_first_chunk::<8>()?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let (crc, rest) = rest.split_first_chunk::<4>()?;
    if magic != MAGIC {
        return None;
    }
    let body = rest.get(..usize::try_from(u64::from_le_bytes(*len)).ok()?)?;
    (crc32c::crc32c(body) == u32::from_le_bytes(*crc)).then_some(body)
}

/// Replaces the checkpoint with `body`, durably.
pub async fn write<D: Disk>(disk: &D, dir: &Path, body: &[u8]) -> Result<(), WalError> {
    let tmp = dir.join(TMP);
    let file = disk
        .open(&tmp, Open::Create)
        .await
        .map_err(|e| io_err("create", &tmp, e))?;
    let len = (HEADER_BYTES + body.len()).div_ceil(ALIGN) * ALIGN;
    let mut buf = file.alloc(len);
    let out = buf.as_mut();
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[16..20].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out[HEADER_BYTES..HEADER_BYTES + body.len()].copy_from_slice(body);
    out[HEADER_BYTES + body.len()..].fill(0);
    let written = async {
        let n = file.write_at(buf, 0).await.map_err(|e| io_err("write", &tmp, e))?;
        if n != len {
            return Err(io_err("write", &tmp, format!("short write: {n} of {len}")));
        }
        file.fdatasync().await.map_err(|e| io_err("fdatasync", &tmp, e))
    }
    .await;
    let _ = file.close().await;
    if let Err(e) = written {
        let _ = disk.remove(&tmp);
        return Err(e);
    }
    let path = dir.join(FILE);
    disk.rename(&tmp, &path).map_err(|e| io_err("rename", &tmp, e))?;
    disk.sync_dir(dir).map_err(|e| io_err("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_checkpoint_is_refused() {
        let body = b"state".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        file.extend_from_slice(&body);
        file.resize(4096, 0);
        assert_eq!(decode(&file), Some(&body[..]));
        for at in [0, 9, 17, 21] {
            let mut bad = file.clone();
            bad[at] ^= 1;
            assert_eq!(decode(&bad), None, "byte {at}");
        }
        assert_eq!(decode(&file[..22]), None, "cut short");
    }
}
