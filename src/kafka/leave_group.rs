//! LeaveGroup: one member (before v3) or several leave at once; the rest
//! of the group rebalances.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::errors;
use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(b: &Rc<Broker>, req: LeaveGroupRequest, version: i16, caller: &Caller<'_>) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    if !caller.may_group(Operation::Read, &group) {
        return LeaveGroupResponse::default().with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
    }
    match group::route(b, &group, GroupRequest::Leave(req, version)).await {
        Ok(GroupReply::Leave(resp)) => resp,
        Ok(_) => unreachable!("LeaveGroup gets a Leave reply"),
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
    }
}
