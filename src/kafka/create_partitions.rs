//! CreatePartitions: grow a topic; new partitions go to the least-loaded shards.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::errors;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};

pub const VERSIONS: (i16, i16) = (0, 3);

pub async fn handle(b: &Rc<Broker>, req: CreatePartitionsRequest, _version: i16) -> CreatePartitionsResponse {
    let topics: Vec<(String, i32)> = req.topics.iter().map(|t| (t.name.0.to_string(), t.count)).collect();
    let ControlReply::PartitionsAdded(results) = b
        .control(ControlRequest::CreatePartitions {
            topics,
            validate_only: req.validate_only,
        })
        .await
    else {
        unreachable!("CreatePartitions gets a PartitionsAdded reply")
    };
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
