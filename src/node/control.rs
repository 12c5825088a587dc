//! The controller's execution on shard 0: one metadata request at a time,
//! planned against the current metadata, logged durably, applied here and
//! broadcast to every other shard before the client hears back — so a
//! client that creates a topic and then produces on another connection
//! (maybe another shard) finds it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use corestream_shards::ShardId;
use glommio::sync::Semaphore;

use super::broker::{Broker, NodeMsg};
use crate::controller::log::MetaLog;
use crate::controller::plan::{
    plan_alter_topic_configs, plan_create_partitions, plan_create_topics, plan_delete_topics, plan_producer_id,
    ControlError, ControlLimits, NewTopic, TopicConfigOps, TopicCreated,
};
use crate::controller::MetaChange;

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
}

pub enum ControlReply {
    Created(Vec<Result<TopicCreated, ControlError>>),
    Deleted(Vec<Result<uuid::Uuid, ControlError>>),
    PartitionsAdded(Vec<Result<(), ControlError>>),
    ProducerId(Result<i64, ControlError>),
    ConfigsAltered(Vec<Result<(), ControlError>>),
}

impl ControlRequest {
    /// The reply for when the request could not run at all.
    pub fn failed(&self, why: &str) -> ControlReply {
        fn all<T>(n: usize, why: &str) -> Vec<Result<T, ControlError>> {
            (0..n).map(|_| Err(ControlError::Storage(why.to_string()))).collect()
        }
        match self {
            ControlRequest::CreateTopics { topics, .. } => ControlReply::Created(all(topics.len(), why)),
            ControlRequest::DeleteTopics { names } => ControlReply::Deleted(all(names.len(), why)),
            ControlRequest::CreatePartitions { topics, .. } => ControlReply::PartitionsAdded(all(topics.len(), why)),
            ControlRequest::AllocateProducerId => ControlReply::ProducerId(Err(ControlError::Storage(why.to_string()))),
            ControlRequest::AlterTopicConfigs { topics, .. } => ControlReply::ConfigsAltered(all(topics.len(), why)),
        }
    }
}

impl ControlReply {
    fn fail_successes(&mut self, e: &ControlError) {
        fn fail<T>(v: &mut [Result<T, ControlError>], e: &ControlError) {
            v.iter_mut().filter(|r| r.is_ok()).for_each(|r| *r = Err(e.clone()));
        }
        match self {
            ControlReply::Created(v) => fail(v, e),
            ControlReply::Deleted(v) => fail(v, e),
            ControlReply::PartitionsAdded(v) => fail(v, e),
            ControlReply::ProducerId(r) => *r = Err(e.clone()),
            ControlReply::ConfigsAltered(v) => fail(v, e),
        }
    }
}

pub struct Control {
    log: RefCell<MetaLog>,
    serial: Semaphore,
    limits: ControlLimits,
    /// Next producer id to hand out; starts past every id reserved before
    /// this start, so none is ever reused.
    next_producer_id: Cell<i64>,
}

impl Control {
    pub fn new(log: MetaLog, limits: ControlLimits, producer_ids_reserved: i64) -> Self {
        Self {
            log: RefCell::new(log),
            serial: Semaphore::new(1),
            limits,
            next_producer_id: Cell::new(producer_ids_reserved),
        }
    }
}

pub async fn execute(broker: &Rc<Broker>, request: ControlRequest) -> ControlReply {
    let control = broker.control.as_ref().expect("controller runs on shard 0");
    let _turn = control.serial.acquire_permit(1).await.expect("never closed");
    let (mut reply, changes, validate_only) = {
        let meta = broker.meta.borrow();
        match &request {
            ControlRequest::CreateTopics { topics, validate_only } => {
                let (r, c) = plan_create_topics(&meta, topics, &control.limits);
                (ControlReply::Created(r), c, *validate_only)
            }
            ControlRequest::DeleteTopics { names } => {
                let (r, c) = plan_delete_topics(&meta, names);
                (ControlReply::Deleted(r), c, false)
            }
            ControlRequest::CreatePartitions { topics, validate_only } => {
                let (r, c) = plan_create_partitions(&meta, topics, &control.limits);
                (ControlReply::PartitionsAdded(r), c, *validate_only)
            }
            ControlRequest::AllocateProducerId => {
                let (id, c) = plan_producer_id(&meta, control.next_producer_id.get());
                control.next_producer_id.set(id + 1);
                (ControlReply::ProducerId(Ok(id)), c, false)
            }
            ControlRequest::AlterTopicConfigs { topics, validate_only } => {
                let (r, c) = plan_alter_topic_configs(&meta, topics, &control.limits);
                (ControlReply::ConfigsAltered(r), c, *validate_only)
            }
        }
    };
    if validate_only || changes.is_empty() {
        return reply;
    }
    // Blocking write+fsync on the executor: metadata changes are rare and
    // small; the data path never takes this route.
    if let Err(e) = control.log.borrow_mut().append(&changes) {
        tracing::error!(error = %e, "metadata change not persisted");
        reply.fail_successes(&ControlError::Storage(e.to_string()));
        return reply;
    }
    let load_before = broker.meta.borrow().shard_load().to_vec();
    apply_changes(broker, &changes);
    broadcast(broker, &changes).await;
    warn_on_partition_limit(broker, &load_before, control.limits.max_partitions_per_shard);
    reply
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
            MetaChange::TopicCreated { partitions, .. } | MetaChange::PartitionsAdded { partitions, .. } => {
                let mine: Vec<_> = partitions
                    .iter()
                    .filter(|p| p.shard_id() == me)
                    .map(|p| p.partition_id())
                    .collect();
                broker.shard.create_partitions(&mine);
            }
            MetaChange::TopicDeleted { .. } => broker.shard.delete_partitions(&gone),
            MetaChange::ProducerIdsReserved { .. } | MetaChange::TopicConfigsAltered { .. } => {}
        }
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
