//! The simulator's clients: producers (acks 0, 1 and all; plain and
//! idempotent), consumers that read each partition from its leader, and an
//! admin that creates and deletes partitions. Every record is an 8-byte id
//! unique in the run, so the checker can tell where each one went.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::batch;
use crate::shard::state::Done;
use crate::shard::{Durability, ProduceItem, ShardError};
use crate::test_rng::Rng;
use crate::types::{Offset, PartitionId};

/// The key of record `id`: five keys, so that compacted partitions
/// (`node::compacted`) have records to remove.
pub fn key_of(id: u64) -> u8 {
    (id % 5) as u8
}

/// A Kafka RecordBatch (magic 2, uncompressed) whose records hold the ids
/// as their 8-byte values, keyed by `key_of`, with a valid CRC.
pub fn make_batch(ids: &[u64], producer: Option<(i64, i16, i32)>, timestamp_ms: i64) -> Bytes {
    let mut b = vec![0u8; batch::HEADER_BYTES];
    for (i, id) in ids.iter().enumerate() {
        // length, attributes, timestamp delta 0, offset delta, key (1
        // byte), value (8 bytes), no headers; zigzag varints.
        let body = [0u8, 0, (i as u8) << 1, 2, key_of(*id), 16];
        b.push(((body.len() + 8 + 1) as u8) << 1);
        b.extend_from_slice(&body);
        b.extend_from_slice(&id.to_be_bytes());
        b.push(0);
    }
    let body = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&body.to_be_bytes());
    b[16] = 2; // magic
    b[23..27].copy_from_slice(&(ids.len() as i32 - 1).to_be_bytes());
    b[27..35].copy_from_slice(&timestamp_ms.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    b[57..61].copy_from_slice(&(ids.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// What a consumer makes of fetched bytes: `(offset, id)` of each record
/// and the offset after the last batch (a compacted batch's range may
/// reach past its last record), or why the bytes are not batches (as a
/// Kafka client checks CRCs).
pub fn parse_batches(mut bytes: &[u8]) -> Result<(Vec<(Offset, u64)>, Offset), String> {
    use crate::records::{self, Header};
    let mut out = Vec::new();
    let mut end = Offset(0);
    while !bytes.is_empty() {
        let len = batch::batch_len(bytes).map_err(|e| e.to_string())?;
        let b = bytes.get(..len).ok_or("a batch runs past the read")?;
        batch::validate_stored(b).map_err(|e| e.to_string())?;
        let h = Header::parse(b).map_err(|e| e.to_string())?;
        let plain = records::decompress(b, &h).map_err(|e| e.to_string())?;
        for r in records::parse(&plain, h.count).map_err(|e| e.to_string())? {
            let value = r.value.ok_or("a record without a value")?;
            let id = u64::from_be_bytes(value.try_into().map_err(|_| "a value of 8 bytes")?);
            if r.key != Some(&[key_of(id)][..]) {
                return Err(format!("record {id:#x} has key {:?}", r.key));
            }
            out.push((Offset(h.base_offset + r.offset_delta), id));
        }
        end = Offset(h.last_offset() + 1);
        bytes = &bytes[len..];
    }
    Ok((out, end))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    Zero,
    One,
    All,
}

/// A produce request on its way.
pub struct Pending {
    pub node: usize,
    /// Where the leader put it, once it answered.
    pub base: Option<Offset>,
    pub done: Option<Done>,
    pub sent_ms: u64,
}

/// One producer: one request in flight at a time (the idempotent producer
/// of Kafka with max.in.flight 1, or a plain one).
pub struct Producer {
    pub client: u64,
    pub acks: Acks,
    pub idempotent: bool,
    pub partition: PartitionId,
    /// The batch being sent (retries send the same bytes), its ids.
    pub batch: Option<(Bytes, Vec<u64>)>,
    pub pending: Option<Pending>,
    /// Next sequence per partition (idempotent producers).
    pub seq: BTreeMap<PartitionId, i32>,
    pub leader_guess: Option<usize>,
    pub next_record: u64,
}

/// What a produce attempt came to.
pub enum Outcome {
    /// Acknowledged: these ids sit at these offsets, as durable as `acks`.
    Acked(Vec<(Offset, u64)>),
    /// Try again (another node, later).
    Retry,
    /// The partition is gone: give the batch up.
    GiveUp,
    Waiting,
}

/// How long a producer waits for an answer before it retries.
pub const REQUEST_TIMEOUT_MS: u64 = 3_000;

impl Producer {
    pub fn new(client: u64, rng: &mut Rng) -> Self {
        let (acks, idempotent) = match rng.below(5) {
            0 => (Acks::Zero, false),
            1 => (Acks::One, false),
            2 => (Acks::All, false),
            _ => (Acks::All, true),
        };
        Self {
            client,
            acks,
            idempotent,
            partition: PartitionId(1),
            batch: None,
            pending: None,
            seq: BTreeMap::new(),
            leader_guess: None,
            next_record: 0,
        }
    }

    pub fn producer_id(&self) -> i64 {
        1000 + self.client as i64
    }

    /// A new batch of 1-3 fresh records for `partition`.
    /// `now_ms`: the client's clock, the batch's timestamp.
    pub fn next_batch(&mut self, partition: PartitionId, rng: &mut Rng, now_ms: u64) {
        self.partition = partition;
        let n = 1 + rng.below(3) as usize;
        let ids: Vec<u64> = (0..n)
            .map(|_| {
                self.next_record += 1;
                (self.client << 40) | self.next_record
            })
            .collect();
        let producer = self.idempotent.then(|| {
            let seq = *self.seq.get(&partition).unwrap_or(&0);
            (self.producer_id(), 0i16, seq)
        });
        self.batch = Some((make_batch(&ids, producer, now_ms as i64), ids));
    }

    pub fn item(&self) -> Option<ProduceItem> {
        let (bytes, ids) = self.batch.as_ref()?;
        Some(ProduceItem {
            partition: self.partition,
            records: bytes.clone(),
            batches: vec![(0, ids.len() as u32)],
        })
    }

    pub fn durability(&self) -> Durability {
        match self.acks {
            Acks::All => Durability::Committed,
            _ => Durability::Persisted,
        }
    }

    /// The answer `produce` gave at once.
    pub fn answered(
        &mut self,
        node: usize,
        result: Result<Offset, ShardError>,
        done: Option<Done>,
        now_ms: u64,
    ) -> Outcome {
        match result {
            Ok(base) if self.acks == Acks::Zero => {
                // Fire and forget: nobody hears of it again.
                let _ = (base, done);
                self.batch = None;
                Outcome::Retry
            }
            Ok(base) => {
                self.pending = Some(Pending {
                    node,
                    base: Some(base),
                    done,
                    sent_ms: now_ms,
                });
                Outcome::Waiting
            }
            Err(ShardError::UnknownPartition(_)) => {
                self.batch = None;
                Outcome::GiveUp
            }
            Err(_) => {
                self.leader_guess = None;
                Outcome::Retry
            }
        }
    }

    /// Looks at the request in flight: acknowledged, failed, or waiting.
    pub fn poll(&mut self, now_ms: u64) -> Outcome {
        let Some(p) = self.pending.as_ref() else {
            return Outcome::Retry;
        };
        let verdict = match &p.done {
            None => Some(Ok(())),
            Some(rx) => match rx.try_recv() {
                Ok(v) => Some(v),
                Err(flume::TryRecvError::Empty) if now_ms < p.sent_ms + REQUEST_TIMEOUT_MS => None,
                // The node crashed, or the request timed out.
                Err(_) => Some(Err(ShardError::Storage("no answer".into()))),
            },
        };
        match verdict {
            None => Outcome::Waiting,
            Some(Ok(())) => {
                let base = p.base.expect("answered with an offset");
                let (_, ids) = self.batch.take().expect("a batch in flight");
                self.pending = None;
                if self.idempotent {
                    *self.seq.entry(self.partition).or_insert(0) += ids.len() as i32;
                }
                Outcome::Acked(
                    ids.into_iter()
                        .enumerate()
                        .map(|(i, id)| (Offset(base.0 + i as i64), id))
                        .collect(),
                )
            }
            Some(Err(_)) => {
                self.pending = None;
                self.leader_guess = None;
                Outcome::Retry
            }
        }
    }
}
