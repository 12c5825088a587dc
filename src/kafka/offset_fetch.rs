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

/// Partitions by topic, each topic's name once.
type Wanted = Vec<(String, Vec<i32>)>;

/// The partitions a request names, each topic's name once.
fn wanted<'a>(topics: impl Iterator<Item = (&'a str, &'a [i32])>) -> Wanted {
    topics.map(|(t, ps)| (t.to_string(), ps.to_vec())).collect()
}

pub async fn handle(b: &Rc<Broker>, req: OffsetFetchRequest, version: i16, caller: &Caller<'_>) -> OffsetFetchResponse {
    if version >= 8 {
        let plans: Vec<Plan> = req
            .groups
            .iter()
            .map(|g| {
                let wanted = g
                    .topics
                    .as_ref()
                    .map(|ts| wanted(ts.iter().map(|t| (t.name.0.as_str(), &t.partition_indexes[..]))));
                Plan::new(caller, g.group_id.0.as_str(), wanted)
            })
            .collect();
        let fetched = fetch_each(b, &plans).await;
        let groups = req
            .groups
            .iter()
            .zip(plans)
            .zip(fetched)
            .map(|((g, plan), got)| {
                let (got, denied) = plan.finish(caller, got);
                let mut out = group_response(g.group_id.clone(), got);
                for t in out.topics.iter_mut().filter(|t| denied.contains(&t.name.0.to_string())) {
                    t.partitions
                        .iter_mut()
                        .for_each(|p| p.error_code = errors::TOPIC_AUTHORIZATION_FAILED);
                }
                out
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req
        .topics
        .as_ref()
        .map(|ts| wanted(ts.iter().map(|t| (t.name.0.as_str(), &t.partition_indexes[..]))));
    let plan = Plan::new(caller, req.group_id.0.as_str(), wanted);
    let got = fetch_each(b, std::slice::from_ref(&plan))
        .await
        .pop()
        .unwrap_or(Ok(Vec::new()));
    let (got, denied) = plan.finish(caller, got);
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

/// Kafka's checks around a group's fetch: DESCRIBE on the group, else
/// the group fails with GROUP_AUTHORIZATION_FAILED; DESCRIBE on each topic
/// asked for, else it is answered without offsets and returned in the
/// denied list (its partitions then fail with TOPIC_AUTHORIZATION_FAILED);
/// asked for every topic, the caller sees those it may describe.
struct Plan {
    group: String,
    /// What to ask the coordinator for (`Fetch`'s `wanted`); `None`: nothing
    /// (the group is refused, or every topic asked for is).
    ask: Option<Option<Wanted>>,
    /// Every topic the request named, when some of them are denied.
    wanted: Option<Wanted>,
    denied: Vec<String>,
    refused: bool,
}

impl Plan {
    fn new(caller: &Caller<'_>, group: &str, wanted: Option<Wanted>) -> Plan {
        let mut plan = Plan {
            group: group.to_string(),
            ask: None,
            wanted: None,
            denied: Vec::new(),
            refused: false,
        };
        if !caller.may_group(Operation::Describe, group) {
            plan.refused = true;
            return plan;
        }
        let Some(wanted) = wanted else {
            plan.ask = Some(None);
            return plan;
        };
        let (allowed, denied): (Vec<_>, Vec<_>) = wanted
            .iter()
            .cloned()
            .partition(|(t, _)| caller.may_topic(Operation::Describe, t));
        if denied.is_empty() {
            plan.ask = Some(Some(wanted));
            return plan;
        }
        if !allowed.is_empty() {
            plan.ask = Some(Some(allowed));
        }
        plan.denied = denied.into_iter().map(|(t, _)| t).collect();
        plan.wanted = Some(wanted);
        plan
    }

    /// The group's answer from what its coordinator returned, and the
    /// topics denied.
    fn finish(self, caller: &Caller<'_>, fetched: GroupOffsets) -> (GroupOffsets, Vec<String>) {
        if self.refused {
            return (Err(errors::GROUP_AUTHORIZATION_FAILED), Vec::new());
        }
        let Some(wanted) = self.wanted else {
            let all_topics = matches!(self.ask, Some(None));
            let got = fetched.map(|list| {
                list.into_iter()
                    .filter(|(t, _)| !all_topics || caller.sees(Operation::Describe, ResourceType::Topic, t))
                    .collect()
            });
            return (got, Vec::new());
        };
        let mut found: std::collections::HashMap<String, Vec<(i32, Option<Committed>)>> = match fetched {
            Ok(list) => list.into_iter().collect(),
            Err(code) => return (Err(code), Vec::new()),
        };
        let list = wanted
            .into_iter()
            .map(|(t, ps)| match found.remove(&t) {
                Some(offsets) => (t, offsets),
                None => (t, ps.into_iter().map(|p| (p, None)).collect()),
            })
            .collect();
        (Ok(list), self.denied)
    }
}

/// Each plan's fetch from its group's coordinator, in one message per
/// coordinator shard; `Ok` and empty for a plan that asks nothing.
async fn fetch_each(b: &Rc<Broker>, plans: &[Plan]) -> Vec<GroupOffsets> {
    let mut out: Vec<GroupOffsets> = Vec::with_capacity(plans.len());
    let mut asks = Vec::new();
    let mut slots = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let Some(wanted) = &plan.ask else {
            out.push(Ok(Vec::new()));
            continue;
        };
        match group::local_coordinator(b, &plan.group, false).await {
            Err(code) => out.push(Err(code)),
            // No offsets topic yet: nothing was ever committed.
            Ok(None) => out.push(Ok(wanted
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect())),
            Ok(Some((shard, partition))) => {
                out.push(Err(errors::COORDINATOR_NOT_AVAILABLE));
                slots.push(i);
                let request = GroupRequest::Fetch {
                    group: plan.group.clone(),
                    partition,
                    wanted: wanted.clone(),
                };
                asks.push((shard, request));
            }
        }
    }
    for (i, reply) in slots.into_iter().zip(group::route_each(b, asks).await) {
        if let Some(GroupReply::Fetched(r)) = reply {
            out[i] = r;
        }
    }
    out
}
