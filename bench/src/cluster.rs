//! What the generator learns from the cluster: partition leaders (through
//! Metadata), topic creation, and partition end offsets.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::Conn;

pub const METADATA_VERSION: i16 = 9;
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Partition index -> leader address.
pub type Leaders = BTreeMap<i32, SocketAddr>;

/// The first broker of a comma-separated bootstrap list that accepts a
/// connection (the first that resolves, if none does yet): the generator
/// learns the others from Metadata.
pub fn resolve_bootstrap(list: &str) -> anyhow::Result<SocketAddr> {
    let addrs = list
        .split(',')
        .map(|b| resolve(b.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let up = addrs
        .iter()
        .find(|a| std::net::TcpStream::connect_timeout(a, std::time::Duration::from_secs(1)).is_ok());
    up.or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("empty bootstrap list"))
}

pub fn resolve(bootstrap: &str) -> anyhow::Result<SocketAddr> {
    bootstrap
        .to_socket_addrs()
        .with_context(|| format!("resolving {bootstrap}"))?
        .next()
        .ok_or_else(|| anyhow!("{bootstrap} resolves to no address"))
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// Creates `topic` with `partitions` unless it exists, then returns its leaders.
pub async fn prepare_topic(bootstrap: SocketAddr, topic: &str, partitions: i32) -> anyhow::Result<Leaders> {
    let conn = Conn::connect(bootstrap).await?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)])
        .with_timeout_ms(30_000);
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 4, &req).await?;
    for t in &resp.topics {
        if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
            bail!("creating topic {topic}: Kafka error code {}", t.error_code);
        }
    }
    // A broker may name a new topic's leaders a moment after it answered
    // CreateTopics (Apache Kafka's metadata propagates asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match leaders(&conn, topic).await {
            Ok(l) => return Ok(l),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => glommio::timer::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

pub async fn leaders(conn: &Conn, topic: &str) -> anyhow::Result<Leaders> {
    let (leaders, partitions, _) = metadata(conn, topic).await?;
    if leaders.len() != partitions {
        bail!(
            "{} of the {partitions} partitions of {topic} have no live leader",
            partitions - leaders.len()
        );
    }
    Ok(leaders)
}

/// The live leaders of `topic`'s partitions (those without one are left
/// out), how many partitions it has, and every broker's address.
pub async fn metadata(conn: &Conn, topic: &str) -> anyhow::Result<(Leaders, usize, Vec<SocketAddr>)> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let md: MetadataResponse = conn.call(ApiKey::Metadata, METADATA_VERSION, &req).await?;
    let brokers = broker_addresses(&md);
    let t = md.topics.first().ok_or_else(|| anyhow!("no metadata for {topic}"))?;
    if t.error_code != 0 {
        bail!("metadata for {topic}: Kafka error code {}", t.error_code);
    }
    let leaders = t
        .partitions
        .iter()
        .filter_map(|p| brokers.get(&p.leader_id).map(|a| (p.partition_index, *a)))
        .collect();
    Ok((leaders, t.partitions.len(), brokers.into_values().collect()))
}

/// Broker id -> address, from a Metadata response.
pub fn broker_addresses(md: &MetadataResponse) -> BTreeMap<BrokerId, SocketAddr> {
    md.brokers
        .iter()
        .filter_map(|b| {
            resolve(&format!("{}:{}", b.host.as_str(), b.port))
                .ok()
                .map(|a| (b.node_id, a))
        })
        .collect()
}

/// Latest (-1) or earliest (-2) offsets of the given partitions.
pub async fn offsets(conn: &Conn, topic: &str, partitions: &[i32], which: i64) -> anyhow::Result<BTreeMap<i32, i64>> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(which)
                    })
                    .collect(),
            )]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 4, &req).await?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets {topic}/{}: Kafka error code {}",
                    p.partition_index,
                    p.error_code
                );
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}
