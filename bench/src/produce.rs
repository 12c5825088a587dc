//! The producer workload of one executor: several connections per leader,
//! several requests in flight per connection, batches of `batch_messages`
//! records per partition, at a fixed rate or as fast as the broker answers.
//! Leaders are followed through the router when they move.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::batch;
use crate::client::decode_response;
use crate::rate::Pacer;
use crate::report::{Kind, Snapshot};
use crate::router::{leadership_lost, Router};

pub const PRODUCE_VERSION: i16 = 9;
/// Error code counted when a connection fails (not a Kafka code).
pub const NETWORK_ERROR: i16 = -1;

#[derive(Clone, Debug)]
pub struct ProduceConfig {
    pub topic: String,
    pub message_bytes: usize,
    pub batch_messages: usize,
    /// Longest a message waits for its batch to fill (fixed-rate mode).
    pub linger: Duration,
    pub in_flight: usize,
    pub connections: usize,
    pub acks: i16,
    pub codec: batch::Codec,
    pub duration: Duration,
    /// Messages per second for the whole run; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub executors: usize,
}

pub async fn run(
    cfg: ProduceConfig,
    executor: usize,
    router: Rc<Router>,
    partitions: Vec<i32>,
    start: Instant,
    progress: mpsc::Sender<Snapshot>,
) -> anyhow::Result<Snapshot> {
    let stats = Rc::new(RefCell::new(Snapshot::new(executor, Kind::Produce)));
    let reporter = crate::report::spawn_reporter(stats.clone(), progress.clone());
    let value = Bytes::from(vec![b'x'; cfg.message_bytes]);
    // (connection slot, its partitions, worker number on it). Slot c
    // serves every c-th partition, on one connection per leader.
    let mut plan = Vec::new();
    for slot in 0..cfg.connections.min(partitions.len()) {
        let parts: Vec<i32> = partitions.iter().copied().skip(slot).step_by(cfg.connections).collect();
        for &p in &parts {
            router.conn(p, slot).await?; // connect before the clock starts
        }
        for w in 0..cfg.in_flight {
            plan.push((slot, parts.clone(), w));
        }
    }
    let rate_per_worker = cfg.rate.map(|r| r / (cfg.executors * plan.len().max(1)) as f64);
    let workers: Vec<_> = plan
        .into_iter()
        .map(|(slot, parts, w)| {
            let (cfg, stats, value, router) = (cfg.clone(), stats.clone(), value.clone(), router.clone());
            let worker = Worker {
                router,
                slot,
                cfg,
                stats,
                value,
                parts,
                offset: w,
                start,
                rate: rate_per_worker,
            };
            glommio::spawn_local(worker.run())
        })
        .collect();
    for w in workers {
        w.await;
    }
    reporter.cancel().await;
    let mut last = stats.borrow().clone();
    last.done = true;
    let _ = progress.send(last.clone());
    Ok(last)
}

/// One request in flight at a time over the partitions `parts`.
struct Worker {
    router: Rc<Router>,
    slot: usize,
    cfg: ProduceConfig,
    stats: Rc<RefCell<Snapshot>>,
    value: Bytes,
    parts: Vec<i32>,
    /// Where in `parts` this worker starts, so workers of one slot spread.
    offset: usize,
    start: Instant,
    rate: Option<f64>,
}

impl Worker {
    async fn run(self) {
        let Worker {
            router,
            slot,
            cfg,
            stats,
            value,
            parts,
            offset,
            start,
            rate,
        } = self;
        let deadline = start + cfg.duration;
        // Wall-clock time of `start`, so the consumer (another executor, same
        // clock) can measure end-to-end latency from the intended send time.
        let wall_start = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970")
            - Instant::now().saturating_duration_since(start);
        let wall_start_ms = wall_start.as_millis() as i64;
        let wall_start_us = wall_start.as_micros() as i64;
        let mut sent_us = Vec::with_capacity(cfg.batch_messages);
        let mut pacer = Pacer::new(start, rate);
        // At a fixed rate a batch holds what arrives within the linger time,
        // as a real producer's linger.ms would: a message waits at most that
        // long for its batch to fill.
        let batch_messages = match rate {
            Some(r) => ((r * cfg.linger.as_secs_f64()) as usize).clamp(1, cfg.batch_messages),
            None => cfg.batch_messages,
        };
        let mut intended = Vec::with_capacity(cfg.batch_messages);
        let mut stamps = Vec::with_capacity(cfg.batch_messages);
        let topic = TopicName(StrBytes::from_string(cfg.topic.clone()));
        let mut i = offset;
        loop {
            let now = Instant::now();
            pacer.next_batch(batch_messages as u64, now, &mut intended);
            let due = *intended.last().expect("batch is not empty");
            if due >= deadline || now >= deadline {
                return;
            }
            if pacer.is_paced() && due > now {
                glommio::timer::sleep(due - now).await;
            }
            stamps.clear();
            stamps.extend(intended.iter().map(|t| wall_start_ms + (*t - start).as_millis() as i64));
            sent_us.clear();
            sent_us.extend(intended.iter().map(|t| wall_start_us + (*t - start).as_micros() as i64));
            let partition = parts[i % parts.len()];
            i += 1;
            let req = ProduceRequest::default()
                .with_acks(cfg.acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic.clone())
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch::build_with(
                            cfg.codec,
                            &value,
                            &stamps,
                            Some(&sent_us),
                        )))])]);
            let n = intended.len() as u64;
            let seen = router.epoch();
            let conn = match router.conn(partition, slot).await {
                Ok(c) => c,
                Err(_) => {
                    *stats.borrow_mut().errors.entry(NETWORK_ERROR).or_default() += n;
                    router.refresh(seen).await;
                    continue;
                }
            };
            match conn.send(ApiKey::Produce, PRODUCE_VERSION, &req, cfg.acks != 0) {
                Ok(None) => {
                    let mut s = stats.borrow_mut();
                    s.messages += n;
                    s.bytes += n * cfg.message_bytes as u64;
                }
                Ok(Some(rx)) => {
                    let body = rx.recv_async().await;
                    let acked = Instant::now();
                    let code = match body
                        .map_err(|_| ())
                        .and_then(|b| decode_response::<ProduceResponse>(b, PRODUCE_VERSION).map_err(|_| ()))
                    {
                        Ok(resp) => first_error(&resp),
                        Err(()) => NETWORK_ERROR,
                    };
                    {
                        let mut s = stats.borrow_mut();
                        if code == 0 {
                            s.messages += n;
                            s.bytes += n * cfg.message_bytes as u64;
                            for t in &intended {
                                let us = acked.saturating_duration_since(*t).as_micros().max(1) as u64;
                                s.latency_us.saturating_record(us);
                            }
                        } else {
                            *s.errors.entry(code).or_default() += n;
                        }
                    }
                    if leadership_lost(code) {
                        router.refresh(seen).await;
                    }
                }
                Err(_) => {
                    *stats.borrow_mut().errors.entry(NETWORK_ERROR).or_default() += n;
                    router.refresh(seen).await;
                }
            }
        }
    }
}

fn first_error(resp: &ProduceResponse) -> i16 {
    resp.responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| p.error_code)
        .find(|&c| c != 0)
        .unwrap_or(0)
}
