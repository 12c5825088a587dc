//! CreatePartitions: grow a topic; new partitions go to the least-loaded shards.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{authorized, errors};
use crate::controller::plan::ControlError;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 3);

pub async fn handle(
    b: &Rc<Broker>,
    req: CreatePartitionsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> CreatePartitionsResponse {
    let topics: Vec<(String, i32)> = req.topics.iter().map(|t| (t.name.0.to_string(), t.count)).collect();
    // ALTER on each topic, as Kafka.
    let allowed: Vec<bool> = topics
        .iter()
        .map(|(n, _)| caller.may_topic(Operation::Alter, n))
        .collect();
    let validate_only = req.validate_only;
    let results = authorized::only_allowed(
        topics,
        &allowed,
        |topics| async move {
            let ControlReply::PartitionsAdded(results) = b
                .control(ControlRequest::CreatePartitions { topics, validate_only })
                .await
            else {
                unreachable!("CreatePartitions gets a PartitionsAdded reply")
            };
            results
        },
        || {
            Err(ControlError::TopicAuthorizationFailed(
                "Topic authorization failed.".into(),
            ))
        },
    )
    .await;
    let results = req
        .topics
        .into_iter()
        .zip(results)
        .map(|(t, r)| {
            let mut out = CreatePartitionsTopicResult::default().with_name(t.name);
            if let Err(e) = r {
                out.error_code = errors::control(&e);
                out.error_message = Some(errors::message(e.to_string()));
            }
            out
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
