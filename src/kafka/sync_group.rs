//! SyncGroup: routed to the group's coordinator shard; a member's call
//! returns once the leader's assignment is in (group/membership.rs).

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::errors;
use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(b: &Rc<Broker>, req: SyncGroupRequest, version: i16, caller: &Caller<'_>) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    if !caller.may_group(Operation::Read, &group) {
        return SyncGroupResponse::default().with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
    }
    match group::route(b, &group, GroupRequest::Sync(req, version)).await {
        Ok(GroupReply::Sync(resp)) => resp,
        Ok(_) => unreachable!("SyncGroup gets a Sync reply"),
        Err(code) => SyncGroupResponse::default().with_error_code(code),
    }
}
