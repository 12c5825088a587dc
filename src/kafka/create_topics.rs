//! CreateTopics: validated and placed by the controller on shard 0.

use super::authorized::Caller;
use std::rc::Rc;

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{authorized, errors};
use crate::controller::plan::{ControlError, NewTopic};
use crate::controller::topic_config;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub const VERSIONS: (i16, i16) = (2, 7);

pub async fn handle(
    b: &Rc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
    caller: &Caller<'_>,
) -> CreateTopicsResponse {
    // CREATE on the cluster, or else on the topic (Kafka's rule); the
    // answer shows configs only to a caller that may describe them.
    let any_topic = caller.sees(Operation::Create, ResourceType::Cluster, CLUSTER_NAME);
    let allowed: Vec<bool> = req
        .topics
        .iter()
        .map(|t| any_topic || caller.may_topic(Operation::Create, t.name.0.as_str()))
        .collect();
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
    let validate_only = req.validate_only;
    let results = authorized::only_allowed(
        topics,
        &allowed,
        |topics| async move {
            let ControlReply::Created(results) =
                b.control(ControlRequest::CreateTopics { topics, validate_only }).await
            else {
                unreachable!("CreateTopics gets a Created reply")
            };
            results
        },
        || Err(ControlError::TopicAuthorizationFailed("Authorization failed.".into())),
    )
    .await;
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
                    if version >= 5
                        && !caller.sees(Operation::DescribeConfigs, ResourceType::Topic, out.name.0.as_str())
                    {
                        out.topic_config_error_code = errors::TOPIC_AUTHORIZATION_FAILED;
                    } else if version >= 5 {
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
