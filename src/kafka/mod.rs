//! The Kafka front end: framing (`connection.rs`), one file per API, and
//! the table of the versions we serve (`SUPPORTED`, which ApiVersions
//! advertises exactly). The codec is `kafka-protocol`'s, generated from
//! Kafka's own message specs.

pub mod api_versions;
pub mod connection;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_configs;
pub mod errors;
pub mod fetch;
pub mod find_coordinator;
pub mod frame;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::node::broker::Broker;
use errors::ErrorCodes;

/// Every API corestream serves, with the version range it serves. Produce
/// and Fetch stop below v13, where topics are named by id only.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    served(ApiKey::Produce, produce::VERSIONS),
    served(ApiKey::Fetch, fetch::VERSIONS),
    served(ApiKey::ListOffsets, list_offsets::VERSIONS),
    served(ApiKey::Metadata, metadata::VERSIONS),
    served(ApiKey::ApiVersions, api_versions::VERSIONS),
    served(ApiKey::CreateTopics, create_topics::VERSIONS),
    served(ApiKey::DeleteTopics, delete_topics::VERSIONS),
    served(ApiKey::InitProducerId, init_producer_id::VERSIONS),
    served(ApiKey::DescribeConfigs, describe_configs::VERSIONS),
    served(ApiKey::CreatePartitions, create_partitions::VERSIONS),
    served(ApiKey::IncrementalAlterConfigs, incremental_alter_configs::VERSIONS),
    served(ApiKey::FindCoordinator, find_coordinator::VERSIONS),
    served(ApiKey::OffsetCommit, offset_commit::VERSIONS),
    served(ApiKey::OffsetFetch, offset_fetch::VERSIONS),
    served(ApiKey::JoinGroup, join_group::VERSIONS),
    served(ApiKey::Heartbeat, heartbeat::VERSIONS),
    served(ApiKey::LeaveGroup, leave_group::VERSIONS),
    served(ApiKey::SyncGroup, sync_group::VERSIONS),
];

const fn served(key: ApiKey, versions: (i16, i16)) -> (ApiKey, i16, i16) {
    (key, versions.0, versions.1)
}

pub fn supports(key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|&(k, lo, hi)| k == key && (lo..=hi).contains(&version))
}

/// Why a request ends its connection instead of getting a response.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request body does not decode as {api:?} v{version}: {reason}")]
    Decode { api: ApiKey, version: i16, reason: String },
    #[error("response for {api:?} v{version} does not encode: {reason}")]
    Encode { api: ApiKey, version: i16, reason: String },
}

/// A response frame, or nothing (acks=0 produce).
pub type Reply = Option<frame::Frame>;

/// Encodes `resp` behind its response header, length-prefixed.
pub fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    correlation_id: i32,
    version: i16,
    resp: &R,
) -> Result<frame::Frame, FrameError> {
    frame::encode(api, correlation_id, version, resp, Vec::new())
}

fn decode<R: Decodable>(api: ApiKey, version: i16, body: &mut Bytes) -> Result<R, FrameError> {
    R::decode(body, version).map_err(|e| FrameError::Decode {
        api,
        version,
        reason: e.to_string(),
    })
}

/// Runs one request whose header is decoded and whose version is served.
/// `throttle_ms` is how long its frame waited for the shard's memory budget;
/// Produce reports it as `throttle_time_ms`, so the client backs off too.
pub async fn dispatch(
    broker: Rc<Broker>,
    header: RequestHeader,
    mut body: Bytes,
    throttle_ms: i32,
) -> Result<Reply, FrameError> {
    let version = header.request_api_version;
    let corr = header.correlation_id;
    let api = ApiKey::try_from(header.request_api_key).expect("dispatch gets known API keys");
    macro_rules! serve {
        ($module:ident) => {{
            let req = decode(api, version, &mut body)?;
            let resp = $module::handle(&broker, req, version).await;
            resp.error_codes(&mut |code| broker.metrics.error(code));
            Ok(Some(encode_response(api, corr, version, &resp)?))
        }};
    }
    match api {
        ApiKey::Produce => {
            let req = decode(api, version, &mut body)?;
            match produce::handle(&broker, req, version, throttle_ms).await {
                Some(resp) => {
                    resp.error_codes(&mut |code| broker.metrics.error(code));
                    Ok(Some(encode_response(api, corr, version, &resp)?))
                }
                None => Ok(None),
            }
        }
        ApiKey::Fetch => {
            let req = decode(api, version, &mut body)?;
            let resp = fetch::handle(&broker, req, version).await;
            resp.error_codes(&mut |code| broker.metrics.error(code));
            // The fetched batches go to the socket as read, not copied into the frame.
            let borrowed = resp
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .filter_map(|p| p.records.clone())
                .collect();
            Ok(Some(frame::encode(api, corr, version, &resp, borrowed)?))
        }
        ApiKey::ListOffsets => serve!(list_offsets),
        ApiKey::Metadata => serve!(metadata),
        ApiKey::ApiVersions => serve!(api_versions),
        ApiKey::CreateTopics => serve!(create_topics),
        ApiKey::DeleteTopics => serve!(delete_topics),
        ApiKey::DescribeConfigs => serve!(describe_configs),
        ApiKey::CreatePartitions => serve!(create_partitions),
        ApiKey::InitProducerId => serve!(init_producer_id),
        ApiKey::IncrementalAlterConfigs => serve!(incremental_alter_configs),
        ApiKey::FindCoordinator => serve!(find_coordinator),
        ApiKey::OffsetCommit => serve!(offset_commit),
        ApiKey::OffsetFetch => serve!(offset_fetch),
        ApiKey::JoinGroup => serve!(join_group),
        ApiKey::SyncGroup => serve!(sync_group),
        ApiKey::Heartbeat => serve!(heartbeat),
        ApiKey::LeaveGroup => serve!(leave_group),
        other => unreachable!("{other:?} is not in SUPPORTED"),
    }
}

/// Resolves a topic partition to its id and owner shard on this shard's
/// metadata copy.
pub fn locate(broker: &Broker, topic: &str, partition: i32) -> Option<crate::controller::PartitionMeta> {
    let meta = broker.meta.borrow();
    let t = meta.topic(topic)?;
    usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .copied()
}
