//! Admin commands: `corestream topic ...` and `corestream cluster status`,
//! speaking the Kafka protocol (`client.rs`), so they work against any
//! Kafka-compatible broker. Human-readable tables by default, `--output
//! json` for scripts. A Kafka error code becomes a non-zero exit with the
//! error's name and the broker's message.

mod client;

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use client::{Client, SaslLogin};

use crate::security::acl;
use crate::security::scram::{ScramMechanism, MIN_ITERATIONS};
use crate::security::Mechanism;

#[derive(Args)]
pub struct Target {
    /// A broker to ask (any Kafka-compatible broker).
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092", global = true)]
    bootstrap: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    output: Output,
    /// Authenticate with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (the
    /// password from --sasl-password or $CORESTREAM_SASL_PASSWORD).
    #[arg(long, value_name = "MECHANISM", global = true, requires = "sasl_username")]
    sasl_mechanism: Option<String>,
    #[arg(long, value_name = "USER", global = true)]
    sasl_username: Option<String>,
    #[arg(long, value_name = "PASSWORD", global = true)]
    sasl_password: Option<String>,
}

impl Target {
    fn connect(&self) -> anyhow::Result<Client> {
        let login = match (&self.sasl_mechanism, &self.sasl_username) {
            (Some(m), Some(user)) => Some(SaslLogin {
                mechanism: Mechanism::from_name(m)
                    .with_context(|| format!("--sasl-mechanism {m}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))?,
                user: user.clone(),
                password: match &self.sasl_password {
                    Some(p) => p.clone(),
                    None => std::env::var("CORESTREAM_SASL_PASSWORD")
                        .context("--sasl-mechanism needs --sasl-password or $CORESTREAM_SASL_PASSWORD")?,
                },
            }),
            (None, Some(_)) => bail!("--sasl-username needs --sasl-mechanism"),
            _ => None,
        };
        Client::connect(&self.bootstrap, login.as_ref())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = -1)]
        partitions: i32,
        #[arg(long, short = 'r', default_value_t = -1)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition counts.
    List,
    /// Partitions (leader, replicas, offsets) and configs of a topic.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Set (KEY=VALUE) or remove (KEY) topic config overrides.
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to COUNT partitions.
    AddPartitions {
        name: String,
        #[arg(long)]
        count: i32,
    },
    /// Delete the records below an offset (Kafka's DeleteRecords, as
    /// kafka-delete-records.sh): the partitions' log starts move there.
    DeleteRecords {
        name: String,
        /// The new log start; -1: the high watermark (everything so far).
        #[arg(long, allow_hyphen_values = true)]
        before: i64,
        /// Only these partitions (repeatable); all of them by default.
        #[arg(long = "partition", short = 'p')]
        partitions: Vec<i32>,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user, or set its password: a SCRAM credential per
    /// mechanism (PLAIN logins check the same credential).
    Create {
        name: String,
        /// The password [default: $CORESTREAM_USER_PASSWORD].
        #[arg(long)]
        password: Option<String>,
        /// SCRAM-SHA-256 and/or SCRAM-SHA-512 (repeatable) [default: both].
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanisms: Vec<String>,
        #[arg(long, default_value_t = MIN_ITERATIONS)]
        iterations: i32,
    },
    /// Users and the SCRAM mechanisms they have credentials for.
    List,
    /// Delete a user's credentials (all of its mechanisms by default).
    Delete {
        name: String,
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanisms: Vec<String>,
    },
}

/// The resource an ACL command is about: one of these.
#[derive(Args, Default)]
#[group(multiple = false)]
pub struct AclResource {
    #[arg(long, value_name = "NAME")]
    topic: Option<String>,
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// The cluster (kafka-cluster): admin and cluster-wide operations.
    #[arg(long)]
    cluster: bool,
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
}

impl AclResource {
    fn get(&self) -> Option<(acl::ResourceType, String)> {
        use acl::ResourceType as T;
        match (&self.topic, &self.group, self.cluster, &self.transactional_id) {
            (Some(t), ..) => Some((T::Topic, t.clone())),
            (_, Some(g), ..) => Some((T::Group, g.clone())),
            (_, _, true, _) => Some((T::Cluster, acl::CLUSTER_NAME.to_string())),
            (.., Some(id)) => Some((T::TransactionalId, id.clone())),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PatternArg {
    /// The name exactly (`*`: every resource of the type).
    Literal,
    /// Every name that starts with it.
    Prefixed,
    /// list/remove: every ACL that applies to the named resource
    /// (literal, `*` and prefixes).
    Match,
    /// list/remove: literal and prefixed ACLs with exactly this name.
    Any,
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// Allow (or with --deny, deny) PRINCIPAL the operations on a resource.
    Add {
        /// Who: User:NAME (a SASL user or a client certificate's subject), User:* for anyone.
        #[arg(long)]
        principal: String,
        /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
        /// ALTER_CONFIGS, IDEMPOTENT_WRITE, CLUSTER_ACTION or ALL (repeatable).
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        #[command(flatten)]
        resource: AclResource,
        #[arg(long, value_enum, default_value = "literal")]
        pattern: PatternArg,
        /// Only from this client IP address.
        #[arg(long, default_value = "*")]
        host: String,
        /// A DENY ACL: it wins over any ALLOW.
        #[arg(long)]
        deny: bool,
    },
    /// ACLs, all or those matching the filters.
    List {
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        resource: AclResource,
        #[arg(long, value_enum, default_value = "any")]
        pattern: PatternArg,
    },
    /// Remove the ACLs matching the filters (a principal or a resource is required).
    Remove {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long = "operation")]
        operations: Vec<String>,
        #[command(flatten)]
        resource: AclResource,
        #[arg(long, value_enum, default_value = "any")]
        pattern: PatternArg,
        #[arg(long)]
        host: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Brokers, controller and topic counts.
    Status,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> anyhow::Result<()> {
    match code.err() {
        None => Ok(()),
        Some(e) => match message {
            Some(m) if !m.is_empty() => bail!("{what}: {e:?} (error {code}): {}", m.as_str()),
            _ => bail!("{what}: {e:?} (error {code})"),
        },
    }
}

fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').with_context(|| format!("'{s}' is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

fn emit<T: Serialize>(output: Output, value: &T, text: impl FnOnce(&T)) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Text => text(value),
    }
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn metadata(c: &mut Client, topics: Option<Vec<String>>) -> anyhow::Result<MetadataResponse> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    c.call(ApiKey::Metadata, (1, 12), &req)
}

#[derive(Serialize)]
struct TopicRow {
    name: String,
    id: String,
    partitions: usize,
}

#[derive(Serialize)]
struct PartitionRow {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    log_start_offset: i64,
    high_watermark: i64,
    /// Bytes the partition holds on the broker asked (DescribeLogDirs;
    /// -1 where that broker does not say).
    size_bytes: i64,
}

#[derive(Serialize)]
struct ConfigRow {
    name: String,
    value: Option<String>,
    default: bool,
}

#[derive(Serialize)]
struct TopicDescription {
    name: String,
    id: String,
    partitions: Vec<PartitionRow>,
    configs: Vec<ConfigRow>,
}

pub fn topic(target: Target, cmd: TopicCommand) -> anyhow::Result<()> {
    let mut c = target.connect()?;
    let out = target.output;
    match cmd {
        TopicCommand::Create {
            name: topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut t = CreatableTopic::default()
                .with_name(name(&topic))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor);
            for kv in &configs {
                let (k, v) = key_value(kv)?;
                t.configs.push(
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k))
                        .with_value(Some(StrBytes::from_string(v))),
                );
            }
            let req = CreateTopicsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(30_000);
            let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, (2, 7), &req)?;
            let r = &resp.topics[0];
            check(
                r.error_code,
                r.error_message.as_ref(),
                &format!("creating topic {topic}"),
            )?;
            let created = serde_json::json!({"created": topic, "partitions": r.num_partitions});
            emit(out, &created, |_| {
                println!("created topic {topic} with {} partitions", r.num_partitions)
            })
        }
        TopicCommand::List => {
            let md = metadata(&mut c, None)?;
            let rows: Vec<TopicRow> = md
                .topics
                .iter()
                .filter_map(|t| {
                    t.name.as_ref().map(|n| TopicRow {
                        name: n.0.to_string(),
                        id: t.topic_id.to_string(),
                        partitions: t.partitions.len(),
                    })
                })
                .collect();
            emit(out, &rows, |rows| {
                table(
                    &["TOPIC", "PARTITIONS"],
                    &rows
                        .iter()
                        .map(|r| vec![r.name.clone(), r.partitions.to_string()])
                        .collect::<Vec<_>>(),
                )
            })
        }
        TopicCommand::Describe { name: topic } => {
            let d = describe(&mut c, &topic)?;
            emit(out, &d, |d| {
                println!("topic {}  (id {})", d.name, d.id);
                table(
                    &[
                        "PARTITION",
                        "LEADER",
                        "REPLICAS",
                        "ISR",
                        "LOG-START",
                        "HIGH-WATERMARK",
                        "SIZE",
                    ],
                    &d.partitions
                        .iter()
                        .map(|p| {
                            vec![
                                p.partition.to_string(),
                                p.leader.to_string(),
                                format!("{:?}", p.replicas),
                                format!("{:?}", p.isr),
                                p.log_start_offset.to_string(),
                                p.high_watermark.to_string(),
                                p.size_bytes.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
                println!();
                table(
                    &["CONFIG", "VALUE", "SOURCE"],
                    &d.configs
                        .iter()
                        .map(|c| {
                            vec![
                                c.name.clone(),
                                c.value.clone().unwrap_or_default(),
                                if c.default { "default" } else { "topic" }.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            })
        }
        TopicCommand::Delete { name: topic } => {
            let req = DeleteTopicsRequest::default()
                .with_topic_names(vec![name(&topic)])
                .with_timeout_ms(30_000);
            let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, (1, 5), &req)?;
            let r = &resp.responses[0];
            check(
                r.error_code,
                r.error_message.as_ref(),
                &format!("deleting topic {topic}"),
            )?;
            emit(out, &serde_json::json!({"deleted": topic}), |_| {
                println!("deleted topic {topic}")
            })
        }
        TopicCommand::AlterConfig {
            name: topic,
            set,
            delete,
        } => {
            let mut configs = Vec::new();
            for kv in &set {
                let (k, v) = key_value(kv)?;
                configs.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(v))),
                );
            }
            for k in &delete {
                configs.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_config_operation(1),
                );
            }
            if configs.is_empty() {
                bail!("nothing to alter: give --set KEY=VALUE or --delete KEY");
            }
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.clone()))
                .with_configs(configs)]);
            let resp: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, (0, 1), &req)?;
            let r = &resp.responses[0];
            check(
                r.error_code,
                r.error_message.as_ref(),
                &format!("altering configs of {topic}"),
            )?;
            emit(
                out,
                &serde_json::json!({"altered": topic, "set": set, "deleted": delete}),
                |_| println!("altered configs of topic {topic}"),
            )
        }
        TopicCommand::DeleteRecords {
            name: topic,
            before,
            mut partitions,
        } => {
            if partitions.is_empty() {
                let md = metadata(&mut c, Some(vec![topic.clone()]))?;
                let t = md.topics.first().context("no metadata in the response")?;
                check(t.error_code, None, &format!("describing topic {topic}"))?;
                partitions = t.partitions.iter().map(|p| p.partition_index).collect();
            }
            let req = DeleteRecordsRequest::default()
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(name(&topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&p| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(p)
                                    .with_offset(before)
                            })
                            .collect(),
                    )])
                .with_timeout_ms(30_000);
            let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, (0, 2), &req)?;
            let mut low = BTreeMap::new();
            for p in resp.topics.iter().flat_map(|t| &t.partitions) {
                check(
                    p.error_code,
                    None,
                    &format!("deleting records of {topic} partition {}", p.partition_index),
                )?;
                low.insert(p.partition_index, p.low_watermark);
            }
            emit(out, &serde_json::json!({"topic": topic, "low_watermarks": low}), |_| {
                for (p, l) in &low {
                    println!("{topic} partition {p}: log start {l}");
                }
            })
        }
        TopicCommand::AddPartitions { name: topic, count } => {
            let req = CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name(&topic))
                    .with_count(count)])
                .with_timeout_ms(30_000);
            let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, (0, 3), &req)?;
            let r = &resp.results[0];
            check(
                r.error_code,
                r.error_message.as_ref(),
                &format!("adding partitions to {topic}"),
            )?;
            emit(out, &serde_json::json!({"topic": topic, "partitions": count}), |_| {
                println!("topic {topic} now has {count} partitions")
            })
        }
    }
}

/// The bytes each partition of `topic` holds on the broker asked
/// (DescribeLogDirs, as kafka-log-dirs.sh asks). Best effort: a broker
/// that does not serve it (or refuses it) leaves the sizes out.
fn partition_sizes(c: &mut Client, topic: &str, ids: &[i32]) -> BTreeMap<i32, i64> {
    let req = DescribeLogDirsRequest::default().with_topics(Some(vec![DescribableLogDirTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(ids.to_vec())]));
    let resp: anyhow::Result<DescribeLogDirsResponse> = c.call(ApiKey::DescribeLogDirs, (1, 4), &req);
    let Ok(resp) = resp else {
        return BTreeMap::new();
    };
    resp.results
        .iter()
        .filter(|r| r.error_code == 0)
        .flat_map(|r| r.topics.iter())
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.partition_size)))
        .collect()
}

fn describe(c: &mut Client, topic: &str) -> anyhow::Result<TopicDescription> {
    let md = metadata(c, Some(vec![topic.to_string()]))?;
    let t = md.topics.first().context("no metadata in the response")?;
    check(t.error_code, None, &format!("describing topic {topic}"))?;
    let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    let earliest = list_offsets(c, topic, &ids, -2)?;
    let latest = list_offsets(c, topic, &ids, -1)?;
    let sizes = partition_sizes(c, topic, &ids);
    let partitions = t
        .partitions
        .iter()
        .map(|p| PartitionRow {
            partition: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            log_start_offset: earliest.get(&p.partition_index).copied().unwrap_or(-1),
            high_watermark: latest.get(&p.partition_index).copied().unwrap_or(-1),
            size_bytes: sizes.get(&p.partition_index).copied().unwrap_or(-1),
        })
        .collect();
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configuration_keys(None)]); // null: all of them
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, (1, 4), &req)?;
    let r = resp.results.first().context("no configs in the response")?;
    check(
        r.error_code,
        r.error_message.as_ref(),
        &format!("describing configs of {topic}"),
    )?;
    const DEFAULT_CONFIG: i8 = 5;
    let configs = r
        .configs
        .iter()
        .map(|c| ConfigRow {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()),
            default: c.config_source == DEFAULT_CONFIG,
        })
        .collect();
    Ok(TopicDescription {
        name: topic.to_string(),
        id: t.topic_id.to_string(),
        partitions,
        configs,
    })
}

fn list_offsets(c: &mut Client, topic: &str, partitions: &[i32], at: i64) -> anyhow::Result<BTreeMap<i32, i64>> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(at)
                    })
                    .collect(),
            )]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, (1, 7), &req)?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.error_code == 0)
        .map(|p| (p.partition_index, p.offset))
        .collect())
}

#[derive(Serialize)]
struct BrokerRow {
    id: i32,
    host: String,
    port: i32,
    /// Partitions this broker leads.
    leads: usize,
}

#[derive(Serialize)]
struct ClusterStatus {
    cluster_id: Option<String>,
    controller: i32,
    brokers: Vec<BrokerRow>,
    topics: usize,
    partitions: usize,
    /// Partitions with no leader now, and with fewer in-sync replicas
    /// than replicas.
    leaderless: usize,
    under_replicated: usize,
}

pub fn cluster(target: Target, cmd: ClusterCommand) -> anyhow::Result<()> {
    let mut c = target.connect()?;
    match cmd {
        ClusterCommand::Status => {
            let md = metadata(&mut c, None)?;
            let status = ClusterStatus {
                cluster_id: md.cluster_id.as_ref().map(|s| s.to_string()),
                controller: md.controller_id.0,
                brokers: md
                    .brokers
                    .iter()
                    .map(|b| BrokerRow {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        leads: md
                            .topics
                            .iter()
                            .flat_map(|t| &t.partitions)
                            .filter(|p| p.leader_id == b.node_id)
                            .count(),
                    })
                    .collect(),
                topics: md.topics.len(),
                partitions: md.topics.iter().map(|t| t.partitions.len()).sum(),
                leaderless: md
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.leader_id.0 < 0)
                    .count(),
                under_replicated: md
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.isr_nodes.len() < p.replica_nodes.len())
                    .count(),
            };
            emit(target.output, &status, |s| {
                println!(
                    "cluster {}  controller {}  {} topics, {} partitions ({} without a leader, {} under-replicated)",
                    s.cluster_id.as_deref().unwrap_or("?"),
                    s.controller,
                    s.topics,
                    s.partitions,
                    s.leaderless,
                    s.under_replicated
                );
                table(
                    &["BROKER", "HOST", "PORT", "LEADS"],
                    &s.brokers
                        .iter()
                        .map(|b| {
                            vec![
                                b.id.to_string(),
                                b.host.clone(),
                                b.port.to_string(),
                                b.leads.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            })
        }
    }
}

#[derive(Serialize)]
struct UserRow {
    name: String,
    mechanisms: Vec<(String, i32)>,
}

fn scram_mechanisms(names: &[String]) -> anyhow::Result<Vec<ScramMechanism>> {
    if names.is_empty() {
        return Ok(ScramMechanism::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            ScramMechanism::from_name(n).with_context(|| format!("--mechanism {n}: use SCRAM-SHA-256 or SCRAM-SHA-512"))
        })
        .collect()
}

fn describe_users(c: &mut Client, users: Option<Vec<String>>) -> anyhow::Result<Vec<UserRow>> {
    let req = DescribeUserScramCredentialsRequest::default().with_users(users.map(|us| {
        us.into_iter()
            .map(|u| describe_user_scram_credentials_request::UserName::default().with_name(StrBytes::from_string(u)))
            .collect()
    }));
    let resp: DescribeUserScramCredentialsResponse = c.call(ApiKey::DescribeUserScramCredentials, (0, 0), &req)?;
    check(resp.error_code, resp.error_message.as_ref(), "describing users")?;
    resp.results
        .into_iter()
        .map(|r| {
            check(
                r.error_code,
                r.error_message.as_ref(),
                &format!("user {}", r.user.as_str()),
            )?;
            Ok(UserRow {
                name: r.user.to_string(),
                mechanisms: r
                    .credential_infos
                    .iter()
                    .map(|i| {
                        let name = ScramMechanism::from_type(i.mechanism).map_or("unknown", |m| m.name());
                        (name.to_string(), i.iterations)
                    })
                    .collect(),
            })
        })
        .collect()
}

fn alter_users(c: &mut Client, req: AlterUserScramCredentialsRequest) -> anyhow::Result<()> {
    let resp: AlterUserScramCredentialsResponse = c.call(ApiKey::AlterUserScramCredentials, (0, 0), &req)?;
    for r in &resp.results {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("user {}", r.user.as_str()),
        )?;
    }
    Ok(())
}

pub fn user(target: Target, cmd: UserCommand) -> anyhow::Result<()> {
    use alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
    let mut c = target.connect()?;
    match cmd {
        UserCommand::Create {
            name,
            password,
            mechanisms,
            iterations,
        } => {
            let password = match password {
                Some(p) => p,
                None => std::env::var("CORESTREAM_USER_PASSWORD")
                    .context("give the password with --password or $CORESTREAM_USER_PASSWORD")?,
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            // Like Kafka's tools, send a salted password: the password
            // itself never leaves this machine.
            let upsertions = scram_mechanisms(&mechanisms)?
                .into_iter()
                .map(|m| {
                    let salt = crate::security::scram::random_bytes(32)?;
                    let salted = m.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
                    Ok(ScramCredentialUpsertion::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_mechanism(m.type_code())
                        .with_iterations(iterations)
                        .with_salt(salt.into())
                        .with_salted_password(salted.into()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            // One user per request: Kafka refuses a user named twice.
            for u in upsertions {
                alter_users(
                    &mut c,
                    AlterUserScramCredentialsRequest::default().with_upsertions(vec![u]),
                )?;
            }
            println!("user {name} has credentials for {}", mechanism_list(&mechanisms));
            Ok(())
        }
        UserCommand::List => {
            let rows = describe_users(&mut c, None)?;
            emit(target.output, &rows, |rows| {
                table(
                    &["USER", "MECHANISMS"],
                    &rows
                        .iter()
                        .map(|r| {
                            let ms: Vec<String> = r
                                .mechanisms
                                .iter()
                                .map(|(m, i)| format!("{m} ({i} iterations)"))
                                .collect();
                            vec![r.name.clone(), ms.join(", ")]
                        })
                        .collect::<Vec<_>>(),
                )
            })
        }
        UserCommand::Delete { name, mechanisms } => {
            let have: Vec<ScramMechanism> = describe_users(&mut c, Some(vec![name.clone()]))?
                .iter()
                .flat_map(|r| &r.mechanisms)
                .filter_map(|(m, _)| ScramMechanism::from_name(m))
                .collect();
            let chosen = if mechanisms.is_empty() {
                have
            } else {
                scram_mechanisms(&mechanisms)?
            };
            for m in chosen {
                let d = ScramCredentialDeletion::default()
                    .with_name(StrBytes::from_string(name.clone()))
                    .with_mechanism(m.type_code());
                alter_users(
                    &mut c,
                    AlterUserScramCredentialsRequest::default().with_deletions(vec![d]),
                )?;
            }
            println!("user {name} deleted");
            Ok(())
        }
    }
}

fn mechanism_list(names: &[String]) -> String {
    scram_mechanisms(names)
        .map(|ms| ms.iter().map(|m| m.name()).collect::<Vec<_>>().join(" and "))
        .unwrap_or_default()
}

#[derive(Serialize)]
struct AclRow {
    resource_type: &'static str,
    resource: String,
    pattern: &'static str,
    principal: String,
    host: String,
    operation: &'static str,
    permission: &'static str,
}

fn acl_row(
    resource_type: i8,
    resource: &StrBytes,
    pattern: i8,
    principal: &StrBytes,
    host: &StrBytes,
    op: i8,
    perm: i8,
) -> AclRow {
    AclRow {
        resource_type: acl::ResourceType::from_code(resource_type).map_or("UNKNOWN", |t| t.name()),
        resource: resource.to_string(),
        pattern: acl::PatternType::from_code(pattern).map_or("UNKNOWN", |p| p.name()),
        principal: principal.to_string(),
        host: host.to_string(),
        operation: acl::Operation::from_code(op).map_or("UNKNOWN", |o| o.name()),
        permission: acl::Permission::from_code(perm).map_or("UNKNOWN", |p| p.name()),
    }
}

fn print_acls(output: Output, rows: &Vec<AclRow>) -> anyhow::Result<()> {
    emit(output, rows, |rows| {
        table(
            &[
                "TYPE",
                "RESOURCE",
                "PATTERN",
                "PRINCIPAL",
                "HOST",
                "OPERATION",
                "PERMISSION",
            ],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        r.resource_type.to_string(),
                        r.resource.clone(),
                        r.pattern.to_string(),
                        r.principal.clone(),
                        r.host.clone(),
                        r.operation.to_string(),
                        r.permission.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        )
    })
}

fn operations(names: &[String]) -> anyhow::Result<Vec<acl::Operation>> {
    names
        .iter()
        .map(|n| acl::Operation::from_name(n).with_context(|| format!("--operation {n}: not an ACL operation")))
        .collect()
}

fn pattern_code(p: PatternArg) -> i8 {
    match p {
        PatternArg::Literal => acl::PatternType::Literal.code(),
        PatternArg::Prefixed => acl::PatternType::Prefixed.code(),
        PatternArg::Match => acl::CODE_MATCH,
        PatternArg::Any => acl::CODE_ANY,
    }
}

pub fn acl(target: Target, cmd: AclCommand) -> anyhow::Result<()> {
    let mut c = target.connect()?;
    match cmd {
        AclCommand::Add {
            principal,
            operations: ops,
            resource,
            pattern,
            host,
            deny,
        } => {
            let (rt, name) = resource
                .get()
                .context("name the resource: --topic, --group, --cluster or --transactional-id")?;
            if matches!(pattern, PatternArg::Match | PatternArg::Any) {
                bail!("an ACL's --pattern is literal or prefixed");
            }
            let permission = if deny {
                acl::Permission::Deny
            } else {
                acl::Permission::Allow
            };
            let creations: Vec<create_acls_request::AclCreation> = operations(&ops)?
                .into_iter()
                .map(|op| {
                    create_acls_request::AclCreation::default()
                        .with_resource_type(rt.code())
                        .with_resource_name(StrBytes::from_string(name.clone()))
                        .with_resource_pattern_type(pattern_code(pattern))
                        .with_principal(StrBytes::from_string(principal.clone()))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_operation(op.code())
                        .with_permission_type(permission.code())
                })
                .collect();
            let resp: CreateAclsResponse = c.call(
                ApiKey::CreateAcls,
                (1, 3),
                &CreateAclsRequest::default().with_creations(creations),
            )?;
            for r in &resp.results {
                check(r.error_code, r.error_message.as_ref(), "adding an ACL")?;
            }
            println!(
                "{} {principal} {} on {} {name} ({} ACLs)",
                permission.name(),
                ops.join(", "),
                rt.name(),
                resp.results.len()
            );
            Ok(())
        }
        AclCommand::List {
            principal,
            resource,
            pattern,
        } => {
            let (rt, name) = resource
                .get()
                .map_or((acl::CODE_ANY, None), |(t, n)| (t.code(), Some(n)));
            let req = DescribeAclsRequest::default()
                .with_resource_type_filter(rt)
                .with_resource_name_filter(name.map(StrBytes::from_string))
                .with_pattern_type_filter(pattern_code(pattern))
                .with_principal_filter(principal.map(StrBytes::from_string))
                .with_host_filter(None)
                .with_operation(acl::CODE_ANY)
                .with_permission_type(acl::CODE_ANY);
            let resp: DescribeAclsResponse = c.call(ApiKey::DescribeAcls, (1, 3), &req)?;
            check(resp.error_code, resp.error_message.as_ref(), "listing ACLs")?;
            let rows: Vec<AclRow> = resp
                .resources
                .iter()
                .flat_map(|r| {
                    r.acls.iter().map(|a| {
                        acl_row(
                            r.resource_type,
                            &r.resource_name,
                            r.pattern_type,
                            &a.principal,
                            &a.host,
                            a.operation,
                            a.permission_type,
                        )
                    })
                })
                .collect();
            print_acls(target.output, &rows)
        }
        AclCommand::Remove {
            principal,
            operations: ops,
            resource,
            pattern,
            host,
        } => {
            let resource = resource.get();
            if resource.is_none() && principal.is_none() {
                bail!("name a principal or a resource: `acl remove` does not remove every ACL at once");
            }
            let (rt, name) = resource.map_or((acl::CODE_ANY, None), |(t, n)| (t.code(), Some(n)));
            let ops: Vec<i8> = if ops.is_empty() {
                vec![acl::CODE_ANY]
            } else {
                operations(&ops)?.into_iter().map(|o| o.code()).collect()
            };
            let filters = ops
                .into_iter()
                .map(|op| {
                    delete_acls_request::DeleteAclsFilter::default()
                        .with_resource_type_filter(rt)
                        .with_resource_name_filter(name.clone().map(StrBytes::from_string))
                        .with_pattern_type_filter(pattern_code(pattern))
                        .with_principal_filter(principal.clone().map(StrBytes::from_string))
                        .with_host_filter(host.clone().map(StrBytes::from_string))
                        .with_operation(op)
                        .with_permission_type(acl::CODE_ANY)
                })
                .collect();
            let resp: DeleteAclsResponse = c.call(
                ApiKey::DeleteAcls,
                (1, 3),
                &DeleteAclsRequest::default().with_filters(filters),
            )?;
            let mut rows = Vec::new();
            for r in &resp.filter_results {
                check(r.error_code, r.error_message.as_ref(), "removing ACLs")?;
                rows.extend(r.matching_acls.iter().map(|a| {
                    acl_row(
                        a.resource_type,
                        &a.resource_name,
                        a.pattern_type,
                        &a.principal,
                        &a.host,
                        a.operation,
                        a.permission_type,
                    )
                }));
            }
            if target.output == Output::Text {
                println!("removed {} ACLs", rows.len());
                if rows.is_empty() {
                    return Ok(());
                }
            }
            print_acls(target.output, &rows)
        }
    }
}
