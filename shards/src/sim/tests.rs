//! The simulator in the test command: thousands of seeds, every seed that
//! once found a bug, and (with the `planted-bugs` feature) proof that it
//! catches bugs planted on purpose.
//!
//! `SIM_SEEDS` (how many) and `SIM_FIRST_SEED` choose the seeds;
//! `SIM_SEED=<n>` replays one (add `SIM_TRACE=1` to see its story).

use super::{run_seeds, Options, Report};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn run_or_fail(first: u64, n: u64, opts: Options) -> Vec<Report> {
    match run_seeds(first, n, opts) {
        Ok(reports) => reports,
        Err((seed, why)) => panic!("simulator: seed {seed} failed: {why}\nreplay: SIM_SEED={seed} SIM_TRACE=1"),
    }
}

#[test]
fn seeds_pass() {
    // A debug build runs about ten times slower; the test command's
    // release build runs the thousands.
    let default = if cfg!(debug_assertions) { 200 } else { 3_000 };
    let (first, n) = match env("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (env("SIM_FIRST_SEED").unwrap_or(1), env("SIM_SEEDS").unwrap_or(default)),
    };
    let started = std::time::Instant::now();
    let reports = run_or_fail(first, n, Options::default());
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    eprintln!(
        "simulator: seeds {first}..{} passed in {:.1} s: {} acks=all records acknowledged and checked, {} consumed; \
         {} power cuts, {} crash points, {} storage failures, {} fsync errors, {} bit flips on read, \
         {} leaders, {} partitions deleted, {} DeleteRecords, {} partitions trimmed at the end, \
         {} WAL segments reclaimed, {} starts from a checkpoint, {} retention.ms trims, {} bytes moved to cold files, \
         {} moves or compaction jobs that met a changed log, {} disks wiped, {} snapshots installed, {} bytes pulled ({} saved by a checkpoint), {} compaction passes, {} of {} messages lost",
        first + n,
        started.elapsed().as_secs_f64(),
        sum(|r| r.acked_all),
        sum(|r| r.consumed),
        sum(|r| r.crashes),
        sum(|r| r.crash_points),
        sum(|r| r.storage_failures),
        sum(|r| r.sync_errors),
        sum(|r| r.read_flips),
        sum(|r| r.leader_changes),
        sum(|r| r.partitions_deleted),
        sum(|r| r.trims),
        sum(|r| r.trimmed_partitions),
        sum(|r| r.segments_reclaimed),
        sum(|r| r.checkpoint_starts),
        sum(|r| r.time_trims),
        sum(|r| r.bytes_moved),
        sum(|r| r.stale_background),
        sum(|r| r.wipes),
        sum(|r| r.snapshots),
        sum(|r| r.bytes_pulled),
        sum(|r| r.bytes_pulled_saved),
        sum(|r| r.compactions),
        sum(|r| r.lost_messages),
        sum(|r| r.messages),
    );
    // A run that acknowledges nothing, or never crashes anything, checks
    // nothing: the workload and the faults must both have happened.
    assert!(
        sum(|r| r.acked_all) > 100 * n,
        "the workload acknowledged almost nothing"
    );
    if n >= 100 {
        assert!(sum(|r| r.crashes + r.crash_points) > n, "hardly any crash was injected");
        assert!(reports.iter().any(|r| r.nodes == 1) && reports.iter().any(|r| r.nodes == 3));
        assert!(
            sum(|r| r.checkpoint_starts) > n / 20,
            "hardly any node started from a checkpoint: reclaiming went untested"
        );
        assert!(sum(|r| r.time_trims) > n, "retention.ms hardly ever trimmed");
        assert!(sum(|r| r.bytes_moved) > 0, "no batch ever moved to a cold file");
        assert!(
            sum(|r| r.stale_background) > 0,
            "no move or compaction job ever met a log changed while it ran"
        );
        assert!(sum(|r| r.compactions) > n, "compaction hardly ever ran");
        assert!(
            sum(|r| r.snapshots) > n / 20 && sum(|r| r.bytes_pulled) > 0,
            "hardly any wiped node rebuilt through a snapshot"
        );
        assert!(
            sum(|r| r.bytes_pulled_saved) > 0,
            "no checkpoint ever saved pulled data: every restart would pull it again"
        );
    }
}

/// Seeds that found bugs. Each replays its failing scenario only with the
/// simulator of its day (a new fault or workload step changes what a seed
/// does); they stay as extra seeds, named here with what they found.
#[test]
fn regression_seeds() {
    for seed in [
        // A node restarted from a checkpoint replayed an entry of an older
        // term past it, from a tail a later leader overwrote further on in
        // the WAL: its batches did not continue the partition and the
        // density check stopped the node (found once compaction came in).
        374,
        // Recovery re-read the last block of the WAL to rewrite its head,
        // and wrote a bit flipped in that read back over records it had
        // accepted: acknowledged records lost.
        202,
        // A bit flipped while recovery scanned the WAL cut the log there
        // and erased everything after it.
        1174,
        // A proposal Raft dropped (leadership being handed over) left its
        // batches' producer sequences behind: the retry was answered as a
        // duplicate of a batch never written.
        1262,
        // A leader cut off from the others served reads (an old high
        // watermark) after another leader had been elected.
        4654,
        // A replayed log deleted a partition, then met a late create of the
        // same id and brought it back empty on one node only.
        1010022,
        // A crash point armed during the faults fired while the checker
        // read the converged logs (the simulator's own bug).
        2033211,
        // Recovery's second read of a suspect end re-read the last block
        // too, and a bit flipped there was written back over records the
        // first read had checked.
        2034391,
    ] {
        run_or_fail(seed, 1, Options::default());
    }
}

/// Each planted bug must fail a run within a bounded number of seeds.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_bugs_are_caught() {
    use crate::planted::Bug;
    const MAX_SEEDS: u64 = 500;
    for bug in [
        Bug::SkipFdatasync,
        Bug::AckBeforeCommit,
        Bug::KeepOverwrittenTail,
        Bug::ReclaimRetained,
        Bug::SnapshotNotPulled,
        Bug::CompactionKeepsFirst,
    ] {
        let opts = Options {
            planted: Some(bug),
            ..Options::default()
        };
        let first = env("SIM_FIRST_SEED").unwrap_or(1);
        match run_seeds(first, MAX_SEEDS, opts) {
            Ok(_) => panic!("simulator: planted bug {bug:?} survived {MAX_SEEDS} seeds"),
            Err((seed, why)) => eprintln!(
                "simulator: planted bug {bug:?} caught after {} seeds (seed {seed}): {why}",
                seed - first + 1
            ),
        }
    }
}
