//! Counters and latency histograms: kept per executor, sent to the main
//! thread as cumulative snapshots each second, merged for the progress line
//! and the summary.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Produce,
    Consume,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Produce => "produce",
            Kind::Consume => "consume",
        }
    }
}

#[derive(Clone)]
pub struct Snapshot {
    pub executor: usize,
    pub kind: Kind,
    pub messages: u64,
    pub bytes: u64,
    pub errors: BTreeMap<i16, u64>,
    pub latency_us: Histogram<u64>,
    pub done: bool,
}

impl Snapshot {
    pub fn new(executor: usize, kind: Kind) -> Self {
        Self {
            executor,
            kind,
            messages: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            latency_us: new_histogram(),
            done: false,
        }
    }
}

/// All executors' latest snapshots, merged.
pub fn merge<'a>(kind: Kind, snaps: impl IntoIterator<Item = &'a Snapshot>) -> Snapshot {
    let mut total = Snapshot::new(usize::MAX, kind);
    for s in snaps.into_iter().filter(|s| s.kind == kind) {
        total.messages += s.messages;
        total.bytes += s.bytes;
        for (code, n) in &s.errors {
            *total.errors.entry(*code).or_default() += n;
        }
        total.latency_us.add(&s.latency_us).expect("same bounds");
    }
    total
}

/// Sends a copy of `stats` to the main thread every second.
pub fn spawn_reporter(stats: Rc<RefCell<Snapshot>>, progress: mpsc::Sender<Snapshot>) -> glommio::Task<()> {
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let snap = stats.borrow().clone();
            if progress.send(snap).is_err() {
                return;
            }
        }
    })
}

#[derive(Serialize)]
pub struct Summary {
    pub mode: String,
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mib_per_sec: f64,
    pub errors: BTreeMap<String, u64>,
    pub latency_us: BTreeMap<String, u64>,
}

pub fn summarize(mode: &str, total: &Snapshot, elapsed: Duration) -> Summary {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let h = &total.latency_us;
    let mut latency = BTreeMap::new();
    if !h.is_empty() {
        for (name, q) in [
            ("p50", 50.0),
            ("p90", 90.0),
            ("p99", 99.0),
            ("p99.9", 99.9),
            ("p99.99", 99.99),
        ] {
            latency.insert(name.to_string(), h.value_at_percentile(q));
        }
        latency.insert("max".to_string(), h.max());
    }
    Summary {
        mode: mode.to_string(),
        messages: total.messages,
        bytes: total.bytes,
        seconds: secs,
        msgs_per_sec: total.messages as f64 / secs,
        mib_per_sec: total.bytes as f64 / secs / (1 << 20) as f64,
        errors: total.errors.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        latency_us: latency,
    }
}

pub fn print_summary(s: &Summary) {
    println!(
        "{}: {} messages, {:.1} MiB in {:.2} s = {:.0} msg/s, {:.1} MiB/s",
        s.mode,
        s.messages,
        s.bytes as f64 / (1 << 20) as f64,
        s.seconds,
        s.msgs_per_sec,
        s.mib_per_sec
    );
    if !s.latency_us.is_empty() {
        let l = |k: &str| s.latency_us.get(k).copied().unwrap_or(0) as f64 / 1000.0;
        println!(
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2}",
            l("p50"),
            l("p90"),
            l("p99"),
            l("p99.9"),
            l("p99.99"),
            l("max")
        );
    }
    if s.errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors by Kafka error code: {:?}", s.errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut a = Snapshot::new(0, Kind::Produce);
        let mut b = Snapshot::new(1, Kind::Produce);
        a.messages = 10;
        b.messages = 5;
        a.errors.insert(6, 1);
        b.errors.insert(6, 2);
        for v in 1..=100 {
            a.latency_us.record(v).unwrap();
            b.latency_us.record(v * 100).unwrap();
        }
        let m = merge(Kind::Produce, &[a, b]);
        assert_eq!(m.messages, 15);
        assert_eq!(m.errors[&6], 3);
        assert_eq!(m.latency_us.len(), 200);
        assert!(m.latency_us.max() >= 10_000 - 10);
        let s = summarize("produce", &m, Duration::from_secs(1));
        assert_eq!(s.msgs_per_sec, 15.0);
        assert!(s.latency_us["p50"] <= 100);
    }
}
