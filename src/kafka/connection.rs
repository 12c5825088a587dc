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
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::Task;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use super::{api_versions, dispatch, supports, Reply};
use crate::node::broker::Broker;

/// api_key i16 + api_version i16 + correlation_id i32.
const MIN_FRAME_BYTES: usize = 8;
const READ_BUFFER_BYTES: usize = 64 << 10;

/// What the writer does with one request's outcome.
enum Outcome {
    Respond(Reply),
    /// The request was a broken frame: write earlier replies, then close.
    Close,
}

type Pending = Task<(Outcome, Charge)>;

pub async fn serve(broker: Rc<Broker>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let (rd, wr) = futures_lite::io::split(stream);
    let in_flight = broker.config.limits.max_in_flight_per_connection;
    let (tx, rx) = local_channel::new_bounded::<Pending>(in_flight);
    let writer = glommio::spawn_local(write_responses(wr, rx, fd));
    if let Err(why) = read_requests(&broker, BufReader::with_capacity(READ_BUFFER_BYTES, rd), tx).await {
        tracing::debug!(shard = %broker.me(), ?peer, %why, "closing connection");
    }
    writer.await;
}

async fn write_responses(
    mut wr: futures_lite::io::WriteHalf<TcpStream>,
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
                if failed {
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

async fn read_requests(
    broker: &Rc<Broker>,
    mut rd: BufReader<futures_lite::io::ReadHalf<TcpStream>>,
    tx: local_channel::LocalSender<Pending>,
) -> Result<(), String> {
    let max = broker.config.limits.socket_request_max_bytes.0;
    loop {
        let mut len = [0u8; 4];
        if rd.read_exact(&mut len).await.is_err() {
            return Ok(()); // the client closed the connection
        }
        let len = i32::from_be_bytes(len);
        if len < MIN_FRAME_BYTES as i32 || len as u64 > max {
            return Err(format!(
                "frame length {len} outside [{MIN_FRAME_BYTES}, {max}] (limits.socket_request_max_bytes)"
            ));
        }
        let charge = broker.shard.budget.charge(len as u64).await;
        let mut frame = BytesMut::zeroed(len as usize);
        rd.read_exact(&mut frame)
            .await
            .map_err(|e| format!("connection ended inside a {len}-byte frame: {e}"))?;
        let task = start_request(broker, frame.freeze(), charge)?;
        if tx.send(task).await.is_err() {
            return Err("response writer stopped".into());
        }
    }
}

/// Checks the frame's header and starts its handler as a task.
fn start_request(broker: &Rc<Broker>, mut frame: Bytes, charge: Charge) -> Result<Pending, String> {
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    if api == ApiKey::ApiVersions && !supports(api, version) {
        // The client learns our versions from the v0-shaped error reply.
        let reply = api_versions::unsupported_version_reply(correlation_id);
        return Ok(glommio::spawn_local(
            async move { (Outcome::Respond(Some(reply)), charge) },
        ));
    }
    if !supports(api, version) {
        return Err(format!("{api:?} v{version} is not served"));
    }
    if api != ApiKey::ApiVersions && broker.cut_off() {
        // Cut off from the majority, this broker can neither lead nor learn
        // who does; closing sends the client to the brokers that can.
        return Err("this broker hears from no majority of its cluster".into());
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("bad request header: {e}"))?;
    let b = broker.clone();
    tracing::trace!(shard = %b.me(), ?api, version, correlation_id, "request");
    let bytes_in = frame.len() + 4;
    Ok(glommio::spawn_local(async move {
        // Any wait counts: a request held back for 0.3 ms was throttled.
        let throttle_ms = charge.waited.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let started = std::time::Instant::now();
        match dispatch(b.clone(), header, frame, throttle_ms).await {
            Ok(reply) => {
                let bytes_out = reply.as_ref().map_or(0, |f| f.len());
                b.metrics.record(api, bytes_in, bytes_out, started.elapsed());
                (Outcome::Respond(reply), charge)
            }
            Err(e) => {
                tracing::debug!(error = %e, "closing connection after a broken frame");
                (Outcome::Close, charge)
            }
        }
    }))
}
