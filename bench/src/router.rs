//! Where each partition's leader is, and the connections to it, for one
//! executor. When a request fails because leadership moved (a Kafka
//! "not leader" error) or its broker went away, the worker that saw it
//! refreshes Metadata here and carries on with the new leader, as a Kafka
//! client does; the failed messages are counted as errors, not retried.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::anyhow;
use glommio::sync::Semaphore;

use crate::client::Conn;
use crate::cluster::{self, Leaders};
use crate::produce::NETWORK_ERROR;

/// Wait between Metadata attempts while no broker answers or a partition
/// has no leader (an election in progress, a broker restarting).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait for a connection to a broker that might be gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors after which a Kafka client refreshes Metadata before retrying:
/// the partition's leader moved or is being elected, or its broker is
/// unreachable.
pub fn leadership_lost(code: i16) -> bool {
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const LEADER_NOT_AVAILABLE: i16 = 5;
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    const REQUEST_TIMED_OUT: i16 = 7;
    const NETWORK_EXCEPTION: i16 = 13;
    const FENCED_LEADER_EPOCH: i16 = 74;
    const UNKNOWN_LEADER_EPOCH: i16 = 75;
    matches!(
        code,
        NETWORK_ERROR
            | UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REQUEST_TIMED_OUT
            | NETWORK_EXCEPTION
            | FENCED_LEADER_EPOCH
            | UNKNOWN_LEADER_EPOCH
    )
}

pub struct Router {
    topic: String,
    /// Where to ask for Metadata: the bootstrap and every broker seen.
    seeds: RefCell<Vec<SocketAddr>>,
    leaders: RefCell<Leaders>,
    /// Connections by (broker, slot): a worker uses its own slot, so work
    /// spreads over as many connections per broker as it asked for.
    conns: RefCell<HashMap<(SocketAddr, usize), Rc<Conn>>>,
    /// Counts refreshes. A worker notes it before a request and passes it
    /// to `refresh`, so a failure that many workers see refreshes once.
    epoch: Cell<u64>,
    refreshing: Semaphore,
}

impl Router {
    pub fn new(topic: &str, bootstrap: SocketAddr, leaders: Leaders) -> Rc<Router> {
        let mut seeds = vec![bootstrap];
        seeds.extend(leaders.values().copied());
        seeds.sort();
        seeds.dedup();
        Rc::new(Router {
            topic: topic.to_string(),
            seeds: RefCell::new(seeds),
            leaders: RefCell::new(leaders),
            conns: RefCell::new(HashMap::new()),
            epoch: Cell::new(0),
            refreshing: Semaphore::new(1),
        })
    }

    /// Brokers known so far (the bootstrap first, among them).
    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.seeds.borrow().clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    pub fn leader(&self, partition: i32) -> Option<SocketAddr> {
        self.leaders.borrow().get(&partition).copied()
    }

    /// A live connection to `broker` in `slot`, made if needed.
    pub async fn conn_to(&self, broker: SocketAddr, slot: usize) -> anyhow::Result<Rc<Conn>> {
        if let Some(c) = self.conns.borrow().get(&(broker, slot)) {
            if c.is_open() {
                return Ok(c.clone());
            }
        }
        let c = connect(broker).await?;
        self.conns.borrow_mut().insert((broker, slot), c.clone());
        Ok(c)
    }

    /// A live connection to the leader of `partition` in `slot`.
    pub async fn conn(&self, partition: i32, slot: usize) -> anyhow::Result<Rc<Conn>> {
        let leader = self
            .leader(partition)
            .ok_or_else(|| anyhow!("partition {partition} has no known leader"))?;
        self.conn_to(leader, slot).await
    }

    /// Asks the cluster for the current leaders, unless another worker did
    /// since `seen`. Waits `RETRY_BACKOFF` when no broker answers or some
    /// partition has no leader, so workers do not spin through an outage.
    pub async fn refresh(&self, seen: u64) {
        let _one_at_a_time = self
            .refreshing
            .acquire_permit(1)
            .await
            .expect("the semaphore is never closed");
        if self.epoch.get() != seen {
            return;
        }
        let seeds = self.seeds.borrow().clone();
        let mut complete = false;
        for addr in seeds {
            let Ok(conn) = connect(addr).await else { continue };
            let Ok((leaders, partitions, brokers)) = cluster::metadata(&conn, &self.topic).await else {
                continue;
            };
            complete = leaders.len() == partitions;
            *self.leaders.borrow_mut() = leaders;
            let mut seeds = self.seeds.borrow_mut();
            seeds.extend(brokers);
            seeds.sort();
            seeds.dedup();
            break;
        }
        self.epoch.set(seen + 1);
        if !complete {
            glommio::timer::sleep(RETRY_BACKOFF).await;
        }
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Rc<Conn>> {
    glommio::timer::timeout(CONNECT_TIMEOUT, async {
        Conn::connect(addr)
            .await
            .map_err(|e| glommio::GlommioError::<()>::IoError(std::io::Error::other(e.to_string())))
    })
    .await
    .map_err(|e| anyhow!("connecting to {addr}: {e}"))
}
