//! Segment files on disk: the writer (group-committed O_DIRECT appends
//! through glommio's io_uring DMA files), the reader, and open-time recovery.
//!
//! Segment states: `Active` (the one being appended) -> `Sealed` (full,
//! read-only). Each file is `<first-raft-index>.log`, preallocated to
//! `segment_bytes`. Appends always rewrite the partial last block (O_DIRECT
//! needs aligned writes), so the writer keeps that block in memory.
//!
//! Durability. A new segment is zero-filled before it is used, and small
//! appends go through a second descriptor opened O_DSYNC: one write that
//! is durable when it completes. Writing into merely preallocated
//! (unwritten) extents would make every flush also commit the file
//! system's journal (the extents change state); measured on this
//! project's machine with fio, 4 KiB appends took 165 us (p50) and 225 us
//! (p99) as write + fdatasync on a preallocated file, and 94 us / 141 us as
//! one O_DSYNC write on a written one. Large appends (group commits under
//! load) still write and then fdatasync: as O_DSYNC writes they cut the
//! broker's 1 KiB produce throughput by a quarter. The writer zero-fills
//! the next segment in the background once the active one is half full
//! (`next.prep`, renamed at the roll), so rolls do not stall appends, and
//! only while most appends are small: zeroes double the bytes written,
//! which cost 10-25% of the 1 KiB produce ceiling here, and large appends
//! gain little from them. Other segments are only preallocated, as are
//! those found at start-up: their appends write and then fdatasync.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::disk::{Disk, DiskFile, DmaDisk, Open};
use super::entry_index::EntryIndex;
use super::record::{decode, Decoded, Record, RecordKind, RecordRef, HEADER_BYTES};
use super::recovery::{Continuity, Scanner, Step, TAIL_BLOCK};
use super::WalError;
use crate::metrics::WalMetrics;
use crate::planted::{self, Bug};
use crate::types::RaftIndex;

const ALIGN: u64 = TAIL_BLOCK.0;
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Fresh reads of a bad record before recovery believes it.
const BAD_RECORD_REREADS: u32 = 2;
/// The segment being prepared for the next roll.
const NEXT_SEGMENT: &str = "next.prep";
/// Appends up to this size are written O_DSYNC on zero-filled segments.
const DSYNC_APPEND_MAX: u64 = 256 << 10;

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

type Files<D> = Rc<RefCell<BTreeMap<RaftIndex, Rc<<D as Disk>::File>>>>;
type Entries = Rc<RefCell<EntryIndex>>;

fn segment_path(dir: &Path, first: RaftIndex) -> PathBuf {
    dir.join(format!("{:020}.log", first.0))
}

/// File ids at or above this name cold files, not segments: batches moved
/// out of WAL segments that were reclaimed while a partition still
/// retained them (`WalWriter::write_cold`). A `WalPos` names either.
pub const COLD_BASE: u64 = 1 << 63;

pub fn is_cold(file: RaftIndex) -> bool {
    file.0 >= COLD_BASE
}

/// The file id of a batch this replica does not hold yet: a snapshot
/// installed its index entry, and the batch is pulled from a peer into a
/// cold file (`crate::shard::pull`). It counts as cold (the oldest batches
/// of a partition) but names no file.
pub const REMOTE: RaftIndex = RaftIndex(u64::MAX);

fn cold_path(dir: &Path, id: RaftIndex) -> PathBuf {
    dir.join(format!("cold-{:020}.dat", id.0 - COLD_BASE))
}

fn list_cold<D: Disk>(disk: &D, dir: &Path) -> Result<Vec<RaftIndex>, WalError> {
    let mut out = Vec::new();
    for name in disk.list(dir).map_err(|e| io_err("list", dir, e))? {
        let seq = name.strip_prefix("cold-").and_then(|n| n.strip_suffix(".dat"));
        if let Some(seq) = seq.and_then(|s| s.parse::<u64>().ok()) {
            out.push(RaftIndex(COLD_BASE.saturating_add(seq)));
        }
    }
    out.sort();
    Ok(out)
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
pub struct WalReader<D: Disk = DmaDisk> {
    files: Files<D>,
    entries: Entries,
}

impl<D: Disk> Clone for WalReader<D> {
    fn clone(&self) -> Self {
        Self {
            files: self.files.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// Cold files are written in pieces of this size.
const COLD_WRITE_BYTES: usize = 4 << 20;
/// How much a read of old entries asks the disk for at once.
const ENTRY_READ_BYTES: usize = 1 << 20;
/// No entry is larger (a request frame is at most 1 GiB).
const MAX_RECORD_BYTES: usize = 1 << 30;

impl<D: Disk> WalReader<D> {
    /// Reads `len` bytes at `pos` into a DMA buffer of this shard; the
    /// caller copies them where they go (once).
    pub async fn read(&self, pos: WalPos, len: usize) -> Result<<D::File as DiskFile>::ReadBuf, WalError> {
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

    /// Where the entries sit (shared with the writer, which keeps it).
    pub fn entry_index(&self) -> Rc<RefCell<EntryIndex>> {
        self.entries.clone()
    }

    pub fn has_segment(&self, segment: RaftIndex) -> bool {
        self.files.borrow().contains_key(&segment)
    }

    /// Reads the entry records `[low, high)` back, in index order, stopping
    /// after about `max_bytes` of payload (at least one record).
    pub async fn read_entries(&self, low: u64, high: u64, max_bytes: usize) -> Result<Vec<Record>, WalError> {
        let spans = self.entries.borrow().spans(low, high);
        let mut out: Vec<Record> = Vec::new();
        let mut bytes = 0usize;
        for span in spans {
            let stop = span.end.min(high);
            let file = self.files.borrow().get(&span.pos.segment).cloned();
            let file = file.ok_or(WalError::MissingSegment(span.pos.segment))?;
            // Records never span past the file's end; a read there comes
            // back short. (No size lookup: glommio's goes by the path, and
            // a prepared segment was renamed after it was opened.)
            let mut at = span.pos.offset;
            let mut buf: Vec<u8> = Vec::new();
            let mut next = span.start;
            'span: while next < stop {
                match decode(&buf, u64::MAX) {
                    Decoded::Record { record, framed } => {
                        buf.drain(..framed);
                        if record.kind == RecordKind::HardState {
                            continue;
                        }
                        if record.index != next {
                            return Err(WalError::Read(
                                span.pos.segment,
                                format!("entry {} where {next} belongs", record.index),
                            ));
                        }
                        next += 1;
                        if record.index >= low {
                            bytes += record.payload.len();
                            out.push(record);
                            if bytes >= max_bytes {
                                break 'span;
                            }
                        }
                    }
                    Decoded::NeedMore { framed } => {
                        if framed > MAX_RECORD_BYTES {
                            return Err(WalError::Read(
                                span.pos.segment,
                                format!("a {framed}-byte record where entry {next} belongs"),
                            ));
                        }
                        let len = ENTRY_READ_BYTES.max(framed - buf.len());
                        let chunk = file
                            .read_at(at, len)
                            .await
                            .map_err(|e| WalError::Read(span.pos.segment, e.to_string()))?;
                        if chunk.is_empty() {
                            return Err(WalError::Read(
                                span.pos.segment,
                                format!("the segment ends before entry {next}"),
                            ));
                        }
                        buf.extend_from_slice(&chunk);
                        at += chunk.len() as u64;
                    }
                    Decoded::Invalid => {
                        return Err(WalError::Read(
                            span.pos.segment,
                            format!("no valid record where entry {next} belongs"),
                        ))
                    }
                }
            }
            if bytes >= max_bytes || next < stop {
                break;
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentState {
    Active,
    Sealed,
}

/// The only writer of a shard's WAL. Owned by the shard's Raft driver task,
/// so appends are serial by construction and gather into group commits.
pub struct WalWriter<D: Disk = DmaDisk> {
    disk: D,
    dir: PathBuf,
    segment_bytes: u64,
    files: Files<D>,
    active_first: RaftIndex,
    active: Rc<D::File>,
    active_state: SegmentState,
    /// The active segment opened O_DSYNC, if it was zero-filled: a small
    /// append written through it is durable when the write completes.
    active_dsync: Option<Rc<D::File>>,
    /// The next segment, being zero-filled in the background, and its size.
    next: Option<(u64, Preparing<D::File>)>,
    /// Appends to the active segment, and those of them small enough to
    /// be written O_DSYNC: whether the next segment is worth zero-filling.
    appends_in_segment: u64,
    small_appends_in_segment: u64,
    capacity: u64,
    write_pos: u64,
    /// Bytes of the partial block `[align_down(write_pos), write_pos)`.
    tail: Vec<u8>,
    /// Index of the last entry in the log (0 when there is none).
    last_entry: RaftIndex,
    /// Whether the active segment holds an entry (it may roll only then).
    active_has_entries: bool,
    entries: Entries,
    metrics: Rc<WalMetrics>,
    /// The size of each cold file.
    cold_sizes: BTreeMap<RaftIndex, u64>,
    /// No cold file reserved from here on has an id below this.
    next_cold: RaftIndex,
}

/// A cold file reserved (`WalWriter::reserve_cold`), to be written
/// without the writer.
pub struct ColdFile<D: Disk = DmaDisk> {
    disk: D,
    dir: PathBuf,
    id: RaftIndex,
}

/// A cold file written and synced, for `WalWriter::adopt_cold`.
pub struct WrittenCold<D: Disk = DmaDisk> {
    id: RaftIndex,
    file: D::File,
    len: u64,
}

impl<D: Disk> ColdFile<D> {
    /// Writes `data` to the file, durably (the file and its name); a
    /// failure removes what was made.
    pub async fn write(self, data: &[u8]) -> Result<WrittenCold<D>, WalError> {
        let mut w = self.create().await?;
        match w.append(data).await {
            Ok(()) => w.finish().await,
            Err(e) => {
                w.abandon().await;
                Err(e)
            }
        }
    }

    /// Creates the file, to be written piece by piece (`ColdWriter`).
    pub async fn create(self) -> Result<ColdWriter<D>, WalError> {
        let path = cold_path(&self.dir, self.id);
        let file = self
            .disk
            .open(&path, Open::Create)
            .await
            .map_err(|e| io_err("create", &path, e))?;
        Ok(ColdWriter {
            cold: self,
            path,
            file: Some(file),
            pending: Vec::new(),
            at: 0,
        })
    }
}

/// A cold file being written: what is appended goes to disk in pieces of
/// `COLD_WRITE_BYTES`, one at a time, so that the WAL's own writes and
/// syncs never queue behind more than one piece. Dropped unfinished (a
/// failure), it removes the file.
pub struct ColdWriter<D: Disk = DmaDisk> {
    cold: ColdFile<D>,
    path: PathBuf,
    file: Option<D::File>,
    /// Bytes not written yet (less than one piece between calls).
    pending: Vec<u8>,
    /// Where the next piece goes.
    at: u64,
}

impl<D: Disk> ColdWriter<D> {
    pub async fn append(&mut self, mut data: &[u8]) -> Result<(), WalError> {
        // Whole pieces go from `data` to the disk's buffer directly; only
        // what does not fill a piece waits in `pending`.
        if !self.pending.is_empty() {
            let take = (COLD_WRITE_BYTES - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < COLD_WRITE_BYTES {
                return Ok(());
            }
            let mut piece = std::mem::take(&mut self.pending);
            self.write_piece(&piece).await?;
            piece.clear();
            self.pending = piece;
        }
        while data.len() >= COLD_WRITE_BYTES {
            let (piece, rest) = data.split_at(COLD_WRITE_BYTES);
            self.write_piece(piece).await?;
            data = rest;
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    async fn write_piece(&mut self, piece: &[u8]) -> Result<(), WalError> {
        let Some(file) = self.file.as_ref() else {
            return Err(io_err("write", &self.path, "the file was closed"));
        };
        let len = align_up(piece.len() as u64) as usize;
        let mut buf = file.alloc(len);
        let out = buf.as_mut();
        out[..piece.len()].copy_from_slice(piece);
        out[piece.len()..].fill(0);
        let n = file
            .write_at(buf, self.at)
            .await
            .map_err(|e| io_err("write", &self.path, e))?;
        if n != len {
            return Err(io_err("write", &self.path, format!("short write: {n} of {len}")));
        }
        self.at += piece.len() as u64;
        Ok(())
    }

    /// Writes the rest and makes the file durable (its data and its name);
    /// a failure removes the file.
    pub async fn finish(mut self) -> Result<WrittenCold<D>, WalError> {
        if let Err(e) = self.complete().await {
            self.abandon().await;
            return Err(e);
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| io_err("finish", &self.path, "the file was closed"))?;
        Ok(WrittenCold {
            id: self.cold.id,
            file,
            len: self.at,
        })
    }

    async fn complete(&mut self) -> Result<(), WalError> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.write_piece(&rest).await?;
        }
        let Some(file) = self.file.as_ref() else {
            return Err(io_err("fdatasync", &self.path, "the file was closed"));
        };
        file.fdatasync().await.map_err(|e| io_err("fdatasync", &self.path, e))?;
        sync_dir(&self.cold.disk, &self.cold.dir)
    }

    /// Gives the file up (a failure, or the data it was to hold was bad):
    /// closes and removes it.
    pub async fn abandon(mut self) {
        if let Some(file) = self.file.take() {
            let _ = file.close().await;
            let _ = self.cold.disk.remove(&self.path);
        }
    }
}

impl<D: Disk> Drop for ColdWriter<D> {
    fn drop(&mut self) {
        // Neither finished nor abandoned (its task went): nothing points
        // to the file, and nothing will.
        if self.file.take().is_some() {
            let _ = self.cold.disk.remove(&self.path);
        }
    }
}

impl<D: Disk> WalWriter<D> {
    /// Appends records and makes them durable (write + fdatasync) before
    /// returning the payload position of each.
    pub async fn append(&mut self, records: &[RecordRef<'_>]) -> Result<Vec<WalPos>, WalError> {
        let total: u64 = records.iter().map(|r| r.framed_len() as u64).sum();
        if total == 0 {
            return Ok(Vec::new());
        }
        // Segments are named by their first entry's index, which orders
        // them. An append that rewrites an uncommitted tail (a Raft
        // overwrite) may start below the active segment's name, so the
        // name is at least one past it; recovery checks continuity by the
        // entries' own indexes, not by names. A segment holding no entry
        // yet just grows instead of rolling.
        if self.write_pos + total > self.capacity && self.active_has_entries {
            let first = records
                .iter()
                .find(|r| r.kind != RecordKind::HardState)
                .map_or(self.last_entry.0 + 1, |r| r.index);
            self.roll(RaftIndex(first.max(self.active_first.0 + 1)), total).await?;
        }
        debug_assert_eq!(self.active_state, SegmentState::Active);
        let start = align_down(self.write_pos);
        let head = (self.write_pos - start) as usize;
        assert_eq!(head, self.tail.len(), "WAL tail block out of step with write position");
        let buf_len = align_up(self.write_pos + total) - start;
        let mut buf = self.active.alloc(buf_len as usize);
        let out = buf.as_mut();
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
        let written_at = std::time::Instant::now();
        let skip_sync = planted::active(Bug::SkipFdatasync);
        let dsync = self
            .active_dsync
            .clone()
            .filter(|_| buf_len <= DSYNC_APPEND_MAX && !skip_sync);
        let written = dsync
            .as_ref()
            .unwrap_or(&self.active)
            .write_at(buf, start)
            .await
            .map_err(|e| io_err("write", &path, e))?;
        if written as u64 != buf_len {
            return Err(io_err("write", &path, format!("short write: {written} of {buf_len}")));
        }
        let durable_wait = if dsync.is_some() || skip_sync {
            written_at.elapsed()
        } else {
            let synced = std::time::Instant::now();
            self.active
                .fdatasync()
                .await
                .map_err(|e| io_err("fdatasync", &path, e))?;
            synced.elapsed()
        };
        self.metrics
            .record_append(records.len(), total, durable_wait.as_micros() as u64);
        self.write_pos = new_pos;
        self.appends_in_segment += 1;
        if buf_len <= DSYNC_APPEND_MAX {
            self.small_appends_in_segment += 1;
        }
        if self.next.is_none()
            && self.write_pos * 2 >= self.capacity
            && self.small_appends_in_segment * 2 > self.appends_in_segment
        {
            self.prepare_next();
        }
        self.tail = new_tail;
        if let Some(last) = records.iter().rev().find(|r| r.kind != RecordKind::HardState) {
            self.last_entry = RaftIndex(last.index);
            self.active_has_entries = true;
        }
        let mut entries = self.entries.borrow_mut();
        for (r, pos) in records.iter().zip(&positions) {
            if r.kind != RecordKind::HardState {
                let frame = WalPos {
                    segment: pos.segment,
                    offset: pos.offset - HEADER_BYTES as u64,
                };
                entries.record(r.index, r.term, frame, r.framed_len() as u64);
            }
        }
        drop(entries);
        Ok(positions)
    }

    /// Starts zero-filling the segment the next roll will use.
    fn prepare_next(&mut self) {
        let path = self.dir.join(NEXT_SEGMENT);
        let capacity = self.segment_bytes;
        let disk = self.disk.clone();
        let task = glommio::spawn_local(async move { prepare_segment(&disk, &path, capacity).await });
        self.next = Some((capacity, task));
    }

    async fn roll(&mut self, first: RaftIndex, needed: u64) -> Result<(), WalError> {
        self.active_state = SegmentState::Sealed;
        let capacity = self.segment_bytes.max(align_up(needed));
        let prepared = match self.next.take() {
            // Usually long done: it started when this segment was half full.
            Some((size, task)) => match task.await {
                Ok(file) if size >= capacity => Some((file, size)),
                Ok(_) => {
                    let _ = self.disk.remove(&self.dir.join(NEXT_SEGMENT)); // too small for this entry
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "preparing the next WAL segment failed; creating it at the roll");
                    None
                }
            },
            None => None,
        };
        let (file, capacity, dsync) = match prepared {
            Some((prepared, size)) => {
                let path = segment_path(&self.dir, first);
                let from = self.dir.join(NEXT_SEGMENT);
                self.disk.rename(&from, &path).map_err(|e| io_err("rename", &from, e))?;
                sync_dir(&self.disk, &self.dir)?;
                (Rc::new(prepared.plain), size, Some(Rc::new(prepared.dsync)))
            }
            None => {
                let (file, capacity) = create_segment(&self.disk, &self.dir, first, capacity).await?;
                (file, capacity, None)
            }
        };
        self.files.borrow_mut().insert(first, file.clone());
        self.metrics.segments.set(segment_count(&self.files.borrow()));
        self.active = file;
        self.active_first = first;
        self.active_state = SegmentState::Active;
        self.active_dsync = dsync;
        self.appends_in_segment = 0;
        self.small_appends_in_segment = 0;
        self.active_has_entries = false;
        self.capacity = capacity;
        self.write_pos = 0;
        self.tail.clear();
        Ok(())
    }

    pub fn metrics(&self) -> Rc<WalMetrics> {
        self.metrics.clone()
    }

    /// The first segment to keep if every sealed segment before it goes:
    /// those whose entries all lie at or below `through` and that hold no
    /// retained batch (all before `pinned`, the segment of the oldest one).
    /// `None` when no segment can go. The active segment always stays, and
    /// at most `most` go.
    pub fn reclaimable(&self, through: u64, pinned: Option<RaftIndex>, most: usize) -> Option<(RaftIndex, usize)> {
        let names: Vec<RaftIndex> = self
            .files
            .borrow()
            .range(..RaftIndex(COLD_BASE))
            .map(|(&k, _)| k)
            .collect();
        let entries = self.entries.borrow();
        let starts: BTreeMap<RaftIndex, u64> = entries.segment_starts().collect();
        let mut keep_from = None;
        for (i, pair) in names.windows(2).enumerate() {
            let (this, next) = (pair[0], pair[1]);
            if i >= most || this == self.active_first || pinned.is_some_and(|p| this >= p) {
                break;
            }
            // A segment's live entries end where the next one's begin.
            let end = starts.get(&next).map_or(entries.last_index(), |&first| first - 1);
            if end > through {
                break;
            }
            keep_from = Some((next, i + 1));
        }
        keep_from
    }

    /// Removes the segments before `keep_from`, which a checkpoint written
    /// before this call no longer needs; returns how many went.
    pub fn remove_before(&mut self, keep_from: RaftIndex) -> Result<usize, WalError> {
        assert!(keep_from <= self.active_first, "reclaiming the active WAL segment");
        let gone: Vec<RaftIndex> = self.files.borrow().range(..keep_from).map(|(&k, _)| k).collect();
        if gone.is_empty() {
            return Ok(0);
        }
        // Oldest first, so a crash part way leaves a suffix of the log
        // (and the checkpoint removes the rest at the next open).
        for &s in &gone {
            let path = segment_path(&self.dir, s);
            if let Err(e) = self.disk.remove(&path) {
                self.entries.borrow_mut().drop_segments_before(s);
                return Err(io_err("remove", &path, e));
            }
            self.files.borrow_mut().remove(&s);
        }
        sync_dir(&self.disk, &self.dir)?;
        self.entries.borrow_mut().drop_segments_before(keep_from);
        self.metrics.segments.set(segment_count(&self.files.borrow()));
        self.metrics
            .segments_reclaimed
            .set(self.metrics.segments_reclaimed.get() + gone.len() as u64);
        Ok(gone.len())
    }

    /// Writes `data` (batches gathered by the caller) to a new cold file,
    /// durably, and returns its id: position `p` in `data` is
    /// `WalPos { segment: id, offset: p }`.
    pub async fn write_cold(&mut self, data: &[u8]) -> Result<RaftIndex, WalError> {
        let written = self.reserve_cold().write(data).await?;
        Ok(self.adopt_cold(written))
    }

    /// A cold file to write away from the writer (a batch move or a
    /// compaction job runs beside the Raft rounds): its id is taken here,
    /// never given again while the shard runs, so no other file and no
    /// file removed meanwhile shares its name or its positions.
    pub fn reserve_cold(&mut self) -> ColdFile<D> {
        let last = self.files.borrow().keys().next_back().copied().filter(|&k| is_cold(k));
        let id = RaftIndex(last.map_or(COLD_BASE, |k| k.0 + 1).max(self.next_cold.0));
        self.next_cold = RaftIndex(id.0 + 1);
        ColdFile {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            id,
        }
    }

    /// Lets readers see a cold file written (`ColdFile::write`) and counts
    /// it; returns its id. Always called for a file written, whether or
    /// not an index points to it in the end: one nothing refers to goes at
    /// the next reclaim (and, after a crash, at start).
    pub fn adopt_cold(&mut self, w: WrittenCold<D>) -> RaftIndex {
        self.files.borrow_mut().insert(w.id, Rc::new(w.file));
        self.cold_sizes.insert(w.id, w.len);
        self.metrics.cold_files.set(self.cold_sizes.len() as u64);
        self.metrics.bytes_moved.set(self.metrics.bytes_moved.get() + w.len);
        w.id
    }

    /// Removes cold files nothing refers to any more (a checkpoint written
    /// before this call no longer names them).
    pub fn remove_cold(&mut self, ids: &[RaftIndex]) -> Result<(), WalError> {
        for &id in ids.iter().filter(|&&id| is_cold(id)) {
            let path = cold_path(&self.dir, id);
            self.disk.remove(&path).map_err(|e| io_err("remove", &path, e))?;
            self.files.borrow_mut().remove(&id);
            self.cold_sizes.remove(&id);
        }
        self.metrics.cold_files.set(self.cold_sizes.len() as u64);
        sync_dir(&self.disk, &self.dir)
    }

    /// The cold files there are, with their sizes.
    pub fn cold_files(&self) -> &BTreeMap<RaftIndex, u64> {
        &self.cold_sizes
    }

    /// The segment appends go to.
    pub fn active_segment(&self) -> RaftIndex {
        self.active_first
    }

    /// The oldest segment.
    pub fn first_segment(&self) -> RaftIndex {
        self.files
            .borrow()
            .range(..RaftIndex(COLD_BASE))
            .next()
            .map_or(self.active_first, |(&k, _)| k)
    }

    /// Replaces the checkpoint (see `wal::checkpoint`).
    pub async fn write_checkpoint(&self, body: &[u8]) -> Result<(), WalError> {
        super::checkpoint::write(&self.disk, &self.dir, body).await?;
        self.metrics.checkpoints.set(self.metrics.checkpoints.get() + 1);
        Ok(())
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    pub fn entry_index(&self) -> Entries {
        self.entries.clone()
    }

    /// Index and term of the last entry before segment `keep_from`'s
    /// first (what a checkpoint that reclaims up to it records).
    pub fn entry_before(&self, keep_from: RaftIndex) -> (u64, u64) {
        let entries = self.entries.borrow();
        let first = entries
            .segment_starts()
            .find(|&(s, _)| s >= keep_from)
            .map_or(entries.last_index() + 1, |(_, first)| first);
        let index = first - 1;
        (index, entries.term(index).unwrap_or(0))
    }

    /// Starts the log over after a snapshot of the state as of entry
    /// `(index, term)`, first step: an empty segment, named past every
    /// segment there is, that the log continues in. Returns its name: the
    /// checkpoint written next starts the WAL there (`restart_done`), so a
    /// crash between the steps leaves either the old log whole or the new
    /// one.
    pub async fn restart_at(&mut self, index: u64) -> Result<RaftIndex, WalError> {
        let name = RaftIndex((index + 1).max(self.active_first.0 + 1));
        self.roll(name, 0).await?;
        Ok(name)
    }

    /// Second step, once the checkpoint names `keep_from` (from
    /// `restart_at`): every older segment and the cold files `cold` go, and
    /// the log holds nothing up to `(index, term)`.
    pub fn restart_done(
        &mut self,
        keep_from: RaftIndex,
        (index, term): (u64, u64),
        cold: &[RaftIndex],
    ) -> Result<(), WalError> {
        // The checkpoint decided already: files a failure leaves behind
        // are gone at the next open (segments) or reclaim (cold files).
        let mut fresh = EntryIndex::default();
        fresh.set_before(index, term);
        *self.entries.borrow_mut() = fresh;
        self.last_entry = RaftIndex(index);
        self.remove_before(keep_from)?;
        self.remove_cold(cold)
    }

    /// Whether small appends to the active segment are written O_DSYNC.
    #[cfg(test)]
    pub(crate) fn writes_dsync(&self) -> bool {
        self.active_dsync.is_some()
    }
}

async fn create_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    first: RaftIndex,
    capacity: u64,
) -> Result<(Rc<D::File>, u64), WalError> {
    let path = segment_path(dir, first);
    let file = disk
        .open(&path, Open::Create)
        .await
        .map_err(|e| io_err("create", &path, e))?;
    if let Err(e) = file.preallocate(capacity).await {
        // Leave no half-made segment behind for recovery to trip over.
        let _ = disk.remove(&path);
        return Err(io_err("fallocate", &path, e));
    }
    sync_dir(disk, dir)?;
    Ok((Rc::new(file), capacity))
}

/// The background task that zero-fills the next segment.
type Preparing<F> = glommio::Task<Result<Prepared<F>, WalError>>;

/// A zero-filled segment, open twice: plain, and O_DSYNC for small appends.
struct Prepared<F> {
    plain: F,
    dsync: F,
}

/// Makes a segment whose every block is written (zeroes), so appends to it
/// need no journal commit (see the module comment). Leaves nothing behind
/// when it fails (a full disk).
async fn prepare_segment<D: Disk>(disk: &D, path: &Path, capacity: u64) -> Result<Prepared<D::File>, WalError> {
    let plain = disk
        .open(path, Open::Create)
        .await
        .map_err(|e| io_err("create", path, e))?;
    let made = async {
        plain
            .fill_zeroes(capacity)
            .await
            .map_err(|e| io_err("write zeroes", path, e))?;
        plain.fdatasync().await.map_err(|e| io_err("fdatasync", path, e))?;
        disk.open(path, Open::Dsync).await.map_err(|e| io_err("open", path, e))
    };
    match made.await {
        Ok(dsync) => Ok(Prepared { plain, dsync }),
        Err(e) => {
            let _ = disk.remove(path);
            Err(e)
        }
    }
}

fn segment_count<F>(files: &BTreeMap<RaftIndex, F>) -> u64 {
    files.range(..RaftIndex(COLD_BASE)).count() as u64
}

/// A new or removed file name is durable only once its directory is synced.
fn sync_dir<D: Disk>(disk: &D, dir: &Path) -> Result<(), WalError> {
    disk.sync_dir(dir).map_err(|e| io_err("sync directory", dir, e))
}

fn list_segments<D: Disk>(disk: &D, dir: &Path) -> Result<Vec<RaftIndex>, WalError> {
    let mut out = Vec::new();
    for name in disk.list(dir).map_err(|e| io_err("list", dir, e))? {
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
/// Where a WAL whose older segments were reclaimed starts, as its
/// checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalStart {
    /// Segments named before it were reclaimed (any left by a crash are
    /// removed at open).
    pub keep_from: RaftIndex,
    /// Index and term of the last entry reclaimed.
    pub before: (u64, u64),
}

pub async fn open<D: Disk>(
    disk: D,
    dir: &Path,
    segment_bytes: u64,
    start: Option<WalStart>,
    mut visit: impl FnMut(Record, WalPos),
) -> Result<(WalWriter<D>, WalReader<D>), WalError> {
    disk.create_dir_all(dir)
        .map_err(|e| io_err("create directory", dir, e))?;
    // A segment being prepared when the process stopped: never part of the log.
    match disk.remove(&dir.join(NEXT_SEGMENT)) {
        Ok(()) => sync_dir(&disk, dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &dir.join(NEXT_SEGMENT), e)),
    }
    disk.prepare(dir).await.map_err(|e| io_err("prepare", dir, e))?;
    let mut segments = list_segments(&disk, dir)?;
    if let Some(start) = start {
        // The checkpoint decides: segments before its start were reclaimed,
        // even if a crash left some of their names behind.
        let gone = segments.partition_point(|&s| s < start.keep_from);
        if gone > 0 {
            for &s in &segments[..gone] {
                let path = segment_path(dir, s);
                disk.remove(&path).map_err(|e| io_err("remove", &path, e))?;
            }
            sync_dir(&disk, dir)?;
            segments.drain(..gone);
        }
    }
    let files: Files<D> = Rc::new(RefCell::new(BTreeMap::new()));
    let entries: Entries = Rc::new(RefCell::new(EntryIndex::default()));
    let mut visit = |rec: Record, pos: WalPos| {
        if rec.kind != RecordKind::HardState {
            let frame = WalPos {
                segment: pos.segment,
                offset: pos.offset - HEADER_BYTES as u64,
            };
            let framed = (HEADER_BYTES + rec.payload.len()) as u64;
            entries.borrow_mut().record(rec.index, rec.term, frame, framed);
        }
        visit(rec, pos)
    };
    let mut cold_sizes = BTreeMap::new();
    for id in list_cold(&disk, dir)? {
        let path = cold_path(dir, id);
        let file = disk
            .open(&path, Open::Existing)
            .await
            .map_err(|e| io_err("open", &path, e))?;
        cold_sizes.insert(id, file.size().await.map_err(|e| io_err("stat", &path, e))?);
        files.borrow_mut().insert(id, Rc::new(file));
    }
    let mut continuity = Continuity::default();
    let mut active: Option<(RaftIndex, Rc<D::File>, u64, Scan)> = None;
    for (i, &first) in segments.iter().enumerate() {
        let path = segment_path(dir, first);
        let file = disk
            .open(&path, Open::Existing)
            .await
            .map_err(|e| io_err("open", &path, e))?;
        let size = file.size().await.map_err(|e| io_err("stat", &path, e))?;
        let scan = scan_segment(&file, &path, size, first, &mut continuity, &mut visit).await?;
        if scan.broke_continuity && scan.valid_end == 0 && i > 0 {
            // The previous segment was cut short: this segment does not
            // continue the log, and nothing after it does either.
            let _ = file.close().await;
            remove_segments(&disk, dir, &segments[i..])?;
            break;
        }
        let file = Rc::new(file);
        files.borrow_mut().insert(first, file.clone());
        // Only the last segment can end short of what was written into it:
        // an earlier one that ends at bytes that are not a record, or holds
        // no entry (rolls happen only once a segment has one), was damaged,
        // and the log ends in it. Continuity alone cannot tell when nothing
        // before the damage was accepted: the next segment would be taken
        // as the start of the log.
        let last = i + 1 == segments.len();
        let ends_log = scan.broke_continuity || (!last && (scan.damaged || scan.entries == 0));
        active = Some((first, file, size.max(segment_bytes), scan));
        if ends_log {
            remove_segments(&disk, dir, &segments[i + 1..])?;
            break;
        }
    }
    let mut active_has_entries = false;
    let mut tail = Vec::new();
    let (active_first, file, capacity, write_pos, dsync) = match active {
        Some((first, file, capacity, scan)) => {
            active_has_entries = scan.entries > 0;
            tail = scan.tail;
            (first, file, capacity, scan.valid_end, None)
        }
        None => {
            // A checkpoint's start names the first segment to keep: a new
            // one named before it would be removed at the next open.
            let first = start.map_or(RaftIndex(1), |s| s.keep_from);
            let path = segment_path(dir, first);
            let prepared = prepare_segment(&disk, &path, segment_bytes).await?;
            sync_dir(&disk, dir)?;
            let file = Rc::new(prepared.plain);
            files.borrow_mut().insert(first, file.clone());
            (first, file, segment_bytes, 0, Some(Rc::new(prepared.dsync)))
        }
    };
    if dsync.is_none() {
        erase_after(&*file, &segment_path(dir, active_first), write_pos, &tail, capacity).await?;
    }
    if let Some(start) = start {
        entries.borrow_mut().set_before(start.before.0, start.before.1);
    }
    // Without entries, the log ends where the checkpoint's start says (a
    // segment after it may be named past that: a snapshot's restart).
    let last_entry = continuity
        .last_index()
        .unwrap_or_else(|| start.map_or(active_first.0 - 1, |s| s.before.0));
    let writer = WalWriter {
        disk,
        dir: dir.to_path_buf(),
        segment_bytes,
        files: files.clone(),
        active_first,
        active: file,
        active_state: SegmentState::Active,
        active_dsync: dsync,
        next: None,
        appends_in_segment: 0,
        small_appends_in_segment: 0,
        capacity,
        write_pos,
        tail,
        last_entry: RaftIndex(last_entry),
        active_has_entries,
        entries: entries.clone(),
        metrics: Rc::new(WalMetrics::default()),
        cold_sizes,
        next_cold: RaftIndex(COLD_BASE),
    };
    writer.metrics.segments.set(segment_count(&writer.files.borrow()));
    writer.metrics.cold_files.set(writer.cold_sizes.len() as u64);
    Ok((writer, WalReader { files, entries }))
}

/// What scanning one segment found.
struct Scan {
    /// End of the last valid record.
    valid_end: u64,
    /// The bytes `[align_down(valid_end), valid_end)` as the scan checked
    /// them: what an append rewrites at the head of its first block. Never
    /// read again: a second read that came back different (a bit flipped
    /// on the way) would be written back over records the scan accepted.
    tail: Vec<u8>,
    /// Whether the scan stopped at an entry that does not continue the log
    /// (rather than at the end of the data).
    broke_continuity: bool,
    /// Whether the scan stopped at bytes that are neither a record nor the
    /// zeroes a clean end leaves.
    damaged: bool,
    /// Entry records accepted.
    entries: u64,
}

async fn scan_segment<F: DiskFile>(
    file: &F,
    path: &Path,
    size: u64,
    first: RaftIndex,
    continuity: &mut Continuity,
    visit: &mut impl FnMut(Record, WalPos),
) -> Result<Scan, WalError> {
    let mut scanner = Scanner::new(size);
    let mut entries = 0;
    let mut rereads = 0;
    loop {
        match scanner.step() {
            Step::Record { record, payload_pos } => {
                if !continuity.accept(&record) {
                    let valid_end = payload_pos - HEADER_BYTES as u64;
                    return Ok(Scan {
                        valid_end,
                        tail: held_tail(&scanner, path, valid_end)?,
                        broke_continuity: true,
                        damaged: false,
                        entries,
                    });
                }
                if record.kind != RecordKind::HardState {
                    entries += 1;
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
                    .read_at(at, SCAN_CHUNK_BYTES)
                    .await
                    .map_err(|e| io_err("read", path, e))?;
                scanner.feed(&chunk);
            }
            Step::End { valid_end } if !scanner.at_zeroes() && rereads < BAD_RECORD_REREADS => {
                // Not a record, and not the zeroes a clean end leaves: a
                // torn write, or a read that came back wrong. Read again
                // before cutting the log here (everything after the cut is
                // erased).
                rereads += 1;
                let head = held_tail(&scanner, path, valid_end)?;
                scanner = Scanner::resume(valid_end, size, &head);
            }
            Step::End { valid_end } => {
                let damaged = !scanner.at_zeroes();
                if damaged {
                    tracing::warn!(segment = %path.display(), valid_end, "WAL record not valid; the log is cut there");
                }
                return Ok(Scan {
                    valid_end,
                    tail: held_tail(&scanner, path, valid_end)?,
                    broke_continuity: false,
                    damaged,
                    entries,
                });
            }
        }
    }
}

fn held_tail(scanner: &Scanner, path: &Path, valid_end: u64) -> Result<Vec<u8>, WalError> {
    let from = align_down(valid_end);
    scanner
        .held(from, valid_end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| io_err("scan", path, format!("the scan no longer holds [{from}, {valid_end})")))
}

fn remove_segments<D: Disk>(disk: &D, dir: &Path, segments: &[RaftIndex]) -> Result<(), WalError> {
    for &s in segments {
        let path = segment_path(dir, s);
        tracing::warn!(segment = %path.display(), "removing WAL segment past the recovery cut");
        disk.remove(&path).map_err(|e| io_err("remove", &path, e))?;
    }
    sync_dir(disk, dir)
}

/// Zeroes everything after `valid_end`, so bytes of a torn or stale tail can
/// never be mistaken for records later; the head of the partial block is
/// rewritten from `tail`, the bytes the scan checked.
async fn erase_after<F: DiskFile>(
    file: &F,
    path: &Path,
    valid_end: u64,
    tail: &[u8],
    capacity: u64,
) -> Result<(), WalError> {
    let start = align_down(valid_end);
    let head = (valid_end - start) as usize;
    assert_eq!(head, tail.len(), "WAL tail block out of step with the valid end");
    let mut block = file.alloc(ALIGN as usize);
    let bytes = block.as_mut();
    bytes.fill(0);
    bytes[..head].copy_from_slice(tail);
    file.write_at(block, start)
        .await
        .map_err(|e| io_err("write", path, e))?;
    let rest_from = start + ALIGN;
    if rest_from < capacity {
        file.zero_range(rest_from, capacity - rest_from)
            .await
            .map_err(|e| io_err("zero", path, e))?;
    }
    file.fdatasync().await.map_err(|e| io_err("fdatasync", path, e))?;
    Ok(())
}
