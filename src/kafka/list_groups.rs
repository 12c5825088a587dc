//! ListGroups: the groups this broker coordinates (each broker answers for
//! the offsets partitions it leads; admin clients ask every broker), with
//! Kafka's state filter (v4) and type filter (v5: every group here speaks
//! the classic protocol).

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::group::{GroupReply, GroupRequest, Listed};
use crate::node::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub const VERSIONS: (i16, i16) = (0, 5);

/// The one group type served (KIP-848's "consumer" groups are not).
const CLASSIC: &str = "classic";

pub async fn handle(b: &Rc<Broker>, req: ListGroupsRequest, version: i16, caller: &Caller<'_>) -> ListGroupsResponse {
    let mut groups = Vec::new();
    let shards = b.leaders.borrow().len();
    for s in 0..shards {
        let shard = corestream_shards::ShardId(s as u16);
        if !b.leads(shard) {
            continue;
        }
        match b.group(shard, GroupRequest::List).await {
            Some(GroupReply::Listed(Ok(list))) => groups.extend(list),
            Some(GroupReply::Listed(Err(code))) => return ListGroupsResponse::default().with_error_code(code),
            _ => return ListGroupsResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
        }
    }
    // Filters match names case-insensitively, as Kafka's do.
    let wanted =
        |filter: &[StrBytes], value: &str| filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value));
    // Every group with DESCRIBE on the cluster, else those the caller may
    // describe (Kafka's rule; no error either way).
    let all = caller.sees(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME);
    let listed = groups
        .into_iter()
        .filter(|g: &Listed| all || caller.sees(Operation::Describe, ResourceType::Group, &g.group))
        .filter(|g: &Listed| version < 4 || wanted(&req.states_filter, g.state))
        .filter(|_| version < 5 || wanted(&req.types_filter, CLASSIC))
        .map(|g| {
            let mut out = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if version >= 4 {
                out.group_state = StrBytes::from_static_str(g.state);
            }
            if version >= 5 {
                out.group_type = StrBytes::from_static_str(CLASSIC);
            }
            out
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
