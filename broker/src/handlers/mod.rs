//! Kafka request parsing, dispatch and response encoding.
//!
//! [`kafka_apis!`] below is the single table of the APIs this broker implements: for each,
//! the versions it serves and the handler that serves it. From that one table come
//! [`SUPPORTED`] (what ApiVersions advertises, intersected with what `kafka-protocol`
//! decodes), the typed [`Body`], its decoding in [`parse`] and the call and response encoding
//! in [`handle`]. Adding an API is one line there plus its handler. Each API has its handler
//! in a module of its own; handlers build responses for the request's version and never
//! panic on client input. This module holds no API-specific logic beyond that table, and
//! the helpers every handler shares: a typed error becomes a wire code only here
//! ([`error_code`], [`code_or`]) or where a response is built.

mod admin;
mod api_versions;
mod configs;
mod decode;
mod elect;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;
mod reassign;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use tracing::Instrument;

use crate::context::SharedBroker;

/// Generates, from one line per API, the [`SUPPORTED`] table, the [`Body`] enum, the body
/// decoder and the handler dispatch.
///
/// A line is `Api(Request) [lowest, highest] => kind handler,` where `kind` says how the
/// handler is called (each gets `&SharedBroker`, the decoded request and the version):
/// - `call`: `async fn handler(broker, request, version) -> Response`;
/// - `header`: the same with the request header as a fourth argument;
/// - `start`: `fn handler(broker, request, version) -> impl Future<Output = Response>`, called
///   before anything awaits (Produce: batches reach partitions in request order).
macro_rules! kafka_apis {
    ($($api:ident($request:ty) [$min:literal, $max:literal] => $kind:ident $handler:path,)*) => {
        /// `(api, lowest version, highest version)` this broker implements.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[$((ApiKey::$api, $min, $max),)*];

        pub enum Body {
            $($api($request),)*
        }

        /// Decodes the body of a request to `api_key` (one of [`SUPPORTED`]).
        fn decode_body(api_key: ApiKey, frame: &mut Bytes, version: i16) -> Result<Body, ParseError> {
            match api_key {
                $(ApiKey::$api => Ok(Body::$api(decode(frame, version, stringify!($api))?)),)*
                other => Err(ParseError::Close(format!("API {other:?} is not supported"))),
            }
        }

        /// Calls the handler of `body`. Handlers of kind `start` run up to their first await
        /// here; the others run when the returned future is polled.
        fn dispatch(
            broker: SharedBroker,
            reply: Reply,
            header: RequestHeader,
            body: Body,
        ) -> LocalBoxFuture<'static, Result<Option<Bytes>, String>> {
            match body {
                $(Body::$api(request) => kafka_apis!(@$kind $handler, broker, reply, header, request),)*
            }
        }
    };
    (@call $handler:path, $broker:ident, $reply:ident, $header:ident, $request:ident) => {
        async move { $reply.send(&$handler(&$broker, $request, $reply.version).await) }
            .boxed_local()
    };
    (@header $handler:path, $broker:ident, $reply:ident, $header:ident, $request:ident) => {
        async move {
            $reply.send(&$handler(&$broker, $request, $reply.version, &$header).await)
        }
        .boxed_local()
    };
    (@start $handler:path, $broker:ident, $reply:ident, $header:ident, $request:ident) => {{
        let pending = $handler(&$broker, $request, $reply.version);
        async move { $reply.send(&pending.await) }.boxed_local()
    }};
}

kafka_apis! {
    Produce(ProduceRequest) [3, 11] => start produce::start,
    Fetch(FetchRequest) [4, 16] => call fetch::handle,
    ListOffsets(ListOffsetsRequest) [1, 8] => call list_offsets::handle,
    Metadata(MetadataRequest) [0, 12] => call metadata::handle,
    ApiVersions(ApiVersionsRequest) [0, 4] => call api_versions::handle,
    CreateTopics(CreateTopicsRequest) [2, 7] => call admin::create_topics,
    DeleteTopics(DeleteTopicsRequest) [1, 6] => call admin::delete_topics,
    InitProducerId(InitProducerIdRequest) [0, 4] => call admin::init_producer_id,
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest) [2, 4] => call list_offsets::offset_for_leader_epoch,
    DescribeConfigs(DescribeConfigsRequest) [1, 4] => call configs::describe_configs,
    AlterConfigs(AlterConfigsRequest) [0, 2] => call configs::alter_configs,
    DeleteRecords(DeleteRecordsRequest) [0, 2] => call admin::delete_records,
    CreatePartitions(CreatePartitionsRequest) [0, 3] => call admin::create_partitions,
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest) [0, 1] => call configs::incremental_alter_configs,
    DescribeCluster(DescribeClusterRequest) [0, 1] => call admin::describe_cluster,
    FindCoordinator(FindCoordinatorRequest) [0, 4] => call groups::find_coordinator,
    JoinGroup(JoinGroupRequest) [0, 9] => header groups::join_group,
    SyncGroup(SyncGroupRequest) [0, 5] => call groups::sync_group,
    Heartbeat(HeartbeatRequest) [0, 4] => call groups::heartbeat,
    LeaveGroup(LeaveGroupRequest) [0, 5] => call groups::leave_group,
    OffsetCommit(OffsetCommitRequest) [2, 9] => call groups::offset_commit,
    OffsetFetch(OffsetFetchRequest) [1, 9] => call groups::offset_fetch,
    DescribeGroups(DescribeGroupsRequest) [0, 5] => call groups::describe_groups,
    ListGroups(ListGroupsRequest) [0, 5] => call groups::list_groups,
    DeleteGroups(DeleteGroupsRequest) [0, 2] => call groups::delete_groups,
    OffsetDelete(OffsetDeleteRequest) [0, 0] => call groups::offset_delete,
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest) [0, 1] => call reassign::alter_partition_reassignments,
    ListPartitionReassignments(ListPartitionReassignmentsRequest) [0, 0] => call reassign::list_partition_reassignments,
    ElectLeaders(ElectLeadersRequest) [0, 2] => call elect::elect_leaders,
}

/// The versions of `api` this broker serves, if any: [`SUPPORTED`] intersected with what
/// `kafka-protocol` decodes (None if that leaves nothing).
pub fn supported(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, min, max)| {
            let crate_range = api.valid_versions();
            ((*min).max(crate_range.min), (*max).min(crate_range.max))
        })
        .filter(|(min, max)| min <= max)
}

pub struct ParsedRequest {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Body,
}

pub enum ParseError {
    /// Answer with these bytes (a complete response) and keep the connection.
    Answer(Bytes, String),
    /// Log this and close the connection.
    Close(String),
}

fn decode<T: Decodable>(buf: &mut Bytes, version: i16, what: &str) -> Result<T, ParseError> {
    decode::decode_body(buf, version)
        .map_err(|e| ParseError::Close(format!("cannot decode {what} v{version}: {e}")))
}

/// Cuts one request frame into its header and typed body.
pub fn parse(mut frame: Bytes) -> Result<ParsedRequest, ParseError> {
    if frame.len() < 8 {
        return Err(ParseError::Close(format!(
            "request of {} bytes has no header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Err(ParseError::Close(format!("unknown API key {raw_key}")));
    };
    let Some((min, max)) = supported(api_key) else {
        return Err(ParseError::Close(format!(
            "API {api_key:?} is not supported"
        )));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            let bytes = api_versions::unsupported_version_answer(correlation_id);
            return Err(ParseError::Answer(
                bytes,
                format!("ApiVersions v{version} is not supported; answered with v0"),
            ));
        }
        return Err(ParseError::Close(format!(
            "{api_key:?} v{version} is not supported (v{min}-v{max})"
        )));
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| ParseError::Close(format!("cannot decode request header: {e}")))?;
    let body = decode_body(api_key, &mut frame, version)?;
    if frame.has_remaining() {
        tracing::debug!(
            ?api_key,
            version,
            extra = frame.remaining(),
            "ignoring trailing request bytes"
        );
    }
    Ok(ParsedRequest {
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response (header + body) for the request's API and version.
pub fn encode<T: Encodable + HeaderVersion + Message>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("encoding {api_key:?} v{version} response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("encoding {api_key:?} v{version} response: {e}"))?;
    Ok(buf.freeze())
}

/// Where and whether the response to one request goes.
#[derive(Clone, Copy)]
struct Reply {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    /// False for a Produce with acks=0: Kafka sends no response to it.
    due: bool,
}

impl Reply {
    fn new(api_key: ApiKey, version: i16, correlation_id: i32, body: &Body) -> Reply {
        let due = !matches!(body, Body::Produce(r) if r.acks == 0);
        Reply {
            api_key,
            version,
            correlation_id,
            due,
        }
    }

    /// The encoded response, or None if none is due.
    fn send<T: Encodable + HeaderVersion + Message>(
        &self,
        body: &T,
    ) -> Result<Option<Bytes>, String> {
        if !self.due {
            return Ok(None);
        }
        encode(self.api_key, self.version, self.correlation_id, body).map(Some)
    }
}

/// Serves one request. `Ok(None)`: no response is due (acks=0). `Err`: close the connection
/// (a response could not be encoded: a bug, logged).
pub fn handle(
    broker: SharedBroker,
    request: ParsedRequest,
) -> LocalBoxFuture<'static, Result<Option<Bytes>, String>> {
    let ParsedRequest {
        api_key,
        version,
        header,
        body,
    } = request;
    let cid = header.correlation_id;
    let api = vec![("api".to_string(), format!("{api_key:?}"))];
    broker.metrics.requests.get_or_create(&api).inc();
    let latency = broker.metrics.request_seconds.get_or_create(&api).clone();
    let started = std::time::Instant::now();
    // One span per request; with OTLP export on, the range servers' spans of a produce join
    // it. Named and labelled after OpenTelemetry's messaging conventions.
    let operation = match api_key {
        ApiKey::Produce => "send",
        ApiKey::Fetch => "receive",
        _ => "",
    };
    let span = tracing::debug_span!(
        "kafka.request",
        otel.name = ?api_key,
        otel.kind = "server",
        "messaging.system" = "kafka",
        "messaging.operation.name" = ?api_key,
        "messaging.operation.type" = operation,
        "messaging.client.id" = header.client_id.as_deref().unwrap_or(""),
        api = ?api_key,
        version,
        correlation_id = cid,
    );
    let entered = span.enter();
    let reply = Reply::new(api_key, version, cid, &body);
    let pending = dispatch(broker, reply, header, body);
    drop(entered);
    pending
        .map(move |result| {
            latency.observe(started.elapsed().as_secs_f64());
            result
        })
        .instrument(span)
        .boxed_local()
}

/// The wire code of an error that may not be there: 0 when there is none.
pub fn error_code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

/// A per-partition answer as a response encodes it: `(0, value)`, or the error's code with
/// `fallback` (the "unknown" value of that response).
pub fn code_or<T>(result: Result<T, ResponseError>, fallback: T) -> (i16, T) {
    match result {
        Ok(value) => (0, value),
        Err(error) => (error.code(), fallback),
    }
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
