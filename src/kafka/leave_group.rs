//! LeaveGroup: one member (before v3) or several leave at once; the rest
//! of the group rebalances.

use std::rc::Rc;

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(b: &Rc<Broker>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    match group::route(b, &group, GroupRequest::Leave(req, version)).await {
        Ok(GroupReply::Leave(resp)) => resp,
        Ok(_) => unreachable!("LeaveGroup gets a Leave reply"),
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
    }
}
