//! DeleteGroups: a group without members goes with its committed offsets
//! (NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND for one the
//! coordinator does not know).

use super::authorized::Caller;
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
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let code = if caller.may_group(Operation::Delete, id.0.as_str()) {
            delete(b, id.0.as_str()).await
        } else {
            errors::GROUP_AUTHORIZATION_FAILED
        };
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn delete(b: &Rc<Broker>, group: &str) -> i16 {
    match group::local_coordinator(b, group, false).await {
        Err(code) => code,
        Ok(None) => errors::GROUP_ID_NOT_FOUND,
        Ok(Some((shard, partition))) => {
            let request = GroupRequest::Delete {
                group: group.to_string(),
                partition,
            };
            match b.group(shard, request).await {
                Some(GroupReply::Deleted(code)) => code,
                _ => errors::COORDINATOR_NOT_AVAILABLE,
            }
        }
    }
}
