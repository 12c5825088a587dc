//! FindCoordinator: a group's coordinator is the broker leading the
//! partition of `__consumer_offsets` that the group id hashes to; asking
//! creates that topic if it is missing, as Kafka does. Transaction
//! coordinators (key type 1) are not served.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::group;
use crate::node::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

/// v5 only adds an error code for transactions; v6's share groups are not served.
pub const VERSIONS: (i16, i16) = (0, 5);

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

pub async fn handle(
    b: &Rc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
    caller: &Caller<'_>,
) -> FindCoordinatorResponse {
    let listener = &caller.info.listener;
    let keys = if version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    // One try at creating the offsets topic per request: v4 may name
    // 100,000 groups, and a creation that fails (the partition limit) goes
    // through the controller each time (the wire fuzzer's request of ~20,000
    // keys went unanswered for over 20 s).
    let mut create = true;
    for key in keys {
        let found = if req.key_type == GROUP_KEY && !caller.may_group(Operation::Describe, key.as_str()) {
            Err((errors::GROUP_AUTHORIZATION_FAILED, "Group authorization failed."))
        } else if req.key_type == TRANSACTION_KEY
            && !caller.may(Operation::Describe, ResourceType::TransactionalId, key.as_str())
        {
            Err((
                errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "Transactional Id authorization failed.",
            ))
        } else if req.key_type != GROUP_KEY {
            Err((errors::COORDINATOR_NOT_AVAILABLE, "transactions are not supported"))
        } else {
            let located = group::coordinator_of(b, key.as_str(), create).await;
            if located == Err(errors::COORDINATOR_NOT_AVAILABLE) {
                create = false;
            }
            match located {
                Ok(Some((shard, _))) => b.leader_of(shard).ok_or((
                    errors::COORDINATOR_NOT_AVAILABLE,
                    "the group's offsets partition has no leader now",
                )),
                Ok(None) => Err((errors::COORDINATOR_NOT_AVAILABLE, "no coordinator for this group")),
                Err(code) => Err((code, "no coordinator for this group")),
            }
        };
        let mut c = Coordinator::default().with_key(key);
        match found {
            Ok(node) => {
                let adv = b.address_of(node, listener);
                c.node_id = BrokerId(node);
                c.host = StrBytes::from_string(adv.ip().to_string());
                c.port = adv.port() as i32;
            }
            Err((code, why)) => {
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = code;
                c.error_message = Some(StrBytes::from_static_str(why));
            }
        }
        coordinators.push(c);
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().expect("one key before v4");
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}
