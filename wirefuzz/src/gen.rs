//! Adversarial values for every field type of Kafka's request messages.
//!
//! `requests.rs` (generated) fills each field a version has through `Gen`,
//! passing the field's name: names steer values towards what reaches deep
//! code (real topic names, partition indexes near the real ones, valid
//! record batches, Kafka's config keys) and towards the edges (empty and
//! 1 MiB strings, nulls, negative and extreme numbers, arrays of up to
//! 100,000 elements, unknown tagged fields). Each request has a byte
//! budget, so one message stays a few MiB however the dice fall.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{BrokerId, GroupId, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use uuid::Uuid;

/// SplitMix64: small, fast, and the same sequence everywhere for a seed.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo.wrapping_add(self.below(hi.wrapping_sub(lo) as u64 + 1) as i64)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Topics the run creates first, so requests reach real partitions.
pub const FUZZ_TOPICS: &[(&str, i32)] = &[("wirefuzz-a", 8), ("wirefuzz-b", 1)];

const TOPIC_NAMES: &[&str] = &[
    "wirefuzz-a",
    "wirefuzz-b",
    "wirefuzz-new",
    "__consumer_offsets",
    "",
    ".",
    "..",
    "bad/name",
    "white space",
    "ünïcödé",
    "__corestream_fault_panic_not",
];
const GROUP_IDS: &[&str] = &["wirefuzz-group", "wirefuzz-other", "", "g"];
const CONFIG_KEYS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "max.message.bytes",
    "segment.bytes",
    "segment.ms",
    "min.insync.replicas",
    "compression.type",
    "message.timestamp.type",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "unclean.leader.election.enable",
    "no.such.config",
    "",
];
const CONFIG_VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "-2",
    "100",
    "9223372036854775807",
    "99999999999999999999999",
    "-9223372036854775808",
    "1.5",
    "abc",
    "",
    "compact",
    "delete",
    "compact,delete",
    "gzip",
    "producer",
    "LogAppendTime",
    "true",
];
const PROTOCOL_NAMES: &[&str] = &["range", "roundrobin", "cooperative-sticky", "consumer", ""];
const WAIT_FIELDS: &[&str] = &[
    "max_wait_ms",
    "timeout_ms",
    "rebalance_timeout_ms",
    "session_timeout_ms",
];

/// The generator's state for one request.
pub struct Ctx {
    pub rng: Rng,
    /// Bytes left for large strings, byte arrays and long arrays.
    budget: usize,
    /// Inside a huge array: elements stay tiny.
    small: u32,
    max_string_bytes: usize,
}

impl Ctx {
    pub fn new(seed: u64, budget: usize, max_string_bytes: usize) -> Self {
        Ctx {
            rng: Rng::new(seed),
            budget,
            small: 0,
            max_string_bytes,
        }
    }

    fn take(&mut self, n: usize) -> bool {
        if n <= self.budget {
            self.budget -= n;
            true
        } else {
            false
        }
    }

    /// A length for a string or byte array: mostly short, sometimes long,
    /// now and then up to `max_string_bytes` while the budget lasts.
    fn len(&mut self) -> usize {
        if self.small > 0 {
            return self.rng.below(8) as usize;
        }
        let n = match self.rng.below(100) {
            0..=59 => self.rng.below(16),
            60..=89 => self.rng.below(300),
            90..=96 => self.rng.below(40_000),
            _ => self.rng.below(self.max_string_bytes as u64 + 1),
        } as usize;
        if self.take(n) {
            n
        } else {
            self.rng.below(16) as usize
        }
    }

    fn text(&mut self) -> String {
        let n = self.len();
        match self.rng.below(6) {
            0 => "a".repeat(n),
            1 => "ü".repeat(n / 2),
            2 => (0..n).map(|_| char::from(b'a' + self.rng.below(26) as u8)).collect(),
            3 => "\0\n\t\u{7f}".repeat(n / 4 + 1),
            4 => ".".repeat(n),
            _ => (0..n).map(|_| char::from(self.rng.range(32, 126) as u8)).collect(),
        }
    }

    /// A string field: from `dict` half the time, else adversarial.
    fn string(&mut self, dict: &[&'static str]) -> StrBytes {
        if !dict.is_empty() && self.rng.percent(50) {
            return StrBytes::from_static_str(self.rng.pick(dict));
        }
        StrBytes::from_string(self.text())
    }

    fn int(&mut self, name: &str, lo: i64, hi: i64) -> i64 {
        let edges = [0, 1, -1, 2, lo, hi, lo + 1, hi - 1];
        if WAIT_FIELDS.contains(&name) {
            // Waits the broker must honour stay short, so a hang is a bug.
            return self.rng.pick(&[-1, 0, 1, 10, 100, 500, 1000, 3000, lo]);
        }
        if name.contains("partition") && !name.contains("bytes") {
            return self.rng.pick(&[0, 1, 2, 3, 7, 8, -1, 1000, lo, hi]);
        }
        if name.contains("offset") || name.contains("timestamp") {
            return self.rng.pick(&[0, 1, -1, -2, -3, 5, 100, lo, hi]);
        }
        match self.rng.below(3) {
            0 => self.rng.pick(&edges),
            1 => self.rng.range(-5, 100),
            _ => self.rng.range(lo, hi),
        }
    }

    /// Unknown tagged fields: mostly none, else tags no message defines
    /// (a receiver must skip them). Low tags would collide with the
    /// message's own and make the frame invalid; byte-level breakage
    /// covers those.
    pub fn tagged_fields(&mut self) -> BTreeMap<i32, Bytes> {
        let mut m = BTreeMap::new();
        if self.rng.percent(90) {
            return m;
        }
        for _ in 0..self.rng.range(1, 3) {
            let tag = self.rng.pick(&[100, 1000, 10_000, 1 << 20, i32::MAX]);
            let n = self.rng.below(64) as usize;
            m.insert(tag, Bytes::from(self.rng.bytes(n)));
        }
        m
    }

    /// A record batch: valid (any codec, odd producer fields) most of the
    /// time, else broken in one of the ways a client or an attacker breaks it.
    fn records(&mut self) -> Bytes {
        let valid = self.record_batch();
        match self.rng.below(10) {
            0..=5 => valid,
            6 => {
                let mut b = valid.to_vec();
                for _ in 0..self.rng.range(1, 4) {
                    let at = self.rng.below(b.len() as u64) as usize;
                    b[at] = self.rng.next() as u8;
                }
                Bytes::from(b)
            }
            7 => valid.slice(..self.rng.below(valid.len() as u64) as usize),
            8 => Bytes::new(),
            _ => {
                let n = self.len();
                Bytes::from(self.rng.bytes(n))
            }
        }
    }

    fn record_batch(&mut self) -> Bytes {
        let count = if self.small > 0 { 1 } else { self.rng.range(1, 50) };
        let idempotent = self.rng.percent(20);
        let compression = self.rng.pick(&[
            Compression::None,
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]);
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: self.rng.percent(3),
                control: self.rng.percent(3),
                partition_leader_epoch: -1,
                producer_id: if idempotent {
                    self.rng.pick(&[0, 1, 1000, i64::MAX])
                } else {
                    -1
                },
                producer_epoch: if idempotent {
                    self.rng.pick(&[0, 1, i16::MAX])
                } else {
                    -1
                },
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: if idempotent {
                    self.rng.pick(&[0, 1, 5, i32::MAX]) + i as i32
                } else {
                    -1
                },
                timestamp: self.rng.pick(&[1_700_000_000_000, 0, -1, i64::MAX]),
                key: if self.rng.percent(30) {
                    None
                } else {
                    Some(Bytes::from(self.text()))
                },
                value: if self.rng.percent(10) {
                    None
                } else {
                    Some(Bytes::from(self.text()))
                },
                headers: if self.rng.percent(80) {
                    Default::default()
                } else {
                    [(StrBytes::from_string(self.text()), Some(Bytes::from(self.text())))]
                        .into_iter()
                        .collect()
                },
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        match RecordBatchEncoder::encode(&mut buf, &records, &options) {
            Ok(()) => buf.freeze(),
            Err(_) => Bytes::new(),
        }
    }
}

/// A value of a request field, given the field's name and the version.
pub trait Gen: Sized {
    fn gen(g: &mut Ctx, name: &'static str, version: i16) -> Self;
}

impl Gen for bool {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        g.rng.percent(50)
    }
}

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl Gen for $t {
            fn gen(g: &mut Ctx, name: &'static str, _: i16) -> Self {
                if name == "acks" {
                    return g.rng.pick(&[-1, 0, 1, 2, -2]) as $t;
                }
                g.int(name, <$t>::MIN as i64, <$t>::MAX as i64) as $t
            }
        }
    )*};
}
ints!(i8, i16, i32, i64);

impl Gen for u16 {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        g.rng.pick(&[0, 1, u16::MAX, 9092])
    }
}

impl Gen for u32 {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        g.rng.pick(&[0, 1, u32::MAX])
    }
}

impl Gen for f64 {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        g.rng.pick(&[0.0, -1.0, 0.5, f64::NAN, f64::INFINITY, f64::MAX])
    }
}

impl Gen for Uuid {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        match g.rng.below(3) {
            0 => Uuid::nil(),
            1 => Uuid::max(),
            _ => Uuid::from_u64_pair(g.rng.next(), g.rng.next()),
        }
    }
}

impl Gen for StrBytes {
    fn gen(g: &mut Ctx, name: &'static str, _: i16) -> Self {
        let dict: &[&'static str] = match name {
            // A config's key, or a JoinGroup protocol's name.
            "name" if g.rng.percent(50) => PROTOCOL_NAMES,
            "name" => CONFIG_KEYS,
            "value" => CONFIG_VALUES,
            // A topic, or a broker id as a string.
            "resource_name" | "topic" if g.rng.percent(20) => &["0", "1", "-1"],
            "resource_name" | "topic" => TOPIC_NAMES,
            "key" | "coordinator_keys" | "groups" => GROUP_IDS,
            "protocol_type" | "protocol_name" => PROTOCOL_NAMES,
            "member_id" | "group_instance_id" => &["", "wirefuzz-member"],
            "config_names" => CONFIG_KEYS,
            _ => &[],
        };
        g.string(dict)
    }
}

impl Gen for Bytes {
    fn gen(g: &mut Ctx, name: &'static str, _: i16) -> Self {
        if name == "records" {
            return g.records();
        }
        let n = g.len();
        Bytes::from(g.rng.bytes(n))
    }
}

impl Gen for TopicName {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        TopicName(g.string(TOPIC_NAMES))
    }
}

impl Gen for GroupId {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        GroupId(g.string(GROUP_IDS))
    }
}

impl Gen for TransactionalId {
    fn gen(g: &mut Ctx, _: &'static str, _: i16) -> Self {
        TransactionalId(g.string(&["wirefuzz-tx"]))
    }
}

impl Gen for BrokerId {
    fn gen(g: &mut Ctx, name: &'static str, v: i16) -> Self {
        BrokerId(i32::gen(g, name, v))
    }
}

impl Gen for ProducerId {
    fn gen(g: &mut Ctx, name: &'static str, v: i16) -> Self {
        ProducerId(i64::gen(g, name, v))
    }
}

impl<T: Gen> Gen for Option<T> {
    fn gen(g: &mut Ctx, name: &'static str, v: i16) -> Self {
        if g.rng.percent(12) {
            None
        } else {
            Some(T::gen(g, name, v))
        }
    }
}

impl<T: Gen> Gen for Vec<T> {
    fn gen(g: &mut Ctx, name: &'static str, v: i16) -> Self {
        if g.small > 0 {
            return (0..g.rng.below(2)).map(|_| T::gen(g, name, v)).collect();
        }
        let n = match g.rng.below(100) {
            0..=24 => 0,
            25..=79 => g.rng.range(1, 3),
            80..=96 => g.rng.range(4, 32),
            // Elements of a huge array cost at least a few bytes each.
            _ => {
                let n = g.rng.range(1_000, 100_000);
                if g.take(n as usize * 16) {
                    n
                } else {
                    g.rng.range(4, 32)
                }
            }
        } as usize;
        let huge = n > 32;
        g.small += huge as u32;
        let items = (0..n).map(|_| T::gen(g, name, v)).collect();
        g.small -= huge as u32;
        items
    }
}
