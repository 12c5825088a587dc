//! Metadata: this broker, and the requested topics with their partitions.
//! Unknown topics are created when the request allows it and
//! `topics.auto_create` is on (Kafka's auto.create.topics.enable).

use std::collections::BTreeSet;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::controller::plan::{validate_topic_name, NewTopic};
use crate::controller::TopicMeta;
use crate::node::broker::Broker;
use crate::node::control::ControlRequest;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use corestream_shards::ShardId;

/// v13 adds a top-level error code, for REBOOTSTRAP_REQUIRED: none here.
pub const VERSIONS: (i16, i16) = (0, 13);

pub async fn handle(b: &Rc<Broker>, req: MetadataRequest, version: i16, caller: &Caller<'_>) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all.
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(ts) if ts.is_empty() && version == 0 => None,
        Some(ts) => Some(ts.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect()),
    };
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    // Topics named but not describable, and missing ones the caller may
    // not create: TOPIC_AUTHORIZATION_FAILED (Kafka's rules; a topic the
    // caller may not describe is never said to exist or not).
    let mut refused: BTreeSet<String> = BTreeSet::new();
    if let Some(names) = &requested {
        names
            .iter()
            .for_each(|n| crate::node::fatal::inject::on_metadata_topic(n));
        refused.extend(
            names
                .iter()
                .filter(|n| !caller.may_topic(Operation::Describe, n))
                .cloned(),
        );
        if allow_create && b.config.topics.auto_create {
            let missing: Vec<String> = {
                let meta = b.meta.borrow();
                names
                    .iter()
                    .filter(|n| !refused.contains(*n) && meta.topic(n).is_none())
                    .cloned()
                    .collect()
            };
            let any = caller.sees(Operation::Create, ResourceType::Cluster, CLUSTER_NAME);
            let (creatable, denied): (Vec<String>, Vec<String>) = missing
                .into_iter()
                .partition(|n| any || caller.may_topic(Operation::Create, n));
            refused.extend(denied);
            auto_create(b, &creatable).await;
        }
    }
    let live = b.live_brokers();
    let view = ClusterView {
        replicas: b.config.brokers().into_iter().map(BrokerId).collect(),
        live: live.iter().copied().map(BrokerId).collect(),
        leaders: (0..b.mesh.shard_count())
            .map(|s| b.leader_of(ShardId(s as u16)).map(BrokerId))
            .collect(),
    };
    let mut resp = MetadataResponse::default().with_brokers(
        live.iter()
            .map(|&id| {
                let addr = b.address_of(id, &caller.info.listener);
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(addr.ip().to_string()))
                    .with_port(addr.port() as i32)
            })
            .collect(),
    );
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(b.cluster_id.to_string()));
    }
    if version >= 1 {
        // Any broker takes controller requests (it proposes them to the
        // metadata group, shard 0's); the group's leader saves a hop. While
        // there is none (an election), this broker takes them and waits
        // for one: clients that see no controller wait for a refresh.
        resp.controller_id = BrokerId(b.leader_of(ShardId(0)).unwrap_or(b.config.node_id));
    }
    // v8-v10 only; later clients ask DescribeCluster.
    resp.cluster_authorized_operations = caller.cluster_operations(req.include_cluster_authorized_operations);
    let asked = req.include_topic_authorized_operations;
    let entry = |name: &str, topic: Option<&TopicMeta>| {
        let mut out = topic_entry(name, topic, &view, version);
        if topic.is_some() && out.error_code != errors::INVALID_TOPIC {
            out.topic_authorized_operations = caller.operations(asked, ResourceType::Topic, name);
        }
        out
    };
    let meta = b.meta.borrow();
    resp.topics = match requested {
        // Every topic the caller may describe; the others are not listed.
        None => meta
            .topics
            .iter()
            .filter(|(n, _)| caller.sees(Operation::Describe, ResourceType::Topic, n))
            .map(|(n, t)| entry(n, Some(t)))
            .collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                if refused.contains(n) {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                        .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                } else {
                    entry(n, meta.topic(n))
                }
            })
            .collect(),
    };
    resp
}

/// Who holds and who leads what, as this broker sees it now.
struct ClusterView {
    /// Every broker holds a replica of every partition.
    replicas: Vec<BrokerId>,
    live: Vec<BrokerId>,
    /// The live leader of each shard's Raft group, by shard index.
    leaders: Vec<Option<BrokerId>>,
}

/// Creates the named topics that do not exist (the caller may create them).
async fn auto_create(b: &Rc<Broker>, names: &[String]) {
    let missing: Vec<NewTopic> = {
        let meta = b.meta.borrow();
        names
            .iter()
            .filter(|n| meta.topic(n).is_none() && validate_topic_name(n).is_ok())
            .map(|n| NewTopic {
                name: n.clone(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: vec![],
                configs: vec![],
            })
            .collect()
    };
    if !missing.is_empty() {
        // Failures (a race with another creator, a full shard) show up as
        // the topic's error below.
        let _ = b
            .control(ControlRequest::CreateTopics {
                topics: missing,
                validate_only: false,
            })
            .await;
    }
}

fn topic_entry(name: &str, topic: Option<&TopicMeta>, view: &ClusterView, version: i16) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(name.to_string()))));
    let Some(t) = topic else {
        out.error_code = if validate_topic_name(name).is_ok() {
            errors::UNKNOWN_TOPIC_OR_PARTITION
        } else {
            errors::INVALID_TOPIC
        };
        return out;
    };
    out.is_internal = name == crate::group::OFFSETS_TOPIC;
    if version >= 10 {
        out.topic_id = t.id;
    }
    let isr: Vec<BrokerId> = view
        .replicas
        .iter()
        .filter(|r| view.live.contains(r))
        .copied()
        .collect();
    let offline: Vec<BrokerId> = view
        .replicas
        .iter()
        .filter(|r| !view.live.contains(r))
        .copied()
        .collect();
    out.partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, pm)| {
            let leader = view.leaders.get(pm.shard as usize).copied().flatten();
            let mut p = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(leader.unwrap_or(BrokerId(-1)))
                .with_replica_nodes(view.replicas.clone())
                .with_isr_nodes(isr.clone());
            if leader.is_none() {
                p.error_code = errors::LEADER_NOT_AVAILABLE;
            }
            if version >= 5 {
                p.offline_replicas = offline.clone();
            }
            if version >= 7 {
                p.leader_epoch = 0;
            }
            p
        })
        .collect();
    out
}
