//! corestream-bench: a thread-per-core Kafka load generator.
//!
//! It speaks the Kafka protocol itself (kafka-protocol codec) on glommio:
//! one executor per core, several connections per executor, many requests
//! in flight per connection, batching like a real producer. It works
//! against any Kafka-compatible broker.
//!
//! - `client.rs`: a pipelined connection.
//! - `cluster.rs`: Metadata (leaders), topic creation, offsets.
//! - `batch.rs`: record batch building and counting on the hot path.
//! - `produce.rs`, `consume.rs`: the workloads of one executor.
//! - `seed.rs`: many topics, a message per partition, consume all.
//! - `scenario.rs`: declarative workloads (TOML) made of those steps.
//! - `rate.rs`: fixed-rate pacing with coordinated-omission correction.
//! - `authz.rs`: the cost of an authorization decision, in process.
//! - `report.rs`: counters, histograms, progress and summary; `plot.rs`: SVG.

mod authz;
mod batch;
mod client;
mod cluster;
mod consume;
mod group;
mod plot;
mod produce;
mod rate;
mod report;
mod router;
mod scenario;
mod seed;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};

use consume::ConsumeConfig;
use produce::ProduceConfig;
use report::{Kind, Snapshot};

#[derive(Parser)]
#[command(
    name = "corestream-bench",
    version,
    about = "Kafka load generator (any Kafka-compatible broker)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    security: client::SecurityArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Produce to a topic (created if missing) and report throughput and ack latency.
    Produce(ProduceArgs),
    /// Consume a topic from the beginning and report throughput.
    Consume(ConsumeArgs),
    /// Produce at a fixed rate while consuming, and report end-to-end latency.
    E2e(ProduceArgs),
    /// Run a declarative workload (see bench/scenarios/).
    Scenario(ScenarioArgs),
    /// Time the broker's authorizer in this process: ns per decision with many ACLs.
    Authz(authz::AuthzArgs),
}

#[derive(Args, Clone)]
struct ScenarioArgs {
    /// The scenario file (TOML).
    file: PathBuf,
    /// Broker(s) to start from: HOST:PORT[,HOST:PORT...]
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Executors (one per core) [default: all cores].
    #[arg(long)]
    cores: Option<usize>,
    /// Write every step's results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only parse and check the file, then list its steps.
    #[arg(long)]
    check: bool,
}

#[derive(Args, Clone)]
struct Common {
    /// Broker(s) to start from: HOST:PORT[,HOST:PORT...]
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "corestream-bench")]
    topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// How long to run, e.g. 30s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Executors (one per core) [default: all cores].
    #[arg(long)]
    cores: Option<usize>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the latency percentile curve as SVG to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Messages per second in all; without it, as fast as the broker allows.
    #[arg(long)]
    rate: Option<f64>,
    /// 0, 1, or all.
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    acks: i16,
    /// Compression of each batch's records.
    #[arg(long, value_enum, default_value = "none")]
    compression: batch::Codec,
    /// Records per batch (one batch per request), at most.
    #[arg(long, default_value_t = 1000)]
    batch_messages: usize,
    /// With --rate: longest a message waits for its batch to fill.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    linger: Duration,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Connections per executor and leader.
    #[arg(long, default_value_t = 2)]
    connections: usize,
}

#[derive(Args, Clone)]
struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Stop once every partition is read up to where it ended at start.
    #[arg(long)]
    until_end: bool,
    /// Consume as members of this consumer group (one per executor): the
    /// group assigns partitions, positions are committed.
    #[arg(long)]
    group: Option<String>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let v: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 30s)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("unknown unit in '{s}': use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("acks '{s}': use 0, 1 or all")),
    }
}

/// The same allocator as the broker: consuming, the generator receives
/// responses of tens of MiB, and glibc would hand each one back as fresh
/// pages (see the broker's src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corestream-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    client::configure(&cli.security)?;
    let (common, produce, consume) = match cli.command {
        Command::Produce(a) => (a.common.clone(), Some(produce_config(&a)), None),
        Command::Consume(a) => (
            a.common.clone(),
            None,
            Some(ConsumeConfig {
                group: a.group.clone(),
                ..consume_config(&a.common, a.until_end, false, false)
            }),
        ),
        Command::E2e(a) => {
            if a.rate.is_none() {
                bail!("e2e needs --rate: latency at an unbounded rate measures queueing, not the broker");
            }
            let mut c = consume_config(&a.common, false, true, true);
            c.duration += Duration::from_secs(2); // drain what was produced last
            (a.common.clone(), Some(produce_config(&a)), Some(c))
        }
        Command::Authz(a) => return authz::run(&a),
        Command::Scenario(a) => return scenario::run(&a.file, &a.bootstrap, a.cores, a.json.as_deref(), a.check),
    };
    let results = run_workload(
        &common.bootstrap,
        &common.topic,
        common.partitions,
        common.cores,
        produce,
        consume,
    )?;
    if let Some(path) = &common.plot {
        let curves: Vec<(&str, &hdrhistogram::Histogram<u64>)> = results
            .iter()
            .map(|(s, snap)| (s.mode.as_str(), &snap.latency_us))
            .collect();
        let title = format!("corestream-bench: {} latency", common.topic);
        std::fs::write(path, plot::svg(&title, &curves)).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &common.json {
        let summaries: Vec<&report::Summary> = results.iter().map(|(s, _)| s).collect();
        std::fs::write(path, serde_json::to_string_pretty(&summaries)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Prepares the topic, runs the producer and/or consumer on every core,
/// prints the summaries, and returns them with the merged counters.
pub fn run_workload(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    cores: Option<usize>,
    produce: Option<ProduceConfig>,
    consume: Option<ConsumeConfig>,
) -> anyhow::Result<Vec<(report::Summary, Snapshot)>> {
    let bootstrap = cluster::resolve_bootstrap(bootstrap)?;
    let topic_name = topic.to_string();
    let leaders = on_executor(move || async move { cluster::prepare_topic(bootstrap, &topic_name, partitions).await })
        .context("preparing the topic")??;
    let executors = cores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let results = run_executors(executors, bootstrap, &leaders, produce, consume)?;
    Ok(results
        .into_iter()
        .map(|(kind, total, elapsed)| {
            let s = report::summarize(kind.name(), &total, elapsed);
            report::print_summary(&s);
            (s, total)
        })
        .collect())
}

fn produce_config(a: &ProduceArgs) -> ProduceConfig {
    ProduceConfig {
        topic: a.common.topic.clone(),
        message_bytes: a.message_bytes,
        batch_messages: a.batch_messages.max(1),
        linger: a.linger,
        in_flight: a.in_flight.max(1),
        connections: a.connections.max(1),
        acks: a.acks,
        codec: a.compression,
        duration: a.common.duration,
        rate: a.rate,
        executors: 1, // set once the executor count is known
    }
}

fn consume_config(c: &Common, until_end: bool, from_end: bool, e2e: bool) -> ConsumeConfig {
    ConsumeConfig {
        topic: c.topic.clone(),
        duration: if until_end {
            Duration::from_secs(3600)
        } else {
            c.duration
        },
        until_end,
        from_end,
        max_bytes: 64 << 20,
        partition_max_bytes: 8 << 20,
        e2e,
        group: None,
    }
}

/// Runs a future on a short-lived executor (set-up work before the run).
pub fn on_executor<F, Fut, T>(f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(f)
        .map_err(|e| anyhow::anyhow!("starting an executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor failed: {e}"))
}

type KindResult = (Kind, Snapshot, Duration);

fn run_executors(
    executors: usize,
    bootstrap: SocketAddr,
    leaders: &cluster::Leaders,
    produce: Option<ProduceConfig>,
    consume: Option<ConsumeConfig>,
) -> anyhow::Result<Vec<KindResult>> {
    let (tx, rx) = mpsc::channel::<Snapshot>();
    let start = Instant::now() + Duration::from_millis(200);
    let cpus = allowed_cpus();
    let mut handles = Vec::new();
    // Executors beyond the partition count would have nothing to do.
    let executors = executors.min(leaders.len()).max(1);
    for e in 0..executors {
        // Partitions are dealt round-robin over executors.
        let mine: cluster::Leaders = leaders
            .iter()
            .skip(e)
            .step_by(executors)
            .map(|(p, a)| (*p, *a))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let (tx, produce, consume, all) = (tx.clone(), produce.clone(), consume.clone(), leaders.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpus[e % cpus.len()]))
            .name(&format!("bench-{e}"))
            .spawn(move || async move {
                let partitions: Vec<i32> = mine.keys().copied().collect();
                let consumer = consume.map(|c| {
                    // In a group, the group deals the partitions, not the generator.
                    let mine = if c.group.is_some() { all.clone() } else { mine.clone() };
                    let (tx, partitions) = (tx.clone(), mine.keys().copied().collect());
                    let router = router::Router::new(&c.topic, bootstrap, mine);
                    glommio::spawn_local(async move {
                        // An end-to-end consumer takes its positions before
                        // the producer starts; any other starts with the clock.
                        let now = Instant::now();
                        if !c.from_end && start > now {
                            glommio::timer::sleep(start - now).await;
                        }
                        consume::run(c, e, router, partitions, start, tx).await
                    })
                });
                let producer = produce.map(|mut p| {
                    p.executors = executors;
                    glommio::spawn_local(async move {
                        let now = Instant::now();
                        if start > now {
                            glommio::timer::sleep(start - now).await;
                        }
                        let router = router::Router::new(&p.topic, bootstrap, mine);
                        produce::run(p, e, router, partitions, start, tx).await
                    })
                });
                let mut out = Vec::new();
                if let Some(p) = producer {
                    out.push(p.await);
                }
                if let Some(c) = consumer {
                    out.push(c.await);
                }
                out
            })
            .map_err(|e| anyhow::anyhow!("starting executor {e}: {e}"))?;
        handles.push(handle);
    }
    drop(tx);
    let kinds: Vec<Kind> = [(produce.is_some(), Kind::Produce), (consume.is_some(), Kind::Consume)]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
    let ended = progress_loop(rx, start, &kinds, handles.len());
    let mut totals: BTreeMap<Kind, Vec<Snapshot>> = BTreeMap::new();
    for h in handles {
        for r in h.join().map_err(|e| anyhow::anyhow!("executor failed: {e}"))? {
            let snap = r?;
            totals.entry(snap.kind).or_default().push(snap);
        }
    }
    Ok(kinds
        .into_iter()
        .map(|k| {
            let snaps = totals.remove(&k).unwrap_or_default();
            let elapsed = ended.get(&k).copied().unwrap_or_else(|| start.elapsed());
            (k, report::merge(k, &snaps), elapsed)
        })
        .collect())
}

/// The CPUs this process may run on (its affinity mask: `taskset -c 1
/// corestream-bench ...` keeps the generator off the broker's cores), in
/// order. Executors are pinned to these, one each, round-robin.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed cpu_set_t we pass with its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    let cpus: Vec<usize> = if ok {
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        cpus
    }
}

/// Prints a line a second until every executor is done; returns when each
/// kind of work ended (all `executors` reported it done), measured from
/// `start`.
fn progress_loop(
    rx: mpsc::Receiver<Snapshot>,
    start: Instant,
    kinds: &[Kind],
    executors: usize,
) -> BTreeMap<Kind, Duration> {
    let mut latest: BTreeMap<(Kind, usize), Snapshot> = BTreeMap::new();
    let mut previous: BTreeMap<Kind, (u64, u64)> = BTreeMap::new();
    let mut ended = BTreeMap::new();
    let mut next_tick = start + Duration::from_secs(1);
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(s) => {
                latest.insert((s.kind, s.executor), s);
                for &k in kinds {
                    let done = latest.values().filter(|s| s.kind == k && s.done).count();
                    if done == executors {
                        ended.entry(k).or_insert_with(|| start.elapsed());
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return ended,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let mut line = format!("[{:>4.0}s]", start.elapsed().as_secs_f64());
        for &k in kinds {
            let total = report::merge(k, latest.values());
            let (msgs_before, bytes_before) = previous.get(&k).copied().unwrap_or((0, 0));
            previous.insert(k, (total.messages, total.bytes));
            let p99 = if total.latency_us.is_empty() {
                0.0
            } else {
                total.latency_us.value_at_percentile(99.0) as f64 / 1000.0
            };
            let errors: u64 = total.errors.values().sum();
            line += &format!(
                "  {} {:>10} msg/s {:>7.1} MiB/s p99 {:>7.2} ms errors {}",
                k.name(),
                total.messages - msgs_before,
                (total.bytes - bytes_before) as f64 / (1 << 20) as f64,
                p99,
                errors
            );
        }
        println!("{line}");
        next_tick += Duration::from_secs(1);
    }
}
