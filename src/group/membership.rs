//! Group membership: Kafka's classic rebalance protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), run by the group's coordinator shard.
//!
//! A rebalance starts when a member joins or leaves, or its session
//! expires. Members rejoin (they learn of it from their heartbeat); once
//! every known member has, or the rebalance timeout passes (members that
//! did not rejoin are dropped), a new generation begins: every member gets
//! the generation and the chosen protocol, the leader also every member's
//! subscription. The leader computes the assignment and sends it with its
//! SyncGroup; each member's SyncGroup returns its share.
//!
//! An empty group's first rebalance waits `groups.initial_rebalance_delay_ms`
//! (Kafka's group.initial.rebalance.delay.ms, 3 s) after each join, up to
//! the rebalance timeout, so consumers started together land in one
//! generation instead of one rebalance each.
//!
//! Static membership (KIP-345): a member with a `group.instance.id` keeps
//! its place across restarts. It joins without the KIP-394 round trip; one
//! that comes back (a new process, an empty member id) within its session
//! timeout takes its old member's place under a new member id, and, while
//! the group is stable and its subscription unchanged, gets its old
//! assignment with no rebalance; the old member id is fenced
//! (FENCED_INSTANCE_ID). It leaves when its session expires, or by a
//! LeaveGroup naming its instance id.
//!
//! Timers: one sweep per shard every `SWEEP` while it coordinates a group
//! with members (session expiry, rebalance deadlines); none otherwise.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::kafka::errors;
use crate::node::broker::Broker;

/// The protocol type of consumer groups (the Java client's ConsumerProtocol).
pub const CONSUMER_PROTOCOL: &str = "consumer";

/// A consumer's subscription, as it sends it in JoinGroup's protocol
/// metadata: a version (i16) and the subscription at that version.
fn decode_subscription(metadata: &Bytes) -> Option<ConsumerProtocolSubscription> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    bytes::Buf::advance(&mut buf, 2);
    // Newer versions start with the fields of older ones.
    let version = version.clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version).ok()
}

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<i32> = 6_000..=1_800_000;
/// How often expired sessions and passed rebalance deadlines are found.
const SWEEP: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl Phase {
    /// The state's name in ListGroups and DescribeGroups (Kafka's).
    fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// Who sent a JoinGroup: the request header's client id and the peer's
/// address.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub host: String,
}

/// A group as ListGroups and DescribeGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: &'static str,
    pub protocol_type: String,
    /// The protocol chosen for the current generation ("" between them).
    pub protocol: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

struct Member {
    /// Its `group.instance.id`: a static member.
    instance_id: Option<String>,
    /// The client's `client.id` and address, as DescribeGroups reports them.
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// Protocol names and the member's metadata for each, in preference order.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    /// A JoinGroup waiting for the rebalance to complete, and its version.
    joining: Option<(flume::Sender<JoinGroupResponse>, i16)>,
    /// A SyncGroup waiting for the leader's assignment.
    syncing: Option<flume::Sender<SyncGroupResponse>>,
}

impl Member {
    fn alive(&self, now: Instant) -> bool {
        self.joining.is_some() || self.syncing.is_some() || now < self.last_seen + self.session_timeout
    }
}

struct Group {
    phase: Phase,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// Members in join order (the oldest becomes leader).
    order: Vec<String>,
    members: HashMap<String, Member>,
    /// Static members: `group.instance.id` to the member id holding it.
    instances: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or
    /// their session timeout passes.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// During an empty group's first rebalance: the latest the initial
    /// delay may extend to. Joins only complete at the deadline then.
    initial_delay_limit: Option<Instant>,
    /// Since when the group has had no members nor handed-out ids (the
    /// sweep sets it): it is forgotten `Groups::empty_kept_for` later.
    empty_since: Option<Instant>,
}

impl Group {
    fn new() -> Self {
        Self {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            order: Vec::new(),
            members: HashMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_limit: None,
            empty_since: None,
        }
    }

    fn idle(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Whether a member with these protocols may join: same protocol type,
    /// and at least one protocol every current member also speaks.
    fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn remove(&mut self, id: &str) -> Option<Member> {
        self.order.retain(|m| m != id);
        let m = self.members.remove(id)?;
        if let Some(instance) = &m.instance_id {
            if self.instances.get(instance).is_some_and(|held| held == id) {
                self.instances.remove(instance);
            }
        }
        Some(m)
    }

    /// Whether a request naming `instance` (if any) comes from the member
    /// that holds it: FENCED_INSTANCE_ID when another member id does.
    fn check_instance(&self, member: &str, instance: Option<&str>) -> Result<(), i16> {
        match instance.and_then(|i| self.instances.get(i)) {
            Some(held) if held != member => Err(errors::FENCED_INSTANCE_ID),
            _ => Ok(()),
        }
    }

    /// A static member back under `new_id` takes the place of `old_id`:
    /// its position, leadership and assignment. Requests the old id has
    /// waiting are fenced.
    fn replace(&mut self, old_id: &str, new_id: &str) {
        let Some(mut m) = self.members.remove(old_id) else {
            return;
        };
        if let Some((tx, _)) = m.joining.take() {
            let _ = tx.try_send(join_error(
                errors::FENCED_INSTANCE_ID,
                StrBytes::from_string(old_id.to_string()),
            ));
        }
        if let Some(tx) = m.syncing.take() {
            let _ = tx.try_send(SyncGroupResponse::default().with_error_code(errors::FENCED_INSTANCE_ID));
        }
        for id in self.order.iter_mut().filter(|id| *id == old_id) {
            *id = new_id.to_string();
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if let Some(instance) = &m.instance_id {
            self.instances.insert(instance.clone(), new_id.to_string());
        }
        self.members.insert(new_id.to_string(), m);
    }

    /// The JoinGroup answer for a static member back in a stable group:
    /// the current generation; the roster too if it leads (KIP-814: v9
    /// tells it to keep the assignment; before v9 the coordinator keeps it
    /// anyway, as a stable group's SyncGroup returns the one it has).
    fn rejoined_static(&self, member_id: &str, version: i16) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let mut resp = self.joined(member_id, &protocol, &leader, version);
        if leader == member_id {
            resp.members = self.roster(&protocol);
            resp.skip_assignment = version >= 9;
        }
        resp
    }

    /// The JoinGroup answer of the current generation for `member_id`.
    fn joined(&self, member_id: &str, protocol: &str, leader: &str, version: i16) -> JoinGroupResponse {
        join_response(
            self.generation,
            self.protocol_type.clone(),
            member_id,
            protocol,
            leader,
            version,
        )
    }

    /// Every member's id, instance id and metadata for `protocol`, in join
    /// order: what the leader assigns from.
    fn roster(&self, protocol: &str) -> Vec<JoinGroupResponseMember> {
        self.order
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (id, m)))
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(id.clone()))
                    .with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                    .with_metadata(metadata)
            })
            .collect()
    }

    /// Starts a rebalance: pending SyncGroups learn of it, and every member
    /// has until the longest rebalance timeout to rejoin.
    fn prepare_rebalance(&mut self, now: Instant) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.syncing.take() {
                let _ = tx.try_send(SyncGroupResponse::default().with_error_code(errors::REBALANCE_IN_PROGRESS));
            }
        }
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.phase = Phase::PreparingRebalance;
        self.rebalance_deadline = Some(now + longest);
    }

    /// Completes the rebalance if every member has rejoined, or (`force`)
    /// its deadline passed: those that did not rejoin are dropped.
    fn maybe_complete_join(&mut self, force: bool) {
        if self.phase != Phase::PreparingRebalance || (self.initial_delay_limit.is_some() && !force) {
            return;
        }
        self.initial_delay_limit = None;
        let all_joined = self.members.values().all(|m| m.joining.is_some());
        if !all_joined && !force {
            return;
        }
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.joining.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            // An empty group keeps its protocol type, as Kafka's does
            // (DescribeGroups and ListGroups show it).
            self.phase = Phase::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.order.first().cloned();
        }
        let leader = self.leader.clone().expect("a group with members has a leader");
        // The leader's most preferred protocol that every member speaks
        // (`accepts` guaranteed there is one).
        let protocol = self.members[&leader]
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .expect("members share a protocol");
        self.protocol = Some(protocol.clone());
        self.phase = Phase::CompletingRebalance;
        let roster = self.roster(&protocol);
        let (generation, protocol_type) = (self.generation, self.protocol_type.clone());
        let joined =
            |id: &str, version: i16| join_response(generation, protocol_type.clone(), id, &protocol, &leader, version);
        for (id, m) in self.members.iter_mut() {
            m.assignment = Bytes::new();
            m.last_seen = Instant::now();
            let Some((tx, version)) = m.joining.take() else {
                continue;
            };
            let mut resp = joined(id, version);
            if *id == leader {
                resp.members = roster.clone();
            }
            let _ = tx.try_send(resp);
        }
    }
}

/// The groups this shard coordinates.
pub struct Groups {
    groups: RefCell<HashMap<String, Group>>,
    limits: super::GroupLimits,
    refused: Rc<super::Refusals>,
    sweeping: Cell<bool>,
    /// Wakes a sweep that sleeps until an empty group is due (a join).
    sweep_kick: (flume::Sender<()>, flume::Receiver<()>),
    next_member: Cell<u64>,
    initial_delay: Duration,
    /// How long an empty group stays (Empty to DescribeGroups and
    /// ListGroups, deletable), as Kafka keeps one until its next offsets
    /// cleanup (`offsets.retention.check.interval.ms`).
    empty_kept_for: Duration,
}

impl Groups {
    /// Forgets every group; members waiting in a join or sync hear back
    /// when their channels close.
    pub fn forget_all(&self) {
        self.groups.borrow_mut().clear();
    }

    /// Whether `group` has members (joined, or joining).
    pub fn has_members(&self, group: &str) -> bool {
        self.groups.borrow().get(group).is_some_and(|g| !g.members.is_empty())
    }

    /// Whether `group` exists here, with members or empty (until deleted).
    pub fn knows(&self, group: &str) -> bool {
        self.groups.borrow().contains_key(group)
    }

    pub fn new(
        initial_delay: Duration,
        empty_kept_for: Duration,
        limits: super::GroupLimits,
        refused: Rc<super::Refusals>,
    ) -> Self {
        Self {
            groups: RefCell::new(HashMap::new()),
            limits,
            refused,
            sweeping: Cell::new(false),
            sweep_kick: flume::bounded(1),
            next_member: Cell::new(0),
            initial_delay,
            empty_kept_for,
        }
    }

    /// For OffsetCommit, as Kafka decides it: a standalone consumer's
    /// commit (no generation) only to a group without members; a member's
    /// only for the current generation, and not while the new generation's
    /// assignment is being synced. During PreparingRebalance a member still
    /// may: that is when consumers commit what they read before rejoining.
    pub fn check_commit(&self, group: &str, member: &str, instance: Option<&str>, generation: i32) -> Result<(), i16> {
        let groups = self.groups.borrow();
        let g = groups.get(group);
        let members = g.map_or(0, |g| g.members.len());
        if generation < 0 && members == 0 {
            return Ok(());
        }
        let Some(g) = g else {
            return Err(errors::UNKNOWN_MEMBER_ID);
        };
        g.check_instance(member, instance)?;
        if g.phase == Phase::CompletingRebalance {
            return Err(errors::REBALANCE_IN_PROGRESS);
        }
        if !g.members.contains_key(member) {
            return Err(errors::UNKNOWN_MEMBER_ID);
        }
        if generation != g.generation {
            return Err(errors::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// `group` as DescribeGroups shows it, if it has members (or member
    /// ids handed out).
    pub fn view(&self, group: &str) -> Option<GroupView> {
        let groups = self.groups.borrow();
        let g = groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = g
            .order
            .iter()
            .filter_map(|id| g.members.get(id).map(|m| (id, m)))
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                // Only a stable group's members are described with their
                // subscription and assignment (as Kafka's describeNoMetadata
                // otherwise): in a rebalance neither is settled.
                metadata: if g.phase == Phase::Stable {
                    m.protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default()
                } else {
                    Bytes::new()
                },
                assignment: if g.phase == Phase::Stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Some(GroupView {
            state: g.phase.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        })
    }

    /// Every group with members (or member ids handed out): its id,
    /// protocol type and state.
    pub fn listed(&self) -> Vec<(String, String, &'static str)> {
        self.groups
            .borrow()
            .iter()
            .map(|(id, g)| (id.clone(), g.protocol_type.clone().unwrap_or_default(), g.phase.name()))
            .collect()
    }

    /// The topics `group`'s members subscribe to, for OffsetDelete: `None`
    /// when the group has members but does not speak the consumer protocol
    /// (so its subscriptions cannot be read).
    pub fn subscribed_topics(&self, group: &str) -> Option<std::collections::HashSet<String>> {
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group).filter(|g| !g.members.is_empty()) else {
            return Some(Default::default());
        };
        if g.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL) {
            return None;
        }
        let mut topics = std::collections::HashSet::new();
        for m in g.members.values() {
            // Every protocol the member offered names its subscription; a
            // metadata blob that does not decode subscribes to nothing we
            // can see, as in Kafka.
            for (_, metadata) in &m.protocols {
                if let Some(sub) = decode_subscription(metadata) {
                    topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
                }
            }
        }
        Some(topics)
    }

    /// Forgets a group without members (DeleteGroups): whether there was
    /// one (a group with members stays).
    pub fn remove_if_empty(&self, group: &str) -> bool {
        let mut groups = self.groups.borrow_mut();
        match groups.get(group) {
            Some(g) if g.members.is_empty() => {
                groups.remove(group);
                true
            }
            _ => false,
        }
    }

    fn new_member_id(&self, client: &str) -> String {
        let n = self.next_member.get();
        self.next_member.set(n + 1);
        format!("{client}-{n}-{}", uuid::Uuid::new_v4())
    }
}

/// A successful JoinGroup answer (the leader's roster is added apart).
fn join_response(
    generation: i32,
    protocol_type: Option<String>,
    member_id: &str,
    protocol: &str,
    leader: &str,
    version: i16,
) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default()
        .with_generation_id(generation)
        .with_protocol_name(Some(StrBytes::from_string(protocol.to_string())))
        .with_leader(StrBytes::from_string(leader.to_string()))
        .with_member_id(StrBytes::from_string(member_id.to_string()));
    if version >= 7 {
        resp.protocol_type = protocol_type.map(StrBytes::from_string);
    }
    resp
}

pub fn join_error(code: i16, member_id: StrBytes) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_member_id(member_id)
}

pub async fn join(b: &Rc<Broker>, req: JoinGroupRequest, version: i16, client: ClientInfo) -> JoinGroupResponse {
    let groups = &b.groups.members;
    let group_id = req.group_id.0.to_string();
    if group_id.is_empty() {
        return join_error(errors::INVALID_GROUP_ID, req.member_id);
    }
    if !SESSION_TIMEOUT_MS.contains(&req.session_timeout_ms) {
        return join_error(errors::INVALID_SESSION_TIMEOUT, req.member_id);
    }
    let protocols: Vec<(String, Bytes)> = req
        .protocols
        .iter()
        .map(|p| (p.name.to_string(), p.metadata.clone()))
        .collect();
    let session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
    // v0 has no rebalance timeout: the session timeout stands in.
    let rebalance_timeout = if version >= 1 && req.rebalance_timeout_ms > 0 {
        Duration::from_millis(req.rebalance_timeout_ms as u64)
    } else {
        session_timeout
    };
    let instance = (version >= 5)
        .then(|| req.group_instance_id.as_ref().map(|i| i.to_string()))
        .flatten();
    let now = Instant::now();
    let rx = {
        let mut all = groups.groups.borrow_mut();
        if !all.contains_key(&group_id) && all.len() >= groups.limits.groups {
            return join_error(groups.refused.group(groups.limits.groups), req.member_id);
        }
        let g = all.entry(group_id.clone()).or_insert_with(Group::new);
        if !g.accepts(req.protocol_type.as_str(), &protocols) {
            return join_error(errors::INCONSISTENT_GROUP_PROTOCOL, req.member_id);
        }
        let mut member_id = req.member_id.to_string();
        let prefix = if client.client_id.is_empty() {
            "consumer"
        } else {
            client.client_id.as_str()
        };
        // A static member that is new joins at once: its instance id
        // names it, so a retried join leaves no ghost behind.
        let mut static_new = false;
        if let Some(instance) = &instance {
            let held = g.instances.get(instance).cloned();
            match held {
                Some(old) if member_id.is_empty() => {
                    let new_id = groups.new_member_id(prefix);
                    g.replace(&old, &new_id);
                    member_id = new_id;
                    let keeps_protocol = g
                        .protocol
                        .as_ref()
                        .is_some_and(|chosen| protocols.iter().any(|(n, _)| n == chosen));
                    let stable = g.phase == Phase::Stable && keeps_protocol;
                    if let Some(m) = g.members.get_mut(&member_id).filter(|_| stable) {
                        // Back within its session: its old assignment, no rebalance.
                        m.protocols = protocols;
                        m.client_id = client.client_id;
                        m.client_host = client.host;
                        m.session_timeout = session_timeout;
                        m.rebalance_timeout = rebalance_timeout;
                        m.last_seen = now;
                        return g.rejoined_static(&member_id, version);
                    }
                }
                Some(held) if held != member_id => {
                    return join_error(errors::FENCED_INSTANCE_ID, req.member_id);
                }
                Some(_) => {}
                None if member_id.is_empty() => {
                    if g.members.len() + g.pending.len() >= groups.limits.members {
                        return join_error(groups.refused.member(groups.limits.members), req.member_id);
                    }
                    member_id = groups.new_member_id(prefix);
                    static_new = true;
                }
                None => {}
            }
        }
        if member_id.is_empty() && g.members.len() + g.pending.len() >= groups.limits.members {
            return join_error(groups.refused.member(groups.limits.members), req.member_id);
        }
        if member_id.is_empty() {
            member_id = groups.new_member_id(prefix);
            if version >= 4 {
                // KIP-394: the client must come back with its id, so a
                // retried join does not leave a ghost member behind.
                g.pending.insert(member_id.clone(), now + session_timeout);
                drop(all);
                ensure_sweeping(b);
                return join_error(errors::MEMBER_ID_REQUIRED, StrBytes::from_string(member_id));
            }
        } else if !static_new && !g.members.contains_key(&member_id) && g.pending.remove(&member_id).is_none() {
            return join_error(errors::UNKNOWN_MEMBER_ID, req.member_id);
        }
        if let Some(instance) = &instance {
            g.instances.insert(instance.clone(), member_id.clone());
        }
        let (tx, rx) = flume::bounded(1);
        match g.members.get_mut(&member_id) {
            Some(m) => {
                m.protocols = protocols;
                m.instance_id = instance.clone();
                m.client_id = client.client_id;
                m.client_host = client.host;
                m.session_timeout = session_timeout;
                m.rebalance_timeout = rebalance_timeout;
                m.last_seen = now;
                m.joining = Some((tx, version));
            }
            None => {
                g.order.push(member_id.clone());
                g.members.insert(
                    member_id.clone(),
                    Member {
                        instance_id: instance.clone(),
                        client_id: client.client_id,
                        client_host: client.host,
                        session_timeout,
                        rebalance_timeout,
                        protocols,
                        assignment: Bytes::new(),
                        last_seen: now,
                        joining: Some((tx, version)),
                        syncing: None,
                    },
                );
            }
        }
        g.protocol_type = Some(req.protocol_type.to_string());
        if g.phase == Phase::Empty && !groups.initial_delay.is_zero() {
            g.prepare_rebalance(now);
            g.initial_delay_limit = Some(now + rebalance_timeout);
        }
        if let Some(limit) = g.initial_delay_limit {
            // Each join during the initial delay waits for more joiners.
            g.rebalance_deadline = Some((now + groups.initial_delay).min(limit));
        } else if g.phase != Phase::PreparingRebalance {
            g.prepare_rebalance(now);
        }
        g.maybe_complete_join(false);
        rx
    };
    ensure_sweeping(b);
    // The sweep completes the join by the rebalance deadline at the latest;
    // a dropped sender means the member was removed meanwhile.
    rx.recv_async()
        .await
        .unwrap_or_else(|_| join_error(errors::UNKNOWN_MEMBER_ID, req.member_id))
}

pub async fn sync(b: &Rc<Broker>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let groups = &b.groups.members;
    let fail = |code| SyncGroupResponse::default().with_error_code(code);
    let member_id = req.member_id.to_string();
    let rx = {
        let mut all = groups.groups.borrow_mut();
        let Some(g) = all.get_mut(req.group_id.0.as_str()) else {
            return fail(errors::UNKNOWN_MEMBER_ID);
        };
        if let Err(code) = g.check_instance(&member_id, req.group_instance_id.as_deref()) {
            return fail(code);
        }
        if !g.members.contains_key(&member_id) {
            return fail(errors::UNKNOWN_MEMBER_ID);
        }
        if req.generation_id != g.generation {
            return fail(errors::ILLEGAL_GENERATION);
        }
        let named = |mut resp: SyncGroupResponse, g: &Group| {
            if version >= 5 {
                resp.protocol_type = g.protocol_type.clone().map(StrBytes::from_string);
                resp.protocol_name = g.protocol.clone().map(StrBytes::from_string);
            }
            resp
        };
        match g.phase {
            Phase::Empty => return fail(errors::UNKNOWN_MEMBER_ID),
            Phase::PreparingRebalance => return fail(errors::REBALANCE_IN_PROGRESS),
            Phase::Stable => {
                let m = g.members.get_mut(&member_id).expect("checked above");
                m.last_seen = Instant::now();
                let resp = SyncGroupResponse::default().with_assignment(m.assignment.clone());
                return named(resp, g);
            }
            Phase::CompletingRebalance => {}
        }
        let (tx, rx) = flume::bounded(1);
        let m = g.members.get_mut(&member_id).expect("checked above");
        m.last_seen = Instant::now();
        m.syncing = Some(tx);
        if g.leader.as_deref() == Some(member_id.as_str()) {
            for a in &req.assignments {
                if let Some(m) = g.members.get_mut(a.member_id.as_str()) {
                    m.assignment = a.assignment.clone();
                }
            }
            g.phase = Phase::Stable;
            let ids: Vec<String> = g.members.keys().cloned().collect();
            for id in ids {
                let m = g.members.get_mut(&id).expect("listed");
                if let Some(tx) = m.syncing.take() {
                    let resp = SyncGroupResponse::default().with_assignment(m.assignment.clone());
                    let _ = tx.try_send(named(resp, g));
                }
            }
        }
        rx
    };
    rx.recv_async()
        .await
        .unwrap_or_else(|_| fail(errors::REBALANCE_IN_PROGRESS))
}

pub fn heartbeat(b: &Rc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    let code = {
        let mut all = b.groups.members.groups.borrow_mut();
        match all.get_mut(req.group_id.0.as_str()) {
            None => errors::UNKNOWN_MEMBER_ID,
            Some(g) => match g.check_instance(req.member_id.as_str(), req.group_instance_id.as_deref()) {
                Err(code) => code,
                Ok(()) => match g.members.get_mut(req.member_id.as_str()) {
                    None => errors::UNKNOWN_MEMBER_ID,
                    Some(m) => {
                        m.last_seen = Instant::now();
                        if req.generation_id != g.generation {
                            errors::ILLEGAL_GENERATION
                        } else if g.phase == Phase::PreparingRebalance {
                            errors::REBALANCE_IN_PROGRESS
                        } else {
                            errors::NONE
                        }
                    }
                },
            },
        }
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave(b: &Rc<Broker>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    // Each leaving member's id, and (v3+) its instance id.
    let leaving: Vec<(StrBytes, Option<StrBytes>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.clone(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(req.member_id.clone(), None)]
    };
    let mut codes = Vec::with_capacity(leaving.len());
    {
        let mut all = b.groups.members.groups.borrow_mut();
        let now = Instant::now();
        let g = all.get_mut(req.group_id.0.as_str());
        match g {
            None => codes.resize(leaving.len(), errors::UNKNOWN_MEMBER_ID),
            Some(g) => {
                let mut any = false;
                for (id, instance) in &leaving {
                    // A static member may be named by its instance id alone
                    // (an admin removing it); a member id given must hold it.
                    let target = match instance.as_deref() {
                        None => Ok(id.to_string()),
                        Some(instance) => match g.instances.get(instance) {
                            None => Err(errors::UNKNOWN_MEMBER_ID),
                            Some(held) if !id.is_empty() && held.as_str() != id.as_str() => {
                                Err(errors::FENCED_INSTANCE_ID)
                            }
                            Some(held) => Ok(held.clone()),
                        },
                    };
                    let code = match target {
                        Err(code) => code,
                        Ok(target) if g.remove(&target).is_some() => {
                            any = true;
                            errors::NONE
                        }
                        Ok(_) => errors::UNKNOWN_MEMBER_ID,
                    };
                    codes.push(code);
                }
                if any {
                    on_members_gone(g, now);
                }
            }
        }
    }
    if version >= 3 {
        let members = leaving
            .into_iter()
            .zip(codes)
            .map(|((id, instance), code)| {
                MemberResponse::default()
                    .with_member_id(id)
                    .with_group_instance_id(instance)
                    .with_error_code(code)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    } else {
        LeaveGroupResponse::default().with_error_code(codes[0])
    }
}

/// After members left or expired: the rest rebalance, or the group empties.
fn on_members_gone(g: &mut Group, now: Instant) {
    if g.members.is_empty() {
        g.phase = Phase::Empty;
        g.leader = None;
        g.protocol = None;
        g.rebalance_deadline = None;
        g.generation += 1;
        return;
    }
    if g.phase != Phase::PreparingRebalance {
        g.prepare_rebalance(now);
    }
    g.maybe_complete_join(false);
}

/// Starts the shard's sweep unless it runs, or wakes it (a sweep that
/// only waits for empty groups to be forgotten sleeps until the first is
/// due); it stops once no group is left.
fn ensure_sweeping(b: &Rc<Broker>) {
    let members = &b.groups.members;
    if members.sweeping.replace(true) {
        let _ = members.sweep_kick.0.try_send(());
        return;
    }
    let b = b.clone();
    glommio::spawn_local(async move {
        let members = &b.groups.members;
        loop {
            let Some(wait) = sweep(members) else {
                members.sweeping.set(false);
                return;
            };
            let kicked = async {
                let _ = members.sweep_kick.1.recv_async().await;
            };
            futures_lite::future::or(glommio::timer::sleep(wait), kicked).await;
        }
    })
    .detach();
}

/// Expires sessions and handed-out ids, completes overdue rebalances, and
/// forgets groups empty for `empty_kept_for` (their offsets stay). Returns
/// how long until the next sweep is due: soon while any group has members
/// or handed-out ids, else when the first empty group is to be forgotten;
/// `None` when no group is left.
fn sweep(groups: &Groups) -> Option<Duration> {
    let now = Instant::now();
    let mut all = groups.groups.borrow_mut();
    for g in all.values_mut() {
        g.pending.retain(|_, until| now < *until);
        let expired: Vec<String> = g
            .members
            .iter()
            .filter(|(_, m)| !m.alive(now))
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                g.remove(id);
            }
            on_members_gone(g, now);
        }
        if g.rebalance_deadline.is_some_and(|d| now >= d) {
            g.maybe_complete_join(true);
        }
    }
    let kept_for = groups.empty_kept_for;
    for g in all.values_mut() {
        g.empty_since = if g.idle() {
            Some(g.empty_since.unwrap_or(now))
        } else {
            None
        };
    }
    all.retain(|_, g| g.empty_since.is_none_or(|since| now < since + kept_for));
    if all.values().any(|g| g.empty_since.is_none()) {
        return Some(SWEEP);
    }
    all.values()
        .filter_map(|g| g.empty_since)
        .map(|since| (since + kept_for).saturating_duration_since(now))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_group_stays_until_kept_for_passes_and_the_sweep_sleeps_till_then() {
        let kept_for = Duration::from_millis(300);
        let groups = Groups::new(
            Duration::ZERO,
            kept_for,
            super::super::GroupLimits {
                groups: 10,
                members: 10,
            },
            Rc::new(super::super::Refusals::default()),
        );
        let mut g = Group::new();
        g.pending
            .insert("m-1".into(), Instant::now() + Duration::from_secs(3600));
        groups.groups.borrow_mut().insert("g".into(), g);
        // A handed-out member id: the sweep comes back soon.
        assert_eq!(sweep(&groups), Some(SWEEP));

        if let Some(g) = groups.groups.borrow_mut().get_mut("g") {
            g.pending.clear();
        }
        let wait = sweep(&groups).expect("the empty group is kept");
        assert!(
            wait > SWEEP && wait <= kept_for,
            "sleeps until the group is due: {wait:?}"
        );
        assert!(groups.knows("g") && !groups.has_members("g"));
        assert_eq!(groups.view("g").map(|v| v.state), Some("Empty"));

        std::thread::sleep(kept_for + Duration::from_millis(20));
        assert_eq!(sweep(&groups), None, "nothing left: the sweep stops");
        assert!(!groups.knows("g"));
    }
}
