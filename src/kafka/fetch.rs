//! Fetch: whole batches below the high watermark, within `max_bytes` and
//! each partition's `partition_max_bytes` (the first batch always goes, as
//! KIP-74 requires). With less than `min_bytes` available the fetch parks
//! on the partitions' notifications — no polling loop — until new data
//! commits or `max_wait_ms` passes, at most `MAX_PARK` (a client may ask
//! for days; it gets what there is and asks again).
//!
//! Fetch sessions (KIP-227): every fetch is a full fetch. A client asking to
//! open a session gets session id 0, which the protocol defines as "no
//! session"; a non-zero session id gets FETCH_SESSION_ID_NOT_FOUND.

use super::authorized::Caller;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use corestream_shards::{Offset, ShardId};
use futures_lite::future;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use super::{errors, locate};
use crate::controller::PartitionMeta;
use crate::node::broker::{Broker, ReadRequest, ReadResult};
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (4, 12);

/// Upper bound on what one fetch holds in memory, whatever it asks for.
const FETCH_BYTES_MAX: usize = 64 << 20;

struct Wanted {
    topic: usize,
    partition: i32,
    offset: Offset,
    max_bytes: usize,
    /// None for a partition not read: unknown, or its topic not readable.
    loc: Option<PartitionMeta>,
    /// The caller may not read the topic (READ, as Kafka checks).
    denied: bool,
}

pub async fn handle(b: &Rc<Broker>, req: FetchRequest, version: i16, caller: &Caller<'_>) -> FetchResponse {
    if version >= 7 && req.session_id != 0 {
        return FetchResponse::default().with_error_code(errors::FETCH_SESSION_ID_NOT_FOUND);
    }
    let max_bytes = (req.max_bytes.max(0) as usize).min(FETCH_BYTES_MAX);
    let mut topic_names: Vec<TopicName> = Vec::new();
    let mut wanted = Vec::new();
    for t in &req.topics {
        topic_names.push(t.topic.clone());
        let denied = !caller.may_topic(Operation::Read, t.topic.0.as_str());
        for p in &t.partitions {
            wanted.push(Wanted {
                denied,
                topic: topic_names.len() - 1,
                partition: p.partition,
                offset: Offset(p.fetch_offset),
                max_bytes: (p.partition_max_bytes.max(0) as usize).min(max_bytes),
                loc: (!denied).then(|| locate(b, t.topic.0.as_str(), p.partition)).flatten(),
            });
        }
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_PARK);
    let min_bytes = req.min_bytes.max(0) as usize;
    // The response is charged to the budget while it is read and encoded,
    // never while the fetch is parked. One fetch takes at most a quarter of
    // the budget, so a consumer cannot starve the shard's producers.
    let charge_bytes = (max_bytes as u64).min(b.shard.budget.limit_bytes() / 4);
    let mut charge = b.shard.budget.charge(charge_bytes).await;
    let mut results = read_all(b, &wanted, max_bytes).await;
    loop {
        let have: usize = results.iter().flatten().flatten().map(|r| r.records.len()).sum();
        let failed = results.iter().any(|r| !matches!(r, Some(Ok(_))));
        let now = Instant::now();
        if have >= min_bytes || failed || now >= deadline {
            break;
        }
        drop(charge);
        let woken = wait_for_data(b, &wanted, &results, deadline - now).await;
        charge = b.shard.budget.charge(charge_bytes).await;
        if !woken {
            break;
        }
        results = read_all(b, &wanted, max_bytes).await;
    }
    let resp = respond(topic_names, wanted, results, max_bytes, req.isolation_level, version);
    drop(charge);
    resp
}

/// Longest a fetch parks waiting for `min_bytes`, whatever `max_wait_ms`
/// asks: clients wait 500 ms by default and time requests out after 30 s.
const MAX_PARK: Duration = Duration::from_secs(10);

/// Reads every located partition, each owner shard in parallel, each
/// within the response's `max_bytes`.
async fn read_all(b: &Rc<Broker>, wanted: &[Wanted], max_bytes: usize) -> Vec<Option<ReadResult>> {
    let mut by_shard: BTreeMap<ShardId, (Vec<ReadRequest>, Vec<usize>)> = BTreeMap::new();
    for (i, w) in wanted.iter().enumerate() {
        if let Some(loc) = w.loc {
            let (reads, slots) = by_shard.entry(loc.shard_id()).or_default();
            reads.push(ReadRequest {
                partition: loc.partition_id(),
                offset: w.offset,
                max_bytes: w.max_bytes,
            });
            slots.push(i);
        }
    }
    let tasks: Vec<_> = by_shard
        .into_iter()
        .map(|(shard, (reads, slots))| {
            let b = b.clone();
            (
                slots,
                glommio::spawn_local(async move { b.read(shard, reads, max_bytes).await }),
            )
        })
        .collect();
    let mut out: Vec<Option<ReadResult>> = (0..wanted.len()).map(|_| None).collect();
    for (slots, task) in tasks {
        for (i, r) in slots.into_iter().zip(task.await) {
            out[i] = Some(r);
        }
    }
    out
}

/// Parks until a partition commits past what this fetch saw, or `wait`
/// passes. Returns false when there is nothing to wait on.
async fn wait_for_data(b: &Rc<Broker>, wanted: &[Wanted], seen: &[Option<ReadResult>], wait: Duration) -> bool {
    let mut by_shard: BTreeMap<ShardId, Vec<(corestream_shards::PartitionId, Offset)>> = BTreeMap::new();
    for (w, r) in wanted.iter().zip(seen) {
        if let (Some(loc), Some(Ok(read))) = (w.loc, r) {
            by_shard
                .entry(loc.shard_id())
                .or_default()
                .push((loc.partition_id(), read.high_watermark));
        }
    }
    if by_shard.is_empty() {
        glommio::timer::sleep(wait).await;
        return false;
    }
    let (tx, rx) = flume::bounded(1);
    for (shard, watches) in by_shard {
        b.watch(shard, watches, tx.clone()).await;
    }
    drop(tx);
    future::or(
        async {
            let _ = rx.recv_async().await;
            true
        },
        async {
            glommio::timer::sleep(wait).await;
            false
        },
    )
    .await;
    true
}

fn respond(
    topic_names: Vec<TopicName>,
    wanted: Vec<Wanted>,
    results: Vec<Option<ReadResult>>,
    max_bytes: usize,
    isolation_level: i8,
    version: i16,
) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = topic_names
        .into_iter()
        .map(|n| FetchableTopicResponse::default().with_topic(n))
        .collect();
    let mut total = 0usize;
    for (w, r) in wanted.into_iter().zip(results) {
        let mut out = PartitionData::default().with_partition_index(w.partition);
        let r_unknown = r.is_none();
        match r {
            None => {
                out.error_code = if w.denied {
                    errors::TOPIC_AUTHORIZATION_FAILED
                } else {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                };
                out.high_watermark = -1;
            }
            Some(Err(e)) => {
                out.error_code = errors::shard(&e);
                out.high_watermark = -1;
                if let corestream_shards::ShardError::OffsetOutOfRange {
                    high_watermark,
                    log_start,
                    ..
                } = e
                {
                    out.high_watermark = high_watermark.0;
                    if version >= 5 {
                        out.log_start_offset = log_start.0;
                    }
                }
            }
            Some(Ok(read)) => {
                out.high_watermark = read.high_watermark.0;
                out.last_stable_offset = read.high_watermark.0;
                if version >= 5 {
                    out.log_start_offset = read.log_start.0;
                }
                // The response as a whole stays within max_bytes, except
                // that the first data always goes.
                let fits = total == 0 || total + read.records.len() <= max_bytes;
                if fits {
                    total += read.records.len();
                    out.records = Some(read.records);
                } else {
                    out.records = Some(Default::default());
                }
            }
        }
        // None aborted (no transactions yet) under read_committed; the
        // field is null under read_uncommitted for a partition read, and
        // an empty list for one not known, as Kafka sends them.
        out.aborted_transactions = (isolation_level == 1 || r_unknown).then(Vec::new);
        if out.records.is_none() {
            out.records = Some(Default::default());
        }
        topics[w.topic].partitions.push(out);
    }
    FetchResponse::default().with_responses(topics)
}
