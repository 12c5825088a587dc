//! The cross-shard mesh: bounded glommio channels between every pair of
//! shards on a node. Messages are owned values; nothing else crosses cores.
//! The message type belongs to the caller (the broker's routing layer).

use std::rc::Rc;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};

use crate::types::ShardId;

/// Bound on queued messages from one shard to another.
pub const CHANNEL_CAPACITY: usize = 1024;

pub fn builder<M: Send + 'static>(shards: usize) -> MeshBuilder<M, Full> {
    MeshBuilder::full(shards, CHANNEL_CAPACITY)
}

/// This shard's end of the mesh. `!Send`: it lives on its executor.
pub struct Mesh<M: Send> {
    me: ShardId,
    senders: Senders<M>,
}

#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable over the mesh")]
pub struct MeshClosed(pub ShardId);

impl<M: Send + 'static> Mesh<M> {
    /// Joins the mesh and serves incoming messages with `handle`, one task
    /// per peer so a slow peer does not block the others.
    pub async fn join(builder: MeshBuilder<M, Full>, handle: impl Fn(ShardId, M) + 'static) -> Rc<Self> {
        let (senders, mut receivers): (Senders<M>, Receivers<M>) =
            builder.join().await.expect("joining the shard mesh");
        let me = ShardId(senders.peer_id() as u16);
        let handle = Rc::new(handle);
        for (peer, rx) in receivers.streams() {
            let handle = handle.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    handle(ShardId(peer as u16), msg);
                }
            })
            .detach();
        }
        Rc::new(Self { me, senders })
    }

    pub fn me(&self) -> ShardId {
        self.me
    }

    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Sends to another shard; waits while that channel is full.
    pub async fn send(&self, to: ShardId, msg: M) -> Result<(), MeshClosed> {
        assert_ne!(to, self.me, "local work takes the direct path, not the mesh");
        self.senders.send_to(to.index(), msg).await.map_err(|_| MeshClosed(to))
    }
}
