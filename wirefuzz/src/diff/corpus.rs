//! The scenarios both brokers answer. Each step sends the same request
//! (or, where an answer names a member id, each broker's own) and compares
//! the answers; set-up steps that only wait for a broker (a new topic's
//! leaders, a group coordinator) are not compared. Names are unique per
//! run (`tag`), so a run starts from nothing on either broker.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::Session;

pub(super) const TOPIC_RESOURCE: i8 = 2;
const BROKER_RESOURCE: i8 = 4;
/// DescribeConfigs config_source of a value set on the topic itself
/// (DYNAMIC_TOPIC_CONFIG).
const TOPIC_CONFIG_SOURCE: i8 = 1;
const SET: i8 = 0;
const DELETE: i8 = 1;

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

pub(super) fn new_topic(name: &str, partitions: i32, replication: i16, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v))))
                .collect(),
        )
}

/// A magic-2 batch of `(key, value, timestamp)` records, uncompressed.
pub fn batch(records: &[(Option<&str>, &str, i64)]) -> anyhow::Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v, ts))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where offset minus sequence
            // changes; without a producer id the sequence is only that.
            sequence: i as i32 - 1,
            timestamp: *ts,
            key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(out.freeze())
}

pub(super) const T0: i64 = 1_700_000_000_000;

pub(super) fn produce(name: &str, partition: i32, acks: i16, records: Option<Bytes>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(records)])])
}

pub(super) fn fetch(name: &str, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(topic(name)).with_partitions(
            vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)],
        )])
}

pub(super) fn list_offsets(name: &str, partitions: &[(i32, i64)]) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(p, ts)| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(ts)
                    })
                    .collect(),
            )])
}

pub(super) fn metadata(names: &[&str], auto_create: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            names
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic(n))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(auto_create)
}

/// Waits (not compared) until every partition of `name` has a leader on
/// both brokers, and that leader serves it (Kafka's metadata names a
/// leader a moment before the leader takes requests).
fn settle_topic(x: &mut Session, name: &str) -> anyhow::Result<()> {
    let version = x.version(ApiKey::Metadata, 13)?;
    let lv = x.version(ApiKey::ListOffsets, 10)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for side in 0..2 {
        loop {
            let m: MetadataResponse = x.one(side, ApiKey::Metadata, version, &metadata(&[name], false))?;
            let led = m.topics.iter().all(|t| {
                t.error_code == 0 && !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
            });
            let partitions: Vec<(i32, i64)> = m
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, -1)))
                .collect();
            let ready = led && {
                let l: ListOffsetsResponse = x.one(side, ApiKey::ListOffsets, lv, &list_offsets(name, &partitions))?;
                l.topics.iter().flat_map(|t| &t.partitions).all(|p| p.error_code == 0)
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("{}: topic {name} has no leaders after 30 s", super::SIDES[side]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

pub(super) fn create(x: &mut Session, step: &str, topics: Vec<CreatableTopic>) -> anyhow::Result<()> {
    let version = x.version(ApiKey::CreateTopics, 7)?;
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(30_000);
    let names: Vec<String> = req.topics.iter().map(|t| t.name.0.to_string()).collect();
    let answers: [CreateTopicsResponse; 2] = x.compare(step, ApiKey::CreateTopics, version, |_| req.clone())?;
    for name in names {
        if answers.iter().all(|a| {
            a.topics
                .iter()
                .any(|t| t.name.0.as_str() == name.as_str() && t.error_code == 0)
        }) {
            settle_topic(x, &name)?;
        }
    }
    Ok(())
}

/// Every scenario, in order. `tag` makes this run's names unique.
pub fn run(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    api_versions(x)?;
    create_topics(x, tag)?;
    metadata_scenario(x, tag)?;
    produce_fetch(x, tag)?;
    list_offsets_scenario(x, tag)?;
    delete_records(x, tag)?;
    configs(x, tag)?;
    create_partitions(x, tag)?;
    groups(x, tag)?;
    producer_ids(x)?;
    describe_cluster(x)?;
    sasl_and_users(x, tag)?;
    super::acls::disabled(x, tag)?;
    log_dirs(x, tag)?;
    delete_topics(x, tag)?;
    Ok(())
}

fn api_versions(x: &mut Session) -> anyhow::Result<()> {
    x.scenario("api_versions");
    for version in [0, 3] {
        x.compare::<_, ApiVersionsResponse>(&format!("v{version}"), ApiKey::ApiVersions, version, |_| {
            ApiVersionsRequest::default()
                .with_client_software_name(s("corestream-wirediff"))
                .with_client_software_version(s("1"))
        })?;
    }
    Ok(())
}

fn create_topics(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("create_topics");
    let ok = format!("ct-{tag}");
    create(x, "three partitions", vec![new_topic(&ok, 3, 1, &[])])?;
    create(x, "already exists", vec![new_topic(&ok, 3, 1, &[])])?;
    create(x, "zero partitions", vec![new_topic(&format!("ct0-{tag}"), 0, 1, &[])])?;
    create(
        x,
        "negative partitions",
        vec![new_topic(&format!("ctn-{tag}"), -2, 1, &[])],
    )?;
    create(x, "replication 0", vec![new_topic(&format!("ctr0-{tag}"), 1, 0, &[])])?;
    create(
        x,
        "replication above brokers",
        vec![new_topic(&format!("ctr3-{tag}"), 1, 3, &[])],
    )?;
    create(
        x,
        "retention.ms not a number",
        vec![new_topic(&format!("ctc1-{tag}"), 1, 1, &[("retention.ms", "abc")])],
    )?;
    create(
        x,
        "unknown config",
        vec![new_topic(&format!("ctc2-{tag}"), 1, 1, &[("no.such.config", "1")])],
    )?;
    create(
        x,
        "cleanup.policy unknown",
        vec![new_topic(
            &format!("ctc3-{tag}"),
            1,
            1,
            &[("cleanup.policy", "forever")],
        )],
    )?;
    create(
        x,
        "Kafka topic configs",
        vec![new_topic(
            &format!("ctc4-{tag}"),
            1,
            1,
            &[
                ("cleanup.policy", "compact,delete"),
                ("segment.ms", "3600000"),
                ("min.cleanable.dirty.ratio", "0.1"),
                ("delete.retention.ms", "1000"),
                ("min.compaction.lag.ms", "0"),
                ("max.message.bytes", "2000000"),
            ],
        )],
    )?;
    create(
        x,
        "min.cleanable.dirty.ratio above 1",
        vec![new_topic(
            &format!("ctc5-{tag}"),
            1,
            1,
            &[("min.cleanable.dirty.ratio", "1.5")],
        )],
    )?;
    create(
        x,
        "name with a slash",
        vec![new_topic(&format!("a/b-{tag}"), 1, 1, &[])],
    )?;
    create(x, "name '.'", vec![new_topic(".", 1, 1, &[])])?;
    create(x, "name '..'", vec![new_topic("..", 1, 1, &[])])?;
    create(
        x,
        "name of 250 characters",
        vec![new_topic(&"n".repeat(250), 1, 1, &[])],
    )?;
    create(x, "empty name", vec![new_topic("", 1, 1, &[])])?;
    let version = x.version(ApiKey::CreateTopics, 7)?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![new_topic(&format!("ctv-{tag}"), 2, 1, &[])])
        .with_timeout_ms(30_000)
        .with_validate_only(true);
    x.compare::<_, CreateTopicsResponse>("validate only", ApiKey::CreateTopics, version, |_| req.clone())?;
    let v = x.version(ApiKey::Metadata, 13)?;
    x.compare::<_, MetadataResponse>("validated topic does not exist", ApiKey::Metadata, v, |_| {
        metadata(&[&format!("ctv-{tag}")], false)
    })?;
    Ok(())
}

fn metadata_scenario(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("metadata");
    let v = x.version(ApiKey::Metadata, 13)?;
    let name = format!("ct-{tag}");
    x.compare::<_, MetadataResponse>("a topic", ApiKey::Metadata, v, |_| metadata(&[&name], false))?;
    x.compare::<_, MetadataResponse>("an unknown topic, no auto-create", ApiKey::Metadata, v, |_| {
        metadata(&[&format!("nothere-{tag}")], false)
    })?;
    x.compare::<_, MetadataResponse>("an invalid name", ApiKey::Metadata, v, |_| {
        metadata(&["bad name!"], false)
    })?;
    x.compare::<_, MetadataResponse>("authorized operations asked", ApiKey::Metadata, v, |_| {
        metadata(&[&name], false).with_include_topic_authorized_operations(true)
    })?;
    Ok(())
}

fn produce_fetch(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("produce");
    let name = format!("pf-{tag}");
    create(
        x,
        "create",
        vec![new_topic(&name, 1, 1, &[("max.message.bytes", "1000")])],
    )?;
    let v = x.version(ApiKey::Produce, 12)?;
    let first = batch(&[(None, "a", T0), (Some("k"), "b", T0 + 1)])?;
    x.compare::<_, ProduceResponse>("acks=all", ApiKey::Produce, v, |_| {
        produce(&name, 0, -1, Some(first.clone()))
    })?;
    let second = batch(&[(None, "c", T0 + 2)])?;
    x.compare::<_, ProduceResponse>("acks=1", ApiKey::Produce, v, |_| {
        produce(&name, 0, 1, Some(second.clone()))
    })?;
    x.compare::<_, ProduceResponse>("acks=2", ApiKey::Produce, v, |_| {
        produce(&name, 0, 2, Some(second.clone()))
    })?;
    x.compare::<_, ProduceResponse>("unknown topic", ApiKey::Produce, v, |_| {
        produce(&format!("nothere-{tag}"), 0, -1, Some(second.clone()))
    })?;
    x.compare::<_, ProduceResponse>("partition out of range", ApiKey::Produce, v, |_| {
        produce(&name, 7, -1, Some(second.clone()))
    })?;
    // Kafka takes exactly one batch per partition from Produce v3 on.
    let mut two = BytesMut::from(&batch(&[(None, "e", T0 + 5)])?[..]);
    two.extend_from_slice(&batch(&[(None, "f", T0 + 6)])?);
    let two = two.freeze();
    x.compare::<_, ProduceResponse>("two batches", ApiKey::Produce, v, |_| {
        produce(&name, 0, -1, Some(two.clone()))
    })?;
    let big = "x".repeat(2000);
    let oversized = batch(&[(None, big.as_str(), T0 + 3)])?;
    x.compare::<_, ProduceResponse>("over max.message.bytes", ApiKey::Produce, v, |_| {
        produce(&name, 0, -1, Some(oversized.clone()))
    })?;
    let mut corrupt = BytesMut::from(&batch(&[(None, "d", T0 + 4)])?[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let corrupt = corrupt.freeze();
    x.compare::<_, ProduceResponse>("CRC mismatch", ApiKey::Produce, v, |_| {
        produce(&name, 0, -1, Some(corrupt.clone()))
    })?;

    x.scenario("fetch");
    let v = x.version(ApiKey::Fetch, 12)?;
    let answers: [FetchResponse; 2] = x.compare("from 0", ApiKey::Fetch, v, |_| fetch(&name, 0, 0))?;
    // The records themselves, decoded: offsets, keys, values, timestamps.
    let decoded: Vec<Vec<String>> = answers
        .iter()
        .map(|a| {
            let mut out = Vec::new();
            for p in a.responses.iter().flat_map(|t| &t.partitions) {
                let mut bytes = p.records.clone().unwrap_or_default();
                while let Ok(set) = RecordBatchDecoder::decode(&mut bytes) {
                    out.extend(set.records.iter().map(|r| {
                        format!(
                            "{} {:?} {:?} {} {:?}",
                            r.offset, r.key, r.value, r.timestamp, r.timestamp_type
                        )
                    }));
                    if bytes.is_empty() {
                        break;
                    }
                }
            }
            out
        })
        .collect();
    x.record("records from 0", "decoded", &decoded[0], &decoded[1]);
    x.compare::<_, FetchResponse>("past the end", ApiKey::Fetch, v, |_| fetch(&name, 0, 1000))?;
    x.compare::<_, FetchResponse>("at the end", ApiKey::Fetch, v, |_| fetch(&name, 0, 3))?;
    x.compare::<_, FetchResponse>("negative offset", ApiKey::Fetch, v, |_| fetch(&name, 0, -5))?;
    x.compare::<_, FetchResponse>("unknown topic", ApiKey::Fetch, v, |_| {
        fetch(&format!("nothere-{tag}"), 0, 0)
    })?;
    x.compare::<_, FetchResponse>("partition out of range", ApiKey::Fetch, v, |_| fetch(&name, 9, 0))?;
    Ok(())
}

fn list_offsets_scenario(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("list_offsets");
    let name = format!("lo-{tag}");
    create(x, "create", vec![new_topic(&name, 2, 1, &[])])?;
    let pv = x.version(ApiKey::Produce, 12)?;
    // One batch whose records' timestamps are not in order, then one more.
    let b1 = batch(&[(None, "a", T0 + 10), (None, "b", T0 + 30), (None, "c", T0 + 20)])?;
    let b2 = batch(&[(None, "d", T0 + 40)])?;
    for b in [b1, b2] {
        x.compare::<_, ProduceResponse>("produce", ApiKey::Produce, pv, |_| {
            produce(&name, 0, -1, Some(b.clone()))
        })?;
    }
    let v = x.version(ApiKey::ListOffsets, 10)?;
    let cases: &[(&str, i64)] = &[
        ("earliest", -2),
        ("latest", -1),
        ("max timestamp", -3),
        ("by time, before all", T0),
        ("by time, inside a batch", T0 + 15),
        ("by time, a record's own", T0 + 30),
        ("by time, second batch", T0 + 35),
        ("by time, after all", T0 + 100),
        ("earliest local (-4)", -4),
        ("latest tiered (-5)", -5),
        ("undefined negative (-7)", -7),
    ];
    for &(step, ts) in cases {
        x.compare::<_, ListOffsetsResponse>(step, ApiKey::ListOffsets, v, |_| list_offsets(&name, &[(0, ts)]))?;
    }
    x.compare::<_, ListOffsetsResponse>("empty partition", ApiKey::ListOffsets, v, |_| {
        list_offsets(&name, &[(1, -2), (1, -1)])
    })?;
    x.compare::<_, ListOffsetsResponse>("unknown partition", ApiKey::ListOffsets, v, |_| {
        list_offsets(&name, &[(5, -1)])
    })?;
    x.compare::<_, ListOffsetsResponse>("unknown topic", ApiKey::ListOffsets, v, |_| {
        list_offsets(&format!("nothere-{tag}"), &[(0, -1)])
    })?;
    Ok(())
}

fn delete_records(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("delete_records");
    let name = format!("dr-{tag}");
    create(x, "create", vec![new_topic(&name, 1, 1, &[])])?;
    let pv = x.version(ApiKey::Produce, 12)?;
    for i in 0..3 {
        let b = batch(&[(None, "a", T0 + i), (None, "b", T0 + i)])?;
        x.compare::<_, ProduceResponse>("produce", ApiKey::Produce, pv, |_| {
            produce(&name, 0, -1, Some(b.clone()))
        })?;
    }
    let v = x.version(ApiKey::DeleteRecords, 2)?;
    let req = |name: &str, partition: i32, offset: i64| {
        DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])])
    };
    x.compare::<_, DeleteRecordsResponse>("beyond the high watermark", ApiKey::DeleteRecords, v, |_| {
        req(&name, 0, 100)
    })?;
    x.compare::<_, DeleteRecordsResponse>("inside a batch", ApiKey::DeleteRecords, v, |_| req(&name, 0, 3))?;
    x.compare::<_, DeleteRecordsResponse>("below the log start", ApiKey::DeleteRecords, v, |_| req(&name, 0, 1))?;
    x.compare::<_, DeleteRecordsResponse>("to the high watermark (-1)", ApiKey::DeleteRecords, v, |_| {
        req(&name, 0, -1)
    })?;
    x.compare::<_, DeleteRecordsResponse>("unknown partition", ApiKey::DeleteRecords, v, |_| req(&name, 4, 0))?;
    x.compare::<_, DeleteRecordsResponse>("unknown topic", ApiKey::DeleteRecords, v, |_| {
        req(&format!("nothere-{tag}"), 0, 0)
    })?;
    let fv = x.version(ApiKey::Fetch, 12)?;
    x.compare::<_, FetchResponse>("fetch below the log start", ApiKey::Fetch, fv, |_| fetch(&name, 0, 0))?;
    let lv = x.version(ApiKey::ListOffsets, 10)?;
    x.compare::<_, ListOffsetsResponse>("earliest after", ApiKey::ListOffsets, lv, |_| {
        list_offsets(&name, &[(0, -2)])
    })?;
    Ok(())
}

fn configs(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("configs");
    let name = format!("cf-{tag}");
    create(
        x,
        "create",
        vec![new_topic(&name, 1, 1, &[("retention.ms", "3600000")])],
    )?;
    let keys = [
        "retention.ms",
        "retention.bytes",
        "cleanup.policy",
        "max.message.bytes",
        "min.insync.replicas",
        "delete.retention.ms",
        "min.compaction.lag.ms",
        "max.compaction.lag.ms",
        "min.cleanable.dirty.ratio",
        "message.timestamp.type",
        "compression.type",
        "segment.bytes",
        "segment.ms",
    ];
    let dv = x.version(ApiKey::DescribeConfigs, 4)?;
    let describe = |name: &str, resource_type: i8, keys: Option<&[&str]>| {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(keys.map(|ks| ks.iter().map(|k| s(k)).collect()))])
    };
    x.compare::<_, DescribeConfigsResponse>("describe topic", ApiKey::DescribeConfigs, dv, |_| {
        describe(&name, TOPIC_RESOURCE, Some(&keys))
    })?;
    x.compare::<_, DescribeConfigsResponse>("describe topic with synonyms", ApiKey::DescribeConfigs, dv, |_| {
        describe(&name, TOPIC_RESOURCE, Some(&keys)).with_include_synonyms(true)
    })?;
    x.compare::<_, DescribeConfigsResponse>("describe unknown topic", ApiKey::DescribeConfigs, dv, |_| {
        describe(&format!("nothere-{tag}"), TOPIC_RESOURCE, Some(&keys))
    })?;
    x.compare::<_, DescribeConfigsResponse>("describe a broker that is not one", ApiKey::DescribeConfigs, dv, |_| {
        describe("77", BROKER_RESOURCE, Some(&["log.retention.ms"]))
    })?;
    let av = x.version(ApiKey::IncrementalAlterConfigs, 1)?;
    let alter = |name: &str, ops: &[(&str, i8, Option<&str>)]| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(s(name))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(*op)
                            .with_value(v.map(s))
                    })
                    .collect(),
            )])
    };
    x.compare::<_, IncrementalAlterConfigsResponse>("set a bad value", ApiKey::IncrementalAlterConfigs, av, |_| {
        alter(&name, &[("retention.ms", SET, Some("soon"))])
    })?;
    x.compare::<_, IncrementalAlterConfigsResponse>("set an unknown key", ApiKey::IncrementalAlterConfigs, av, |_| {
        alter(&name, &[("no.such.config", SET, Some("1"))])
    })?;
    x.compare::<_, IncrementalAlterConfigsResponse>("set two", ApiKey::IncrementalAlterConfigs, av, |_| {
        alter(
            &name,
            &[
                ("retention.ms", SET, Some("1000")),
                ("cleanup.policy", SET, Some("compact")),
            ],
        )
    })?;
    x.compare::<_, IncrementalAlterConfigsResponse>("unknown topic", ApiKey::IncrementalAlterConfigs, av, |_| {
        alter(&format!("nothere-{tag}"), &[("retention.ms", SET, Some("1000"))])
    })?;
    settle_config(x, &name, "cleanup.policy", Some("compact"))?;
    x.compare::<_, DescribeConfigsResponse>("after set", ApiKey::DescribeConfigs, dv, |_| {
        describe(&name, TOPIC_RESOURCE, Some(&keys))
    })?;
    x.compare::<_, IncrementalAlterConfigsResponse>("delete one", ApiKey::IncrementalAlterConfigs, av, |_| {
        alter(&name, &[("retention.ms", DELETE, None)])
    })?;
    settle_config(x, &name, "retention.ms", None)?;
    x.compare::<_, DescribeConfigsResponse>("after delete", ApiKey::DescribeConfigs, dv, |_| {
        describe(&name, TOPIC_RESOURCE, Some(&keys))
    })?;
    Ok(())
}

fn create_partitions(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("create_partitions");
    let name = format!("cp-{tag}");
    create(x, "create", vec![new_topic(&name, 3, 1, &[])])?;
    let v = x.version(ApiKey::CreatePartitions, 3)?;
    let req = |name: &str, count: i32, validate_only: bool| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_validate_only(validate_only)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic(name))
                .with_count(count)
                .with_assignments(None)])
    };
    x.compare::<_, CreatePartitionsResponse>("validate 5", ApiKey::CreatePartitions, v, |_| req(&name, 5, true))?;
    x.compare::<_, CreatePartitionsResponse>("to 5", ApiKey::CreatePartitions, v, |_| req(&name, 5, false))?;
    settle_topic(x, &name)?;
    x.compare::<_, CreatePartitionsResponse>("to 4 (fewer)", ApiKey::CreatePartitions, v, |_| req(&name, 4, false))?;
    x.compare::<_, CreatePartitionsResponse>("to 5 (same)", ApiKey::CreatePartitions, v, |_| req(&name, 5, false))?;
    x.compare::<_, CreatePartitionsResponse>("unknown topic", ApiKey::CreatePartitions, v, |_| {
        req(&format!("nothere-{tag}"), 2, false)
    })?;
    let mv = x.version(ApiKey::Metadata, 13)?;
    x.compare::<_, MetadataResponse>("metadata after", ApiKey::Metadata, mv, |_| metadata(&[&name], false))?;
    Ok(())
}

/// Waits (not compared) until both brokers have a coordinator for `group`.
pub(super) fn settle_coordinator(x: &mut Session, group: &str) -> anyhow::Result<()> {
    let v = x.version(ApiKey::FindCoordinator, 5)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for side in 0..2 {
        loop {
            let r: FindCoordinatorResponse = x.one(side, ApiKey::FindCoordinator, v, &find_coordinator(group, v))?;
            let error_code = if v >= 4 {
                r.coordinators.first().map_or(-1, |c| c.error_code)
            } else {
                r.error_code
            };
            // Named is not yet serving: Kafka loads its offsets partitions
            // after it names their coordinators (NOT_COORDINATOR, then
            // COORDINATOR_LOAD_IN_PROGRESS until it has).
            let serving = error_code == 0 && {
                let d: DescribeGroupsResponse = x.one(
                    side,
                    ApiKey::DescribeGroups,
                    0,
                    &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
                )?;
                d.groups.iter().all(|g| g.error_code == 0)
            };
            if serving {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: no coordinator for {group} after 30 s (error {error_code})",
                    super::SIDES[side]
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// A group's coordinator, asked by key (v0-3) or in the batched form (v4+).
pub(super) fn find_coordinator(group: &str, version: i16) -> FindCoordinatorRequest {
    if version >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![s(group)])
    } else {
        FindCoordinatorRequest::default().with_key(s(group))
    }
}

pub(super) fn join(group: &str, member: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"))])
}

fn groups(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("groups");
    let name = format!("gr-{tag}");
    create(x, "create", vec![new_topic(&name, 2, 1, &[])])?;
    let group = format!("g-{tag}");
    settle_coordinator(x, &group)?;
    let fv = x.version(ApiKey::FindCoordinator, 5)?;
    x.compare::<_, FindCoordinatorResponse>("find coordinator", ApiKey::FindCoordinator, fv, |_| {
        find_coordinator(&group, fv)
    })?;
    let jv = x.version(ApiKey::JoinGroup, 9)?;
    x.compare::<_, JoinGroupResponse>("session timeout too short", ApiKey::JoinGroup, jv, |_| {
        join(&group, "", 1)
    })?;
    x.compare::<_, JoinGroupResponse>("empty group id", ApiKey::JoinGroup, jv, |_| join("", "", 10_000))?;
    x.compare::<_, JoinGroupResponse>("unknown member id", ApiKey::JoinGroup, jv, |_| {
        join(&group, "nobody", 10_000)
    })?;
    let first: [JoinGroupResponse; 2] =
        x.compare("no member id yet", ApiKey::JoinGroup, jv, |_| join(&group, "", 10_000))?;
    let member: Vec<String> = first.iter().map(|r| r.member_id.to_string()).collect();
    let joined: [JoinGroupResponse; 2] = x.compare("with the member id", ApiKey::JoinGroup, jv, |side| {
        join(&group, &member[side], 10_000)
    })?;
    let generation: Vec<i32> = joined.iter().map(|r| r.generation_id).collect();
    let sv = x.version(ApiKey::SyncGroup, 5)?;
    x.compare::<_, SyncGroupResponse>("sync as leader", ApiKey::SyncGroup, sv, |side| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(generation[side])
            .with_member_id(s(&member[side]))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member[side]))
                .with_assignment(Bytes::from_static(b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"))])
    })?;
    let hv = x.version(ApiKey::Heartbeat, 4)?;
    let heartbeat = |generation: i32, member: &str| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(generation)
            .with_member_id(s(member))
    };
    x.compare::<_, HeartbeatResponse>("heartbeat", ApiKey::Heartbeat, hv, |side| {
        heartbeat(generation[side], &member[side])
    })?;
    x.compare::<_, HeartbeatResponse>("heartbeat, old generation", ApiKey::Heartbeat, hv, |side| {
        heartbeat(generation[side] - 1, &member[side])
    })?;
    x.compare::<_, HeartbeatResponse>("heartbeat, unknown member", ApiKey::Heartbeat, hv, |side| {
        heartbeat(generation[side], "nobody")
    })?;
    let cv = x.version(ApiKey::OffsetCommit, 8)?;
    let commit = |generation: i32, member: &str, partition: i32, offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic(&name))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(s("m")))])])
    };
    x.compare::<_, OffsetCommitResponse>("commit", ApiKey::OffsetCommit, cv, |side| {
        commit(generation[side], &member[side], 0, 5)
    })?;
    x.compare::<_, OffsetCommitResponse>("commit, wrong generation", ApiKey::OffsetCommit, cv, |side| {
        commit(generation[side] + 5, &member[side], 0, 6)
    })?;
    x.compare::<_, OffsetCommitResponse>("commit, unknown member", ApiKey::OffsetCommit, cv, |side| {
        commit(generation[side], "nobody", 0, 6)
    })?;
    x.compare::<_, OffsetCommitResponse>("commit, unknown partition", ApiKey::OffsetCommit, cv, |side| {
        commit(generation[side], &member[side], 9, 6)
    })?;
    let ofv = x.version(ApiKey::OffsetFetch, 7)?;
    let fetch_offsets = |group: &str| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic(&name))
                .with_partition_indexes(vec![0, 1])]))
    };
    x.compare::<_, OffsetFetchResponse>("offset fetch", ApiKey::OffsetFetch, ofv, |_| fetch_offsets(&group))?;
    x.compare::<_, OffsetFetchResponse>("offset fetch, unknown group", ApiKey::OffsetFetch, ofv, |_| {
        fetch_offsets(&format!("nogroup-{tag}"))
    })?;
    let dv = x.version(ApiKey::DescribeGroups, 6)?;
    x.compare::<_, DescribeGroupsResponse>("describe", ApiKey::DescribeGroups, dv, |_| {
        DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s(&group)), GroupId(s(&format!("nogroup-{tag}")))])
            .with_include_authorized_operations(true)
    })?;
    x.compare::<_, DescribeGroupsResponse>("describe unknown, v5", ApiKey::DescribeGroups, 5, |_| {
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&format!("nogroup-{tag}")))])
    })?;
    let lv = x.version(ApiKey::ListGroups, 5)?;
    let listed: [ListGroupsResponse; 2] = x.each(ApiKey::ListGroups, lv, |_| {
        ListGroupsRequest::default().with_states_filter(vec![s("Stable")])
    })?;
    // Other runs' groups may be listed too: only this run's is compared.
    let ours: Vec<_> = listed
        .iter()
        .map(|l| {
            l.groups
                .iter()
                .filter(|g| g.group_id.0.as_str() == group.as_str())
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    x.record("list stable groups", "ListGroups", &ours[0], &ours[1]);
    let odv = x.version(ApiKey::OffsetDelete, 0)?;
    let offset_delete = |group: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(topic(&name))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])])
    };
    x.compare::<_, OffsetDeleteResponse>("offset delete, group subscribed", ApiKey::OffsetDelete, odv, |_| {
        offset_delete(&group)
    })?;
    x.compare::<_, OffsetDeleteResponse>("offset delete, unknown group", ApiKey::OffsetDelete, odv, |_| {
        offset_delete(&format!("nogroup-{tag}"))
    })?;
    let delv = x.version(ApiKey::DeleteGroups, 2)?;
    let delete_groups = |groups: &[&str]| {
        DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| GroupId(s(g))).collect())
    };
    x.compare::<_, DeleteGroupsResponse>("delete a group with members", ApiKey::DeleteGroups, delv, |_| {
        delete_groups(&[&group])
    })?;
    let leave_v = x.version(ApiKey::LeaveGroup, 5)?;
    x.compare::<_, LeaveGroupResponse>("leave, unknown member", ApiKey::LeaveGroup, leave_v, |_| {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_members(vec![MemberIdentity::default().with_member_id(s("nobody"))])
    })?;
    x.compare::<_, LeaveGroupResponse>("leave", ApiKey::LeaveGroup, leave_v, |side| {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&member[side]))])
    })?;
    x.compare::<_, DescribeGroupsResponse>("describe empty", ApiKey::DescribeGroups, dv, |_| {
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))])
    })?;
    x.compare::<_, OffsetDeleteResponse>("offset delete, empty group", ApiKey::OffsetDelete, odv, |_| {
        offset_delete(&group)
    })?;
    x.compare::<_, OffsetFetchResponse>("offset fetch after delete", ApiKey::OffsetFetch, ofv, |_| {
        fetch_offsets(&group)
    })?;
    x.compare::<_, DeleteGroupsResponse>("delete empty and unknown", ApiKey::DeleteGroups, delv, |_| {
        delete_groups(&[&group, &format!("nogroup-{tag}")])
    })?;
    Ok(())
}

fn producer_ids(x: &mut Session) -> anyhow::Result<()> {
    x.scenario("init_producer_id");
    let v = x.version(ApiKey::InitProducerId, 5)?;
    let req = |transactional_id: Option<&str>| {
        InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    // Kafka hands out producer ids once its id blocks are loaded
    // (COORDINATOR_LOAD_IN_PROGRESS until then): wait, not compared.
    let deadline = Instant::now() + Duration::from_secs(30);
    for side in 0..2 {
        loop {
            let r: InitProducerIdResponse = x.one(side, ApiKey::InitProducerId, v, &req(None))?;
            if r.error_code == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: no producer id after 30 s (error {})",
                    super::SIDES[side],
                    r.error_code
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Each broker counts its own ids: compared is that one was handed out.
    let mut ids: [InitProducerIdResponse; 2] = x.each(ApiKey::InitProducerId, v, |_| req(None))?;
    for r in &mut ids {
        r.producer_id = ProducerId(r.producer_id.0.signum());
    }
    x.record("idempotent (an id >= 0 as 1)", "InitProducerId", &ids[0], &ids[1]);
    x.compare::<_, InitProducerIdResponse>("empty transactional id", ApiKey::InitProducerId, v, |_| req(Some("")))?;
    Ok(())
}

fn describe_cluster(x: &mut Session) -> anyhow::Result<()> {
    x.scenario("describe_cluster");
    let top = x.version(ApiKey::DescribeCluster, 2)?;
    for v in 0..=top {
        x.compare::<_, DescribeClusterResponse>(&format!("v{v}"), ApiKey::DescribeCluster, v, |_| {
            DescribeClusterRequest::default().with_endpoint_type(1)
        })?;
    }
    x.compare::<_, DescribeClusterResponse>("operations asked", ApiKey::DescribeCluster, top, |_| {
        DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_cluster_authorized_operations(true)
    })?;
    if top >= 1 {
        x.compare::<_, DescribeClusterResponse>("controller endpoint", ApiKey::DescribeCluster, top, |_| {
            DescribeClusterRequest::default().with_endpoint_type(2)
        })?;
        x.compare::<_, DescribeClusterResponse>("unknown endpoint type", ApiKey::DescribeCluster, top, |_| {
            DescribeClusterRequest::default().with_endpoint_type(9)
        })?;
    }
    Ok(())
}

fn upsertion(
    name: &str,
    mechanism: i8,
    iterations: i32,
) -> alter_user_scram_credentials_request::ScramCredentialUpsertion {
    alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
        .with_name(s(name))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(Bytes::from_static(b"0123456789abcdef"))
        .with_salted_password(Bytes::from_static(&[7u8; 32]))
}

fn deletion(name: &str, mechanism: i8) -> alter_user_scram_credentials_request::ScramCredentialDeletion {
    alter_user_scram_credentials_request::ScramCredentialDeletion::default()
        .with_name(s(name))
        .with_mechanism(mechanism)
}

fn describe_users(names: &[&str]) -> DescribeUserScramCredentialsRequest {
    DescribeUserScramCredentialsRequest::default().with_users(Some(
        names
            .iter()
            .map(|n| describe_user_scram_credentials_request::UserName::default().with_name(s(n)))
            .collect(),
    ))
}

/// Waits (not compared) until each broker describes `key` of topic `name`
/// as `value` (None: back at its default). Kafka answers an
/// IncrementalAlterConfigs once the controller committed it; its broker
/// describes the change when its metadata image catches up, a moment later.
fn settle_config(x: &mut Session, name: &str, key: &str, value: Option<&str>) -> anyhow::Result<()> {
    let version = x.version(ApiKey::DescribeConfigs, 4)?;
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(TOPIC_RESOURCE)
        .with_resource_name(s(name))
        .with_configuration_keys(Some(vec![s(key)]))]);
    let deadline = Instant::now() + Duration::from_secs(30);
    for side in 0..2 {
        loop {
            let d: DescribeConfigsResponse = x.one(side, ApiKey::DescribeConfigs, version, &req)?;
            let settled = d.results.iter().flat_map(|r| &r.configs).any(|c| {
                c.name.as_str() == key
                    && match value {
                        Some(v) => c.value.as_ref().map(|x| x.as_str()) == Some(v),
                        // Back at a default: no longer set on the topic.
                        None => c.config_source != TOPIC_CONFIG_SOURCE,
                    }
            });
            if settled {
                break;
            }
            if Instant::now() > deadline {
                bail!("{}: {name} {key} not {value:?} after 30 s", super::SIDES[side]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Waits until each broker describes `user` as having (or not having)
/// credentials: Kafka applies them when its metadata catches up.
fn settle_user(x: &mut Session, user: &str, present: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for side in 0..2 {
        loop {
            let d: DescribeUserScramCredentialsResponse =
                x.one(side, ApiKey::DescribeUserScramCredentials, 0, &describe_users(&[user]))?;
            if d.results.iter().all(|r| (r.error_code == 0) == present) {
                break;
            }
            if Instant::now() > deadline {
                bail!("{}: user {user} not settled after 30 s", super::SIDES[side]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// SASL on a PLAINTEXT listener, and SCRAM users (KIP-554) with Kafka's
/// controller checks.
fn sasl_and_users(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("sasl");
    let hv = x.version(ApiKey::SaslHandshake, 1)?;
    x.compare::<_, SaslHandshakeResponse>("handshake on plaintext", ApiKey::SaslHandshake, hv, |_| {
        SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))
    })?;
    let av = x.version(ApiKey::SaslAuthenticate, 2)?;
    x.compare::<_, SaslAuthenticateResponse>("authenticate on plaintext", ApiKey::SaslAuthenticate, av, |_| {
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p"))
    })?;
    x.scenario("scram_users");
    let user = format!("u-{tag}");
    let alter = |x: &mut Session, step: &str, req: AlterUserScramCredentialsRequest| {
        x.compare::<_, AlterUserScramCredentialsResponse>(step, ApiKey::AlterUserScramCredentials, 0, |_| req.clone())
    };
    alter(
        x,
        "create",
        AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![upsertion(&user, 1, 4096), upsertion(&format!("v-{tag}"), 2, 8192)]),
    )?;
    settle_user(x, &user, true)?;
    settle_user(x, &format!("v-{tag}"), true)?;
    for (step, req) in [
        (
            "same user twice",
            AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![deletion(&user, 1)])
                .with_upsertions(vec![upsertion(&user, 2, 4096)]),
        ),
        (
            "too few iterations",
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion(&format!("w-{tag}"), 1, 100)]),
        ),
        (
            "too many iterations",
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion(&format!("w-{tag}"), 2, 20000)]),
        ),
        (
            "unknown mechanism",
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion(&format!("w-{tag}"), 0, 4096)]),
        ),
        (
            "empty user name",
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion("", 1, 4096)]),
        ),
        (
            "delete what is not there",
            AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion(&user, 2)]),
        ),
    ] {
        alter(x, step, req)?;
    }
    let describe = |x: &mut Session, step: &str, names: &[&str]| {
        x.compare::<_, DescribeUserScramCredentialsResponse>(step, ApiKey::DescribeUserScramCredentials, 0, |_| {
            describe_users(names)
        })
    };
    describe(x, "describe", &[&user, &format!("v-{tag}")])?;
    describe(x, "describe twice", &[&user, &user])?;
    describe(x, "describe unknown", &[&format!("nobody-{tag}")])?;
    alter(
        x,
        "delete",
        AlterUserScramCredentialsRequest::default()
            .with_deletions(vec![deletion(&user, 1), deletion(&format!("v-{tag}"), 2)]),
    )?;
    settle_user(x, &user, false)?;
    describe(x, "describe deleted", &[&user])?;
    Ok(())
}

fn log_dirs(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("log_dirs");
    let name = format!("pf-{tag}");
    let v = x.version(ApiKey::DescribeLogDirs, 4)?;
    x.compare::<_, DescribeLogDirsResponse>("a topic", ApiKey::DescribeLogDirs, v, |_| {
        DescribeLogDirsRequest::default().with_topics(Some(vec![DescribableLogDirTopic::default()
            .with_topic(topic(&name))
            .with_partitions(vec![0, 3])]))
    })?;
    Ok(())
}

fn delete_topics(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("delete_topics");
    let v = x.version(ApiKey::DeleteTopics, 6)?;
    let req = |names: &[String]| {
        let mut r = DeleteTopicsRequest::default().with_timeout_ms(30_000);
        if v >= 6 {
            r.topics = names
                .iter()
                .map(|n| DeleteTopicState::default().with_name(Some(topic(n))))
                .collect();
        } else {
            r.topic_names = names.iter().map(|n| topic(n)).collect();
        }
        r
    };
    x.compare::<_, DeleteTopicsResponse>("unknown topic", ApiKey::DeleteTopics, v, |_| {
        req(&[format!("nothere-{tag}")])
    })?;
    let ours: Vec<String> = ["ct", "ctc4", "pf", "lo", "dr", "cf", "cp", "gr"]
        .iter()
        .map(|p| format!("{p}-{tag}"))
        .collect();
    x.compare::<_, DeleteTopicsResponse>("this run's topics", ApiKey::DeleteTopics, v, |_| req(&ours))
        .context("deleting")?;
    Ok(())
}
