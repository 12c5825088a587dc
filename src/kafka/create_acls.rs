//! CreateAcls: adds ACLs through the metadata log, so every shard of every
//! node holds them once the reply is sent here (other nodes within their
//! apply lag). Needs ALTER on the cluster. Kafka's checks and messages; an
//! ACL that exists already succeeds without a change.

use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};

pub const VERSIONS: (i16, i16) = (1, 3);

pub async fn handle(b: &Rc<Broker>, req: CreateAclsRequest, _version: i16, caller: &Caller<'_>) -> CreateAclsResponse {
    if let Some((code, message)) = caller.acl_api_refusal(Operation::Alter, "No Authorizer is configured.") {
        let failed = || {
            AclCreationResult::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_static_str(message)))
        };
        return CreateAclsResponse::default().with_results(req.creations.iter().map(|_| failed()).collect());
    }
    let mut results: Vec<AclCreationResult> = Vec::with_capacity(req.creations.len());
    let (mut valid, mut slots) = (Vec::new(), Vec::new());
    for c in &req.creations {
        let parsed = binding(
            c.resource_type,
            c.resource_name.to_string(),
            c.resource_pattern_type,
            c.principal.to_string(),
            c.host.to_string(),
            c.operation,
            c.permission_type,
        )
        .and_then(|acl| acl.validate().map(|()| acl));
        let mut r = AclCreationResult::default();
        match parsed {
            Ok(acl) => {
                slots.push(results.len());
                valid.push(acl);
            }
            Err(why) => {
                r.error_code = errors::INVALID_REQUEST;
                r.error_message = Some(errors::message(why));
            }
        }
        results.push(r);
    }
    if !valid.is_empty() {
        let ControlReply::AclsCreated(outcomes) = b.control(ControlRequest::CreateAcls { acls: valid }).await else {
            unreachable!("CreateAcls gets an AclsCreated reply")
        };
        for (i, outcome) in slots.into_iter().zip(outcomes) {
            if let Err(e) = outcome {
                results[i].error_code = errors::control(&e);
                results[i].error_message = Some(errors::message(e.to_string()));
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

/// An ACL from its wire fields; codes that name no concrete value (ANY,
/// MATCH, UNKNOWN, out of range) are refused with Kafka's messages.
fn binding(
    resource_type: i8,
    resource_name: String,
    pattern: i8,
    principal: String,
    host: String,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let named = |what: &str, code: i8| format!("Invalid {what} {code}");
    Ok(AclBinding {
        resource_type: ResourceType::from_code(resource_type).ok_or_else(|| named("resourceType", resource_type))?,
        resource_name,
        pattern: PatternType::from_code(pattern).ok_or_else(|| named("patternType", pattern))?,
        principal,
        host,
        operation: Operation::from_code(operation).ok_or_else(|| named("operation", operation))?,
        permission: Permission::from_code(permission).ok_or_else(|| named("permissionType", permission))?,
    })
}
