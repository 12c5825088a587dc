//! DescribeCluster (KIP-700): the cluster id, the controller and every
//! broker, as admin clients' describeCluster and UIs ask for them instead
//! of Metadata. A broker of the cluster that is not reachable now is a
//! fenced broker: listed only when the client asks for fenced brokers (v2).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::Caller;
use super::errors;
use crate::node::broker::Broker;
use corestream_shards::ShardId;

pub const VERSIONS: (i16, i16) = (0, 2);

/// KIP-919's endpoint types: clients here talk to brokers; there are no
/// separate controller endpoints.
const BROKER_ENDPOINT: i8 = 1;
const CONTROLLER_ENDPOINT: i8 = 2;

pub async fn handle(
    b: &Rc<Broker>,
    req: DescribeClusterRequest,
    version: i16,
    caller: &Caller<'_>,
) -> DescribeClusterResponse {
    let listener = &caller.info.listener;
    // v0 has no endpoint type (it reads as the broker's); v1+ must ask for
    // a broker endpoint, with Kafka's two errors for anything else.
    if version >= 1 && req.endpoint_type != BROKER_ENDPOINT {
        let (code, message) = if req.endpoint_type == CONTROLLER_ENDPOINT {
            (
                errors::MISMATCHED_ENDPOINT_TYPE,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                    .to_string(),
            )
        } else {
            (
                errors::UNSUPPORTED_ENDPOINT_TYPE,
                format!("Unsupported endpoint type {}", req.endpoint_type),
            )
        };
        return DescribeClusterResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let live = b.live_brokers();
    let brokers: Vec<DescribeClusterBroker> = b
        .config
        .brokers()
        .into_iter()
        .map(|id| (id, !live.contains(&id)))
        .filter(|&(_, fenced)| !fenced || req.include_fenced_brokers)
        .map(|(id, fenced)| {
            let addr = b.address_of(id, listener);
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(StrBytes::from_string(addr.ip().to_string()))
                .with_port(addr.port() as i32)
                .with_is_fenced(fenced)
        })
        .collect();
    // The same controller Metadata names (the metadata group's leader), or
    // -1 when it is not among the brokers listed, as Kafka answers.
    let controller = b.leader_of(ShardId(0)).unwrap_or(b.config.node_id);
    let controller = if brokers.iter().any(|br| br.broker_id.0 == controller) {
        controller
    } else {
        -1
    };
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(b.cluster_id.to_string()))
        .with_controller_id(BrokerId(controller))
        .with_endpoint_type(BROKER_ENDPOINT)
        .with_brokers(brokers)
        .with_cluster_authorized_operations(caller.cluster_operations(req.include_cluster_authorized_operations))
}
