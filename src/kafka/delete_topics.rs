//! DeleteTopics: by name (v0-5) or name-or-id (v6).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};

pub const VERSIONS: (i16, i16) = (1, 6);

pub async fn handle(b: &Rc<Broker>, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
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
    let ControlReply::Deleted(results) = b.control(ControlRequest::DeleteTopics { names: names.clone() }).await else {
        unreachable!("DeleteTopics gets a Deleted reply")
    };
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
