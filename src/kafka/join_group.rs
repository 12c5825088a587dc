//! JoinGroup: routed to the group's coordinator shard, which answers once
//! the rebalance completes (group/membership.rs).

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::errors;
use crate::group::membership::{join_error, ClientInfo};
use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (0, 9);

pub async fn handle(
    b: &Rc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client: ClientInfo,
    caller: &Caller<'_>,
) -> JoinGroupResponse {
    let group = req.group_id.0.to_string();
    let member = req.member_id.clone();
    if !caller.may_group(Operation::Read, &group) {
        let mut resp = join_error(errors::GROUP_AUTHORIZATION_FAILED, member);
        if version >= 7 {
            resp.protocol_name = None;
        }
        return resp;
    }
    let mut resp = match group::route(b, &group, GroupRequest::Join(req, version, client)).await {
        Ok(GroupReply::Join(resp)) => resp,
        Ok(_) => unreachable!("JoinGroup gets a Join reply"),
        Err(code) => join_error(code, member),
    };
    // A failed join names no protocol: null where the field is nullable
    // (v7+), as Kafka answers; empty before.
    if resp.error_code != 0 && version >= 7 {
        resp.protocol_name = None;
    }
    resp
}
