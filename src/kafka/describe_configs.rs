//! DescribeConfigs: topic configs with their defaults (and which are
//! overridden), and the broker's own limits.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::controller::topic_config::{self, KEYS};
use crate::node::broker::Broker;

pub const VERSIONS: (i16, i16) = (1, 4);

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's ConfigSource codes.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(name: &str, value: String, source: i8, kind: i8, doc: &str, version: i16) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source);
    if version >= 3 {
        e.config_type = kind;
        e.documentation = Some(StrBytes::from_string(doc.to_string()));
    }
    e
}

fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k.as_str() == name))
}

pub async fn handle(b: &Rc<Broker>, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let default_max = b.config.limits.message_max_bytes.0;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match r.resource_type {
                TOPIC => {
                    let meta = b.meta.borrow();
                    let Some(t) = meta.topic(r.resource_name.as_str()) else {
                        out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION;
                        out.error_message =
                            Some(errors::message(format!("unknown topic '{}'", r.resource_name.as_str())));
                        return out;
                    };
                    out.configs = KEYS
                        .iter()
                        .filter(|k| wanted(&r.configuration_keys, k.name))
                        .map(|k| match t.configs.get(k.name) {
                            Some(v) => entry(k.name, v.clone(), SOURCE_TOPIC, k.kind, k.doc, version),
                            None => entry(
                                k.name,
                                topic_config::default_value(k.name, default_max).expect("every key has a default"),
                                SOURCE_DEFAULT,
                                k.kind,
                                k.doc,
                                version,
                            ),
                        })
                        .collect();
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
                        .map(|(n, v, kind, doc)| entry(n, v.clone(), SOURCE_STATIC_BROKER, *kind, doc, version))
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
