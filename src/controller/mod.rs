//! Cluster metadata and its single writer.
//!
//! - `ClusterMeta` (this file): topics, their partitions and placement
//!   (partition -> shard), topic configs. Every shard holds its own
//!   read-only copy, so routing never crosses cores.
//! - `MetaChange`: the only way metadata changes. The controller (on shard
//!   0) validates a request, appends the changes to the metadata log
//!   (`log.rs`), applies them, and broadcasts them to every shard, which
//!   applies the same changes to its copy.
//! - `plan.rs`: request validation and placement (least-loaded shard).
//! - `topic_config.rs`: known topic configs, defaults and checks.
//! - Users' SCRAM credentials (salted keys, never passwords): every shard
//!   authenticates its own connections from its own copy.
//! - ACLs: every shard authorizes its own connections' requests from its
//!   own copy (`security::acl::Acls`, indexed for checks).
//!
//! On one node the metadata log is a local file; the cluster issue turns it
//! into the metadata Raft group on shard 0, with the same changes as entries.

pub mod log;
pub mod plan;
pub mod topic_config;

use std::collections::BTreeMap;

use corestream_shards::{PartitionId, ShardId};
use serde::{Deserialize, Serialize};

use crate::security::acl::{AclBinding, Acls};
use crate::security::scram::{ScramCredential, ScramMechanism};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub id: u32,
    pub shard: u16,
}

impl PartitionMeta {
    pub fn partition_id(&self) -> PartitionId {
        PartitionId(self.id)
    }

    pub fn shard_id(&self) -> ShardId {
        ShardId(self.shard)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: uuid::Uuid,
    /// Index in this vector is the Kafka partition index.
    pub partitions: Vec<PartitionMeta>,
    /// Overrides only; defaults come from `topic_config`.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaChange {
    TopicCreated {
        name: String,
        id: uuid::Uuid,
        partitions: Vec<PartitionMeta>,
        configs: BTreeMap<String, String>,
    },
    TopicDeleted {
        name: String,
    },
    PartitionsAdded {
        name: String,
        partitions: Vec<PartitionMeta>,
    },
    /// Producer ids below `end` are handed out (or skipped): ids are never
    /// reused, across restarts too.
    ProducerIdsReserved {
        end: i64,
    },
    /// Topic config overrides set or removed (back to the default).
    TopicConfigsAltered {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// A user's SCRAM credential for one mechanism, set or replaced.
    ScramCredentialSet {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    ScramCredentialDeleted {
        user: String,
        mechanism: ScramMechanism,
    },
    AclCreated {
        acl: AclBinding,
    },
    AclDeleted {
        acl: AclBinding,
    },
}

#[derive(Debug, Clone)]
pub struct ClusterMeta {
    pub topics: BTreeMap<String, TopicMeta>,
    next_partition_id: u32,
    /// Partitions per shard.
    shard_load: Vec<usize>,
    pub producer_ids_reserved: i64,
    /// SCRAM credentials by user and mechanism.
    pub users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    pub acls: Acls,
}

impl crate::security::Credentials for ClusterMeta {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.users.get(user)?.get(&mechanism).cloned()
    }
}

impl ClusterMeta {
    pub fn new(shards: usize) -> Self {
        Self {
            topics: BTreeMap::new(),
            next_partition_id: 1,
            shard_load: vec![0; shards],
            producer_ids_reserved: 0,
            users: BTreeMap::new(),
            acls: Acls::default(),
        }
    }

    pub fn shard_load(&self) -> &[usize] {
        &self.shard_load
    }

    /// The next `n` partition ids; ids are never reused.
    pub fn peek_partition_ids(&self, n: u32) -> std::ops::Range<u32> {
        self.next_partition_id..self.next_partition_id + n
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// Partitions a shard owns (start-up and tests).
    pub fn partitions_of(&self, shard: ShardId) -> Vec<PartitionId> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.shard_id() == shard)
            .map(|p| p.partition_id())
            .collect()
    }

    /// Applies one change. Changes were validated before they were logged;
    /// one that does not fit is a bug or a corrupt log.
    pub fn apply(&mut self, change: &MetaChange) -> Result<(), String> {
        match change {
            MetaChange::TopicCreated {
                name,
                id,
                partitions,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(format!("topic {name} created twice"));
                }
                self.take_partitions(partitions)?;
                self.topics.insert(
                    name.clone(),
                    TopicMeta {
                        id: *id,
                        partitions: partitions.clone(),
                        configs: configs.clone(),
                    },
                );
            }
            MetaChange::TopicDeleted { name } => {
                let t = self
                    .topics
                    .remove(name)
                    .ok_or_else(|| format!("deleting unknown topic {name}"))?;
                for p in &t.partitions {
                    self.shard_load[p.shard as usize] -= 1;
                }
            }
            MetaChange::PartitionsAdded { name, partitions } => {
                if !self.topics.contains_key(name) {
                    return Err(format!("adding partitions to unknown topic {name}"));
                }
                self.take_partitions(partitions)?;
                self.topics
                    .get_mut(name)
                    .expect("checked above")
                    .partitions
                    .extend_from_slice(partitions);
            }
            MetaChange::TopicConfigsAltered { name, set, delete } => {
                let t = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("altering configs of unknown topic {name}"))?;
                for k in delete {
                    t.configs.remove(k);
                }
                t.configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            MetaChange::ProducerIdsReserved { end } => {
                if *end < self.producer_ids_reserved {
                    return Err(format!("producer id reservation moves back to {end}"));
                }
                self.producer_ids_reserved = *end;
            }
            MetaChange::ScramCredentialSet {
                user,
                mechanism,
                credential,
            } => {
                self.users
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            MetaChange::ScramCredentialDeleted { user, mechanism } => {
                let creds = self
                    .users
                    .get_mut(user)
                    .ok_or_else(|| format!("deleting a credential of unknown user {user}"))?;
                if creds.remove(mechanism).is_none() {
                    return Err(format!("deleting {mechanism:?} credential user {user} does not have"));
                }
                if creds.is_empty() {
                    self.users.remove(user);
                }
            }
            MetaChange::AclCreated { acl } => {
                if !self.acls.insert(acl.clone()) {
                    return Err(format!("ACL {acl:?} created twice"));
                }
            }
            MetaChange::AclDeleted { acl } => {
                if !self.acls.remove(acl) {
                    return Err(format!("deleting ACL {acl:?}, which does not exist"));
                }
            }
        }
        Ok(())
    }

    fn take_partitions(&mut self, parts: &[PartitionMeta]) -> Result<(), String> {
        for p in parts {
            if p.shard as usize >= self.shard_load.len() {
                return Err(format!(
                    "partition {} is placed on shard {}, but this node runs {} shards; start it with the shard count it was created with",
                    p.id,
                    p.shard,
                    self.shard_load.len()
                ));
            }
            if p.id < self.next_partition_id {
                return Err(format!("partition id {} reused", p.id));
            }
            self.next_partition_id = p.id + 1;
            self.shard_load[p.shard as usize] += 1;
        }
        Ok(())
    }
}
