//! SaslAuthenticate reaching the API layer: there is no exchange under way
//! (see `sasl_handshake.rs`), so it is in the wrong state, as in Kafka.

use super::authorized::Caller;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::node::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 2);

pub async fn handle(
    _b: &Broker,
    _req: SaslAuthenticateRequest,
    _version: i16,
    _caller: &Caller<'_>,
) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(errors::ILLEGAL_SASL_STATE)
        .with_error_message(Some(StrBytes::from_static_str(
            "SaslAuthenticate request received after successful authentication",
        )))
}
