//! Produce: validate each partition's batches here (CRC, magic, sizes,
//! max.message.bytes), send each partition's batches to its owner shard,
//! answer per partition. A bad batch fails its partition with a Kafka error
//! code; it never drops the connection. Time the request waited for the
//! shard's memory budget comes back as `throttle_time_ms`.

use super::authorized::Caller;
use std::collections::BTreeMap;
use std::rc::Rc;

use corestream_shards::batch::{self, BatchError};
use corestream_shards::shard::wall_clock_ms;
use corestream_shards::{Durability, ProduceItem, ProduceResult, ShardId};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{errors, locate};
use crate::controller::topic_config;
use crate::node::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub const VERSIONS: (i16, i16) = (3, 11);

/// Where a partition's answer goes: (topic index, partition index).
type Slot = (usize, usize);

/// Returns `None` for acks=0, which gets no response.
pub async fn handle(
    b: &Rc<Broker>,
    req: ProduceRequest,
    version: i16,
    throttle_ms: i32,
    caller: &Caller<'_>,
) -> Option<ProduceResponse> {
    let durability = match req.acks {
        0 | 1 => Some(Durability::Persisted),
        -1 => Some(Durability::Committed),
        _ => None,
    };
    let mut responses: Vec<TopicProduceResponse> = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_base_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    let mut work: BTreeMap<ShardId, (Vec<ProduceItem>, Vec<Slot>)> = BTreeMap::new();
    // As Kafka: a transactional producer needs WRITE on its transactional id
    // before anything else is looked at.
    let transaction_refused = req
        .transactional_id
        .as_ref()
        .is_some_and(|id| !caller.may(Operation::Write, ResourceType::TransactionalId, id.0.as_str()));
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let allowed = !transaction_refused && caller.may_topic(Operation::Write, topic.name.0.as_str());
        let (max_bytes, compacted, stamps) = {
            let meta = b.meta.borrow();
            let t = meta.topic(topic.name.0.as_str());
            (
                t.map(|t| topic_config::max_message_bytes(&t.configs, b.config.limits.message_max_bytes.0)),
                t.is_some_and(|t| topic_config::compaction(&t.configs).is_some()),
                t.map(|t| topic_config::timestamps(&t.configs)),
            )
        };
        for (pi, p) in topic.partition_data.into_iter().enumerate() {
            let out = &mut responses[ti].partition_responses[pi];
            if durability.is_none() {
                out.error_code = errors::INVALID_REQUIRED_ACKS;
                continue;
            }
            if transaction_refused {
                out.error_code = errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
                continue;
            }
            if !allowed {
                out.error_code = errors::TOPIC_AUTHORIZATION_FAILED;
                continue;
            }
            let (Some(max_bytes), Some(loc)) = (max_bytes, locate(b, topic.name.0.as_str(), p.index)) else {
                out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            };
            let mut records = p.records.unwrap_or_default();
            match batch::split_batches(&records, max_bytes) {
                Ok(batches) if batches.len() > 1 => {
                    // Kafka takes exactly one batch per partition from v3 on
                    // (ProduceRequest.validateRecords); clients send one.
                    out.error_code = errors::INVALID_RECORD;
                    if version >= 8 {
                        out.error_message = Some(errors::message(format!(
                            "Produce requests with version {version} may hold exactly one record batch per partition, not {}",
                            batches.len()
                        )));
                    }
                }
                Ok(batches) => {
                    if let Some(why) = compacted.then(|| keyless(&records, &batches)).flatten() {
                        // As Kafka: compaction keeps a record by its key.
                        out.error_code = errors::INVALID_RECORD;
                        if version >= 8 {
                            out.error_message = Some(errors::message(why));
                        }
                        continue;
                    }
                    if let Some(policy) = stamps {
                        let now_ms = wall_clock_ms();
                        match timestamped(&records, &batches, policy, now_ms) {
                            Ok(Some(stamped)) => {
                                records = stamped;
                                out.log_append_time_ms = now_ms;
                            }
                            Ok(None) => {}
                            Err((code, why)) => {
                                out.error_code = code;
                                if version >= 8 {
                                    out.error_message = Some(errors::message(why));
                                }
                                continue;
                            }
                        }
                    }
                    let (items, slots) = work.entry(loc.shard_id()).or_default();
                    items.push(ProduceItem {
                        partition: loc.partition_id(),
                        batches: batches.iter().map(|(at, info)| (*at, info.record_count)).collect(),
                        records,
                    });
                    slots.push((ti, pi));
                }
                Err(e) => reject(out, &e, version),
            }
        }
    }
    let durability = durability.unwrap_or(Durability::Persisted);
    let tasks: Vec<_> = work
        .into_iter()
        .map(|(shard, (items, slots))| {
            let b = b.clone();
            (
                slots,
                glommio::spawn_local(async move { b.produce(shard, items, durability).await }),
            )
        })
        .collect();
    for (slots, task) in tasks {
        let results: Vec<ProduceResult> = task.await;
        for ((ti, pi), r) in slots.into_iter().zip(results) {
            let out = &mut responses[ti].partition_responses[pi];
            match r {
                Ok(appended) => {
                    out.base_offset = appended.base.0;
                    if version >= 5 {
                        out.log_start_offset = appended.log_start.0;
                    }
                }
                Err(e) => {
                    out.error_code = errors::shard(&e);
                    if version >= 8 {
                        out.error_message = Some(errors::message(e.to_string()));
                    }
                }
            }
        }
    }
    if req.acks == 0 {
        return None;
    }
    Some(
        ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_ms),
    )
}

/// Kafka's `message.timestamp.*` on a partition's batches: for a
/// LogAppendTime topic, the batches stamped with `now_ms` (a copy: the
/// request's bytes are shared); for CreateTime, why a batch cannot be
/// taken (the Kafka error code and message), if it cannot.
///
/// A batch's first and largest timestamps are checked always; its records
/// one by one (decompressed where they are compressed) where the topic
/// sets `message.timestamp.before.max.ms` (unbounded by default). That is
/// exact for what clients send: the largest timestamp of a batch bounds
/// its records for `after.max.ms`, but a batch's records need not be in
/// time order, so its first timestamp is not its earliest.
fn timestamped(
    records: &bytes::Bytes,
    batches: &[(usize, batch::BatchInfo)],
    policy: topic_config::Timestamps,
    now_ms: i64,
) -> Result<Option<bytes::Bytes>, (i16, String)> {
    use corestream_shards::records::{self as recs, Header};
    if policy.log_append_time {
        let mut stamped = records.to_vec();
        for &(at, info) in batches {
            batch::stamp_log_append_time(&mut stamped[at..at + info.bytes], now_ms);
        }
        return Ok(Some(stamped.into()));
    }
    // A record without a timestamp (-1) is not checked, as in Kafka.
    const NO_TIMESTAMP: i64 = -1;
    let (earliest, latest) = (
        now_ms.saturating_sub(policy.before_max_ms),
        now_ms.saturating_add(policy.after_max_ms),
    );
    let out_of_range = |t: i64| t != NO_TIMESTAMP && !(earliest..=latest).contains(&t);
    let refuse = |t: i64| {
        (
            errors::INVALID_TIMESTAMP,
            format!(
                "Timestamp {t} of a record is out of range. The timestamp should be within [{earliest}, {latest}] \
                 (message.timestamp.before.max.ms and message.timestamp.after.max.ms)"
            ),
        )
    };
    let each_record = policy.before_max_ms != i64::MAX;
    for &(at, info) in batches {
        let b = &records[at..at + info.bytes];
        if batch::log_append_time(b) {
            return Err((
                errors::INVALID_TIMESTAMP,
                "Invalid timestamp type in a batch: a producer should not set LogAppendTime".into(),
            ));
        }
        if let Some(t) = [info.base_timestamp_ms, info.max_timestamp_ms]
            .into_iter()
            .find(|&t| out_of_range(t))
        {
            return Err(refuse(t));
        }
        if each_record {
            let read = Header::parse(b).and_then(|h| {
                let plain = recs::decompress(b, &h)?;
                let found = recs::parse(&plain, h.count)?
                    .iter()
                    .map(|r| h.base_timestamp.wrapping_add(r.timestamp_delta))
                    .find(|&t| out_of_range(t));
                Ok(found)
            });
            match read {
                Ok(None) => {}
                Ok(Some(t)) => return Err(refuse(t)),
                Err(e) => {
                    return Err((
                        errors::CORRUPT_MESSAGE,
                        format!("the records of a batch do not read: {e}"),
                    ))
                }
            }
        }
    }
    Ok(None)
}

/// Why a batch for a compacted topic cannot be taken: a record without a
/// key, or records that do not read.
fn keyless(records: &[u8], batches: &[(usize, batch::BatchInfo)]) -> Option<String> {
    use corestream_shards::records::{self, Header};
    batches.iter().find_map(|&(at, info)| {
        let b = &records[at..at + info.bytes];
        let read = Header::parse(b).and_then(|h| {
            let plain = records::decompress(b, &h)?;
            let keyless = records::parse(&plain, h.count)?.iter().any(|r| r.key.is_none());
            Ok(keyless)
        });
        match read {
            Ok(false) => None,
            Ok(true) => Some("Compacted topic cannot accept a record without a key".to_string()),
            Err(e) => Some(format!("records of a batch for a compacted topic do not read: {e}")),
        }
    })
}

fn reject(out: &mut PartitionProduceResponse, e: &BatchError, version: i16) {
    out.error_code = errors::batch(e);
    if version >= 8 {
        out.error_message = Some(errors::message(e.to_string()));
    }
}
