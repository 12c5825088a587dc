//! DeleteAcls: deletes every ACL each filter matches, through the metadata
//! log, and answers per filter with the ACLs it matched. Needs ALTER on
//! the cluster.

use std::rc::Rc;

use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::{AclFilter, Operation};

pub const VERSIONS: (i16, i16) = (1, 3);

pub async fn handle(b: &Rc<Broker>, req: DeleteAclsRequest, _version: i16, caller: &Caller<'_>) -> DeleteAclsResponse {
    if let Some((code, message)) = caller.acl_api_refusal(Operation::Alter, "No Authorizer is configured.") {
        let failed = || {
            DeleteAclsFilterResult::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_static_str(message)))
        };
        return DeleteAclsResponse::default().with_filter_results(req.filters.iter().map(|_| failed()).collect());
    }
    let mut results: Vec<DeleteAclsFilterResult> = Vec::with_capacity(req.filters.len());
    let (mut filters, mut slots) = (Vec::new(), Vec::new());
    for f in &req.filters {
        // Kafka answers a success with a null message (ApiError.NONE).
        let mut r = DeleteAclsFilterResult::default().with_error_message(None);
        match AclFilter::from_wire(
            f.resource_type_filter,
            f.resource_name_filter.as_ref().map(|n| n.to_string()),
            f.pattern_type_filter,
            f.principal_filter.as_ref().map(|p| p.to_string()),
            f.host_filter.as_ref().map(|h| h.to_string()),
            f.operation,
            f.permission_type,
        ) {
            Ok(filter) => {
                slots.push(results.len());
                filters.push(filter);
            }
            Err(why) => {
                r.error_code = errors::INVALID_REQUEST;
                r.error_message = Some(errors::message(why));
            }
        }
        results.push(r);
    }
    if !filters.is_empty() {
        let ControlReply::AclsDeleted(outcomes) = b.control(ControlRequest::DeleteAcls { filters }).await else {
            unreachable!("DeleteAcls gets an AclsDeleted reply")
        };
        for (i, outcome) in slots.into_iter().zip(outcomes) {
            match outcome {
                Ok(deleted) => {
                    results[i].matching_acls = deleted
                        .into_iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_error_message(None)
                                .with_resource_type(acl.resource_type.code())
                                .with_resource_name(StrBytes::from_string(acl.resource_name))
                                .with_pattern_type(acl.pattern.code())
                                .with_principal(StrBytes::from_string(acl.principal))
                                .with_host(StrBytes::from_string(acl.host))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission.code())
                        })
                        .collect();
                }
                Err(e) => {
                    results[i].error_code = errors::control(&e);
                    results[i].error_message = Some(errors::message(e.to_string()));
                }
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
