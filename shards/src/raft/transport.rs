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
//!
//! With `PeerTls` every connection is mutual TLS: the dialer checks that
//! the listener's certificate names the peer it meant to reach, and the
//! listener that the dialer's certificate names the node its hello claims
//! to be, so a host without a certificate of the cluster's CA for that
//! node cannot inject Raft messages.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
/// How long a peer has to finish a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Mutual TLS between nodes.
#[derive(Clone)]
pub struct PeerTls {
    /// Requires a client certificate from the cluster's CA.
    pub server: Arc<rustls::ServerConfig>,
    /// Presents this node's certificate; trusts the cluster's CA.
    pub client: Arc<rustls::ClientConfig>,
    /// The DNS name a node's certificate must hold, by Raft id.
    pub name_of: fn(u64) -> String,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// Whether `cert` (DER) is valid for `name`.
fn names(cert: &rustls::pki_types::CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
}

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
        tls: Option<PeerTls>,
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
            glommio::spawn_local(send_loop(me, id, addr, rx, tls.clone())).detach();
        }
        glommio::spawn_local(accept_loop(me, listener, Rc::new(heard), Rc::new(deliver), tls)).detach();
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
async fn send_loop(me: u64, peer: u64, addr: SocketAddr, queue: flume::Receiver<PeerMessage>, tls: Option<PeerTls>) {
    let mut reported_down = false;
    loop {
        let stream = match TcpStream::connect(addr).await {
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
        let sent = match &tls {
            None => send_on(me, peer, addr, stream, &queue, &mut reported_down).await,
            Some(tls) => {
                let connector = futures_rustls::TlsConnector::from(tls.client.clone());
                let name = (tls.name_of)(peer);
                let Ok(server_name) = rustls::pki_types::ServerName::try_from(name.clone()) else {
                    tracing::error!(peer, %name, "not a DNS name; cannot reach this peer over TLS");
                    return;
                };
                let handshake =
                    futures_lite::future::or(async { Some(connector.connect(server_name, stream).await) }, async {
                        glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT).await;
                        None
                    });
                match handshake.await {
                    Some(Ok(stream)) => send_on(me, peer, addr, stream, &queue, &mut reported_down).await,
                    Some(Err(e)) => Err(format!("TLS handshake: {e}")),
                    None => Err("TLS handshake timed out".into()),
                }
            }
        };
        match sent {
            Ok(()) => return, // the shard is gone
            Err(e) => {
                if !reported_down {
                    tracing::warn!(peer, %addr, error = %e, "raft connection to peer failed; retrying");
                    reported_down = true;
                }
                while queue.try_recv().is_ok() {}
                glommio::timer::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

/// Sends the hello, then queued messages and keepalives, until the
/// connection fails (`Err`) or the shard is gone (`Ok`).
async fn send_on<S: AsyncWrite + Unpin>(
    me: u64,
    peer: u64,
    addr: SocketAddr,
    mut stream: S,
    queue: &flume::Receiver<PeerMessage>,
    reported_down: &mut bool,
) -> Result<(), String> {
    let mut buf = Vec::new();
    stream.write_all(&me.to_le_bytes()).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    if *reported_down {
        tracing::info!(peer, %addr, "raft peer connected");
        *reported_down = false;
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
            Some(Err(_)) => return Ok(()), // the shard is gone
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
            return Err(e.to_string());
        }
        // TLS holds records back until flushed; TCP has nothing to flush.
        stream.flush().await.map_err(|e| e.to_string())?;
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

async fn accept_loop(
    me: u64,
    listener: TcpListener,
    heard: Heard,
    deliver: Rc<dyn Fn(PeerMessage)>,
    tls: Option<PeerTls>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (heard, deliver, tls) = (heard.clone(), deliver.clone(), tls.clone());
                glommio::spawn_local(async move {
                    let received = match tls {
                        None => receive_loop(me, stream, &heard, &*deliver, |_| true).await,
                        Some(tls) => {
                            let acceptor = futures_rustls::TlsAcceptor::from(tls.server.clone());
                            let handshake =
                                futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
                                    glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT).await;
                                    None
                                });
                            match handshake.await {
                                Some(Ok(stream)) => {
                                    // The verifier checked the chain; the hello's
                                    // node must be the one the certificate names.
                                    let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
                                    let claims =
                                        |from: u64| cert.as_ref().is_some_and(|c| names(c, &(tls.name_of)(from)));
                                    receive_loop(me, stream, &heard, &*deliver, claims).await
                                }
                                Some(Err(e)) => Err(Closed::Refused(format!("TLS handshake with a peer failed: {e}"))),
                                None => Err(Closed::Io("TLS handshake timed out".into())),
                            }
                        }
                    };
                    match received {
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
async fn receive_loop<S: AsyncRead + Unpin>(
    me: u64,
    mut stream: S,
    heard: &Heard,
    deliver: &dyn Fn(PeerMessage),
    is: impl Fn(u64) -> bool,
) -> Result<(), Closed> {
    let mut hello = [0u8; 8];
    stream.read_exact(&mut hello).await?;
    let from = u64::from_le_bytes(hello);
    let Some(seen) = heard.get(&from) else {
        return Err(Closed::Refused(format!("connection from unknown node {from}")));
    };
    if !is(from) {
        return Err(Closed::Refused(format!(
            "a peer says it is Raft node {from}, but its certificate does not name that node"
        )));
    }
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
