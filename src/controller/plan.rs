//! Validation and placement for metadata requests. Pure: it turns requests
//! into `MetaChange`s against a `ClusterMeta`; persisting and broadcasting
//! them is the node's job (`node/control.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{topic_config, ClusterMeta, MetaChange, PartitionMeta};
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::scram::{ScramCredential, ScramMechanism};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    PolicyViolation(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("metadata storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    NotController(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// Refused before planning: the caller may not touch the topic.
    #[error("{0}")]
    TopicAuthorizationFailed(String),
}

/// The limits the controller enforces, from the broker config of the node
/// that proposed the request (so every node decides the same).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlLimits {
    /// Every broker of the cluster, sorted: each holds a replica of every
    /// partition (the replication factor is the cluster size).
    pub brokers: Vec<i32>,
    pub max_partitions_per_shard: usize,
    pub socket_request_max_bytes: u64,
    pub default_partitions: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub num_partitions: i32,
    /// -1: the broker default (1 on a single node).
    pub replication_factor: i16,
    /// Manual assignment: broker ids per partition (may be empty).
    pub assignments: Vec<Vec<i32>>,
    pub configs: Vec<(String, Option<String>)>,
}

/// What a created topic looks like, for the CreateTopics response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicCreated {
    pub id: uuid::Uuid,
    pub partitions: u32,
}

pub fn validate_topic_name(name: &str) -> Result<(), ControlError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." || !ok_chars {
        // Quote a long name in part: the message goes back to the client.
        let shown: String = name.chars().take(64).collect();
        let more = if shown.len() < name.len() { "..." } else { "" };
        return Err(ControlError::InvalidTopic(format!(
            "topic name '{shown}{more}' ({} bytes) is invalid: use 1-249 characters from [a-zA-Z0-9._-], not '.' or '..'",
            name.len()
        )));
    }
    Ok(())
}

/// Places `n` new partitions on the least-loaded shards and checks the
/// per-shard limit.
fn place(meta: &ClusterMeta, n: u32, limits: &ControlLimits) -> Result<Vec<PartitionMeta>, ControlError> {
    let mut load = meta.shard_load().to_vec();
    let mut out = Vec::with_capacity(n as usize);
    for id in meta.peek_partition_ids(n) {
        let (shard, _) = load
            .iter()
            .enumerate()
            .min_by_key(|&(i, l)| (*l, i))
            .expect("at least one shard");
        if load[shard] >= limits.max_partitions_per_shard {
            let have: usize = meta.shard_load().iter().sum();
            return Err(ControlError::PolicyViolation(format!(
                "adding {n} partitions to the {have} this node holds would exceed limits.max_partitions_per_shard = {} on all {} shards; raise it in the config file or add shards",
                limits.max_partitions_per_shard,
                load.len()
            )));
        }
        load[shard] += 1;
        out.push(PartitionMeta {
            id,
            shard: shard as u16,
        });
    }
    Ok(out)
}

fn plan_one(
    meta: &ClusterMeta,
    t: &NewTopic,
    id: uuid::Uuid,
    limits: &ControlLimits,
) -> Result<MetaChange, ControlError> {
    validate_topic_name(&t.name)?;
    if meta.topic(&t.name).is_some() {
        return Err(ControlError::TopicExists(t.name.clone()));
    }
    let count = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(ControlError::InvalidReplicaAssignment(
                "give either an assignment or num_partitions/replication_factor, not both".into(),
            ));
        }
        let covers_all = |a: &Vec<i32>| {
            let mut a = a.clone();
            a.sort_unstable();
            a == limits.brokers
        };
        if let Some(bad) = t.assignments.iter().find(|a| !covers_all(a)) {
            return Err(ControlError::InvalidReplicaAssignment(format!(
                "assignment {bad:?} must name every broker of the cluster once ({:?}): each holds a replica of every partition",
                limits.brokers
            )));
        }
        t.assignments.len() as i64
    } else {
        match t.num_partitions {
            -1 => limits.default_partitions as i64,
            n if n >= 1 => n as i64,
            n => {
                return Err(ControlError::InvalidPartitions(format!(
                    "num_partitions {n}: must be at least 1"
                )))
            }
        }
    };
    let brokers = limits.brokers.len() as i16;
    match t.replication_factor {
        -1 => {}
        rf if rf == brokers => {}
        rf if rf > brokers => {
            return Err(ControlError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the {brokers} broker(s) in this cluster"
            )))
        }
        rf if rf >= 1 => {
            return Err(ControlError::InvalidReplicationFactor(format!(
                "replication factor {rf}: every partition has a replica on each of the {brokers} broker(s); use {brokers} or -1"
            )))
        }
        rf => {
            return Err(ControlError::InvalidReplicationFactor(format!(
                "replication factor {rf}: must be at least 1"
            )))
        }
    }
    let mut configs = BTreeMap::new();
    for (k, v) in &t.configs {
        let Some(v) = v else { continue };
        topic_config::validate(k, v).map_err(ControlError::InvalidConfig)?;
        configs.insert(k.clone(), v.clone());
    }
    topic_config::validate_together(&configs).map_err(ControlError::InvalidConfig)?;
    let partitions = place(meta, u32::try_from(count).unwrap_or(u32::MAX), limits)?;
    Ok(MetaChange::TopicCreated {
        name: t.name.clone(),
        id,
        partitions,
        configs,
    })
}

/// Plans topic creation. Each topic succeeds or fails on its own; the
/// returned changes create the ones that succeeded. Topic ids derive from
/// `seed`, so every node planning the same command agrees on them.
pub fn plan_create_topics(
    meta: &ClusterMeta,
    seed: u128,
    topics: &[NewTopic],
    limits: &ControlLimits,
) -> (Vec<Result<TopicCreated, ControlError>>, Vec<MetaChange>) {
    let mut scratch = meta.clone();
    let mut results = Vec::with_capacity(topics.len());
    let mut changes = Vec::new();
    for (i, t) in topics.iter().enumerate() {
        let id = uuid::Builder::from_random_bytes(seed.wrapping_add(i as u128).to_le_bytes()).into_uuid();
        let r = plan_one(&scratch, t, id, limits).map(|change| {
            scratch.apply(&change).expect("planned change applies");
            let MetaChange::TopicCreated { id, partitions, .. } = &change else {
                unreachable!()
            };
            let created = TopicCreated {
                id: *id,
                partitions: partitions.len() as u32,
            };
            changes.push(change);
            created
        });
        results.push(r);
    }
    (results, changes)
}

pub fn plan_delete_topics(
    meta: &ClusterMeta,
    names: &[String],
) -> (Vec<Result<uuid::Uuid, ControlError>>, Vec<MetaChange>) {
    let mut seen = std::collections::HashSet::new();
    let mut changes = Vec::new();
    let results = names
        .iter()
        .map(|name| match meta.topic(name) {
            Some(t) if seen.insert(name.clone()) => {
                changes.push(MetaChange::TopicDeleted { name: name.clone() });
                Ok(t.id)
            }
            _ => Err(ControlError::UnknownTopic(name.clone())),
        })
        .collect();
    (results, changes)
}

pub fn plan_create_partitions(
    meta: &ClusterMeta,
    requests: &[(String, i32)],
    limits: &ControlLimits,
) -> (Vec<Result<(), ControlError>>, Vec<MetaChange>) {
    let mut scratch = meta.clone();
    let mut changes = Vec::new();
    let results = requests
        .iter()
        .map(|(name, count)| {
            let t = scratch
                .topic(name)
                .ok_or_else(|| ControlError::UnknownTopic(name.clone()))?;
            let have = t.partitions.len() as i32;
            if *count <= have {
                return Err(ControlError::InvalidPartitions(format!(
                    "topic '{name}' has {have} partitions; the new count ({count}) must be larger"
                )));
            }
            let partitions = place(&scratch, (*count - have) as u32, limits)?;
            let change = MetaChange::PartitionsAdded {
                name: name.clone(),
                partitions,
            };
            scratch.apply(&change).expect("planned change applies");
            changes.push(change);
            Ok(())
        })
        .collect();
    (results, changes)
}

/// One IncrementalAlterConfigs operation (Kafka's OpType codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl ConfigOp {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => Self::Set,
            1 => Self::Delete,
            2 => Self::Append,
            3 => Self::Subtract,
            _ => return None,
        })
    }
}

/// One topic's config operations: (key, operation, value).
pub type TopicConfigOps = (String, Vec<(String, ConfigOp, Option<String>)>);

/// Plans config changes of topics: each topic all or nothing.
pub fn plan_alter_topic_configs(
    meta: &ClusterMeta,
    topics: &[TopicConfigOps],
) -> (Vec<Result<(), ControlError>>, Vec<MetaChange>) {
    let mut changes = Vec::new();
    let results = topics
        .iter()
        .map(|(name, ops)| {
            let Some(topic) = meta.topic(name) else {
                return Err(ControlError::UnknownTopic(name.clone()));
            };
            let (mut set, mut delete) = (BTreeMap::new(), Vec::new());
            for (key, op, value) in ops {
                match (op, value) {
                    (ConfigOp::Set, Some(v)) => {
                        topic_config::validate(key, v).map_err(ControlError::InvalidConfig)?;
                        set.insert(key.clone(), v.clone());
                    }
                    (ConfigOp::Set, None) => {
                        return Err(ControlError::InvalidConfig(format!("{key}: SET needs a value")))
                    }
                    (ConfigOp::Delete, _) => {
                        if topic_config::default_value(key, 0).is_none() {
                            return Err(ControlError::InvalidConfig(format!("unknown topic config '{key}'")));
                        }
                        delete.push(key.clone());
                    }
                    (ConfigOp::Append | ConfigOp::Subtract, _) => {
                        return Err(ControlError::InvalidConfig(format!(
                            "{key}: APPEND and SUBTRACT are not supported; SET the whole value"
                        )))
                    }
                }
            }
            let mut after = topic.configs.clone();
            after.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            for k in &delete {
                after.remove(k);
            }
            topic_config::validate_together(&after).map_err(ControlError::InvalidConfig)?;
            changes.push(MetaChange::TopicConfigsAltered {
                name: name.clone(),
                set,
                delete,
            });
            Ok(())
        })
        .collect();
    (results, changes)
}

/// Hands out the next producer id; the change records it, so no id is
/// ever handed out twice, across restarts and leaders.
pub fn plan_producer_id(meta: &ClusterMeta) -> (i64, Vec<MetaChange>) {
    let id = meta.producer_ids_reserved;
    (id, vec![MetaChange::ProducerIdsReserved { end: id + 1 }])
}

/// One well-formed change of a user's SCRAM credentials
/// (AlterUserScramCredentials checked the rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ScramChange {
    Set {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

/// Plans credential changes; deleting a credential the user does not have
/// is RESOURCE_NOT_FOUND, as Kafka answers.
pub fn plan_alter_scram(
    meta: &ClusterMeta,
    alterations: &[ScramChange],
) -> (Vec<Result<(), ControlError>>, Vec<MetaChange>) {
    let mut changes = Vec::new();
    let results = alterations
        .iter()
        .map(|a| match a {
            ScramChange::Set {
                user,
                mechanism,
                credential,
            } => {
                changes.push(MetaChange::ScramCredentialSet {
                    user: user.clone(),
                    mechanism: *mechanism,
                    credential: credential.clone(),
                });
                Ok(())
            }
            ScramChange::Delete { user, mechanism } => {
                if meta.users.get(user).is_some_and(|c| c.contains_key(mechanism)) {
                    changes.push(MetaChange::ScramCredentialDeleted {
                        user: user.clone(),
                        mechanism: *mechanism,
                    });
                    Ok(())
                } else {
                    Err(ControlError::ResourceNotFound(
                        "Attempt to delete a user credential that does not exist".into(),
                    ))
                }
            }
        })
        .collect();
    (results, changes)
}

/// Plans new ACLs: each is checked as Kafka does; one that exists already
/// succeeds without a change, and so does one given twice.
pub fn plan_create_acls(meta: &ClusterMeta, acls: &[AclBinding]) -> (Vec<Result<(), ControlError>>, Vec<MetaChange>) {
    let mut changes = Vec::new();
    let mut added = std::collections::BTreeSet::new();
    let results = acls
        .iter()
        .map(|acl| {
            acl.validate().map_err(ControlError::InvalidRequest)?;
            if !meta.acls.contains(acl) && added.insert(acl.clone()) {
                changes.push(MetaChange::AclCreated { acl: acl.clone() });
            }
            Ok(())
        })
        .collect();
    (results, changes)
}

/// Plans the deletion of every ACL each filter matches; an ACL two filters
/// match is deleted once and reported under both, as Kafka does.
pub fn plan_delete_acls(
    meta: &ClusterMeta,
    filters: &[AclFilter],
) -> (Vec<Result<Vec<AclBinding>, ControlError>>, Vec<MetaChange>) {
    let mut gone = std::collections::BTreeSet::new();
    let results = filters
        .iter()
        .map(|f| {
            let mut matched: Vec<AclBinding> = meta.acls.iter().filter(|a| f.matches(a)).collect();
            matched.sort();
            gone.extend(matched.iter().cloned());
            Ok(matched)
        })
        .collect();
    let changes = gone.into_iter().map(|acl| MetaChange::AclDeleted { acl }).collect();
    (results, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> ControlLimits {
        ControlLimits {
            brokers: vec![0],
            max_partitions_per_shard: max,
            socket_request_max_bytes: 100 << 20,
            default_partitions: 1,
        }
    }

    fn topic(name: &str, n: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: n,
            replication_factor: -1,
            assignments: vec![],
            configs: vec![],
        }
    }

    #[test]
    fn spreads_partitions_and_enforces_the_limit() {
        let mut meta = ClusterMeta::new(2);
        let (res, changes) = plan_create_topics(&meta, 7, &[topic("a", 3), topic("b", 1)], &limits(2));
        assert!(res.iter().all(|r| r.is_ok()));
        for c in &changes {
            meta.apply(c).unwrap();
        }
        assert_eq!(meta.shard_load(), &[2, 2]);
        let (res, changes) = plan_create_topics(&meta, 7, &[topic("c", 1)], &limits(2));
        assert!(matches!(&res[0], Err(ControlError::PolicyViolation(m)) if m.contains("max_partitions_per_shard")));
        assert!(changes.is_empty());
    }

    #[test]
    fn rejects_bad_names_duplicates_configs_and_rf() {
        let meta = ClusterMeta::new(1);
        let mut bad_cfg = topic("ok", 1);
        bad_cfg.configs = vec![("max.message.bytes".into(), Some("-1".into()))];
        let mut rf3 = topic("rf", 1);
        rf3.replication_factor = 3;
        let (res, changes) = plan_create_topics(
            &meta,
            7,
            &[
                topic("bad name", 1),
                topic("d", 1),
                topic("d", 1),
                bad_cfg,
                rf3,
                topic("z", 0),
            ],
            &limits(100),
        );
        assert!(matches!(res[0], Err(ControlError::InvalidTopic(_))));
        assert!(res[1].is_ok());
        assert_eq!(res[2], Err(ControlError::TopicExists("d".into())));
        assert!(matches!(res[3], Err(ControlError::InvalidConfig(_))));
        assert!(matches!(res[4], Err(ControlError::InvalidReplicationFactor(_))));
        assert!(matches!(res[5], Err(ControlError::InvalidPartitions(_))));
        assert_eq!(changes.len(), 1);
    }

    #[test]
    fn config_alterations_are_validated_per_topic() {
        let mut meta = ClusterMeta::new(1);
        let (_, c) = plan_create_topics(&meta, 7, &[topic("t", 1)], &limits(100));
        meta.apply(&c[0]).unwrap();
        let set = |k: &str, v: &str| (k.to_string(), ConfigOp::Set, Some(v.to_string()));
        let (res, c) = plan_alter_topic_configs(
            &meta,
            &[
                (
                    "t".into(),
                    vec![set("retention.ms", "1000"), set("max.message.bytes", "4096")],
                ),
                ("t".into(), vec![set("retention.ms", "x")]),
                ("nope".into(), vec![]),
                (
                    "t".into(),
                    vec![("cleanup.policy".into(), ConfigOp::Append, Some("compact".into()))],
                ),
            ],
        );
        assert!(res[0].is_ok());
        assert!(matches!(res[1], Err(ControlError::InvalidConfig(_))));
        assert!(matches!(res[2], Err(ControlError::UnknownTopic(_))));
        assert!(matches!(res[3], Err(ControlError::InvalidConfig(_))));
        assert_eq!(c.len(), 1);
        meta.apply(&c[0]).unwrap();
        assert_eq!(meta.topic("t").unwrap().configs["max.message.bytes"], "4096");
        let (_, c) = plan_alter_topic_configs(
            &meta,
            &[("t".into(), vec![("max.message.bytes".into(), ConfigOp::Delete, None)])],
        );
        meta.apply(&c[0]).unwrap();
        assert!(!meta.topic("t").unwrap().configs.contains_key("max.message.bytes"));
    }

    #[test]
    fn producer_ids_are_never_handed_out_twice() {
        let mut meta = ClusterMeta::new(1);
        let (id, c) = plan_producer_id(&meta);
        assert_eq!(id, 0);
        meta.apply(&c[0]).unwrap();
        let (id, _) = plan_producer_id(&meta);
        assert_eq!(id, 1);
    }

    #[test]
    fn partitions_only_grow_and_ids_are_never_reused() {
        let mut meta = ClusterMeta::new(2);
        let (_, c) = plan_create_topics(&meta, 7, &[topic("t", 2)], &limits(100));
        meta.apply(&c[0]).unwrap();
        let (res, c) = plan_create_partitions(
            &meta,
            &[("t".into(), 2), ("t".into(), 4), ("nope".into(), 3)],
            &limits(100),
        );
        assert!(matches!(res[0], Err(ControlError::InvalidPartitions(_))));
        assert!(res[1].is_ok());
        assert!(matches!(res[2], Err(ControlError::UnknownTopic(_))));
        meta.apply(&c[0]).unwrap();
        let (_, d) = plan_delete_topics(&meta, &["t".into()]);
        meta.apply(&d[0]).unwrap();
        let (_, c) = plan_create_topics(&meta, 7, &[topic("t", 1)], &limits(100));
        let MetaChange::TopicCreated { partitions, .. } = &c[0] else {
            panic!()
        };
        assert_eq!(partitions[0].id, 5);
    }

    #[test]
    fn scram_credentials_are_set_replaced_and_deleted_only_when_present() {
        let mut meta = ClusterMeta::new(1);
        let m = ScramMechanism::Sha512;
        let set = |pw: &str| ScramChange::Set {
            user: "alice".into(),
            mechanism: m,
            credential: m.new_credential(pw, 4096).unwrap(),
        };
        let delete = ScramChange::Delete {
            user: "alice".into(),
            mechanism: m,
        };
        let (r, c) = plan_alter_scram(&meta, std::slice::from_ref(&delete));
        assert!(matches!(r[0], Err(ControlError::ResourceNotFound(_))) && c.is_empty());
        for pw in ["one", "two"] {
            let (r, c) = plan_alter_scram(&meta, &[set(pw)]);
            assert!(r[0].is_ok());
            c.iter().for_each(|c| meta.apply(c).unwrap());
        }
        let cred = meta.users["alice"][&m].clone();
        assert!(cred.matches_password(m, b"two") && !cred.matches_password(m, b"one"));
        let (r, c) = plan_alter_scram(&meta, &[delete]);
        assert!(r[0].is_ok());
        c.iter().for_each(|c| meta.apply(c).unwrap());
        assert!(meta.users.is_empty(), "a user without credentials is gone");
    }
}
