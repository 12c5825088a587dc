//! The shard's memory budget. Produce buffers, in-flight Raft entries and
//! fetch responses are charged here; when it is spent, callers wait (the
//! connection stops reading its socket) instead of allocating. Nothing is
//! sized per partition.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::{Semaphore, StaticPermit};

pub struct Budget {
    sem: Rc<Semaphore>,
    limit_bytes: u64,
    /// Charges that had to wait: backpressure events.
    waits: std::cell::Cell<u64>,
}

/// Bytes held against the budget; given back on drop.
pub struct Charge {
    _permit: StaticPermit,
    pub bytes: u64,
    /// How long the caller waited for the budget: the throttle a client is told.
    pub waited: Duration,
}

impl Budget {
    pub fn new(limit_bytes: u64) -> Self {
        assert!(limit_bytes > 0, "memory budget must be positive");
        Self {
            sem: Rc::new(Semaphore::new(limit_bytes)),
            limit_bytes,
            waits: std::cell::Cell::new(0),
        }
    }

    /// Waits until `bytes` fit. A request larger than the whole budget is
    /// charged the whole budget, so it runs alone rather than never.
    pub async fn charge(&self, bytes: u64) -> Charge {
        let units = bytes.clamp(1, self.limit_bytes);
        let start = Instant::now();
        let waits = self.would_wait(units);
        if waits {
            self.waits.set(self.waits.get() + 1);
        }
        let permit = self
            .sem
            .acquire_static_permit(units)
            .await
            .expect("budget semaphore is never closed");
        Charge {
            _permit: permit,
            bytes: units,
            // Only a real wait is a throttle; acquiring at once is not.
            waited: if waits { start.elapsed() } else { Duration::ZERO },
        }
    }

    /// Takes `bytes` if they are free now; never waits.
    pub fn try_charge(&self, bytes: u64) -> Option<Charge> {
        let units = bytes.clamp(1, self.limit_bytes);
        self.sem.try_acquire_static_permit(units).ok().map(|permit| Charge {
            _permit: permit,
            bytes: units,
            waited: std::time::Duration::ZERO,
        })
    }

    pub fn waits(&self) -> u64 {
        self.waits.get()
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    pub fn used_bytes(&self) -> u64 {
        self.limit_bytes - self.sem.available()
    }

    pub fn would_wait(&self, bytes: u64) -> bool {
        self.sem.available() < bytes.clamp(1, self.limit_bytes)
    }
}
