//! The seed workload: many topics, a few partitions each, a few messages
//! per partition, then every partition consumed by assignment and counted.
//! 1000 topics x 3 partitions x 1 message is the workload that killed the
//! broker corestream replaces (0 of 3000 delivered).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};

use crate::batch;
use crate::client::Conn;
use crate::cluster::{self, METADATA_VERSION};

const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Topics per request.
const CHUNK: usize = 100;
/// How long leaders are asked again for, and produce retried, as a
/// client's delivery timeout would.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// Errors a Kafka client retries: UNKNOWN_TOPIC_OR_PARTITION,
/// LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT,
/// NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND.
const RETRIABLE: &[i16] = &[3, 5, 6, 7, 19, 20];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    pub topics: usize,
    pub partitions: i32,
    #[serde(default = "one")]
    pub messages_per_partition: usize,
    #[serde(default = "hundred")]
    pub message_bytes: usize,
}

fn default_prefix() -> String {
    "seed".into()
}
fn one() -> usize {
    1
}
fn hundred() -> usize {
    100
}

#[derive(Debug, Serialize)]
pub struct SeedSummary {
    pub mode: &'static str,
    pub topics: usize,
    pub partitions: usize,
    pub expected: u64,
    pub produced: u64,
    pub delivered: u64,
    pub errors: BTreeMap<String, u64>,
    pub create_seconds: f64,
    pub produce_seconds: f64,
    pub consume_seconds: f64,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub async fn run(bootstrap: SocketAddr, cfg: SeedConfig) -> anyhow::Result<SeedSummary> {
    let names: Vec<String> = (0..cfg.topics)
        .map(|i| format!("{}-{i:05}", cfg.topic_prefix))
        .collect();
    let conn = Conn::connect(bootstrap).await?;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let t0 = Instant::now();
    for chunk in names.chunks(CHUNK) {
        let req = CreateTopicsRequest::default().with_timeout_ms(60_000).with_topics(
            chunk
                .iter()
                .map(|n| {
                    CreatableTopic::default()
                        .with_name(name(n))
                        .with_num_partitions(cfg.partitions)
                        .with_replication_factor(-1)
                })
                .collect(),
        );
        let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 4, &req).await?;
        for t in resp.topics {
            if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
                *errors.entry(t.error_code.to_string()).or_default() += 1;
            }
        }
    }
    let create_seconds = t0.elapsed().as_secs_f64();

    // Leaders of every partition, then one connection per leader. A broker
    // may name a new topic's leaders a moment after CreateTopics answered
    // (Apache Kafka's metadata propagates asynchronously): topics without
    // them are asked again, as a client would, for up to RETRY_FOR.
    let mut leaders: BTreeMap<SocketAddr, Vec<(String, i32)>> = BTreeMap::new();
    let mut unknown: Vec<String> = names.clone();
    let deadline = Instant::now() + RETRY_FOR;
    while !unknown.is_empty() {
        let mut again = Vec::new();
        for chunk in unknown.chunks(CHUNK) {
            let req = MetadataRequest::default()
                .with_topics(Some(
                    chunk
                        .iter()
                        .map(|n| MetadataRequestTopic::default().with_name(Some(name(n))))
                        .collect(),
                ))
                .with_allow_auto_topic_creation(false);
            let md: MetadataResponse = conn.call(ApiKey::Metadata, METADATA_VERSION, &req).await?;
            let brokers = cluster::broker_addresses(&md);
            for t in md.topics {
                let topic = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                let placed: Option<Vec<(SocketAddr, i32)>> = t
                    .partitions
                    .iter()
                    .map(|p| brokers.get(&p.leader_id).map(|a| (*a, p.partition_index)))
                    .collect();
                match placed {
                    Some(placed) if t.error_code == 0 && !placed.is_empty() => {
                        for (leader, p) in placed {
                            leaders.entry(leader).or_default().push((topic.clone(), p));
                        }
                    }
                    _ => again.push(topic),
                }
            }
        }
        if !again.is_empty() && Instant::now() > deadline {
            *errors.entry("no leaders".to_string()).or_default() += again.len() as u64;
            break;
        }
        if !again.is_empty() {
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        unknown = again;
    }
    let partitions: usize = leaders.values().map(Vec::len).sum();
    let expected = (cfg.topics * cfg.partitions as usize * cfg.messages_per_partition) as u64;

    // Each partition's batch, retried on a retriable error (a leader not
    // ready yet) until RETRY_FOR; only acknowledged partitions are read back.
    let t1 = Instant::now();
    let value = vec![b's'; cfg.message_bytes];
    let stamps: Vec<i64> = vec![0; cfg.messages_per_partition];
    let mut produced = 0u64;
    let mut conns = BTreeMap::new();
    let mut acked: BTreeMap<SocketAddr, Vec<(String, i32)>> = BTreeMap::new();
    let deadline = Instant::now() + RETRY_FOR;
    for (leader, parts) in &leaders {
        let c = Conn::connect(*leader).await?;
        let mut pending: Vec<(String, i32)> = parts.clone();
        while !pending.is_empty() {
            let mut retry = Vec::new();
            for chunk in pending.chunks(CHUNK * cfg.partitions.max(1) as usize) {
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for (t, p) in chunk {
                    by_topic.entry(t).or_default().push(*p);
                }
                let req = ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(
                        by_topic
                            .iter()
                            .map(|(t, ps)| {
                                TopicProduceData::default().with_name(name(t)).with_partition_data(
                                    ps.iter()
                                        .map(|&p| {
                                            PartitionProduceData::default()
                                                .with_index(p)
                                                .with_records(Some(batch::build(&value, &stamps, None)))
                                        })
                                        .collect(),
                                )
                            })
                            .collect(),
                    );
                let resp: ProduceResponse = c.call(ApiKey::Produce, crate::produce::PRODUCE_VERSION, &req).await?;
                for t in &resp.responses {
                    for p in &t.partition_responses {
                        let key = (t.name.0.to_string(), p.index);
                        if p.error_code == 0 {
                            produced += cfg.messages_per_partition as u64;
                            acked.entry(*leader).or_default().push(key);
                        } else {
                            *errors.entry(p.error_code.to_string()).or_default() += 1;
                            if RETRIABLE.contains(&p.error_code) {
                                retry.push(key);
                            }
                        }
                    }
                }
            }
            if !retry.is_empty() && Instant::now() > deadline {
                break;
            }
            if !retry.is_empty() {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            pending = retry;
        }
        conns.insert(*leader, c);
    }
    let produce_seconds = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let mut delivered = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (leader, parts) in &acked {
        let c = &conns[leader];
        let mut next: BTreeMap<(String, i32), i64> = parts.iter().map(|(t, p)| ((t.clone(), *p), 0)).collect();
        while !next.is_empty() {
            if Instant::now() > deadline {
                bail!(
                    "consuming the seed topics took over 60 s: {} partitions unfinished",
                    next.len()
                );
            }
            let chunk: Vec<((String, i32), i64)> = next.iter().take(CHUNK * 3).map(|(k, v)| (k.clone(), *v)).collect();
            let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
            for ((t, p), o) in &chunk {
                by_topic.entry(t).or_default().push((*p, *o));
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(64 << 20)
                .with_session_epoch(-1)
                .with_topics(
                    by_topic
                        .iter()
                        .map(|(t, ps)| {
                            FetchTopic::default().with_topic(name(t)).with_partitions(
                                ps.iter()
                                    .map(|&(p, o)| {
                                        FetchPartition::default()
                                            .with_partition(p)
                                            .with_fetch_offset(o)
                                            .with_partition_max_bytes(1 << 20)
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                );
            let resp: FetchResponse = c.call(ApiKey::Fetch, crate::consume::FETCH_VERSION, &req).await?;
            for t in resp.responses {
                let topic = t.topic.0.to_string();
                for p in t.partitions {
                    let key = (topic.clone(), p.partition_index);
                    if p.error_code != 0 {
                        *errors.entry(p.error_code.to_string()).or_default() += 1;
                        continue;
                    }
                    let Some(records) = p.records else { continue };
                    let (_, n, _) = batch::count(&records);
                    delivered += n;
                    if let Some(last) = batch::last_offset(&records) {
                        next.insert(key.clone(), last + 1);
                    }
                    if next.get(&key).is_some_and(|&o| o >= cfg.messages_per_partition as i64) {
                        next.remove(&key);
                    }
                }
            }
        }
    }
    Ok(SeedSummary {
        mode: "seed",
        topics: cfg.topics,
        partitions,
        expected,
        produced,
        delivered,
        errors,
        create_seconds,
        produce_seconds,
        consume_seconds: t2.elapsed().as_secs_f64(),
    })
}
