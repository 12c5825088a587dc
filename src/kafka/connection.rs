//! One client connection: read a frame, check it, decode its header, run
//! it as its own task, and write responses in request order. Requests are
//! pipelined up to `limits.max_in_flight_per_connection`; every frame is
//! charged to the shard's memory budget before it is read, so a full
//! budget stops reading from sockets (backpressure) instead of allocating.
//!
//! A frame that cannot be trusted — a length prefix over
//! `socket_request_max_bytes` or too short for a header, an unknown API
//! key, an unsupported version (except ApiVersions, which answers
//! UNSUPPORTED_VERSION as the protocol requires), or a body that does not
//! decode — closes this connection only.

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use corestream_shards::budget::Charge;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::Task;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use super::sasl::{SaslSession, Verdict};
use super::{api_versions, dispatch, supports, Reply};
use crate::config::ListenerConfig;
use crate::node::broker::Broker;

/// What the request handlers may need to know about their connection.
pub struct ConnectionInfo {
    pub peer: Option<std::net::SocketAddr>,
    /// The client's IP address as ACL hosts name it.
    pub host: String,
    /// The listener it came in on: Metadata answers with its addresses.
    pub listener: Rc<ListenerConfig>,
    /// Who the client authenticated as (`User:name`, or a client
    /// certificate's subject); unset means `User:ANONYMOUS`. Set once: a
    /// SASL re-authentication must keep the user.
    principal: std::cell::OnceCell<String>,
}

impl ConnectionInfo {
    pub fn new(peer: Option<std::net::SocketAddr>, listener: Rc<ListenerConfig>, principal: Option<String>) -> Self {
        let info = Self {
            peer,
            host: peer.map(|a| a.ip().to_string()).unwrap_or_default(),
            listener,
            principal: std::cell::OnceCell::new(),
        };
        if let Some(p) = principal {
            let _ = info.principal.set(p);
        }
        info
    }

    pub fn principal(&self) -> &str {
        self.principal
            .get()
            .map_or(crate::security::acl::ANONYMOUS, String::as_str)
    }
}

/// api_key i16 + api_version i16 + correlation_id i32.
const MIN_FRAME_BYTES: usize = 8;
/// Gathers small pipelined requests; frames at least this long are read
/// straight into their own buffer (BufReader passes large reads through),
/// so a larger buffer would only cost memory per connection.
const READ_BUFFER_BYTES: usize = 16 << 10;

/// What the writer does with one request's outcome.
enum Outcome {
    Respond(Reply),
    /// The request was a broken frame: write earlier replies, then close.
    Close,
}

type Pending = Task<(Outcome, Charge)>;

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn serve(
    broker: Rc<Broker>,
    stream: TcpStream,
    listener: Rc<ListenerConfig>,
    tls: Option<futures_rustls::TlsAcceptor>,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    broker.connection_fds.borrow_mut().insert(fd);
    match tls {
        None => serve_stream(&broker, stream, fd, peer, listener, None).await,
        Some(acceptor) => {
            let handshake = futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
                glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT).await;
                None
            });
            match handshake.await {
                Some(Ok(tls)) => {
                    // On an SSL listener a client certificate names the
                    // client (Kafka's default principal builder); on
                    // SASL_SSL the SASL login does.
                    let principal = (!listener.protocol.sasl())
                        .then(|| tls.get_ref().1.peer_certificates()?.first().map(|c| c.to_vec()))
                        .flatten()
                        .and_then(|der| crate::security::tls::certificate_principal(&der));
                    serve_stream(&broker, tls, fd, peer, listener, principal).await
                }
                Some(Err(e)) => {
                    broker.metrics.tls_handshake_failed(&listener.name);
                    tracing::debug!(shard = %broker.me(), ?peer, error = %e, "TLS handshake failed");
                }
                None => {
                    broker.metrics.tls_handshake_failed(&listener.name);
                    tracing::debug!(shard = %broker.me(), ?peer, "TLS handshake timed out");
                }
            }
        }
    }
    broker.connection_fds.borrow_mut().remove(&fd);
}

/// Serves requests over a plain or TLS stream until either side closes.
async fn serve_stream<S>(
    broker: &Rc<Broker>,
    stream: S,
    fd: RawFd,
    peer: Option<std::net::SocketAddr>,
    listener: Rc<ListenerConfig>,
    principal: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (rd, wr) = futures_lite::io::split(stream);
    let in_flight = broker.config.limits.max_in_flight_per_connection;
    let (tx, rx) = local_channel::new_bounded::<Pending>(in_flight);
    let writer = glommio::spawn_local(write_responses(wr, rx, fd));
    let info = Rc::new(ConnectionInfo::new(peer, listener, principal));
    if let Err(why) = read_requests(broker, rd, tx, info).await {
        tracing::debug!(shard = %broker.me(), ?peer, %why, "closing connection");
    }
    writer.await;
}

async fn write_responses<S: AsyncWrite + Unpin>(
    mut wr: futures_lite::io::WriteHalf<S>,
    rx: local_channel::LocalReceiver<Pending>,
    fd: RawFd,
) {
    while let Some(pending) = rx.recv().await {
        let (outcome, _charge) = pending.await;
        match outcome {
            Outcome::Respond(Some(frame)) => {
                let mut failed = false;
                for segment in frame.segments() {
                    if wr.write_all(segment).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                // TLS holds records back until flushed; plain TCP has nothing to flush.
                if failed || wr.flush().await.is_err() {
                    break;
                }
            }
            Outcome::Respond(None) => {}
            Outcome::Close => break,
        }
    }
    // Both directions: the reader may be parked in a read.
    // SAFETY: `fd` belongs to the stream, which lives until both halves drop,
    // after this task and the reader end.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

async fn read_requests<S: AsyncRead + Unpin>(
    broker: &Rc<Broker>,
    mut raw: futures_lite::io::ReadHalf<S>,
    tx: local_channel::LocalSender<Pending>,
    info: Rc<ConnectionInfo>,
) -> Result<(), String> {
    let max = broker.config.limits.socket_request_max_bytes.0;
    let mut sasl = info.listener.protocol.sasl().then(|| {
        let max_reauth = std::time::Duration::from_millis(broker.config.sasl.connections_max_reauth_ms);
        SaslSession::new(info.listener.clone(), max_reauth)
    });
    // A connection that never sends a byte holds no read buffer (10,000
    // idle connections with 64 KiB each held 640 MiB outside the memory
    // budget): the first length prefix is read from the socket itself,
    // and the buffer comes with the first request.
    let mut prefix = [0u8; 4];
    if raw.read_exact(&mut prefix).await.is_err() {
        return Ok(()); // the client closed the connection
    }
    let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, raw);
    loop {
        let len = i32::from_be_bytes(prefix);
        // A bare SASL token (after a v0 handshake) has no request header.
        let min = match &sasl {
            Some(s) if s.expects_bare_token() => 0,
            _ => MIN_FRAME_BYTES as i32,
        };
        if len < min || len as u64 > max {
            return Err(format!(
                "frame length {len} outside [{min}, {max}] (limits.socket_request_max_bytes)"
            ));
        }
        let charge = broker.shard.budget.charge(len as u64).await;
        let mut frame = BytesMut::zeroed(len as usize);
        rd.read_exact(&mut frame)
            .await
            .map_err(|e| format!("connection ended inside a {len}-byte frame: {e}"))?;
        let frame = frame.freeze();
        let (task, close) = match &mut sasl {
            None => (start_request(broker, frame, charge, &info)?, None),
            Some(session) => match session.on_frame(broker, frame) {
                Verdict::Serve(frame) => {
                    if let Some(user) = session.user().filter(|_| info.principal.get().is_none()) {
                        let _ = info.principal.set(format!("User:{user}"));
                    }
                    (start_request(broker, frame, charge, &info)?, None)
                }
                Verdict::Reply(reply) => (ready(Some(reply), charge), None),
                // Kafka's connection.failed.authentication.delay.ms: a
                // refused client waits before it learns so and may retry.
                Verdict::ReplyAndClose(reply, why) => {
                    let delay = std::time::Duration::from_millis(broker.config.sasl.failed_authentication_delay_ms);
                    let delayed = glommio::spawn_local(async move {
                        glommio::timer::sleep(delay).await;
                        (Outcome::Respond(Some(reply)), charge)
                    });
                    (delayed, Some(why))
                }
                Verdict::Close(why) => return Err(why),
            },
        };
        if tx.send(task).await.is_err() {
            return Err("response writer stopped".into());
        }
        if let Some(why) = close {
            return Err(why);
        }
        if rd.read_exact(&mut prefix).await.is_err() {
            return Ok(()); // the client closed the connection
        }
    }
}

/// What a frame's first bytes say it is.
pub enum Parsed {
    /// An ApiVersions request at a version we do not serve: answered with
    /// the v0-shaped error that lists ours (KIP-511).
    UnsupportedApiVersions { correlation_id: i32 },
    Request {
        api: ApiKey,
        header: RequestHeader,
        body: Bytes,
    },
}

/// Checks a frame's API key and version and decodes its header; an error
/// closes the connection. Pure: the fuzz target `kafka_frame` runs it.
pub fn parse_frame(mut frame: Bytes) -> Result<Parsed, String> {
    let Some(&[k0, k1, v0, v1, c0, c1, c2, c3]) = frame.get(..MIN_FRAME_BYTES) else {
        return Err(format!("a {}-byte frame", frame.len()));
    };
    let key = i16::from_be_bytes([k0, k1]);
    let version = i16::from_be_bytes([v0, v1]);
    let correlation_id = i32::from_be_bytes([c0, c1, c2, c3]);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    if api == ApiKey::ApiVersions && !supports(api, version) {
        return Ok(Parsed::UnsupportedApiVersions { correlation_id });
    }
    if !supports(api, version) {
        return Err(format!("{api:?} v{version} is not served"));
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("bad request header: {e}"))?;
    Ok(Parsed::Request {
        api,
        header,
        body: frame,
    })
}

/// A reply that is ready now, in line with the pipelined ones.
fn ready(reply: Reply, charge: Charge) -> Pending {
    glommio::spawn_local(async move { (Outcome::Respond(reply), charge) })
}

/// Checks the frame's header and starts its handler as a task.
fn start_request(
    broker: &Rc<Broker>,
    frame: Bytes,
    charge: Charge,
    info: &Rc<ConnectionInfo>,
) -> Result<Pending, String> {
    let bytes_in = frame.len() + 4;
    let (api, header, frame) = match parse_frame(frame)? {
        Parsed::UnsupportedApiVersions { correlation_id } => {
            // The client learns our versions from the v0-shaped error reply.
            return Ok(ready(
                Some(api_versions::unsupported_version_reply(correlation_id)),
                charge,
            ));
        }
        Parsed::Request { api, header, body } => (api, header, body),
    };
    let (version, correlation_id) = (header.request_api_version, header.correlation_id);
    let b = broker.clone();
    let info = info.clone();
    tracing::trace!(shard = %b.me(), ?api, version, correlation_id, "request");
    Ok(glommio::spawn_local(async move {
        // Any wait counts: a request held back for 0.3 ms was throttled.
        let throttle_ms = charge.waited.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let started = std::time::Instant::now();
        if api != ApiKey::ApiVersions && b.cut_off_for_request().await {
            // Cut off from the majority, this broker can neither lead nor
            // learn who does; closing sends the client to the brokers that can.
            tracing::debug!(shard = %b.me(), "closing connection: this broker hears from no majority of its cluster");
            return (Outcome::Close, charge);
        }
        match dispatch(b.clone(), header, frame, throttle_ms, &info).await {
            Ok(reply) => {
                let bytes_out = reply.as_ref().map_or(0, |f| f.len());
                b.metrics.record(api, bytes_in, bytes_out, started.elapsed());
                (Outcome::Respond(reply), charge)
            }
            Err(e) => {
                tracing::debug!(error = %e, "closing connection: a broken frame, or an answer too large to send");
                (Outcome::Close, charge)
            }
        }
    }))
}
