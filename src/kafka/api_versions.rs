//! ApiVersions: advertise exactly `SUPPORTED`. A version we do not serve
//! gets UNSUPPORTED_VERSION in a v0-shaped reply that still lists our
//! versions, as KIP-511 specifies, so the client retries with one we do.

use super::authorized::Caller;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{encode_response, errors, SUPPORTED};
use crate::node::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 4);

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect()
}

pub async fn handle(_b: &Broker, _req: ApiVersionsRequest, _version: i16, _caller: &Caller<'_>) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(errors::NONE)
        .with_api_keys(api_keys())
}

pub fn unsupported_version_reply(correlation_id: i32) -> super::frame::Frame {
    let resp = ApiVersionsResponse::default()
        .with_error_code(errors::UNSUPPORTED_VERSION)
        .with_api_keys(api_keys());
    encode_response(ApiKey::ApiVersions, correlation_id, 0, &resp).expect("ApiVersions v0 encodes")
}
