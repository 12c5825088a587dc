//! Newtypes for every id and position that crosses a module boundary, so a
//! partition id can never be passed where an offset or a Raft index is meant.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// Index of a shard (one pinned executor) on this node.
    ShardId,
    u16
);
id_type!(
    /// Node-wide unique, never reused id of one partition of one topic
    /// incarnation. WAL entries carry it, so a re-created topic never sees
    /// the data of its deleted namesake.
    PartitionId,
    u32
);
id_type!(
    /// A Kafka offset inside one partition.
    Offset,
    i64
);
id_type!(
    /// A Raft log index; also the name of the WAL segment it starts.
    RaftIndex,
    u64
);
id_type!(
    /// A Raft term.
    Term,
    u64
);
id_type!(
    /// A Raft node id (a broker's id + 1: raft-rs reserves 0 for "none").
    NodeId,
    u64
);

impl ShardId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
