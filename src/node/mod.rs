//! Node assembly: start-up checks, metadata replay, one pinned glommio
//! executor per shard, the shard mesh, and each shard's Kafka listener.
//!
//! - `broker.rs`: the per-shard context and the routing path (`NodeMsg`).
//! - `control.rs`: controller execution on shard 0 and metadata broadcast.
//! - `fatal.rs`: a shard's panic or failure ends the process (no
//!   half-alive broker); the fault hooks of test builds.
//! - `shutdown.rs`: SIGTERM drains connections, hands Raft leadership
//!   over, and exits 0.
//! - `listener.rs`: the SO_REUSEPORT accept loop of every shard.
//! - `metrics.rs`, `admin.rs`: per-shard counters, and the admin HTTP port
//!   (/metrics, /health) on shard 0 that gathers them.

pub mod admin;
pub mod broker;
pub mod control;
pub mod fatal;
mod listener;
pub mod metrics;
mod shutdown;

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Context};
use corestream_shards::mesh::{self, Mesh, Work};
use corestream_shards::raft::Membership;
use corestream_shards::shard::ShardEvent;
use corestream_shards::{Shard, ShardConfig, ShardId};
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{node_of_raft_id, raft_id, Config};
use crate::controller::log::MetaLog;
use crate::controller::plan::ControlLimits;
use crate::controller::ClusterMeta;
use broker::{Broker, NodeMsg};
use control::Control;

/// Each shard's pool for O_DIRECT buffers, allocated once and, where the
/// memlock limit allows, registered with io_uring. WAL reads are cut to
/// 1 MiB, so a shard reading ahead for several consumers keeps its reads
/// in this pool; reads that do not fit get fresh buffers, whose pages the
/// kernel faults in, zeroes and pins on every read (20% slower consumes
/// here with glommio's 10 MiB default). Not part of `memory_per_shard`.
const SHARD_IO_MEMORY: usize = 32 << 20;
/// Runs the broker until its shards exit.
pub fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    fatal::exit_on_panic();
    let cores = config.shard_cores();
    for l in config.listeners()? {
        refuse_if_listening(l.bind, &format!("listener ({})", l.name))?;
    }
    // Certificates are read (and checked against their key) before any
    // shard starts, so a bad one stops start-up with the reason.
    if config.listeners()?.iter().any(|l| l.protocol.tls()) {
        crate::security::tls::server_config(&config.ssl)?;
    }
    if let Some(tls) = &config.cluster.tls {
        crate::security::tls::peer_tls(tls).context("cluster.tls")?;
    }
    if config.admin_listen.port() != 0 {
        refuse_if_listening(config.admin_listen, "--admin-listen")?;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    preflight(&config)?;
    let cluster_id = cluster_id(&config)?;
    let (meta_log, replayed) = MetaLog::open(&config.data_dir.join("metadata"))?;
    let mut meta = ClusterMeta::new(cores.len());
    for c in &replayed.changes {
        meta.apply(c)
            .map_err(|e| anyhow::anyhow!("replaying metadata from {}: {e}", config.data_dir.display()))?;
    }
    check_shard_dirs(&config.data_dir, cores.len())?;
    let topics = meta.topics.len();
    let partitions: usize = meta.shard_load().iter().sum();
    tracing::info!(
        listeners = ?config.listeners()?.iter().map(|l| format!("{}://{} ({})", l.name, l.bind, l.protocol.name())).collect::<Vec<_>>(),
        data_dir = %config.data_dir.display(),
        shards = cores.len(), ?cores, topics, partitions, brokers = ?config.brokers(), "starting corestream"
    );
    let meta_applied = replayed.index;

    // The admin port is bound before any shard starts, so it answers by the
    // time the Kafka listeners do (whoever sees the broker up can scrape
    // it), and a failure to bind is reported before anything runs.
    let admin = std::net::TcpListener::bind(config.admin_listen)
        .with_context(|| format!("binding the admin port (admin_listen) on {}", config.admin_listen))?;
    let mut admin_fd = Some(std::os::fd::IntoRawFd::into_raw_fd(admin));
    let config = Arc::new(config);
    let cluster_id: Arc<str> = cluster_id.into();
    let mesh = mesh::builder::<NodeMsg>(cores.len());
    let mut meta_log = Some(meta_log);
    // Each shard reports here when its task ends; the first failure ends
    // the broker (see `fatal.rs`), instead of waiting on the shards that
    // are still up.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, anyhow::Result<()>)>();
    let mut shutdown_sides = shutdown::install(cores.len())
        .context("taking SIGTERM and SIGINT for controlled shutdown")?
        .into_iter();
    for (k, &core) in cores.iter().enumerate() {
        let (config, cluster_id, mesh, meta) = (config.clone(), cluster_id.clone(), mesh.clone(), meta.clone());
        let log = if k == 0 { meta_log.take() } else { None };
        let admin = if k == 0 { admin_fd.take() } else { None };
        let side = shutdown_sides.next().context("one shutdown side per shard")?;
        let done = ShardReport {
            shard: k,
            to: done_tx.clone(),
            sent: false,
        };
        LocalExecutorBuilder::new(Placement::Fixed(core))
            .name(&format!("shard-{k}"))
            .io_memory(SHARD_IO_MEMORY)
            .spawn(move || async move {
                let result = shard_main(ShardStart {
                    id: ShardId(k as u16),
                    config,
                    cluster_id,
                    mesh,
                    meta,
                    meta_log: log.map(|l| (l, meta_applied)),
                    admin_fd: admin,
                    side,
                })
                .await;
                done.send(result);
            })
            .map_err(|e| anyhow::anyhow!("starting shard {k} on core {core}: {e}{}", memlock_hint()))?;
    }
    drop(done_tx);
    for _ in 0..cores.len() {
        match done_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((k, Err(e))) => bail!("shard {k} stopped: {e:#}"),
            Err(_) => break,
        }
    }
    Ok(())
}

/// Reports the end of one shard's task to `run`, also when the task never
/// ran: glommio returns an executor that fails to start (io_uring set-up,
/// locked memory) from the shard's thread, which only drops this.
struct ShardReport {
    shard: usize,
    to: std::sync::mpsc::Sender<(usize, anyhow::Result<()>)>,
    sent: bool,
}

impl ShardReport {
    fn send(mut self, result: anyhow::Result<()>) {
        self.sent = true;
        let _ = self.to.send((self.shard, result));
    }
}

impl Drop for ShardReport {
    fn drop(&mut self) {
        if !self.sent {
            let why = anyhow::anyhow!("its executor did not start{}", memlock_hint());
            let _ = self.to.send((self.shard, Err(why)));
        }
    }
}

/// What one shard starts from.
struct ShardStart {
    id: ShardId,
    config: Arc<Config>,
    cluster_id: Arc<str>,
    mesh: glommio::channels::channel_mesh::MeshBuilder<NodeMsg, glommio::channels::channel_mesh::Full>,
    meta: ClusterMeta,
    /// Shard 0's: the metadata log and the Raft index it applied.
    meta_log: Option<(MetaLog, u64)>,
    /// Shard 0's: the admin port, bound before any shard started.
    admin_fd: Option<std::os::fd::RawFd>,
    side: shutdown::ShardSide,
}

async fn shard_main(start: ShardStart) -> anyhow::Result<()> {
    let ShardStart {
        id,
        config,
        cluster_id,
        mesh,
        meta,
        meta_log,
        admin_fd,
        side,
    } = start;
    let brokers = config.brokers();
    let (raft_listen, peers) = match config.raft_endpoints(id.0) {
        Some((listen, peers)) => (Some(listen), peers),
        None => (None, Vec::new()),
    };
    let peer_tls = match &config.cluster.tls {
        Some(tls) => Some(crate::security::tls::peer_tls(tls).context("cluster.tls")?),
        None => None,
    };
    let shard_cfg = ShardConfig {
        id,
        wal_dir: config.data_dir.join(format!("shard-{}", id.0)).join("wal"),
        segment_bytes: config.wal.segment_bytes.0,
        memory_bytes: config.memory_per_shard.0,
        membership: Membership {
            me: raft_id(config.node_id),
            voters: brokers.iter().map(|&b| raft_id(b)).collect(),
        },
        raft_listen,
        peers,
        peer_tls,
        retention_check_interval: std::time::Duration::from_millis(config.topics.retention_check_interval_ms),
    };
    let owned = meta.partitions_of(id);
    let shard = Shard::open(shard_cfg.clone(), &owned, meta.peek_partition_ids(0).start)
        .await
        .with_context(|| format!("opening shard {id} at {}", shard_cfg.wal_dir.display()))?;
    let events = shard.take_events().expect("events are taken once");
    let control = meta_log.map(|(log, applied)| {
        Control::new(
            log,
            ControlLimits {
                brokers: brokers.clone(),
                max_partitions_per_shard: config.limits.max_partitions_per_shard,
                socket_request_max_bytes: config.limits.socket_request_max_bytes.0,
                default_partitions: config.topics.default_partitions,
            },
            applied,
        )
    });
    // SAFETY: the descriptor is the listening socket `run` bound for this
    // shard alone; this takes ownership of it once.
    let admin = admin_fd.map(|fd| unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    // Other shards may finish starting first and message this one (a
    // leader change) before its broker exists: those wait here.
    let slot: Rc<RefCell<Option<Rc<Broker>>>> = Rc::new(RefCell::new(None));
    let early: Rc<RefCell<Vec<(ShardId, NodeMsg)>>> = Rc::new(RefCell::new(Vec::new()));
    let (inbox, queued) = (slot.clone(), early.clone());
    let mesh = Mesh::join(mesh, move |from, msg| match inbox.borrow().clone() {
        Some(broker) => broker.handle(from, msg),
        None => {
            queued.borrow_mut().push((from, msg));
            Work::Done
        }
    })
    .await;
    let initial_rebalance_delay = std::time::Duration::from_millis(config.groups.initial_rebalance_delay_ms);
    let group_limits = crate::group::GroupLimits {
        groups: config.groups.max_groups_per_shard,
        members: config.groups.max_members_per_group,
    };
    let offsets_retention = crate::group::OffsetsRetention {
        retention_ms: i64::try_from(config.groups.offsets_retention_ms).unwrap_or(i64::MAX),
        check_interval: std::time::Duration::from_millis(config.groups.offsets_retention_check_interval_ms.max(1)),
    };
    let shards = mesh.shard_count();
    // A cluster node starts out hearing from nobody: not worth a warning.
    let in_cluster = !config.cluster.nodes.is_empty();
    let broker = Rc::new(Broker {
        config,
        cluster_id,
        shard,
        mesh,
        meta: RefCell::new(meta),
        control,
        connections: Cell::new(0),
        connection_fds: RefCell::new(Default::default()),
        groups: crate::group::Coordinator::new(initial_rebalance_delay, group_limits, offsets_retention),
        plain_logins: crate::security::PlainLogins::new().context("a key for remembering PLAIN logins")?,
        metrics: Default::default(),
        started: std::time::Instant::now(),
        leaders: RefCell::new(vec![None; shards]),
        was_cut_off: Cell::new(in_cluster),
        joined: Cell::new(!in_cluster),
        cut_off_checked: Cell::new({
            let now = std::time::Instant::now();
            now.checked_sub(std::time::Duration::from_secs(1)).unwrap_or(now)
        }),
    });
    *slot.borrow_mut() = Some(broker.clone());
    if broker.control.is_some() {
        // Snapshots of the metadata group carry this node's metadata log.
        let weak = Rc::downgrade(&broker);
        broker.shard.set_meta_image(Box::new(move || {
            let broker = weak.upgrade().ok_or("the broker stopped")?;
            let control = broker.control.as_ref().ok_or("no controller here")?;
            control.image()
        }));
    }
    let topics: Vec<String> = broker.meta.borrow().topics.keys().cloned().collect();
    for topic in &topics {
        control::apply_retention(&broker, topic);
    }
    // A handful at start-up (leader news), served outside the bound.
    for (from, msg) in early.take() {
        match broker.handle(from, msg) {
            Work::Request(serve) | Work::Control(serve) => {
                glommio::spawn_local(serve).detach();
            }
            Work::Done => {}
        }
    }
    glommio::spawn_local(follow_shard(broker.clone(), events)).detach();
    if let Some(admin) = admin {
        glommio::spawn_local(admin::serve(broker.clone(), admin)).detach();
    }
    tracing::debug!(shard = %id, partitions = owned.len(), "shard ready");
    // Serve until told to stop; keep accepting while the Raft group is
    // handed over, then drop the listener (stops accepting) and drain.
    let mut listening = glommio::spawn_local(listener::serve(broker.clone()));
    let stopped = async {
        let _ = side.stop.recv_async().await;
        Ok(())
    };
    futures_lite::future::or(&mut listening, stopped).await?;
    let handoff = shutdown::hand_off(&broker).await;
    drop(listening);
    shutdown::drain(&broker, &side, handoff).await;
    Ok(())
}

/// Follows this shard's events: tells every shard of this node who leads
/// this shard's Raft group, and (shard 0) applies committed metadata.
async fn follow_shard(broker: Rc<Broker>, events: glommio::channels::local_channel::LocalReceiver<ShardEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            ShardEvent::Leader { leader } => {
                let leader = leader.map(node_of_raft_id);
                let group = broker.me();
                broker.set_leader(group, leader);
                for s in 0..broker.mesh.shard_count() {
                    let to = ShardId(s as u16);
                    if to != group {
                        let _ = broker.mesh.send(to, NodeMsg::Leader { group, leader }).await;
                    }
                }
            }
            ShardEvent::MetaCommitted { index, command } => control::apply_committed(&broker, index, command).await,
            ShardEvent::MetaImage { index, image } => control::apply_image(&broker, index, image).await,
        }
    }
}

/// The fatal subset of `corestream doctor`: a machine that cannot run a
/// shard is told why and how to fix it, not shown a backtrace.
fn preflight(config: &Config) -> anyhow::Result<()> {
    raise_memlock();
    let failures = crate::doctor::fatal_failures(config);
    if failures.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failures
        .iter()
        .map(|c| {
            format!(
                "{}: {}. Fix: {}",
                c.name,
                c.detail,
                c.fix.as_deref().unwrap_or("see `corestream doctor`")
            )
        })
        .collect();
    bail!(
        "this machine cannot run corestream as configured:\n  {}",
        lines.join("\n  ")
    )
}

/// Shards bind with SO_REUSEPORT, which would silently share the port with
/// another broker already listening there. A plain bind cannot tell that
/// apart from connections of a killed predecessor lingering in TIME_WAIT,
/// so ask the question directly: does anything accept on that address?
/// A predecessor killed with -9 keeps its listening sockets for a moment
/// (the kernel tears its io_uring down asynchronously), so only a listener
/// that is still there after a few seconds counts.
fn refuse_if_listening(listen: std::net::SocketAddr, flag: &str) -> anyhow::Result<()> {
    let mut probe = listen;
    if probe.ip().is_unspecified() {
        probe.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect_timeout(&probe, std::time::Duration::from_millis(300)).is_ok() {
        if std::time::Instant::now() > deadline {
            bail!("another process is already listening on {listen}; stop it or choose another {flag} address");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

fn memlock_limit() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    (r.rlim_cur, r.rlim_max)
}

fn raise_memlock() {
    let (_, hard) = memlock_limit();
    let r = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass; failure leaves the limit as it was.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

fn memlock_hint() -> String {
    let (soft, _) = memlock_limit();
    let shown = if soft == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", soft / 1024)
    };
    format!(" (locked-memory limit `ulimit -l` is {shown}; glommio needs about 16 MiB per shard)")
}

/// The cluster's id (Metadata's cluster_id): a single node makes one up
/// and keeps it in its data dir; the nodes of a cluster derive the same one
/// from the node list they share (clients refuse brokers that report
/// different ids as members of one cluster).
fn cluster_id(config: &Config) -> anyhow::Result<String> {
    if !config.cluster.nodes.is_empty() {
        let mut nodes: Vec<String> = config
            .cluster
            .nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.raft))
            .collect();
        nodes.sort();
        let seed = nodes.join(",");
        let hi = crc32c::crc32c(seed.as_bytes()) as u128;
        let lo = crc32c::crc32c_append(0x5eed, seed.as_bytes()) as u128;
        let bytes = ((hi << 96) | (lo << 64) | seed.len() as u128).to_le_bytes();
        return Ok(uuid::Builder::from_random_bytes(bytes).into_uuid().simple().to_string());
    }
    local_cluster_id(&config.data_dir)
}

fn local_cluster_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("cluster.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Refuses to start with fewer shards than the data was written with:
/// the extra shards' WALs would be silently ignored.
fn check_shard_dirs(data_dir: &Path, shards: usize) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(k) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if k >= shards {
            bail!(
                "{} holds data of shard {k}, but this start has {shards} shards; start with at least {} shards (--shards or `shards` in the config)",
                data_dir.display(),
                k + 1
            );
        }
    }
    Ok(())
}
