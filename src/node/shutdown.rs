//! Controlled shutdown, as Kafka's: on SIGTERM (or SIGINT) every shard
//! hands the leadership of its Raft group to a caught-up peer (in a
//! cluster) while it still serves, then stops accepting and lets its
//! connections finish the requests they sent (their responses are
//! written, then the connection closes); the process exits 0 once every
//! shard is done. Everything acknowledged
//! is already on disk (acks are sent after fdatasync), so there is nothing
//! left to sync. A second signal ends the process at once.
//!
//! The signals are taken by one thread of their own (`sigwait`); the shards
//! hear of them over channels, the only thing they share with it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::broker::Broker;

/// How long connections get to finish what they sent. systemd's
/// `TimeoutStopSec` (deploy/corestream.service) must cover this and
/// `HANDOFF_BUDGET`.
const DRAIN_BUDGET: Duration = Duration::from_secs(5);
/// How long a leader waits for a peer to take its Raft group over.
const HANDOFF_BUDGET: Duration = Duration::from_secs(3);

/// One shard's end of the shutdown: told to stop, says when it drained,
/// told to exit once every shard has (a shard that exited early would
/// leave its peers' requests for its partitions unanswered).
pub struct ShardSide {
    pub stop: flume::Receiver<()>,
    pub drained: flume::Sender<()>,
    pub exit: flume::Receiver<()>,
}

/// Blocks SIGTERM and SIGINT in this thread and every thread it starts
/// afterwards (the shards), and starts the thread that waits for them.
/// Returns each shard's side.
pub fn install(shards: usize) -> std::io::Result<Vec<ShardSide>> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use;
    // pthread_sigmask only changes this thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    let (drained_tx, drained_rx) = flume::unbounded();
    let mut sides = Vec::with_capacity(shards);
    let mut stops = Vec::with_capacity(shards);
    let mut exits = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (stop_tx, stop) = flume::bounded(1);
        let (exit_tx, exit) = flume::bounded(1);
        stops.push(stop_tx);
        exits.push(exit_tx);
        sides.push(ShardSide {
            stop,
            drained: drained_tx.clone(),
            exit,
        });
    }
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let first = wait(&set);
        tracing::info!(
            signal = first,
            "shutting down: draining connections and handing over leadership"
        );
        for s in &stops {
            let _ = s.send(());
        }
        // A second signal, while the shards drain, ends the process now.
        std::thread::spawn(move || {
            let second = wait(&set);
            tracing::warn!(signal = second, "second signal: exiting without finishing the shutdown");
            // SAFETY: _exit ends the process at once; it cannot fail.
            unsafe { libc::_exit(128 + second) }
        });
        for _ in 0..stops.len() {
            if drained_rx.recv().is_err() {
                break;
            }
        }
        for e in &exits {
            let _ = e.send(());
        }
    })?;
    Ok(sides)
}

fn wait(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    loop {
        // SAFETY: `set` is an initialised signal set; sigwait writes `sig`.
        if unsafe { libc::sigwait(set, &mut sig) } == 0 {
            return sig;
        }
    }
}

/// Hands this shard's Raft group to a caught-up peer, while the shard
/// still serves: clients get NOT_LEADER_OR_FOLLOWER, refresh their
/// metadata and move to the new leader before any connection closes.
/// Returns how long it took, if this node led the group.
pub async fn hand_off(broker: &Rc<Broker>) -> Option<Duration> {
    let started = Instant::now();
    if !broker.shard.hand_off_leadership() {
        return None;
    }
    // No live peer can take it: do not wait for one.
    let live = || !broker.shard.live_peers(Duration::from_secs(1)).is_empty();
    while live() && broker.shard.hand_off_leadership() && started.elapsed() < HANDOFF_BUDGET {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if broker.shard.leads_group() {
        tracing::warn!(shard = %broker.me(), "no peer took the Raft group over within {HANDOFF_BUDGET:?}; stopping as its leader");
    }
    Some(started.elapsed())
}

/// Ends this shard's connections once its listener is closed: each
/// finishes the requests it sent, writes their responses and closes.
/// Then waits for every other shard to be done too.
pub async fn drain(broker: &Rc<Broker>, side: &ShardSide, handoff: Option<Duration>) {
    let started = Instant::now();
    let open = broker.connections.get();
    broker.close_connections_for_shutdown();
    while broker.connections.get() > 0 && started.elapsed() < DRAIN_BUDGET {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    let left = broker.connections.get();
    if left > 0 {
        tracing::warn!(shard = %broker.me(), connections = left, "connections still open after {DRAIN_BUDGET:?}; closing them");
    }
    tracing::info!(
        shard = %broker.me(),
        handoff_ms = handoff.map(|d| d.as_millis() as u64),
        connections = open,
        drain_ms = started.elapsed().as_millis() as u64,
        "shard drained"
    );
    let _ = side.drained.send_async(()).await;
    let _ = side.exit.recv_async().await;
}
