//! A small pipelined Kafka client on glommio: one connection, many requests
//! in flight, responses matched in order (Kafka answers in request order on
//! a connection). Requests and responses use kafka-protocol's codec. With
//! `--tls-ca` connections speak TLS, and with `--sasl-mechanism` each logs
//! in before its first request, as a Kafka client on an SSL / SASL
//! listener does.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::{anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// Frames queued for the writer. Callers bound their own requests in
/// flight well below this (see `send`).
const WRITE_QUEUE: usize = 4096;

type Waiters = Rc<RefCell<VecDeque<(i32, flume::Sender<Bytes>)>>>;

/// TLS and SASL for every connection the generator makes.
#[derive(clap::Args, Clone, Default)]
pub struct SecurityArgs {
    /// Speak TLS, trusting the CA certificates in this PEM file (an SSL or
    /// SASL_SSL listener).
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Log in with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, value_name = "MECHANISM", global = true, requires = "sasl_username")]
    sasl_mechanism: Option<String>,
    #[arg(long, value_name = "USER", global = true)]
    sasl_username: Option<String>,
    /// [default: $CORESTREAM_SASL_PASSWORD]
    #[arg(long, value_name = "PASSWORD", global = true)]
    sasl_password: Option<String>,
}

struct Security {
    tls: Option<futures_rustls::TlsConnector>,
    sasl: Option<(corestream::security::Mechanism, String, String)>,
}

static SECURITY: std::sync::OnceLock<Security> = std::sync::OnceLock::new();

/// Sets how every later connection secures itself; call once, first.
pub fn configure(args: &SecurityArgs) -> anyhow::Result<()> {
    let tls = match &args.tls_ca {
        None => None,
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow!("reading {}: {e}", path.display()))?
            {
                roots
                    .add(cert.map_err(|e| anyhow!("reading {}: {e}", path.display()))?)
                    .map_err(|e| anyhow!("a CA in {} is not usable: {e}", path.display()))?;
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(futures_rustls::TlsConnector::from(std::sync::Arc::new(config)))
        }
    };
    let sasl = match (&args.sasl_mechanism, &args.sasl_username) {
        (Some(m), Some(user)) => {
            let mechanism = corestream::security::Mechanism::from_name(m)
                .ok_or_else(|| anyhow!("--sasl-mechanism {m}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))?;
            let password = match &args.sasl_password {
                Some(p) => p.clone(),
                None => std::env::var("CORESTREAM_SASL_PASSWORD")
                    .map_err(|_| anyhow!("--sasl-mechanism needs --sasl-password or $CORESTREAM_SASL_PASSWORD"))?,
            };
            Some((mechanism, user.clone(), password))
        }
        _ => None,
    };
    SECURITY
        .set(Security { tls, sasl })
        .map_err(|_| anyhow!("connection security set twice"))
}

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
        let security = SECURITY.get();
        let conn = match security.and_then(|s| s.tls.as_ref()) {
            None => Self::over(stream),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let stream = tls
                    .connect(name, stream)
                    .await
                    .map_err(|e| anyhow!("TLS handshake with {addr}: {e}"))?;
                Self::over(stream)
            }
        };
        if let Some((mechanism, user, password)) = security.and_then(|s| s.sasl.as_ref()) {
            conn.log_in(*mechanism, user, password)
                .await
                .map_err(|e| anyhow!("SASL {mechanism} as {user} at {addr}: {e}"))?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then the mechanism's tokens in SaslAuthenticate.
    async fn log_in(
        &self,
        mechanism: corestream::security::Mechanism,
        user: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        use corestream::security::ClientExchange;
        let hs: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name())),
            )
            .await?;
        if let Some(e) = hs.error_code.err() {
            bail!("the handshake was refused: {e:?}");
        }
        let send = |token: Vec<u8>| async move {
            let resp: SaslAuthenticateResponse = self
                .call(
                    ApiKey::SaslAuthenticate,
                    1,
                    &SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
                )
                .await?;
            match resp.error_code.err() {
                Some(e) => bail!("{e:?}: {}", resp.error_message.as_ref().map_or("", |m| m.as_str())),
                None => Ok(resp.auth_bytes),
            }
        };
        let (mut exchange, mut token) = ClientExchange::start(mechanism, user, password)?;
        while let Some(next) = exchange.next(&send(token).await?)? {
            token = next;
        }
        Ok(())
    }

    /// Starts the writer and reader tasks of a connected stream.
    fn over<S: AsyncRead + AsyncWrite + Unpin + 'static>(stream: S) -> Rc<Conn> {
        let (rd, mut wr) = futures_lite::io::split(stream);
        let (frames, queued) = local_channel::new_bounded::<Bytes>(WRITE_QUEUE);
        let waiters: Waiters = Rc::new(RefCell::new(VecDeque::new()));
        let open = Rc::new(Cell::new(true));
        let writer_open = open.clone();
        glommio::spawn_local(async move {
            while let Some(frame) = queued.recv().await {
                // TLS holds records back until flushed.
                if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
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
        Rc::new(Conn {
            frames,
            waiters,
            next_correlation: Cell::new(1),
            open,
        })
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
