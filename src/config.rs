//! Broker configuration: a TOML file (every key optional), overridden by
//! command-line flags, validated once at start-up. Errors name the key, the
//! value and the allowed range.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::security::{Mechanism, SecurityProtocol};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Broker id clients see in Metadata.
    pub node_id: i32,
    /// Address the Kafka listener binds on every shard (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Address advertised to clients; defaults to `listen`.
    pub advertised: Option<SocketAddr>,
    /// Listeners the Kafka way, each `NAME://ip:port`: NAME is a security
    /// protocol (PLAINTEXT, SASL_PLAINTEXT) or a name mapped to one in
    /// `listener_security_protocol_map`. Empty: one PLAINTEXT listener on
    /// `listen`, advertised as `advertised`.
    pub listeners: Vec<String>,
    /// `NAME://ip:port` per listener: where clients that came in on it are
    /// sent. A listener left out advertises its bind address.
    pub advertised_listeners: Vec<String>,
    /// Listener name -> security protocol, for names that are not one.
    pub listener_security_protocol_map: BTreeMap<String, String>,
    pub sasl: SaslConfig,
    /// Certificates of SSL and SASL_SSL listeners.
    pub ssl: crate::security::tls::SslConfig,
    /// ACL checks on every request (off by default, as in Kafka).
    pub authorizer: crate::security::acl::AuthorizerConfig,
    /// Admin HTTP port: /metrics (Prometheus) and /health. Loopback by
    /// default; other addresses only when configured.
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Number of shards (one per core). Default: all online cores.
    pub shards: Option<usize>,
    /// Explicit cores to pin shards to; overrides `shards`.
    pub cores: Option<Vec<usize>>,
    /// Memory budget of each shard, e.g. "512MiB".
    pub memory_per_shard: ByteSize,
    pub limits: Limits,
    pub wal: WalConfig,
    pub topics: TopicDefaults,
    pub groups: GroupConfig,
    pub cluster: ClusterConfig,
}

/// The nodes of a cluster. Empty: a single node. Every node gets the same
/// list (this one included) and the same shard count: shard k of every
/// node forms Raft group k, which replicates the partitions on shard k to
/// every node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub nodes: Vec<NodeAddress>,
    /// Mutual TLS on the Raft transport (every node the same).
    pub tls: Option<crate::security::tls::PeerTlsConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    /// The node's `node_id`.
    pub id: i32,
    /// Where clients reach its Kafka listener (advertised in Metadata).
    pub kafka: SocketAddr,
    /// Where its shard 0 takes Raft traffic; shard k uses this port + k.
    pub raft: SocketAddr,
    /// Its advertised address per listener name, for clients that came in
    /// on that listener; a name left out falls back to `kafka`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, SocketAddr>,
}

/// SASL on the SASL_PLAINTEXT listeners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    /// Mechanisms offered (Kafka's sasl.enabled.mechanisms): PLAIN,
    /// SCRAM-SHA-256, SCRAM-SHA-512. PLAIN checks the password against the
    /// user's SCRAM credential, so every user is made with `corestream user
    /// create` (or AlterUserScramCredentials) whatever the mechanism.
    pub enabled_mechanisms: Vec<String>,
    /// Longest an authenticated session lasts before the client must
    /// re-authenticate (KIP-368; Kafka's connections.max.reauth.ms); a
    /// client that does not is disconnected at its next request. 0: no limit.
    pub connections_max_reauth_ms: u64,
    /// How long a client whose authentication failed waits for the answer
    /// (and the close), as Kafka's connection.failed.authentication.delay.ms:
    /// it slows password guessing over one connection.
    pub failed_authentication_delay_ms: u64,
}

impl Default for SaslConfig {
    fn default() -> Self {
        Self {
            enabled_mechanisms: crate::security::Mechanism::ALL
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            connections_max_reauth_ms: 0,
            failed_authentication_delay_ms: 100,
        }
    }
}

/// One Kafka listener, resolved from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised: SocketAddr,
}

/// A peer as a shard sees it: its Raft id and the address of the same
/// shard on it.
pub type RaftPeer = (u64, SocketAddr);

/// raft-rs ids must be non-zero; Kafka node ids start at 0.
pub fn raft_id(node_id: i32) -> u64 {
    node_id as u64 + 1
}

pub fn node_of_raft_id(id: u64) -> i32 {
    (id - 1) as i32
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// How long an empty group's first rebalance waits for more members
    /// after each join (Kafka's group.initial.rebalance.delay.ms).
    pub initial_rebalance_delay_ms: u64,
    /// Groups one shard coordinates at most (with members, and with
    /// committed offsets, each); a new group beyond it gets
    /// COORDINATOR_NOT_AVAILABLE.
    pub max_groups_per_shard: usize,
    /// Members (joined or given an id to join with) of one group at most;
    /// a new member beyond it gets GROUP_MAX_SIZE_REACHED (Kafka's
    /// group.max.size).
    pub max_members_per_group: usize,
    /// How long the committed offsets of a group without members are kept
    /// (Kafka's offsets.retention.minutes, 7 days, here in ms).
    pub offsets_retention_ms: u64,
    /// How often each coordinator shard looks for expired offsets (Kafka's
    /// offsets.retention.check.interval.ms); also how long a group that
    /// emptied stays Empty before it is forgotten, as Kafka drops one in
    /// that cleanup.
    pub offsets_retention_check_interval_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            max_groups_per_shard: 100_000,
            max_members_per_group: 1_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Partitions one shard may own; warn at 80%, refuse beyond.
    pub max_partitions_per_shard: usize,
    /// Largest request frame; a larger length prefix closes the connection.
    pub socket_request_max_bytes: ByteSize,
    /// Default `max.message.bytes` of topics (largest record batch).
    pub message_max_bytes: ByteSize,
    pub max_connections_per_shard: usize,
    /// Requests one connection may have in flight (pipelined).
    pub max_in_flight_per_connection: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Size each WAL segment file is preallocated to.
    pub segment_bytes: ByteSize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDefaults {
    /// Create unknown topics on Metadata requests that allow it (Kafka's
    /// auto.create.topics.enable).
    pub auto_create: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1.
    pub default_partitions: u32,
    /// How often each shard looks for partitions whose oldest batches
    /// passed their `retention.ms` (Kafka's log.retention.check.interval.ms).
    pub retention_check_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 0,
            listen: "127.0.0.1:9092".parse().expect("valid literal"),
            advertised: None,
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: BTreeMap::new(),
            sasl: SaslConfig::default(),
            ssl: Default::default(),
            authorizer: Default::default(),
            admin_listen: "127.0.0.1:9644".parse().expect("valid literal"),
            data_dir: PathBuf::from("corestream-data"),
            shards: None,
            cores: None,
            memory_per_shard: ByteSize(512 << 20),
            limits: Limits::default(),
            wal: WalConfig::default(),
            topics: TopicDefaults::default(),
            groups: GroupConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_partitions_per_shard: 10_000,
            socket_request_max_bytes: ByteSize(100 << 20),
            message_max_bytes: ByteSize(1_048_588),
            max_connections_per_shard: 10_000,
            max_in_flight_per_connection: 64,
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: ByteSize(128 << 20),
        }
    }
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self {
            auto_create: true,
            default_partitions: 1,
            retention_check_interval_ms: 300_000,
        }
    }
}

/// A size in bytes, written as an integer or a string with a unit
/// ("64MiB", "1GiB", "4096").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SizeRepr", into = "u64")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Int(u64),
    Text(String),
}

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> u64 {
        b.0
    }
}

impl TryFrom<SizeRepr> for ByteSize {
    type Error = String;
    fn try_from(r: SizeRepr) -> Result<Self, String> {
        match r {
            SizeRepr::Int(n) => Ok(ByteSize(n)),
            SizeRepr::Text(s) => s.parse(),
        }
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 512MiB)"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => return Err(format!("unknown size unit '{other}' in '{s}' (use B, KiB, MiB, GiB)")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size '{s}' overflows"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key '{key}' = {value}: {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: String,
    },
}

fn check<T: std::fmt::Display + PartialOrd>(key: &'static str, v: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            expected: format!("must be between {lo} and {hi}"),
        });
    }
    Ok(())
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn advertised(&self) -> SocketAddr {
        self.advertised
            .or_else(|| self.node(self.node_id).map(|n| n.kafka))
            .unwrap_or(self.listen)
    }

    /// The Kafka listeners of this node. `validate` has checked them.
    pub fn listeners(&self) -> Result<Vec<ListenerConfig>, ConfigError> {
        if self.listeners.is_empty() {
            return Ok(vec![ListenerConfig {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                bind: self.listen,
                advertised: self.advertised(),
            }]);
        }
        let invalid = |key: &'static str, value: &str, expected: String| ConfigError::Invalid {
            key,
            value: value.to_string(),
            expected,
        };
        if self.listen != Config::default().listen || self.advertised.is_some() {
            return Err(invalid(
                "listeners",
                &self.listeners.join(","),
                "set either listeners (with advertised_listeners) or listen (with advertised), not both".into(),
            ));
        }
        let parse = |key: &'static str, entry: &str| -> Result<(String, SocketAddr), ConfigError> {
            let (name, addr) = entry
                .split_once("://")
                .ok_or_else(|| invalid(key, entry, "expected NAME://ip:port".into()))?;
            let addr = addr
                .parse()
                .map_err(|_| invalid(key, entry, "expected NAME://ip:port with an IP address".into()))?;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    key,
                    entry,
                    "a listener name is letters, digits, '_' and '-'".into(),
                ));
            }
            Ok((name.to_string(), addr))
        };
        let advertised: Vec<(String, SocketAddr)> = self
            .advertised_listeners
            .iter()
            .map(|e| parse("advertised_listeners", e))
            .collect::<Result<_, _>>()?;
        let mut out: Vec<ListenerConfig> = Vec::new();
        for entry in &self.listeners {
            let (name, bind) = parse("listeners", entry)?;
            let protocol_name = self.listener_security_protocol_map.get(&name).unwrap_or(&name);
            let protocol = SecurityProtocol::from_name(protocol_name).ok_or_else(|| {
                invalid(
                    "listeners",
                    entry,
                    format!("'{name}' is no security protocol (PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL); map the name in listener_security_protocol_map"),
                )
            })?;
            if out.iter().any(|l| l.name == name) {
                return Err(invalid(
                    "listeners",
                    entry,
                    format!("listener name {name} appears twice"),
                ));
            }
            if out.iter().any(|l| l.bind == bind && bind.port() != 0) {
                return Err(invalid("listeners", entry, format!("two listeners bind {bind}")));
            }
            let advertised = advertised.iter().find(|(n, _)| *n == name).map_or(bind, |&(_, a)| a);
            out.push(ListenerConfig {
                name,
                protocol,
                bind,
                advertised,
            });
        }
        if let Some((name, _)) = advertised.iter().find(|(n, _)| !out.iter().any(|l| &l.name == n)) {
            return Err(invalid(
                "advertised_listeners",
                name,
                "names no listener in listeners".into(),
            ));
        }
        Ok(out)
    }

    /// The SASL mechanisms offered, in the configured order.
    pub fn sasl_mechanisms(&self) -> Result<Vec<Mechanism>, ConfigError> {
        self.sasl
            .enabled_mechanisms
            .iter()
            .map(|n| {
                Mechanism::from_name(n).ok_or_else(|| ConfigError::Invalid {
                    key: "sasl.enabled_mechanisms",
                    value: n.clone(),
                    expected: "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into(),
                })
            })
            .collect()
    }

    /// The cluster's node with this id (none on a single node).
    pub fn node(&self, id: i32) -> Option<&NodeAddress> {
        self.cluster.nodes.iter().find(|n| n.id == id)
    }

    /// Every broker id of the cluster, sorted (this node alone when single).
    pub fn brokers(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.cluster.nodes.iter().map(|n| n.id).collect();
        if ids.is_empty() {
            ids.push(self.node_id);
        }
        ids.sort_unstable();
        ids
    }

    /// Shard `k`'s Raft port on this node, and its peers (shard `k` of the
    /// other nodes). `None` on a single node.
    pub fn raft_endpoints(&self, shard: u16) -> Option<(SocketAddr, Vec<RaftPeer>)> {
        let me = self.node(self.node_id)?;
        let at = |a: SocketAddr| SocketAddr::new(a.ip(), a.port() + shard);
        let peers = self
            .cluster
            .nodes
            .iter()
            .filter(|n| n.id != self.node_id)
            .map(|n| (raft_id(n.id), at(n.raft)))
            .collect();
        Some((at(me.raft), peers))
    }

    /// The cores shards run on, one shard per entry.
    pub fn shard_cores(&self) -> Vec<usize> {
        if let Some(cores) = &self.cores {
            return cores.clone();
        }
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..self.shards.unwrap_or(online)).map(|i| i % online).collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(n) = self.shards {
            check("shards", n, 1, 256)?;
        }
        if let Some(cores) = &self.cores {
            check("cores (count)", cores.len(), 1, 256)?;
            for &c in cores {
                check("cores", c, 0, online - 1)?;
            }
        }
        check("memory_per_shard", self.memory_per_shard.0, 16 << 20, 1 << 40)?;
        let listeners = self.listeners()?;
        let mechanisms = self.sasl_mechanisms()?;
        if listeners.iter().any(|l| l.protocol.sasl()) && mechanisms.is_empty() {
            return Err(ConfigError::Invalid {
                key: "sasl.enabled_mechanisms",
                value: "[]".into(),
                expected: "a SASL listener needs at least one mechanism".into(),
            });
        }
        if let Some(bad) = self.authorizer.super_users.iter().find(|s| !s.contains(':')) {
            return Err(ConfigError::Invalid {
                key: "authorizer.super_users",
                value: bad.clone(),
                expected: "principals as Type:name, e.g. User:admin".into(),
            });
        }
        check(
            "sasl.failed_authentication_delay_ms",
            self.sasl.failed_authentication_delay_ms,
            0,
            60_000,
        )?;
        check(
            "sasl.connections_max_reauth_ms",
            self.sasl.connections_max_reauth_ms,
            0,
            i64::MAX as u64,
        )?;
        check(
            "groups.initial_rebalance_delay_ms",
            self.groups.initial_rebalance_delay_ms,
            0,
            300_000,
        )?;
        check(
            "groups.offsets_retention_ms",
            self.groups.offsets_retention_ms,
            1,
            i64::MAX as u64,
        )?;
        check(
            "groups.offsets_retention_check_interval_ms",
            self.groups.offsets_retention_check_interval_ms,
            1,
            i64::MAX as u64,
        )?;
        check(
            "groups.max_groups_per_shard",
            self.groups.max_groups_per_shard,
            1,
            10_000_000,
        )?;
        check(
            "groups.max_members_per_group",
            self.groups.max_members_per_group,
            1,
            1_000_000,
        )?;
        check(
            "limits.max_partitions_per_shard",
            self.limits.max_partitions_per_shard,
            1,
            1_000_000,
        )?;
        check(
            "limits.socket_request_max_bytes",
            self.limits.socket_request_max_bytes.0,
            1 << 10,
            1 << 30,
        )?;
        check(
            "limits.message_max_bytes",
            self.limits.message_max_bytes.0,
            1 << 10,
            self.limits.socket_request_max_bytes.0,
        )?;
        check(
            "limits.max_connections_per_shard",
            self.limits.max_connections_per_shard,
            1,
            1_000_000,
        )?;
        check(
            "limits.max_in_flight_per_connection",
            self.limits.max_in_flight_per_connection,
            1,
            4096,
        )?;
        check("wal.segment_bytes", self.wal.segment_bytes.0, 1 << 20, 1 << 40)?;
        check("topics.default_partitions", self.topics.default_partitions, 1, 100_000)?;
        check(
            "topics.retention_check_interval_ms",
            self.topics.retention_check_interval_ms,
            100,
            86_400_000,
        )?;
        self.validate_cluster()?;
        if !self.wal.segment_bytes.0.is_multiple_of(4096) {
            return Err(ConfigError::Invalid {
                key: "wal.segment_bytes",
                value: self.wal.segment_bytes.0.to_string(),
                expected: "must be a multiple of 4096".into(),
            });
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let nodes = &self.cluster.nodes;
        if nodes.is_empty() {
            return Ok(());
        }
        let invalid = |expected: String| ConfigError::Invalid {
            key: "cluster.nodes",
            value: format!("{} node(s)", nodes.len()),
            expected,
        };
        check("cluster.nodes (count)", nodes.len(), 1, 64)?;
        for n in nodes {
            check("cluster.nodes.id", n.id, 0, i32::MAX - 1)?;
            if nodes.iter().filter(|m| m.id == n.id).count() > 1 {
                return Err(invalid(format!("node id {} appears twice; ids must be unique", n.id)));
            }
            let shards = self.shard_cores().len() as u32;
            if n.raft.port() as u32 + shards > 65_536 {
                return Err(invalid(format!(
                    "node {}: raft port {} + {shards} shards passes 65535 (shard k uses the raft port + k)",
                    n.id,
                    n.raft.port()
                )));
            }
        }
        let Some(me) = self.node(self.node_id) else {
            return Err(invalid(format!(
                "node_id {} is not in the list; list every node of the cluster, this one included",
                self.node_id
            )));
        };
        if let Some(adv) = self.advertised {
            if adv != me.kafka {
                return Err(ConfigError::Invalid {
                    key: "advertised",
                    value: adv.to_string(),
                    expected: format!(
                        "must match this node's kafka address in cluster.nodes ({}), or be left out",
                        me.kafka
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
    }

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let c: Config = toml::from_str(
            "listen = \"127.0.0.1:19092\"\nmemory_per_shard = \"64MiB\"\n[limits]\nmax_partitions_per_shard = 10\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.memory_per_shard.0, 64 << 20);
        assert_eq!(c.limits.max_partitions_per_shard, 10);
        assert_eq!(c.limits.message_max_bytes.0, 1_048_588);
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn cluster_nodes_parse_and_name_this_node() {
        let text = r#"
node_id = 2
[cluster]
nodes = [
  { id = 1, kafka = "10.0.0.1:9092", raft = "10.0.0.1:9093" },
  { id = 2, kafka = "10.0.0.2:9092", raft = "10.0.0.2:9093" },
]
"#;
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.advertised().to_string(), "10.0.0.2:9092");
        assert_eq!(c.brokers(), vec![1, 2]);
        let (listen, peers) = c.raft_endpoints(3).unwrap();
        assert_eq!(listen.to_string(), "10.0.0.2:9096");
        assert_eq!(peers, vec![(raft_id(1), "10.0.0.1:9096".parse().unwrap())]);
        let stranger = Config { node_id: 7, ..c };
        let e = stranger.validate().unwrap_err().to_string();
        assert!(e.contains("cluster.nodes") && e.contains("node_id 7"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config {
            memory_per_shard: ByteSize(1),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("memory_per_shard"), "{e}");
    }

    #[test]
    fn listeners_parse_the_kafka_way() {
        let c: Config = toml::from_str(
            "listeners = [\"PLAINTEXT://127.0.0.1:9092\", \"CLIENT://0.0.0.0:9093\"]\n\
             advertised_listeners = [\"CLIENT://10.0.0.2:9093\"]\n\
             listener_security_protocol_map = { CLIENT = \"SASL_PLAINTEXT\" }\n",
        )
        .unwrap();
        c.validate().unwrap();
        let ls = c.listeners().unwrap();
        assert_eq!(ls.len(), 2);
        assert_eq!(
            (ls[0].name.as_str(), ls[0].protocol),
            ("PLAINTEXT", SecurityProtocol::Plaintext)
        );
        assert_eq!(ls[0].advertised.to_string(), "127.0.0.1:9092");
        assert_eq!(
            (ls[1].name.as_str(), ls[1].protocol),
            ("CLIENT", SecurityProtocol::SaslPlaintext)
        );
        assert_eq!(ls[1].advertised.to_string(), "10.0.0.2:9093");
        // The default: one PLAINTEXT listener on `listen`.
        let d = Config::default().listeners().unwrap();
        assert_eq!((d.len(), d[0].protocol), (1, SecurityProtocol::Plaintext));
        assert_eq!(d[0].bind.to_string(), "127.0.0.1:9092");
    }

    #[test]
    fn bad_listeners_name_the_key() {
        let bad = |text: &str, key: &str| {
            let c: Config = toml::from_str(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        };
        bad("listeners = [\"PLAINTEXT:9092\"]", "listeners");
        bad("listeners = [\"FOO://127.0.0.1:9092\"]", "listeners");
        bad(
            "listeners = [\"PLAINTEXT://127.0.0.1:1\", \"PLAINTEXT://127.0.0.1:2\"]",
            "listeners",
        );
        bad(
            "listeners = [\"PLAINTEXT://127.0.0.1:1\", \"SASL_PLAINTEXT://127.0.0.1:1\"]",
            "listeners",
        );
        bad(
            "listeners = [\"PLAINTEXT://127.0.0.1:1\"]\nadvertised_listeners = [\"OTHER://127.0.0.1:1\"]",
            "advertised_listeners",
        );
        bad(
            "listen = \"127.0.0.1:5\"\nlisteners = [\"PLAINTEXT://127.0.0.1:1\"]",
            "listeners",
        );
        bad(
            "listeners = [\"SASL_PLAINTEXT://127.0.0.1:1\"]\n[sasl]\nenabled_mechanisms = []",
            "sasl.enabled_mechanisms",
        );
        bad("[sasl]\nenabled_mechanisms = [\"GSSAPI\"]", "sasl.enabled_mechanisms");
    }
}
