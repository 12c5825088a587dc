//! DeleteGroups: a group without members goes with its committed offsets
//! (NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND for one the
//! coordinator does not know).

use super::authorized::Caller;
use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::errors;
use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 2);

pub async fn handle(
    b: &Rc<Broker>,
    req: DeleteGroupsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> DeleteGroupsResponse {
    // Each group is deleted once however often it is named (Kafka keys
    // the results by group), in one message per coordinator shard.
    let mut codes: HashMap<&str, i16> = HashMap::new();
    let mut asks = Vec::new();
    let mut asked = Vec::new();
    for id in &req.groups_names {
        let name = id.0.as_str();
        if codes.contains_key(name) {
            continue;
        }
        if !caller.may_group(Operation::Delete, name) {
            codes.insert(name, errors::GROUP_AUTHORIZATION_FAILED);
            continue;
        }
        let code = match group::local_coordinator(b, name, false).await {
            Err(code) => code,
            Ok(None) => errors::GROUP_ID_NOT_FOUND,
            Ok(Some((shard, partition))) => {
                let group = name.to_string();
                asks.push((shard, GroupRequest::Delete { group, partition }));
                asked.push(name);
                errors::COORDINATOR_NOT_AVAILABLE
            }
        };
        codes.insert(name, code);
    }
    for (name, reply) in asked.into_iter().zip(group::route_each(b, asks).await) {
        if let Some(GroupReply::Deleted(code)) = reply {
            codes.insert(name, code);
        }
    }
    let results = req
        .groups_names
        .iter()
        .map(|id| {
            let code = codes
                .get(id.0.as_str())
                .copied()
                .unwrap_or(errors::COORDINATOR_NOT_AVAILABLE);
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
