//! IncrementalAlterConfigs: set or remove topic config overrides, logged by
//! the controller like any metadata change. Broker configs are static (the
//! config file): altering them is refused.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::controller::plan::ConfigOp;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 1);

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

pub async fn handle(
    b: &Rc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> IncrementalAlterConfigsResponse {
    let mut responses: Vec<AlterConfigsResourceResponse> = req
        .resources
        .iter()
        .map(|r| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_message(None)
        })
        .collect();
    let mut topics = Vec::new();
    let mut slots = Vec::new();
    for (i, r) in req.resources.iter().enumerate() {
        let denied = match r.resource_type {
            TOPIC => !caller.may_topic(Operation::AlterConfigs, r.resource_name.as_str()),
            BROKER => !caller.may_cluster(Operation::AlterConfigs),
            _ => false,
        };
        if denied {
            let (code, message) = if r.resource_type == TOPIC {
                (errors::TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed.")
            } else {
                (errors::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
            };
            responses[i].error_code = code;
            responses[i].error_message = Some(StrBytes::from_static_str(message));
            continue;
        }
        if r.resource_type != TOPIC {
            responses[i].error_code = errors::INVALID_REQUEST;
            responses[i].error_message = Some(StrBytes::from_static_str(
                "only topic configs can be altered; broker settings come from the config file",
            ));
            continue;
        }
        let mut ops = Vec::with_capacity(r.configs.len());
        for c in &r.configs {
            match ConfigOp::from_code(c.config_operation) {
                Some(op) => ops.push((c.name.to_string(), op, c.value.as_ref().map(|v| v.to_string()))),
                None => {
                    responses[i].error_code = errors::INVALID_REQUEST;
                    responses[i].error_message = Some(errors::message(format!(
                        "unknown config operation {}",
                        c.config_operation
                    )));
                }
            }
        }
        if responses[i].error_code == 0 {
            topics.push((r.resource_name.to_string(), ops));
            slots.push(i);
        }
    }
    if !topics.is_empty() {
        let ControlReply::ConfigsAltered(results) = b
            .control(ControlRequest::AlterTopicConfigs {
                topics,
                validate_only: req.validate_only,
            })
            .await
        else {
            unreachable!("AlterTopicConfigs gets a ConfigsAltered reply")
        };
        for (i, r) in slots.into_iter().zip(results) {
            if let Err(e) = r {
                responses[i].error_code = errors::control(&e);
                responses[i].error_message = Some(errors::message(e.to_string()));
            }
        }
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
