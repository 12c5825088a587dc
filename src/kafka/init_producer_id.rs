//! InitProducerId for idempotent producers (the default of the Java client
//! and kafka-python 3). Ids come from the controller, in blocks recorded in
//! the metadata log, so they are unique for the life of the data directory.
//! A producer re-initialising with its id (v3+, KIP-360) gets the next epoch.
//! Transactions are not served: a transactional id is refused.

use super::authorized::Caller;
use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::errors;
use crate::controller::plan::ControlError;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub const VERSIONS: (i16, i16) = (0, 4);

pub async fn handle(
    b: &Rc<Broker>,
    req: InitProducerIdRequest,
    version: i16,
    caller: &Caller<'_>,
) -> InitProducerIdResponse {
    // Errors carry producer id and epoch -1, as Kafka sends them.
    let resp = InitProducerIdResponse::default().with_producer_epoch(-1);
    if let Some(id) = &req.transactional_id {
        if !caller.may(Operation::Write, ResourceType::TransactionalId, id.0.as_str()) {
            return resp.with_error_code(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        return resp.with_error_code(errors::INVALID_REQUEST);
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE
    // on some topic (KIP-679), as Kafka checks.
    if !caller.sees(Operation::IdempotentWrite, ResourceType::Cluster, CLUSTER_NAME)
        && !caller.may_some(Operation::Write, ResourceType::Topic)
    {
        return resp.with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED);
    }
    if version >= 3 && req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match b.control(ControlRequest::AllocateProducerId).await {
        ControlReply::ProducerId(Ok(id)) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        // No metadata leader reachable from here: retriable, and the
        // client may ask another broker (KIP-98's code for this).
        ControlReply::ProducerId(Err(ControlError::NotController(_) | ControlError::TimedOut(_))) => {
            resp.with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
        }
        ControlReply::ProducerId(Err(e)) => resp.with_error_code(errors::control(&e)),
        _ => unreachable!("AllocateProducerId gets a ProducerId reply"),
    }
}
