//! Fixed-rate pacing with coordinated-omission correction: every message
//! has an intended send time on a fixed schedule, and its latency is
//! measured from that time, so a stalled broker shows up as latency of all
//! the messages that should have been sent meanwhile, not as a gap.

use std::time::{Duration, Instant};

pub struct Pacer {
    start: Instant,
    /// Interval between messages; `None` sends as fast as possible.
    interval: Option<Duration>,
    sent: u64,
}

impl Pacer {
    pub fn new(start: Instant, msgs_per_sec: Option<f64>) -> Self {
        Self {
            start,
            interval: msgs_per_sec
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            sent: 0,
        }
    }

    /// Intended send times of the next `n` messages (now, in max-rate mode).
    pub fn next_batch(&mut self, n: u64, now: Instant, out: &mut Vec<Instant>) {
        out.clear();
        for _ in 0..n {
            out.push(match self.interval {
                Some(i) => self.start + i.mul_f64(self.sent as f64),
                None => now,
            });
            self.sent += 1;
        }
    }

    pub fn is_paced(&self) -> bool {
        self.interval.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_fixed_whatever_the_sender_does() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, Some(1000.0));
        let mut v = Vec::new();
        p.next_batch(3, t0 + Duration::from_secs(5), &mut v);
        assert_eq!(
            v,
            vec![t0, t0 + Duration::from_millis(1), t0 + Duration::from_millis(2)]
        );
        p.next_batch(1, t0, &mut v);
        assert_eq!(
            v,
            vec![t0 + Duration::from_millis(3)],
            "a late sender does not move the schedule"
        );
        let mut free = Pacer::new(t0, None);
        let now = t0 + Duration::from_secs(1);
        free.next_batch(2, now, &mut v);
        assert_eq!(v, vec![now, now]);
    }
}
