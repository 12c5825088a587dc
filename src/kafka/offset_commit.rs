//! OffsetCommit: each partition's offset is checked here (known partition,
//! metadata size), then the group's coordinator shard writes them all as
//! one record batch to the group's `__consumer_offsets` partition, with
//! acks=all, and answers once that batch is durable.
//!
//! A group member's commit must carry its member id and the current
//! generation (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS
//! otherwise); a standalone consumer's (generation -1) is taken for a group
//! without members (group/membership.rs, `check_commit`).

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{errors, locate};
use crate::group::{self, Committed, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (2, 8);

/// Kafka's default `offset.metadata.max.bytes`.
const METADATA_MAX_BYTES: usize = 4096;

/// A commit record's bytes beyond its group, topic and metadata: key and
/// value versions and lengths, partition, offset, epoch, timestamp, and
/// the record's own framing.
const COMMIT_RECORD_OVERHEAD_BYTES: usize = 64;

pub async fn handle(
    b: &Rc<Broker>,
    req: OffsetCommitRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitResponseTopic> = req
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| OffsetCommitResponsePartition::default().with_partition_index(p.partition_index))
                        .collect(),
                )
        })
        .collect();
    // (topic index, partition index) of each offset sent to the coordinator.
    let mut slots = Vec::new();
    let mut offsets = Vec::new();
    // As Kafka: READ on the group for anything, READ on each topic for its offsets.
    let group_allowed = caller.may_group(Operation::Read, req.group_id.0.as_str());
    for (ti, t) in req.topics.iter().enumerate() {
        let topic_allowed = group_allowed && caller.may_topic(Operation::Read, t.name.0.as_str());
        for (pi, p) in t.partitions.iter().enumerate() {
            let metadata = p.committed_metadata.as_ref().map_or("", |m| m.as_str());
            let out = &mut topics[ti].partitions[pi];
            if !group_allowed {
                out.error_code = errors::GROUP_AUTHORIZATION_FAILED;
            } else if !topic_allowed {
                out.error_code = errors::TOPIC_AUTHORIZATION_FAILED;
            } else if metadata.len() > METADATA_MAX_BYTES {
                out.error_code = errors::OFFSET_METADATA_TOO_LARGE;
            } else if locate(b, t.name.0.as_str(), p.partition_index).is_none() {
                out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION;
            } else {
                slots.push((ti, pi));
                offsets.push((
                    t.name.0.to_string(),
                    p.partition_index,
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_string(),
                    },
                ));
            }
        }
    }
    // Every offset is a record that repeats the group id and the topic, all
    // in one batch: a commit of 100,000 partitions would write (and hold)
    // GiBs. As Kafka, refuse a batch over the message size limit.
    let batch_bytes: usize = offsets
        .iter()
        .map(|(topic, _, c)| req.group_id.len() + topic.len() + c.metadata.len() + COMMIT_RECORD_OVERHEAD_BYTES)
        .sum();
    if batch_bytes as u64 > b.config.limits.message_max_bytes.0 {
        for (ti, pi) in slots {
            topics[ti].partitions[pi].error_code = errors::INVALID_COMMIT_OFFSET_SIZE;
        }
        return OffsetCommitResponse::default().with_topics(topics);
    }
    if !offsets.is_empty() {
        let codes = match group::local_coordinator(b, req.group_id.0.as_str(), true).await {
            Ok(Some((shard, partition))) => {
                let request = GroupRequest::Commit {
                    group: req.group_id.0.to_string(),
                    member: req.member_id.to_string(),
                    instance: req.group_instance_id.as_ref().map(|i| i.to_string()),
                    generation: req.generation_id_or_member_epoch,
                    partition,
                    offsets,
                };
                match b.group(shard, request).await {
                    Some(GroupReply::Committed(codes)) => codes,
                    _ => vec![errors::COORDINATOR_NOT_AVAILABLE; slots.len()],
                }
            }
            Ok(None) => vec![errors::COORDINATOR_NOT_AVAILABLE; slots.len()],
            Err(code) => vec![code; slots.len()],
        };
        for ((ti, pi), code) in slots.into_iter().zip(codes) {
            topics[ti].partitions[pi].error_code = code;
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}
