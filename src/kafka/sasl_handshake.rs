//! SaslHandshake reaching the API layer: on a PLAINTEXT listener, or on an
//! authenticated connection that is not re-authenticating. The handshake
//! itself is the SASL layer's (`sasl.rs`); like Kafka, a handshake here
//! is in the wrong state.

use super::authorized::Caller;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::errors;
use crate::node::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 1);

pub async fn handle(
    _b: &Broker,
    _req: SaslHandshakeRequest,
    _version: i16,
    _caller: &Caller<'_>,
) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(errors::ILLEGAL_SASL_STATE)
}
