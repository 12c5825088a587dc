//! DeleteRecords (API 21): moves partitions' log starts up to an offset
//! (-1: the high watermark), as Kafka Streams does to purge its repartition
//! topics and `kafka-delete-records.sh` does for operators. The move is a
//! Raft entry of the partition's group, so every replica trims at the same
//! point; records below it are gone for consumers at once (a fetch there
//! gets OFFSET_OUT_OF_RANGE, ListOffsets earliest answers the new start).
//! Their bytes stay in the WAL until its segments are reclaimed.

use super::authorized::Caller;
use std::collections::BTreeMap;
use std::rc::Rc;

use corestream_shards::{Offset, PartitionId, ShardId};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{errors, locate};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 2);

/// One owner shard's trims, and the (topic, partition) slot of each answer.
type ShardTrims = (Vec<(PartitionId, Option<Offset>)>, Vec<(usize, usize)>);

pub async fn handle(
    b: &Rc<Broker>,
    req: DeleteRecordsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut work: BTreeMap<ShardId, ShardTrims> = BTreeMap::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let mut parts = Vec::with_capacity(t.partitions.len());
        let allowed = caller.may_topic(Operation::Delete, t.name.0.as_str());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut out = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let offset = match p.offset {
                -1 => Some(None),
                o if o >= 0 => Some(Some(Offset(o))),
                _ => None,
            };
            match (offset, locate(b, t.name.0.as_str(), p.partition_index)) {
                _ if !allowed => out.error_code = errors::TOPIC_AUTHORIZATION_FAILED,
                (_, None) => out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION,
                (None, _) => out.error_code = errors::OFFSET_OUT_OF_RANGE,
                (Some(offset), Some(loc)) => {
                    let (trims, slots) = work.entry(loc.shard_id()).or_default();
                    trims.push((loc.partition_id(), offset));
                    slots.push((ti, pi));
                }
            }
            parts.push(out);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(parts),
        );
    }
    for (shard, (trims, slots)) in work {
        let results = b.delete_records(shard, trims).await;
        for ((ti, pi), r) in slots.into_iter().zip(results) {
            let out: &mut DeleteRecordsPartitionResult = &mut topics[ti].partitions[pi];
            match r {
                Ok(low) => out.low_watermark = low.0,
                Err(e) => out.error_code = errors::shard(&e),
            }
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
