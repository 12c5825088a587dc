//! Topic configs: the keys corestream knows, their defaults, and checks.
//! DescribeConfigs reports all of them; CreateTopics rejects unknown keys or
//! bad values with INVALID_CONFIG.

use std::collections::BTreeMap;

pub struct ConfigKey {
    pub name: &'static str,
    /// Kafka's `ConfigType` code for DescribeConfigs v3+.
    pub kind: i8,
    pub doc: &'static str,
}

const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;

pub const KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "max.message.bytes",
        kind: INT,
        doc: "Largest record batch the topic accepts.",
    },
    ConfigKey {
        name: "retention.ms",
        kind: LONG,
        doc: "How long data is kept (-1: forever). Stored; retention is not enforced yet.",
    },
    ConfigKey {
        name: "retention.bytes",
        kind: LONG,
        doc: "Bytes kept per partition (-1: no limit). Stored; retention is not enforced yet.",
    },
    ConfigKey {
        name: "cleanup.policy",
        kind: STRING,
        doc: "delete or compact.",
    },
    ConfigKey {
        name: "segment.bytes",
        kind: INT,
        doc: "Kafka log segment size (corestream uses per-shard WAL segments).",
    },
    ConfigKey {
        name: "min.insync.replicas",
        kind: INT,
        doc: "Replicas that must acknowledge acks=all writes.",
    },
    ConfigKey {
        name: "compression.type",
        kind: STRING,
        doc: "Batches are stored as produced.",
    },
    ConfigKey {
        name: "message.timestamp.type",
        kind: STRING,
        doc: "CreateTime or LogAppendTime.",
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        kind: BOOLEAN,
        doc: "Never: Raft elects only up-to-date leaders.",
    },
];

pub fn default_value(name: &str, message_max_bytes: u64) -> Option<String> {
    Some(match name {
        "max.message.bytes" => message_max_bytes.to_string(),
        "retention.ms" => "604800000".into(),
        "retention.bytes" => "-1".into(),
        "cleanup.policy" => "delete".into(),
        "segment.bytes" => "1073741824".into(),
        "min.insync.replicas" => "1".into(),
        "compression.type" => "producer".into(),
        "message.timestamp.type" => "CreateTime".into(),
        "unclean.leader.election.enable" => "false".into(),
        _ => return None,
    })
}

/// Checks one `key = value` override; the error says what is wrong.
pub fn validate(name: &str, value: &str, socket_request_max_bytes: u64) -> Result<(), String> {
    let int_in = |lo: i64, hi: i64| -> Result<(), String> {
        match value.parse::<i64>() {
            Ok(v) if v >= lo && v <= hi => Ok(()),
            _ => Err(format!("{name} = '{value}': must be an integer in [{lo}, {hi}]")),
        }
    };
    match name {
        "max.message.bytes" => int_in(1024, socket_request_max_bytes as i64),
        "retention.ms" | "retention.bytes" => int_in(-1, i64::MAX),
        "segment.bytes" => int_in(14, i32::MAX as i64),
        "min.insync.replicas" => int_in(1, i32::MAX as i64),
        "cleanup.policy" => match value {
            "delete" | "compact" | "compact,delete" | "delete,compact" => Ok(()),
            _ => Err(format!("{name} = '{value}': must be delete, compact or both")),
        },
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(format!("{name} = '{value}': unknown compression type")),
        },
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!("{name} = '{value}': must be CreateTime or LogAppendTime")),
        },
        "unclean.leader.election.enable" => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("{name} = '{value}': must be true or false")),
        },
        _ => Err(format!("unknown topic config '{name}'")),
    }
}

/// The effective `max.message.bytes` of a topic.
pub fn max_message_bytes(overrides: &BTreeMap<String, String>, broker_default: u64) -> usize {
    overrides
        .get("max.message.bytes")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(broker_default) as usize
}
