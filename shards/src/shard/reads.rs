//! The read path of a shard: a fetch's batches come from the read cache
//! (what was just written), the read-ahead (what a consumer behind the
//! tail will ask for next) or the WAL, every read issued at once.

use bytes::{Bytes, BytesMut};
use glommio::io::ReadResult;

use super::{PartitionRead, Shard, ShardError};
use crate::partition::{IndexEntry, Partition};
use crate::read_ahead::Lookup;
use crate::types::{Offset, PartitionId};
use crate::wal::{Disk, WalError, WalPos, WalReader};

/// Part of a partition's read: in memory, a read-ahead still reading, or a
/// WAL read in flight.
enum Piece {
    Cached(Bytes),
    Ahead(glommio::Task<Result<Bytes, WalError>>),
    Disk(glommio::Task<Result<ReadResult, WalError>>),
}

impl Shard {
    /// Reads committed batches of several partitions, in order: each from
    /// its offset, up to its own limit, and all together up to about
    /// `budget` bytes (the first batch found always goes, as KIP-74
    /// requires; partitions after the budget is spent return no records).
    /// Every WAL read of every partition is issued at once.
    pub async fn read_many(
        &self,
        reads: &[(PartitionId, Offset, usize)],
        budget: usize,
    ) -> Vec<Result<PartitionRead, ShardError>> {
        if !self.is_leader() {
            // Kafka clients fetch from leaders; a follower's data is not
            // theirs to read.
            return reads.iter().map(|_| Err(ShardError::NotLeader)).collect();
        }
        let mut plans = Vec::with_capacity(reads.len());
        let mut read_ahead = Vec::new();
        {
            let st = self.state.borrow();
            let mut remaining = budget;
            let mut taken_any = false;
            for &(partition, offset, max_bytes) in reads {
                let plan = st.plan_read(partition, offset, max_bytes.min(remaining), !taken_any);
                if let (Ok((batches, _, _)), Some(p)) = (&plan, st.partition(partition)) {
                    let bytes: usize = batches.iter().map(|b| b.len as usize).sum();
                    remaining = remaining.saturating_sub(bytes);
                    taken_any |= bytes > 0;
                    if let Some(next) = self.next_to_read_ahead(p, batches, bytes) {
                        read_ahead.push((partition, next));
                    }
                }
                plans.push(plan.map(|(batches, hw, start)| (partition, batches, hw, start)));
            }
        }
        // Start every read before waiting for any.
        let pending: Vec<_> = plans
            .into_iter()
            .map(|plan| {
                plan.map(|(partition, batches, hw, start)| {
                    let len = batches.iter().map(|b| b.len as usize).sum();
                    (self.start_reads(partition, &batches), batches, len, hw, start)
                })
            })
            .collect();
        for (partition, batches) in read_ahead {
            self.start_read_ahead(partition, batches);
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Err(e) => Err(e),
                Ok((reads, batches, len, high_watermark, log_start)) => {
                    let read = Self::finish_reads(reads, len).await;
                    read.and_then(|records| {
                        check_read(&records, &batches)?;
                        Ok(PartitionRead {
                            high_watermark,
                            log_start,
                            records,
                        })
                    })
                }
            });
        }
        out
    }

    /// Starts reading a partition's planned `batches`: what the read-ahead
    /// holds (or is reading) first, then one WAL read per run of batches
    /// that sit back to back in one segment, unless the read cache has it.
    fn start_reads(&self, partition: PartitionId, batches: &[IndexEntry]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut rest = batches;
        let found = self.ahead.borrow_mut().lookup(partition, batches);
        match found {
            Lookup::Miss => {}
            Lookup::Ready { bytes, covered } => {
                pieces.push(Piece::Cached(bytes));
                rest = &batches[covered..];
            }
            Lookup::Reading { done, covered } => {
                let (ahead, reader) = (self.ahead.clone(), self.reader.clone());
                let mine = batches[..covered].to_vec();
                pieces.push(Piece::Ahead(glommio::spawn_local(async move {
                    let _ = done.recv_async().await;
                    let again = ahead.borrow_mut().lookup(partition, &mine);
                    match again {
                        Lookup::Ready { bytes, covered } if covered == mine.len() => Ok(bytes),
                        // The read failed or was evicted already: read for ourselves.
                        _ => read_batches(reader, &mine).await,
                    }
                })));
                rest = &batches[covered..];
            }
        }
        if !pieces.is_empty() {
            self.ahead.borrow_mut().hits += 1;
        }
        let mut cache = self.cache.borrow_mut();
        pieces.extend(wal_runs(rest).into_iter().map(|(pos, len)| match cache.get(pos, len) {
            Some(bytes) => Piece::Cached(bytes),
            None => {
                let reader = self.reader.clone();
                Piece::Disk(glommio::spawn_local(async move { reader.read(pos, len).await }))
            }
        }));
        pieces
    }

    /// Gathers a partition's reads into one buffer: the only copy of the
    /// data on the read path before the response frame, and none when one
    /// piece in memory holds it all.
    async fn finish_reads(mut pieces: Vec<Piece>, len: usize) -> Result<Bytes, ShardError> {
        if pieces.len() == 1 {
            match pieces.pop().expect("one piece") {
                Piece::Cached(bytes) => return Ok(bytes),
                Piece::Ahead(read) => return Ok(read.await?),
                Piece::Disk(read) => return Ok(Bytes::copy_from_slice(&read.await?)),
            }
        }
        let mut out = BytesMut::with_capacity(len);
        for p in pieces {
            match p {
                Piece::Cached(bytes) => out.extend_from_slice(&bytes),
                Piece::Ahead(read) => out.extend_from_slice(&read.await?),
                Piece::Disk(read) => out.extend_from_slice(&read.await?),
            }
        }
        Ok(out.freeze())
    }

    /// The batches to read ahead after a fetch of `partition` planned
    /// `batches` (`bytes` in all): about as much again, if the fetch left
    /// committed data behind it that neither cache holds yet.
    fn next_to_read_ahead(&self, p: &Partition, batches: &[IndexEntry], bytes: usize) -> Option<Vec<IndexEntry>> {
        let next = Offset(batches.last()?.last.0 + 1);
        if next >= p.high_watermark() {
            return None; // at the tail: the read cache serves it
        }
        let ahead = self.ahead.borrow();
        let want = bytes.min(ahead.run_limit());
        let next_batches = p.committed_batches_from(next, want);
        let first = next_batches.first()?;
        if ahead.covers(p.id, first.pos) || self.cache.borrow().holds(first.pos, first.len as usize) {
            return None;
        }
        Some(next_batches)
    }

    /// Reads `batches` of `partition` into the read-ahead in the background,
    /// if the read-ahead and the budget have room for them now.
    fn start_read_ahead(&self, partition: PartitionId, batches: Vec<IndexEntry>) {
        let len: usize = batches.iter().map(|b| b.len as usize).sum();
        let charge = {
            let mut ahead = self.ahead.borrow_mut();
            if !ahead.make_room(len) {
                return;
            }
            loop {
                match self.budget.try_charge(len as u64) {
                    Some(c) => break c,
                    None if ahead.evict_oldest() => continue,
                    None => return,
                }
            }
        };
        let id = self.ahead.borrow_mut().begin(partition, &batches);
        let (ahead, reader) = (self.ahead.clone(), self.reader.clone());
        glommio::spawn_local(async move {
            match read_batches(reader, &batches).await {
                Ok(data) => ahead.borrow_mut().complete(partition, id, data, charge),
                Err(e) => {
                    // The fetch that wants these batches reads them itself
                    // and reports the error.
                    tracing::trace!(%partition, error = %e, "read-ahead failed");
                    ahead.borrow_mut().abort(partition, id);
                }
            }
        })
        .detach();
    }

    /// Keeps a just-persisted entry for readers, charged to the budget; the
    /// cache gives way (oldest first) when the budget is short.
    pub(super) fn cache_entry(&self, pos: WalPos, payload: &Bytes) {
        let mut cache = self.cache.borrow_mut();
        let charge = loop {
            match self.budget.try_charge(payload.len() as u64) {
                Some(c) => break Some(c),
                None if cache.evict_oldest() => continue,
                None => break None,
            }
        };
        if charge.is_some() {
            cache.insert(pos, payload.clone(), charge);
        }
    }
}

/// The largest single WAL read. The executor's registered I/O memory (a
/// pool reused read after read, pinned once) serves reads of this size;
/// a larger one would get a fresh buffer whose pages the kernel must
/// fault in, zero and pin for every read.
const READ_CHUNK_BYTES: u64 = 1 << 20;

/// The WAL reads that fetch `batches`: runs of batches that sit back to
/// back in one segment, cut at `READ_CHUNK_BYTES` boundaries.
pub(crate) fn wal_runs(batches: &[IndexEntry]) -> Vec<(WalPos, usize)> {
    let mut runs: Vec<(WalPos, usize)> = Vec::new();
    for b in batches {
        match runs.last_mut() {
            Some((pos, len)) if pos.segment == b.pos.segment && pos.offset + *len as u64 == b.pos.offset => {
                *len += b.len as usize
            }
            _ => runs.push((b.pos, b.len as usize)),
        }
    }
    let mut reads = Vec::with_capacity(runs.len());
    for (mut pos, len) in runs {
        let end = pos.offset + len as u64;
        while pos.offset < end {
            let cut = ((pos.offset / READ_CHUNK_BYTES + 1) * READ_CHUNK_BYTES).min(end);
            reads.push((pos, (cut - pos.offset) as usize));
            pos.offset = cut;
        }
    }
    reads
}

/// Reads `batches` from the WAL, all runs at once, into one buffer.
pub async fn read_batches<D: Disk>(reader: WalReader<D>, batches: &[IndexEntry]) -> Result<Bytes, WalError> {
    let reads: Vec<_> = wal_runs(batches)
        .into_iter()
        .map(|(pos, len)| {
            let reader = reader.clone();
            glommio::spawn_local(async move { reader.read(pos, len).await })
        })
        .collect();
    let mut out = BytesMut::with_capacity(batches.iter().map(|b| b.len as usize).sum());
    for read in reads {
        out.extend_from_slice(&read.await?);
    }
    let out = out.freeze();
    check_read(&out, batches)?;
    Ok(out)
}

/// What a read brought back must be the batches the index points at:
/// each starts with its own base offset and length. A bit flipped on the
/// medium or on the way is refused (the client retries), never served:
/// the batch CRC that clients check starts after the base offset, so a
/// flipped offset would pass it and send a consumer to the wrong place.
fn check_read(bytes: &[u8], batches: &[IndexEntry]) -> Result<(), WalError> {
    let mut at = 0usize;
    for b in batches {
        let got = bytes
            .get(at..at + b.len as usize)
            .ok_or_else(|| corrupt(b, "short read".into()))?;
        let len = crate::batch::batch_len(got).map_err(|e| corrupt(b, e.to_string()))?;
        let base = crate::batch::base_offset(got);
        if len != b.len as usize || base != b.base.0 {
            return Err(corrupt(
                b,
                format!(
                    "a {len}-byte batch at offset {base} where the index has {} bytes at {}",
                    b.len, b.base
                ),
            ));
        }
        at += b.len as usize;
    }
    Ok(())
}

fn corrupt(b: &IndexEntry, why: String) -> WalError {
    WalError::Read(b.pos.segment, format!("batch at offset {}: {why}", b.base))
}
