//! Compaction (`cleanup.policy=compact`), Kafka's log cleaner on a shard's
//! data: the last record of every key stays, older records of a key go,
//! and so do tombstones (null values) once `delete.retention.ms` passed
//! their timestamp. Offsets never change.
//!
//! A pass over one partition, as Kafka's cleaner does it:
//! 1. **Map** the dirty part (the batches since the last pass, up to the
//!    cleanable end: committed, out of the active WAL segment, older than
//!    `min.compaction.lag.ms`): the last offset of each key in it.
//! 2. **Rewrite** everything from the log start to that end, a chunk at a
//!    time, into cold files: a record stays unless the map names a later
//!    offset for its key (or it is a tombstone past its time, or has no
//!    key). A batch keeps its producer fields and its records' offsets and
//!    is compressed again with its codec; a batch left with no record is
//!    folded into the range of the batch before it (Kafka's cleaner also
//!    leaves batches whose offset range reaches past their last record), so
//!    the index stays dense. Transaction markers stay as they are.
//!
//! A partition is cleaned when its dirty bytes reach
//! `min.cleanable.dirty.ratio` of its cleanable bytes, or when a dirty
//! batch is older than `max.compaction.lag.ms`. Every replica compacts its
//! own copy (the offsets and the surviving records are the same; which
//! pass ran when is not). A chunk's cold file is durable before the index
//! points to it; the checkpoint that next records the index is what makes
//! the change survive a restart (a crash before it keeps the old files,
//! and the next pass does the work again); the batches it replaced are
//! reclaimed as any others are.

use std::collections::HashMap;

use super::state::State;
use crate::partition::IndexEntry;
use crate::records::{self, Header, Record};
use crate::types::{Offset, PartitionId, RaftIndex};
use crate::wal::{is_cold, ColdFile, Disk, WalError, WalPos, WalReader, WrittenCold};

/// A partition's compaction settings (Kafka's topic configs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compaction {
    pub delete_retention_ms: i64,
    pub min_lag_ms: i64,
    pub max_lag_ms: i64,
    pub min_dirty_ratio: f64,
}

impl Default for Compaction {
    /// Kafka's defaults.
    fn default() -> Self {
        Compaction {
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_lag_ms: 0,
            max_lag_ms: i64::MAX,
            min_dirty_ratio: 0.5,
        }
    }
}

/// Most batch bytes one job reads (into memory, then written).
const JOB_MAX_BYTES: u64 = 32 << 20;
/// Most memory the key map of one pass takes (keys and their overhead):
/// a dirty part with more keys is cleaned up to where the map filled.
const MAP_MAX_BYTES: usize = 32 << 20;
/// What one key costs in the map besides its bytes.
const MAP_ENTRY_OVERHEAD: usize = 48;
/// At most one look for partitions to clean per this long.
const RECHECK_MS: i64 = 1_000;

/// Work for the driver: read these batches of the partition, then hand
/// them to `State::mapped` or `State::rewrite` as `kind` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub partition: PartitionId,
    pub kind: JobKind,
    pub batches: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Map,
    Rewrite,
}

/// The pass under way.
#[derive(Debug)]
struct Pass {
    partition: PartitionId,
    rewriting: bool,
    /// The next offset to map or rewrite.
    next: Offset,
    /// Where the cleanable part ends (where mapping stopped, once it did).
    end: Offset,
    /// The last offset of each key mapped, and the bytes that takes.
    keys: HashMap<Vec<u8>, i64>,
    key_bytes: usize,
    now_ms: i64,
    settings: Compaction,
}

/// A shard's compaction: settings, progress and the pass under way.
#[derive(Debug, Default)]
pub struct Cleaner {
    settings: HashMap<PartitionId, Compaction>,
    /// Where each partition's dirty part starts (none: at its log start,
    /// the partition is cleaned whole once). Saved in checkpoints.
    cleaned_to: HashMap<PartitionId, Offset>,
    pass: Option<Pass>,
    /// Something may have become cleanable since the last look (a WAL
    /// segment was sealed, a setting changed).
    pub(crate) dirty: bool,
    /// The active WAL segment at the last look.
    active_seen: RaftIndex,
    checked_ms: i64,
    /// When a partition becomes cleanable by time alone (its lags).
    due_ms: Option<i64>,
    pub(crate) runs: u64,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
}

impl Cleaner {
    /// Where each partition's dirty part starts, by partition id (for a
    /// checkpoint).
    pub(crate) fn cleaned(&self) -> Vec<(PartitionId, Offset)> {
        let mut cleaned: Vec<_> = self.cleaned_to.iter().map(|(&id, &to)| (id, to)).collect();
        cleaned.sort();
        cleaned
    }

    /// Forgets where a partition was cleaned to (its data was replaced).
    pub(crate) fn forget(&mut self, id: PartitionId) {
        self.cleaned_to.remove(&id);
        if self.pass.as_ref().is_some_and(|p| p.partition == id) {
            self.pass = None;
        }
    }

    /// Takes where a checkpoint says `p` was cleaned to. An offset past
    /// what the partition holds (a damaged checkpoint) is not taken: the
    /// partition is then cleaned whole, which is never wrong.
    pub(crate) fn restore(&mut self, id: PartitionId, to: Offset, p: &crate::partition::Partition) {
        if to.0 >= 0 && to <= p.indexed_end() {
            self.cleaned_to.insert(id, to);
        }
    }
}

/// A chunk rewritten: its batches, one after another, and their entries
/// (positions relative to the start of `data`).
#[derive(Debug)]
pub struct Rewritten {
    pub data: Vec<u8>,
    pub entries: Vec<IndexEntry>,
}

impl Rewritten {
    /// Whether the chunk came out as it went in (batches kept whole are
    /// copied byte for byte).
    fn same_as(&self, batches: &[IndexEntry]) -> bool {
        self.entries.len() == batches.len()
            && self
                .entries
                .iter()
                .zip(batches)
                .all(|(a, b)| a.base == b.base && a.last == b.last && a.len == b.len)
    }
}

impl Cleaner {
    pub fn compacted(&self, id: PartitionId) -> bool {
        self.settings.contains_key(&id)
    }

    /// When the cleaner wants a look although nothing was written.
    pub fn due_ms(&self) -> Option<i64> {
        self.due_ms
    }
}

impl State {
    /// Sets (or, `None`, lifts) a partition's compaction.
    pub fn set_compaction(&mut self, id: PartitionId, c: Option<Compaction>) {
        match c {
            Some(c) => {
                self.cleaner.settings.insert(id, c);
                self.cleaner.dirty = true;
            }
            None => {
                self.cleaner.settings.remove(&id);
                self.cleaner.forget(id);
            }
        }
    }

    pub(crate) fn forget_compaction(&mut self, id: PartitionId) {
        self.set_compaction(id, None);
    }

    /// When the next look at what to clean is due, if one is: at once for
    /// a pass under way or a new cleanable segment (but at most once a
    /// second), else when a lag runs out. Never earlier than
    /// `plan_compaction` would do something: the driver wakes itself at
    /// this time, and a wake that is due yet plans nothing wakes it again
    /// at once, for ever (a wiped replica spun that way while it pulled,
    /// its network and timers starved).
    pub fn compaction_wake_ms(&self) -> Option<i64> {
        if self.pulling() {
            // The pull's end is noticed by the driver, which plans then.
            return None;
        }
        let c = &self.cleaner;
        if c.pass.is_some() {
            return Some(i64::MIN);
        }
        let recheck = c.checked_ms.saturating_add(RECHECK_MS);
        if c.dirty {
            return Some(recheck);
        }
        c.due_ms.map(|due| due.max(recheck))
    }

    /// The next piece of compaction work, if any is due.
    pub fn plan_compaction(&mut self, active_segment: RaftIndex, now_ms: i64) -> Option<Job> {
        if self.pulling() {
            return None; // batches not held yet sit in the range a pass reads
        }
        if self.cleaner.active_seen != active_segment {
            // Batches of the segment just sealed may be cleanable now.
            self.cleaner.active_seen = active_segment;
            self.cleaner.dirty |= !self.cleaner.settings.is_empty();
        }
        if self.cleaner.pass.is_none() {
            let looked = self.cleaner.dirty || self.cleaner.due_ms.is_some_and(|at| at <= now_ms);
            if !looked || now_ms.abs_diff(self.cleaner.checked_ms) < RECHECK_MS as u64 {
                return None;
            }
            self.cleaner.checked_ms = now_ms;
            self.cleaner.dirty = false;
            self.cleaner.pass = self.choose(active_segment, now_ms);
        }
        loop {
            let pass = self.cleaner.pass.as_mut()?;
            let Some(p) = self.partitions.get(&pass.partition) else {
                self.cleaner.pass = None;
                return None;
            };
            pass.next = pass.next.max(p.log_start());
            if pass.next >= pass.end {
                if pass.rewriting {
                    self.cleaner.cleaned_to.insert(pass.partition, pass.end);
                    self.cleaner.runs += 1;
                    self.cleaner.pass = None;
                    self.cleaner.dirty = true; // another partition may be due
                    return None;
                }
                pass.rewriting = true;
                pass.next = p.log_start();
                continue;
            }
            let mut batches = Vec::new();
            let mut bytes = 0u64;
            for e in p.committed_from(pass.next) {
                if e.base >= pass.end || (!batches.is_empty() && bytes + e.len as u64 > JOB_MAX_BYTES) {
                    break;
                }
                bytes += e.len as u64;
                batches.push(e);
            }
            if batches.is_empty() {
                // The log below the end went (a trim): nothing more to do.
                pass.end = pass.next;
                continue;
            }
            let kind = if pass.rewriting { JobKind::Rewrite } else { JobKind::Map };
            return Some(Job {
                partition: pass.partition,
                kind,
                batches,
            });
        }
    }

    /// The partition to clean now: the one with the largest dirty ratio
    /// among those past their `min.cleanable.dirty.ratio` or their
    /// `max.compaction.lag.ms`. Notes when the next one becomes due by
    /// time alone.
    fn choose(&mut self, active_segment: RaftIndex, now_ms: i64) -> Option<Pass> {
        let mut best: Option<(f64, PartitionId, Offset, Compaction)> = None;
        let mut due: Option<i64> = None;
        for (&id, &settings) in &self.cleaner.settings {
            let Some(p) = self.partitions.get(&id) else { continue };
            let cleaned = self.cleaner.cleaned_to.get(&id).copied().unwrap_or(p.log_start());
            let Scan {
                total,
                dirty,
                end,
                oldest_dirty,
                due: due_here,
            } = scan(p, cleaned, active_segment, settings.min_lag_ms, now_ms);
            if let Some(at) = due_here {
                due = Some(due.map_or(at, |d: i64| d.min(at)));
            }
            if dirty == 0 {
                continue;
            }
            let ratio = dirty as f64 / total as f64;
            let overdue = oldest_dirty.map(|t: i64| t.saturating_add(settings.max_lag_ms));
            if ratio < settings.min_dirty_ratio && overdue.is_none_or(|at| at > now_ms) {
                if let Some(at) = overdue {
                    due = Some(due.map_or(at, |d| d.min(at)));
                }
                continue;
            }
            if best.as_ref().is_none_or(|b| ratio > b.0) {
                best = Some((ratio, id, end, settings));
            }
        }
        self.cleaner.due_ms = due;
        let (_, partition, end, settings) = best?;
        let next = self.cleaner.cleaned_to.get(&partition).copied().unwrap_or(Offset(0));
        Some(Pass {
            partition,
            rewriting: false,
            next,
            end,
            keys: HashMap::new(),
            key_bytes: 0,
            now_ms,
            settings,
        })
    }

    /// The batches of a map job, read: their keys' last offsets go into
    /// the pass's map. Mapping stops where the map is full; the pass then
    /// cleans up to there.
    pub fn mapped(&mut self, job: &Job, data: &[u8]) {
        let Some(pass) = self
            .cleaner
            .pass
            .as_mut()
            .filter(|p| p.partition == job.partition && !p.rewriting)
        else {
            return;
        };
        self.cleaner.bytes_read += data.len() as u64;
        let mut at = 0usize;
        for e in &job.batches {
            let batch = &data[at..at + e.len as usize];
            at += e.len as usize;
            if pass.key_bytes >= MAP_MAX_BYTES {
                pass.end = e.base;
                return;
            }
            let Ok((h, plain)) = open(batch) else {
                pass.next = Offset(e.last.0 + 1);
                continue; // kept whole when rewritten
            };
            if let Ok(recs) = records::parse(&plain, h.count) {
                for r in recs {
                    if let Some(key) = r.key {
                        let offset = h.base_offset.wrapping_add(r.offset_delta);
                        if let Some(o) = pass.keys.get_mut(key) {
                            *o = if crate::planted::active(crate::planted::Bug::CompactionKeepsFirst) {
                                (*o).min(offset)
                            } else {
                                (*o).max(offset)
                            };
                        } else {
                            pass.key_bytes += key.len() + MAP_ENTRY_OVERHEAD;
                            pass.keys.insert(key.to_vec(), offset);
                        }
                    }
                }
            }
            pass.next = Offset(e.last.0 + 1);
        }
    }

    /// The batches of a rewrite job, read, with only the records that
    /// stay; `None` when the pass moved on (or went, or failed: a batch
    /// that does not compress again ends it, and the batches stay).
    pub fn rewrite(&mut self, job: &Job, data: &[u8]) -> Option<Rewritten> {
        let pass = self
            .cleaner
            .pass
            .as_ref()
            .filter(|p| p.partition == job.partition && p.rewriting)?;
        self.cleaner.bytes_read += data.len() as u64;
        match rewrite_chunk(&job.batches, data, pass) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(partition = %job.partition, error = %e, "compaction could not rebuild a batch; the partition stays as it is until its next pass");
                self.cleaner.pass = None;
                None
            }
        }
    }

    /// The chunk's rewritten batches now live in cold file `file`: the
    /// partition's index points there instead of at the batches they
    /// replace (unless those changed since, or the pass went). Returns
    /// whether it does.
    pub fn compacted(&mut self, job: &Job, r: &Rewritten, file: RaftIndex) -> bool {
        let Some(pass) = self
            .cleaner
            .pass
            .as_mut()
            .filter(|p| p.partition == job.partition && p.rewriting)
        else {
            return false;
        };
        let Some(p) = self.partitions.get_mut(&job.partition) else {
            return false;
        };
        let entries: Vec<IndexEntry> = r.entries.iter().map(|e| e.in_file(file)).collect();
        let replaced = p.replace_run(&job.batches, entries);
        if replaced {
            self.cleaner.bytes_written += r.data.len() as u64;
            pass.next = Offset(job.batches.last().map_or(pass.next.0, |e| e.last.0 + 1));
        } else {
            self.cleaner.pass = None; // the log changed under it; the next look starts again
        }
        self.reclaim_dirty = true;
        self.reclaim_checked_ms = i64::MIN;
        replaced
    }
}

/// A batch's header and decompressed records; an error for a batch that
/// does not read (kept as it is).
fn open(batch: &[u8]) -> Result<(Header, Vec<u8>), records::RecordsError> {
    let h = Header::parse(batch)?;
    let plain = records::decompress(batch, &h)?;
    Ok((h, plain))
}

/// What a chunk becomes: batches kept whole, rebuilt around the records
/// that stay, or (for a run of batches left empty with nothing before it
/// in the chunk to fold into) one empty batch over their range.
enum Out<'a> {
    Whole {
        batch: &'a [u8],
        base: i64,
        last: i64,
        extendable: bool,
    },
    Kept {
        header: Header,
        base: i64,
        last: i64,
        records: Vec<(Record<'a>, i64)>,
    },
    Empty {
        header: Header,
        base: i64,
        last: i64,
    },
}

impl Out<'_> {
    /// Takes the offsets up to `last` of the batches after it, which lost
    /// every record; false when it may not (a marker, a batch that did not
    /// read, a range wider than an i32 delta).
    fn absorb(&mut self, to: i64) -> bool {
        let (base, last) = match self {
            Out::Whole { extendable: false, .. } => return false,
            Out::Whole { base, last, .. } | Out::Kept { base, last, .. } | Out::Empty { base, last, .. } => {
                (*base, last)
            }
        };
        if to.checked_sub(base).and_then(|d| i32::try_from(d).ok()).is_none() {
            return false;
        }
        *last = to;
        true
    }
}

fn rewrite_chunk(batches: &[IndexEntry], data: &[u8], pass: &Pass) -> Result<Rewritten, records::RecordsError> {
    let horizon = pass.now_ms.saturating_sub(pass.settings.delete_retention_ms);
    let mut plains: Vec<Option<(Header, Vec<u8>)>> = Vec::with_capacity(batches.len());
    let mut at = 0usize;
    let mut slices = Vec::with_capacity(batches.len());
    for e in batches {
        let batch = &data[at..at + e.len as usize];
        at += e.len as usize;
        slices.push(batch);
        plains.push(open(batch).ok().filter(|(h, _)| !h.control()));
    }
    let mut out: Vec<Out<'_>> = Vec::new();
    for ((e, batch), plain) in batches.iter().zip(&slices).zip(&plains) {
        let (base, last) = (e.base.0, e.last.0);
        let parsed = plain
            .as_ref()
            .and_then(|(h, p)| records::parse(p, h.count).ok().map(|r| (*h, r)));
        let Some((h, recs)) = parsed else {
            // A transaction marker, or records that do not read: as they are.
            out.push(Out::Whole {
                batch,
                base,
                last,
                extendable: false,
            });
            continue;
        };
        let all = recs.len();
        let kept: Vec<(Record<'_>, i64)> = recs
            .into_iter()
            .map(|r| (r, h.base_offset.wrapping_add(r.offset_delta)))
            .filter(|(r, offset)| {
                let Some(key) = r.key else { return false };
                let latest = pass.keys.get(key).is_none_or(|&o| {
                    if crate::planted::active(crate::planted::Bug::CompactionKeepsFirst) {
                        o >= *offset
                    } else {
                        o <= *offset
                    }
                });
                latest && !(r.tombstone() && h.timestamp_of(r.timestamp_delta) < horizon)
            })
            .collect();
        if kept.len() == all && all > 0 {
            out.push(Out::Whole {
                batch,
                base,
                last,
                extendable: true,
            });
        } else if !kept.is_empty() {
            out.push(Out::Kept {
                header: h,
                base,
                last,
                records: kept,
            });
        } else if !out.last_mut().is_some_and(|o| o.absorb(last)) {
            out.push(Out::Empty { header: h, base, last });
        }
    }
    let mut r = Rewritten {
        data: Vec::new(),
        entries: Vec::with_capacity(out.len()),
    };
    for o in out {
        let (bytes, base, last) = match o {
            Out::Whole { batch, base, last, .. }
                if crate::batch::last_offset_delta(batch) as i64 == last.wrapping_sub(base) =>
            {
                (batch.to_vec(), base, last)
            }
            Out::Whole { batch, base, last, .. } => (extend(batch, last.wrapping_sub(base)), base, last),
            Out::Kept {
                header,
                base,
                last,
                records,
            } => (records::rebuild(&header, base, last, &records)?, base, last),
            Out::Empty { header, base, last } => (records::rebuild(&header, base, last, &[])?, base, last),
        };
        r.entries.push(IndexEntry {
            base: Offset(base),
            last: Offset(last),
            pos: WalPos {
                segment: RaftIndex(0),
                offset: r.data.len() as u64,
            },
            len: bytes.len() as u32,
            max_timestamp_ms: crate::batch::max_timestamp(&bytes),
        });
        r.data.extend_from_slice(&bytes);
    }
    Ok(r)
}

/// `batch` with its offset range reaching `last_delta` (the records after
/// it were removed); its CRC made again.
fn extend(batch: &[u8], last_delta: i64) -> Vec<u8> {
    let mut b = batch.to_vec();
    b[23..27].copy_from_slice(&(last_delta as i32).to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

impl State {
    /// A rewrite job removed nothing from batches already in cold files:
    /// the pass goes on after them.
    fn kept_as_is(&mut self, job: &Job) {
        if let Some(pass) = self
            .cleaner
            .pass
            .as_mut()
            .filter(|p| p.partition == job.partition && p.rewriting)
        {
            pass.next = Offset(job.batches.last().map_or(pass.next.0, |e| e.last.0 + 1));
        }
    }

    /// Ends the pass under way (a step failed); the partition is cleaned
    /// whole at its next pass.
    pub fn abandon_compaction(&mut self) {
        if let Some(p) = self.cleaner.pass.take() {
            self.cleaner.cleaned_to.remove(&p.partition);
        }
    }
}

/// What a look finds in a partition: the bytes of its cleanable part
/// (committed, out of the active WAL segment, past the compaction lag),
/// of them the dirty ones (from `cleaned` on), where the cleanable part
/// ends, the largest timestamp of its oldest dirty batch, and when a
/// batch after it becomes cleanable by time.
struct Scan {
    total: u64,
    dirty: u64,
    end: Offset,
    oldest_dirty: Option<i64>,
    due: Option<i64>,
}

/// Looks at `p` from its log start. A frozen block of the index wholly
/// cleanable, and wholly clean or dirty, counts from its summary unread:
/// a look (once a second while segments seal) must not decode every
/// batch of every compacted partition.
fn scan(p: &crate::partition::Partition, cleaned: Offset, active: RaftIndex, min_lag_ms: i64, now_ms: i64) -> Scan {
    let (log_start, hw) = (p.log_start(), p.high_watermark());
    let lag_cutoff = now_ms.saturating_sub(min_lag_ms);
    let mut s = Scan {
        total: 0,
        dirty: 0,
        end: log_start,
        oldest_dirty: None,
        due: None,
    };
    let index = p.index();
    'spans: for span in index.spans() {
        if span.last < log_start {
            continue;
        }
        let whole = span.base >= log_start
            && span.last < hw
            && (span.all_cold || span.one_file.is_some_and(|f| f < active))
            && span.max_timestamp_ms <= lag_cutoff
            // Dirty whole: its oldest batch's timestamp is known already.
            && (span.last < cleaned || (span.base >= cleaned && s.oldest_dirty.is_some()));
        if whole {
            s.total += span.bytes;
            if span.base >= cleaned {
                s.dirty += span.bytes;
            }
            s.end = Offset(span.last.0 + 1);
            continue;
        }
        for e in index.entries_of(&span) {
            if e.last < log_start {
                continue;
            }
            if e.last >= hw {
                break 'spans;
            }
            let cleanable = (is_cold(e.pos.segment) || e.pos.segment < active) && e.max_timestamp_ms <= lag_cutoff;
            if !cleanable {
                if e.pos.segment != active && e.last >= cleaned {
                    s.due = Some(e.max_timestamp_ms.saturating_add(min_lag_ms));
                }
                break 'spans;
            }
            s.total += e.len as u64;
            if e.last >= cleaned {
                s.dirty += e.len as u64;
                s.oldest_dirty.get_or_insert(e.max_timestamp_ms);
            }
            s.end = Offset(e.last.0 + 1);
        }
    }
    s
}

/// Runs one job up to what the index is to learn: reads its batches, then
/// maps them, or writes what stays of them to the cold file `cold`. The
/// driver then adopts the file and points the index there
/// (`background::Done::finish`); the log may have changed meanwhile
/// (`State::compacted` checks). The shard and the simulator reach their
/// state differently: `with` runs a step on it.
pub async fn run<D: Disk>(
    job: &Job,
    reader: WalReader<D>,
    cold: ColdFile<D>,
    mut with: impl FnMut(&mut dyn FnMut(&mut State)),
) -> Result<Option<(Rewritten, WrittenCold<D>)>, WalError> {
    let data = super::read_batches(reader, &job.batches).await?;
    // Each batch checked whole (its CRC): a bit flipped on the way must not
    // change the map, nor be made permanent by a rewrite.
    let mut at = 0usize;
    for e in &job.batches {
        if let Err(why) = crate::batch::validate_stored(&data[at..at + e.len as usize]) {
            return Err(WalError::Read(
                e.pos.segment,
                format!("the batch at offset {} to compact: {why}", e.base),
            ));
        }
        at += e.len as usize;
    }
    let mut out = None;
    with(&mut |st| out = st.take_read(job, &data));
    match out {
        Some(r) => {
            let written = cold.write(&r.data).await?;
            Ok(Some((r, written)))
        }
        None => Ok(None),
    }
}

impl State {
    /// A job's batches, read: mapped, or rewritten; returns what to write
    /// to a new cold file, if anything.
    fn take_read(&mut self, job: &Job, data: &[u8]) -> Option<Rewritten> {
        match job.kind {
            JobKind::Map => {
                self.mapped(job, data);
                None
            }
            JobKind::Rewrite => {
                let r = self.rewrite(job, data)?;
                if r.same_as(&job.batches) && job.batches.iter().all(|e| is_cold(e.pos.segment)) {
                    // Nothing went, and the batches are in cold files already.
                    self.kept_as_is(job);
                    return None;
                }
                Some(r)
            }
        }
    }
}

/// The fuzz target's entry (`fuzz/fuzz_targets/compaction.rs`): `data` as
/// one stored batch (from the disk: its CRC is not checked on the way to
/// the cleaner), mapped and rewritten as a pass does; what comes out
/// covers the batch's offsets, and every batch in it has the length its
/// entry says. Never a panic.
pub fn fuzz_one(data: &[u8]) {
    let Ok(len) = crate::batch::batch_len(data) else { return };
    if len != data.len() {
        return;
    }
    let base = Offset(crate::batch::base_offset(data));
    let last = Offset(
        base.0
            .wrapping_add(i64::from(crate::batch::last_offset_delta(data) as i32)),
    );
    if last < base {
        return; // the index never holds such an entry
    }
    let entry = IndexEntry {
        base,
        last,
        pos: WalPos {
            segment: RaftIndex(1),
            offset: 0,
        },
        len: len as u32,
        max_timestamp_ms: crate::batch::max_timestamp(data),
    };
    let mut st = State::default();
    st.cleaner.pass = Some(Pass {
        partition: PartitionId(0),
        rewriting: false,
        next: base,
        end: Offset(last.0.saturating_add(1)),
        keys: HashMap::new(),
        key_bytes: 0,
        now_ms: 1 << 40,
        settings: Compaction::default(),
    });
    let job = Job {
        partition: PartitionId(0),
        kind: JobKind::Map,
        batches: vec![entry],
    };
    st.mapped(&job, data);
    let Some(pass) = st.cleaner.pass.as_ref() else { return };
    if let Ok(r) = rewrite_chunk(&job.batches, data, pass) {
        assert_eq!(
            r.entries.first().map(|e| e.base),
            Some(base),
            "the rewrite starts where the batch did"
        );
        assert_eq!(
            r.entries.last().map(|e| e.last),
            Some(last),
            "the rewrite ends where the batch did"
        );
        let mut at = 0usize;
        for e in &r.entries {
            let b = &r.data[at..at + e.len as usize];
            assert_eq!(crate::batch::batch_len(b).ok(), Some(e.len as usize));
            at += e.len as usize;
        }
        assert_eq!(at, r.data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::COLD_BASE;

    use crate::records::tests::batch;

    /// Files by id: the WAL segment (1) and the cold files written.
    #[derive(Default)]
    struct Files(HashMap<RaftIndex, Vec<u8>>);

    impl Files {
        fn read(&self, entries: &[IndexEntry]) -> Vec<u8> {
            let mut out = Vec::new();
            for e in entries {
                let f = &self.0[&e.pos.segment];
                out.extend_from_slice(&f[e.pos.offset as usize..e.pos.offset as usize + e.len as usize]);
            }
            out
        }
    }

    /// A shard state with one partition holding `batches` (committed, in
    /// a sealed WAL segment).
    fn state_with(batches: &[Vec<u8>], files: &mut Files) -> State {
        let id = PartitionId(7);
        let mut st = State::new(&[id], 8);
        let mut seg = Vec::new();
        let p = st.partitions.get_mut(&id).unwrap();
        for b in batches {
            let h = Header::parse(b).unwrap();
            p.assign((h.last_offset_delta + 1) as u32);
            p.index_batch(IndexEntry {
                base: Offset(h.base_offset),
                last: Offset(h.last_offset()),
                pos: WalPos {
                    segment: RaftIndex(1),
                    offset: seg.len() as u64,
                },
                len: b.len() as u32,
                max_timestamp_ms: h.max_timestamp,
            });
            seg.extend_from_slice(b);
        }
        let end = p.indexed_end();
        p.advance_high_watermark(end);
        files.0.insert(RaftIndex(1), seg);
        st
    }

    /// Runs compaction passes to the end, as the driver does.
    fn compact_all(st: &mut State, files: &mut Files, now_ms: i64) {
        let mut next_file = COLD_BASE;
        for step in 0..1000 {
            let Some(job) = st.plan_compaction(RaftIndex(100), now_ms + step * 2_000) else {
                if st.cleaner.pass.is_none() && !st.cleaner.dirty {
                    return;
                }
                continue;
            };
            let data = files.read(&job.batches);
            match job.kind {
                JobKind::Map => st.mapped(&job, &data),
                JobKind::Rewrite => {
                    let r = st.rewrite(&job, &data).unwrap();
                    next_file += 1;
                    files.0.insert(RaftIndex(next_file), r.data.clone());
                    st.compacted(&job, &r, RaftIndex(next_file));
                }
            }
        }
        panic!("compaction did not finish");
    }

    /// What a consumer reads from the start: `(offset, key, value)` of
    /// every record, and each batch's offset range.
    type ReadBack = (Vec<(i64, String, Option<String>)>, Vec<(i64, i64)>);

    fn read_back(st: &State, files: &Files) -> ReadBack {
        let p = st.partition(PartitionId(7)).unwrap();
        let entries = p.committed_batches_from(Offset(0), usize::MAX);
        let data = files.read(&entries);
        let mut out = Vec::new();
        let mut ranges = Vec::new();
        let mut at = 0;
        for e in &entries {
            let b = &data[at..at + e.len as usize];
            at += e.len as usize;
            crate::batch::validate_stored(b).unwrap();
            let h = Header::parse(b).unwrap();
            assert_eq!((h.base_offset, h.last_offset()), (e.base.0, e.last.0));
            ranges.push((e.base.0, e.last.0));
            let plain = records::decompress(b, &h).unwrap();
            for r in records::parse(&plain, h.count).unwrap() {
                let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                out.push((h.base_offset + r.offset_delta, s(r.key).unwrap(), s(r.value)));
            }
        }
        (out, ranges)
    }

    const NOW: i64 = 1_000_000_000;
    const DAY: i64 = 86_400_000;

    #[test]
    fn the_last_record_of_each_key_stays_at_its_offset_under_every_codec() {
        for codec in 0..=4 {
            let old = NOW - 2 * DAY;
            let batches = vec![
                batch(0, &[(Some("a"), Some("a1"), old), (Some("b"), Some("b1"), old)], codec),
                batch(2, &[(Some("a"), Some("a2"), old), (Some("c"), Some("c1"), old)], codec),
                // Every record superseded: its range folds into the batch before.
                batch(4, &[(Some("c"), Some("c2"), old), (Some("b"), Some("b2"), old)], codec),
                batch(6, &[(Some("b"), None, old), (Some("c"), None, NOW - 1_000)], codec),
                batch(
                    8,
                    &[(Some("d"), Some("d1"), NOW - 1_000), (None, Some("keyless"), NOW)],
                    codec,
                ),
            ];
            let mut files = Files::default();
            let mut st = state_with(&batches, &mut files);
            st.set_compaction(PartitionId(7), Some(Compaction::default()));
            compact_all(&mut st, &mut files, NOW);
            let (records, ranges) = read_back(&st, &files);
            let r = |o: i64, k: &str, v: Option<&str>| (o, k.to_string(), v.map(str::to_string));
            assert_eq!(
                records,
                vec![
                    r(2, "a", Some("a2")),
                    // b's tombstone is older than delete.retention.ms: gone;
                    // c's is younger: it stays.
                    r(7, "c", None),
                    r(8, "d", Some("d1")),
                ],
                "codec {codec}"
            );
            assert_eq!(
                ranges,
                vec![(0, 1), (2, 5), (6, 7), (8, 9)],
                "codec {codec}: offsets stay dense"
            );
            assert_eq!(st.cleaner.runs, 1);
            // A second pass finds nothing dirty and writes nothing.
            let written = st.cleaner.bytes_written;
            st.cleaner.dirty = true;
            compact_all(&mut st, &mut files, NOW + 10_000);
            assert_eq!(
                st.cleaner.bytes_written, written,
                "codec {codec}: a clean partition is not rewritten"
            );
        }
    }

    /// `st` as a checkpoint saves it, encoded, read back and restored
    /// into a fresh shard state (a restart), with `cleaned` as saved.
    fn restarted(st: &State, keep_cleaned: bool) -> State {
        use super::super::checkpoint::Checkpoint;
        let c = Checkpoint {
            applied: (10, 1),
            hard_state: Default::default(),
            released: 0,
            wal: crate::wal::WalStart {
                keep_from: RaftIndex(1),
                before: (0, 0),
            },
            known_below: 0,
            deleted: Vec::new(),
            partitions: st.partitions.values().map(|p| p.saved()).collect(),
            cleaned: if keep_cleaned { st.cleaner.cleaned() } else { Vec::new() },
        };
        let c = Checkpoint::decode(&c.encode()).unwrap();
        let mut fresh = State::new(&[PartitionId(7)], 8);
        fresh.restore(c).unwrap();
        fresh.set_compaction(PartitionId(7), Some(Compaction::default()));
        fresh
    }

    #[test]
    fn a_restart_does_not_clean_a_clean_partition_again() {
        let old = NOW - 2 * DAY;
        let batches: Vec<Vec<u8>> = (0..6)
            .map(|i| batch(i * 2, &[(Some("k"), Some("v"), old), (Some("j"), Some("w"), old)], 0))
            .collect();
        let mut files = Files::default();
        let mut st = state_with(&batches, &mut files);
        st.set_compaction(PartitionId(7), Some(Compaction::default()));
        compact_all(&mut st, &mut files, NOW);
        assert_eq!(st.cleaner.runs, 1);
        let after_pass = read_back(&st, &files);
        // Where the pass got to is in the checkpoint: nothing is dirty.
        let mut again = restarted(&st, true);
        compact_all(&mut again, &mut files, NOW + 10_000);
        assert_eq!(again.cleaner.bytes_read, 0, "a restart read a clean partition again");
        assert_eq!(read_back(&again, &files), after_pass);
        // Without it (a checkpoint of an earlier release), the partition
        // is cleaned whole once, to the same records.
        let mut whole = restarted(&st, false);
        compact_all(&mut whole, &mut files, NOW + 10_000);
        assert!(whole.cleaner.bytes_read > 0);
        assert_eq!(read_back(&whole, &files).0, after_pass.0);
    }

    /// The look batch by batch, as it was before block summaries: what
    /// `scan` must agree with.
    fn scan_each(
        p: &crate::partition::Partition,
        cleaned: Offset,
        active: RaftIndex,
        min_lag_ms: i64,
        now_ms: i64,
    ) -> Scan {
        let lag_cutoff = now_ms.saturating_sub(min_lag_ms);
        let mut s = Scan {
            total: 0,
            dirty: 0,
            end: p.log_start(),
            oldest_dirty: None,
            due: None,
        };
        for e in p.committed_from(p.log_start()) {
            let cleanable = (is_cold(e.pos.segment) || e.pos.segment < active) && e.max_timestamp_ms <= lag_cutoff;
            if !cleanable {
                if e.pos.segment != active && e.last >= cleaned {
                    s.due = Some(e.max_timestamp_ms.saturating_add(min_lag_ms));
                }
                break;
            }
            s.total += e.len as u64;
            if e.last >= cleaned {
                s.dirty += e.len as u64;
                s.oldest_dirty.get_or_insert(e.max_timestamp_ms);
            }
            s.end = Offset(e.last.0 + 1);
        }
        s
    }

    #[test]
    fn a_look_from_block_summaries_finds_what_one_batch_at_a_time_finds() {
        use crate::partition::{Partition, SavedPartition};
        let mut rng = crate::test_rng::Rng::new(11);
        for round in 0..2_000 {
            let n = rng.below(80) as usize;
            let cold = rng.below(n as u64 + 1) as usize;
            let (mut base, mut segment, mut pos) = (0i64, 5u64, 0u64);
            let mut entries = Vec::new();
            for i in 0..n {
                let count = 1 + rng.below(3) as i64;
                let len = 100 + rng.below(900) as u32;
                let file = if i < cold {
                    COLD_BASE + 1 + (2 * i / cold.max(1)) as u64
                } else {
                    if rng.below(5) == 0 {
                        segment += 1;
                    }
                    segment
                };
                pos += len as u64;
                entries.push(IndexEntry {
                    base: Offset(base),
                    last: Offset(base + count - 1),
                    pos: WalPos {
                        segment: RaftIndex(file),
                        offset: pos,
                    },
                    len,
                    max_timestamp_ms: NOW - 100_000 + i as i64 * 1_000 + rng.below(3_000) as i64,
                });
                base += count;
            }
            // Batches in cold files are committed ones.
            let committed = cold + rng.below((n - cold) as u64 + 1) as usize;
            let mut p = Partition::restore(SavedPartition {
                id: PartitionId(7),
                log_start: Offset(0),
                high_watermark: Offset(entries.get(committed.wrapping_sub(1)).map_or(0, |e| e.last.0 + 1)),
                index: entries[..committed].to_vec(),
                producers: Vec::new(),
            })
            .unwrap();
            for e in &entries[committed..] {
                p.assign((e.last.0 - e.base.0 + 1) as u32);
                p.index_batch(*e);
            }
            p.trim_to(Offset(rng.below(base as u64 / 2 + 1) as i64));
            let cleaned = Offset(rng.below(base as u64 + 2) as i64);
            let active = RaftIndex(5 + rng.below(segment - 3));
            let lag = [0, 5_000, 30_000][rng.below(3) as usize];
            let (a, b) = (
                scan(&p, cleaned, active, lag, NOW),
                scan_each(&p, cleaned, active, lag, NOW),
            );
            assert_eq!(
                (a.total, a.dirty, a.end, a.oldest_dirty, a.due),
                (b.total, b.dirty, b.end, b.oldest_dirty, b.due),
                "round {round}"
            );
        }
    }

    #[test]
    fn records_younger_than_min_compaction_lag_wait_for_it() {
        let t = NOW - 60_000;
        let batches = vec![batch(0, &[(Some("a"), Some("1"), t), (Some("a"), Some("2"), t)], 0)];
        let mut files = Files::default();
        let mut st = state_with(&batches, &mut files);
        let c = Compaction {
            min_lag_ms: 120_000,
            ..Compaction::default()
        };
        st.set_compaction(PartitionId(7), Some(c));
        assert_eq!(
            st.plan_compaction(RaftIndex(100), NOW),
            None,
            "younger than min.compaction.lag.ms"
        );
        assert_eq!(st.compaction_wake_ms(), Some(t + 120_000), "woken when the lag ends");
        compact_all(&mut st, &mut files, t + 120_000);
        let (records, ranges) = read_back(&st, &files);
        assert_eq!(records, vec![(1, "a".to_string(), Some("2".to_string()))]);
        assert_eq!(ranges, vec![(0, 1)]);
    }
}
