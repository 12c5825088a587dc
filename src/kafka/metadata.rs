//! Metadata: this broker, and the requested topics with their partitions.
//! Unknown topics are created when the request allows it and
//! `topics.auto_create` is on (Kafka's auto.create.topics.enable).

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::controller::plan::{validate_topic_name, NewTopic};
use crate::controller::TopicMeta;
use crate::node::broker::Broker;
use crate::node::control::ControlRequest;

pub const VERSIONS: (i16, i16) = (0, 12);

pub async fn handle(b: &Rc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all.
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(ts) if ts.is_empty() && version == 0 => None,
        Some(ts) => Some(ts.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect()),
    };
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    if let Some(names) = &requested {
        if allow_create && b.config.topics.auto_create {
            auto_create(b, names).await;
        }
    }
    let me = BrokerId(b.config.node_id);
    let adv = b.config.advertised();
    let mut resp = MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
        .with_node_id(me)
        .with_host(StrBytes::from_string(adv.ip().to_string()))
        .with_port(adv.port() as i32)]);
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(b.cluster_id.to_string()));
    }
    if version >= 1 {
        resp.controller_id = me;
    }
    let meta = b.meta.borrow();
    resp.topics = match requested {
        None => meta
            .topics
            .iter()
            .map(|(n, t)| topic_entry(n, Some(t), me, version))
            .collect(),
        Some(names) => names
            .iter()
            .map(|n| topic_entry(n, meta.topic(n), me, version))
            .collect(),
    };
    resp
}

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

fn topic_entry(name: &str, topic: Option<&TopicMeta>, me: BrokerId, version: i16) -> MetadataResponseTopic {
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
    out.partitions = (0..t.partitions.len())
        .map(|i| {
            let mut p = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(me)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me]);
            if version >= 7 {
                p.leader_epoch = 0;
            }
            p
        })
        .collect();
    out
}
