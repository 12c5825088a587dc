//! DescribeConfigs: topic configs with their defaults (and which are
//! overridden), and the broker's own limits.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::controller::topic_config;
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (1, 4);

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's ConfigSource code of a broker's own file (the topic ones are
/// in topic_config).
const SOURCE_STATIC_BROKER: i8 = 4;

/// `docs`: whether the client asked for documentation (v3+); Kafka sends
/// none otherwise.
fn entry(name: &str, value: String, source: i8, kind: i8, doc: &str, docs: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source)
        .with_config_type(kind)
        .with_documentation(docs.then(|| StrBytes::from_string(doc.to_string())))
}

/// A topic config's synonyms, as Kafka lists them: its override, then the
/// broker config it falls back to with that config's default.
fn topic_synonyms(name: &str, value: &str, source: i8, default_max: u64) -> Vec<DescribeConfigsSynonym> {
    let synonym = |name: &str, value: String, source: i8| {
        DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_string(name.to_string()))
            .with_value(Some(StrBytes::from_string(value)))
            .with_source(source)
    };
    let mut out = Vec::new();
    if source == topic_config::SOURCE_TOPIC {
        out.push(synonym(name, value.to_string(), topic_config::SOURCE_TOPIC));
    }
    if let (Some(broker), Some(default)) = (
        topic_config::broker_synonym(name),
        topic_config::default_value(name, default_max),
    ) {
        out.push(synonym(broker, default, topic_config::SOURCE_DEFAULT));
    }
    out
}

fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k.as_str() == name))
}

pub async fn handle(
    b: &Rc<Broker>,
    req: DescribeConfigsRequest,
    version: i16,
    caller: &Caller<'_>,
) -> DescribeConfigsResponse {
    let default_max = b.config.limits.message_max_bytes.0;
    let docs = version >= 3 && req.include_documentation;
    let synonyms_asked = req.include_synonyms;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let denied = match r.resource_type {
                TOPIC if !caller.may_topic(Operation::DescribeConfigs, r.resource_name.as_str()) => {
                    Some((errors::TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed."))
                }
                BROKER if !caller.may_cluster(Operation::DescribeConfigs) => {
                    Some((errors::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."))
                }
                _ => None,
            };
            if let Some((code, message)) = denied {
                out.error_code = code;
                out.error_message = Some(StrBytes::from_static_str(message));
                return out;
            }
            match r.resource_type {
                TOPIC => {
                    let meta = b.meta.borrow();
                    let Some(t) = meta.topic(r.resource_name.as_str()) else {
                        out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION;
                        out.error_message =
                            Some(errors::message(format!("unknown topic '{}'", r.resource_name.as_str())));
                        return out;
                    };
                    out.configs = topic_config::effective(&t.configs, default_max)
                        .filter(|(k, ..)| wanted(&r.configuration_keys, k.name))
                        .map(|(k, value, source)| {
                            let synonyms = if synonyms_asked {
                                topic_synonyms(k.name, &value, source, default_max)
                            } else {
                                Vec::new()
                            };
                            entry(k.name, value, source, k.kind, k.doc, docs).with_synonyms(synonyms)
                        })
                        .collect();
                }
                // Kafka describes only the broker asked (its id) or the
                // cluster-wide defaults (an empty name).
                BROKER if !(r.resource_name.is_empty() || r.resource_name.as_str() == b.config.node_id.to_string()) => {
                    out.error_code = errors::INVALID_REQUEST;
                    out.error_message = Some(errors::message(format!(
                        "Unexpected broker id, expected {} or empty string, but received {}",
                        b.config.node_id,
                        r.resource_name.as_str()
                    )));
                }
                BROKER => {
                    let c = &b.config;
                    let items = [
                        (
                            "message.max.bytes",
                            c.limits.message_max_bytes.0.to_string(),
                            3,
                            "Largest record batch (topic default).",
                        ),
                        (
                            "socket.request.max.bytes",
                            c.limits.socket_request_max_bytes.0.to_string(),
                            3,
                            "Largest request frame.",
                        ),
                        (
                            "auto.create.topics.enable",
                            c.topics.auto_create.to_string(),
                            1,
                            "Create unknown topics on Metadata.",
                        ),
                        (
                            "num.partitions",
                            c.topics.default_partitions.to_string(),
                            3,
                            "Default partitions of new topics.",
                        ),
                    ];
                    out.configs = items
                        .iter()
                        .filter(|(n, ..)| wanted(&r.configuration_keys, n))
                        .map(|(n, v, kind, doc)| entry(n, v.clone(), SOURCE_STATIC_BROKER, *kind, doc, docs))
                        .collect();
                }
                other => {
                    out.error_code = errors::INVALID_REQUEST;
                    out.error_message = Some(errors::message(format!(
                        "resource type {other} is not described by corestream"
                    )));
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
