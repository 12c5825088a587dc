//! The deterministic simulator of corestream's replicated storage (in the
//! manner of FoundationDB's simulation and TigerBeetle's VOPR): several
//! nodes, each with the real WAL (`crate::wal`), Raft group (`crate::raft`)
//! and shard state machine (`crate::shard::state`), over a simulated disk
//! (`disk.rs`), network (`net.rs`) and clock, in one thread, driven by one
//! seed. The same seed replays the same run.
//!
//! Faults, while the run's fault phase lasts: power cuts (unsynced writes
//! lost, the last ones torn), crash points inside any disk operation,
//! fdatasync failures (EIO), a full disk, bit flips on reads, lost,
//! duplicated, delayed and reordered messages, nodes cut off, clock jumps
//! and skewed ticks, leadership handed over. The workload: producers with
//! acks 0, 1 and all, plain and idempotent; consumers; partitions created
//! and deleted (metadata through Raft). Then every fault heals and the
//! cluster must converge.
//!
//! The checker (`check.rs`): no acknowledged acks=all record is lost;
//! offsets are dense and the same on every replica; a consumer never sees
//! a record that later disappears or changes, nor the high watermark go
//! back; an idempotent producer's record is stored once; a restart never
//! finds the WAL rewriting a committed entry. Any panic (an `assert!` of an
//! invariant in the code under test) fails the seed too.
//!
//! A failure names its seed: `SIM_SEED=<seed> cargo test -p
//! corestream-shards --release sim::tests::replay -- --nocapture` replays
//! it; `scripts/sim` runs many seeds on demand.
//!
//! Once the cluster converged, half the 3-node runs wipe a follower's disk
//! (and may cut its power while it rebuilds): it must catch up through a
//! snapshot where its peers reclaimed their WAL, pull the batches, and
//! converge again before the checker reads every replica.
//!
//! What it does not model (yet): a process exit that keeps the page cache
//! (every restart here is a power cut), corruption that persists on the
//! medium in the middle of the log (recovery cuts the log there), and a
//! disk lost during the faults (a wiped replica may have counted towards
//! a commit; Raft needs it to rejoin as a new member to stay safe).

pub mod check;
pub mod disk;
pub mod net;
pub mod node;
pub mod workload;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use check::History;
use disk::DiskFaults;
use net::{Net, NetFaults};
use node::{meta_create, meta_delete, Node, StartError};
use workload::{parse_batches, Outcome, Producer};

use crate::shard::ShardError;
use crate::test_rng::Rng;
use crate::types::{Offset, PartitionId};

/// One run's shape.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Steps (1-10 ms of simulated time each) with faults.
    pub fault_steps: u64,
    /// Steps allowed after the faults heal for the cluster to converge.
    pub heal_steps: u64,
    /// A bug to plant (`crate::planted`; needs the `planted-bugs` feature).
    pub planted: Option<crate::planted::Bug>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            fault_steps: 1_500,
            heal_steps: 4_000,
            planted: None,
        }
    }
}

/// What a run did, for the report.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub nodes: usize,
    pub steps: u64,
    pub acked_all: u64,
    pub acked_one: u64,
    pub consumed: u64,
    pub crashes: u64,
    pub crash_points: u64,
    pub storage_failures: u64,
    pub partitions_created: u64,
    pub partitions_deleted: u64,
    pub leader_changes: u64,
    pub messages: u64,
    pub lost_messages: u64,
    pub sync_errors: u64,
    pub read_flips: u64,
    pub corrupt_reads: u64,
    pub trims: u64,
    /// Partitions whose converged log starts past offset 0 (DeleteRecords
    /// and retention.bytes).
    pub trimmed_partitions: u64,
    /// WAL segments reclaimed, and node starts from a checkpoint.
    pub segments_reclaimed: u64,
    pub checkpoint_starts: u64,
    pub time_trims: u64,
    pub bytes_moved: u64,
    /// Moves and compaction jobs whose result met a log changed while they
    /// ran (`shard::background`): part of what they wrote was not pointed to.
    pub stale_background: u64,
    /// Followers that lost their disk, snapshots they installed, and the
    /// batch bytes they pulled after them.
    pub wipes: u64,
    /// Compaction passes completed.
    pub compactions: u64,
    pub snapshots: u64,
    pub bytes_pulled: u64,
    /// Pulled bytes a checkpoint then named (a restart keeps them).
    pub bytes_pulled_saved: u64,
}

struct Sim {
    rng: Rng,
    now_ms: u64,
    nodes: Vec<Node>,
    voters: Vec<u64>,
    net: Rc<RefCell<Net>>,
    producers: Vec<Producer>,
    /// Partitions the admin created (and did not delete), with when the
    /// create was last proposed.
    live: BTreeMap<PartitionId, u64>,
    next_partition: u32,
    /// Each consumer's position, per partition.
    positions: BTreeMap<PartitionId, Offset>,
    history: History,
    report: Report,
    leaders_seen: BTreeSet<(u64, u64)>,
    /// The follower that lost its disk, if one did.
    wiped: Option<usize>,
    /// Print what happens (`SIM_TRACE=1`), to read a failing seed's story.
    trace: bool,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.trace {
            eprintln!("[{:>7} ms] {}", $sim.now_ms, format!($($arg)*));
        }
    };
}

/// Runs one seed. `Err` describes the first invariant broken.
pub async fn run(seed: u64, opts: Options) -> Result<Report, String> {
    let mut rng = Rng::new(mix(seed));
    let n = if rng.below(5) == 0 { 1 } else { 3 };
    let voters: Vec<u64> = (1..=n).collect();
    let mut sim = Sim {
        nodes: voters.iter().map(|&id| Node::new(id, mix(seed ^ (id << 56)))).collect(),
        net: Net::new(mix(seed ^ 0x9E37_79B9_7F4A_7C15)),
        producers: (0..4).map(|c| Producer::new(c + 1, &mut rng)).collect(),
        rng,
        now_ms: 0,
        voters,
        live: BTreeMap::new(),
        next_partition: 1,
        positions: BTreeMap::new(),
        history: History::default(),
        report: Report {
            nodes: n as usize,
            ..Default::default()
        },
        leaders_seen: BTreeSet::new(),
        wiped: None,
        trace: std::env::var_os("SIM_TRACE").is_some(),
    };
    for i in 0..sim.nodes.len() {
        sim.nodes[i].next_tick_ms = sim.rng.below(100);
        sim.start_node(i).await?;
    }
    for _ in 0..3 {
        sim.create_partition();
    }
    for step in 0..opts.fault_steps {
        sim.report.steps = step;
        sim.faults();
        sim.step(true).await?;
    }
    sim.heal();
    sim.converge(opts, opts.fault_steps, None).await?;
    // Then, in half the clusters, a follower loses its disk while clients
    // go on (and may lose power again while it rebuilds): it must rebuild
    // from its peers, through a snapshot where they reclaimed their WAL.
    if sim.nodes.len() == 3 && sim.rng.below(2) == 0 {
        sim.wipe_follower();
        let crash_at = Some(sim.rng.below(opts.heal_steps / 4)).filter(|_| sim.rng.below(3) == 0);
        sim.converge(opts, opts.fault_steps + opts.heal_steps, crash_at).await?;
    }
    sim.finish().await
}

/// Spreads a seed's bits (splitmix64), so seeds 1, 2, 3... start their
/// generators far apart.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Sim {
    async fn start_node(&mut self, i: usize) -> Result<(), String> {
        let net = self.net.clone();
        let now = self.now_ms;
        match self.nodes[i].start(&self.voters, &net, now).await {
            Ok(()) => {
                let g = &self.nodes[i].up.as_ref().expect("started").group;
                trace!(
                    self,
                    "node {} started: term {}, last index {}, commit {}",
                    i + 1,
                    g.term(),
                    g.last_index(),
                    g.commit_index()
                );
                Ok(())
            }
            Err(StartError::Io(_)) => {
                // A fault hit recovery (a crash point, a failed sync, a
                // full disk): power-cycle and try again later.
                self.nodes[i].crash(now, 200);
                Ok(())
            }
            Err(StartError::Corrupt(why)) => Err(format!("node {} failed to recover: {why}", i + 1)),
        }
    }

    fn create_partition(&mut self) {
        let p = PartitionId(self.next_partition);
        self.next_partition += 1;
        self.live.insert(p, 0);
        self.report.partitions_created += 1;
    }

    /// Proposes through a random node what the admin wants: creates not
    /// yet seen committed, retried every 2 s.
    fn admin(&mut self) {
        let now = self.now_ms;
        let due: Vec<PartitionId> = self
            .live
            .iter()
            .filter(|&(p, &last)| (last == 0 || now >= last + 2_000) && !self.created_somewhere(*p))
            .map(|(&p, _)| p)
            .collect();
        for p in due {
            self.live.insert(p, now.max(1));
            self.propose_meta(meta_create(p));
        }
    }

    fn created_somewhere(&self, p: PartitionId) -> bool {
        self.nodes
            .iter()
            .filter_map(|n| n.up.as_ref())
            .any(|u| u.state.partition(p).is_some())
    }

    fn propose_meta(&mut self, command: Vec<u8>) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        if let Some(up) = self.nodes[i].up.as_mut() {
            let (tx, _rx) = flume::bounded(1);
            up.state.meta_proposals.push((command, tx));
        }
    }

    /// Injects faults, each with a small chance per step.
    fn faults(&mut self) {
        let n = self.nodes.len() as u64;
        let roll = self.rng.below(10_000);
        let i = self.rng.below(n) as usize;
        let now = self.now_ms;
        match roll {
            0..=14 if self.nodes[i].up.is_some() => {
                let down = 100 + self.rng.below(3_000);
                trace!(self, "power cut: node {} (down {down} ms)", i + 1);
                self.nodes[i].crash(now, down);
                self.report.crashes += 1;
            }
            15..=29 if self.nodes[i].up.is_some() => {
                let ops = self.rng.below(40);
                trace!(self, "crash point: node {} dies after {ops} disk operations", i + 1);
                self.nodes[i].disk.crash_after(ops);
                self.report.crash_points += 1;
            }
            30..=59 => {
                let mut net = self.net.borrow_mut();
                if self.rng.below(3) == 0 {
                    trace!(self, "network heals");
                    net.heal();
                } else {
                    trace!(self, "node {} cut off", i + 1);
                    let me = self.nodes[i].id;
                    for other in 1..=n {
                        if other != me {
                            net.cut(me, other);
                        }
                    }
                }
            }
            60..=89 => {
                let calm = self.rng.below(3) == 0;
                self.net.borrow_mut().faults = if calm {
                    NetFaults {
                        max_delay_ms: 5,
                        ..Default::default()
                    }
                } else {
                    NetFaults {
                        loss_permille: self.rng.below(200),
                        dup_permille: self.rng.below(100),
                        max_delay_ms: 1 + self.rng.below(300),
                    }
                };
            }
            90..=109 => {
                let faults = match self.rng.below(4) {
                    0 => DiskFaults::default(),
                    1 => DiskFaults {
                        sync_error_permille: 1 + self.rng.below(50),
                        ..Default::default()
                    },
                    2 => DiskFaults {
                        full: true,
                        ..Default::default()
                    },
                    _ => DiskFaults {
                        read_flip_permille: 1 + self.rng.below(30),
                        ..Default::default()
                    },
                };
                self.nodes[i].disk.set_faults(faults);
            }
            110..=119 => {
                let jump = self.rng.below(7_200_000) as i64 - 3_600_000;
                self.nodes[i].clock_offset_ms += jump;
            }
            120..=129 => self.nodes[i].tick_ms = 80 + self.rng.below(41),
            130..=149 => {
                if let Some(up) = self.nodes[i].up.as_mut() {
                    if let Some(to) = up.group.hand_to_caught_up() {
                        trace!(self, "node {} hands leadership to {to}", i + 1);
                    }
                }
            }
            150..=159 if self.live.len() > 2 => {
                // Delete a partition: its records are no longer checked.
                let k = self.rng.below(self.live.len() as u64) as usize;
                if let Some(&p) = self.live.keys().nth(k) {
                    self.live.remove(&p);
                    self.history.deleted.insert(p);
                    self.report.partitions_deleted += 1;
                    self.propose_meta(meta_delete(p));
                }
            }
            160..=169 if self.live.len() < 6 => self.create_partition(),
            170..=199 => self.delete_records(i),
            _ => {}
        }
    }

    fn heal(&mut self) {
        let mut net = self.net.borrow_mut();
        net.heal();
        net.faults = NetFaults {
            max_delay_ms: 5,
            ..Default::default()
        };
        drop(net);
        for node in &mut self.nodes {
            node.disk.set_faults(DiskFaults::default());
            node.disk.disarm();
            node.tick_ms = 100;
        }
    }

    /// One step of simulated time: messages, restarts, ticks, Raft rounds,
    /// clients.
    async fn step(&mut self, clients: bool) -> Result<(), String> {
        self.now_ms += 1 + self.rng.below(10);
        let now = self.now_ms;
        self.net.borrow_mut().now_ms = now;
        for m in self.net.borrow_mut().due() {
            if let Some(up) = self.nodes[(m.to - 1) as usize].up.as_mut() {
                up.inbox.push(m.msg);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].up.is_none() && now >= self.nodes[i].down_until_ms {
                self.start_node(i).await?;
            }
        }
        // Nodes run in a random order each step.
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        for k in (1..order.len()).rev() {
            order.swap(k, self.rng.below(k as u64 + 1) as usize);
        }
        for &i in &order {
            let node = &mut self.nodes[i];
            let tick = now >= node.next_tick_ms;
            if tick {
                node.next_tick_ms = now + node.tick_ms + self.rng.below(20);
            }
            node.drive(tick, now).await;
        }
        // Reads of old entries (spawned tasks) finish; their groups run again.
        for _ in 0..3 {
            futures_lite::future::yield_now().await;
        }
        for &i in &order {
            if self.nodes[i].woken() {
                self.nodes[i].drive(false, now).await;
            }
        }
        self.after_drive(now);
        if clients {
            self.admin();
            self.produce(now);
            self.consume().await?;
        }
        self.poll_producers(now);
        Ok(())
    }

    /// Crash points reached and storage failures: the node goes down and
    /// comes back, as systemd restarts the broker.
    fn after_drive(&mut self, now: u64) {
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            let failed = node.up.as_ref().is_some_and(|u| u.failed);
            if node.disk.is_dead() || failed {
                if failed && !node.disk.is_dead() {
                    self.report.storage_failures += 1;
                }
                let down = 50 + self.rng.below(1_000);
                if let Some(g) = node.up.as_ref().map(|u| &u.group) {
                    trace!(
                        self,
                        "node {}: last index {}, commit {} before going down",
                        i + 1,
                        g.last_index(),
                        g.commit_index()
                    );
                }
                let node = &mut self.nodes[i];
                node.crash(now, down);
                trace!(self, "node {} went down (crash point or storage failure)", i + 1);
            }
            if let Some(up) = self.nodes[i].up.as_ref() {
                if up.state.leader && self.leaders_seen.insert((up.group.term(), self.nodes[i].id)) {
                    let ends: Vec<String> = up
                        .state
                        .partitions
                        .iter()
                        .collect::<BTreeMap<_, _>>()
                        .into_iter()
                        .map(|(p, part)| format!("{p}: end {} hw {}", part.indexed_end(), part.high_watermark()))
                        .collect();
                    trace!(
                        self,
                        "node {} leads term {} (commit {}, last {}): {}",
                        i + 1,
                        up.group.term(),
                        up.group.commit_index(),
                        up.group.last_index(),
                        ends.join(", ")
                    );
                }
            }
        }
        self.report.leader_changes = self.leaders_seen.len() as u64;
    }

    fn produce(&mut self, now: u64) {
        let live: Vec<PartitionId> = self.live.keys().copied().collect();
        for c in 0..self.producers.len() {
            if self.producers[c].pending.is_some() || self.rng.below(4) != 0 || live.is_empty() {
                continue;
            }
            if self.producers[c].batch.is_none() {
                let p = live[self.rng.below(live.len() as u64) as usize];
                self.producers[c].next_batch(p, &mut self.rng, self.now_ms);
                if let Some((_, ids)) = &self.producers[c].batch {
                    self.history.sent(ids, self.producers[c].idempotent);
                }
            }
            let node = match self.producers[c].leader_guess {
                Some(i) => i,
                None => self.rng.below(self.nodes.len() as u64) as usize,
            };
            let Some(item) = self.producers[c].item() else { continue };
            let durability = self.producers[c].durability();
            let wall = self.nodes[node].wall_ms(now);
            let Some(up) = self.nodes[node].up.as_mut() else {
                continue;
            };
            let (mut results, done) = up.state.produce(std::slice::from_ref(&item), durability, wall);
            let hint = up.state.leader_id.map(|id| (id - 1) as usize);
            let result = results.pop().unwrap_or(Err(ShardError::NotLeader));
            trace!(
                self,
                "client {} produce to partition {} on node {}: {:?} (raft last {}, commit {})",
                self.producers[c].client,
                item.partition,
                node + 1,
                result,
                up.group.last_index(),
                up.group.commit_index()
            );
            let p = &mut self.producers[c];
            if result.is_ok() {
                p.leader_guess = Some(node);
            }
            if let Outcome::Retry = p.answered(node, result.map(|a| a.base), done, now) {
                p.leader_guess = hint.filter(|&h| h != node);
            }
        }
    }

    fn poll_producers(&mut self, now: u64) {
        for p in &mut self.producers {
            let node = p.pending.as_ref().map(|q| q.node + 1);
            if let Outcome::Acked(records) = p.poll(now) {
                trace!(
                    self,
                    "client {} ({:?}, idempotent {}) acked by node {node:?}: partition {} offsets {}..={}",
                    p.client,
                    p.acks,
                    p.idempotent,
                    p.partition,
                    records[0].0,
                    records[records.len() - 1].0
                );
                match p.acks {
                    workload::Acks::All => {
                        self.report.acked_all += records.len() as u64;
                        self.history.acked(p.partition, &records);
                    }
                    _ => self.report.acked_one += records.len() as u64,
                }
            }
        }
    }

    /// A consumer reads one partition from a random node that leads, from
    /// where it stopped, as a Kafka client does (checking CRCs).
    /// DeleteRecords on node `i` (it must serve): a random partition's log
    /// start moves somewhere up to its high watermark.
    fn delete_records(&mut self, i: usize) {
        let k = self.rng.below(self.live.len() as u64 + 1) as usize;
        let Some(&p) = self.live.keys().nth(k) else {
            return;
        };
        let Some(up) = self.nodes[i].up.as_mut() else {
            return;
        };
        let Some((start, hw)) = up.state.partition(p).map(|x| (x.log_start(), x.high_watermark())) else {
            return;
        };
        let offset = Offset(start.0 + self.rng.below((hw.0 - start.0) as u64 + 1) as i64);
        if let Ok((low, _done)) = up.state.delete_records(p, Some(offset)) {
            self.report.trims += 1;
            trace!(
                self,
                "delete records of partition {p} below {offset} on node {} (low watermark {low})",
                i + 1
            );
        }
    }

    async fn consume(&mut self) -> Result<(), String> {
        if self.live.is_empty() || self.rng.below(3) != 0 {
            return Ok(());
        }
        let k = self.rng.below(self.live.len() as u64) as usize;
        let Some(&p) = self.live.keys().nth(k) else {
            return Ok(());
        };
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let Some(up) = self.nodes[i].up.as_ref() else {
            return Ok(());
        };
        if !up.state.serves() {
            return Ok(());
        }
        let mut from = *self.positions.get(&p).unwrap_or(&Offset(0));
        let (batches, hw, start) = match up.state.plan_read(p, from, 2048, true) {
            Ok(plan) => plan,
            // Below the log start: start over from it (auto.offset.reset=earliest).
            Err(ShardError::OffsetOutOfRange { log_start, .. }) if from < log_start => {
                from = log_start;
                match up.state.plan_read(p, from, 2048, true) {
                    Ok(plan) => plan,
                    Err(e) => return Err(format!("partition {p}: a fetch at the log start {from} failed: {e}")),
                }
            }
            Err(_) => return Ok(()), // not created here yet
        };
        trace!(
            self,
            "fetch partition {p} from {from} on node {}: high watermark {hw}",
            i + 1
        );
        self.history.high_watermark(p, hw, self.nodes[i].id)?;
        self.history.log_start(p, start, self.nodes[i].id)?;
        let reader = up.reader.clone();
        let Ok(bytes) = crate::shard::read_batches(reader, &batches).await else {
            return Ok(()); // a crash point, say: try later
        };
        let (records, end) = match parse_batches(&bytes) {
            Ok(r) => r,
            Err(_) => {
                // A bit flipped on the way: the client retries.
                self.report.corrupt_reads += 1;
                return Ok(());
            }
        };
        // A batch that straddles the log start comes whole; a client skips
        // the records below what it asked for.
        let records: Vec<_> = records.into_iter().filter(|&(o, _)| o >= from).collect();
        let mut next = from;
        // Compaction removes records, never moves one.
        let compacted = node::compacted(p);
        for &(offset, id) in &records {
            if offset != next && !(compacted && offset > next) {
                return Err(format!(
                    "partition {p}: a fetch from {from} on node {} returned offset {offset} where {next} belongs",
                    i + 1
                ));
            }
            if offset >= hw {
                return Err(format!(
                    "partition {p}: node {} served offset {offset} at or above its high watermark {hw}",
                    i + 1
                ));
            }
            self.history.consumed(p, offset, id)?;
            next = Offset(offset.0 + 1);
        }
        self.report.consumed += records.len() as u64;
        if compacted && !batches.is_empty() {
            next = next.max(end);
        }
        self.positions.insert(p, next);
        Ok(())
    }

    /// Runs until the cluster converges (clients on for the first quarter
    /// of the steps), cutting the wiped node's power at step `crash_at`.
    async fn converge(&mut self, opts: Options, steps_before: u64, crash_at: Option<u64>) -> Result<(), String> {
        for step in 0..opts.heal_steps {
            self.report.steps = steps_before + step;
            if Some(step) == crash_at {
                self.crash_wiped();
            }
            self.step(step < opts.heal_steps / 4).await?;
            if step > opts.heal_steps / 4 && self.converged() {
                return Ok(());
            }
        }
        Err(self.stuck())
    }

    /// A follower (the cluster converged: every entry is on every node, so
    /// none is lost with it) loses its disk.
    fn wipe_follower(&mut self) {
        let followers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up.as_ref().is_some_and(|u| !u.state.leader))
            .collect();
        let Some(&i) = followers.get(self.rng.below(followers.len().max(1) as u64) as usize) else {
            return;
        };
        trace!(self, "node {} loses its disk", i + 1);
        let seed = self.rng.below(u64::MAX);
        self.nodes[i].wipe(self.now_ms, seed);
        self.wiped = Some(i);
        self.report.wipes += 1;
    }

    /// The wiped node loses power while it rebuilds.
    fn crash_wiped(&mut self) {
        if let Some(i) = self.wiped.filter(|&i| self.nodes[i].up.is_some()) {
            trace!(self, "power cut: node {} while it rebuilds", i + 1);
            let now = self.now_ms;
            self.nodes[i].crash(now, 100 + self.rng.below(500));
            self.report.crashes += 1;
        }
    }

    /// Every node up and running, one leader that serves, every node's
    /// log committed as far as the leader's, every batch held (none still
    /// to pull after a snapshot), every node free to lead again and
    /// nothing in flight.
    fn converged(&self) -> bool {
        let ups: Vec<_> = self.nodes.iter().filter_map(|n| n.up.as_ref()).collect();
        if ups.len() != self.nodes.len() || ups.iter().any(|u| u.failed) {
            return false;
        }
        let leaders: Vec<_> = ups.iter().filter(|u| u.state.serves()).collect();
        let [leader] = leaders.as_slice() else {
            return false;
        };
        let commit = leader.group.commit_index();
        self.net.borrow().idle()
            && ups.iter().all(|u| {
                u.group.commit_index() == commit
                    && u.group.last_index() == commit
                    && !u.state.pulling()
                    && u.group.promotable()
            })
            && self.producers.iter().all(|p| p.pending.is_none())
    }

    fn stuck(&self) -> String {
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.up {
                None => format!("node {}: down", n.id),
                Some(u) => format!(
                    "node {}: leader {:?}, serves {}, term {}, commit {}, last {}, failed {}, pulling {}, promotable {}",
                    n.id,
                    u.state.leader_id,
                    u.state.serves(),
                    u.group.term(),
                    u.group.commit_index(),
                    u.group.last_index(),
                    u.failed,
                    u.state.pulling(),
                    u.group.promotable()
                ),
            })
            .collect();
        format!(
            "the cluster did not converge after the faults healed: {}",
            states.join("; ")
        )
    }

    /// The final check, once converged: every replica's committed log of
    /// every partition, read back from its WAL, against each other and
    /// against the history.
    async fn finish(mut self) -> Result<Report, String> {
        let mut logs: Vec<check::Logs> = Vec::new();
        for node in &self.nodes {
            let up = node.up.as_ref().expect("converged: every node is up");
            let mut node_logs = BTreeMap::new();
            for (&p, partition) in up.state.partitions.iter().collect::<BTreeMap<_, _>>() {
                let hw = partition.high_watermark();
                let mut records = Vec::new();
                let start = partition.log_start();
                let mut from = start;
                while from < hw {
                    let (batches, _, _) = up
                        .state
                        .plan_read(p, from, 1 << 20, true)
                        .map_err(|e| format!("node {}: partition {p}: {e}", node.id))?;
                    let bytes = crate::shard::read_batches(up.reader.clone(), &batches)
                        .await
                        .map_err(|e| format!("node {}: partition {p}: reading the log: {e}", node.id))?;
                    let (got, end) =
                        parse_batches(&bytes).map_err(|e| format!("node {}: partition {p}: {e}", node.id))?;
                    if batches.is_empty() {
                        return Err(format!(
                            "node {}: partition {p}: no batch below the high watermark {hw}",
                            node.id
                        ));
                    }
                    records.extend(got.into_iter().filter(|&(o, _)| o >= start));
                    from = end;
                }
                node_logs.insert(p, (start, records));
            }
            logs.push(node_logs);
        }
        let (sync_errors, flips) = self
            .nodes
            .iter()
            .map(|n| n.disk.counters())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        self.report.sync_errors = sync_errors;
        self.report.read_flips = flips;
        let net = self.net.borrow();
        self.report.messages = net.sent;
        self.report.lost_messages = net.lost;
        drop(net);
        self.report.trimmed_partitions = logs[0].values().filter(|(start, _)| start.0 > 0).count() as u64;
        self.report.segments_reclaimed = self.nodes.iter().map(|n| n.reclaimed).sum();
        self.report.checkpoint_starts = self.nodes.iter().map(|n| n.checkpoint_starts).sum();
        self.report.time_trims = self.nodes.iter().map(|n| n.time_trims).sum();
        self.report.bytes_moved = self.nodes.iter().map(|n| n.moved).sum();
        self.report.stale_background = self.nodes.iter().map(|n| n.stale_background).sum();
        self.report.snapshots = self.nodes.iter().map(|n| n.snapshots).sum();
        self.report.bytes_pulled = self.nodes.iter().map(|n| n.pulled).sum();
        self.report.bytes_pulled_saved = self.nodes.iter().map(|n| n.pulled_saved).sum();
        self.report.compactions = self.nodes.iter().map(|n| n.compactions).sum();
        self.history.check(&logs)?;
        Ok(self.report)
    }
}

/// Runs `seeds` seeds from `first` on one glommio executor (the WAL spawns
/// its background work there); returns the reports, or the first failing
/// seed and why (a broken invariant, or a panic in the code under test).
pub fn run_seeds(first: u64, seeds: u64, opts: Options) -> Result<Vec<Report>, (u64, String)> {
    use futures_lite::FutureExt;
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            #[cfg(feature = "planted-bugs")]
            crate::planted::plant(opts.planted);
            #[cfg(not(feature = "planted-bugs"))]
            assert!(opts.planted.is_none(), "planting a bug needs the planted-bugs feature");
            let mut reports = Vec::new();
            for seed in first..first + seeds {
                let outcome = std::panic::AssertUnwindSafe(run(seed, opts)).catch_unwind().await;
                match outcome {
                    Ok(Ok(r)) => reports.push(r),
                    Ok(Err(why)) => return Err((seed, why)),
                    Err(panic) => {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        return Err((seed, format!("panicked: {why}")));
                    }
                }
            }
            Ok(reports)
        })
        .expect("a glommio executor for the simulator (is the memlock limit high enough?)")
        .join()
        .expect("the simulator's executor ran")
}

#[cfg(test)]
mod tests;
