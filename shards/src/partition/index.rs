//! A partition's offset index: where each stored batch is. The newest
//! entries sit in a plain vector (the tail, where producers append and
//! most consumers read); older ones are frozen into blocks of
//! delta-encoded entries with a summary each (offset range, bytes, largest
//! timestamp), so that a retained batch costs about 10 bytes of memory
//! instead of 48, and retention, timestamp lookups and size questions
//! skip whole blocks by their summaries.
//!
//! Blocks are immutable: a change inside one (a batch moved to a cold
//! file, a run rewritten by compaction, batches pulled from a peer)
//! decodes the blocks it touches and encodes the result again. Such
//! changes are rare and local; appends and trims from the front are not
//! and stay cheap.
//!
//! Entries are dense in offsets (`next.base == prev.last + 1`), so an
//! encoded entry carries no base offset. Per entry, as LEB128 varints:
//! `last - base`, the zigzag delta of the file id from the previous
//! entry's, the byte offset (zigzag delta from where the previous entry
//! ended when in the same file, else absolute), the length, and the
//! zigzag delta of the largest timestamp.

use super::store::{self, Region};
use super::IndexEntry;
use crate::types::{Offset, RaftIndex};
use crate::wal::{is_cold, WalPos};

/// Entries per frozen block: large enough that a block's summary and its
/// allocation cost little per entry, small enough that decoding one to
/// find a batch is a few microseconds. The simulator's workloads store a
/// few dozen batches per partition: there, blocks are tiny, so that its
/// seeds freeze, split and thaw blocks all the time.
const BLOCK: usize = if cfg!(any(test, feature = "sim")) { 4 } else { 128 };

#[derive(Debug)]
struct Block {
    base: Offset,
    last: Offset,
    count: u32,
    bytes: u64,
    max_timestamp_ms: i64,
    /// Every batch of the block is in a cold file.
    all_cold: bool,
    /// The file every batch of the block is in, if they share one (as a
    /// partition's run in a cold file does): the block's bytes count
    /// against that file without decoding.
    one_file: Option<RaftIndex>,
    data: BlockData,
}

/// A block's encoded entries: in the shard's index files when it has
/// them (`store`), else in the heap.
#[derive(Debug)]
enum BlockData {
    Heap(Box<[u8]>),
    Stored(Region),
}

impl BlockData {
    fn place(data: Vec<u8>) -> BlockData {
        match store::put(&data) {
            Some(region) => BlockData::Stored(region),
            None => BlockData::Heap(data.into_boxed_slice()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            BlockData::Heap(b) => b,
            BlockData::Stored(r) => r.bytes(),
        }
    }

    /// Bytes in the shard's heap.
    fn heap_len(&self) -> usize {
        match self {
            BlockData::Heap(b) => b.len(),
            BlockData::Stored(_) => 0,
        }
    }
}

/// Sorted, dense entries: frozen blocks, then the tail.
#[derive(Debug, Default)]
pub struct OffsetIndex {
    blocks: Vec<Block>,
    tail: Vec<IndexEntry>,
    len: usize,
    bytes: u64,
}

impl OffsetIndex {
    /// An index of `entries` (sorted and dense: the caller checked).
    pub fn from_entries(entries: Vec<IndexEntry>) -> Self {
        let mut index = Self {
            len: entries.len(),
            bytes: entries.iter().map(|e| e.len as u64).sum(),
            tail: entries,
            blocks: Vec::new(),
        };
        index.freeze();
        index
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the batches indexed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of memory the index holds in the heap (its blocks and
    /// vectors; not the pages of index files mapped).
    pub fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.blocks.iter().map(|b| b.data.heap_len()).sum::<usize>()
            + self.tail.capacity() * std::mem::size_of::<IndexEntry>()
    }

    pub fn first(&self) -> Option<IndexEntry> {
        self.iter().next()
    }

    pub fn last(&self) -> Option<IndexEntry> {
        match self.tail.last() {
            Some(e) => Some(*e),
            None => self.blocks.last().and_then(|b| Decoder::new(b).last()),
        }
    }

    /// One past the last indexed offset, if any.
    pub fn end(&self) -> Option<Offset> {
        match self.tail.last() {
            Some(e) => Some(Offset(e.last.0 + 1)),
            None => self.blocks.last().map(|b| Offset(b.last.0 + 1)),
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            index: self,
            block: 0,
            decoder: None,
            tail: 0,
        }
    }

    /// The entries from the first one holding `offset` or a later offset.
    pub fn iter_from(&self, offset: Offset) -> Iter<'_> {
        let block = self.blocks.partition_point(|b| b.last < offset);
        if block == self.blocks.len() {
            return Iter {
                index: self,
                block,
                decoder: None,
                tail: self.tail.partition_point(|e| e.last < offset),
            };
        }
        let mut decoder = Decoder::new(&self.blocks[block]);
        let mut rest = decoder.clone();
        while let Some(e) = decoder.next() {
            if e.last >= offset {
                break;
            }
            rest = decoder.clone();
        }
        Iter {
            index: self,
            block: block + 1,
            decoder: Some(rest),
            tail: 0,
        }
    }

    /// Summaries of the frozen blocks, then the tail's entries as
    /// one-entry spans, in order: what a question about byte totals or
    /// timestamps can answer without decoding.
    pub fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        let blocks = self.blocks.iter().enumerate().map(|(i, b)| Span {
            base: b.base,
            last: b.last,
            bytes: b.bytes,
            max_timestamp_ms: b.max_timestamp_ms,
            all_cold: b.all_cold,
            one_file: b.one_file,
            block: Some(i),
        });
        let tail = self.tail.iter().map(|e| Span {
            base: e.base,
            last: e.last,
            bytes: e.len as u64,
            max_timestamp_ms: e.max_timestamp_ms,
            all_cold: is_cold(e.pos.segment),
            one_file: Some(e.pos.segment),
            block: None,
        });
        blocks.chain(tail)
    }

    /// The bytes of the leading batches that are in cold files, as
    /// (file, bytes) items to add up: one per frozen block whose batches
    /// share a file, one per batch elsewhere. A look at how much of each
    /// cold file is live costs a block's summary, not its 128 entries.
    pub fn cold_bytes(&self) -> impl Iterator<Item = (RaftIndex, u64)> + '_ {
        let (whole, rest) = self.cold_prefix();
        let by_block = whole.iter().flat_map(|b| {
            let each = b.one_file.is_none().then(|| Decoder::new(b)).into_iter().flatten();
            b.one_file
                .map(|f| (f, b.bytes))
                .into_iter()
                .chain(each.map(|e| (e.pos.segment, e.len as u64)))
        });
        by_block.chain(rest.map(|e| (e.pos.segment, e.len as u64)))
    }

    /// The leading batches that are in cold file `file`, skipping blocks
    /// whose batches are all in another file unread: a replica pulling a
    /// snapshot asks after its batches not held yet (`REMOTE`) every round,
    /// behind all those it pulled.
    pub fn cold_in(&self, file: RaftIndex) -> impl Iterator<Item = IndexEntry> + '_ {
        let (whole, rest) = self.cold_prefix();
        whole
            .iter()
            .filter(move |b| b.one_file.is_none_or(|f| f == file))
            .flat_map(Decoder::new)
            .chain(rest)
            .filter(move |e| e.pos.segment == file)
    }

    /// The batches in cold files, which lead the index: the frozen blocks
    /// wholly cold, then the cold ones after them, decoded.
    fn cold_prefix(&self) -> (&[Block], impl Iterator<Item = IndexEntry> + '_) {
        let whole = self.blocks.iter().take_while(|b| b.all_cold).count();
        let rest_from = match self.blocks.get(whole) {
            Some(b) => Some(b.base),
            None => self.tail.first().map(|e| e.base),
        };
        let rest = rest_from
            .into_iter()
            .flat_map(|from| self.iter_from(from))
            .take_while(|e| is_cold(e.pos.segment));
        (&self.blocks[..whole], rest)
    }

    /// The entries of a span (`spans()`), decoded.
    pub fn entries_of(&self, span: &Span) -> Vec<IndexEntry> {
        match span.block {
            Some(i) => Decoder::new(&self.blocks[i]).collect(),
            None => self.tail.iter().filter(|e| e.base == span.base).copied().collect(),
        }
    }

    /// Appends an entry; its offsets continue the index (the caller checked).
    pub fn push(&mut self, entry: IndexEntry) {
        self.len += 1;
        self.bytes += entry.len as u64;
        self.tail.push(entry);
        if self.tail.len() >= 2 * BLOCK {
            self.freeze();
        }
    }

    /// Drops the entries wholly below `offset`. Returns their bytes.
    pub fn remove_below(&mut self, offset: Offset) -> u64 {
        let whole = self.blocks.partition_point(|b| b.last < offset);
        let mut gone = 0u64;
        for b in self.blocks.drain(..whole) {
            gone += b.bytes;
            self.len -= b.count as usize;
        }
        match self.blocks.first_mut() {
            // Part of the first block goes: it is encoded again without it
            // (what is left of it is not empty: it ends at `offset` or later).
            Some(b) if b.base < offset => {
                let keep: Vec<IndexEntry> = Decoder::new(b).filter(|e| e.last >= offset).collect();
                gone += b.bytes - keep.iter().map(|e| e.len as u64).sum::<u64>();
                self.len -= b.count as usize - keep.len();
                *b = Block::encode(&keep);
            }
            Some(_) => {}
            None => {
                let n = self.tail.partition_point(|e| e.last < offset);
                gone += self.tail.drain(..n).map(|e| e.len as u64).sum::<u64>();
                self.len -= n;
            }
        }
        self.bytes -= gone;
        gone
    }

    /// Drops the entries from the one that starts at `offset` or later on.
    /// Returns their bytes.
    pub fn remove_from(&mut self, offset: Offset) -> u64 {
        let first = self.blocks.partition_point(|b| b.last < offset);
        if first < self.blocks.len() {
            self.thaw(first);
        }
        let keep = self.tail.partition_point(|e| e.base < offset);
        let n = self.tail.len() - keep;
        let gone: u64 = self.tail.drain(keep..).map(|e| e.len as u64).sum();
        self.bytes -= gone;
        self.len -= n;
        self.freeze();
        gone
    }

    /// Replaces the `count` entries starting with the one based at `base`
    /// by what `edit` makes of them (the same offsets, densely: the caller
    /// checks what it needs to). Decodes and encodes only the blocks the
    /// entries are in. Returns false, changing nothing, when `edit` does.
    pub fn edit(&mut self, base: Offset, count: usize, edit: impl FnOnce(&mut Vec<IndexEntry>) -> bool) -> bool {
        let first = self.blocks.partition_point(|b| b.last < base);
        // The run of blocks (and perhaps the tail) the entries are in.
        let mut entries = Vec::new();
        let mut end_block = first;
        let mut from_tail = 0;
        let mut at = None;
        while entries.len() < at.unwrap_or(usize::MAX).saturating_add(count) {
            if end_block < self.blocks.len() {
                entries.extend(Decoder::new(&self.blocks[end_block]));
                end_block += 1;
            } else if from_tail < self.tail.len() {
                entries.extend_from_slice(&self.tail[from_tail..]);
                from_tail = self.tail.len();
            } else {
                break;
            }
            if at.is_none() {
                at = entries.iter().position(|e| e.base == base);
            }
        }
        let Some(at) = at else { return false };
        if entries.len() < at + count {
            return false;
        }
        let mut run: Vec<IndexEntry> = entries[at..at + count].to_vec();
        if !edit(&mut run) {
            return false;
        }
        let old: u64 = entries[at..at + count].iter().map(|e| e.len as u64).sum();
        let new: u64 = run.iter().map(|e| e.len as u64).sum();
        self.bytes = self.bytes - old + new;
        let added = run.len();
        entries.splice(at..at + count, run);
        self.len = self.len - count + added;
        if from_tail > 0 {
            // The tail was reached: everything from the first block on is
            // the new tail, frozen again below.
            self.blocks.truncate(first);
            self.tail = entries;
            self.freeze();
        } else {
            let blocks: Vec<Block> = entries.chunks(BLOCK).map(Block::encode).collect();
            self.blocks.splice(first..end_block, blocks);
        }
        true
    }

    /// Writes the blocks stored in `files` (`store::sparse_files`) again,
    /// where the store puts new ones, so that those files can go. Returns
    /// how many blocks moved.
    pub fn relocate(&mut self, files: &[u64]) -> usize {
        let mut moved = 0;
        for b in &mut self.blocks {
            if let BlockData::Stored(r) = &b.data {
                if files.contains(&r.file()) {
                    b.data = BlockData::place(r.bytes().to_vec());
                    moved += 1;
                }
            }
        }
        moved
    }

    /// Decodes the blocks from `from` on back into the tail.
    fn thaw(&mut self, from: usize) {
        let mut entries = Vec::new();
        for b in self.blocks.drain(from..) {
            entries.extend(Decoder::new(&b));
        }
        entries.append(&mut self.tail);
        self.tail = entries;
    }

    /// Freezes the tail's oldest entries into blocks, keeping at least one
    /// block's worth (and fewer than two) plain.
    fn freeze(&mut self) {
        if self.tail.len() < 2 * BLOCK {
            return;
        }
        let frozen = (self.tail.len() / BLOCK - 1) * BLOCK;
        self.blocks.extend(self.tail[..frozen].chunks(BLOCK).map(Block::encode));
        self.tail.drain(..frozen);
        self.tail.shrink_to(2 * BLOCK);
    }
}

/// A frozen block's summary or a tail entry (`OffsetIndex::spans`).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub base: Offset,
    pub last: Offset,
    pub bytes: u64,
    pub max_timestamp_ms: i64,
    /// Every batch of the span is in a cold file.
    pub all_cold: bool,
    /// The file every batch of the span is in, if they share one.
    pub one_file: Option<RaftIndex>,
    block: Option<usize>,
}

pub struct Iter<'a> {
    index: &'a OffsetIndex,
    /// The next block to decode once `decoder` runs out.
    block: usize,
    decoder: Option<Decoder<'a>>,
    /// The next tail entry, once the blocks ran out.
    tail: usize,
}

impl Iterator for Iter<'_> {
    type Item = IndexEntry;

    fn next(&mut self) -> Option<IndexEntry> {
        loop {
            if let Some(e) = self.decoder.as_mut().and_then(|d| d.next()) {
                return Some(e);
            }
            if self.block < self.index.blocks.len() {
                self.decoder = Some(Decoder::new(&self.index.blocks[self.block]));
                self.block += 1;
                continue;
            }
            self.decoder = None;
            let e = self.index.tail.get(self.tail).copied();
            self.tail += 1;
            return e;
        }
    }
}

impl Block {
    fn encode(entries: &[IndexEntry]) -> Block {
        assert!(!entries.is_empty(), "an index block holds entries");
        let mut data = Vec::with_capacity(entries.len() * 12);
        encode_entries(entries, &mut data);
        Block {
            base: entries[0].base,
            last: entries[entries.len() - 1].last,
            count: entries.len() as u32,
            bytes: entries.iter().map(|e| e.len as u64).sum(),
            max_timestamp_ms: entries.iter().map(|e| e.max_timestamp_ms).max().unwrap_or(i64::MIN),
            all_cold: entries.iter().all(|e| is_cold(e.pos.segment)),
            one_file: Some(entries[0].pos.segment).filter(|&f| entries.iter().all(|e| e.pos.segment == f)),
            data: BlockData::place(data),
        }
    }
}

/// What the next entry of a block is encoded against.
#[derive(Debug, Clone, Copy, Default)]
struct Prev {
    segment: u64,
    /// Where the previous entry's bytes end in its file.
    end: u64,
    timestamp_ms: i64,
}

impl Prev {
    fn after(e: &IndexEntry) -> Prev {
        Prev {
            segment: e.pos.segment.0,
            end: e.pos.offset.wrapping_add(e.len as u64),
            timestamp_ms: e.max_timestamp_ms,
        }
    }
}

#[derive(Debug, Clone)]
struct Decoder<'a> {
    data: &'a [u8],
    left: u32,
    next_base: Offset,
    prev: Prev,
}

impl<'a> Decoder<'a> {
    fn new(block: &'a Block) -> Self {
        Decoder::of(block.data.bytes(), block.count, block.base)
    }

    fn of(data: &'a [u8], count: u32, base: Offset) -> Self {
        Decoder {
            data,
            left: count,
            next_base: base,
            prev: Prev::default(),
        }
    }

    fn take(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for (i, &b) in self.data.iter().enumerate().take(10) {
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                self.data = &self.data[i + 1..];
                return Ok(v);
            }
        }
        Err("a varint runs past its end")
    }

    /// The next entry; what does not decode is an error (checkpoint bytes
    /// come from disk).
    fn step(&mut self) -> Result<Option<IndexEntry>, &'static str> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let base = self.next_base;
        let last = i64::try_from(self.take()?)
            .ok()
            .and_then(|span| base.0.checked_add(span))
            .filter(|&l| l < i64::MAX)
            .ok_or("a batch's offsets run past the offset range")?;
        let segment = self.prev.segment.wrapping_add(unzigzag(self.take()?) as u64);
        let offset = if segment == self.prev.segment {
            self.prev.end.wrapping_add(unzigzag(self.take()?) as u64)
        } else {
            self.take()?
        };
        let len = u32::try_from(self.take()?).map_err(|_| "a batch length past 4 GiB")?;
        let max_timestamp_ms = self.prev.timestamp_ms.wrapping_add(unzigzag(self.take()?));
        let e = IndexEntry {
            base,
            last: Offset(last),
            pos: WalPos {
                segment: RaftIndex(segment),
                offset,
            },
            len,
            max_timestamp_ms,
        };
        self.prev = Prev::after(&e);
        self.next_base = Offset(last + 1);
        Ok(Some(e))
    }
}

impl Iterator for Decoder<'_> {
    type Item = IndexEntry;

    fn next(&mut self) -> Option<IndexEntry> {
        match self.step() {
            Ok(e) => e,
            // Blocks in memory are this module's own encoding.
            Err(why) => panic!("an offset index block in memory does not decode: {why}"),
        }
    }
}

/// Appends the encoding of `entries` (dense: each based at the previous
/// one's last + 1) to `out`: what a checkpoint stores, as a block does.
pub fn encode_entries(entries: &[IndexEntry], out: &mut Vec<u8>) {
    let mut prev = Prev::default();
    for (i, e) in entries.iter().enumerate() {
        assert!(
            e.last >= e.base && (i == 0 || e.base.0 == entries[i - 1].last.0 + 1),
            "index entries to encode are dense: {e:?} after {:?}",
            entries.get(i.wrapping_sub(1))
        );
        put(out, (e.last.0 - e.base.0) as u64);
        put(out, zigzag(e.pos.segment.0.wrapping_sub(prev.segment) as i64));
        if e.pos.segment.0 == prev.segment {
            put(out, zigzag(e.pos.offset.wrapping_sub(prev.end) as i64));
        } else {
            put(out, e.pos.offset);
        }
        put(out, e.len as u64);
        put(out, zigzag(e.max_timestamp_ms.wrapping_sub(prev.timestamp_ms)));
        prev = Prev::after(e);
    }
}

/// `count` entries from `data` (bytes from disk: all of it is checked),
/// the first based at `base`.
pub fn decode_entries(data: &[u8], count: u32, base: Offset) -> Result<Vec<IndexEntry>, String> {
    let mut d = Decoder::of(data, count, base);
    let mut out = Vec::with_capacity((count as usize).min(data.len()));
    while let Some(e) = d.step().map_err(|why| why.to_string())? {
        out.push(e);
    }
    if !d.data.is_empty() {
        return Err(format!("{} bytes past the last index entry", d.data.len()));
    }
    Ok(out)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn random_entries(rng: &mut Rng, n: usize, start: i64) -> Vec<IndexEntry> {
        let mut out = Vec::with_capacity(n);
        let mut base = start;
        let (mut segment, mut offset, mut ts) = (1 + rng.below(3), 0u64, 1_700_000_000_000i64);
        // Often a partition's oldest batches are in cold files, a run per file.
        let cold_prefix = if rng.below(3) == 0 {
            rng.below(n as u64 + 1) as usize
        } else {
            0
        };
        for i in 0..n {
            let most = if rng.below(4) == 0 { 5000 } else { 20 };
            let count = 1 + rng.below(most) as i64;
            let len = 70 + rng.below(1 << 20) as u32;
            if rng.below(20) == 0 {
                segment += 1 + rng.below(2);
                offset = rng.below(1 << 20) * 4096;
            }
            ts += rng.below(2000) as i64 - 500;
            let cold = i < cold_prefix || rng.below(50) == 0;
            out.push(IndexEntry {
                base: Offset(base),
                last: Offset(base + count - 1),
                pos: WalPos {
                    segment: RaftIndex(if cold { crate::wal::COLD_BASE + segment } else { segment }),
                    offset,
                },
                len,
                max_timestamp_ms: if rng.below(100) == 0 { i64::MIN + 1 } else { ts },
            });
            offset += len as u64 + rng.below(3) * rng.below(1 << 16);
            base += count;
        }
        out
    }

    fn check(index: &OffsetIndex, model: &[IndexEntry]) {
        let all: Vec<IndexEntry> = index.iter().collect();
        assert_eq!(all, model);
        assert_eq!(index.len(), model.len());
        assert_eq!(index.bytes(), model.iter().map(|e| e.len as u64).sum::<u64>());
        assert_eq!(index.first(), model.first().copied());
        assert_eq!(index.last(), model.last().copied());
        let spans: Vec<Span> = index.spans().collect();
        let decoded: Vec<IndexEntry> = spans.iter().flat_map(|s| index.entries_of(s)).collect();
        assert_eq!(decoded, model);
        for s in &spans {
            let of = index.entries_of(s);
            assert_eq!(s.bytes, of.iter().map(|e| e.len as u64).sum::<u64>());
            assert_eq!(Some(s.max_timestamp_ms), of.iter().map(|e| e.max_timestamp_ms).max());
            assert_eq!((s.base, s.last), (of[0].base, of[of.len() - 1].last));
            assert_eq!(s.all_cold, of.iter().all(|e| is_cold(e.pos.segment)));
            let files: std::collections::BTreeSet<RaftIndex> = of.iter().map(|e| e.pos.segment).collect();
            assert_eq!(s.one_file, (files.len() == 1).then(|| of[0].pos.segment));
        }
        let mut cold = std::collections::BTreeMap::new();
        for e in model.iter().take_while(|e| is_cold(e.pos.segment)) {
            *cold.entry(e.pos.segment).or_insert(0u64) += e.len as u64;
        }
        let mut summed = std::collections::BTreeMap::new();
        for (file, bytes) in index.cold_bytes() {
            *summed.entry(file).or_insert(0u64) += bytes;
        }
        assert_eq!(summed, cold);
        for file in cold.keys() {
            let want: Vec<IndexEntry> = model
                .iter()
                .take_while(|e| is_cold(e.pos.segment))
                .filter(|e| e.pos.segment == *file)
                .copied()
                .collect();
            assert_eq!(index.cold_in(*file).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn every_operation_matches_a_plain_vector() {
        every_operation_matches(7, None);
    }

    /// The same with blocks in index files, relocated now and then.
    #[test]
    fn every_operation_matches_a_plain_vector_with_blocks_in_files() {
        let dir = std::env::temp_dir().join(format!("corestream-index-model-{}", std::process::id()));
        store::install(&dir).unwrap();
        every_operation_matches(8, Some(&dir));
        store::uninstall();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn every_operation_matches(seed: u64, dir: Option<&std::path::Path>) {
        let mut rng = Rng::new(seed);
        for round in 0..60 {
            let (n, start) = (rng.below(1500) as usize, rng.below(1000) as i64);
            let mut model = random_entries(&mut rng, n, start);
            let mut index = OffsetIndex::from_entries(model.clone());
            check(&index, &model);
            for _ in 0..40 {
                let end = model.last().map_or(0, |e| e.last.0 + 1);
                let start = model.first().map_or(end, |e| e.base.0);
                let pick = |rng: &mut Rng| start + rng.below((end - start + 1) as u64) as i64;
                match rng.below(6) {
                    0 => {
                        let n = rng.below(400) as usize;
                        let more = random_entries(&mut rng, n, end);
                        for e in more {
                            index.push(e);
                            model.push(e);
                        }
                    }
                    1 => {
                        let at = Offset(pick(&mut rng));
                        let n = model.partition_point(|e| e.last < at);
                        let gone: u64 = model.drain(..n).map(|e| e.len as u64).sum();
                        assert_eq!(index.remove_below(at), gone);
                    }
                    2 => {
                        let at = Offset(pick(&mut rng));
                        let n = model.partition_point(|e| e.base < at);
                        let gone: u64 = model.drain(n..).map(|e| e.len as u64).sum();
                        assert_eq!(index.remove_from(at), gone);
                    }
                    3 if !model.is_empty() => {
                        // A run re-encoded as fewer batches over the same
                        // offsets (compaction), or moved (reclaim).
                        let i = rng.below(model.len() as u64) as usize;
                        let n = 1 + rng.below((model.len() - i).min(300) as u64) as usize;
                        let merged = IndexEntry {
                            base: model[i].base,
                            last: model[i + n - 1].last,
                            pos: WalPos {
                                segment: RaftIndex(crate::wal::COLD_BASE + 9),
                                offset: rng.below(1 << 30),
                            },
                            len: 100,
                            max_timestamp_ms: 5,
                        };
                        assert!(index.edit(model[i].base, n, |run| {
                            assert_eq!(run[..], model[i..i + n]);
                            *run = vec![merged];
                            true
                        }));
                        model.splice(i..i + n, [merged]);
                    }
                    4 if dir.is_some() && rng.below(3) == 0 => {
                        // Every file but the one being filled.
                        let last = store::stats().files + 100;
                        let files: Vec<u64> = (0..last).collect();
                        let stored = index
                            .blocks
                            .iter()
                            .filter(|b| matches!(b.data, BlockData::Stored(_)))
                            .count();
                        assert!(index.relocate(&files) <= stored);
                    }
                    4 if !model.is_empty() => {
                        let i = rng.below(model.len() as u64) as usize;
                        assert!(!index.edit(model[i].base, model.len() - i + 1, |_| true), "too many");
                        assert!(!index.edit(model[i].base, 1, |_| false), "refused by the edit");
                    }
                    _ => {
                        let at = Offset(pick(&mut rng));
                        let from: Vec<IndexEntry> = index.iter_from(at).collect();
                        let n = model.partition_point(|e| e.last < at);
                        assert_eq!(from, model[n..], "round {round}: from {at}");
                    }
                }
                check(&index, &model);
            }
            if let Some(dir) = dir {
                let heap = index
                    .blocks
                    .iter()
                    .filter(|b| matches!(b.data, BlockData::Heap(_)))
                    .count();
                assert_eq!(heap, 0, "every block in a file");
                let st = store::stats();
                assert_eq!(st.files as usize, std::fs::read_dir(dir).unwrap().count());
            }
        }
    }

    #[test]
    fn an_entry_costs_about_ten_bytes_frozen() {
        let mut rng = Rng::new(3);
        // A partition among many in a WAL: its batches 1-64 KiB apart.
        let mut entries = Vec::new();
        let (mut offset, mut ts) = (0u64, 1_700_000_000_000i64);
        for i in 0..100_000i64 {
            let len = 16_000 + rng.below(1000) as u32;
            entries.push(IndexEntry {
                base: Offset(i * 16),
                last: Offset(i * 16 + 15),
                pos: WalPos {
                    segment: RaftIndex(1 + (offset >> 26)),
                    offset: offset & ((1 << 26) - 1),
                },
                len,
                max_timestamp_ms: ts,
            });
            offset += len as u64 + rng.below(64 << 10);
            ts += rng.below(30) as i64;
        }
        // Blocks as a release build makes them (tests use tiny ones).
        let blocks: Vec<Block> = entries.chunks(128).map(Block::encode).collect();
        let bytes =
            blocks.len() * std::mem::size_of::<Block>() + blocks.iter().map(|b| b.data.bytes().len()).sum::<usize>();
        let per_entry = bytes as f64 / entries.len() as f64;
        assert!(per_entry < 11.0, "{per_entry:.1} bytes per entry");
        drop(blocks);

        // With index files, the heap keeps a block's summary and handle.
        let dir = std::env::temp_dir().join(format!("corestream-index-cost-{}", std::process::id()));
        store::install(&dir).unwrap();
        let blocks: Vec<Block> = entries.chunks(128).map(Block::encode).collect();
        let heap =
            blocks.len() * std::mem::size_of::<Block>() + blocks.iter().map(|b| b.data.heap_len()).sum::<usize>();
        let per_entry = heap as f64 / entries.len() as f64;
        assert!(per_entry < 1.0, "{per_entry:.2} bytes of heap per entry");
        let decoded: Vec<IndexEntry> = blocks.iter().flat_map(Decoder::new).collect();
        assert_eq!(decoded, entries);
        drop(blocks);
        store::uninstall();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
