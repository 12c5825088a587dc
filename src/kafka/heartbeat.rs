//! Heartbeat: keeps a member's session; tells it when to rejoin.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::errors;
use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 4);

pub async fn handle(b: &Rc<Broker>, req: HeartbeatRequest, _version: i16, caller: &Caller<'_>) -> HeartbeatResponse {
    let group = req.group_id.0.to_string();
    if !caller.may_group(Operation::Read, &group) {
        return HeartbeatResponse::default().with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
    }
    match group::route(b, &group, GroupRequest::Heartbeat(req)).await {
        Ok(GroupReply::Heartbeat(resp)) => resp,
        Ok(_) => unreachable!("Heartbeat gets a Heartbeat reply"),
        Err(code) => HeartbeatResponse::default().with_error_code(code),
    }
}
