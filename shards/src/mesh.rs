//! The cross-shard mesh: bounded glommio channels between every pair of
//! shards on a node. Messages are owned values; nothing else crosses cores.
//! The message type belongs to the caller (the broker's routing layer).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::sync::Semaphore;

use crate::types::ShardId;

/// Bound on queued messages from one shard to another.
pub const CHANNEL_CAPACITY: usize = 1024;

/// Bound on the requests from one shard being served at once. When it is
/// reached the receiver stops taking messages, the channel fills, and the
/// sender's `send` waits: backpressure reaches the sending connection
/// (which stops reading its socket), instead of a task per message
/// piling up here.
pub const REQUESTS_IN_FLIGHT_PER_PEER: u64 = 256;

/// What serving one message takes.
pub enum Work {
    /// A request that may wait (on the disk, on Raft, on other shards):
    /// it counts against `REQUESTS_IN_FLIGHT_PER_PEER`.
    Request(Pin<Box<dyn Future<Output = ()>>>),
    /// Control traffic (metadata changes, leader news, reports): few, and
    /// what waiting requests may themselves wait for, so it never waits
    /// for a request's slot (that could deadlock two shards).
    Control(Pin<Box<dyn Future<Output = ()>>>),
    /// Already done.
    Done,
}

pub fn builder<M: Send + 'static>(shards: usize) -> MeshBuilder<M, Full> {
    MeshBuilder::full(shards, CHANNEL_CAPACITY)
}

/// This shard's end of the mesh. `!Send`: it lives on its executor.
pub struct Mesh<M: Send> {
    me: ShardId,
    senders: Senders<M>,
    /// Times a peer's requests filled their slots and its receiver waited.
    waits: Rc<std::cell::Cell<u64>>,
}

#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable over the mesh")]
pub struct MeshClosed(pub ShardId);

impl<M: Send + 'static> Mesh<M> {
    /// Joins the mesh and serves incoming messages with `handle`, one
    /// receiver per peer so a slow peer does not block the others.
    pub async fn join(builder: MeshBuilder<M, Full>, handle: impl Fn(ShardId, M) -> Work + 'static) -> Rc<Self> {
        let (senders, mut receivers): (Senders<M>, Receivers<M>) =
            builder.join().await.expect("joining the shard mesh");
        let me = ShardId(senders.peer_id() as u16);
        let handle = Rc::new(handle);
        let waits = Rc::new(std::cell::Cell::new(0u64));
        for (peer, rx) in receivers.streams() {
            let (handle, waits) = (handle.clone(), waits.clone());
            let slots = Rc::new(Semaphore::new(REQUESTS_IN_FLIGHT_PER_PEER));
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    match handle(ShardId(peer as u16), msg) {
                        Work::Request(serve) => {
                            if slots.available() == 0 {
                                waits.set(waits.get() + 1);
                            }
                            // Never closed, so the wait only ends with a slot.
                            let Ok(slot) = slots.acquire_static_permit(1).await else {
                                break;
                            };
                            glommio::spawn_local(async move {
                                serve.await;
                                drop(slot);
                            })
                            .detach();
                        }
                        Work::Control(serve) => {
                            glommio::spawn_local(serve).detach();
                        }
                        Work::Done => {}
                    }
                }
            })
            .detach();
        }
        Rc::new(Self { me, senders, waits })
    }

    /// Times a peer's requests filled their slots on this shard.
    pub fn backpressure_waits(&self) -> u64 {
        self.waits.get()
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

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{LocalExecutorBuilder, Placement};

    /// A shard whose requests never finish stops taking messages once
    /// `REQUESTS_IN_FLIGHT_PER_PEER` are being served; the channel then
    /// fills and the sender waits: memory stays bounded.
    #[test]
    fn a_busy_shard_pushes_back_on_its_senders() {
        let builder = builder::<u32>(2);
        let (done_tx, done_rx) = flume::bounded::<()>(1);
        // Requests wait on this until the test ends (a pending future that
        // holds a waker, as a real request waiting on the disk does).
        let (_release, held) = flume::bounded::<()>(1);
        let b1 = builder.clone();
        let busy = LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let mesh = Mesh::join(b1, move |_, _| {
                    let held = held.clone();
                    Work::Request(Box::pin(async move {
                        let _ = held.recv_async().await;
                    }))
                })
                .await;
                let _ = done_rx.recv_async().await;
                mesh.backpressure_waits()
            })
            .expect("executor");
        let sender = LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let mesh = Mesh::join(builder, |_, _| Work::Done).await;
                let to = ShardId(1 - mesh.me().0);
                let mut sent = 0usize;
                loop {
                    let send = async { mesh.send(to, 7).await.is_ok() };
                    let timeout = async {
                        glommio::timer::sleep(std::time::Duration::from_millis(300)).await;
                        false
                    };
                    if !futures_lite::future::or(send, timeout).await {
                        break;
                    }
                    sent += 1;
                    assert!(sent < 10_000, "the mesh never pushed back");
                }
                let _ = done_tx.send_async(()).await;
                sent
            })
            .expect("executor");
        let sent = sender.join().expect("sender");
        assert!(busy.join().expect("busy shard") >= 1, "the wait is counted");
        // Served + queued in the channel (+1 held by the receiver while it
        // waits for a slot).
        let bound = REQUESTS_IN_FLIGHT_PER_PEER as usize + CHANNEL_CAPACITY;
        assert!((bound..=bound + 1).contains(&sent), "sent {sent}, bound {bound}");
    }
}
