//! A tiny raw Kafka client on the `kafka-protocol` crate, for the tests' requests no client
//! library sends on purpose (the wrong broker, bad CRCs, unknown APIs, stale generations):
//! one blocking TCP connection speaking Kafka frames, plus typed requests built on it.
//!
//! It is test support: it panics with a message naming the request when a broker does not
//! answer as a Kafka broker must. It never retries or hides an error code; callers assert on
//! those.

mod groups;
mod reassign;
mod records;
mod requests;

pub use groups::*;
pub use reassign::*;
pub use records::*;
pub use requests::*;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

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
    pub const POLICY_VIOLATION: i16 = 44;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
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
