//! Bugs planted on purpose, to prove the simulator (`crate::sim`) catches
//! them: with the `planted-bugs` feature, a simulator run may switch one on
//! for its thread. Without the feature (every real build) `active` is a
//! constant false and the code it guards compiles away.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The WAL's append returns before its records are durable (no
    /// fdatasync, no O_DSYNC write).
    SkipFdatasync,
    /// acks=all is answered once the leader's own write is durable, before
    /// a majority holds it.
    AckBeforeCommit,
    /// A follower keeps the batches of an uncommitted tail that a new
    /// leader's log replaced.
    KeepOverwrittenTail,
    /// WAL segments are reclaimed while partitions still retain batches in
    /// them.
    ReclaimRetained,
    /// A replica that installed a snapshot takes the batches it names as
    /// held, without pulling them from its peers.
    SnapshotNotPulled,
    /// Compaction keeps the first record of each key instead of the last.
    CompactionKeepsFirst,
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Switches `bug` on (or all off) for this thread.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<Bug>) {
    ACTIVE.with(|a| a.set(bug));
}

#[inline(always)]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        ACTIVE.with(|a| a.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
