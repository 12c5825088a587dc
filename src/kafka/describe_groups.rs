//! DescribeGroups: each group's state, protocol and members (client id,
//! host, subscription metadata, assignment), from its coordinator. A group
//! the coordinator does not know is "Dead", and from v6 GROUP_ID_NOT_FOUND.

use super::authorized::Caller;
use std::collections::HashMap;
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
    // Each group the request names is described once, however often it is
    // named, all in one message per coordinator shard.
    let mut distinct: HashMap<&str, usize> = HashMap::new();
    let mut names = Vec::new();
    for id in &req.groups {
        let name = id.0.as_str();
        if caller.may_group(Operation::Describe, name) && !distinct.contains_key(name) {
            distinct.insert(name, names.len());
            names.push(name);
        }
    }
    let described = describe_each(b, &names).await;
    let mut groups = Vec::with_capacity(req.groups.len());
    for id in &req.groups {
        let Some(&at) = distinct.get(id.0.as_str()) else {
            groups.push(
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(errors::GROUP_AUTHORIZATION_FAILED),
            );
            continue;
        };
        let operations = caller.operations(req.include_authorized_operations, ResourceType::Group, id.0.as_str());
        let mut out = DescribedGroup::default()
            .with_group_id(id.clone())
            .with_authorized_operations(operations);
        match &described[at] {
            Err(code) => out.error_code = *code,
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
                out.protocol_type = StrBytes::from_string(view.protocol_type.clone());
                out.protocol_data = StrBytes::from_string(view.protocol.clone());
                out.members = view
                    .members
                    .iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id.clone()))
                            .with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                            .with_client_id(StrBytes::from_string(m.client_id.clone()))
                            .with_client_host(StrBytes::from_string(m.client_host.clone()))
                            .with_member_metadata(m.metadata.clone())
                            .with_member_assignment(m.assignment.clone())
                    })
                    .collect();
            }
        }
        groups.push(out);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

type Described = Result<Option<group::membership::GroupView>, i16>;

/// Each group as its coordinator describes it, in the order of `names`.
async fn describe_each(b: &Rc<Broker>, names: &[&str]) -> Vec<Described> {
    let mut out: Vec<Described> = Vec::with_capacity(names.len());
    let mut asks = Vec::new();
    let mut slots = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match group::local_coordinator(b, name, false).await {
            Err(code) => out.push(Err(code)),
            // No offsets topic yet: no group was ever used.
            Ok(None) => out.push(Ok(None)),
            Ok(Some((shard, partition))) => {
                out.push(Err(errors::COORDINATOR_NOT_AVAILABLE));
                slots.push(i);
                let group = name.to_string();
                asks.push((shard, GroupRequest::Describe { group, partition }));
            }
        }
    }
    for (i, reply) in slots.into_iter().zip(group::route_each(b, asks).await) {
        if let Some(GroupReply::Described(r)) = reply {
            out[i] = r;
        }
    }
    out
}
