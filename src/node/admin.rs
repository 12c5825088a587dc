//! The admin HTTP port (default 127.0.0.1:9644), served by shard 0:
//! `GET /metrics` (Prometheus text) and `GET /health` (200 "ready", or 503
//! with the reasons). A small HTTP/1.1 server: one request per connection.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::broker::Broker;
use super::metrics::{render, NodeFacts, ShardReport};

const REQUEST_BYTES_MAX: usize = 8 << 10;

pub async fn serve(broker: Rc<Broker>, listener: TcpListener) {
    loop {
        let Ok(stream) = listener.accept().await else {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let b = broker.clone();
        glommio::spawn_local(async move {
            let _ = handle(&b, stream).await;
        })
        .detach();
    }
}

async fn handle(broker: &Rc<Broker>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > REQUEST_BYTES_MAX {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let reports = gather(broker).await;
            let facts = NodeFacts {
                uptime: broker.started.elapsed(),
                brokers: broker.config.brokers().len(),
                brokers_live: broker.live_brokers().len(),
                leaders: broker.leaders.borrow().iter().map(|l| l.unwrap_or(-1)).collect(),
                max_partitions_per_shard: broker.config.limits.max_partitions_per_shard,
                version: env!("CARGO_PKG_VERSION"),
                disk: disk_space(&broker.config.data_dir),
            };
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&facts, &reports),
            )
        }
        ("GET", "/health") => {
            let reports = gather(broker).await;
            let (ready, text) = health(broker, &reports);
            (
                if ready { "200 OK" } else { "503 Service Unavailable" },
                "text/plain; charset=utf-8",
                text,
            )
        }
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics or /health\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.close().await
}

/// Asks every shard for its report; a shard that does not answer in time
/// is left out (and /health says so).
async fn gather(broker: &Rc<Broker>) -> Vec<ShardReport> {
    let mut out = Vec::with_capacity(broker.mesh.shard_count());
    for s in 0..broker.mesh.shard_count() {
        let to = corestream_shards::ShardId(s as u16);
        let ask = broker.report(to);
        let late = async {
            glommio::timer::sleep(Duration::from_secs(2)).await;
            None
        };
        if let Some(r) = futures_lite::future::or(ask, late).await {
            out.push(r);
        }
    }
    out
}

/// Bytes available and in all on the file system holding `dir`. Available
/// is what `df` shows and Kafka's DescribeLogDirs reports (f_bavail): root
/// may write into reserved blocks too, but counting them would report free
/// space a file system with quotas or a thin pool does not have.
pub fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) with a NUL-terminated path and a zeroed struct it fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    let free = st.f_bavail;
    Some((free as u64 * block, st.f_blocks as u64 * block))
}

fn health(broker: &Broker, reports: &[ShardReport]) -> (bool, String) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let shards = broker.mesh.shard_count();
    if reports.len() < shards {
        problems.push(format!("{} of {shards} shards did not answer", shards - reports.len()));
    }
    let limit = broker.config.limits.max_partitions_per_shard as u64;
    for r in reports {
        if let Some(why) = &r.storage.failed {
            problems.push(format!("shard {} refuses writes: {why}", r.shard));
        }
        if broker.leader_of(corestream_shards::ShardId(r.shard)).is_none() {
            problems.push(format!(
                "shard {}'s Raft group has no leader this broker can reach",
                r.shard
            ));
        }
        if r.storage.partitions * 10 >= limit * 8 {
            warnings.push(format!(
                "shard {} holds {} of {limit} partitions (limits.max_partitions_per_shard)",
                r.shard, r.storage.partitions
            ));
        }
    }
    if broker.cut_off() {
        problems.push("no majority of the cluster is reachable; client connections are closed".into());
    }
    if let Some((free, total)) = disk_space(&broker.config.data_dir) {
        // Warn while there is time to act: a WAL that meets a full disk
        // stops its shard's writes until a restart. Each shard's next roll
        // needs a segment's worth.
        let rolls = 2 * broker.config.wal.segment_bytes.0 * shards as u64;
        if total > 0 && (free * 10 < total || free < rolls) {
            warnings.push(format!(
                "the data dir's file system is {}% full ({} MiB free of {} MiB)",
                100 - free * 100 / total,
                free >> 20,
                total >> 20
            ));
        }
    }
    let live = broker.live_brokers();
    for b in broker.config.brokers() {
        if !live.contains(&b) {
            warnings.push(format!("broker {b} has not been heard from in the last 3 s"));
        }
    }
    let mut text = if problems.is_empty() {
        "ready\n".to_string()
    } else {
        "not ready\n".to_string()
    };
    for p in &problems {
        text += &format!("problem: {p}\n");
    }
    for w in &warnings {
        text += &format!("warning: {w}\n");
    }
    (problems.is_empty(), text)
}
