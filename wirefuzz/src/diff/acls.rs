//! ACL scenarios. Without an authorizer (the default corpus) both brokers
//! answer the ACL APIs with SECURITY_DISABLED. With one (`run_authorized`:
//! Kafka with StandardAuthorizer and allow.everyone.if.no.acl.found=true,
//! corestream with `[authorizer]` the same, the client anonymous), the
//! scenarios create, describe and delete ACLs with Kafka's checks, and put
//! DENY and ALLOW ACLs on this run's topics and groups to compare the
//! authorization errors of each API. Lists whose order Kafka leaves to a
//! hash map are sorted before they are compared.

use std::time::{Duration, Instant};

use anyhow::bail;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;

use super::corpus::{self, s, topic};
use super::Session;

const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const DESCRIBE: i8 = 8;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const ANONYMOUS: &str = "User:ANONYMOUS";

fn acl(rt: i8, name: &str, pattern: i8, principal: &str, op: i8, permission: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rt)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op)
        .with_permission_type(permission)
}

fn describe_filter(rt: i8, name: Option<&str>, pattern: i8) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(rt)
        .with_resource_name_filter(name.map(s))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

fn delete_filter(rt: i8, name: Option<&str>, pattern: i8, op: i8) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(rt)
        .with_resource_name_filter(name.map(s))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(op)
        .with_permission_type(ANY)
}

/// Both answers' resources and ACLs in one order (Kafka groups them in a hash map).
fn sorted_describe(mut r: DescribeAclsResponse) -> DescribeAclsResponse {
    for res in &mut r.resources {
        res.acls.sort_by_key(|a| {
            (
                a.principal.to_string(),
                a.host.to_string(),
                a.operation,
                a.permission_type,
            )
        });
    }
    r.resources
        .sort_by_key(|res| (res.resource_type, res.resource_name.to_string(), res.pattern_type));
    r
}

fn describe(x: &mut Session, step: &str, req: &DescribeAclsRequest) -> anyhow::Result<[DescribeAclsResponse; 2]> {
    let v = x.version(ApiKey::DescribeAcls, 3)?;
    let [a, b]: [DescribeAclsResponse; 2] = x.each(ApiKey::DescribeAcls, v, |_| req.clone())?;
    let (a, b) = (sorted_describe(a), sorted_describe(b));
    x.record(step, &format!("DescribeAcls v{v}"), &a, &b);
    Ok([a, b])
}

fn create(x: &mut Session, step: &str, creations: Vec<AclCreation>) -> anyhow::Result<()> {
    let v = x.version(ApiKey::CreateAcls, 3)?;
    x.compare::<_, CreateAclsResponse>(step, ApiKey::CreateAcls, v, |_| {
        CreateAclsRequest::default().with_creations(creations.clone())
    })?;
    Ok(())
}

fn delete(x: &mut Session, step: &str, filters: Vec<DeleteAclsFilter>) -> anyhow::Result<()> {
    let v = x.version(ApiKey::DeleteAcls, 3)?;
    let [mut a, mut b]: [DeleteAclsResponse; 2] = x.each(ApiKey::DeleteAcls, v, |_| {
        DeleteAclsRequest::default().with_filters(filters.clone())
    })?;
    for r in [&mut a, &mut b] {
        for f in &mut r.filter_results {
            f.matching_acls.sort_by_key(|m| {
                (
                    m.resource_type,
                    m.resource_name.to_string(),
                    m.pattern_type,
                    m.principal.to_string(),
                    m.operation,
                    m.permission_type,
                )
            });
        }
    }
    x.record(step, &format!("DeleteAcls v{v}"), &a, &b);
    Ok(())
}

/// Waits (not compared) until both brokers hold exactly `count` ACLs:
/// Kafka's authorizer applies them when its metadata catches up.
fn settle(x: &mut Session, count: usize) -> anyhow::Result<()> {
    let v = x.version(ApiKey::DescribeAcls, 3)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for side in 0..2 {
        loop {
            let r: DescribeAclsResponse = x.one(side, ApiKey::DescribeAcls, v, &describe_filter(ANY, None, ANY))?;
            let n: usize = r.resources.iter().map(|res| res.acls.len()).sum();
            if r.error_code == 0 && n == count {
                break;
            }
            if Instant::now() > deadline {
                bail!("{}: {n} ACLs, not {count}, after 30 s", super::SIDES[side]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Without an authorizer: SECURITY_DISABLED from each ACL API.
pub fn disabled(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("acls_disabled");
    let t = format!("acl-{tag}");
    create(x, "create", vec![acl(TOPIC, &t, LITERAL, "User:alice", READ, ALLOW)])?;
    describe(x, "describe", &describe_filter(ANY, None, ANY))?;
    delete(x, "delete", vec![delete_filter(TOPIC, Some(&t), ANY, ANY)])?;
    Ok(())
}

/// With an authorizer on both brokers: every run starts and ends with no ACLs.
pub fn run_authorized(x: &mut Session, tag: &str) -> anyhow::Result<()> {
    x.scenario("acl_apis");
    // Not compared: what an earlier, interrupted run left.
    let v = x.version(ApiKey::DeleteAcls, 3)?;
    let _: [DeleteAclsResponse; 2] = x.each(ApiKey::DeleteAcls, v, |_| {
        DeleteAclsRequest::default().with_filters(vec![delete_filter(ANY, None, ANY, ANY)])
    })?;
    settle(x, 0)?;
    let denied = format!("acl-denied-{tag}");
    let prefix = format!("acl-p-{tag}-");
    let granted = format!("acl-r-{tag}");
    let group = format!("acl-g-{tag}");
    let hidden_group = format!("acl-gd-{tag}");
    corpus::create(
        x,
        "create topics",
        vec![
            corpus::new_topic(&denied, 1, 1, &[]),
            corpus::new_topic(&format!("{prefix}x"), 1, 1, &[]),
            corpus::new_topic(&granted, 1, 1, &[]),
        ],
    )?;
    for (step, bad) in [
        (
            "cluster not kafka-cluster",
            acl(CLUSTER, "other", LITERAL, "User:alice", ALL, ALLOW),
        ),
        ("empty name", acl(TOPIC, "", LITERAL, "User:alice", READ, ALLOW)),
        (
            "principal without a type",
            acl(TOPIC, "x", LITERAL, "alice", READ, ALLOW),
        ),
        ("resource type ANY", acl(ANY, "x", LITERAL, "User:alice", READ, ALLOW)),
        ("pattern MATCH", acl(TOPIC, "x", MATCH, "User:alice", READ, ALLOW)),
        ("pattern ANY", acl(TOPIC, "x", ANY, "User:alice", READ, ALLOW)),
        ("operation ANY", acl(TOPIC, "x", LITERAL, "User:alice", ANY, ALLOW)),
        ("permission ANY", acl(TOPIC, "x", LITERAL, "User:alice", READ, ANY)),
    ] {
        create(x, &format!("invalid: {step}"), vec![bad])?;
    }
    create(
        x,
        "create",
        vec![
            acl(TOPIC, &denied, LITERAL, ANONYMOUS, ALL, DENY),
            acl(TOPIC, &prefix, PREFIXED, "User:alice", ALL, ALLOW),
            acl(TOPIC, &granted, LITERAL, ANONYMOUS, READ, ALLOW),
            acl(GROUP, &group, LITERAL, ANONYMOUS, READ, DENY),
            acl(GROUP, &group, LITERAL, ANONYMOUS, DESCRIBE, ALLOW),
            acl(GROUP, &hidden_group, LITERAL, ANONYMOUS, DESCRIBE, DENY),
        ],
    )?;
    create(x, "again", vec![acl(TOPIC, &denied, LITERAL, ANONYMOUS, ALL, DENY)])?;
    settle(x, 6)?;
    describe(x, "all", &describe_filter(ANY, None, ANY))?;
    describe(x, "topics", &describe_filter(TOPIC, None, ANY))?;
    describe(x, "literal by name", &describe_filter(TOPIC, Some(&denied), LITERAL))?;
    describe(x, "prefixed", &describe_filter(ANY, None, PREFIXED))?;
    describe(x, "match", &describe_filter(TOPIC, Some(&format!("{prefix}x")), MATCH))?;
    describe(x, "any by name", &describe_filter(ANY, Some(&prefix), ANY))?;
    let by_principal = describe_filter(ANY, None, ANY).with_principal_filter(Some(s("User:alice")));
    describe(x, "by principal", &by_principal)?;
    describe(
        x,
        "by operation",
        &describe_filter(ANY, None, ANY).with_operation(DESCRIBE),
    )?;
    describe(
        x,
        "by permission",
        &describe_filter(ANY, None, ANY).with_permission_type(DENY),
    )?;
    describe(
        x,
        "by host",
        &describe_filter(ANY, None, ANY).with_host_filter(Some(s("10.0.0.1"))),
    )?;

    x.scenario("acl_topics");
    let mv = x.version(ApiKey::Metadata, 12)?;
    for (step, name) in [
        ("denied", &denied),
        ("other principal's prefix", &format!("{prefix}x")),
        ("granted read", &granted),
    ] {
        x.compare::<_, MetadataResponse>(&format!("metadata {step}"), ApiKey::Metadata, mv, |_| {
            corpus::metadata(&[name], false).with_include_topic_authorized_operations(true)
        })?;
    }
    x.compare::<_, MetadataResponse>("metadata denied, auto-create", ApiKey::Metadata, mv, |_| {
        corpus::metadata(&[&denied], true)
    })?;
    let batch = corpus::batch(&[(None, "v", corpus::T0)])?;
    let pv = x.version(ApiKey::Produce, 11)?;
    for (step, name) in [
        ("denied", &denied),
        ("other principal's prefix", &format!("{prefix}x")),
        ("granted read only", &granted),
    ] {
        x.compare::<_, ProduceResponse>(&format!("produce {step}"), ApiKey::Produce, pv, |_| {
            corpus::produce(name, 0, -1, Some(batch.clone()))
        })?;
    }
    let fv = x.version(ApiKey::Fetch, 12)?;
    x.compare::<_, FetchResponse>("fetch denied", ApiKey::Fetch, fv, |_| corpus::fetch(&denied, 0, 0))?;
    x.compare::<_, FetchResponse>("fetch granted", ApiKey::Fetch, fv, |_| corpus::fetch(&granted, 0, 0))?;
    let lv = x.version(ApiKey::ListOffsets, 10)?;
    x.compare::<_, ListOffsetsResponse>("list offsets denied", ApiKey::ListOffsets, lv, |_| {
        corpus::list_offsets(&denied, &[(0, -1)])
    })?;
    x.compare::<_, ListOffsetsResponse>("list offsets granted", ApiKey::ListOffsets, lv, |_| {
        corpus::list_offsets(&granted, &[(0, -1)])
    })?;
    let dv = x.version(ApiKey::DeleteRecords, 2)?;
    x.compare::<_, DeleteRecordsResponse>("delete records denied", ApiKey::DeleteRecords, dv, |_| {
        DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic(&denied))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(0)])])
    })?;
    let cv = x.version(ApiKey::DescribeConfigs, 4)?;
    x.compare::<_, DescribeConfigsResponse>("describe configs denied", ApiKey::DescribeConfigs, cv, |_| {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(corpus::TOPIC_RESOURCE)
            .with_resource_name(s(&denied))
            .with_configuration_keys(Some(vec![s("cleanup.policy")]))])
    })?;
    let iv = x.version(ApiKey::IncrementalAlterConfigs, 1)?;
    x.compare::<_, IncrementalAlterConfigsResponse>(
        "alter configs denied",
        ApiKey::IncrementalAlterConfigs,
        iv,
        |_| {
            IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(corpus::TOPIC_RESOURCE)
                .with_resource_name(s(&denied))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("1000")))])])
        },
    )?;
    let pav = x.version(ApiKey::CreatePartitions, 3)?;
    x.compare::<_, CreatePartitionsResponse>("create partitions denied", ApiKey::CreatePartitions, pav, |_| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic(&denied))
                .with_count(2)
                .with_assignments(None)])
    })?;
    let ctv = x.version(ApiKey::CreateTopics, 7)?;
    x.compare::<_, CreateTopicsResponse>("create existing denied", ApiKey::CreateTopics, ctv, |_| {
        CreateTopicsRequest::default()
            .with_topics(vec![corpus::new_topic(&denied, 1, 1, &[])])
            .with_timeout_ms(30_000)
    })?;
    x.compare::<_, CreateTopicsResponse>("create under another's prefix", ApiKey::CreateTopics, ctv, |_| {
        CreateTopicsRequest::default()
            .with_topics(vec![corpus::new_topic(&format!("{prefix}new"), 1, 1, &[])])
            .with_timeout_ms(30_000)
    })?;
    let dtv = x.version(ApiKey::DeleteTopics, 6)?;
    x.compare::<_, DeleteTopicsResponse>("delete denied", ApiKey::DeleteTopics, dtv, |_| {
        DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteTopicState::default().with_name(Some(topic(&denied)))])
    })?;

    x.scenario("acl_groups");
    let fcv = x.version(ApiKey::FindCoordinator, 5)?;
    // The group's ACLs allow DESCRIBE and deny READ: the coordinator is found, joining is refused.
    corpus::settle_coordinator(x, &group)?;
    x.compare::<_, FindCoordinatorResponse>("find coordinator, read denied", ApiKey::FindCoordinator, fcv, |_| {
        corpus::find_coordinator(&group, fcv)
    })?;
    x.compare::<_, FindCoordinatorResponse>(
        "find coordinator, describe denied",
        ApiKey::FindCoordinator,
        fcv,
        |_| corpus::find_coordinator(&hidden_group, fcv),
    )?;
    let jv = x.version(ApiKey::JoinGroup, 9)?;
    x.compare::<_, JoinGroupResponse>("join, read denied", ApiKey::JoinGroup, jv, |_| {
        corpus::join(&group, "", 10_000)
    })?;
    let hv = x.version(ApiKey::Heartbeat, 4)?;
    x.compare::<_, HeartbeatResponse>("heartbeat, read denied", ApiKey::Heartbeat, hv, |_| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(s("m"))
    })?;
    let ocv = x.version(ApiKey::OffsetCommit, 8)?;
    let commit = |g: &str, t: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(g)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic(t))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(0)])])
    };
    x.compare::<_, OffsetCommitResponse>("commit, group read denied", ApiKey::OffsetCommit, ocv, |_| {
        commit(&group, &granted)
    })?;
    x.compare::<_, OffsetCommitResponse>("commit, topic denied", ApiKey::OffsetCommit, ocv, |_| {
        commit(&format!("acl-free-{tag}"), &denied)
    })?;
    let ofv = x.version(ApiKey::OffsetFetch, 7)?;
    let offsets = |g: &str, t: &str| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(g)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic(t))
                .with_partition_indexes(vec![0])]))
    };
    x.compare::<_, OffsetFetchResponse>("offsets, describe denied", ApiKey::OffsetFetch, ofv, |_| {
        offsets(&hidden_group, &granted)
    })?;
    x.compare::<_, OffsetFetchResponse>("offsets, topic denied", ApiKey::OffsetFetch, ofv, |_| {
        offsets(&format!("acl-free-{tag}"), &denied)
    })?;
    let dgv = x.version(ApiKey::DescribeGroups, 5)?;
    x.compare::<_, DescribeGroupsResponse>("describe, describe denied", ApiKey::DescribeGroups, dgv, |_| {
        DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s(&hidden_group))])
            .with_include_authorized_operations(true)
    })?;
    let delv = x.version(ApiKey::DeleteGroups, 2)?;
    x.compare::<_, DeleteGroupsResponse>("delete, read denied only", ApiKey::DeleteGroups, delv, |_| {
        DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&hidden_group))])
    })?;

    x.scenario("acl_cleanup");
    delete(
        x,
        "delete",
        vec![
            delete_filter(TOPIC, None, ANY, ANY),
            delete_filter(GROUP, Some(&group), LITERAL, ANY),
            delete_filter(ANY, None, ANY, DESCRIBE),
            delete_filter(CLUSTER, None, ANY, ANY),
        ],
    )?;
    settle(x, 0)?;
    x.compare::<_, ProduceResponse>("produce after", ApiKey::Produce, pv, |_| {
        corpus::produce(&denied, 0, -1, Some(batch.clone()))
    })?;
    Ok(())
}
