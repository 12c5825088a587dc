//! Idempotent producers (KIP-98 without transactions): per partition and
//! producer id, the producer's epoch and its last few batches' sequence
//! ranges. A retried batch is recognised and answered with the offset it
//! got the first time instead of being written twice; a gap in sequences or
//! a fenced epoch is refused.
//!
//! The leader updates this state when it stages a batch; recovery rebuilds
//! it from the batch headers in the WAL through the same `record`.

use std::collections::{HashMap, VecDeque};

use crate::types::Offset;

/// Batches remembered per producer: Kafka allows 5 in flight with
/// idempotence, so a retry is always among the last 5.
pub const RECENT_BATCHES: usize = 5;

/// Sequences wrap to 0 after i32::MAX.
const SEQ_SPACE: i64 = i32::MAX as i64 + 1;

/// Kafka's `producer.id.expiration.ms` default: a producer that wrote
/// nothing to a partition for a day is forgotten there (its next batch is
/// taken as a new producer's), so producer state does not grow with every
/// producer id a client ever used.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// Producers remembered per partition at most: a new one beyond it evicts
/// the one that wrote least recently (as if it had expired), so that
/// clients opening a new producer per message (KIP-936's case) cannot
/// grow the broker's memory within the expiration day.
pub const MAX_PRODUCERS_PER_PARTITION: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeqRange {
    first: i32,
    last: i32,
    base: Offset,
}

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<SeqRange>,
    /// When its last batch was written here (this broker's clock, ms).
    last_ms: i64,
}

#[derive(Debug, Default)]
pub struct Producers {
    by_id: HashMap<i64, ProducerEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch stored at this base offset: do not append again.
    Duplicate(Offset),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    #[error("producer {producer_id}: sequence {got} out of order, expected {expected}")]
    OutOfOrder { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id}: epoch {got} is older than the current epoch {current}")]
    StaleEpoch { producer_id: i64, current: i16, got: i16 },
}

fn last_seq(first: i32, count: u32) -> i32 {
    ((first as i64 + count as i64 - 1) % SEQ_SPACE) as i32
}

fn next_seq(last: i32) -> i32 {
    ((last as i64 + 1) % SEQ_SPACE) as i32
}

impl Producers {
    /// Forgets batches stored at `offset` or later (a truncated log tail).
    /// A producer left with none is forgotten: its next batch is taken as
    /// from a producer whose state predates the log.
    pub fn forget_from(&mut self, offset: Offset) {
        self.by_id.retain(|_, p| {
            p.recent.retain(|r| r.base < offset);
            !p.recent.is_empty()
        });
    }

    pub fn check(&self, producer_id: i64, epoch: i16, first: i32, count: u32) -> Result<SeqCheck, SeqError> {
        let Some(p) = self.by_id.get(&producer_id) else {
            // Unknown producer (new, or its state predates this log): take it.
            return Ok(SeqCheck::Append);
        };
        if epoch < p.epoch {
            return Err(SeqError::StaleEpoch {
                producer_id,
                current: p.epoch,
                got: epoch,
            });
        }
        if epoch > p.epoch {
            return if first == 0 {
                Ok(SeqCheck::Append)
            } else {
                Err(SeqError::OutOfOrder {
                    producer_id,
                    expected: 0,
                    got: first,
                })
            };
        }
        let last = last_seq(first, count);
        if let Some(dup) = p.recent.iter().find(|r| r.first == first && r.last == last) {
            return Ok(SeqCheck::Duplicate(dup.base));
        }
        let expected = p.recent.back().map_or(first, |r| next_seq(r.last));
        if first != expected {
            return Err(SeqError::OutOfOrder {
                producer_id,
                expected,
                got: first,
            });
        }
        Ok(SeqCheck::Append)
    }

    /// Forgets producers whose last batch is older than `before_ms`;
    /// returns how many.
    pub fn expire(&mut self, before_ms: i64) -> usize {
        let n = self.by_id.len();
        self.by_id.retain(|_, p| p.last_ms >= before_ms);
        n - self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Records an appended batch (after `check` said `Append`, or on
    /// replay), written at `now_ms`. Returns whether a producer was evicted
    /// to make room (`MAX_PRODUCERS_PER_PARTITION`).
    pub fn record(&mut self, producer_id: i64, epoch: i16, first: i32, count: u32, base: Offset, now_ms: i64) -> bool {
        let mut evicted = false;
        if self.by_id.len() >= MAX_PRODUCERS_PER_PARTITION && !self.by_id.contains_key(&producer_id) {
            let oldest = self
                .by_id
                .iter()
                .min_by_key(|(id, p)| (p.last_ms, **id))
                .map(|(&id, _)| id);
            if let Some(id) = oldest {
                self.by_id.remove(&id);
                evicted = true;
            }
        }
        let p = self.by_id.entry(producer_id).or_insert_with(|| ProducerEntry {
            epoch,
            recent: VecDeque::with_capacity(RECENT_BATCHES),
            last_ms: now_ms,
        });
        p.last_ms = p.last_ms.max(now_ms);
        if epoch != p.epoch {
            p.epoch = epoch;
            p.recent.clear();
        }
        if p.recent.len() == RECENT_BATCHES {
            p.recent.pop_front();
        }
        p.recent.push_back(SeqRange {
            first,
            last: last_seq(first, count),
            base,
        });
        evicted
    }
}

/// One producer as a checkpoint stores it: id, epoch, last write (ms) and
/// its recent batches `(first seq, last seq, base offset)`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedProducer {
    pub id: i64,
    pub epoch: i16,
    pub last_ms: i64,
    pub recent: Vec<(i32, i32, Offset)>,
}

impl Producers {
    /// The producers' state as of offset `end` (batches stored at or past
    /// it left out: they are replayed from the log), for a checkpoint.
    pub fn saved_below(&self, end: Offset) -> Vec<SavedProducer> {
        let mut out: Vec<SavedProducer> = self
            .by_id
            .iter()
            .filter_map(|(&id, p)| {
                let recent: Vec<_> = p
                    .recent
                    .iter()
                    .filter(|r| r.base < end)
                    .map(|r| (r.first, r.last, r.base))
                    .collect();
                (!recent.is_empty()).then_some(SavedProducer {
                    id,
                    epoch: p.epoch,
                    last_ms: p.last_ms,
                    recent,
                })
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// Producers as a checkpoint saved them. At most `RECENT_BATCHES`
    /// batches each are kept (the file comes from disk).
    pub fn restore(saved: Vec<SavedProducer>) -> Self {
        let mut by_id = HashMap::with_capacity(saved.len());
        for p in saved {
            let skip = p.recent.len().saturating_sub(RECENT_BATCHES);
            let recent = p.recent[skip..]
                .iter()
                .map(|&(first, last, base)| SeqRange { first, last, base })
                .collect();
            by_id.insert(
                p.id,
                ProducerEntry {
                    epoch: p.epoch,
                    recent,
                    last_ms: p.last_ms,
                },
            );
        }
        Self { by_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_idle_past_the_expiration_are_forgotten() {
        let mut ps = Producers::default();
        ps.record(1, 0, 0, 1, Offset(0), 1_000);
        ps.record(2, 0, 0, 1, Offset(1), 5_000);
        ps.record(1, 0, 1, 1, Offset(2), 900); // a clock that went back keeps the newest
        assert_eq!(ps.expire(1_000), 0);
        assert_eq!(ps.expire(1_001), 1);
        // Forgotten: its next batch is a new producer's, whatever its sequence.
        assert_eq!(ps.check(1, 0, 7, 1), Ok(SeqCheck::Append));
        assert!(
            ps.check(2, 0, 7, 1).is_err(),
            "producer 2 is remembered: a gap is refused"
        );
        assert_eq!(ps.expire(i64::MAX), 1);
        assert!(ps.is_empty());
    }

    #[test]
    fn a_new_producer_beyond_the_limit_evicts_the_least_recent() {
        let mut ps = Producers::default();
        for id in 0..MAX_PRODUCERS_PER_PARTITION as i64 {
            assert!(!ps.record(id, 0, 0, 1, Offset(id), 1_000 + id));
        }
        assert!(
            !ps.record(5, 0, 1, 1, Offset(2_000), 0),
            "a known producer evicts no one"
        );
        assert!(ps.record(-7, 0, 0, 1, Offset(2_001), 9_999));
        assert_eq!(ps.by_id.len(), MAX_PRODUCERS_PER_PARTITION);
        assert!(!ps.by_id.contains_key(&0), "producer 0 wrote least recently");
        assert_eq!(
            ps.check(1, 0, 0, 1),
            Ok(SeqCheck::Duplicate(Offset(1))),
            "the others are remembered"
        );
    }

    #[test]
    fn retries_are_recognised_gaps_and_stale_epochs_refused() {
        let mut ps = Producers::default();
        assert_eq!(ps.check(7, 0, 0, 3), Ok(SeqCheck::Append));
        ps.record(7, 0, 0, 3, Offset(100), 0);
        assert_eq!(ps.check(7, 0, 0, 3), Ok(SeqCheck::Duplicate(Offset(100))));
        assert_eq!(ps.check(7, 0, 3, 2), Ok(SeqCheck::Append));
        ps.record(7, 0, 3, 2, Offset(103), 0);
        assert!(matches!(
            ps.check(7, 0, 9, 1),
            Err(SeqError::OutOfOrder { expected: 5, .. })
        ));
        assert_eq!(ps.check(7, 0, 3, 2), Ok(SeqCheck::Duplicate(Offset(103))));
        assert!(matches!(
            ps.check(7, 1, 4, 1),
            Err(SeqError::OutOfOrder { expected: 0, .. })
        ));
        ps.record(7, 1, 0, 1, Offset(105), 0);
        assert!(matches!(
            ps.check(7, 0, 5, 1),
            Err(SeqError::StaleEpoch { current: 1, .. })
        ));
    }

    #[test]
    fn sequences_wrap_and_only_recent_batches_are_remembered() {
        let mut ps = Producers::default();
        ps.record(1, 0, i32::MAX - 1, 2, Offset(0), 0);
        assert_eq!(ps.check(1, 0, 0, 1), Ok(SeqCheck::Append));
        for i in 0..10 {
            ps.record(1, 0, i, 1, Offset(2 + i as i64), 0);
        }
        assert_eq!(ps.check(1, 0, 9, 1), Ok(SeqCheck::Duplicate(Offset(11))));
        assert!(
            ps.check(1, 0, 2, 1).is_err(),
            "older than the last 5 batches: not a known retry"
        );
    }
}
