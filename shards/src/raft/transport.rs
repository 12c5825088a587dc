//! Raft traffic between the same shard on different nodes: shard k of a
//! node listens on its own port and keeps one connection to shard k of
//! every peer, so replication never crosses cores.
//!
//! A connection starts with the sender's Raft id (u64 LE); then each frame
//! is `len u32 (LE) | protobuf-encoded raft Message`, or, with the top bit
//! of `len` set, a pull of snapshot data (`shard::pull`); an empty frame is
//! a keepalive, sent when the connection was quiet for `KEEPALIVE`: two
//! followers exchange no Raft messages, yet each must know the other is
//! up (Metadata lists live brokers only). Outbound messages wait in a
//! bounded queue per peer; when it is full, or the peer is down, they are
//! dropped: raft-rs retransmits what matters (appends are re-sent from the
//! follower's acknowledged index, heartbeats recur).

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use protobuf::Message as _;
use raft::prelude::Message;

use super::PeerMessage;
use crate::shard::pull::PullMessage;

/// Messages queued for one peer before newer ones are dropped.
const PEER_QUEUE: usize = 4096;
/// A frame larger than this is not ours: the connection is closed.
const MAX_FRAME_BYTES: usize = 1 << 30;
/// Set in a frame's length: the frame is a pull, not a Raft message.
const PULL_FRAME: u32 = 1 << 31;
/// How long to wait between connection attempts to a peer that is down.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// A quiet connection sends an empty frame this often.
pub const KEEPALIVE: Duration = Duration::from_millis(500);

/// The outbound side: one queue and one connection task per peer.
pub struct Transport {
    links: HashMap<u64, Link>,
}

struct Link {
    queue: flume::Sender<PeerMessage>,
    /// When a frame from this peer last arrived (any message).
    last_heard: Rc<Cell<Option<Instant>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("binding the Raft port {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: glommio::GlommioError<()>,
}

impl Transport {
    /// Binds this shard's Raft port and starts the connection tasks.
    /// `deliver` receives every message a peer sends.
    pub fn start(
        me: u64,
        listen: SocketAddr,
        peers: &[(u64, SocketAddr)],
        deliver: impl Fn(PeerMessage) + 'static,
    ) -> Result<Rc<Self>, BindError> {
        let listener = TcpListener::bind(listen).map_err(|source| BindError { addr: listen, source })?;
        let mut links = HashMap::new();
        let mut heard = HashMap::new();
        for &(id, addr) in peers {
            let (tx, rx) = flume::bounded(PEER_QUEUE);
            let last_heard = Rc::new(Cell::new(None));
            heard.insert(id, last_heard.clone());
            links.insert(id, Link { queue: tx, last_heard });
            glommio::spawn_local(send_loop(me, id, addr, rx)).detach();
        }
        glommio::spawn_local(accept_loop(me, listener, Rc::new(heard), Rc::new(deliver))).detach();
        Ok(Rc::new(Self { links }))
    }

    /// Queues a message for its peer; never waits.
    fn queue(&self, to: u64, m: PeerMessage) {
        let Some(link) = self.links.get(&to) else {
            tracing::trace!(to, "raft message for an unknown peer dropped");
            return;
        };
        if link.queue.try_send(m).is_err() {
            tracing::trace!("raft queue full; message dropped");
        }
    }

    /// Peers heard from within `within`.
    pub fn live_peers(&self, within: Duration) -> Vec<u64> {
        let now = Instant::now();
        self.links
            .iter()
            .filter(|(_, l)| l.last_heard.get().is_some_and(|t| now - t <= within))
            .map(|(&id, _)| id)
            .collect()
    }
}

/// Keeps a connection to one peer and writes its queued messages, many
/// per write when they queue up.
async fn send_loop(me: u64, peer: u64, addr: SocketAddr, queue: flume::Receiver<PeerMessage>) {
    let mut reported_down = false;
    let mut buf = Vec::new();
    loop {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                if !reported_down {
                    tracing::warn!(peer, %addr, error = %e, "raft peer unreachable; retrying");
                    reported_down = true;
                }
                // Messages for a peer that is down are stale by the time it
                // is back; raft-rs sends what it needs again.
                while queue.try_recv().is_ok() {}
                glommio::timer::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = stream.write_all(&me.to_le_bytes()).await {
            tracing::debug!(peer, error = %e, "raft connection lost; reconnecting");
            continue;
        }
        if reported_down {
            tracing::info!(peer, %addr, "raft peer connected");
            reported_down = false;
        }
        loop {
            let next = futures_lite::future::or(async { Some(queue.recv_async().await) }, async {
                glommio::timer::sleep(KEEPALIVE).await;
                None
            })
            .await;
            buf.clear();
            match next {
                Some(Ok(first)) => encode(&first, &mut buf),
                Some(Err(_)) => return, // the shard is gone
                None => buf.extend_from_slice(&0u32.to_le_bytes()),
            }
            while buf.len() < (1 << 20) {
                match queue.try_recv() {
                    Ok(m) => encode(&m, &mut buf),
                    Err(_) => break,
                }
            }
            if let Err(e) = stream.write_all(&buf).await {
                tracing::debug!(peer, error = %e, "raft connection lost; reconnecting");
                break;
            }
        }
    }
}

fn encode(m: &PeerMessage, buf: &mut Vec<u8>) {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let flag = match m {
        PeerMessage::Raft(m) => {
            m.write_to_vec(buf).expect("a raft message always encodes");
            0
        }
        PeerMessage::Pull(p) => {
            buf.extend_from_slice(&p.encode());
            PULL_FRAME
        }
    };
    let len = (buf.len() - at - 4) as u32 | flag;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

type Heard = Rc<HashMap<u64, Rc<Cell<Option<Instant>>>>>;

async fn accept_loop(me: u64, listener: TcpListener, heard: Heard, deliver: Rc<dyn Fn(PeerMessage)>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (heard, deliver) = (heard.clone(), deliver.clone());
                glommio::spawn_local(async move {
                    match receive_loop(me, stream, &heard, &*deliver).await {
                        Ok(()) => {}
                        // A peer going away is routine (restarts, partitions).
                        Err(Closed::Io(why)) => tracing::debug!(%why, "raft connection closed"),
                        Err(Closed::Refused(why)) => tracing::warn!(%why, "raft connection closed"),
                    }
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a raft connection failed");
                glommio::timer::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

/// Why a peer connection ended.
enum Closed {
    /// The connection itself failed or ended.
    Io(String),
    /// The peer sent something this node must not take.
    Refused(String),
}

impl From<std::io::Error> for Closed {
    fn from(e: std::io::Error) -> Self {
        Closed::Io(e.to_string())
    }
}

/// Reads frames from one peer connection until it closes or sends
/// something that is not a Raft message for this node.
async fn receive_loop(
    me: u64,
    mut stream: TcpStream,
    heard: &Heard,
    deliver: &dyn Fn(PeerMessage),
) -> Result<(), Closed> {
    let mut hello = [0u8; 8];
    stream.read_exact(&mut hello).await?;
    let from = u64::from_le_bytes(hello);
    let Some(seen) = heard.get(&from) else {
        return Err(Closed::Refused(format!("connection from unknown node {from}")));
    };
    seen.set(Some(Instant::now()));
    let mut len = [0u8; 4];
    let mut body = Vec::new();
    loop {
        stream.read_exact(&mut len).await?;
        seen.set(Some(Instant::now()));
        let len = u32::from_le_bytes(len);
        let n = (len & !PULL_FRAME) as usize;
        if len == 0 {
            continue; // keepalive
        }
        if n > MAX_FRAME_BYTES {
            return Err(Closed::Refused(format!("a frame of {n} bytes from node {from}")));
        }
        body.resize(n, 0);
        stream.read_exact(&mut body[..]).await?;
        if len & PULL_FRAME != 0 {
            let pull = PullMessage::decode(&body)
                .map_err(|e| Closed::Refused(format!("a bad pull frame from node {from}: {e}")))?;
            if pull.from() != from {
                return Err(Closed::Refused(format!(
                    "a pull of node {} on the connection from {from}",
                    pull.from()
                )));
            }
            deliver(PeerMessage::Pull(pull));
            continue;
        }
        let msg = Message::parse_from_bytes(&body[..])
            .map_err(|e| Closed::Refused(format!("not a raft message from node {from}: {e}")))?;
        if msg.to != me || msg.from != from {
            return Err(Closed::Refused(format!(
                "message {} -> {} on the connection from {from} to {me}",
                msg.from, msg.to
            )));
        }
        super::check_from_peer(&msg).map_err(|e| Closed::Refused(format!("from node {from}: {e}")))?;
        deliver(PeerMessage::Raft(msg));
    }
}

impl super::Outbox for Transport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            self.queue(m.to, PeerMessage::Raft(m));
        }
    }

    fn send_pull(&self, to: u64, msg: PullMessage) {
        self.queue(to, PeerMessage::Pull(msg));
    }
}
