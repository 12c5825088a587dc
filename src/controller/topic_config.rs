//! Topic configs: every key Apache Kafka accepts for a topic (3.x and 4.x),
//! with Kafka's types, defaults and validation, so that clients that send
//! them at topic creation (Kafka Streams, Connect, Schema Registry, the
//! tools) get what Kafka would answer. DescribeConfigs reports all of
//! them; CreateTopics and IncrementalAlterConfigs refuse unknown keys and
//! bad values with INVALID_CONFIG. What each key does here is in its
//! `doc`: many are accepted and reported but have no effect, because
//! corestream stores data differently (a WAL per shard, not segments per
//! partition), and the README lists them.

use std::collections::BTreeMap;

use corestream_shards::shard::compact::Compaction;

/// Kafka's `ConfigType` codes (DescribeConfigs v3+).
const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const DOUBLE: i8 = 6;
const LIST: i8 = 7;

/// How a value is checked.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// An integer in the range (INT keys: at most i32::MAX).
    Int(i64, i64),
    /// A number in the range.
    Double(f64, f64),
    Bool,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A comma-separated list, each item one of these, at least one.
    ListOf(&'static [&'static str]),
    /// `*`, or `partition:broker` pairs separated by commas (throttled
    /// replica lists), or empty.
    Replicas,
    /// A message format version such as `2.8` or `3.0-IV1`.
    Version,
    /// `max.message.bytes`: an int from 0, as Kafka checks it; its default
    /// is the broker's `message_max_bytes`. (A batch is also bounded by the
    /// request size limit, whatever the topic says.)
    MessageBytes,
}

pub struct ConfigKey {
    pub name: &'static str,
    pub kind: i8,
    default: &'static str,
    check: Check,
    pub doc: &'static str,
}

const I32: i64 = i32::MAX as i64;
const NO_EFFECT_SEGMENTS: &str =
    "Accepted and reported; no effect: data lives in per-shard WAL segments, not in segments per partition.";

pub const KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        kind: LIST,
        default: "delete",
        check: Check::ListOf(&["delete", "compact"]),
        doc: "delete (retention.ms and retention.bytes trim the log), compact (the last record of each key stays), or both.",
    },
    ConfigKey {
        name: "compression.type",
        kind: STRING,
        default: "producer",
        check: Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        doc: "Batches are stored as produced.",
    },
    ConfigKey {
        name: "compression.gzip.level",
        kind: INT,
        default: "-1",
        check: Check::Int(-1, 9),
        doc: "Accepted and reported; no effect: the broker never recompresses.",
    },
    ConfigKey {
        name: "compression.lz4.level",
        kind: INT,
        default: "9",
        check: Check::Int(1, 17),
        doc: "Accepted and reported; no effect: the broker never recompresses.",
    },
    ConfigKey {
        name: "compression.zstd.level",
        kind: INT,
        default: "3",
        check: Check::Int(-131_072, 22),
        doc: "Accepted and reported; no effect: the broker never recompresses.",
    },
    ConfigKey {
        name: "delete.retention.ms",
        kind: LONG,
        default: "86400000",
        check: Check::Int(0, i64::MAX),
        doc: "How long compaction keeps a tombstone (a null value) after its timestamp.",
    },
    ConfigKey {
        name: "file.delete.delay.ms",
        kind: LONG,
        default: "60000",
        check: Check::Int(0, i64::MAX),
        doc: NO_EFFECT_SEGMENTS,
    },
    ConfigKey {
        name: "flush.messages",
        kind: LONG,
        default: "9223372036854775807",
        check: Check::Int(1, i64::MAX),
        doc: "Accepted and reported; no effect: every write is made durable before it is acknowledged.",
    },
    ConfigKey {
        name: "flush.ms",
        kind: LONG,
        default: "9223372036854775807",
        check: Check::Int(0, i64::MAX),
        doc: "Accepted and reported; no effect: every write is made durable before it is acknowledged.",
    },
    ConfigKey {
        name: "follower.replication.throttled.replicas",
        kind: LIST,
        default: "",
        check: Check::Replicas,
        doc: "Accepted and reported; no effect: replication is not throttled.",
    },
    ConfigKey {
        name: "index.interval.bytes",
        kind: INT,
        default: "4096",
        check: Check::Int(0, I32),
        doc: "Accepted and reported; no effect: the offset index keeps one entry per batch.",
    },
    ConfigKey {
        name: "leader.replication.throttled.replicas",
        kind: LIST,
        default: "",
        check: Check::Replicas,
        doc: "Accepted and reported; no effect: replication is not throttled.",
    },
    ConfigKey {
        name: "local.retention.bytes",
        kind: LONG,
        default: "-2",
        check: Check::Int(-2, i64::MAX),
        doc: "Accepted and reported; no effect: there is no tiered storage.",
    },
    ConfigKey {
        name: "local.retention.ms",
        kind: LONG,
        default: "-2",
        check: Check::Int(-2, i64::MAX),
        doc: "Accepted and reported; no effect: there is no tiered storage.",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        kind: LONG,
        default: "9223372036854775807",
        check: Check::Int(1, i64::MAX),
        doc: "A compacted partition is cleaned once a record waited this long, whatever its dirty ratio.",
    },
    ConfigKey {
        name: "max.message.bytes",
        kind: INT,
        default: "",
        check: Check::MessageBytes,
        doc: "Largest record batch the topic accepts.",
    },
    ConfigKey {
        name: "message.downconversion.enable",
        kind: BOOLEAN,
        default: "true",
        check: Check::Bool,
        doc: "Accepted and reported; no effect: only record batch v2 is served (Kafka 4 removed down-conversion).",
    },
    ConfigKey {
        name: "message.format.version",
        kind: STRING,
        default: "3.0-IV1",
        check: Check::Version,
        doc: "Accepted and reported; no effect: batches are stored in format v2 as produced.",
    },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        kind: LONG,
        default: "3600000",
        check: Check::Int(0, i64::MAX),
        doc: "Enforced for CreateTime: a batch stamped later than this after the broker's clock is refused with INVALID_TIMESTAMP (checked on its largest timestamp).",
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        kind: LONG,
        default: "9223372036854775807",
        check: Check::Int(0, i64::MAX),
        doc: "Enforced for CreateTime: a batch stamped earlier than this before the broker's clock is refused with INVALID_TIMESTAMP (checked on its first timestamp).",
    },
    ConfigKey {
        name: "message.timestamp.difference.max.ms",
        kind: LONG,
        default: "9223372036854775807",
        check: Check::Int(0, i64::MAX),
        doc: "Accepted and reported; no effect (Kafka 4 replaced it with the two above).",
    },
    ConfigKey {
        name: "message.timestamp.type",
        kind: STRING,
        default: "CreateTime",
        check: Check::OneOf(&["CreateTime", "LogAppendTime"]),
        doc: "CreateTime (batches keep the producer's timestamps) or LogAppendTime (the broker stamps each batch with its clock as it takes it).",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        kind: DOUBLE,
        default: "0.5",
        check: Check::Double(0.0, 1.0),
        doc: "A compacted partition is cleaned once this share of its cleanable bytes is new since the last pass.",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        kind: LONG,
        default: "0",
        check: Check::Int(0, i64::MAX),
        doc: "Records younger than this are not compacted.",
    },
    ConfigKey {
        name: "min.insync.replicas",
        kind: INT,
        default: "1",
        check: Check::Int(1, I32),
        doc: "Replicas that must acknowledge acks=all writes: always a Raft majority here.",
    },
    ConfigKey {
        name: "preallocate",
        kind: BOOLEAN,
        default: "false",
        check: Check::Bool,
        doc: "Accepted and reported; no effect: WAL segments are always preallocated.",
    },
    ConfigKey {
        name: "remote.log.copy.disable",
        kind: BOOLEAN,
        default: "false",
        check: Check::Bool,
        doc: "Accepted and reported; no effect: there is no tiered storage.",
    },
    ConfigKey {
        name: "remote.log.delete.on.disable",
        kind: BOOLEAN,
        default: "false",
        check: Check::Bool,
        doc: "Accepted and reported; no effect: there is no tiered storage.",
    },
    ConfigKey {
        name: "remote.storage.enable",
        kind: BOOLEAN,
        default: "false",
        check: Check::OneOf(&["false"]),
        doc: "Only false: there is no tiered storage, and a topic asking for it is refused rather than silently kept local.",
    },
    ConfigKey {
        name: "retention.bytes",
        kind: LONG,
        default: "-1",
        check: Check::Int(i64::MIN, i64::MAX),
        doc: "Bytes kept per partition (-1: no limit): the leader moves the log start past the oldest batches once the partition holds an eighth more; the WAL segments it frees are deleted.",
    },
    ConfigKey {
        name: "retention.ms",
        kind: LONG,
        default: "604800000",
        check: Check::Int(-1, i64::MAX),
        doc: "How long data is kept (-1: forever): batches whose newest timestamp is older go, oldest first, checked every topics.retention_check_interval_ms (as Kafka deletes segments by their largest timestamp).",
    },
    ConfigKey {
        name: "segment.bytes",
        kind: INT,
        default: "1073741824",
        check: Check::Int(14, I32),
        doc: NO_EFFECT_SEGMENTS,
    },
    ConfigKey {
        name: "segment.index.bytes",
        kind: INT,
        default: "10485760",
        check: Check::Int(4, I32),
        doc: NO_EFFECT_SEGMENTS,
    },
    ConfigKey {
        name: "segment.jitter.ms",
        kind: LONG,
        default: "0",
        check: Check::Int(0, i64::MAX),
        doc: NO_EFFECT_SEGMENTS,
    },
    ConfigKey {
        name: "segment.ms",
        kind: LONG,
        default: "604800000",
        check: Check::Int(1, i64::MAX),
        doc: NO_EFFECT_SEGMENTS,
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        kind: BOOLEAN,
        default: "false",
        check: Check::Bool,
        doc: "Never: Raft elects only up-to-date leaders.",
    },
];

fn key(name: &str) -> Option<&'static ConfigKey> {
    KEYS.iter().find(|k| k.name == name)
}

pub fn default_value(name: &str, message_max_bytes: u64) -> Option<String> {
    let k = key(name)?;
    Some(match k.check {
        Check::MessageBytes => message_max_bytes.to_string(),
        _ => k.default.to_string(),
    })
}

/// Where a topic's config value comes from (Kafka's ConfigSource codes).
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DEFAULT: i8 = 5;

/// The broker config a topic config falls back to, as Kafka names it among
/// DescribeConfigs' synonyms (KIP-226). Kafka lists only those whose broker
/// config has a default of its own: for retention.ms (log.retention.ms),
/// segment.ms (log.roll.ms), segment.jitter.ms and flush.ms the broker
/// config defaults to null and the list is empty.
pub fn broker_synonym(name: &str) -> Option<&'static str> {
    Some(match name {
        "cleanup.policy" => "log.cleanup.policy",
        "compression.type" => "compression.type",
        "compression.gzip.level" => "compression.gzip.level",
        "compression.lz4.level" => "compression.lz4.level",
        "compression.zstd.level" => "compression.zstd.level",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "flush.messages" => "log.flush.interval.messages",
        "index.interval.bytes" => "log.index.interval.bytes",
        "local.retention.bytes" => "log.local.retention.bytes",
        "local.retention.ms" => "log.local.retention.ms",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "min.insync.replicas" => "min.insync.replicas",
        "preallocate" => "log.preallocate",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        _ => return None,
    })
}

/// Every config of a topic with these overrides: `(key, value, source)`,
/// an override where there is one, else the default. DescribeConfigs and
/// CreateTopics (v5+) answer with it.
pub fn effective<'a>(
    overrides: &'a BTreeMap<String, String>,
    message_max_bytes: u64,
) -> impl Iterator<Item = (&'static ConfigKey, String, i8)> + 'a {
    KEYS.iter().map(move |k| match overrides.get(k.name) {
        Some(v) => (k, v.clone(), SOURCE_TOPIC),
        None => {
            let default = match k.check {
                Check::MessageBytes => message_max_bytes.to_string(),
                _ => k.default.to_string(),
            };
            (k, default, SOURCE_DEFAULT)
        }
    })
}

/// Checks one `key = value` override; the error says what is wrong.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let k = key(name).ok_or_else(|| format!("unknown topic config '{name}'"))?;
    let bad = |why: String| Err(format!("{name} = '{value}': {why}"));
    let int_in = |lo: i64, hi: i64| match value.trim().parse::<i64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(()),
        _ => bad(format!("must be an integer in [{lo}, {hi}]")),
    };
    match k.check {
        Check::Int(lo, hi) => int_in(lo, hi),
        Check::MessageBytes => int_in(0, I32),
        Check::Double(lo, hi) => match value.trim().parse::<f64>() {
            Ok(v) if v >= lo && v <= hi => Ok(()),
            _ => bad(format!("must be a number in [{lo}, {hi}]")),
        },
        Check::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => bad("must be true or false".into()),
        },
        Check::OneOf(allowed) if allowed.contains(&value.trim()) => Ok(()),
        Check::OneOf(allowed) => bad(format!("must be one of {}", allowed.join(", "))),
        Check::ListOf(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.iter().all(|i| allowed.contains(i)) {
                Ok(())
            } else {
                bad(format!("must be a list of {}", allowed.join(", ")))
            }
        }
        Check::Replicas => {
            let v = value.trim();
            let pair = |p: &str| {
                let (a, b) = p.trim().split_once(':')?;
                a.parse::<i32>().ok().filter(|&a| a >= 0)?;
                b.parse::<i32>().ok().filter(|&b| b >= 0)
            };
            if v.is_empty() || v == "*" || v.split(',').all(|p| pair(p).is_some()) {
                Ok(())
            } else {
                bad("must be *, or PARTITION:BROKER pairs separated by commas".into())
            }
        }
        Check::Version => {
            let (numbers, iv) = value.split_once("-IV").unwrap_or((value, "0"));
            let parts: Vec<&str> = numbers.split('.').collect();
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if (2..=4).contains(&parts.len()) && parts.iter().all(|p| digits(p)) && digits(iv) {
                Ok(())
            } else {
                bad("not a message format version (such as 2.8 or 3.0-IV1)".into())
            }
        }
    }
}

/// Checks what only the whole set of a topic's overrides can tell (as
/// Kafka's `LogConfig.validateValues`): each value is valid already.
pub fn validate_together(overrides: &BTreeMap<String, String>) -> Result<(), String> {
    let long = |name: &str| {
        overrides
            .get(name)
            .cloned()
            .or_else(|| default_value(name, 0))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let (min, max) = (long("min.compaction.lag.ms"), long("max.compaction.lag.ms"));
    if min > max {
        return Err(format!(
            "min.compaction.lag.ms ({min}) is greater than max.compaction.lag.ms ({max})"
        ));
    }
    Ok(())
}

/// The `retention.bytes` a topic's partitions are trimmed to: none when it
/// is negative (the default) or when `cleanup.policy` does not delete.
pub fn retention_bytes(overrides: &BTreeMap<String, String>) -> Option<u64> {
    let policy = overrides.get("cleanup.policy").map_or("delete", String::as_str);
    if !policy.split(',').any(|p| p.trim() == "delete") {
        return None;
    }
    let bytes = overrides.get("retention.bytes")?.trim().parse::<i64>().ok()?;
    u64::try_from(bytes).ok()
}

/// How a topic's partitions are compacted: `None` unless `cleanup.policy`
/// includes `compact`.
pub fn compaction(overrides: &BTreeMap<String, String>) -> Option<Compaction> {
    let policy = overrides.get("cleanup.policy").map_or("delete", String::as_str);
    if !policy.split(',').any(|p| p.trim() == "compact") {
        return None;
    }
    let d = Compaction::default();
    let get = |name: &str| overrides.get(name).map(|v| v.trim());
    let long = |name: &str, default: i64| get(name).and_then(|v| v.parse::<i64>().ok()).unwrap_or(default);
    Some(Compaction {
        delete_retention_ms: long("delete.retention.ms", d.delete_retention_ms),
        min_lag_ms: long("min.compaction.lag.ms", d.min_lag_ms),
        max_lag_ms: long("max.compaction.lag.ms", d.max_lag_ms),
        min_dirty_ratio: get("min.cleanable.dirty.ratio")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(d.min_dirty_ratio),
    })
}

/// The `retention.ms` a topic's partitions are trimmed by: the topic's, or
/// Kafka's default of 7 days; none when it is -1 or when `cleanup.policy`
/// does not delete.
pub fn retention_ms(overrides: &BTreeMap<String, String>) -> Option<i64> {
    let policy = overrides.get("cleanup.policy").map_or("delete", String::as_str);
    if !policy.split(',').any(|p| p.trim() == "delete") {
        return None;
    }
    let ms = match overrides.get("retention.ms") {
        Some(v) => v.trim().parse::<i64>().ok()?,
        None => DEFAULT_RETENTION_MS,
    };
    (ms >= 0).then_some(ms)
}

/// Kafka's `log.retention.hours` default: a week.
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// The effective `max.message.bytes` of a topic.
pub fn max_message_bytes(overrides: &BTreeMap<String, String>, broker_default: u64) -> usize {
    overrides
        .get("max.message.bytes")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(broker_default) as usize
}

/// What a topic does with the timestamps producers send (Kafka's
/// `message.timestamp.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamps {
    /// `LogAppendTime`: the broker stamps each batch with its own clock.
    pub log_append_time: bool,
    /// `CreateTime`: a batch stamped earlier than this before the broker's
    /// clock, or later than `after_max_ms` after it, is refused.
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

/// The effective `message.timestamp.*` of a topic.
pub fn timestamps(overrides: &BTreeMap<String, String>) -> Timestamps {
    let ms = |name: &str| {
        overrides
            .get(name)
            .map(String::as_str)
            .or_else(|| key(name).map(|k| k.default))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(i64::MAX)
    };
    Timestamps {
        log_append_time: overrides.get("message.timestamp.type").map(String::as_str) == Some("LogAppendTime"),
        before_max_ms: ms("message.timestamp.before.max.ms"),
        after_max_ms: ms("message.timestamp.after.max.ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_kafkas_defaults() {
        let t = timestamps(&BTreeMap::new());
        assert_eq!(
            (t.log_append_time, t.before_max_ms, t.after_max_ms),
            (false, i64::MAX, 3_600_000)
        );
        let t = timestamps(&BTreeMap::from([
            ("message.timestamp.type".to_string(), "LogAppendTime".to_string()),
            ("message.timestamp.before.max.ms".to_string(), "60000".to_string()),
        ]));
        assert_eq!(
            (t.log_append_time, t.before_max_ms, t.after_max_ms),
            (true, 60_000, 3_600_000)
        );
    }

    #[test]
    fn every_key_has_a_valid_default() {
        for k in KEYS {
            let d = default_value(k.name, 1_048_588).expect("a default");
            assert!(validate(k.name, &d).is_ok(), "{} default {d:?}", k.name);
        }
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len(), "a key is listed twice");
    }

    #[test]
    fn kafkas_checks() {
        let ok = |k: &str, v: &str| validate(k, v).is_ok();
        assert!(ok("cleanup.policy", "compact,delete") && ok("cleanup.policy", "delete, compact"));
        assert!(!ok("cleanup.policy", "compact,forever"));
        assert!(ok("min.cleanable.dirty.ratio", "0.01") && !ok("min.cleanable.dirty.ratio", "1.5"));
        assert!(ok("segment.ms", "1") && !ok("segment.ms", "0"));
        assert!(ok("retention.bytes", "-5") && !ok("retention.ms", "-2"));
        assert!(
            ok("leader.replication.throttled.replicas", "0:1,1:2") && ok("leader.replication.throttled.replicas", "*")
        );
        assert!(!ok("leader.replication.throttled.replicas", "0-1"));
        assert!(ok("message.format.version", "2.8") && ok("message.format.version", "3.0-IV1"));
        assert!(!ok("message.format.version", "latest"));
        assert!(ok("preallocate", "TRUE") && !ok("preallocate", "yes"));
        assert!(!ok("remote.storage.enable", "true"));
        assert!(!ok("segment.bytes", "2147483648") && !ok("no.such.key", "1"));
        assert!(ok("max.message.bytes", "0") && !ok("max.message.bytes", "-1"));
        let lag = |min: &str, max: &str| {
            validate_together(&BTreeMap::from([
                ("min.compaction.lag.ms".to_string(), min.to_string()),
                ("max.compaction.lag.ms".to_string(), max.to_string()),
            ]))
        };
        assert!(lag("10", "10").is_ok() && lag("11", "10").is_err());
    }
}
