//! The consumer workload of one executor: one fetch loop per leader over
//! the executor's partitions, counting records from batch headers (so
//! compressed data counts too) and, for end-to-end runs, the latency from
//! each record's timestamp to its arrival.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::batch;
use crate::client::Conn;
use crate::cluster;
use crate::produce::NETWORK_ERROR;
use crate::report::{Kind, Snapshot};

pub const FETCH_VERSION: i16 = 11;
const OFFSET_OUT_OF_RANGE: i16 = 1;

#[derive(Clone, Debug)]
pub struct ConsumeConfig {
    pub topic: String,
    pub duration: Duration,
    /// Stop once every partition is read up to its end at start.
    pub until_end: bool,
    /// Start at the end of each partition (end-to-end runs) instead of the beginning.
    pub from_end: bool,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Record end-to-end latency from record timestamps.
    pub e2e: bool,
}

pub async fn run(
    cfg: ConsumeConfig,
    executor: usize,
    partitions: Vec<(i32, SocketAddr)>,
    start: Instant,
    progress: mpsc::Sender<Snapshot>,
) -> anyhow::Result<Snapshot> {
    let stats = Rc::new(RefCell::new(Snapshot::new(executor, Kind::Consume)));
    let reporter = crate::report::spawn_reporter(stats.clone(), progress.clone());
    let mut by_leader: BTreeMap<SocketAddr, Vec<i32>> = BTreeMap::new();
    for (p, leader) in &partitions {
        by_leader.entry(*leader).or_default().push(*p);
    }
    let mut loops = Vec::new();
    for (leader, parts) in by_leader {
        let conn = Conn::connect(leader).await?;
        let first = cluster::offsets(&conn, &cfg.topic, &parts, if cfg.from_end { -1 } else { -2 }).await?;
        let end = if cfg.until_end {
            Some(cluster::offsets(&conn, &cfg.topic, &parts, -1).await?)
        } else {
            None
        };
        let (cfg, stats) = (cfg.clone(), stats.clone());
        loops.push(glommio::spawn_local(async move {
            fetch_loop(conn, cfg, stats, first, end, start).await
        }));
    }
    for l in loops {
        l.await;
    }
    reporter.cancel().await;
    let mut last = stats.borrow().clone();
    last.done = true;
    let _ = progress.send(last.clone());
    Ok(last)
}

async fn fetch_loop(
    conn: Rc<Conn>,
    cfg: ConsumeConfig,
    stats: Rc<RefCell<Snapshot>>,
    mut position: BTreeMap<i32, i64>,
    end: Option<BTreeMap<i32, i64>>,
    start: Instant,
) {
    let deadline = start + cfg.duration;
    let topic = TopicName(StrBytes::from_string(cfg.topic.clone()));
    let mut stamps = Vec::new();
    loop {
        if Instant::now() >= deadline {
            return;
        }
        if let Some(end) = &end {
            if end.iter().all(|(p, e)| position.get(p).is_some_and(|at| at >= e)) {
                return;
            }
        }
        let wait_ms = (deadline - Instant::now()).as_millis().min(500) as i32;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(cfg.max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic.clone()).with_partitions(
                position
                    .iter()
                    .map(|(&p, &o)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(o)
                            .with_partition_max_bytes(cfg.partition_max_bytes)
                    })
                    .collect(),
            )]);
        let resp: FetchResponse = match conn.call(ApiKey::Fetch, FETCH_VERSION, &req).await {
            Ok(r) => r,
            Err(_) => {
                *stats.borrow_mut().errors.entry(NETWORK_ERROR).or_default() += 1;
                return;
            }
        };
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_micros() as i64;
        let mut s = stats.borrow_mut();
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    *s.errors.entry(p.error_code).or_default() += 1;
                    if p.error_code == OFFSET_OUT_OF_RANGE {
                        position.insert(p.partition_index, p.log_start_offset.max(0));
                    }
                    continue;
                }
                let Some(records) = p.records else { continue };
                let (_, n, bytes) = batch::count(&records);
                s.messages += n;
                s.bytes += bytes;
                if let Some(last) = batch::last_offset(&records) {
                    position.insert(p.partition_index, last + 1);
                }
                if cfg.e2e {
                    stamps.clear();
                    batch::sent_stamps(&records, &mut stamps);
                    for sent in &stamps {
                        s.latency_us.saturating_record((now_us - sent).max(1) as u64);
                    }
                }
            }
        }
    }
}
