//! The fuzzer's side of the wire: one request and its probe, the set-up
//! requests, and the checks that the broker still serves afterwards. Plain
//! blocking sockets: the fuzzer needs bounds, not throughput.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Partitions of the topic the after-run check writes to and reads from.
const CHECK_PARTITIONS: i32 = 32;
const CHECK_CONNECTIONS: usize = 64;

/// What became of one request and its probe.
#[derive(Debug)]
pub enum Outcome {
    /// The request's response came, then the probe's.
    Answered,
    /// Only the probe's response came (acks=0 produce).
    Silent,
    /// The broker closed the connection.
    Closed,
    /// Neither an answer nor a close in time, or a response out of order.
    Failed(String),
}

/// The request's correlation id; its probe's is the next one.
pub fn request_correlation(index: u64) -> i32 {
    ((index % (1 << 29)) * 2) as i32
}

fn probe_frame(correlation_id: i32) -> Vec<u8> {
    // ApiVersions v0, request header v1, client id "probe".
    let mut f = Vec::with_capacity(19);
    f.extend_from_slice(&15i32.to_be_bytes());
    f.extend_from_slice(&18i16.to_be_bytes());
    f.extend_from_slice(&0i16.to_be_bytes());
    f.extend_from_slice(&correlation_id.to_be_bytes());
    f.extend_from_slice(&5i16.to_be_bytes());
    f.extend_from_slice(b"probe");
    f
}

/// Sends `frame` (without its length prefix) and a probe on `conn`
/// (connecting first if needed), and reads until the probe's answer, a
/// close, or `timeout`.
pub fn exchange(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    index: u64,
    frame: &[u8],
    timeout: Duration,
) -> Outcome {
    // A frame broken at the byte level may carry another correlation id.
    let request = match frame.get(4..8) {
        Some(c) => i32::from_be_bytes([c[0], c[1], c[2], c[3]]),
        None => request_correlation(index),
    };
    let probe = request_correlation(index) + 1;
    if conn.is_none() {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                *conn = Some(s);
            }
            Err(e) => return Outcome::Failed(format!("cannot connect: {e}")),
        }
    }
    let Some(stream) = conn.as_mut() else {
        return Outcome::Failed("no connection".into());
    };
    let mut out = Vec::with_capacity(frame.len() + 32);
    out.extend_from_slice(&(frame.len() as i32).to_be_bytes());
    out.extend_from_slice(frame);
    out.extend_from_slice(&probe_frame(probe));
    let _ = stream.set_write_timeout(Some(timeout));
    if let Err(e) = stream.write_all(&out) {
        *conn = None;
        return match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                Outcome::Failed(format!("the broker took no bytes for {timeout:?}"))
            }
            _ => Outcome::Closed,
        };
    }
    let deadline = Instant::now() + timeout;
    let mut answered = false;
    loop {
        match read_frame(stream, deadline) {
            Ok(Some(body)) if body.len() >= 4 => {
                let corr = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                if corr == request && !answered {
                    answered = true;
                } else if corr == probe {
                    return if answered { Outcome::Answered } else { Outcome::Silent };
                } else {
                    *conn = None;
                    return Outcome::Failed(format!(
                        "a response with correlation id {corr}, expected {request} then {probe}"
                    ));
                }
            }
            Ok(Some(body)) => {
                *conn = None;
                return Outcome::Failed(format!("a {}-byte response frame", body.len()));
            }
            Ok(None) => {
                *conn = None;
                return Outcome::Closed;
            }
            Err(e) => {
                *conn = None;
                return Outcome::Failed(e);
            }
        }
    }
}

/// One response frame's body; `None` when the broker closed.
fn read_frame(stream: &mut TcpStream, deadline: Instant) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    if !read_exact(stream, &mut len, deadline)? {
        return Ok(None);
    }
    let len = i32::from_be_bytes(len);
    if !(0..=(1 << 30)).contains(&len) {
        return Err(format!("response frame length {len}"));
    }
    let mut body = vec![0u8; len as usize];
    if !read_exact(stream, &mut body, deadline)? {
        return Ok(None);
    }
    Ok(Some(body))
}

/// False on a close (EOF or reset); an error when the deadline passes.
fn read_exact(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<bool, String> {
    let mut at = 0;
    while at < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("neither an answer nor a close in time".into());
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf[at..]) {
            Ok(0) => return Ok(false),
            Ok(n) => at += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// A well-formed request and its decoded response, for set-up and checks.
pub fn call<Req, Resp>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    req: &Req,
    timeout: Duration,
) -> anyhow::Result<Resp>
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("wirefuzz")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, Req::header_version(version))?;
    req.encode(&mut buf, version)?;
    stream.write_all(&(buf.len() as i32).to_be_bytes())?;
    stream.write_all(&buf)?;
    let body = read_frame(stream, Instant::now() + timeout)
        .map_err(|e| anyhow::anyhow!("{api:?}: {e}"))?
        .with_context(|| format!("{api:?}: the broker closed the connection"))?;
    let mut body = Bytes::from(body);
    let h = ResponseHeader::decode(&mut body, Resp::header_version(version))?;
    if h.correlation_id != 7 {
        bail!("{api:?}: response for correlation id {}", h.correlation_id);
    }
    Resp::decode(&mut body, version)
}

pub fn connect(addr: SocketAddr, timeout: Duration) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// (key, min, max) of every API the broker advertises.
pub fn api_versions(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Vec<(i16, i16, i16)>> {
    let mut s = connect(addr, timeout)?;
    let resp: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("wirefuzz"))
            .with_client_software_version(StrBytes::from_static_str("1")),
        timeout,
    )?;
    if resp.error_code != 0 {
        bail!("ApiVersions error {}", resp.error_code);
    }
    Ok(resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect())
}

/// Creates the topics (a topic that exists already is fine). Returns the
/// error code of the first other failure.
pub fn create_topics(addr: SocketAddr, timeout: Duration, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    match create(addr, timeout, topics)? {
        0 => Ok(()),
        code => bail!("creating {topics:?}: error {code}"),
    }
}

fn create(addr: SocketAddr, timeout: Duration, topics: &[(&str, i32)]) -> anyhow::Result<i16> {
    let mut s = connect(addr, timeout)?;
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(
        topics
            .iter()
            .map(|&(name, partitions)| {
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_num_partitions(partitions)
                    .with_replication_factor(-1)
            })
            .collect(),
    );
    let resp: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &req, timeout)?;
    Ok(resp
        .topics
        .iter()
        .map(|t| t.error_code)
        .find(|&c| c != 0 && c != TOPIC_ALREADY_EXISTS)
        .unwrap_or(0))
}

/// The topic the after-run check writes to: created before the run (the
/// fuzz may fill the partition limit), under a name the fuzz never uses.
pub fn check_topic(seed: u64) -> String {
    format!("wirefuzz-check-{seed}")
}

pub fn create_check_topic(addr: SocketAddr, timeout: Duration, seed: u64) -> anyhow::Result<()> {
    create_topics(addr, timeout, &[(&check_topic(seed), CHECK_PARTITIONS)])
}

/// After a run: fresh connections to every broker are answered (the
/// kernel spreads them over every shard's listener), and the check topic
/// takes an acks=all record on every partition, at whichever broker leads
/// it, and gives it back.
pub fn still_serving(brokers: &[SocketAddr], timeout: Duration, seed: u64) -> anyhow::Result<String> {
    for &addr in brokers {
        for i in 0..CHECK_CONNECTIONS {
            api_versions(addr, timeout)
                .with_context(|| format!("{addr}: new connection {i} of {CHECK_CONNECTIONS}"))?;
        }
    }
    let topic = check_topic(seed);
    for p in 0..CHECK_PARTITIONS {
        let value = Bytes::from(format!("{topic}/{p}"));
        check_partition(brokers, &topic, p, &value, timeout)?;
    }
    Ok(format!(
        "{CHECK_CONNECTIONS} new connections to each of {} broker(s) answered; a record went to and came back from each of {CHECK_PARTITIONS} partitions of {topic}",
        brokers.len()
    ))
}

/// Writes `value` to `topic`/`partition` at whichever broker takes it
/// (the leader; followers answer NOT_LEADER_OR_FOLLOWER) and reads it back
/// from whichever broker leads it then, each retrying until `timeout`: an
/// election or a hand-over to the preferred leader may come between the
/// two, and a client is told NOT_LEADER_OR_FOLLOWER to look again.
fn check_partition(
    brokers: &[SocketAddr],
    topic: &str,
    partition: i32,
    value: &Bytes,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let offset = at_any_broker(brokers, deadline, |addr| {
        let mut s = connect(addr, timeout)?;
        produce_one(&mut s, topic, partition, value.clone(), timeout)
    })
    .with_context(|| format!("{topic}/{partition}: no broker took a record"))?;
    let got = at_any_broker(brokers, deadline, |addr| {
        let mut s = connect(addr, timeout)?;
        fetch_at(&mut s, topic, partition, offset, timeout)
    })
    .with_context(|| format!("{topic}/{partition}: no broker gave back offset {offset}"))?;
    if !got.windows(value.len()).any(|w| w == &value[..]) {
        bail!("{topic}/{partition}: the record written at offset {offset} does not come back");
    }
    Ok(())
}

/// The first success of `attempt` at any of `brokers`, going round them
/// until `deadline`; the last error when none succeeds.
fn at_any_broker<T>(
    brokers: &[SocketAddr],
    deadline: Instant,
    mut attempt: impl FnMut(SocketAddr) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    loop {
        let mut last = None;
        for &addr in brokers {
            match attempt(addr) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e.context(format!("at {addr}"))),
            }
        }
        if Instant::now() > deadline {
            return Err(last.unwrap_or_else(|| anyhow::anyhow!("no broker")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn produce_one(s: &mut TcpStream, topic: &str, partition: i32, value: Bytes, timeout: Duration) -> anyhow::Result<i64> {
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(value),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.freeze()))])]);
    let resp: ProduceResponse = call(s, ApiKey::Produce, 7, &req, timeout)?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .with_context(|| format!("{topic}/{partition}: empty produce response"))?;
    if p.error_code != 0 {
        bail!("{topic}/{partition}: produce error {}", p.error_code);
    }
    Ok(p.base_offset)
}

fn fetch_at(s: &mut TcpStream, topic: &str, partition: i32, offset: i64, timeout: Duration) -> anyhow::Result<Bytes> {
    let req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = call(s, ApiKey::Fetch, 11, &req, timeout)?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .with_context(|| format!("{topic}/{partition}: empty fetch response"))?;
    if p.error_code != 0 {
        bail!("{topic}/{partition}: fetch error {}", p.error_code);
    }
    let mut records = p.records.clone().unwrap_or_default();
    Ok(records.copy_to_bytes(records.remaining()))
}
