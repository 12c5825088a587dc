//! What a shard counts about itself. Plain `Cell`s and histograms owned by
//! the shard: the hot path bumps them without atomics or cross-core
//! traffic; a scrape asks each shard for a `StorageReport` (an owned value)
//! over the mesh.

use std::cell::{Cell, RefCell};

use hdrhistogram::Histogram;

/// Latency quantiles reported for every histogram.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// A latency distribution in microseconds, ready to render.
#[derive(Debug, Clone, Default)]
pub struct LatencySummary {
    /// (quantile, seconds)
    pub quantiles: Vec<(f64, f64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

pub fn summarize(h: &Histogram<u64>, sum_us: u64) -> LatencySummary {
    LatencySummary {
        quantiles: QUANTILES
            .iter()
            .map(|&q| {
                (
                    q,
                    if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(q) as f64 / 1e6
                    },
                )
            })
            .collect(),
        sum_seconds: sum_us as f64 / 1e6,
        count: h.len(),
    }
}

/// The WAL writer's counters, shared (`Rc`) between the writer, owned by
/// the Raft driver, and the shard that reports them.
pub struct WalMetrics {
    pub appends: Cell<u64>,
    pub bytes: Cell<u64>,
    /// Records per append: how much each group commit gathered.
    pub records: Cell<u64>,
    pub segments: Cell<u64>,
    /// Segments removed because nothing in them was needed any more, and
    /// checkpoints written for that.
    pub segments_reclaimed: Cell<u64>,
    pub checkpoints: Cell<u64>,
    /// Cold files (batches moved out of reclaimed segments), and the bytes
    /// moved into them.
    pub cold_files: Cell<u64>,
    pub bytes_moved: Cell<u64>,
    fsync_us: RefCell<Histogram<u64>>,
    fsync_us_sum: Cell<u64>,
}

impl Default for WalMetrics {
    fn default() -> Self {
        Self {
            appends: Cell::new(0),
            bytes: Cell::new(0),
            records: Cell::new(0),
            segments: Cell::new(0),
            segments_reclaimed: Cell::new(0),
            checkpoints: Cell::new(0),
            cold_files: Cell::new(0),
            bytes_moved: Cell::new(0),
            fsync_us: RefCell::new(new_histogram()),
            fsync_us_sum: Cell::new(0),
        }
    }
}

impl WalMetrics {
    pub fn record_append(&self, records: usize, bytes: u64, fsync_us: u64) {
        self.appends.set(self.appends.get() + 1);
        self.records.set(self.records.get() + records as u64);
        self.bytes.set(self.bytes.get() + bytes);
        self.fsync_us.borrow_mut().saturating_record(fsync_us.max(1));
        self.fsync_us_sum.set(self.fsync_us_sum.get() + fsync_us);
    }

    pub fn fsync_summary(&self) -> LatencySummary {
        summarize(&self.fsync_us.borrow(), self.fsync_us_sum.get())
    }
}

/// A shard's storage-side state, as one owned value for a scrape.
#[derive(Debug, Clone, Default)]
pub struct StorageReport {
    pub partitions: u64,
    pub budget_limit_bytes: u64,
    pub budget_used_bytes: u64,
    pub budget_waits: u64,
    pub wal_appends: u64,
    pub wal_bytes: u64,
    pub wal_records: u64,
    pub wal_segments: u64,
    pub wal_segments_reclaimed: u64,
    pub wal_checkpoints: u64,
    pub cold_files: u64,
    pub bytes_moved: u64,
    /// Bytes of the partitions' retained batches.
    pub retained_bytes: u64,
    /// The offset index files (`partition::store`): their bytes on disk
    /// and the bytes of the index blocks still in them.
    pub index_file_bytes: u64,
    pub index_live_bytes: u64,
    pub wal_fsync: LatencySummary,
    pub raft_term: u64,
    pub raft_commit_index: u64,
    pub raft_leader: bool,
    pub batches_staged: u64,
    pub producers_expired: u64,
    pub producers_evicted: u64,
    pub read_cache_bytes: u64,
    pub read_cache_hits: u64,
    pub read_cache_misses: u64,
    pub read_ahead_bytes: u64,
    pub read_ahead_runs: u64,
    pub read_ahead_hits: u64,
    /// Peer Raft messages dropped because the shard's inbox was full.
    pub raft_inbox_dropped: u64,
    /// Snapshots sent to peers and installed from a leader, batch bytes
    /// pulled after them, and whether a snapshot's batches are still
    /// missing here.
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    pub snapshot_bytes_pulled: u64,
    pub pulling: bool,
    /// Compaction passes completed, batch bytes they read and wrote.
    pub compaction_runs: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    /// Why the shard refuses writes, if it does.
    pub failed: Option<String>,
}
