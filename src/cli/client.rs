//! A blocking Kafka client for the admin commands: one request at a time
//! over a std TCP stream, the codec from kafka-protocol. It speaks plain
//! Kafka, so the commands work against any Kafka-compatible broker.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;

use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::security::{ClientExchange, Mechanism};

/// Largest response the tool accepts.
const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// How the tool authenticates on a SASL listener.
pub struct SaslLogin {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
}

pub struct Client {
    stream: TcpStream,
    next_correlation: i32,
    /// API key -> the broker's (min, max) version, from ApiVersions.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Client {
    pub fn connect(bootstrap: &str, login: Option<&SaslLogin>) -> anyhow::Result<Self> {
        let addr = bootstrap
            .to_socket_addrs()
            .with_context(|| format!("resolving {bootstrap}"))?
            .next()
            .ok_or_else(|| anyhow!("{bootstrap} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        let mut client = Self {
            stream,
            next_correlation: 1,
            versions: BTreeMap::new(),
        };
        let resp: ApiVersionsResponse = client.call_version(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        client.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(login) = login {
            client
                .authenticate(login)
                .with_context(|| format!("SASL {} as {}", login.mechanism, login.user))?;
        }
        Ok(client)
    }

    /// SaslHandshake v1, then the mechanism's tokens in SaslAuthenticate.
    fn authenticate(&mut self, login: &SaslLogin) -> anyhow::Result<()> {
        let hs: SaslHandshakeResponse = self.call(
            ApiKey::SaslHandshake,
            (1, 1),
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(login.mechanism.name())),
        )?;
        if let Some(e) = hs.error_code.err() {
            let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!("the broker refused the handshake with {e:?}; it offers {offered:?}");
        }
        let mut send = |token: Vec<u8>| -> anyhow::Result<Bytes> {
            let resp: SaslAuthenticateResponse = self.call(
                ApiKey::SaslAuthenticate,
                (0, 2),
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            )?;
            if let Some(e) = resp.error_code.err() {
                bail!("{e:?}: {}", resp.error_message.as_ref().map_or("", |m| m.as_str()));
            }
            Ok(resp.auth_bytes)
        };
        let (mut exchange, mut token) = ClientExchange::start(login.mechanism, &login.user, &login.password)?;
        while let Some(next) = exchange.next(&send(token)?)? {
            token = next;
        }
        Ok(())
    }

    /// Calls `api` with the highest version both sides know, within `ours`.
    pub fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        ours: (i16, i16),
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let Some(&(lo, hi)) = self.versions.get(&(api as i16)) else {
            bail!("the broker does not serve {api:?}");
        };
        let version = hi.min(ours.1);
        if version < lo.max(ours.0) {
            bail!(
                "no common {api:?} version: the broker serves {lo}..{hi}, this tool {}..{}",
                ours.0,
                ours.1
            );
        }
        self.call_version(api, version, req)
    }

    fn call_version<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let corr = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str("corestream-cli")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, api.request_header_version(version))?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(&buf)
            .with_context(|| format!("sending {api:?}"))?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .with_context(|| format!("reading the {api:?} response (the broker closed the connection?)"))?;
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > RESPONSE_BYTES_MAX {
            bail!("{api:?} response of {len} bytes is not believable");
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, Resp::header_version(version))?;
        if header.correlation_id != corr {
            bail!("response correlation id {} for request {corr}", header.correlation_id);
        }
        Resp::decode(&mut body, version).map_err(|e| anyhow!("decoding the {api:?} v{version} response: {e}"))
    }
}
