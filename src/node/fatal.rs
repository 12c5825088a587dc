//! A broker is whole or it is gone. A shard that panics (a bug) or whose
//! task ends with an error cannot go on serving its partitions, and its
//! SO_REUSEPORT listener would keep taking connections it never answers:
//! the half-alive broker that nobody restarts. So the first such failure
//! ends the process at once with a non-zero status and the reason in the
//! log; the supervisor (`deploy/corestream.service`: `Restart=on-failure`)
//! starts it again and recovery replays the WAL, which keeps everything
//! that was acknowledged.

/// The status of a process ended by a shard's panic (Rust's own for a
/// panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;

/// Installs the panic hook that logs the panic with its thread and a
/// backtrace, then ends the process. `_exit`, not `exit`: the other shards
/// are still running, and `exit`'s handlers (the allocator's among them)
/// would run under their feet; nothing buffered is lost, as the log goes
/// to unbuffered stderr and data to the WAL only once durable.
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::error!(
            thread,
            exit_status = PANIC_EXIT_CODE,
            "{info}; the broker exits so that its supervisor restarts it and recovery replays the WAL\n{backtrace}"
        );
        // SAFETY: _exit ends the process without running anything else; it
        // cannot fail and never returns.
        unsafe { libc::_exit(PANIC_EXIT_CODE) }
    }));
}

/// Fault hooks that only a test build has (`--features fault-injection`),
/// so tests can prove what a bug would do to a running broker.
#[cfg(feature = "fault-injection")]
pub mod inject {
    /// A Metadata request naming this topic panics the shard that serves it.
    pub const PANIC_TOPIC: &str = "__corestream_fault_panic";

    pub fn on_metadata_topic(name: &str) {
        if name == PANIC_TOPIC {
            panic!("fault injection: a Metadata request named {PANIC_TOPIC}");
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
pub mod inject {
    #[inline(always)]
    pub fn on_metadata_topic(_name: &str) {}
}
