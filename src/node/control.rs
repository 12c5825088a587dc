//! The controller: cluster metadata as a replicated state machine on the
//! Raft group of shard 0 (group 0). Any node takes a metadata request,
//! proposes it as a command (a follower's proposal goes to the leader), and
//! every node applies the committed commands in log order with the same
//! planning code, so all reach the same metadata. The node that proposed a
//! command answers its client once it applied it here — after the changes
//! are logged and broadcast to every shard of this node, so a client that
//! creates a topic and then produces on another connection (maybe another
//! shard) finds it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use corestream_shards::{RaftIndex, ShardError, ShardId};
use serde::{Deserialize, Serialize};

use super::broker::{Broker, NodeMsg};
use crate::controller::log::MetaLog;
use crate::controller::plan::{
    plan_alter_scram, plan_alter_topic_configs, plan_create_acls, plan_create_partitions, plan_create_topics,
    plan_delete_acls, plan_delete_topics, plan_producer_id, ControlError, ControlLimits, NewTopic, ScramChange,
    TopicConfigOps, TopicCreated,
};
use crate::controller::{ClusterMeta, MetaChange};
use crate::security::acl::{AclBinding, AclFilter};

/// How long a proposer waits for its command to commit and apply.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Metadata changes proposed here and waiting to commit, at most: each
/// holds a request and its reply channel until it commits or times out,
/// so a client firing CreateTopics in a loop meets REQUEST_TIMED_OUT
/// (retriable) here instead of growing the node's memory.
pub const MAX_PENDING_CHANGES: usize = 1024;
/// How often a proposer looks again for a metadata leader, and for how
/// long (an election takes 1-2 s); a broker cut off from the majority
/// then tells its client to go elsewhere.
const ELECTION_POLL: Duration = Duration::from_millis(100);
const ELECTION_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    AllocateProducerId,
    AlterTopicConfigs {
        topics: Vec<TopicConfigOps>,
        validate_only: bool,
    },
    AlterScramCredentials {
        changes: Vec<ScramChange>,
    },
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
}

pub enum ControlReply {
    Created(Vec<Result<TopicCreated, ControlError>>),
    Deleted(Vec<Result<uuid::Uuid, ControlError>>),
    PartitionsAdded(Vec<Result<(), ControlError>>),
    ProducerId(Result<i64, ControlError>),
    ConfigsAltered(Vec<Result<(), ControlError>>),
    ScramAltered(Vec<Result<(), ControlError>>),
    AclsCreated(Vec<Result<(), ControlError>>),
    /// Per filter, the ACLs it deleted.
    AclsDeleted(Vec<Result<Vec<AclBinding>, ControlError>>),
}

/// What goes into the metadata Raft log: the request, with everything
/// that planning it needs and that must not differ between nodes.
#[derive(Serialize, Deserialize)]
struct MetaCommand {
    /// Finds the proposer's waiter; also seeds new topic ids.
    id: u128,
    request: ControlRequest,
    limits: ControlLimits,
}

impl ControlRequest {
    /// The reply for when the request could not run at all.
    pub fn failed(&self, e: ControlError) -> ControlReply {
        fn all<T>(n: usize, e: &ControlError) -> Vec<Result<T, ControlError>> {
            (0..n).map(|_| Err(e.clone())).collect()
        }
        match self {
            ControlRequest::CreateTopics { topics, .. } => ControlReply::Created(all(topics.len(), &e)),
            ControlRequest::DeleteTopics { names } => ControlReply::Deleted(all(names.len(), &e)),
            ControlRequest::CreatePartitions { topics, .. } => ControlReply::PartitionsAdded(all(topics.len(), &e)),
            ControlRequest::AllocateProducerId => ControlReply::ProducerId(Err(e)),
            ControlRequest::AlterTopicConfigs { topics, .. } => ControlReply::ConfigsAltered(all(topics.len(), &e)),
            ControlRequest::AlterScramCredentials { changes } => ControlReply::ScramAltered(all(changes.len(), &e)),
            ControlRequest::CreateAcls { acls } => ControlReply::AclsCreated(all(acls.len(), &e)),
            ControlRequest::DeleteAcls { filters } => ControlReply::AclsDeleted(all(filters.len(), &e)),
        }
    }

    fn validate_only(&self) -> bool {
        match self {
            ControlRequest::CreateTopics { validate_only, .. }
            | ControlRequest::CreatePartitions { validate_only, .. }
            | ControlRequest::AlterTopicConfigs { validate_only, .. } => *validate_only,
            ControlRequest::DeleteTopics { .. }
            | ControlRequest::AllocateProducerId
            | ControlRequest::AlterScramCredentials { .. }
            | ControlRequest::CreateAcls { .. }
            | ControlRequest::DeleteAcls { .. } => false,
        }
    }

    /// Plans the request against `meta`: the reply, and the changes that
    /// carry it out.
    fn plan(&self, meta: &ClusterMeta, seed: u128, limits: &ControlLimits) -> (ControlReply, Vec<MetaChange>) {
        match self {
            ControlRequest::CreateTopics { topics, .. } => {
                let (r, c) = plan_create_topics(meta, seed, topics, limits);
                (ControlReply::Created(r), c)
            }
            ControlRequest::DeleteTopics { names } => {
                let (r, c) = plan_delete_topics(meta, names);
                (ControlReply::Deleted(r), c)
            }
            ControlRequest::CreatePartitions { topics, .. } => {
                let (r, c) = plan_create_partitions(meta, topics, limits);
                (ControlReply::PartitionsAdded(r), c)
            }
            ControlRequest::AllocateProducerId => {
                let (id, c) = plan_producer_id(meta);
                (ControlReply::ProducerId(Ok(id)), c)
            }
            ControlRequest::AlterTopicConfigs { topics, .. } => {
                let (r, c) = plan_alter_topic_configs(meta, topics);
                (ControlReply::ConfigsAltered(r), c)
            }
            ControlRequest::AlterScramCredentials { changes } => {
                let (r, c) = plan_alter_scram(meta, changes);
                (ControlReply::ScramAltered(r), c)
            }
            ControlRequest::CreateAcls { acls } => {
                let (r, c) = plan_create_acls(meta, acls);
                (ControlReply::AclsCreated(r), c)
            }
            ControlRequest::DeleteAcls { filters } => {
                let (r, c) = plan_delete_acls(meta, filters);
                (ControlReply::AclsDeleted(r), c)
            }
        }
    }
}

/// Shard 0's controller state.
pub struct Control {
    log: RefCell<MetaLog>,
    limits: ControlLimits,
    /// Last metadata Raft index applied (and logged) on this node.
    applied: Cell<u64>,
    /// Set when a change could not be logged: later commands are not
    /// applied either (they would apply out of order); a restart replays
    /// them from the Raft log.
    stalled: Cell<bool>,
    /// Commands proposed here, by id, with who waits for the reply.
    pending: RefCell<HashMap<u128, flume::Sender<ControlReply>>>,
    /// Changes refused because `MAX_PENDING_CHANGES` were waiting.
    pub refused: Cell<u64>,
}

impl Control {
    /// The metadata log's valid records (what a snapshot carries).
    pub fn image(&self) -> Result<Vec<u8>, String> {
        self.log.borrow().image().map_err(|e| e.to_string())
    }

    pub fn new(log: MetaLog, limits: ControlLimits, applied: u64) -> Self {
        Self {
            log: RefCell::new(log),
            limits,
            applied: Cell::new(applied),
            stalled: Cell::new(false),
            pending: RefCell::new(HashMap::new()),
            refused: Cell::new(0),
        }
    }
}

/// Runs a metadata request: proposes it and waits until it applied here.
pub async fn execute(broker: &Rc<Broker>, request: ControlRequest) -> ControlReply {
    let control = broker.control.as_ref().expect("controller runs on shard 0");
    if request.validate_only() {
        return request.plan(&broker.meta.borrow(), 0, &control.limits).0;
    }
    let id = uuid::Uuid::new_v4().as_u128();
    let command = MetaCommand {
        id,
        request,
        limits: control.limits.clone(),
    };
    let bytes = serde_json::to_vec(&command).expect("a metadata command serializes");
    let request = command.request;
    if control.pending.borrow().len() >= MAX_PENDING_CHANGES {
        control.refused.set(control.refused.get() + 1);
        return request.failed(ControlError::TimedOut(format!(
            "{MAX_PENDING_CHANGES} metadata changes are already waiting to commit; retry"
        )));
    }
    let (tx, rx) = flume::bounded(1);
    control.pending.borrow_mut().insert(id, tx);
    let started = std::time::Instant::now();
    let deadline = started + COMMIT_TIMEOUT;
    // While the metadata group elects a leader there is no one to take the
    // command: wait for one rather than fail a client that just started.
    loop {
        match broker.shard.propose_meta(bytes.clone()).await {
            Ok(()) => break,
            Err(ShardError::NotLeader) if started.elapsed() < ELECTION_WAIT => {
                glommio::timer::sleep(ELECTION_POLL).await;
            }
            Err(e) => {
                control.pending.borrow_mut().remove(&id);
                return request.failed(ControlError::NotController(format!(
                    "no controller is reachable to take the request ({e}); retry"
                )));
            }
        }
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let reply = futures_lite::future::or(async { rx.recv_async().await.ok() }, async {
        glommio::timer::sleep(left).await;
        None
    })
    .await;
    control.pending.borrow_mut().remove(&id);
    reply.unwrap_or_else(|| {
        request.failed(ControlError::TimedOut(format!(
            "the metadata change did not commit within {} s (no quorum?); it may still take effect",
            COMMIT_TIMEOUT.as_secs()
        )))
    })
}

/// Applies a committed metadata command (shard 0, in log order).
pub async fn apply_committed(broker: &Rc<Broker>, index: RaftIndex, command: Bytes) {
    let control = broker.control.as_ref().expect("metadata commits reach shard 0");
    if index.0 <= control.applied.get() || control.stalled.get() {
        broker.shard.set_meta_durable(control.applied.get());
        return; // applied before this start (or stalled)
    }
    let command: MetaCommand = match serde_json::from_slice(&command) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(index = index.0, error = %e, "undecodable metadata command skipped");
            control.applied.set(index.0);
            return;
        }
    };
    let (mut reply, changes) = command.request.plan(&broker.meta.borrow(), command.id, &command.limits);
    if let Err(e) = log_and_apply(broker, control, index.0, &changes).await {
        reply = command.request.failed(ControlError::Storage(e.to_string()));
    }
    if !control.stalled.get() {
        control.applied.set(index.0);
        broker.shard.set_meta_durable(index.0);
    }
    if let Some(waiter) = control.pending.borrow_mut().remove(&command.id) {
        let _ = waiter.try_send(reply);
    }
}

/// Takes the metadata a snapshot of the metadata group carried (this
/// node's log of it ends before the leader's WAL begins: it lost its disk,
/// or was away while its peers reclaimed): the changes of every metadata
/// entry up to `index` that this node has not applied, logged and applied
/// as if they had just committed.
pub async fn apply_image(broker: &Rc<Broker>, index: RaftIndex, image: Vec<u8>) {
    // Only group 0 carries metadata; other shards' snapshots carry none.
    let Some(control) = broker.control.as_ref() else {
        return;
    };
    let mut applied = 0;
    for (at, changes) in crate::controller::log::applied_records(&image) {
        if at <= control.applied.get() || at > index.0 || control.stalled.get() {
            continue;
        }
        if log_and_apply(broker, control, at, &changes).await.is_ok() {
            control.applied.set(at);
            applied += 1;
        }
    }
    if !control.stalled.get() {
        control.applied.set(control.applied.get().max(index.0));
        broker.shard.set_meta_durable(index.0);
    }
    tracing::info!(
        index = index.0,
        entries = applied,
        "metadata taken from the leader's snapshot"
    );
}

/// Logs the changes of metadata entry `index` (write + fsync) and applies
/// them on every shard of this node. A change the log cannot take stops
/// metadata updates until a restart (`stalled`).
async fn log_and_apply(
    broker: &Rc<Broker>,
    control: &Control,
    index: u64,
    changes: &[MetaChange],
) -> Result<(), crate::controller::log::MetaLogError> {
    if changes.is_empty() {
        return Ok(());
    }
    // Blocking write+fsync on the executor: metadata changes are rare and
    // small; the data path never takes this route.
    if let Err(e) = control.log.borrow_mut().append(index, changes) {
        tracing::error!(error = %e, "metadata change not persisted; metadata updates stop until restart");
        control.stalled.set(true);
        return Err(e);
    }
    let load_before = broker.meta.borrow().shard_load().to_vec();
    apply_changes(broker, changes);
    broadcast(broker, changes).await;
    warn_on_partition_limit(broker, &load_before, control.limits.max_partitions_per_shard);
    Ok(())
}

async fn broadcast(broker: &Rc<Broker>, changes: &[MetaChange]) {
    let shards = broker.mesh.shard_count();
    let (ack_tx, ack_rx) = flume::bounded(shards);
    let mut expected = 0;
    for s in 0..shards {
        let to = ShardId(s as u16);
        if to == broker.me() {
            continue;
        }
        let msg = NodeMsg::Meta {
            changes: changes.to_vec(),
            ack: ack_tx.clone(),
        };
        if broker.mesh.send(to, msg).await.is_ok() {
            expected += 1;
        }
    }
    for _ in 0..expected {
        if ack_rx.recv_async().await.is_err() {
            break;
        }
    }
}

/// Applies logged changes to this shard's metadata copy and its partitions.
pub fn apply_changes(broker: &Broker, changes: &[MetaChange]) {
    let me = broker.me();
    for change in changes {
        let mut meta = broker.meta.borrow_mut();
        let gone = match change {
            MetaChange::TopicDeleted { name } => meta
                .topic(name)
                .map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.shard_id() == me)
                        .map(|p| p.partition_id())
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if let Err(e) = meta.apply(change) {
            panic!("metadata change does not apply on shard {me}: {e}");
        }
        drop(meta);
        match change {
            MetaChange::TopicCreated { partitions, name, .. } | MetaChange::PartitionsAdded { partitions, name } => {
                let mine: Vec<_> = partitions
                    .iter()
                    .filter(|p| p.shard_id() == me)
                    .map(|p| p.partition_id())
                    .collect();
                broker.shard.create_partitions(&mine);
                apply_retention(broker, name);
            }
            MetaChange::TopicDeleted { .. } => broker.shard.delete_partitions(&gone),
            MetaChange::TopicConfigsAltered { name, .. } => apply_retention(broker, name),
            MetaChange::ProducerIdsReserved { .. }
            | MetaChange::ScramCredentialSet { .. }
            | MetaChange::ScramCredentialDeleted { .. }
            | MetaChange::AclCreated { .. }
            | MetaChange::AclDeleted { .. } => {}
        }
    }
}

/// Tells this shard the `retention.bytes`, `retention.ms` and compaction
/// of its partitions of `topic`.
pub fn apply_retention(broker: &Broker, topic: &str) {
    let meta = broker.meta.borrow();
    let Some(t) = meta.topic(topic) else { return };
    let bytes = crate::controller::topic_config::retention_bytes(&t.configs);
    let ms = crate::controller::topic_config::retention_ms(&t.configs);
    let compaction = crate::controller::topic_config::compaction(&t.configs);
    for p in t.partitions.iter().filter(|p| p.shard_id() == broker.me()) {
        broker.shard.set_retention(p.partition_id(), bytes, ms);
        broker.shard.set_compaction(p.partition_id(), compaction);
    }
}

fn warn_on_partition_limit(broker: &Broker, before: &[usize], limit: usize) {
    let threshold = limit * 8 / 10;
    for (shard, (&old, &new)) in before.iter().zip(broker.meta.borrow().shard_load()).enumerate() {
        if old < threshold && new >= threshold {
            tracing::warn!(
                shard,
                partitions = new,
                limit,
                "shard holds over 80% of limits.max_partitions_per_shard; new partitions will be refused at the limit"
            );
        }
    }
}
