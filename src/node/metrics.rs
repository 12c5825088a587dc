//! Metrics: each shard counts its Kafka requests here and its storage in
//! `corestream_shards::metrics`, in plain cells on its own core. A scrape
//! (`admin.rs`, on shard 0) asks every shard for an owned `ShardReport`
//! over the mesh and renders Prometheus text; nothing on the request path
//! crosses cores.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use corestream_shards::metrics::{new_histogram, summarize, LatencySummary, StorageReport};
use hdrhistogram::Histogram;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::ApiKey;

struct ApiStats {
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    latency_us: Histogram<u64>,
    latency_us_sum: u64,
}

#[derive(Default)]
pub struct RequestMetrics {
    apis: RefCell<BTreeMap<i16, ApiStats>>,
    errors: RefCell<BTreeMap<i16, u64>>,
    /// TLS handshakes that failed (or timed out), by listener.
    tls_failures: RefCell<BTreeMap<String, u64>>,
    /// SASL outcomes by (listener, mechanism, outcome).
    authentications: RefCell<BTreeMap<(String, &'static str, AuthOutcome), u64>>,
    /// Requests (or parts of them) the authorizer refused, by resource type.
    denials: RefCell<BTreeMap<&'static str, u64>>,
    pub connections_accepted: Cell<u64>,
}

impl RequestMetrics {
    pub fn record(&self, api: ApiKey, bytes_in: usize, bytes_out: usize, took: Duration) {
        let mut apis = self.apis.borrow_mut();
        let s = apis.entry(api as i16).or_insert_with(|| ApiStats {
            requests: 0,
            bytes_in: 0,
            bytes_out: 0,
            latency_us: new_histogram(),
            latency_us_sum: 0,
        });
        let us = took.as_micros() as u64;
        s.requests += 1;
        s.bytes_in += bytes_in as u64;
        s.bytes_out += bytes_out as u64;
        s.latency_us.saturating_record(us.max(1));
        s.latency_us_sum += us;
    }

    /// Counts a Kafka error code sent back to a client (0 is not an error).
    pub fn error(&self, code: i16) {
        if code != 0 {
            *self.errors.borrow_mut().entry(code).or_default() += 1;
        }
    }

    pub fn tls_handshake_failed(&self, listener: &str) {
        let mut m = self.tls_failures.borrow_mut();
        match m.get_mut(listener) {
            Some(n) => *n += 1,
            None => {
                m.insert(listener.to_string(), 1);
            }
        }
    }

    /// Counts an authorization denial on a resource type (e.g. "TOPIC").
    pub fn denied(&self, resource_type: &'static str) {
        *self.denials.borrow_mut().entry(resource_type).or_default() += 1;
    }

    /// Counts how a SASL authentication or session ended.
    pub fn authentication(&self, listener: &str, mechanism: &'static str, outcome: AuthOutcome) {
        let mut m = self.authentications.borrow_mut();
        let key = (listener.to_string(), mechanism, outcome);
        match m.get_mut(&key) {
            Some(n) => *n += 1,
            None => {
                m.insert(key, 1);
            }
        }
    }

    pub fn report(&self) -> RequestReport {
        RequestReport {
            apis: self
                .apis
                .borrow()
                .iter()
                .map(|(&k, s)| ApiReport {
                    api: ApiKey::try_from(k).map_or_else(|_| k.to_string(), |a| format!("{a:?}")),
                    requests: s.requests,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    latency: summarize(&s.latency_us, s.latency_us_sum),
                })
                .collect(),
            errors: self.errors.borrow().iter().map(|(&c, &n)| (c, n)).collect(),
            tls_failures: self
                .tls_failures
                .borrow()
                .iter()
                .map(|(l, &n)| (l.clone(), n))
                .collect(),
            authentications: self
                .authentications
                .borrow()
                .iter()
                .map(|((l, m, outcome), &n)| (l.clone(), *m, *outcome, n))
                .collect(),
            denials: self.denials.borrow().iter().map(|(&t, &n)| (t, n)).collect(),
            connections_accepted: self.connections_accepted.get(),
        }
    }
}

/// How a SASL exchange or session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthOutcome {
    Success,
    /// A session renewed by re-authentication (KIP-368).
    Reauthenticated,
    Failure,
    /// A connection closed because its session ran out
    /// (sasl.connections_max_reauth_ms) without re-authentication.
    Expired,
}

impl AuthOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Reauthenticated => "reauthenticated",
            Self::Failure => "failure",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiReport {
    pub api: String,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, Default)]
pub struct RequestReport {
    pub apis: Vec<ApiReport>,
    pub errors: Vec<(i16, u64)>,
    /// (listener, failed TLS handshakes).
    pub tls_failures: Vec<(String, u64)>,
    /// (listener, mechanism, outcome, count).
    pub authentications: Vec<(String, &'static str, AuthOutcome, u64)>,
    /// (resource type, denials).
    pub denials: Vec<(&'static str, u64)>,
    pub connections_accepted: u64,
}

/// Everything one shard reports to a scrape.
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub shard: u16,
    pub storage: StorageReport,
    pub requests: RequestReport,
    pub connections: u64,
    /// Times this shard stopped taking requests from a peer shard until
    /// one of its requests finished (mesh backpressure).
    pub mesh_waits: u64,
    /// New groups and members refused at `[groups]` limits.
    pub groups_refused: u64,
    pub members_refused: u64,
    /// Committed offsets deleted by offsets retention.
    pub offsets_expired: u64,
    /// Metadata changes refused because too many were waiting to commit
    /// (shard 0 runs the controller; 0 elsewhere).
    pub metadata_refused: u64,
}

/// Node-wide facts for the scrape.
pub struct NodeFacts {
    pub uptime: Duration,
    /// Brokers of the cluster (1 on a single node), and how many of them
    /// this one heard from lately (itself included).
    pub brokers: usize,
    pub brokers_live: usize,
    /// The broker leading each shard's Raft group (-1: none known).
    pub leaders: Vec<i32>,
    pub max_partitions_per_shard: usize,
    pub version: &'static str,
    /// The data dir's file system: bytes free to the broker, and in all.
    pub disk: Option<(u64, u64)>,
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = if labels.is_empty() {
            writeln!(self.out, "{name} {value}")
        } else {
            writeln!(self.out, "{name}{{{labels}}} {value}")
        };
    }

    fn summary(&mut self, name: &str, labels: &str, s: &LatencySummary) {
        for (q, v) in &s.quantiles {
            self.line(name, &format!("{labels},quantile=\"{q}\""), v);
        }
        self.line(&format!("{name}_sum"), labels, s.sum_seconds);
        self.line(&format!("{name}_count"), labels, s.count);
    }
}

/// Reads one counter of an API's report.
type ApiCounter = fn(&ApiReport) -> u64;

/// Renders the Prometheus text exposition format (version 0.0.4).
pub fn render(node: &NodeFacts, shards: &[ShardReport]) -> String {
    let mut out = String::with_capacity(16 << 10);
    let mut f = Family { out: &mut out };
    f.head("corestream_build_info", "gauge", "Build of the running broker.");
    f.line("corestream_build_info", &format!("version=\"{}\"", node.version), 1);
    f.head(
        "corestream_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
    );
    f.line("corestream_uptime_seconds", "", node.uptime.as_secs_f64());
    if let Some((free, total)) = node.disk {
        f.head(
            "corestream_disk_free_bytes",
            "gauge",
            "Bytes free to the broker on the data dir's file system (/health warns under 10%).",
        );
        f.line("corestream_disk_free_bytes", "", free);
        f.head(
            "corestream_disk_total_bytes",
            "gauge",
            "Size of the data dir's file system.",
        );
        f.line("corestream_disk_total_bytes", "", total);
    }
    f.head("corestream_shards", "gauge", "Shards (pinned executors) of this node.");
    f.line("corestream_shards", "", shards.len());
    f.head(
        "corestream_cluster_brokers",
        "gauge",
        "Brokers of the cluster, as configured.",
    );
    f.line("corestream_cluster_brokers", "", node.brokers);
    f.head(
        "corestream_cluster_brokers_live",
        "gauge",
        "Brokers this one heard from in the last 3 s, itself included.",
    );
    f.line("corestream_cluster_brokers_live", "", node.brokers_live);
    f.head(
        "corestream_raft_leader_broker",
        "gauge",
        "Broker id leading the shard's Raft group (the leader of its partitions); -1 while none.",
    );
    for (k, leader) in node.leaders.iter().enumerate() {
        f.line("corestream_raft_leader_broker", &format!("shard=\"{k}\""), leader);
    }

    let per_shard = |f: &mut Family, name: &str, kind: &str, help: &str, value: &dyn Fn(&ShardReport) -> String| {
        f.head(name, kind, help);
        for s in shards {
            f.line(name, &format!("shard=\"{}\"", s.shard), value(s));
        }
    };
    per_shard(
        &mut f,
        "corestream_connections",
        "gauge",
        "Open client connections.",
        &|s| s.connections.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_mesh_backpressure_waits_total",
        "counter",
        "Times this shard had 256 requests from one peer shard in hand and stopped taking more until one finished.",
        &|s| s.mesh_waits.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        &|s| s.requests.connections_accepted.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_partitions",
        "gauge",
        "Partitions the shard owns.",
        &|s| s.storage.partitions.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_partitions_limit",
        "gauge",
        "limits.max_partitions_per_shard (new partitions are refused beyond it).",
        &|_| node.max_partitions_per_shard.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_memory_budget_bytes",
        "gauge",
        "The shard's memory budget (memory_per_shard).",
        &|s| s.storage.budget_limit_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_memory_budget_used_bytes",
        "gauge",
        "Budget held by requests in flight.",
        &|s| s.storage.budget_used_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_backpressure_waits_total",
        "counter",
        "Requests that waited for the memory budget (backpressure).",
        &|s| s.storage.budget_waits.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_wal_bytes_total",
        "counter",
        "Bytes appended to the WAL.",
        &|s| s.storage.wal_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_wal_appends_total",
        "counter",
        "WAL group commits (write + fdatasync).",
        &|s| s.storage.wal_appends.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_wal_records_total",
        "counter",
        "WAL records appended (Raft entries and hard states).",
        &|s| s.storage.wal_records.to_string(),
    );
    per_shard(&mut f, "corestream_wal_segments", "gauge", "WAL segment files.", &|s| {
        s.storage.wal_segments.to_string()
    });
    per_shard(
        &mut f,
        "corestream_wal_segments_reclaimed_total",
        "counter",
        "WAL segments removed because no partition retained a batch in them and every replica held their entries.",
        &|s| s.storage.wal_segments_reclaimed.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_wal_checkpoints_total",
        "counter",
        "Checkpoints of the shard's state written so that the WAL before them could be reclaimed.",
        &|s| s.storage.wal_checkpoints.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_cold_files",
        "gauge",
        "Cold files: batches of long-retained partitions moved out of WAL segments so that those could be reclaimed.",
        &|s| s.storage.cold_files.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_index_file_bytes",
        "gauge",
        "Bytes of the offset index files (frozen index blocks, mapped into memory; rebuilt at start).",
        &|s| s.storage.index_file_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_index_live_bytes",
        "gauge",
        "Bytes of the offset index blocks in use in the index files (the rest goes with its file, or is moved out of sparse files).",
        &|s| s.storage.index_live_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_bytes_moved_total",
        "counter",
        "Bytes copied into cold files (out of WAL segments, or merged out of mostly dead cold files).",
        &|s| s.storage.bytes_moved.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_retained_bytes",
        "gauge",
        "Bytes of the record batches the shard's partitions retain (from each log start).",
        &|s| s.storage.retained_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_produce_batches_total",
        "counter",
        "Record batches written; divided by WAL appends: the batches each group commit carried.",
        &|s| s.storage.batches_staged.to_string(),
    );
    f.head(
        "corestream_group_limit_refusals_total",
        "counter",
        "New groups (groups.max_groups_per_shard, answered COORDINATOR_NOT_AVAILABLE) and new members (groups.max_members_per_group, answered GROUP_MAX_SIZE_REACHED) refused.",
    );
    for s in shards {
        for (limit, n) in [("groups", s.groups_refused), ("members", s.members_refused)] {
            f.line(
                "corestream_group_limit_refusals_total",
                &format!("shard=\"{}\",limit=\"{limit}\"", s.shard),
                n.to_string(),
            );
        }
    }
    per_shard(
        &mut f,
        "corestream_group_offsets_expired_total",
        "counter",
        "Committed offsets of groups without members deleted after groups.offsets_retention_ms (Kafka's offsets.retention.minutes).",
        &|s| s.offsets_expired.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_metadata_changes_refused_total",
        "counter",
        "Metadata changes (CreateTopics, DeleteTopics, ...) answered REQUEST_TIMED_OUT because 1,024 were already waiting to commit.",
        &|s| s.metadata_refused.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_producers_evicted_total",
        "counter",
        "Idempotent producers forgotten because a partition held 1,000 and a new one wrote (the least recent goes).",
        &|s| s.storage.producers_evicted.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_raft_inbox_dropped_total",
        "counter",
        "Raft messages from peers dropped because 16,384 messages or 64 MiB of entries were waiting for this shard (the leader sends them again).",
        &|s| s.storage.raft_inbox_dropped.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_snapshots_sent_total",
        "counter",
        "Raft snapshots this shard sent to a peer behind what its WAL holds.",
        &|s| s.storage.snapshots_sent.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_snapshots_installed_total",
        "counter",
        "Raft snapshots this shard installed from its leader (it had lost its disk, or was behind what its peers kept).",
        &|s| s.storage.snapshots_installed.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_snapshot_bytes_pulled_total",
        "counter",
        "Bytes of retained batches pulled from peers after installing a snapshot.",
        &|s| s.storage.snapshot_bytes_pulled.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_compaction_runs_total",
        "counter",
        "Compaction passes completed (cleanup.policy=compact: the last record of each key stays).",
        &|s| s.storage.compaction_runs.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_compaction_read_bytes_total",
        "counter",
        "Batch bytes compaction read (its maps and rewrites).",
        &|s| s.storage.compaction_bytes_read.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_compaction_written_bytes_total",
        "counter",
        "Batch bytes compaction wrote to cold files (what stayed of what it rewrote).",
        &|s| s.storage.compaction_bytes_written.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_snapshot_pulling",
        "gauge",
        "1 while this shard lacks batches of a snapshot it installed (it serves none and cannot lead).",
        &|s| u8::from(s.storage.pulling).to_string(),
    );
    per_shard(
        &mut f,
        "corestream_producers_expired_total",
        "counter",
        "Idempotent producers forgotten after a day without writing (Kafka's producer.id.expiration.ms).",
        &|s| s.storage.producers_expired.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_read_cache_bytes",
        "gauge",
        "Recent batches held for readers.",
        &|s| s.storage.read_cache_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_read_cache_hits_total",
        "counter",
        "WAL reads served from the read cache.",
        &|s| s.storage.read_cache_hits.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_read_cache_misses_total",
        "counter",
        "WAL reads that went to disk.",
        &|s| s.storage.read_cache_misses.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_read_ahead_bytes",
        "gauge",
        "Batches read ahead of consumers behind the tail, held or being read.",
        &|s| s.storage.read_ahead_bytes.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_read_ahead_runs_total",
        "counter",
        "Read-ahead runs started.",
        &|s| s.storage.read_ahead_runs.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_read_ahead_hits_total",
        "counter",
        "Partition reads answered by read-ahead instead of a disk read.",
        &|s| s.storage.read_ahead_hits.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_raft_term",
        "gauge",
        "Current Raft term of the shard's group.",
        &|s| s.storage.raft_term.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_raft_commit_index",
        "gauge",
        "Raft commit index of the shard's group.",
        &|s| s.storage.raft_commit_index.to_string(),
    );
    per_shard(
        &mut f,
        "corestream_raft_leader",
        "gauge",
        "1 if this shard leads its Raft group.",
        &|s| u8::from(s.storage.raft_leader).to_string(),
    );
    per_shard(
        &mut f,
        "corestream_storage_failed",
        "gauge",
        "1 if the shard refuses writes after a storage failure.",
        &|s| u8::from(s.storage.failed.is_some()).to_string(),
    );

    f.head(
        "corestream_wal_fsync_seconds",
        "summary",
        "How long each group commit waited to be durable: its fdatasync, or its O_DSYNC write on a zero-filled segment.",
    );
    for s in shards {
        f.summary(
            "corestream_wal_fsync_seconds",
            &format!("shard=\"{}\"", s.shard),
            &s.storage.wal_fsync,
        );
    }
    let per_api_counters: [(&str, &str, ApiCounter); 3] = [
        (
            "corestream_kafka_requests_total",
            "Kafka requests served, by API.",
            |a| a.requests,
        ),
        (
            "corestream_kafka_request_bytes_total",
            "Bytes of Kafka request frames, by API.",
            |a| a.bytes_in,
        ),
        (
            "corestream_kafka_response_bytes_total",
            "Bytes of Kafka response frames, by API.",
            |a| a.bytes_out,
        ),
    ];
    for (name, help, value) in per_api_counters {
        f.head(name, "counter", help);
        for s in shards {
            for a in &s.requests.apis {
                f.line(name, &format!("shard=\"{}\",api=\"{}\"", s.shard, a.api), value(a));
            }
        }
    }
    f.head(
        "corestream_kafka_request_latency_seconds",
        "summary",
        "Time from a decoded request to its encoded response.",
    );
    for s in shards {
        for a in &s.requests.apis {
            f.summary(
                "corestream_kafka_request_latency_seconds",
                &format!("shard=\"{}\",api=\"{}\"", s.shard, a.api),
                &a.latency,
            );
        }
    }
    f.head(
        "corestream_kafka_errors_total",
        "counter",
        "Kafka error codes sent to clients (per partition or topic).",
    );
    for s in shards {
        for (code, n) in &s.requests.errors {
            let name = code.err().map_or_else(|| "NONE".to_string(), |e| format!("{e:?}"));
            f.line(
                "corestream_kafka_errors_total",
                &format!("shard=\"{}\",code=\"{code}\",error=\"{name}\"", s.shard),
                n,
            );
        }
    }
    f.head(
        "corestream_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed or timed out (untrusted or expired client certificates, plaintext clients, ...), by listener.",
    );
    for s in shards {
        for (listener, n) in &s.requests.tls_failures {
            f.line(
                "corestream_tls_handshake_failures_total",
                &format!("shard=\"{}\",listener=\"{listener}\"", s.shard),
                n,
            );
        }
    }
    f.head(
        "corestream_sasl_authentications_total",
        "counter",
        "SASL authentications by listener, mechanism and result: success, reauthenticated, failure, or expired (a session that ran out without re-authentication; its connection was closed).",
    );
    for s in shards {
        for (listener, mechanism, outcome, n) in &s.requests.authentications {
            f.line(
                "corestream_sasl_authentications_total",
                &format!(
                    "shard=\"{}\",listener=\"{listener}\",mechanism=\"{mechanism}\",result=\"{}\"",
                    s.shard,
                    outcome.label()
                ),
                n,
            );
        }
    }
    f.head(
        "corestream_authorization_denials_total",
        "counter",
        "Requests, or the topics, groups and other resources in them, that the authorizer refused, by resource type.",
    );
    for s in shards {
        for (resource_type, n) in &s.requests.denials {
            f.line(
                "corestream_authorization_denials_total",
                &format!("shard=\"{}\",resource_type=\"{resource_type}\"", s.shard),
                n,
            );
        }
    }
    out
}
