//! The simulator's network: Raft messages between nodes, each delivered
//! after a random delay (so they reorder), or lost, or delivered twice;
//! pairs of nodes cut off from each other (partitions) drop what crosses.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use raft::prelude::Message;

use crate::raft::{Outbox, PeerMessage};
use crate::shard::pull::PullMessage;
use crate::test_rng::Rng;

/// Network faults, switched by the simulator.
#[derive(Default, Clone, Copy)]
pub struct NetFaults {
    /// Chance (per mille) that a message is lost.
    pub loss_permille: u64,
    /// Chance (per mille) that a message is delivered twice.
    pub dup_permille: u64,
    /// Longest delay of a message, in ms (delays are uniform below it).
    pub max_delay_ms: u64,
}

pub struct InFlight {
    pub at_ms: u64,
    /// Order of sending, to break ties deterministically.
    pub seq: u64,
    pub from: u64,
    pub to: u64,
    pub msg: PeerMessage,
}

pub struct Net {
    pub now_ms: u64,
    seq: u64,
    queue: Vec<InFlight>,
    /// Unordered pairs (low, high) that cannot talk.
    cut: BTreeSet<(u64, u64)>,
    pub faults: NetFaults,
    rng: Rng,
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
}

impl Net {
    pub fn new(seed: u64) -> Rc<RefCell<Net>> {
        Rc::new(RefCell::new(Net {
            now_ms: 0,
            seq: 0,
            queue: Vec::new(),
            cut: BTreeSet::new(),
            faults: NetFaults {
                max_delay_ms: 5,
                ..Default::default()
            },
            rng: Rng::new(seed),
            sent: 0,
            lost: 0,
            duplicated: 0,
        }))
    }

    fn pair(a: u64, b: u64) -> (u64, u64) {
        (a.min(b), a.max(b))
    }

    pub fn cut(&mut self, a: u64, b: u64) {
        self.cut.insert(Self::pair(a, b));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn is_cut(&self, a: u64, b: u64) -> bool {
        self.cut.contains(&Self::pair(a, b))
    }

    fn send(&mut self, from: u64, to: u64, msg: PeerMessage) {
        self.sent += 1;
        if self.rng.below(1000) < self.faults.loss_permille {
            self.lost += 1;
            return;
        }
        let copies = if self.rng.below(1000) < self.faults.dup_permille {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(self.faults.max_delay_ms.max(1));
            self.seq += 1;
            self.queue.push(InFlight {
                at_ms: self.now_ms + delay,
                seq: self.seq,
                from,
                to,
                msg: msg.clone(),
            });
        }
    }

    /// Messages due by now, in delivery order; those crossing a cut are
    /// dropped.
    pub fn due(&mut self) -> Vec<InFlight> {
        let now = self.now_ms;
        let (mut due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|m| m.at_ms <= now);
        self.queue = rest;
        due.sort_by_key(|m| (m.at_ms, m.seq));
        due.retain(|m| !self.cut.contains(&Self::pair(m.from, m.to)));
        due
    }

    pub fn idle(&self) -> bool {
        self.queue.is_empty()
    }
}

/// A node's outbox onto the simulated network.
pub struct SimOutbox {
    pub net: Rc<RefCell<Net>>,
    pub from: u64,
}

impl Outbox for SimOutbox {
    fn send(&self, msgs: Vec<Message>) {
        let mut net = self.net.borrow_mut();
        for m in msgs {
            net.send(self.from, m.to, PeerMessage::Raft(m));
        }
    }

    fn send_pull(&self, to: u64, msg: PullMessage) {
        self.net.borrow_mut().send(self.from, to, PeerMessage::Pull(msg));
    }
}
