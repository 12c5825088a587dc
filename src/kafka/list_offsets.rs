//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4: the log start, as nothing is tiered), latest tiered (-5:
//! none), or the first record at or after a timestamp (found inside its
//! batch by `record_scan`). v10's timeout is for tiered lookups; every
//! answer here is local.

use super::authorized::Caller;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use corestream_shards::{Offset, OffsetQuery, PartitionId, ShardId};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::record_scan::{scan, Wanted};
use super::{errors, locate};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (1, 10);

/// What a partition's timestamp asks for.
enum Asked {
    Query(OffsetQuery),
    /// The latest tiered offset: nothing is tiered here.
    NothingTiered,
    /// A negative timestamp this version does not define.
    Invalid,
}

/// One owner shard's queries, and the (topic, partition) slot of each answer.
type ShardQueries = (Vec<(PartitionId, OffsetQuery)>, Vec<(usize, usize)>);

pub async fn handle(b: &Rc<Broker>, req: ListOffsetsRequest, version: i16, caller: &Caller<'_>) -> ListOffsetsResponse {
    let mut topics: Vec<ListOffsetsTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut work: BTreeMap<ShardId, ShardQueries> = BTreeMap::new();
    // A partition asked twice gets one answer, INVALID_REQUEST, as Kafka
    // gives it (which of the two would the offset answer?).
    let mut seen = BTreeSet::new();
    let duplicated: BTreeSet<(&str, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.as_str(), p.partition_index)))
        .filter(|tp| !seen.insert(*tp))
        .collect();
    let mut refused = BTreeSet::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let mut parts = Vec::with_capacity(t.partitions.len());
        let allowed = caller.may_topic(Operation::Describe, t.name.0.as_str());
        for p in &t.partitions {
            let mut out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            if !allowed {
                out.error_code = errors::TOPIC_AUTHORIZATION_FAILED;
                parts.push(out);
                continue;
            }
            let query = match p.timestamp {
                -2 => Asked::Query(OffsetQuery::Earliest),
                -1 => Asked::Query(OffsetQuery::Latest),
                -3 if version >= 7 => Asked::Query(OffsetQuery::MaxTimestamp),
                -4 if version >= 8 => Asked::Query(OffsetQuery::Earliest),
                -5 if version >= 9 => Asked::NothingTiered,
                ts if ts >= 0 => Asked::Query(OffsetQuery::AtOrAfter(ts)),
                _ => Asked::Invalid,
            };
            if duplicated.contains(&(t.name.0.as_str(), p.partition_index)) {
                if !refused.insert((t.name.0.as_str(), p.partition_index)) {
                    continue;
                }
                out.error_code = errors::INVALID_REQUEST;
                parts.push(out);
                continue;
            }
            match (query, locate(b, t.name.0.as_str(), p.partition_index)) {
                // As Kafka answers a timestamp it does not define.
                (Asked::Invalid, _) => out.error_code = errors::UNSUPPORTED_VERSION,
                (_, None) => out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION,
                // Kafka without tiered storage: offset, timestamp and epoch -1.
                (Asked::NothingTiered, Some(_)) => {
                    out.offset = -1;
                    out.timestamp = -1;
                    out.leader_epoch = -1;
                }
                (Asked::Query(q), Some(loc)) => {
                    let (qs, slots) = work.entry(loc.shard_id()).or_default();
                    qs.push((loc.partition_id(), q));
                    slots.push((ti, parts.len()));
                }
            }
            parts.push(out);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(parts),
        );
    }
    for (shard, (queries, slots)) in work {
        let results = b.list_offsets(shard, queries).await;
        for ((ti, pi), r) in slots.into_iter().zip(results) {
            let out = &mut topics[ti].partitions[pi];
            match r {
                Ok(Some((offset, ts))) => {
                    out.offset = offset.0;
                    out.timestamp = ts;
                    if version >= 4 {
                        out.leader_epoch = 0;
                    }
                }
                Ok(None) => {
                    out.offset = -1;
                    out.timestamp = -1;
                }
                Err(e) => out.error_code = errors::shard(&e),
            }
        }
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The shard's `RecordScan`: the record a timestamp query names inside
/// one stored batch.
pub fn scan_batch(batch: &[u8], query: OffsetQuery, min_offset: Offset) -> Result<Option<(Offset, i64)>, String> {
    let wanted = match query {
        OffsetQuery::AtOrAfter(timestamp) => Wanted::AtOrAfter {
            timestamp,
            min_offset: min_offset.0,
        },
        OffsetQuery::MaxTimestamp => Wanted::Max {
            min_offset: min_offset.0,
        },
        OffsetQuery::Earliest | OffsetQuery::Latest => return Ok(None),
    };
    scan(batch, wanted)
        .map(|found| found.map(|(offset, ts)| (Offset(offset), ts)))
        .map_err(|e| e.to_string())
}
