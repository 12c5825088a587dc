//! CreateTopics: validated and placed by the controller on shard 0.

use std::rc::Rc;

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::controller::plan::NewTopic;
use crate::controller::topic_config;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};

pub const VERSIONS: (i16, i16) = (2, 7);

pub async fn handle(b: &Rc<Broker>, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let topics: Vec<NewTopic> = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        })
        .collect();
    let ControlReply::Created(results) = b
        .control(ControlRequest::CreateTopics {
            topics,
            validate_only: req.validate_only,
        })
        .await
    else {
        unreachable!("CreateTopics gets a Created reply")
    };
    let topics = req
        .topics
        .into_iter()
        .zip(results)
        .map(|(t, r)| {
            let mut out = CreatableTopicResult::default().with_name(t.name);
            match r {
                Ok(created) => {
                    if version >= 7 {
                        out.topic_id = created.id;
                    }
                    out.error_message = None;
                    if version >= 5 {
                        // Every broker holds a replica of every partition.
                        out.num_partitions = created.partitions as i32;
                        out.replication_factor = b.config.brokers().len() as i16;
                        out.configs = Some(configs(b, &t.configs));
                    }
                }
                Err(e) => {
                    out.error_code = errors::control(&e);
                    out.error_message = Some(errors::message(e.to_string()));
                }
            }
            out
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// The new topic's every config (v5+), as Kafka answers: what the request
/// set, and the defaults of the rest.
fn configs(b: &Broker, requested: &[CreatableTopicConfig]) -> Vec<CreatableTopicConfigs> {
    let overrides: BTreeMap<String, String> = requested
        .iter()
        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
        .collect();
    topic_config::effective(&overrides, b.config.limits.message_max_bytes.0)
        .map(|(k, value, source)| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(k.name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_config_source(source)
        })
        .collect()
}
