//! DescribeLogDirs (API 35): the bytes each partition holds on this broker,
//! as `kafka-log-dirs.sh`, Cruise Control and the UIs read them. One "log
//! dir" per broker: the data dir, with its file system's size and free
//! bytes (v4). A partition's size is what its log holds from its log start
//! (the batches' bytes, whatever the WAL around them still keeps).

use super::authorized::Caller;
use std::collections::BTreeMap;
use std::rc::Rc;

use corestream_shards::{PartitionId, ShardId};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::node::broker::Broker;
use crate::security::acl::Operation;

pub const VERSIONS: (i16, i16) = (1, 4);

pub async fn handle(
    b: &Rc<Broker>,
    req: DescribeLogDirsRequest,
    _version: i16,
    caller: &Caller<'_>,
) -> DescribeLogDirsResponse {
    if !caller.may_cluster(Operation::Describe) {
        // v1-2 have no error field: the client sees no log dirs.
        return DescribeLogDirsResponse::default().with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED);
    }
    // (topic, partition index, id, shard) of every partition asked for and
    // held: a null list means all of them; unknown ones are left out, as
    // Kafka leaves out what a broker does not host.
    let wanted: Vec<(String, i32, PartitionId, ShardId)> = {
        let meta = b.meta.borrow();
        let mut out = Vec::new();
        let mut add = |name: &str, index: i32| {
            let found = meta
                .topic(name)
                .and_then(|t| usize::try_from(index).ok().and_then(|i| t.partitions.get(i)));
            if let Some(p) = found {
                out.push((name.to_string(), index, p.partition_id(), p.shard_id()));
            }
        };
        match &req.topics {
            None => {
                for (name, t) in &meta.topics {
                    for index in 0..t.partitions.len() {
                        add(name, index as i32);
                    }
                }
            }
            Some(topics) => {
                for t in topics {
                    for &index in &t.partitions {
                        add(t.topic.0.as_str(), index);
                    }
                }
            }
        }
        out
    };
    let mut by_shard: BTreeMap<ShardId, Vec<usize>> = BTreeMap::new();
    for (i, w) in wanted.iter().enumerate() {
        by_shard.entry(w.3).or_default().push(i);
    }
    let mut sizes = vec![None; wanted.len()];
    for (shard, slots) in by_shard {
        let ids = slots.iter().map(|&i| wanted[i].2).collect();
        for (i, size) in slots.into_iter().zip(b.partition_sizes(shard, ids).await) {
            sizes[i] = size;
        }
    }
    let mut topics: BTreeMap<&str, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((name, index, _, _), size) in wanted.iter().zip(sizes) {
        let Some(size) = size else { continue };
        topics.entry(name).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(*index)
                .with_partition_size(size as i64)
                .with_offset_lag(0)
                .with_is_future_key(false),
        );
    }
    let dir = std::fs::canonicalize(&b.config.data_dir).unwrap_or_else(|_| b.config.data_dir.clone());
    let (free, total) = crate::node::admin::disk_space(&dir).unwrap_or((0, 0));
    let result = DescribeLogDirsResult::default()
        .with_error_code(errors::NONE)
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_total_bytes(total as i64)
        .with_usable_bytes(free as i64);
    DescribeLogDirsResponse::default()
        .with_error_code(errors::NONE)
        .with_results(vec![result])
}
