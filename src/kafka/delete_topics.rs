//! DeleteTopics: by name (v0-5) or name-or-id (v6).

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{authorized, errors};
use crate::controller::plan::ControlError;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub const VERSIONS: (i16, i16) = (1, 6);

pub async fn handle(
    b: &Rc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
    caller: &Caller<'_>,
) -> DeleteTopicsResponse {
    // v6 may name a topic by id; resolve ids on this shard's metadata copy.
    let names: Vec<String> = if version >= 6 {
        let meta = b.meta.borrow();
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => n.0.to_string(),
                None => meta
                    .topics
                    .iter()
                    .find(|(_, m)| m.id == t.topic_id)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default(),
            })
            .collect()
    } else {
        req.topic_names.iter().map(|n| n.0.to_string()).collect()
    };
    // DELETE on the cluster, or else on the topic (Kafka's controller rule);
    // a missing topic the caller may describe is reported missing.
    let any_topic = caller.sees(Operation::Delete, ResourceType::Cluster, CLUSTER_NAME);
    let allowed: Vec<bool> = names
        .iter()
        .map(|n| {
            any_topic
                || (b.meta.borrow().topic(n).is_none() && caller.sees(Operation::Describe, ResourceType::Topic, n))
                || caller.may_topic(Operation::Delete, n)
        })
        .collect();
    let results = authorized::only_allowed(
        names.clone(),
        &allowed,
        |names| async move {
            let ControlReply::Deleted(results) = b.control(ControlRequest::DeleteTopics { names }).await else {
                unreachable!("DeleteTopics gets a Deleted reply")
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
    let responses = names
        .into_iter()
        .zip(results)
        .map(|(name, r)| {
            let mut out = DeletableTopicResult::default().with_name(Some(TopicName(StrBytes::from_string(name))));
            match r {
                Ok(id) => {
                    if version >= 6 {
                        out.topic_id = id;
                    }
                }
                Err(e) => {
                    out.error_code = errors::control(&e);
                    if version >= 5 {
                        out.error_message = Some(errors::message(e.to_string()));
                    }
                }
            }
            out
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
