//! The consumer workload of one executor: one fetch loop per leader over
//! the executor's partitions (following leaders when they move), counting records from batch headers (so
//! compressed data counts too) and, for end-to-end runs, the latency from
//! each record's timestamp to its arrival.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::batch;
use crate::cluster;
use crate::group;
use crate::produce::NETWORK_ERROR;
use crate::report::{Kind, Snapshot};
use crate::router::{leadership_lost, Router};

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
    /// Consume as a member of this group: the group assigns the partitions
    /// (each executor is a member) and positions are committed.
    pub group: Option<String>,
}

pub async fn run(
    cfg: ConsumeConfig,
    executor: usize,
    router: Rc<Router>,
    partitions: Vec<i32>,
    start: Instant,
    progress: mpsc::Sender<Snapshot>,
) -> anyhow::Result<Snapshot> {
    let stats = Rc::new(RefCell::new(Snapshot::new(executor, Kind::Consume)));
    let reporter = crate::report::spawn_reporter(stats.clone(), progress.clone());
    match cfg.group.clone() {
        None => {
            let position = offsets(&cfg, &router, &partitions, if cfg.from_end { -1 } else { -2 }).await?;
            let end = match cfg.until_end {
                true => Some(offsets(&cfg, &router, &partitions, -1).await?),
                false => None,
            };
            read(&cfg, &router, &stats, position, end, start, None).await;
        }
        Some(group) => consume_as_member(&cfg, &group, &router, &partitions, &stats, start).await?,
    }
    reporter.cancel().await;
    let mut last = stats.borrow().clone();
    last.done = true;
    let _ = progress.send(last.clone());
    Ok(last)
}

/// Latest (-1) or earliest (-2) offsets of `partitions`, from their leaders.
async fn offsets(
    cfg: &ConsumeConfig,
    router: &Router,
    partitions: &[i32],
    which: i64,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader(router, partitions) {
        let conn = router.conn_to(leader, CONSUMER_SLOT).await?;
        out.extend(cluster::offsets(&conn, &cfg.topic, &parts, which).await?);
    }
    Ok(out)
}

/// Fetches from `position` until the run's end, `end` (if given), or
/// `stop`; returns the positions reached.
async fn read(
    cfg: &ConsumeConfig,
    router: &Rc<Router>,
    stats: &Rc<RefCell<Snapshot>>,
    position: BTreeMap<i32, i64>,
    end: Option<BTreeMap<i32, i64>>,
    start: Instant,
    stop: Option<Rc<Cell<bool>>>,
) -> BTreeMap<i32, i64> {
    let shared = Rc::new(Shared {
        cfg: cfg.clone(),
        router: router.clone(),
        stats: stats.clone(),
        position: RefCell::new(position),
        end,
        start,
        stop,
        fetching: RefCell::new(BTreeSet::new()),
        loops: RefCell::new(VecDeque::new()),
    });
    shared.start_missing_loops();
    loop {
        let next = shared.loops.borrow_mut().pop_front();
        match next {
            Some(l) => l.await,
            None => break,
        }
    }
    let reached = shared.position.borrow().clone();
    reached
}

/// One executor as a member of `group`: read what the group assigns,
/// commit where it got to, rejoin at each rebalance, leave at the end.
async fn consume_as_member(
    cfg: &ConsumeConfig,
    group: &str,
    router: &Rc<Router>,
    partitions: &[i32],
    stats: &Rc<RefCell<Snapshot>>,
    start: Instant,
) -> anyhow::Result<()> {
    // With --until-end, each partition's end when the run began.
    let end_all = match cfg.until_end {
        true => Some(offsets(cfg, router, partitions, -1).await?),
        false => None,
    };
    let deadline = start + cfg.duration;
    let mut member_id = String::new();
    loop {
        let mut m = group::join(&router.seeds(), group, &cfg.topic, partitions, member_id).await?;
        member_id = m.member_id.clone();
        let committed = m.committed().await?;
        let initial = offsets(cfg, router, &m.assigned, if cfg.from_end { -1 } else { -2 }).await?;
        let position: BTreeMap<i32, i64> = m
            .assigned
            .iter()
            .filter_map(|p| committed.get(p).or(initial.get(p)).map(|o| (*p, *o)))
            .collect();
        let end = end_all.as_ref().map(|e| {
            e.iter()
                .filter(|(p, _)| position.contains_key(p))
                .map(|(p, o)| (*p, *o))
                .collect()
        });
        let reached = read(cfg, router, stats, position, end, start, Some(m.rebalance.clone())).await;
        // Refused if the rebalance already moved on: the next owner then
        // rereads from the last commit (at-least-once, as Kafka consumers).
        let _ = m.commit(&reached).await;
        if m.rebalance.get() && Instant::now() < deadline {
            m.stop_heartbeat().await;
            continue;
        }
        return m.leave().await;
    }
}

/// Consumer connections use their own slot, apart from the producer's.
const CONSUMER_SLOT: usize = usize::MAX;

fn by_leader(router: &Router, partitions: &[i32]) -> BTreeMap<SocketAddr, Vec<i32>> {
    let mut out: BTreeMap<SocketAddr, Vec<i32>> = BTreeMap::new();
    for &p in partitions {
        if let Some(leader) = router.leader(p) {
            out.entry(leader).or_default().push(p);
        }
    }
    out
}

/// The executor's consumer: one fetch loop per leader (one fetch in flight
/// per broker, as Kafka consumers do), over positions they share, so a
/// partition whose leader moved is fetched by the new leader's loop.
struct Shared {
    cfg: ConsumeConfig,
    router: Rc<Router>,
    stats: Rc<RefCell<Snapshot>>,
    position: RefCell<BTreeMap<i32, i64>>,
    /// With `until_end`: where each partition ended when the run began.
    end: Option<BTreeMap<i32, i64>>,
    start: Instant,
    /// Set when the group rebalances: stop, commit, rejoin.
    stop: Option<Rc<Cell<bool>>>,
    /// Leaders with a fetch loop running.
    fetching: RefCell<BTreeSet<SocketAddr>>,
    loops: RefCell<VecDeque<glommio::Task<()>>>,
}

impl Shared {
    fn finished(&self) -> bool {
        if self.stop.as_ref().is_some_and(|s| s.get()) {
            return true;
        }
        let position = self.position.borrow();
        self.end
            .as_ref()
            .is_some_and(|end| end.iter().all(|(p, e)| position.get(p).is_some_and(|at| at >= e)))
    }

    /// Starts a fetch loop for every leader that has partitions and none.
    fn start_missing_loops(self: &Rc<Self>) {
        let partitions: Vec<i32> = self.position.borrow().keys().copied().collect();
        for leader in by_leader(&self.router, &partitions).into_keys() {
            if self.fetching.borrow_mut().insert(leader) {
                let me = self.clone();
                let task = glommio::spawn_local(async move {
                    me.fetch_loop(leader).await;
                    me.fetching.borrow_mut().remove(&leader);
                });
                self.loops.borrow_mut().push_back(task);
            }
        }
    }

    async fn refresh(self: &Rc<Self>, seen: u64) {
        self.router.refresh(seen).await;
        self.start_missing_loops();
    }

    async fn fetch_loop(self: &Rc<Self>, leader: SocketAddr) {
        let deadline = self.start + self.cfg.duration;
        let topic = TopicName(StrBytes::from_string(self.cfg.topic.clone()));
        let mut stamps = Vec::new();
        loop {
            if Instant::now() >= deadline || self.finished() {
                return;
            }
            let mine: Vec<(i32, i64)> = self
                .position
                .borrow()
                .iter()
                .filter(|(p, _)| self.router.leader(**p) == Some(leader))
                .map(|(p, o)| (*p, *o))
                .collect();
            if mine.is_empty() {
                return; // every partition moved to other leaders
            }
            let seen = self.router.epoch();
            let wait_ms = (deadline - Instant::now()).as_millis().min(500) as i32;
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(self.cfg.max_bytes)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default().with_topic(topic.clone()).with_partitions(
                    mine.iter()
                        .map(|&(p, o)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(o)
                                .with_partition_max_bytes(self.cfg.partition_max_bytes)
                        })
                        .collect(),
                )]);
            let resp = match self.router.conn_to(leader, CONSUMER_SLOT).await {
                Ok(conn) => conn.call::<_, FetchResponse>(ApiKey::Fetch, FETCH_VERSION, &req).await,
                Err(e) => Err(e),
            };
            let resp = match resp {
                Ok(r) => r,
                Err(_) => {
                    *self.stats.borrow_mut().errors.entry(NETWORK_ERROR).or_default() += 1;
                    self.refresh(seen).await;
                    continue;
                }
            };
            if self.take(resp, &mut stamps) {
                self.refresh(seen).await;
            }
        }
    }

    /// Counts a fetch response's records and moves positions past them.
    /// Returns whether a partition's leadership moved.
    fn take(&self, resp: FetchResponse, stamps: &mut Vec<i64>) -> bool {
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_micros() as i64;
        let mut moved = false;
        let mut s = self.stats.borrow_mut();
        let mut position = self.position.borrow_mut();
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    *s.errors.entry(p.error_code).or_default() += 1;
                    if p.error_code == OFFSET_OUT_OF_RANGE {
                        position.insert(p.partition_index, p.log_start_offset.max(0));
                    }
                    moved |= leadership_lost(p.error_code);
                    continue;
                }
                let Some(records) = p.records else { continue };
                let (_, n, bytes) = batch::count(&records);
                s.messages += n;
                s.bytes += bytes;
                if let Some(last) = batch::last_offset(&records) {
                    position.insert(p.partition_index, last + 1);
                }
                if self.cfg.e2e {
                    stamps.clear();
                    batch::sent_stamps(&records, stamps);
                    for sent in stamps.iter() {
                        s.latency_us.saturating_record((now_us - sent).max(1) as u64);
                    }
                }
            }
        }
        moved
    }
}
