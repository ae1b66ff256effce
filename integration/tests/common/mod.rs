//! Shared by the Kafka test files: a tiny raw Kafka client on `kafka-protocol` (for requests
//! no client library sends on purpose: the wrong broker, bad CRCs, unknown APIs) and a lock
//! that runs the tests of one file one at a time (each starts a whole cluster; the machine
//! has two cores).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole of a test that starts a cluster.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Kafka error codes the tests look for.
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_REQUEST: i16 = 42;
}

/// What came back for a request the broker may refuse by closing the connection.
#[derive(Debug)]
pub enum Outcome {
    /// A response frame with the request's correlation id (its body, after the id).
    Response(Vec<u8>),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing within the timeout: the broker neither answered nor closed.
    Silent,
    /// A frame for another correlation id.
    Other(i32),
}

/// One TCP connection to a broker, speaking Kafka frames (`i32 length | header | body`).
pub struct RawClient {
    pub addr: String,
    stream: TcpStream,
    next_id: i32,
    /// What the broker said in ApiVersions: key -> (min, max).
    pub versions: BTreeMap<i16, (i16, i16)>,
}

impl RawClient {
    /// Connects without any handshake.
    pub fn connect(addr: &str) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            addr: addr.to_string(),
            stream,
            next_id: 1,
            versions: BTreeMap::new(),
        }
    }

    /// Connects and asks ApiVersions (v0), so that [`RawClient::version`] can pick versions.
    pub fn negotiated(addr: &str) -> RawClient {
        let mut c = RawClient::connect(addr);
        let resp: ApiVersionsResponse = c
            .call(&ApiVersionsRequest::default(), 0)
            .unwrap_or_else(|e| panic!("ApiVersions v0 to {addr}: {e}"));
        assert_eq!(resp.error_code, 0, "ApiVersions v0 error from {addr}");
        for k in resp.api_keys {
            c.versions.insert(k.api_key, (k.min_version, k.max_version));
        }
        c
    }

    /// The highest version of `R` both the broker (per ApiVersions) and kafka-protocol
    /// handle. Panics, naming the ranges, when there is none.
    pub fn version<R: Request>(&self) -> i16 {
        let ours = R::VERSIONS;
        let (min, max) = *self
            .versions
            .get(&R::KEY)
            .unwrap_or_else(|| panic!("broker does not advertise API key {}", R::KEY));
        let v = max.min(ours.max);
        assert!(
            v >= min.max(ours.min),
            "no common version for API {}: broker {min}..={max}, kafka-protocol {}..={}",
            R::KEY,
            ours.min,
            ours.max
        );
        v
    }

    pub fn set_read_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("timeout");
    }

    /// Writes raw bytes (no length prefix added).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes one frame: length prefix then `body`.
    pub fn write_frame(&mut self, body: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(body.len() + 4);
        out.extend_from_slice(&(body.len() as i32).to_be_bytes());
        out.extend_from_slice(body);
        self.write_raw(&out)
    }

    /// Reads one frame; `Ok(None)` when the broker closed the connection.
    pub fn read_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e)
                if e.kind() == io::ErrorKind::UnexpectedEof
                    || e.kind() == io::ErrorKind::ConnectionReset =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let len = i32::from_be_bytes(len);
        if !(0..=256 << 20).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response frame length {len}"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Some(body))
    }

    /// Header + body of request `req` at `version` with the given correlation id.
    pub fn encode<R: Request>(req: &R, version: i16, correlation_id: i32) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(str_bytes("strata-raw-test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::header_version(version))
            .expect("encode request header");
        req.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("encode request {} v{version}: {e}", R::KEY));
        buf.to_vec()
    }

    /// Sends a request; answers its correlation id.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = Self::encode(req, version, id);
        self.write_frame(&frame)
            .unwrap_or_else(|e| panic!("send request {} to {}: {e}", R::KEY, self.addr));
        id
    }

    /// Reads the next frame and decodes it as the response to request `R` at `version`,
    /// checking the correlation id.
    pub fn recv<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Result<R::Response, String> {
        let frame = self
            .read_frame()
            .map_err(|e| format!("reading response to API {} v{version}: {e}", R::KEY))?
            .ok_or_else(|| {
                format!(
                    "broker closed the connection instead of answering API {} v{version}",
                    R::KEY
                )
            })?;
        let mut buf = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| format!("decode response header of API {} v{version}: {e}", R::KEY))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "response correlation id {} for request {correlation_id} (API {} v{version})",
                header.correlation_id,
                R::KEY
            ));
        }
        let resp = R::Response::decode(&mut buf, version)
            .map_err(|e| format!("decode response of API {} v{version}: {e}", R::KEY))?;
        Ok(resp)
    }

    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, String> {
        let id = self.send(req, version);
        self.recv::<R>(id, version)
    }

    /// Waits for either a response frame for `correlation_id` or the connection closing.
    pub fn outcome(&mut self, correlation_id: i32, timeout: Duration) -> Outcome {
        self.set_read_timeout(timeout);
        let r = self.read_frame();
        self.set_read_timeout(Duration::from_secs(20));
        match r {
            Ok(None) => Outcome::Closed,
            Ok(Some(frame)) => {
                if frame.len() < 4 {
                    return Outcome::Other(-1);
                }
                let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                if id == correlation_id {
                    Outcome::Response(frame[4..].to_vec())
                } else {
                    Outcome::Other(id)
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                Outcome::Silent
            }
            Err(_) => Outcome::Closed,
        }
    }

    /// Fresh correlation id (for hand-made frames).
    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// One v2 record batch holding `records` (key, value) with timestamps `timestamp + i`.
pub fn record_batch(
    records: &[(Option<&[u8]>, &[u8])],
    compression: Compression,
    timestamp: i64,
) -> Bytes {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol puts records in one batch while offset - sequence stays the
            // same; this keeps the batch's base sequence at -1 (no idempotence).
            sequence: i as i32 - 1,
            timestamp: timestamp + i as i64,
            key: k.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(v)),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Byte offset of the attributes field in a v2 batch header (compression in bits 0-2,
/// timestamp type in bit 3).
pub const BATCH_ATTRIBUTES_AT: usize = 21;

/// The v2 batch headers in `records` (as a Fetch answers them): (base offset, record count,
/// attributes) of each complete batch.
pub fn batch_headers(records: &[u8]) -> Vec<(i64, i32, i16)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 61 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().unwrap());
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().unwrap()) as usize;
        if at + 12 + len > records.len() {
            break;
        }
        let attrs = i16::from_be_bytes(
            records[at + BATCH_ATTRIBUTES_AT..at + BATCH_ATTRIBUTES_AT + 2]
                .try_into()
                .unwrap(),
        );
        let count = i32::from_be_bytes(records[at + 57..at + 61].try_into().unwrap());
        out.push((base, count, attrs));
        at += 12 + len;
    }
    out
}

/// Deterministic value bytes for message `i` of a test (`len` long, compressible when
/// `compressible`).
pub fn value_for(seed: u64, i: u64, len: usize, compressible: bool) -> Vec<u8> {
    if compressible {
        let text =
            format!("message {i} of seed {seed}: the quick brown fox jumps over the lazy dog. ");
        text.bytes().cycle().take(len).collect()
    } else {
        integration::payload_for(seed, i, len)
    }
}

/// Makes sure `cmd` is installed, else fails the test saying how to install it.
pub fn require_command(cmd: &str, install: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{cmd}` is not installed here ({install}; .ci/run installs it)"
    );
}

/// Used by `Message::VERSIONS` users so the import is not flagged unused in some files.
pub fn versions_of<M: Message>() -> (i16, i16) {
    (M::VERSIONS.min, M::VERSIONS.max)
}

// ---------------------------------------------------------------------------------------
// Typed raw requests at the highest version both sides handle.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest,
};
use uuid::Uuid;

/// Raw Metadata for `topics` (all topics when `None`).
pub fn raw_metadata(
    c: &mut RawClient,
    topics: Option<&[&str]>,
    auto_create: bool,
) -> MetadataResponse {
    let v = c.version::<MetadataRequest>();
    let mut req = MetadataRequest::default().with_topics(topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
            .collect()
    }));
    if v >= 4 {
        req = req.with_allow_auto_topic_creation(auto_create);
    }
    c.call(&req, v)
        .unwrap_or_else(|e| panic!("Metadata v{v} to {}: {e}", c.addr))
}

/// A partition as raw Metadata shows it.
#[derive(Debug, Clone)]
pub struct RawPartition {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub leader_addr: String,
}

/// Topic id and partitions of `topic` per raw Metadata, or the topic's error code.
pub fn raw_topic(c: &mut RawClient, topic: &str) -> Result<(Uuid, Vec<RawPartition>), i16> {
    let md = raw_metadata(c, Some(&[topic]), false);
    let brokers: std::collections::HashMap<i32, String> = md
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)?;
    if t.error_code != 0 {
        return Err(t.error_code);
    }
    let mut parts: Vec<RawPartition> = t
        .partitions
        .iter()
        .map(|p| RawPartition {
            partition: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            leader_addr: brokers.get(&p.leader_id.0).cloned().unwrap_or_default(),
        })
        .collect();
    parts.sort_by_key(|p| p.partition);
    Ok((t.topic_id, parts))
}

/// Builds a Produce request for one partition at version `v` (topic id from v13 on).
pub fn produce_request(
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    batch: Bytes,
    acks: i16,
    v: i16,
) -> ProduceRequest {
    let mut td =
        TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch))]);
    if v >= 13 {
        td = td.with_topic_id(topic_id);
    } else {
        td = td.with_name(topic_name(topic));
    }
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![td])
}

/// Produces one batch to one partition and answers that partition's response.
pub fn raw_produce(
    c: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    batch: Bytes,
) -> Result<PartitionProduceResponse, String> {
    let v = c.version::<ProduceRequest>();
    let req = produce_request(topic, topic_id, partition, batch, -1, v);
    let resp = c.call(&req, v)?;
    resp.responses
        .into_iter()
        .flat_map(|t| t.partition_responses)
        .find(|p| p.index == partition)
        .ok_or_else(|| format!("Produce v{v} response has no partition {partition}"))
}

/// Fetches one partition from `offset` and answers that partition's data.
pub fn raw_fetch(
    c: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> Result<PartitionData, String> {
    let v = c.version::<FetchRequest>();
    let mut ft = FetchTopic::default().with_partitions(vec![FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)]);
    if v >= 13 {
        ft = ft.with_topic_id(topic_id);
    } else {
        ft = ft.with_topic(topic_name(topic));
    }
    let mut req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(4 << 20)
        .with_topics(vec![ft]);
    if v >= 7 {
        req = req.with_session_epoch(-1);
    }
    if v >= 15 {
        req = req.with_replica_id(BrokerId(-1));
    }
    let resp = c.call(&req, v)?;
    if resp.error_code != 0 {
        return Err(format!("Fetch v{v} top-level error {}", resp.error_code));
    }
    resp.responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| format!("Fetch v{v} response has no partition {partition}"))
}

/// ListOffsets for one partition at `timestamp` (-1 latest, -2 earliest, -3 max timestamp).
pub fn raw_list_offsets(
    c: &mut RawClient,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<ListOffsetsPartitionResponse, String> {
    let v = c.version::<ListOffsetsRequest>();
    let mut req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    if v >= 10 {
        req = req.with_timeout_ms(30_000);
    }
    let resp = c.call(&req, v)?;
    resp.topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| format!("ListOffsets v{v} response has no partition {partition}"))
}

/// Waits until raw Metadata from `c` shows `topic` with every partition led.
pub fn raw_wait_topic(
    c: &mut RawClient,
    topic: &str,
    partitions: usize,
) -> (Uuid, Vec<RawPartition>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = raw_topic(c, topic);
        if let Ok((id, parts)) = &r {
            if parts.len() == partitions && parts.iter().all(|p| p.leader >= 0) {
                return (*id, parts.clone());
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} never had {partitions} led partitions in raw Metadata from {}: {r:?}",
            c.addr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
