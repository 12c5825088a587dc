//! The per-shard broker context and the one routing path: each operation
//! on a partition goes to its owner shard — a direct call when that is this
//! shard, a mesh message (with a bounded reply channel) otherwise.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corestream_shards::mesh::{Mesh, Work};
use corestream_shards::{
    Durability, Offset, OffsetQuery, PartitionId, PartitionRead, ProduceItem, ProduceResult, Shard, ShardError, ShardId,
};

use super::control::{Control, ControlReply, ControlRequest};
use super::metrics::{RequestMetrics, ShardReport};
use crate::config::Config;
use crate::controller::{ClusterMeta, MetaChange};
use crate::group::{self, GroupReply, GroupRequest};

pub type ReadResult = Result<PartitionRead, ShardError>;
pub type OffsetResult = Result<Option<(Offset, i64)>, ShardError>;

/// One partition read: where, from which offset, how many bytes at most.
#[derive(Debug, Clone, Copy)]
pub struct ReadRequest {
    pub partition: PartitionId,
    pub offset: Offset,
    pub max_bytes: usize,
}

/// Everything that crosses from one shard to another.
pub enum NodeMsg {
    Produce {
        items: Vec<ProduceItem>,
        durability: Durability,
        reply: flume::Sender<Vec<ProduceResult>>,
    },
    Read {
        reads: Vec<ReadRequest>,
        budget: usize,
        reply: flume::Sender<Vec<ReadResult>>,
    },
    Watch {
        watches: Vec<(PartitionId, Offset)>,
        notify: flume::Sender<()>,
    },
    ListOffsets {
        queries: Vec<(PartitionId, OffsetQuery)>,
        reply: flume::Sender<Vec<OffsetResult>>,
    },
    /// DescribeLogDirs: each partition's stored bytes on this node.
    PartitionSizes {
        ids: Vec<PartitionId>,
        reply: flume::Sender<Vec<Option<u64>>>,
    },
    /// DeleteRecords: each partition's log start up to an offset (`None`:
    /// the high watermark); the reply holds each new low watermark.
    DeleteRecords {
        trims: Vec<(PartitionId, Option<Offset>)>,
        reply: flume::Sender<Vec<Result<Offset, ShardError>>>,
    },
    /// To shard 0: a metadata request for the controller.
    Control {
        request: ControlRequest,
        reply: flume::Sender<ControlReply>,
    },
    /// From shard 0: metadata changes to apply to this shard's copy.
    Meta {
        changes: Vec<MetaChange>,
        ack: flume::Sender<()>,
    },
    /// To a group's coordinator shard.
    Group {
        /// Boxed: a JoinGroup is the largest message between shards.
        request: Box<GroupRequest>,
        reply: flume::Sender<GroupReply>,
    },
    /// From the admin port: this shard's counters.
    Report { reply: flume::Sender<ShardReport> },
    /// From shard `group`: its Raft group's leader is now this broker
    /// (`None` while there is none).
    Leader { group: ShardId, leader: Option<i32> },
}

pub struct Broker {
    pub config: Arc<Config>,
    pub cluster_id: Arc<str>,
    pub shard: Rc<Shard>,
    pub mesh: Rc<Mesh<NodeMsg>>,
    /// This shard's read-only copy of the cluster metadata.
    pub meta: RefCell<ClusterMeta>,
    /// The controller; only shard 0 has one.
    pub control: Option<Control>,
    pub connections: Cell<usize>,
    /// The sockets of this shard's client connections, so a shutdown can
    /// end their reading (each then finishes what it was sent and closes).
    pub connection_fds: RefCell<std::collections::HashSet<std::os::fd::RawFd>>,
    /// Consumer groups whose coordinator is this shard.
    pub groups: group::Coordinator,
    /// PLAIN logins this shard checked (see `security::PlainLogins`).
    pub plain_logins: crate::security::PlainLogins,
    pub metrics: RequestMetrics,
    pub started: Instant,
    /// The leader (broker id) of each shard's Raft group, by shard index:
    /// the leader of every partition placed on that shard.
    pub leaders: RefCell<Vec<Option<i32>>>,
    pub was_cut_off: Cell<bool>,
    pub cut_off_checked: Cell<Instant>,
    /// Whether this shard has heard from a majority since it started.
    pub joined: Cell<bool>,
}

/// How long a cut-off verdict is reused before liveness is looked at again.
const CUT_OFF_RECHECK: Duration = Duration::from_millis(100);

/// A peer that sent nothing (not even a keepalive) for this long is down.
pub const PEER_LIVENESS: Duration = Duration::from_secs(3);

/// How long after start a request waits for the cluster to be reachable
/// before its connection is closed: peers started a moment later are
/// connected within a keepalive or two.
const STARTUP_GRACE: Duration = Duration::from_secs(10);

pub const CONTROLLER_SHARD: ShardId = ShardId(0);

impl Broker {
    pub fn me(&self) -> ShardId {
        self.mesh.me()
    }

    /// Ends the reading side of every client connection of this shard: each
    /// reads no more requests, writes the responses of those it has, and
    /// closes.
    pub fn close_connections_for_shutdown(&self) {
        for &fd in self.connection_fds.borrow().iter() {
            // SAFETY: the set holds the descriptors of live connections
            // only (removed before their stream is dropped); shutdown does
            // not close the descriptor.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
    }

    /// The broker leading the partitions of `shard`, if it is up.
    pub fn leader_of(&self, shard: ShardId) -> Option<i32> {
        let leader = self.leaders.borrow().get(shard.0 as usize).copied().flatten()?;
        self.live_brokers().contains(&leader).then_some(leader)
    }

    /// Where clients that came in on `listener` reach broker `id`: this
    /// broker's advertised address on that listener, a peer's address for
    /// that listener name in `cluster.nodes`, or its `kafka` address.
    pub fn address_of(&self, id: i32, listener: &crate::config::ListenerConfig) -> std::net::SocketAddr {
        if id == self.config.node_id {
            return listener.advertised;
        }
        self.config.node(id).map_or(listener.advertised, |n| {
            n.listeners.get(&listener.name).copied().unwrap_or(n.kafka)
        })
    }

    /// Whether this broker leads the partitions of `shard`.
    pub fn leads(&self, shard: ShardId) -> bool {
        self.leaders.borrow().get(shard.0 as usize).copied().flatten() == Some(self.config.node_id)
    }

    /// Whether this broker is one of a cluster and hears from no majority
    /// of it (itself included). Logged when that changes.
    pub fn cut_off(&self) -> bool {
        let nodes = self.config.cluster.nodes.len();
        if nodes <= 1 {
            return false;
        }
        // Asked on every request: the answer is kept for a tick, so the
        // request path does not gather the peers' liveness each time.
        let now = Instant::now();
        if now.duration_since(self.cut_off_checked.get()) < CUT_OFF_RECHECK {
            return self.was_cut_off.get();
        }
        self.cut_off_checked.set(now);
        let cut = self.live_brokers().len() * 2 <= nodes;
        if !cut {
            self.joined.set(true);
        }
        if self.was_cut_off.replace(cut) != cut {
            if cut {
                tracing::warn!(shard = %self.me(), "no majority of the cluster is reachable: closing client connections until it is");
            } else {
                tracing::info!(shard = %self.me(), "a majority of the cluster is reachable again: serving clients");
            }
        }
        cut
    }

    /// Whether this broker is cut off from its cluster for a request that
    /// arrives now. A broker that has not yet heard from a majority since it
    /// started is joining, not cut off: the request waits for the peers (up
    /// to `STARTUP_GRACE`) like a request to a Kafka broker that is still
    /// starting, instead of failing a client that found it first.
    pub async fn cut_off_for_request(&self) -> bool {
        while self.cut_off() {
            if self.joined.get() || self.started.elapsed() >= STARTUP_GRACE {
                return true;
            }
            glommio::timer::sleep(CUT_OFF_RECHECK).await;
        }
        false
    }

    /// Brokers this one knows to be up: itself, and the peers this shard
    /// heard from lately (every shard hears from the same shard of each
    /// peer, keepalives included).
    pub fn live_brokers(&self) -> Vec<i32> {
        let mut live: Vec<i32> = self
            .shard
            .live_peers(PEER_LIVENESS)
            .into_iter()
            .map(crate::config::node_of_raft_id)
            .collect();
        live.push(self.config.node_id);
        live.sort_unstable();
        live
    }

    async fn ask<R: Send>(&self, to: ShardId, make: impl FnOnce(flume::Sender<R>) -> NodeMsg) -> Option<R> {
        let (tx, rx) = flume::bounded(1);
        self.mesh.send(to, make(tx)).await.ok()?;
        rx.recv_async().await.ok()
    }

    pub async fn produce(&self, to: ShardId, items: Vec<ProduceItem>, durability: Durability) -> Vec<ProduceResult> {
        if to == self.me() {
            return self.shard.produce(items, durability).await;
        }
        let n = items.len();
        self.ask(to, |reply| NodeMsg::Produce {
            items,
            durability,
            reply,
        })
        .await
        .unwrap_or_else(|| vec![Err(unreachable_shard(to)); n])
    }

    /// Reads partitions of shard `to`, in order, about `budget` bytes in all.
    pub async fn read(&self, to: ShardId, reads: Vec<ReadRequest>, budget: usize) -> Vec<ReadResult> {
        if to == self.me() {
            return read_local(&self.shard, reads, budget).await;
        }
        let n = reads.len();
        self.ask(to, |reply| NodeMsg::Read { reads, budget, reply })
            .await
            .unwrap_or_else(|| vec![Err(unreachable_shard(to)); n])
    }

    /// Asks `to` to signal `notify` when any of the partitions has data past
    /// the given offset.
    pub async fn watch(&self, to: ShardId, watches: Vec<(PartitionId, Offset)>, notify: flume::Sender<()>) {
        if to == self.me() {
            for (p, o) in watches {
                self.shard.watch(p, o, notify.clone());
            }
            return;
        }
        let _ = self.mesh.send(to, NodeMsg::Watch { watches, notify }).await;
    }

    pub async fn list_offsets(&self, to: ShardId, queries: Vec<(PartitionId, OffsetQuery)>) -> Vec<OffsetResult> {
        if to == self.me() {
            return list_local(&self.shard, queries).await;
        }
        let n = queries.len();
        self.ask(to, |reply| NodeMsg::ListOffsets { queries, reply })
            .await
            .unwrap_or_else(|| vec![Err(unreachable_shard(to)); n])
    }

    /// The stored bytes of partitions of shard `to` (`None`: not held).
    pub async fn partition_sizes(&self, to: ShardId, ids: Vec<PartitionId>) -> Vec<Option<u64>> {
        if to == self.me() {
            return self.shard.partition_sizes(&ids);
        }
        let n = ids.len();
        self.ask(to, |reply| NodeMsg::PartitionSizes { ids, reply })
            .await
            .unwrap_or_else(|| vec![None; n])
    }

    /// DeleteRecords on the partitions of shard `to`.
    pub async fn delete_records(
        &self,
        to: ShardId,
        trims: Vec<(PartitionId, Option<Offset>)>,
    ) -> Vec<Result<Offset, ShardError>> {
        if to == self.me() {
            return delete_local(&self.shard, trims).await;
        }
        let n = trims.len();
        self.ask(to, |reply| NodeMsg::DeleteRecords { trims, reply })
            .await
            .unwrap_or_else(|| vec![Err(unreachable_shard(to)); n])
    }

    /// Runs a group request on the group's coordinator shard `to`.
    pub async fn group(self: &Rc<Self>, to: ShardId, request: GroupRequest) -> Option<GroupReply> {
        if to == self.me() {
            return Some(group::serve(self, request).await);
        }
        self.ask(to, |reply| NodeMsg::Group {
            request: Box::new(request),
            reply,
        })
        .await
    }

    /// Runs a metadata request on the controller shard.
    pub async fn control(self: &Rc<Self>, request: ControlRequest) -> ControlReply {
        if self.control.is_some() {
            return super::control::execute(self, request).await;
        }
        let fallback = request.failed(crate::controller::plan::ControlError::Storage(
            "controller shard unreachable".into(),
        ));
        self.ask(CONTROLLER_SHARD, |reply| NodeMsg::Control { request, reply })
            .await
            .unwrap_or(fallback)
    }

    /// Records who leads `group`. A shard that coordinated consumer groups
    /// and lost its group's leadership forgets their state: the next
    /// leader rebuilds it from the offsets topic, and so will this one if
    /// it leads again.
    pub fn set_leader(&self, group: ShardId, leader: Option<i32>) {
        let mut leaders = self.leaders.borrow_mut();
        let slot = &mut leaders[group.0 as usize];
        let was_me = *slot == Some(self.config.node_id);
        *slot = leader;
        if group == self.me() && was_me && leader != Some(self.config.node_id) {
            self.groups.forget_all();
        }
    }

    /// This shard's counters, for a scrape.
    pub fn local_report(&self) -> ShardReport {
        ShardReport {
            shard: self.me().0,
            storage: self.shard.report(),
            requests: self.metrics.report(),
            connections: self.connections.get() as u64,
            mesh_waits: self.mesh.backpressure_waits(),
            groups_refused: self.groups.refused.groups.get(),
            members_refused: self.groups.refused.members.get(),
            offsets_expired: self.groups.expired.get(),
            metadata_refused: self.control.as_ref().map_or(0, |c| c.refused.get()),
        }
    }

    pub async fn report(&self, to: ShardId) -> Option<ShardReport> {
        if to == self.me() {
            return Some(self.local_report());
        }
        self.ask(to, |reply| NodeMsg::Report { reply }).await
    }

    /// Serves a message from another shard: requests count against the
    /// mesh's bound per peer (backpressure), control traffic does not.
    pub fn handle(self: &Rc<Self>, _from: ShardId, msg: NodeMsg) -> Work {
        let b = self.clone();
        match msg {
            NodeMsg::Produce {
                items,
                durability,
                reply,
            } => Work::Request(Box::pin(async move {
                let _ = reply.send_async(b.shard.produce(items, durability).await).await;
            })),
            NodeMsg::Read { reads, budget, reply } => Work::Request(Box::pin(async move {
                let _ = reply.send_async(read_local(&b.shard, reads, budget).await).await;
            })),
            NodeMsg::Watch { watches, notify } => {
                for (p, o) in watches {
                    b.shard.watch(p, o, notify.clone());
                }
                Work::Done
            }
            NodeMsg::ListOffsets { queries, reply } => Work::Request(Box::pin(async move {
                let _ = reply.send_async(list_local(&b.shard, queries).await).await;
            })),
            NodeMsg::PartitionSizes { ids, reply } => {
                let _ = reply.try_send(b.shard.partition_sizes(&ids));
                Work::Done
            }
            NodeMsg::DeleteRecords { trims, reply } => Work::Request(Box::pin(async move {
                let _ = reply.send_async(delete_local(&b.shard, trims).await).await;
            })),
            NodeMsg::Control { request, reply } => Work::Request(Box::pin(async move {
                let _ = reply.send_async(super::control::execute(&b, request).await).await;
            })),
            NodeMsg::Group { request, reply } => Work::Request(Box::pin(async move {
                let _ = reply.send_async(group::serve(&b, *request).await).await;
            })),
            NodeMsg::Meta { changes, ack } => Work::Control(Box::pin(async move {
                super::control::apply_changes(&b, &changes);
                let _ = ack.send_async(()).await;
            })),
            NodeMsg::Report { reply } => Work::Control(Box::pin(async move {
                let _ = reply.send_async(b.local_report()).await;
            })),
            NodeMsg::Leader { group, leader } => {
                b.set_leader(group, leader);
                Work::Done
            }
        }
    }
}

async fn delete_local(shard: &Shard, trims: Vec<(PartitionId, Option<Offset>)>) -> Vec<Result<Offset, ShardError>> {
    shard.delete_records(trims).await
}

async fn list_local(shard: &Shard, queries: Vec<(PartitionId, OffsetQuery)>) -> Vec<OffsetResult> {
    let mut out = Vec::with_capacity(queries.len());
    for (p, q) in queries {
        out.push(shard.list_offset(p, q, crate::kafka::list_offsets::scan_batch).await);
    }
    out
}

async fn read_local(shard: &Shard, reads: Vec<ReadRequest>, budget: usize) -> Vec<ReadResult> {
    let reads: Vec<_> = reads.iter().map(|r| (r.partition, r.offset, r.max_bytes)).collect();
    shard.read_many(&reads, budget).await
}

fn unreachable_shard(to: ShardId) -> ShardError {
    ShardError::Storage(format!("shard {to} unreachable"))
}
