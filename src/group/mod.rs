//! Consumer group offsets. A group's coordinator is the shard that owns
//! the partition of `__consumer_offsets` that the group id hashes to (as
//! Kafka hashes it, so the same group lands on the same partition number).
//! Committed offsets are records in that partition, in Kafka's own key and
//! value layout, written through the produce path with acks=all: a commit
//! is acknowledged once it is durable, and it is replicated like data when
//! data is. The shard rebuilds its groups' offsets from those records the
//! first time it serves one of its offsets partitions after a start.
//!
//! Group state lives only on its coordinator shard (`!Send`, reached
//! through `Broker::group`, which routes like produce does). Membership
//! (the rebalance protocol) is in `membership.rs`.
//!
//! Offsets of groups nobody uses expire (Kafka's `offsets.retention.minutes`,
//! 7 days): while a group has members its offsets stay; once it has none,
//! each offset goes when its commit, and the last check that saw the
//! group with members, are both older than the retention. Kafka
//! keeps when a group became empty in its group metadata records; this
//! coordinator keeps it in memory, and counts from when it loaded the
//! offsets (a start, or a leadership move) when it did not see it: a
//! restart can only delay an expiry, never bring one forward. An expired
//! offset is deleted as Kafka deletes it, by a tombstone in
//! `__consumer_offsets` (compaction removes both later). One check per
//! coordinator shard every `offsets.retention.check.interval.ms`, only
//! while it holds offsets.

pub mod membership;
pub mod records;

use corestream_shards::shard::wall_clock_ms;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use bytes::BytesMut;
use corestream_shards::batch;
use corestream_shards::{Durability, Offset, PartitionId, ProduceItem, ShardId};
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

use crate::controller::plan::{ControlError, NewTopic};
use crate::kafka::errors;
use crate::node::broker::Broker;
use crate::node::control::{ControlReply, ControlRequest};
use records::{CommitKey, CommitValue};

/// Kafka's internal topic for committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's default `offsets.topic.num.partitions`: groups spread over this
/// many coordinators (and so over up to this many shards).
pub const OFFSETS_PARTITIONS: i32 = 50;

/// The partition of `__consumer_offsets` that holds `group`: Kafka's
/// `Utils.abs(groupId.hashCode()) % partitions`, with Java's String hash
/// (and `Utils.abs`, which maps i32::MIN to 0).
pub fn partition_for(group: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h.checked_abs().unwrap_or(0) % OFFSETS_PARTITIONS
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A committed offset as the coordinator keeps it: with when it was
/// committed (ms since the epoch), which its retention counts from.
#[derive(Debug, Clone)]
struct Stored {
    committed: Committed,
    commit_ms: i64,
}

/// How long offsets of a group without members are kept, and how often
/// that is checked (Kafka's `offsets.retention.minutes` and
/// `offsets.retention.check.interval.ms`).
#[derive(Debug, Clone, Copy)]
pub struct OffsetsRetention {
    pub retention_ms: i64,
    pub check_interval: std::time::Duration,
}

/// A group request for the coordinator shard.
pub enum GroupRequest {
    Commit {
        group: String,
        /// Empty and -1 for a standalone consumer's commit.
        member: String,
        /// A static member's `group.instance.id` (v7+).
        instance: Option<String>,
        generation: i32,
        /// Where the group's offsets live on the coordinator shard.
        partition: PartitionId,
        offsets: Vec<(String, i32, Committed)>,
    },
    Fetch {
        group: String,
        partition: PartitionId,
        /// Partitions by topic, each topic's name once (a request may name
        /// 100,000 partitions of a long name); `None`: every partition the
        /// group has committed.
        wanted: Option<Vec<(String, Vec<i32>)>>,
    },
    Join(JoinGroupRequest, i16, membership::ClientInfo),
    Sync(SyncGroupRequest, i16),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest, i16),
    /// Every group this shard coordinates (ListGroups).
    List,
    /// One group's state and members (DescribeGroups).
    Describe {
        group: String,
        partition: PartitionId,
    },
    /// Deletes a group without members and its offsets (DeleteGroups).
    Delete {
        group: String,
        partition: PartitionId,
    },
    /// Deletes some of a group's offsets (OffsetDelete).
    DeleteOffsets {
        group: String,
        partition: PartitionId,
        offsets: Vec<(String, Vec<i32>)>,
    },
    /// Requests for several groups this shard coordinates, served in
    /// order (`route_each`).
    Batch(Vec<GroupRequest>),
}

/// An error code per partition, by topic.
pub type PartitionCodes = Vec<(String, Vec<(i32, i16)>)>;

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub group: String,
    pub protocol_type: String,
    pub state: &'static str,
}

pub enum GroupReply {
    /// One error code per committed offset, in order.
    Committed(Vec<i16>),
    /// The group's offsets by topic, or an error code for the whole group.
    Fetched(Result<Vec<TopicOffsets>, i16>),
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Listed(Result<Vec<Listed>, i16>),
    /// The group, or `None` for one this coordinator does not know (Kafka's
    /// "Dead"); or an error code.
    Described(Result<Option<membership::GroupView>, i16>),
    /// DeleteGroups' error code for the group.
    Deleted(i16),
    /// OffsetDelete: an error for the whole group, or one per partition.
    OffsetsDeleted(Result<PartitionCodes, i16>),
    /// A `Batch`'s replies, in its order.
    Batch(Vec<GroupReply>),
}

/// How many groups one coordinator keeps, and members one group.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub groups: usize,
    pub members: usize,
}

/// Requests refused at a limit, for the metrics.
#[derive(Default)]
pub struct Refusals {
    pub groups: Cell<u64>,
    pub members: Cell<u64>,
    /// The first refusal was logged (one warning per shard, not per request).
    warned: Cell<bool>,
}

impl Refusals {
    fn count(&self, counter: &Cell<u64>, what: &str, limit: usize) {
        counter.set(counter.get() + 1);
        if !self.warned.replace(true) {
            tracing::warn!(limit, "refusing a new {what}: this coordinator holds its limit (config [groups]); counted in corestream_group_limit_refusals_total from now on");
        }
    }

    /// A new group beyond `groups.max_groups_per_shard`.
    pub fn group(&self, limit: usize) -> i16 {
        self.count(&self.groups, "group", limit);
        errors::COORDINATOR_NOT_AVAILABLE
    }

    /// A new member beyond `groups.max_members_per_group`.
    pub fn member(&self, limit: usize) -> i16 {
        self.count(&self.members, "group member", limit);
        errors::GROUP_MAX_SIZE_REACHED
    }
}

/// The groups whose coordinator is this shard.
pub struct Coordinator {
    /// Offsets partitions whose records were replayed since start.
    loaded: RefCell<HashSet<PartitionId>>,
    /// Replays one partition at a time, so two requests never both replay.
    loading: glommio::sync::Semaphore,
    offsets: RefCell<HashMap<String, GroupOffsets>>,
    pub members: membership::Groups,
    limits: GroupLimits,
    pub refused: Rc<Refusals>,
    /// Creating the offsets topic was refused (and logged) once already.
    offsets_topic_refused: std::cell::Cell<bool>,
    retention: OffsetsRetention,
    /// Per group with offsets: the last time it was seen with members, or
    /// when its offsets were loaded. Its retention counts from there at
    /// the earliest.
    active_ms: RefCell<HashMap<String, i64>>,
    /// The expiry check runs (it stops once no offsets are held).
    expiring: Cell<bool>,
    /// Offsets expired since start, for the metrics.
    pub expired: Cell<u64>,
}

/// A topic and the committed offset of each partition asked for (`None`:
/// never committed).
pub type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

/// One group's committed offsets by topic and partition (a lookup by a
/// borrowed topic name, not a (String, i32) key built per partition).
type GroupOffsets = HashMap<String, HashMap<i32, Stored>>;

impl Coordinator {
    /// Drops every group's state (this shard stopped leading its offsets
    /// partitions); members get NOT_COORDINATOR and find the new leader.
    pub fn forget_all(&self) {
        self.loaded.borrow_mut().clear();
        self.offsets.borrow_mut().clear();
        self.active_ms.borrow_mut().clear();
        self.members.forget_all();
    }

    pub fn new(initial_rebalance_delay: std::time::Duration, limits: GroupLimits, retention: OffsetsRetention) -> Self {
        let refused = Rc::new(Refusals::default());
        Self {
            loaded: RefCell::new(HashSet::new()),
            loading: glommio::sync::Semaphore::new(1),
            offsets: RefCell::new(HashMap::new()),
            members: membership::Groups::new(
                initial_rebalance_delay,
                retention.check_interval,
                limits,
                refused.clone(),
            ),
            limits,
            refused,
            offsets_topic_refused: std::cell::Cell::new(false),
            retention,
            active_ms: RefCell::new(HashMap::new()),
            expiring: Cell::new(false),
            expired: Cell::new(0),
        }
    }

    /// The offsets to delete now: `(group, topic, partition)` of each
    /// offset of a group without members whose commit and last activity
    /// are both at least the retention old. Groups with members are
    /// marked active as of `now_ms`.
    fn expired_offsets(&self, now_ms: i64) -> Vec<(String, String, i32)> {
        let offsets = self.offsets.borrow();
        let mut active = self.active_ms.borrow_mut();
        let mut out = Vec::new();
        for (group, topics) in offsets.iter() {
            if self.members.has_members(group) {
                active.insert(group.clone(), now_ms);
                continue;
            }
            let since = active.get(group).copied().unwrap_or(i64::MIN);
            for (topic, parts) in topics {
                for (p, stored) in parts {
                    // Commit times come from the log, where a client may
                    // have written anything.
                    if now_ms.saturating_sub(stored.commit_ms.max(since)) >= self.retention.retention_ms {
                        out.push((group.clone(), topic.clone(), *p));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Forgets deleted offsets, and groups left with none.
    fn forget_offsets(&self, gone: &[(String, String, i32)]) {
        let mut offsets = self.offsets.borrow_mut();
        for (group, topic, p) in gone {
            let Some(topics) = offsets.get_mut(group) else { continue };
            if let Some(parts) = topics.get_mut(topic) {
                parts.remove(p);
                if parts.is_empty() {
                    topics.remove(topic);
                }
            }
            if topics.is_empty() {
                offsets.remove(group);
                self.active_ms.borrow_mut().remove(group);
            }
        }
    }
}

/// Where `group`'s coordinator is: the owner shard of its offsets
/// partition, and that partition. The offsets topic is created on first
/// use (as Kafka does) when `create`; without it, `Ok(None)`.
pub async fn coordinator_of(b: &Rc<Broker>, group: &str, create: bool) -> Result<Option<(ShardId, PartitionId)>, i16> {
    // Kafka's record layout keeps a group id as an i16-length string.
    if group.is_empty() || group.len() > records::STRING_MAX_BYTES {
        return Err(errors::INVALID_GROUP_ID);
    }
    let p = partition_for(group);
    if let Some(loc) = crate::kafka::locate(b, OFFSETS_TOPIC, p) {
        return Ok(Some((loc.shard_id(), loc.partition_id())));
    }
    if !create {
        return Ok(None);
    }
    let reply = b
        .control(ControlRequest::CreateTopics {
            topics: vec![NewTopic {
                name: OFFSETS_TOPIC.to_string(),
                num_partitions: OFFSETS_PARTITIONS,
                replication_factor: -1,
                assignments: Vec::new(),
                // As Kafka's: compacted (the last commit of each group and
                // partition stays), never trimmed by time.
                configs: vec![("cleanup.policy".to_string(), Some("compact".to_string()))],
            }],
            validate_only: false,
        })
        .await;
    let ControlReply::Created(mut results) = reply else {
        unreachable!("CreateTopics gets a Created reply")
    };
    match results.pop() {
        Some(Ok(_)) | Some(Err(ControlError::TopicExists(_))) => {}
        Some(Err(e)) => {
            // Every group request retries this: say it once per shard, not per request.
            if !b.groups.offsets_topic_refused.replace(true) {
                tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}; group requests get COORDINATOR_NOT_AVAILABLE until it can be");
            } else {
                tracing::trace!(error = %e, "cannot create {OFFSETS_TOPIC}");
            }
            return Err(errors::COORDINATOR_NOT_AVAILABLE);
        }
        None => return Err(errors::COORDINATOR_NOT_AVAILABLE),
    }
    // The controller applied the change to every shard before answering.
    crate::kafka::locate(b, OFFSETS_TOPIC, p)
        .map(|loc| Some((loc.shard_id(), loc.partition_id())))
        .ok_or(errors::COORDINATOR_NOT_AVAILABLE)
}

/// Like `coordinator_of`, for a request this broker must serve as the
/// coordinator: NOT_COORDINATOR when another broker leads the offsets
/// partition (the client asks FindCoordinator again).
pub async fn local_coordinator(
    b: &Rc<Broker>,
    group: &str,
    create: bool,
) -> Result<Option<(ShardId, PartitionId)>, i16> {
    let found = coordinator_of(b, group, create).await?;
    match found {
        Some((shard, _)) if !b.leads(shard) => Err(errors::NOT_COORDINATOR),
        other => Ok(other),
    }
}

/// Sends a membership request to `group`'s coordinator shard; `None` when
/// there is no coordinator (the error code says why).
pub async fn route(b: &Rc<Broker>, group: &str, request: GroupRequest) -> Result<GroupReply, i16> {
    match local_coordinator(b, group, true).await? {
        Some((shard, _)) => b.group(shard, request).await.ok_or(errors::COORDINATOR_NOT_AVAILABLE),
        None => Err(errors::COORDINATOR_NOT_AVAILABLE),
    }
}

/// Sends each request to its coordinator shard: one message per shard,
/// to every shard at once, instead of one round trip per group
/// (DescribeGroups, DeleteGroups and OffsetFetch may name tens of
/// thousands of groups, and a round trip to another shard costs ~100 µs).
/// The replies are in the order of `requests`; `None` where a shard did
/// not answer.
pub async fn route_each(b: &Rc<Broker>, requests: Vec<(ShardId, GroupRequest)>) -> Vec<Option<GroupReply>> {
    let mut replies: Vec<Option<GroupReply>> = requests.iter().map(|_| None).collect();
    let mut by_shard: HashMap<ShardId, (Vec<usize>, Vec<GroupRequest>)> = HashMap::new();
    for (i, (shard, request)) in requests.into_iter().enumerate() {
        let (slots, batch) = by_shard.entry(shard).or_default();
        slots.push(i);
        batch.push(request);
    }
    let tasks: Vec<_> = by_shard
        .into_iter()
        .map(|(shard, (slots, batch))| {
            let b = b.clone();
            let task = glommio::spawn_local(async move { b.group(shard, GroupRequest::Batch(batch)).await });
            (slots, task)
        })
        .collect();
    for (slots, task) in tasks {
        if let Some(GroupReply::Batch(answers)) = task.await {
            for (i, answer) in slots.into_iter().zip(answers) {
                replies[i] = Some(answer);
            }
        }
    }
    replies
}

/// Runs a group request on this shard, the coordinator of its partition.
pub async fn serve(b: &Rc<Broker>, req: GroupRequest) -> GroupReply {
    match req {
        GroupRequest::Commit {
            group,
            member,
            instance,
            generation,
            partition,
            offsets,
        } => {
            if let Err(code) = b
                .groups
                .members
                .check_commit(&group, &member, instance.as_deref(), generation)
            {
                return GroupReply::Committed(vec![code; offsets.len()]);
            }
            GroupReply::Committed(commit(b, &group, partition, offsets).await)
        }
        GroupRequest::Fetch {
            group,
            partition,
            wanted,
        } => GroupReply::Fetched(fetch(b, &group, partition, wanted).await),
        GroupRequest::Join(req, version, client) => GroupReply::Join(membership::join(b, req, version, client).await),
        GroupRequest::Sync(req, version) => GroupReply::Sync(membership::sync(b, req, version).await),
        GroupRequest::Heartbeat(req) => GroupReply::Heartbeat(membership::heartbeat(b, req)),
        GroupRequest::Leave(req, version) => GroupReply::Leave(membership::leave(b, req, version)),
        GroupRequest::List => GroupReply::Listed(list(b).await),
        GroupRequest::Describe { group, partition } => GroupReply::Described(describe(b, &group, partition).await),
        GroupRequest::Delete { group, partition } => GroupReply::Deleted(delete_group(b, &group, partition).await),
        GroupRequest::DeleteOffsets {
            group,
            partition,
            offsets,
        } => GroupReply::OffsetsDeleted(delete_offsets(b, &group, partition, offsets).await),
        GroupRequest::Batch(requests) => {
            let mut replies = Vec::with_capacity(requests.len());
            for request in requests {
                replies.push(Box::pin(serve(b, request)).await);
                // A batch may hold tens of thousands: let the shard's
                // other tasks run between them.
                glommio::yield_if_needed().await;
            }
            GroupReply::Batch(replies)
        }
    }
}

/// Every group this shard coordinates: those with members, and those with
/// committed offsets only ("Empty", as Kafka lists a group whose members
/// all left). Replays every offsets partition this shard holds first.
async fn list(b: &Rc<Broker>) -> Result<Vec<Listed>, i16> {
    let mine: Vec<PartitionId> = (0..OFFSETS_PARTITIONS)
        .filter_map(|p| crate::kafka::locate(b, OFFSETS_TOPIC, p))
        .filter(|loc| loc.shard_id() == b.me())
        .map(|loc| loc.partition_id())
        .collect();
    for partition in mine {
        ensure_loaded(b, partition).await?;
    }
    let mut out: Vec<Listed> = b
        .groups
        .members
        .listed()
        .into_iter()
        .map(|(group, protocol_type, state)| Listed {
            group,
            protocol_type,
            state,
        })
        .collect();
    let known: HashSet<String> = out.iter().map(|l| l.group.clone()).collect();
    for group in b.groups.offsets.borrow().keys() {
        if !known.contains(group) {
            out.push(Listed {
                group: group.clone(),
                protocol_type: String::new(),
                state: "Empty",
            });
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(out)
}

/// A group's state and members; one with offsets only is "Empty".
async fn describe(b: &Rc<Broker>, group: &str, partition: PartitionId) -> Result<Option<membership::GroupView>, i16> {
    ensure_loaded(b, partition).await?;
    if let Some(view) = b.groups.members.view(group) {
        return Ok(Some(view));
    }
    Ok(b.groups
        .offsets
        .borrow()
        .contains_key(group)
        .then(|| membership::GroupView {
            state: "Empty",
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }))
}

/// DeleteGroups for one group: refused while it has members; its offsets
/// go by tombstones, as Kafka deletes them.
async fn delete_group(b: &Rc<Broker>, group: &str, partition: PartitionId) -> i16 {
    if let Err(code) = ensure_loaded(b, partition).await {
        return code;
    }
    if b.groups.members.has_members(group) {
        return errors::NON_EMPTY_GROUP;
    }
    let keys: Vec<(String, String, i32)> = {
        let offsets = b.groups.offsets.borrow();
        let Some(topics) = offsets.get(group) else {
            return if b.groups.members.remove_if_empty(group) {
                // Member ids handed out, nothing committed: nothing to write.
                errors::NONE
            } else {
                errors::GROUP_ID_NOT_FOUND
            };
        };
        let mut keys: Vec<_> = topics
            .iter()
            .flat_map(|(t, ps)| ps.keys().map(move |p| (group.to_string(), t.clone(), *p)))
            .collect();
        keys.sort();
        keys
    };
    if let Err(code) = delete_committed(b, partition, &keys).await {
        return code;
    }
    // A member may have joined while the tombstones were written: it
    // starts from no offsets, as after Kafka's deletion.
    b.groups.members.remove_if_empty(group);
    errors::NONE
}

/// OffsetDelete: a group's offsets for some partitions go, except those
/// of topics its members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC).
async fn delete_offsets(
    b: &Rc<Broker>,
    group: &str,
    partition: PartitionId,
    wanted: Vec<(String, Vec<i32>)>,
) -> Result<PartitionCodes, i16> {
    ensure_loaded(b, partition).await?;
    let known = b.groups.offsets.borrow().contains_key(group) || b.groups.members.knows(group);
    if !known {
        return Err(errors::GROUP_ID_NOT_FOUND);
    }
    let Some(subscribed) = b.groups.members.subscribed_topics(group) else {
        return Err(errors::NON_EMPTY_GROUP);
    };
    let mut keys = Vec::new();
    let out = wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let codes = partitions
                .into_iter()
                .map(|p| {
                    if subscribed.contains(&topic) {
                        return (p, errors::GROUP_SUBSCRIBED_TO_TOPIC);
                    }
                    let held = b
                        .groups
                        .offsets
                        .borrow()
                        .get(group)
                        .and_then(|t| t.get(&topic))
                        .is_some_and(|ps| ps.contains_key(&p));
                    if held {
                        keys.push((group.to_string(), topic.clone(), p));
                    }
                    (p, errors::NONE)
                })
                .collect();
            (topic, codes)
        })
        .collect();
    delete_committed(b, partition, &keys).await?;
    Ok(out)
}

/// Deletes committed offsets `(group, topic, partition)` of offsets
/// partition `partition`: one tombstone each, then the coordinator
/// forgets them.
async fn delete_committed(b: &Rc<Broker>, partition: PartitionId, keys: &[(String, String, i32)]) -> Result<(), i16> {
    if keys.is_empty() {
        return Ok(());
    }
    let now_ms = wall_clock_ms();
    let recs: Result<Vec<_>, records::TooLong> = keys
        .iter()
        .enumerate()
        .map(|(i, (group, topic, p))| {
            let key = CommitKey {
                group: group.clone(),
                topic: topic.clone(),
                partition: *p,
            };
            records::record(i as i64, &key, None, now_ms)
        })
        .collect();
    // Every key was committed through the same layout.
    let recs = recs.map_err(|_| errors::UNKNOWN_SERVER_ERROR)?;
    append(b, partition, &recs).await?;
    b.groups.forget_offsets(keys);
    Ok(())
}

async fn commit(
    b: &Rc<Broker>,
    group: &str,
    partition: PartitionId,
    offsets: Vec<(String, i32, Committed)>,
) -> Vec<i16> {
    if let Err(code) = ensure_loaded(b, partition).await {
        return vec![code; offsets.len()];
    }
    {
        let all = b.groups.offsets.borrow();
        if !all.contains_key(group) && all.len() >= b.groups.limits.groups {
            return vec![b.groups.refused.group(b.groups.limits.groups); offsets.len()];
        }
    }
    let now_ms = wall_clock_ms();
    let recs: Result<Vec<kafka_protocol::records::Record>, records::TooLong> = offsets
        .iter()
        .enumerate()
        .map(|(i, (topic, p, c))| {
            records::record(
                i as i64,
                &CommitKey {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *p,
                },
                Some(&CommitValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp: now_ms,
                }),
                now_ms,
            )
        })
        .collect();
    // Callers check every string's length; a commit that still does not
    // fit the layout is refused as Kafka refuses one it cannot store.
    let Ok(recs) = recs else {
        return vec![errors::INVALID_COMMIT_OFFSET_SIZE; offsets.len()];
    };
    match append(b, partition, &recs).await {
        Ok(()) => {
            let mut all = b.groups.offsets.borrow_mut();
            let mine = all.entry(group.to_string()).or_default();
            for (topic, p, c) in offsets.iter() {
                let stored = Stored {
                    committed: c.clone(),
                    commit_ms: now_ms,
                };
                mine.entry(topic.clone()).or_default().insert(*p, stored);
            }
            drop(all);
            ensure_expiring(b);
            vec![errors::NONE; offsets.len()]
        }
        Err(code) => vec![code; offsets.len()],
    }
}

/// Writes `recs` to offsets partition `partition` as one batch, and
/// returns once it committed (acks=all).
async fn append(b: &Rc<Broker>, partition: PartitionId, recs: &[kafka_protocol::records::Record]) -> Result<(), i16> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    if RecordBatchEncoder::encode(&mut buf, recs, &options).is_err() {
        return Err(errors::UNKNOWN_SERVER_ERROR);
    }
    let records = buf.freeze();
    // The same checks as a client's batch: the shard trusts what it is given.
    let batches = match batch::split_batches(&records, usize::MAX) {
        Ok(b) => b.iter().map(|(at, info)| (*at, info.record_count)).collect(),
        Err(e) => {
            tracing::error!(error = %e, "built an invalid offsets batch");
            return Err(errors::UNKNOWN_SERVER_ERROR);
        }
    };
    let item = ProduceItem {
        partition,
        batches,
        records,
    };
    let result = b
        .shard
        .produce(vec![item], Durability::Committed)
        .await
        .pop()
        .expect("one result per item");
    result.map(|_| ()).map_err(|e| errors::shard(&e))
}

/// Starts this shard's check for expired offsets unless it runs; it stops
/// once the shard holds no offsets (an idle broker without groups wakes
/// for none).
fn ensure_expiring(b: &Rc<Broker>) {
    if b.groups.expiring.replace(true) {
        return;
    }
    let b = b.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(b.groups.retention.check_interval).await;
            expire_offsets(&b).await;
            if b.groups.offsets.borrow().is_empty() {
                b.groups.expiring.set(false);
                return;
            }
        }
    })
    .detach();
}

/// Deletes the offsets whose retention passed: a tombstone per offset in
/// its group's offsets partition, then the coordinator forgets them. A
/// partition this shard no longer leads refuses the write; its offsets
/// stay until the next check (or go with `forget_all`).
async fn expire_offsets(b: &Rc<Broker>) {
    let now_ms = wall_clock_ms();
    let gone = b.groups.expired_offsets(now_ms);
    if gone.is_empty() {
        return;
    }
    let mut by_partition: std::collections::BTreeMap<PartitionId, Vec<(String, String, i32)>> = Default::default();
    for key in gone {
        if let Some(loc) = crate::kafka::locate(b, OFFSETS_TOPIC, partition_for(&key.0)) {
            by_partition.entry(loc.partition_id()).or_default().push(key);
        }
    }
    for (partition, keys) in by_partition {
        match delete_committed(b, partition, &keys).await {
            Ok(()) => {
                b.groups.expired.set(b.groups.expired.get() + keys.len() as u64);
                tracing::info!(%partition, offsets = keys.len(), "deleted offsets of groups without members past offsets.retention.minutes");
            }
            Err(code) => {
                tracing::debug!(%partition, code, "expired offsets not deleted yet; tried again at the next check")
            }
        }
    }
}

async fn fetch(
    b: &Rc<Broker>,
    group: &str,
    partition: PartitionId,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<TopicOffsets>, i16> {
    ensure_loaded(b, partition).await?;
    let all = b.groups.offsets.borrow();
    let mine = all.get(group);
    Ok(match wanted {
        Some(list) => list
            .into_iter()
            .map(|(t, ps)| {
                let topic = mine.and_then(|m| m.get(&t));
                let found = ps
                    .into_iter()
                    .map(|p| (p, topic.and_then(|c| c.get(&p)).map(|s| s.committed.clone())))
                    .collect();
                (t, found)
            })
            .collect(),
        None => {
            let mut out: Vec<TopicOffsets> = mine
                .map(|m| {
                    m.iter()
                        .map(|(t, ps)| {
                            let mut ps: Vec<_> = ps.iter().map(|(p, s)| (*p, Some(s.committed.clone()))).collect();
                            ps.sort_by_key(|(p, _)| *p);
                            (t.clone(), ps)
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
    })
}

/// Replays `partition`'s commits into memory, once per start.
async fn ensure_loaded(b: &Rc<Broker>, partition: PartitionId) -> Result<(), i16> {
    if b.groups.loaded.borrow().contains(&partition) {
        return Ok(());
    }
    let _one = b
        .groups
        .loading
        .acquire_permit(1)
        .await
        .expect("the semaphore is never closed");
    if b.groups.loaded.borrow().contains(&partition) {
        return Ok(());
    }
    let mut at = Offset(0);
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let read = b
            .shard
            .read_many(&[(partition, at, 1 << 20)], 1 << 20)
            .await
            .pop()
            .expect("one result per read");
        let read = match read {
            Ok(r) => r,
            // Nothing at `at` any more: start from where the log starts.
            Err(corestream_shards::ShardError::OffsetOutOfRange { log_start, .. }) if at < log_start => {
                at = log_start;
                continue;
            }
            Err(e) => return Err(errors::shard(&e)),
        };
        if read.records.is_empty() {
            break;
        }
        let mut buf = read.records.clone();
        let sets =
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).map_err(|_| errors::CORRUPT_MESSAGE)?;
        let mut offsets = b.groups.offsets.borrow_mut();
        for set in sets {
            for r in set.records {
                at = Offset(r.offset + 1);
                let Some(key) = r.key.as_ref().and_then(records::decode_key) else {
                    continue; // not an offset commit (group metadata, or not ours)
                };
                if !seen.contains(&key.group) {
                    seen.insert(key.group.clone());
                }
                match r.value.as_ref().and_then(records::decode_value) {
                    Some(v) => {
                        offsets
                            .entry(key.group)
                            .or_default()
                            .entry(key.topic)
                            .or_default()
                            .insert(
                                key.partition,
                                Stored {
                                    committed: Committed {
                                        offset: v.offset,
                                        leader_epoch: v.leader_epoch,
                                        metadata: v.metadata,
                                    },
                                    commit_ms: v.commit_timestamp,
                                },
                            );
                    }
                    None => {
                        if let Some(t) = offsets.get_mut(&key.group).and_then(|g| g.get_mut(&key.topic)) {
                            t.remove(&key.partition);
                        }
                    }
                }
            }
        }
        if at >= read.high_watermark {
            break;
        }
    }
    // Groups whose offsets were all deleted are gone; the others' retention
    // counts from now at the earliest (whether they had members before is
    // not known here).
    let now_ms = wall_clock_ms();
    {
        let mut offsets = b.groups.offsets.borrow_mut();
        let mut active = b.groups.active_ms.borrow_mut();
        for group in seen {
            let held = offsets
                .get_mut(&group)
                .map(|topics| {
                    topics.retain(|_, parts| !parts.is_empty());
                    !topics.is_empty()
                })
                .unwrap_or(false);
            if held {
                active.entry(group).or_insert(now_ms);
            } else {
                offsets.remove(&group);
            }
        }
    }
    b.groups.loaded.borrow_mut().insert(partition);
    if !b.groups.offsets.borrow().is_empty() {
        ensure_expiring(b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own assignment of groups to offsets partitions (Java's
    /// `"...".hashCode()`, worked out by hand and with a script).
    #[test]
    fn groups_hash_to_the_partition_kafka_picks() {
        assert_eq!(partition_for("group"), 47); // hashCode 98629247
        assert_eq!(partition_for(""), 0);
        assert_eq!(partition_for("orders-service"), 17); // 23943117
        assert_eq!(partition_for("analytics"), 10); // -1693017210: abs, not a mask
        assert_eq!(partition_for("billing-pipeline-v2"), 37); // -80587
    }
}
