//! Segment files on disk: the writer (group-committed O_DIRECT appends
//! through glommio's io_uring DMA files), the reader, and open-time recovery.
//!
//! Segment states: `Active` (the one being appended) -> `Sealed` (full,
//! read-only). Each file is `<first-raft-index>.log`, preallocated to
//! `segment_bytes`. Appends always rewrite the partial last block (O_DIRECT
//! needs aligned writes), so the writer keeps that block in memory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions, ReadResult};

use super::record::{Record, RecordKind, RecordRef, HEADER_BYTES};
use super::recovery::{Continuity, Scanner, Step};
use super::WalError;
use crate::metrics::WalMetrics;
use crate::types::RaftIndex;

const ALIGN: u64 = 4096;
const SCAN_CHUNK_BYTES: usize = 1 << 20;

fn align_down(v: u64) -> u64 {
    v & !(ALIGN - 1)
}

fn align_up(v: u64) -> u64 {
    (v + ALIGN - 1) & !(ALIGN - 1)
}

/// Where a payload byte lives: the segment (named by its first Raft index)
/// and the byte offset inside it. Ordered as the WAL is written (segment,
/// then offset), so a partition's batch positions increase with offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPos {
    pub segment: RaftIndex,
    pub offset: u64,
}

type Files = Rc<RefCell<BTreeMap<RaftIndex, Rc<DmaFile>>>>;

fn segment_path(dir: &Path, first: RaftIndex) -> PathBuf {
    dir.join(format!("{:020}.log", first.0))
}

fn io_err(op: &'static str, path: &Path, e: impl std::fmt::Display) -> WalError {
    WalError::Io {
        op,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads stored batches back. Cheap to clone; shares the open files with
/// the writer, on the same shard only (`Rc`).
#[derive(Clone)]
pub struct WalReader {
    files: Files,
}

impl WalReader {
    /// Reads `len` bytes at `pos` into a DMA buffer of this shard; the
    /// caller copies them where they go (once).
    pub async fn read(&self, pos: WalPos, len: usize) -> Result<ReadResult, WalError> {
        let file = self.files.borrow().get(&pos.segment).cloned();
        let file = file.ok_or(WalError::MissingSegment(pos.segment))?;
        let got = file
            .read_at(pos.offset, len)
            .await
            .map_err(|e| WalError::Read(pos.segment, e.to_string()))?;
        if got.len() != len {
            return Err(WalError::Read(
                pos.segment,
                format!("short read: {} of {len}", got.len()),
            ));
        }
        Ok(got)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentState {
    Active,
    Sealed,
}

/// The only writer of a shard's WAL. Owned by the shard's Raft driver task,
/// so appends are serial by construction and gather into group commits.
pub struct WalWriter {
    dir: PathBuf,
    segment_bytes: u64,
    files: Files,
    active_first: RaftIndex,
    active: Rc<DmaFile>,
    active_state: SegmentState,
    capacity: u64,
    write_pos: u64,
    /// Bytes of the partial block `[align_down(write_pos), write_pos)`.
    tail: Vec<u8>,
    /// Index of the last entry in the log (0 when there is none).
    last_entry: RaftIndex,
    metrics: Rc<WalMetrics>,
}

impl WalWriter {
    /// Appends records and makes them durable (write + fdatasync) before
    /// returning the payload position of each.
    pub async fn append(&mut self, records: &[RecordRef<'_>]) -> Result<Vec<WalPos>, WalError> {
        let total: u64 = records.iter().map(|r| r.framed_len() as u64).sum();
        if total == 0 {
            return Ok(Vec::new());
        }
        // A segment is named by its first entry, which must continue the
        // previous segment (recovery checks that). A segment holding no
        // entry yet just grows instead of rolling.
        let first = records
            .iter()
            .find(|r| r.kind != RecordKind::HardState)
            .map_or(RaftIndex(self.last_entry.0 + 1), |r| RaftIndex(r.index));
        if self.write_pos + total > self.capacity && first != self.active_first {
            self.roll(first, total).await?;
        }
        debug_assert_eq!(self.active_state, SegmentState::Active);
        let start = align_down(self.write_pos);
        let head = (self.write_pos - start) as usize;
        assert_eq!(head, self.tail.len(), "WAL tail block out of step with write position");
        let buf_len = align_up(self.write_pos + total) - start;
        let mut buf = self.active.alloc_dma_buffer(buf_len as usize);
        let out = buf.as_bytes_mut();
        out[..head].copy_from_slice(&self.tail);
        let mut at = head;
        let mut positions = Vec::with_capacity(records.len());
        for r in records {
            positions.push(WalPos {
                segment: self.active_first,
                offset: start + (at + HEADER_BYTES) as u64,
            });
            at += r.encode_into(&mut out[at..]);
        }
        out[at..].fill(0);
        let new_pos = self.write_pos + total;
        let tail_from = (align_down(new_pos) - start) as usize;
        let new_tail = out[tail_from..at].to_vec();
        let path = segment_path(&self.dir, self.active_first);
        let written = self
            .active
            .write_at(buf, start)
            .await
            .map_err(|e| io_err("write", &path, e))?;
        if written as u64 != buf_len {
            return Err(io_err("write", &path, format!("short write: {written} of {buf_len}")));
        }
        let synced = std::time::Instant::now();
        self.active
            .fdatasync()
            .await
            .map_err(|e| io_err("fdatasync", &path, e))?;
        self.metrics
            .record_append(records.len(), total, synced.elapsed().as_micros() as u64);
        self.write_pos = new_pos;
        self.tail = new_tail;
        if let Some(last) = records.iter().rev().find(|r| r.kind != RecordKind::HardState) {
            self.last_entry = RaftIndex(last.index);
        }
        Ok(positions)
    }

    async fn roll(&mut self, first: RaftIndex, needed: u64) -> Result<(), WalError> {
        self.active_state = SegmentState::Sealed;
        let capacity = self.segment_bytes.max(align_up(needed));
        let (file, _) = create_segment(&self.dir, first, capacity).await?;
        self.files.borrow_mut().insert(first, file.clone());
        self.metrics.segments.set(self.files.borrow().len() as u64);
        self.active = file;
        self.active_first = first;
        self.active_state = SegmentState::Active;
        self.capacity = capacity;
        self.write_pos = 0;
        self.tail.clear();
        Ok(())
    }

    pub fn metrics(&self) -> Rc<WalMetrics> {
        self.metrics.clone()
    }
}

async fn create_segment(dir: &Path, first: RaftIndex, capacity: u64) -> Result<(Rc<DmaFile>, u64), WalError> {
    let path = segment_path(dir, first);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(|e| io_err("create", &path, e))?;
    if let Err(e) = file.pre_allocate(capacity, false).await {
        // Leave no half-made segment behind for recovery to trip over.
        let _ = std::fs::remove_file(&path);
        return Err(io_err("fallocate", &path, e));
    }
    sync_dir(dir)?;
    Ok((Rc::new(file), capacity))
}

/// A new or removed file name is durable only once its directory is synced.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync directory", dir, e))
}

fn list_segments(dir: &Path) -> Result<Vec<RaftIndex>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(first) = stem.parse::<u64>() {
                out.push(RaftIndex(first));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Opens (creating if needed) the WAL in `dir`, replays every valid record
/// through `visit` in log order, cuts the log at the first bad record, and
/// returns the writer positioned at the cut.
pub async fn open(
    dir: &Path,
    segment_bytes: u64,
    mut visit: impl FnMut(Record, WalPos),
) -> Result<(WalWriter, WalReader), WalError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
    settle_iopoll_probe(dir).await?;
    let segments = list_segments(dir)?;
    let files: Files = Rc::new(RefCell::new(BTreeMap::new()));
    let mut continuity = Continuity::default();
    let mut active: Option<(RaftIndex, Rc<DmaFile>, u64, u64)> = None;
    for (i, &first) in segments.iter().enumerate() {
        let path = segment_path(dir, first);
        if let Some(last) = continuity.last_index() {
            if first.0 != last + 1 {
                // The previous segment was cut short: everything after the
                // cut, this segment included, is not part of the log.
                remove_segments(dir, &segments[i..])?;
                break;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&path)
            .await
            .map_err(|e| io_err("open", &path, e))?;
        let size = file.file_size().await.map_err(|e| io_err("stat", &path, e))?;
        let valid_end = scan_segment(&file, &path, size, first, &mut continuity, &mut visit).await?;
        let file = Rc::new(file);
        files.borrow_mut().insert(first, file.clone());
        active = Some((first, file, size.max(segment_bytes), valid_end));
        if valid_end < size && i + 1 < segments.len() {
            let next_ok = continuity.last_index().map(|l| l + 1) == Some(segments[i + 1].0);
            if !next_ok {
                remove_segments(dir, &segments[i + 1..])?;
                break;
            }
        }
    }
    let (active_first, file, capacity, write_pos) = match active {
        Some(a) => a,
        None => {
            let first = RaftIndex(1);
            let (file, capacity) = create_segment(dir, first, segment_bytes).await?;
            files.borrow_mut().insert(first, file.clone());
            (first, file, capacity, 0)
        }
    };
    let tail = erase_after(&file, &segment_path(dir, active_first), write_pos, capacity).await?;
    let writer = WalWriter {
        dir: dir.to_path_buf(),
        segment_bytes,
        files: files.clone(),
        active_first,
        active: file,
        active_state: SegmentState::Active,
        capacity,
        write_pos,
        tail,
        last_entry: RaftIndex(continuity.last_index().unwrap_or(active_first.0 - 1)),
        metrics: Rc::new(WalMetrics::default()),
    };
    writer.metrics.segments.set(writer.files.borrow().len() as u64);
    Ok((writer, WalReader { files }))
}

/// glommio decides once per device and thread whether O_DIRECT I/O may go
/// to its polled ring, by reading block 0 of the first DMA file opened. On
/// a preallocated but unwritten file that read never reaches the device, so
/// the probe "succeeds" on devices without poll queues (virtio, most cloud
/// disks) and every later real read fails with EOPNOTSUPP. Opening a file
/// whose first block holds written data first makes the probe honest.
async fn settle_iopoll_probe(dir: &Path) -> Result<(), WalError> {
    let path = dir.join(".iopoll-probe");
    std::fs::write(&path, vec![0xa5u8; ALIGN as usize])
        .and_then(|_| std::fs::File::open(&path)?.sync_all())
        .map_err(|e| io_err("write probe", &path, e))?;
    let probe = DmaFile::open(&path).await.map_err(|e| io_err("open probe", &path, e));
    let _ = std::fs::remove_file(&path);
    probe?.close().await.map_err(|e| io_err("close probe", &path, e))
}

async fn scan_segment(
    file: &DmaFile,
    path: &Path,
    size: u64,
    first: RaftIndex,
    continuity: &mut Continuity,
    visit: &mut impl FnMut(Record, WalPos),
) -> Result<u64, WalError> {
    let mut scanner = Scanner::new(size);
    loop {
        match scanner.step() {
            Step::Record { record, payload_pos } => {
                if !continuity.accept(&record) {
                    return Ok(payload_pos - HEADER_BYTES as u64);
                }
                visit(
                    record,
                    WalPos {
                        segment: first,
                        offset: payload_pos,
                    },
                );
            }
            Step::NeedBytes => {
                let at = scanner.next_read_pos();
                let chunk = file
                    .read_at_aligned(at, SCAN_CHUNK_BYTES)
                    .await
                    .map_err(|e| io_err("read", path, e))?;
                scanner.feed(&chunk);
            }
            Step::End { valid_end } => return Ok(valid_end),
        }
    }
}

fn remove_segments(dir: &Path, segments: &[RaftIndex]) -> Result<(), WalError> {
    for &s in segments {
        let path = segment_path(dir, s);
        tracing::warn!(segment = %path.display(), "removing WAL segment past the recovery cut");
        std::fs::remove_file(&path).map_err(|e| io_err("remove", &path, e))?;
    }
    sync_dir(dir)
}

/// Zeroes everything after `valid_end`, so bytes of a torn or stale tail can
/// never be mistaken for records later, and returns the kept partial block.
async fn erase_after(file: &DmaFile, path: &Path, valid_end: u64, capacity: u64) -> Result<Vec<u8>, WalError> {
    let start = align_down(valid_end);
    let head = (valid_end - start) as usize;
    let mut tail = Vec::new();
    if head > 0 {
        let got = file
            .read_at_aligned(start, ALIGN as usize)
            .await
            .map_err(|e| io_err("read", path, e))?;
        tail.extend_from_slice(&got[..head]);
    }
    let mut block = file.alloc_dma_buffer(ALIGN as usize);
    block.as_bytes_mut().fill(0);
    block.as_bytes_mut()[..head].copy_from_slice(&tail);
    file.write_at(block, start)
        .await
        .map_err(|e| io_err("write", path, e))?;
    let rest_from = start + ALIGN;
    if rest_from < capacity {
        zero_range(file, path, rest_from, capacity - rest_from).await?;
    }
    file.fdatasync().await.map_err(|e| io_err("fdatasync", path, e))?;
    Ok(tail)
}

async fn zero_range(file: &DmaFile, path: &Path, from: u64, len: u64) -> Result<(), WalError> {
    // SAFETY: plain fallocate(2) on a descriptor we own; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_ZERO_RANGE,
            from as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Not every file system zeroes ranges: write the zeros instead.
    let chunk = 1u64 << 20;
    let mut at = from;
    while at < from + len {
        let n = chunk.min(from + len - at);
        let mut buf = file.alloc_dma_buffer(n as usize);
        buf.as_bytes_mut().fill(0);
        file.write_at(buf, at).await.map_err(|e| io_err("write", path, e))?;
        at += n;
    }
    Ok(())
}
