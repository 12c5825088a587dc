//! The Kafka front end: framing (`connection.rs`), one file per API, and
//! the table of the versions we serve (`SUPPORTED`, which ApiVersions
//! advertises exactly). The codec is `kafka-protocol`'s, generated from
//! Kafka's own message specs.

pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod authorized;
pub mod connection;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_user_scram_credentials;
pub mod errors;
pub mod fetch;
pub mod find_coordinator;
pub mod frame;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod record_scan;
pub mod sasl;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::node::broker::Broker;
use errors::ErrorCodes;

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

/// The one list of the APIs corestream serves: API, handler module (with
/// its `VERSIONS`), request type.
macro_rules! requests {
    ($($api:ident => $module:ident, $req:ident;)*) => {
        /// Every API corestream serves, with the version range it serves
        /// (ApiVersions advertises exactly this). Produce and Fetch stop
        /// below v13, where topics are named by id only.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[$(served(ApiKey::$api, $module::VERSIONS),)*];

        /// A decoded request of an API we serve.
        pub enum Request {
            $($api(kafka_protocol::messages::$req),)*
        }

        /// Decodes a request body of a served API and version; anything
        /// else, or bytes that do not decode, is a broken frame. Pure: the
        /// fuzz target `kafka_frame` runs it.
        pub fn decode_request(api: ApiKey, version: i16, body: &mut Bytes) -> Result<Request, FrameError> {
            match api {
                $(ApiKey::$api => decode(api, version, body).map(Request::$api),)*
                other => Err(FrameError::Decode {
                    api: other,
                    version,
                    reason: "not a served API".into(),
                }),
            }
        }
    };
}

requests! {
    Produce => produce, ProduceRequest;
    Fetch => fetch, FetchRequest;
    ListOffsets => list_offsets, ListOffsetsRequest;
    DeleteRecords => delete_records, DeleteRecordsRequest;
    Metadata => metadata, MetadataRequest;
    ApiVersions => api_versions, ApiVersionsRequest;
    CreateTopics => create_topics, CreateTopicsRequest;
    DeleteTopics => delete_topics, DeleteTopicsRequest;
    InitProducerId => init_producer_id, InitProducerIdRequest;
    DescribeConfigs => describe_configs, DescribeConfigsRequest;
    CreatePartitions => create_partitions, CreatePartitionsRequest;
    DescribeLogDirs => describe_log_dirs, DescribeLogDirsRequest;
    IncrementalAlterConfigs => incremental_alter_configs, IncrementalAlterConfigsRequest;
    FindCoordinator => find_coordinator, FindCoordinatorRequest;
    OffsetCommit => offset_commit, OffsetCommitRequest;
    OffsetFetch => offset_fetch, OffsetFetchRequest;
    JoinGroup => join_group, JoinGroupRequest;
    Heartbeat => heartbeat, HeartbeatRequest;
    LeaveGroup => leave_group, LeaveGroupRequest;
    SyncGroup => sync_group, SyncGroupRequest;
    ListGroups => list_groups, ListGroupsRequest;
    DescribeGroups => describe_groups, DescribeGroupsRequest;
    DeleteGroups => delete_groups, DeleteGroupsRequest;
    OffsetDelete => offset_delete, OffsetDeleteRequest;
    DescribeCluster => describe_cluster, DescribeClusterRequest;
    SaslHandshake => sasl_handshake, SaslHandshakeRequest;
    SaslAuthenticate => sasl_authenticate, SaslAuthenticateRequest;
    DescribeUserScramCredentials => describe_user_scram_credentials, DescribeUserScramCredentialsRequest;
    AlterUserScramCredentials => alter_user_scram_credentials, AlterUserScramCredentialsRequest;
    CreateAcls => create_acls, CreateAclsRequest;
    DescribeAcls => describe_acls, DescribeAclsRequest;
    DeleteAcls => delete_acls, DeleteAclsRequest;
}

/// Runs one request whose header is decoded and whose version is served.
/// `throttle_ms` is how long its frame waited for the shard's memory budget;
/// Produce reports it as `throttle_time_ms`, so the client backs off too.
pub async fn dispatch(
    broker: Rc<Broker>,
    header: RequestHeader,
    mut body: Bytes,
    throttle_ms: i32,
    info: &connection::ConnectionInfo,
) -> Result<Reply, FrameError> {
    let version = header.request_api_version;
    let corr = header.correlation_id;
    let api = ApiKey::try_from(header.request_api_key).expect("dispatch gets known API keys");
    let caller = authorized::Caller::new(&broker, info);
    macro_rules! serve {
        ($module:ident, $req:expr) => {{
            let resp = $module::handle(&broker, $req, version, &caller).await;
            resp.error_codes(&mut |code| broker.metrics.error(code));
            Ok(Some(encode_response(api, corr, version, &resp)?))
        }};
    }
    match decode_request(api, version, &mut body)? {
        Request::Produce(req) => match produce::handle(&broker, req, version, throttle_ms, &caller).await {
            Some(resp) => {
                resp.error_codes(&mut |code| broker.metrics.error(code));
                Ok(Some(encode_response(api, corr, version, &resp)?))
            }
            None => Ok(None),
        },
        Request::Fetch(req) => {
            let resp = fetch::handle(&broker, req, version, &caller).await;
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
        Request::ListOffsets(req) => serve!(list_offsets, req),
        Request::DeleteRecords(req) => serve!(delete_records, req),
        Request::Metadata(req) => serve!(metadata, req),
        Request::ApiVersions(req) => serve!(api_versions, req),
        Request::CreateTopics(req) => serve!(create_topics, req),
        Request::DeleteTopics(req) => serve!(delete_topics, req),
        Request::DescribeConfigs(req) => serve!(describe_configs, req),
        Request::CreatePartitions(req) => serve!(create_partitions, req),
        Request::DescribeLogDirs(req) => serve!(describe_log_dirs, req),
        Request::InitProducerId(req) => serve!(init_producer_id, req),
        Request::IncrementalAlterConfigs(req) => serve!(incremental_alter_configs, req),
        Request::FindCoordinator(req) => serve!(find_coordinator, req),
        Request::OffsetCommit(req) => serve!(offset_commit, req),
        Request::OffsetFetch(req) => serve!(offset_fetch, req),
        Request::JoinGroup(req) => {
            // DescribeGroups shows each member's client id and address.
            let client = crate::group::membership::ClientInfo {
                client_id: header.client_id.as_deref().unwrap_or_default().to_string(),
                host: info.peer.map(|a| format!("/{}", a.ip())).unwrap_or_default(),
            };
            let resp = join_group::handle(&broker, req, version, client, &caller).await;
            resp.error_codes(&mut |code| broker.metrics.error(code));
            Ok(Some(encode_response(api, corr, version, &resp)?))
        }
        Request::SyncGroup(req) => serve!(sync_group, req),
        Request::Heartbeat(req) => serve!(heartbeat, req),
        Request::LeaveGroup(req) => serve!(leave_group, req),
        Request::ListGroups(req) => serve!(list_groups, req),
        Request::DescribeGroups(req) => serve!(describe_groups, req),
        Request::DeleteGroups(req) => serve!(delete_groups, req),
        Request::OffsetDelete(req) => serve!(offset_delete, req),
        Request::DescribeCluster(req) => serve!(describe_cluster, req),
        Request::SaslHandshake(req) => serve!(sasl_handshake, req),
        Request::SaslAuthenticate(req) => serve!(sasl_authenticate, req),
        Request::DescribeUserScramCredentials(req) => serve!(describe_user_scram_credentials, req),
        Request::AlterUserScramCredentials(req) => serve!(alter_user_scram_credentials, req),
        Request::CreateAcls(req) => serve!(create_acls, req),
        Request::DescribeAcls(req) => serve!(describe_acls, req),
        Request::DeleteAcls(req) => serve!(delete_acls, req),
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
