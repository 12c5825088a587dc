//! DescribeAcls: the ACLs a filter matches, from this shard's copy,
//! grouped by resource pattern. Needs DESCRIBE on the cluster.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::node::broker::Broker;
use crate::security::acl::{AclFilter, Operation};

pub const VERSIONS: (i16, i16) = (1, 3);

pub async fn handle(
    b: &Rc<Broker>,
    req: DescribeAclsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> DescribeAclsResponse {
    let refuse = |code: i16, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(errors::message(message)))
    };
    if let Some((code, message)) =
        caller.acl_api_refusal(Operation::Describe, "No Authorizer is configured on the broker")
    {
        return refuse(code, message.into());
    }
    let filter = match AclFilter::from_wire(
        req.resource_type_filter,
        req.resource_name_filter.map(|n| n.to_string()),
        req.pattern_type_filter,
        req.principal_filter.map(|p| p.to_string()),
        req.host_filter.map(|h| h.to_string()),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(why) => return refuse(errors::INVALID_REQUEST, why),
    };
    let meta = b.meta.borrow();
    let mut resources: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for acl in meta.acls.iter().filter(|a| filter.matches(a)) {
        resources
            .entry((acl.resource_type, acl.resource_name.clone(), acl.pattern))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(acl.principal.clone()))
                    .with_host(StrBytes::from_string(acl.host.clone()))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((rt, name, pattern), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt.code())
                    .with_resource_name(StrBytes::from_string(name))
                    .with_pattern_type(pattern.code())
                    .with_acls(acls)
            })
            .collect(),
    )
}
