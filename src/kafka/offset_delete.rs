//! OffsetDelete: deletes a group's committed offsets for some partitions
//! (kafka-consumer-groups --delete-offsets). Partitions of topics the
//! group's members subscribe to are refused (GROUP_SUBSCRIBED_TO_TOPIC),
//! partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION, as in
//! Kafka.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::errors;
use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    b: &Rc<Broker>,
    req: OffsetDeleteRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    if !caller.may_group(Operation::Delete, &group) {
        return OffsetDeleteResponse::default().with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
    }
    // Partitions of topics that exist and that the caller may read go to
    // the coordinator; the others are answered here, with their error.
    let mut unknown: Vec<Vec<(i32, i16)>> = Vec::with_capacity(req.topics.len());
    let mut wanted: Vec<(String, Vec<i32>)> = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let partitions = t.partitions.iter().map(|p| p.partition_index);
        if !caller.may_topic(Operation::Read, t.name.0.as_str()) {
            wanted.push((t.name.0.to_string(), Vec::new()));
            unknown.push(partitions.map(|p| (p, errors::TOPIC_AUTHORIZATION_FAILED)).collect());
            continue;
        }
        let (known, missing): (Vec<i32>, Vec<i32>) =
            partitions.partition(|&p| super::locate(b, t.name.0.as_str(), p).is_some());
        wanted.push((t.name.0.to_string(), known));
        unknown.push(
            missing
                .into_iter()
                .map(|p| (p, errors::UNKNOWN_TOPIC_OR_PARTITION))
                .collect(),
        );
    }
    let deleted = match group::local_coordinator(b, &group, false).await {
        Err(code) => Err(code),
        Ok(None) => Err(errors::GROUP_ID_NOT_FOUND),
        Ok(Some((shard, partition))) => {
            let request = GroupRequest::DeleteOffsets {
                group,
                partition,
                offsets: wanted,
            };
            match b.group(shard, request).await {
                Some(GroupReply::OffsetsDeleted(r)) => r,
                _ => Err(errors::COORDINATOR_NOT_AVAILABLE),
            }
        }
    };
    let answered = match deleted {
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
        Ok(answered) => answered,
    };
    let topics = req
        .topics
        .into_iter()
        .zip(answered)
        .zip(unknown)
        .map(|((t, (_, codes)), missing)| {
            let mut partitions: Vec<OffsetDeleteResponsePartition> = codes
                .into_iter()
                .map(|(p, code)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                })
                .collect();
            partitions.extend(missing.into_iter().map(|(p, code)| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p)
                    .with_error_code(code)
            }));
            partitions.sort_by_key(|p| p.partition_index);
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
