//! corestream-shards: everything one core owns.
//!
//! - `shard/`: a shard: its state machine (partitions, pending proposals,
//!   waiters, apply, replay) and the glommio driver that runs it with its
//!   WAL and Raft group; produce, read, list offsets, watch.
//! - `partition.rs`: per-partition bookkeeping (offsets, batch index).
//! - `producer.rs`: idempotent producer sequences per partition.
//! - `batch.rs`: Kafka RecordBatch header validation and offset stamping.
//! - `wal/`: the shard's write-ahead log (segments, framing, recovery).
//! - `raft/`: the shard's Raft group over the WAL (raft-rs `RawNode`).
//! - `budget.rs`: the per-shard memory budget (backpressure).
//! - `read_cache.rs`: recently written batches, served without a disk read.
//! - `read_ahead.rs`: the next batches of consumers behind the tail, read
//!   before they are asked for.
//! - `mesh.rs`: bounded channels between shards.
//! - `metrics.rs`: the shard's own counters and the report a scrape gathers.
//! - `types.rs`: newtypes for ids and positions.
//! - `sim/` (tests, and the `sim` feature): the deterministic simulator of
//!   several nodes' WALs, Raft groups and state machines over a simulated
//!   disk, network and clock, with faults and a checker.
//! - `planted.rs`: bugs a simulator run can switch on to prove it finds them.
//! - `fuzz.rs`: entry points of the fuzz targets (`fuzz/`) for every
//!   decoder of outside bytes here.
//!
//! Invariants held here: offsets are dense and assigned by the leader;
//! consumers read below the high watermark only; recovery yields a prefix of
//! the log; shard state is `!Send` and reached only from its executor.

pub mod batch;
pub mod budget;
pub mod fuzz;
pub mod mesh;
pub mod metrics;
pub mod partition;
pub mod planted;
pub mod producer;
pub mod raft;
pub mod read_ahead;
pub mod read_cache;
pub mod records;
pub mod shard;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(any(test, feature = "sim"))]
mod test_rng;
pub mod types;
pub mod wal;

pub use shard::{
    Appended, Durability, OffsetQuery, PartitionRead, ProduceItem, ProduceResult, RecordScan, Shard, ShardConfig,
    ShardError,
};
pub use types::{Offset, PartitionId, RaftIndex, ShardId};
