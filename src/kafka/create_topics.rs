//! CreateTopics: validated and placed by the controller on shard 0.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::errors;
use crate::controller::plan::NewTopic;
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
                    if version >= 5 {
                        out.num_partitions = created.partitions as i32;
                        out.replication_factor = 1;
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
