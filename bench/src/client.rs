//! A small pipelined Kafka client on glommio: one connection, many requests
//! in flight, responses matched in order (Kafka answers in request order on
//! a connection). Requests and responses use kafka-protocol's codec.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::{anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// Frames queued for the writer. Callers bound their own requests in
/// flight well below this (see `send`).
const WRITE_QUEUE: usize = 4096;

type Waiters = Rc<RefCell<VecDeque<(i32, flume::Sender<Bytes>)>>>;

pub struct Conn {
    frames: LocalSender<Bytes>,
    waiters: Waiters,
    next_correlation: Cell<i32>,
    /// Cleared when the connection breaks, so callers reconnect.
    open: Rc<Cell<bool>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Rc<Conn>> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| anyhow!("connecting to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| anyhow!("setting TCP_NODELAY: {e}"))?;
        let (rd, mut wr) = futures_lite::io::split(stream);
        let (frames, queued) = local_channel::new_bounded::<Bytes>(WRITE_QUEUE);
        let waiters: Waiters = Rc::new(RefCell::new(VecDeque::new()));
        let open = Rc::new(Cell::new(true));
        let writer_open = open.clone();
        glommio::spawn_local(async move {
            while let Some(frame) = queued.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    writer_open.set(false);
                    return;
                }
            }
        })
        .detach();
        let (w, reader_open) = (waiters.clone(), open.clone());
        glommio::spawn_local(async move {
            let mut rd = BufReader::with_capacity(1 << 20, rd);
            loop {
                let mut len = [0u8; 4];
                if rd.read_exact(&mut len).await.is_err() {
                    break;
                }
                let mut body = BytesMut::zeroed(i32::from_be_bytes(len).max(0) as usize);
                if rd.read_exact(&mut body).await.is_err() || body.len() < 4 {
                    break;
                }
                let corr = i32::from_be_bytes(body[0..4].try_into().expect("4"));
                let Some((expected, tx)) = w.borrow_mut().pop_front() else {
                    break;
                };
                if expected != corr {
                    break; // out of step: drop every waiter, the caller sees the error
                }
                let _ = tx.try_send(body.freeze());
            }
            reader_open.set(false);
            w.borrow_mut().clear();
        })
        .detach();
        Ok(Rc::new(Conn {
            frames,
            waiters,
            next_correlation: Cell::new(1),
            open,
        }))
    }

    /// False once the connection broke (either direction).
    pub fn is_open(&self) -> bool {
        self.open.get()
    }

    /// Sends a request and waits for its response.
    pub async fn call<Req, Resp>(&self, api: ApiKey, version: i16, req: &Req) -> anyhow::Result<Resp>
    where
        Req: Encodable,
        Resp: Decodable + HeaderVersion,
    {
        let rx = self.send(api, version, req, true)?.expect("a response was asked for");
        let mut body = rx
            .recv_async()
            .await
            .map_err(|_| anyhow!("connection closed awaiting {api:?}"))?;
        ResponseHeader::decode(&mut body, Resp::header_version(version))?;
        Resp::decode(&mut body, version).map_err(|e| anyhow!("decoding {api:?} v{version} response: {e}"))
    }

    /// Queues a request; returns where its response will arrive (unless
    /// `expect_response` is false, as for acks=0 produce).
    pub fn send<Req: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        req: &Req,
        expect_response: bool,
    ) -> anyhow::Result<Option<flume::Receiver<Bytes>>> {
        let corr = self.next_correlation.get();
        self.next_correlation.set(corr.wrapping_add(1));
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str("corestream-bench")));
        let mut buf = BytesMut::with_capacity(req.compute_size(version)? + 64);
        buf.put_i32(0);
        header.encode(&mut buf, api.request_header_version(version))?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        // Registering the waiter and queueing the frame happen with no await
        // in between, so waiters stay in wire order whatever other tasks do.
        if self.frames.try_send(buf.freeze()).is_err() {
            bail!("connection closed or over {WRITE_QUEUE} requests queued");
        }
        if !expect_response {
            return Ok(None);
        }
        let (tx, rx) = flume::bounded(1);
        self.waiters.borrow_mut().push_back((corr, tx));
        Ok(Some(rx))
    }
}

pub fn decode_response<Resp: Decodable + HeaderVersion>(mut body: Bytes, version: i16) -> anyhow::Result<Resp> {
    ResponseHeader::decode(&mut body, Resp::header_version(version))?;
    Resp::decode(&mut body, version)
}
