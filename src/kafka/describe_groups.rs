//! DescribeGroups: each group's state, protocol and members (client id,
//! host, subscription metadata, assignment), from its coordinator. A group
//! the coordinator does not know is "Dead", and from v6 GROUP_ID_NOT_FOUND.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{authorized, errors};
use crate::group::{self, GroupReply, GroupRequest};
use crate::node::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub const VERSIONS: (i16, i16) = (0, 6);

pub async fn handle(
    b: &Rc<Broker>,
    req: DescribeGroupsRequest,
    version: i16,
    caller: &Caller<'_>,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        if !caller.may_group(Operation::Describe, id.0.as_str()) {
            groups.push(
                DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(errors::GROUP_AUTHORIZATION_FAILED),
            );
            continue;
        }
        let described = describe(b, id.0.as_str()).await;
        let operations = caller.operations(req.include_authorized_operations, ResourceType::Group, id.0.as_str());
        let mut out = DescribedGroup::default()
            .with_group_id(id)
            .with_authorized_operations(operations);
        match described {
            Err(code) => out.error_code = code,
            Ok(None) => {
                out.group_state = StrBytes::from_static_str("Dead");
                // From v6 Kafka also says so with an error (KIP-1043).
                if version >= 6 {
                    out.error_code = errors::GROUP_ID_NOT_FOUND;
                    out.authorized_operations = authorized::NOT_ASKED;
                    out.error_message = Some(StrBytes::from_string(format!("Group {} not found.", out.group_id.0)));
                }
            }
            Ok(Some(view)) => {
                out.group_state = StrBytes::from_static_str(view.state);
                out.protocol_type = StrBytes::from_string(view.protocol_type);
                out.protocol_data = StrBytes::from_string(view.protocol);
                out.members = view
                    .members
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                            .with_client_id(StrBytes::from_string(m.client_id))
                            .with_client_host(StrBytes::from_string(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment)
                    })
                    .collect();
            }
        }
        groups.push(out);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

async fn describe(b: &Rc<Broker>, group: &str) -> Result<Option<group::membership::GroupView>, i16> {
    match group::local_coordinator(b, group, false).await? {
        // No offsets topic yet: no group was ever used.
        None => Ok(None),
        Some((shard, partition)) => {
            let request = GroupRequest::Describe {
                group: group.to_string(),
                partition,
            };
            match b.group(shard, request).await {
                Some(GroupReply::Described(r)) => r,
                _ => Err(errors::COORDINATOR_NOT_AVAILABLE),
            }
        }
    }
}
