//! OffsetFetch: a group's committed offsets, from its coordinator shard;
//! -1 for a partition the group never committed. v8 asks for several
//! groups at once; earlier versions for one.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::group::{self, Committed, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub const VERSIONS: (i16, i16) = (1, 8);

/// The response topics for one group's offsets. v8 answers with types of
/// its own (`...Topics`, `...Partitions`) shaped like the older ones.
macro_rules! topics {
    ($list:expr, $topic:ident, $partition:ident) => {
        $list
            .into_iter()
            .map(|(name, partitions)| {
                $topic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(p, c): (i32, Option<Committed>)| {
                                $partition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(c.as_ref().map_or(-1, |c| c.offset))
                                    .with_committed_leader_epoch(c.as_ref().map_or(-1, |c| c.leader_epoch))
                                    .with_metadata(Some(StrBytes::from_string(
                                        c.map(|c| c.metadata).unwrap_or_default(),
                                    )))
                            })
                            .collect(),
                    )
            })
            .collect()
    };
}

/// One group's answer by topic, in request order (or every committed
/// partition), or an error for the whole group.
type GroupOffsets = Result<Vec<group::TopicOffsets>, i16>;

/// The partitions a request names, each topic's name once.
fn wanted<'a>(topics: impl Iterator<Item = (&'a str, &'a [i32])>) -> Vec<(String, Vec<i32>)> {
    topics.map(|(t, ps)| (t.to_string(), ps.to_vec())).collect()
}

pub async fn handle(b: &Rc<Broker>, req: OffsetFetchRequest, version: i16, caller: &Caller<'_>) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let wanted = g
                .topics
                .as_ref()
                .map(|ts| wanted(ts.iter().map(|t| (t.name.0.as_str(), &t.partition_indexes[..]))));
            let (got, denied) = fetch_authorized(b, caller, g.group_id.0.as_str(), wanted).await;
            let mut out = group_response(g.group_id.clone(), got);
            for t in out.topics.iter_mut().filter(|t| denied.contains(&t.name.0.to_string())) {
                t.partitions
                    .iter_mut()
                    .for_each(|p| p.error_code = errors::TOPIC_AUTHORIZATION_FAILED);
            }
            groups.push(out);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req
        .topics
        .as_ref()
        .map(|ts| wanted(ts.iter().map(|t| (t.name.0.as_str(), &t.partition_indexes[..]))));
    let (got, denied) = fetch_authorized(b, caller, req.group_id.0.as_str(), wanted).await;
    match got {
        Ok(list) => {
            let mut topics: Vec<OffsetFetchResponseTopic> =
                topics!(list, OffsetFetchResponseTopic, OffsetFetchResponsePartition);
            for t in topics.iter_mut().filter(|t| denied.contains(&t.name.0.to_string())) {
                t.partitions
                    .iter_mut()
                    .for_each(|p| p.error_code = errors::TOPIC_AUTHORIZATION_FAILED);
            }
            OffsetFetchResponse::default().with_topics(topics)
        }
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
    }
}

fn group_response(group_id: GroupId, got: GroupOffsets) -> OffsetFetchResponseGroup {
    match got {
        Ok(list) => OffsetFetchResponseGroup::default()
            .with_group_id(group_id)
            .with_topics(topics!(list, OffsetFetchResponseTopics, OffsetFetchResponsePartitions)),
        Err(code) => OffsetFetchResponseGroup::default()
            .with_group_id(group_id)
            .with_error_code(code),
    }
}

/// Kafka's checks around `fetch_group`: DESCRIBE on the group, else the
/// group fails with GROUP_AUTHORIZATION_FAILED; DESCRIBE on each topic
/// asked for, else it is answered without offsets and returned in the
/// denied list (its partitions then fail with TOPIC_AUTHORIZATION_FAILED);
/// asked for every topic, the caller sees those it may describe.
async fn fetch_authorized(
    b: &Rc<Broker>,
    caller: &Caller<'_>,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> (GroupOffsets, Vec<String>) {
    if !caller.may_group(Operation::Describe, group) {
        return (Err(errors::GROUP_AUTHORIZATION_FAILED), Vec::new());
    }
    let Some(wanted) = wanted else {
        let all = fetch_group(b, group, None).await.map(|list| {
            list.into_iter()
                .filter(|(t, _)| caller.sees(Operation::Describe, ResourceType::Topic, t))
                .collect()
        });
        return (all, Vec::new());
    };
    let (allowed, denied): (Vec<_>, Vec<_>) = wanted
        .iter()
        .cloned()
        .partition(|(t, _)| caller.may_topic(Operation::Describe, t));
    if denied.is_empty() {
        return (fetch_group(b, group, Some(wanted)).await, Vec::new());
    }
    let mut found: std::collections::HashMap<String, Vec<(i32, Option<Committed>)>> = if allowed.is_empty() {
        Default::default()
    } else {
        match fetch_group(b, group, Some(allowed)).await {
            Ok(list) => list.into_iter().collect(),
            Err(code) => return (Err(code), Vec::new()),
        }
    };
    let denied_names: Vec<String> = denied.into_iter().map(|(t, _)| t).collect();
    let list = wanted
        .into_iter()
        .map(|(t, ps)| match found.remove(&t) {
            Some(offsets) => (t, offsets),
            None => (t, ps.into_iter().map(|p| (p, None)).collect()),
        })
        .collect();
    (Ok(list), denied_names)
}

async fn fetch_group(b: &Rc<Broker>, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> GroupOffsets {
    match group::local_coordinator(b, group, false).await? {
        // No offsets topic yet: nothing was ever committed.
        None => Ok(wanted
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
            .collect()),
        Some((shard, partition)) => {
            let request = GroupRequest::Fetch {
                group: group.to_string(),
                partition,
                wanted,
            };
            match b.group(shard, request).await {
                Some(GroupReply::Fetched(r)) => r,
                _ => Err(errors::COORDINATOR_NOT_AVAILABLE),
            }
        }
    }
}
