//! The consumer side of Kafka's group protocol, for `consume --group`:
//! find the coordinator, join (with KIP-394's member-id round), the
//! leader's range assignment, sync, heartbeats that notice a rebalance,
//! commits of the positions reached, and leaving. Each executor is one
//! member, so the group, not the generator, decides who reads what.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::client::Conn;
use crate::cluster;

const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT: Duration = Duration::from_secs(1);
const PROTOCOL: &str = "range";

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One membership of the group, for one generation.
pub struct Member {
    conn: Rc<Conn>,
    group: String,
    topic: String,
    pub member_id: String,
    pub generation: i32,
    /// The partitions of the topic this member reads in this generation.
    pub assigned: Vec<i32>,
    /// Set by the heartbeat when the group starts rebalancing.
    pub rebalance: Rc<Cell<bool>>,
    heartbeat: Option<glommio::Task<()>>,
}

/// The group's coordinator, asked of the first seed that answers.
async fn coordinator(seeds: &[SocketAddr], group: &str) -> anyhow::Result<SocketAddr> {
    for &addr in seeds {
        let Ok(conn) = Conn::connect(addr).await else { continue };
        let req = FindCoordinatorRequest::default().with_key(str(group)).with_key_type(0);
        let resp: FindCoordinatorResponse = match conn.call(ApiKey::FindCoordinator, 1, &req).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        if resp.error_code != 0 {
            bail!("FindCoordinator for {group}: Kafka error code {}", resp.error_code);
        }
        return cluster::resolve(&format!("{}:{}", resp.host.as_str(), resp.port));
    }
    bail!("no broker answered FindCoordinator for {group}")
}

/// Joins `group` for `topic` (whose partitions are `partitions`) and
/// returns this member's share, once the group has synced. `member_id` is
/// the id from an earlier generation, if any.
pub async fn join(
    seeds: &[SocketAddr],
    group: &str,
    topic: &str,
    partitions: &[i32],
    mut member_id: String,
) -> anyhow::Result<Member> {
    let conn = Conn::connect(coordinator(seeds, group).await?).await?;
    let mut subscription = BytesMut::new();
    subscription.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![str(topic)])
        .encode(&mut subscription, 0)?;
    let subscription = subscription.freeze();
    for _attempt in 0..20 {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(str(group)))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(str(&member_id))
            .with_protocol_type(str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(str(PROTOCOL))
                .with_metadata(subscription.clone())]);
        let joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &req).await?;
        match joined.error_code {
            0 => {}
            MEMBER_ID_REQUIRED => {
                member_id = joined.member_id.to_string();
                continue;
            }
            REBALANCE_IN_PROGRESS => continue,
            code => bail!("JoinGroup {group}: Kafka error code {code}"),
        }
        member_id = joined.member_id.to_string();
        let assignments = if joined.leader.as_str() == member_id {
            let members: Vec<String> = joined.members.iter().map(|m| m.member_id.to_string()).collect();
            range_assign(&members, partitions)
                .into_iter()
                .map(|(m, parts)| -> anyhow::Result<SyncGroupRequestAssignment> {
                    Ok(SyncGroupRequestAssignment::default()
                        .with_member_id(str(&m))
                        .with_assignment(encode_assignment(topic, &parts)?))
                })
                .collect::<anyhow::Result<_>>()?
        } else {
            Vec::new()
        };
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(str(group)))
            .with_generation_id(joined.generation_id)
            .with_member_id(str(&member_id))
            .with_assignments(assignments);
        let synced: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 3, &req).await?;
        match synced.error_code {
            0 => {}
            REBALANCE_IN_PROGRESS => continue,
            code => bail!("SyncGroup {group}: Kafka error code {code}"),
        }
        let assigned = decode_assignment(synced.assignment, topic)?;
        let rebalance = Rc::new(Cell::new(false));
        let heartbeat = glommio::spawn_local(heartbeats(
            conn.clone(),
            group.to_string(),
            member_id.clone(),
            joined.generation_id,
            rebalance.clone(),
        ));
        return Ok(Member {
            conn,
            group: group.to_string(),
            topic: topic.to_string(),
            member_id,
            generation: joined.generation_id,
            assigned,
            rebalance,
            heartbeat: Some(heartbeat),
        });
    }
    bail!("the group {group} did not settle after 20 joins")
}

async fn heartbeats(conn: Rc<Conn>, group: String, member: String, generation: i32, rebalance: Rc<Cell<bool>>) {
    loop {
        glommio::timer::sleep(HEARTBEAT).await;
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(str(&group)))
            .with_generation_id(generation)
            .with_member_id(str(&member));
        match conn.call::<_, HeartbeatResponse>(ApiKey::Heartbeat, 3, &req).await {
            Ok(r) if r.error_code == 0 => {}
            // A rebalance, or this generation is over: rejoin.
            _ => {
                rebalance.set(true);
                return;
            }
        }
    }
}

impl Member {
    /// Committed offsets of the assigned partitions (absent: never committed).
    pub async fn committed(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(str(&self.group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(str(&self.topic)))
                .with_partition_indexes(self.assigned.clone())]));
        let resp: OffsetFetchResponse = self.conn.call(ApiKey::OffsetFetch, 5, &req).await?;
        if resp.error_code != 0 {
            bail!("OffsetFetch {}: Kafka error code {}", self.group, resp.error_code);
        }
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
            .map(|p| (p.partition_index, p.committed_offset))
            .collect())
    }

    /// Commits the positions reached (as this generation's member).
    pub async fn commit(&self, positions: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(str(&self.group)))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(str(&self.member_id))
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(str(&self.topic)))
                .with_partitions(
                    positions
                        .iter()
                        .map(|(&p, &o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                        })
                        .collect(),
                )]);
        let resp: OffsetCommitResponse = self.conn.call(ApiKey::OffsetCommit, 2, &req).await?;
        match resp
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .find(|&c| c != 0)
        {
            None => Ok(()),
            Some(code) => Err(anyhow!("OffsetCommit {}: Kafka error code {code}", self.group)),
        }
    }

    /// Leaves the group, so the others take over at once.
    pub async fn leave(mut self) -> anyhow::Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.cancel().await;
        }
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(str(&self.group)))
            .with_members(vec![MemberIdentity::default().with_member_id(str(&self.member_id))]);
        let resp: LeaveGroupResponse = self.conn.call(ApiKey::LeaveGroup, 3, &req).await?;
        if resp.error_code != 0 {
            bail!("LeaveGroup {}: Kafka error code {}", self.group, resp.error_code);
        }
        Ok(())
    }

    /// Stops heartbeating without leaving (before rejoining).
    pub async fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.cancel().await;
        }
    }
}

/// Kafka's range assignor for one topic: members in id order, each a
/// contiguous run of partitions, the first `n % members` one longer.
pub fn range_assign(members: &[String], partitions: &[i32]) -> BTreeMap<String, Vec<i32>> {
    let mut members = members.to_vec();
    members.sort();
    let mut partitions = partitions.to_vec();
    partitions.sort();
    let mut out = BTreeMap::new();
    let (each, extra) = (
        partitions.len() / members.len().max(1),
        partitions.len() % members.len().max(1),
    );
    let mut at = 0;
    for (i, m) in members.into_iter().enumerate() {
        let n = each + usize::from(i < extra);
        out.insert(m, partitions[at..at + n].to_vec());
        at += n;
    }
    out
}

fn encode_assignment(topic: &str, partitions: &[i32]) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![AssignedPartitions::default()
            .with_topic(TopicName(str(topic)))
            .with_partitions(partitions.to_vec())])
        .encode(&mut buf, 0)?;
    Ok(buf.freeze())
}

fn decode_assignment(mut bytes: Bytes, topic: &str) -> anyhow::Result<Vec<i32>> {
    if bytes.is_empty() {
        return Ok(Vec::new()); // nothing assigned this generation
    }
    if bytes.remaining() < 2 {
        bail!("assignment too short");
    }
    let version = bytes.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut bytes, version)?;
    Ok(a.assigned_partitions
        .into_iter()
        .filter(|t| t.topic.as_str() == topic)
        .flat_map(|t| t.partitions)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_splits_contiguously_first_members_longer() {
        let members = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        let got = range_assign(&members, &[7, 0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(got["a"], vec![0, 1, 2]);
        assert_eq!(got["b"], vec![3, 4, 5]);
        assert_eq!(got["c"], vec![6, 7]);
        let lone = range_assign(&["x".to_string()], &[1, 0]);
        assert_eq!(lone["x"], vec![0, 1]);
        let more_members = range_assign(&["a".into(), "b".into()], &[0]);
        assert_eq!((more_members["a"].len(), more_members["b"].len()), (1, 0));
    }

    #[test]
    fn assignments_roundtrip_in_the_consumer_protocol_layout() {
        let bytes = encode_assignment("t", &[3, 5]).unwrap();
        assert_eq!(&bytes[..2], &[0, 0], "version 0 first");
        assert_eq!(decode_assignment(bytes, "t").unwrap(), vec![3, 5]);
        assert_eq!(
            decode_assignment(encode_assignment("other", &[1]).unwrap(), "t").unwrap(),
            Vec::<i32>::new()
        );
        assert!(decode_assignment(Bytes::new(), "t").unwrap().is_empty());
    }
}
