//! Recovery scan: find the longest valid prefix of the log.
//!
//! Pure code over bytes, so tests can cut and corrupt a log anywhere without
//! a file system. The I/O side (`segment.rs`) only feeds it chunks.

use super::record::{decode, Decoded, Record, RecordKind, HEADER_BYTES};

/// The block the writer rewrites whole (O_DIRECT alignment).
pub struct Block(pub u64);

impl Block {
    pub fn align_down(&self, v: u64) -> u64 {
        v & !(self.0 - 1)
    }
}

pub const TAIL_BLOCK: Block = Block(4096);

/// Incremental scanner over one segment's bytes.
pub struct Scanner {
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_pos: u64,
    consumed: usize,
    segment_bytes: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A valid record whose payload starts at `payload_pos` in the segment.
    Record { record: Record, payload_pos: u64 },
    /// Feed the bytes at `next_read_pos()` and step again.
    NeedBytes,
    /// The valid log in this segment ends at `valid_end`.
    End { valid_end: u64 },
}

impl Scanner {
    pub fn new(segment_bytes: u64) -> Self {
        Self {
            buf: Vec::new(),
            buf_pos: 0,
            consumed: 0,
            segment_bytes,
        }
    }

    /// A scanner that resumes at `pos` with fresh reads (after a bad
    /// record, to tell a torn write from a read that came back wrong).
    /// `head` is `pos`'s block up to `pos` as the first scan checked it
    /// (its `held`): kept, not read again, since a second read of it could
    /// come back different and `held` is written back to disk.
    pub fn resume(pos: u64, segment_bytes: u64, head: &[u8]) -> Self {
        let start = TAIL_BLOCK.align_down(pos);
        assert_eq!(start + head.len() as u64, pos, "resume's head is the block up to pos");
        Self {
            buf: head.to_vec(),
            buf_pos: start,
            consumed: head.len(),
            segment_bytes,
        }
    }

    /// Whether the scan stopped where the log is zeroes (a clean end, as
    /// the writer leaves it), rather than at bytes that are not a record.
    pub fn at_zeroes(&self) -> bool {
        let rest = self.buf.get(self.consumed..).unwrap_or_default();
        rest.iter().take(HEADER_BYTES).all(|&b| b == 0)
    }

    pub fn next_read_pos(&self) -> u64 {
        self.buf_pos + self.buf.len() as u64
    }

    /// Appends bytes read at `next_read_pos()`. An empty chunk means the
    /// file ends there.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            self.segment_bytes = self.next_read_pos();
            return;
        }
        // Drop what was consumed, except the block the scan is in: the
        // writer rewrites that block's head from `held` after recovery.
        let keep_from = TAIL_BLOCK
            .align_down(self.buf_pos + self.consumed as u64)
            .max(self.buf_pos);
        let done = (keep_from - self.buf_pos) as usize;
        if done > 0 && done * 2 >= self.buf.len() {
            self.buf.drain(..done);
            self.buf_pos += done as u64;
            self.consumed -= done;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The bytes `[from, to)` as the scan read and checked them, if still
    /// held: the head of the last block up to the end of the valid log
    /// (`from` = that end rounded down to `TAIL_BLOCK`) always is.
    pub fn held(&self, from: u64, to: u64) -> Option<&[u8]> {
        let start = from.checked_sub(self.buf_pos)? as usize;
        let end = to.checked_sub(self.buf_pos)? as usize;
        self.buf.get(start..end)
    }

    pub fn step(&mut self) -> Step {
        let pos = self.buf_pos + self.consumed as u64;
        let space_left = self.segment_bytes.saturating_sub(pos);
        match decode(&self.buf[self.consumed..], space_left) {
            Decoded::Record { record, framed } => {
                self.consumed += framed;
                Step::Record {
                    record,
                    payload_pos: pos + HEADER_BYTES as u64,
                }
            }
            Decoded::NeedMore { .. } if self.next_read_pos() < self.segment_bytes => Step::NeedBytes,
            Decoded::NeedMore { .. } | Decoded::Invalid => Step::End { valid_end: pos },
        }
    }
}

/// Checks that entry indexes continue the log: each entry's index is at most
/// one past the last (a lower index is a Raft overwrite of an uncommitted
/// tail). A gap means the bytes are not ours, and the log is cut there.
#[derive(Debug, Default)]
pub struct Continuity {
    last_index: Option<u64>,
}

impl Continuity {
    pub fn starting_after(index: u64) -> Self {
        Self {
            last_index: Some(index),
        }
    }

    pub fn accept(&mut self, r: &Record) -> bool {
        if r.kind == RecordKind::HardState {
            return true;
        }
        if let Some(last) = self.last_index {
            if r.index > last + 1 || r.index == 0 {
                return false;
            }
        }
        self.last_index = Some(r.index);
        true
    }

    pub fn last_index(&self) -> Option<u64> {
        self.last_index
    }
}

/// Scans a whole in-memory segment: the records of its valid prefix and
/// where that prefix ends.
pub fn scan_bytes(bytes: &[u8], continuity: &mut Continuity) -> (Vec<(Record, u64)>, u64) {
    let mut s = Scanner::new(bytes.len() as u64);
    s.feed(bytes);
    let mut out = Vec::new();
    loop {
        match s.step() {
            Step::Record { record, payload_pos } => {
                if !continuity.accept(&record) {
                    return (out, payload_pos - HEADER_BYTES as u64);
                }
                out.push((record, payload_pos));
            }
            Step::NeedBytes => unreachable!("whole segment was fed"),
            Step::End { valid_end } => return (out, valid_end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::RecordRef;
    use super::*;

    fn log_of(n: u64, segment_bytes: usize) -> (Vec<u8>, Vec<usize>) {
        let mut seg = vec![0u8; segment_bytes];
        let mut ends = Vec::new();
        let mut at = 0;
        for i in 1..=n {
            let payload = vec![i as u8; (i * 7 % 50) as usize];
            let r = RecordRef {
                term: 1,
                index: i,
                kind: RecordKind::Entry,
                payload: &payload,
            };
            at += r.encode_into(&mut seg[at..]);
            ends.push(at);
        }
        (seg, ends)
    }

    /// A torn write at any byte of the tail keeps exactly the records that
    /// were wholly written before the cut, and nothing after it.
    #[test]
    fn cut_at_every_byte_of_the_tail_yields_a_prefix() {
        let (seg, ends) = log_of(20, 4096);
        let tail_start = ends[14];
        for cut in tail_start..=ends[19] {
            let mut torn = seg.clone();
            torn[cut..].iter_mut().for_each(|b| *b = 0);
            let (recs, end) = scan_bytes(&torn, &mut Continuity::default());
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(recs.len(), whole, "cut at {cut}");
            assert_eq!(end as usize, if whole == 0 { 0 } else { ends[whole - 1] });
            for (i, (r, _)) in recs.iter().enumerate() {
                assert_eq!(r.index, i as u64 + 1);
            }
        }
    }

    #[test]
    fn flipped_bit_cuts_the_log_at_that_record() {
        let (seg, ends) = log_of(20, 4096);
        for victim in 0..20 {
            let start = if victim == 0 { 0 } else { ends[victim - 1] };
            let mut bad = seg.clone();
            bad[start + 30.min(ends[victim] - start - 1)] ^= 0x10;
            let (recs, end) = scan_bytes(&bad, &mut Continuity::default());
            assert_eq!(recs.len(), victim);
            assert_eq!(end as usize, start);
        }
    }

    #[test]
    fn chunked_feeding_matches_whole_scan() {
        let (seg, ends) = log_of(20, 4096);
        for chunk in [1usize, 7, 64, 4096] {
            let mut s = Scanner::new(seg.len() as u64);
            let mut n = 0;
            loop {
                match s.step() {
                    Step::Record { .. } => n += 1,
                    Step::NeedBytes => {
                        let at = s.next_read_pos() as usize;
                        s.feed(&seg[at..(at + chunk).min(seg.len())]);
                    }
                    Step::End { valid_end } => {
                        assert_eq!(valid_end as usize, ends[19]);
                        break;
                    }
                }
            }
            assert_eq!(n, 20, "chunk {chunk}");
        }
    }

    #[test]
    fn index_gap_cuts_the_log() {
        let mut seg = vec![0u8; 1024];
        let mut at = 0;
        for i in [1u64, 2, 5] {
            let r = RecordRef {
                term: 1,
                index: i,
                kind: RecordKind::Entry,
                payload: b"x",
            };
            at += r.encode_into(&mut seg[at..]);
        }
        let (recs, _) = scan_bytes(&seg, &mut Continuity::default());
        assert_eq!(recs.len(), 2);
    }
}

#[cfg(test)]
mod garbage_tests {
    use super::*;

    /// Bytes from outside the process (a damaged disk) must never panic the
    /// scanner, whatever they are; seeded, so a failure replays.
    #[test]
    fn random_bytes_never_panic_the_scanner() {
        let mut rng = crate::test_rng::Rng::new(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next();
        for round in 0..2000 {
            let len = (next() % 600) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 && len >= 4 {
                // A plausible small length prefix, so decoding gets further.
                let l = (next() % 64) as u32;
                bytes[..4].copy_from_slice(&l.to_le_bytes());
            }
            let (recs, end) = scan_bytes(&bytes, &mut Continuity::default());
            assert!(end as usize <= bytes.len(), "round {round}");
            assert!(recs.len() <= bytes.len() / HEADER_BYTES + 1, "round {round}");
        }
    }
}
