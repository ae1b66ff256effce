//! Kafka request parsing, dispatch and response encoding.
//!
//! [`SUPPORTED`] is the single table of APIs and versions this broker implements; ApiVersions
//! advertises exactly it (intersected with what `kafka-protocol` decodes), and [`parse`]
//! refuses anything outside it. Each API has its own module holding its handler; handlers
//! build responses for the request's version and never panic on client input.

mod admin;
mod api_versions;
mod configs;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use tracing::Instrument;

use crate::context::SharedBroker;

/// `(api, lowest version, highest version)` this broker implements.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// The versions of `api` this broker serves, if any.
pub fn supported(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, min, max)| {
            let crate_range = api.valid_versions();
            ((*min).max(crate_range.min), (*max).min(crate_range.max))
        })
}

pub struct ParsedRequest {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Body,
}

pub enum Body {
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeCluster(DescribeClusterRequest),
    InitProducerId(InitProducerIdRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
}

pub enum ParseError {
    /// Answer with these bytes (a complete response) and keep the connection.
    Answer(Bytes, String),
    /// Log this and close the connection.
    Close(String),
}

fn decode<T: Decodable>(buf: &mut Bytes, version: i16, what: &str) -> Result<T, ParseError> {
    T::decode(buf, version)
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
    let body = match api_key {
        ApiKey::ApiVersions => Body::ApiVersions(decode(&mut frame, version, "ApiVersions")?),
        ApiKey::Metadata => Body::Metadata(decode(&mut frame, version, "Metadata")?),
        ApiKey::Produce => Body::Produce(decode(&mut frame, version, "Produce")?),
        ApiKey::Fetch => Body::Fetch(decode(&mut frame, version, "Fetch")?),
        ApiKey::ListOffsets => Body::ListOffsets(decode(&mut frame, version, "ListOffsets")?),
        ApiKey::OffsetForLeaderEpoch => {
            Body::OffsetForLeaderEpoch(decode(&mut frame, version, "OffsetForLeaderEpoch")?)
        }
        ApiKey::CreateTopics => Body::CreateTopics(decode(&mut frame, version, "CreateTopics")?),
        ApiKey::DeleteTopics => Body::DeleteTopics(decode(&mut frame, version, "DeleteTopics")?),
        ApiKey::CreatePartitions => {
            Body::CreatePartitions(decode(&mut frame, version, "CreatePartitions")?)
        }
        ApiKey::DescribeConfigs => {
            Body::DescribeConfigs(decode(&mut frame, version, "DescribeConfigs")?)
        }
        ApiKey::AlterConfigs => Body::AlterConfigs(decode(&mut frame, version, "AlterConfigs")?),
        ApiKey::IncrementalAlterConfigs => {
            Body::IncrementalAlterConfigs(decode(&mut frame, version, "IncrementalAlterConfigs")?)
        }
        ApiKey::DeleteRecords => Body::DeleteRecords(decode(&mut frame, version, "DeleteRecords")?),
        ApiKey::DescribeCluster => {
            Body::DescribeCluster(decode(&mut frame, version, "DescribeCluster")?)
        }
        ApiKey::InitProducerId => {
            Body::InitProducerId(decode(&mut frame, version, "InitProducerId")?)
        }
        ApiKey::FindCoordinator => {
            Body::FindCoordinator(decode(&mut frame, version, "FindCoordinator")?)
        }
        ApiKey::JoinGroup => Body::JoinGroup(decode(&mut frame, version, "JoinGroup")?),
        ApiKey::SyncGroup => Body::SyncGroup(decode(&mut frame, version, "SyncGroup")?),
        ApiKey::Heartbeat => Body::Heartbeat(decode(&mut frame, version, "Heartbeat")?),
        ApiKey::LeaveGroup => Body::LeaveGroup(decode(&mut frame, version, "LeaveGroup")?),
        ApiKey::OffsetCommit => Body::OffsetCommit(decode(&mut frame, version, "OffsetCommit")?),
        ApiKey::OffsetFetch => Body::OffsetFetch(decode(&mut frame, version, "OffsetFetch")?),
        ApiKey::DescribeGroups => {
            Body::DescribeGroups(decode(&mut frame, version, "DescribeGroups")?)
        }
        ApiKey::ListGroups => Body::ListGroups(decode(&mut frame, version, "ListGroups")?),
        ApiKey::DeleteGroups => Body::DeleteGroups(decode(&mut frame, version, "DeleteGroups")?),
        ApiKey::OffsetDelete => Body::OffsetDelete(decode(&mut frame, version, "OffsetDelete")?),
        other => return Err(ParseError::Close(format!("API {other:?} is not supported"))),
    };
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
    broker
        .metrics
        .requests
        .get_or_create(&vec![("api".to_string(), format!("{api_key:?}"))])
        .inc();
    // One span per request; with OTLP export on, the range servers' spans of a produce join it.
    let span = tracing::debug_span!(
        "kafka.request",
        api = ?api_key,
        version,
        correlation_id = cid,
        client = header.client_id.as_deref().unwrap_or(""),
    );
    let entered = span.enter();
    // Produce hands its batches to partition actors now, before anything awaits, so batches
    // reach each partition in the order their requests arrived.
    let (body, produce) = match body {
        Body::Produce(r) => {
            let acks = r.acks;
            (None, Some((acks, produce::start(&broker, r, version))))
        }
        other => (Some(other), None),
    };
    drop(entered);
    async move {
        if let Some((acks, pending)) = produce {
            let response = pending.await;
            if acks == 0 {
                return Ok(None);
            }
            return Ok(Some(encode(api_key, version, cid, &response)?));
        }
        let Some(body) = body else {
            return Ok(None);
        };
        let bytes = match body {
            Body::ApiVersions(r) => {
                encode(api_key, version, cid, &api_versions::handle(&r, version))?
            }
            Body::Metadata(r) => encode(
                api_key,
                version,
                cid,
                &metadata::handle(&broker, r, version).await,
            )?,
            Body::Produce(_) => return Ok(None),
            Body::Fetch(r) => encode(
                api_key,
                version,
                cid,
                &fetch::handle(&broker, r, version).await,
            )?,
            Body::ListOffsets(r) => encode(
                api_key,
                version,
                cid,
                &list_offsets::handle(&broker, r, version).await,
            )?,
            Body::OffsetForLeaderEpoch(r) => encode(
                api_key,
                version,
                cid,
                &list_offsets::offset_for_leader_epoch(&broker, r, version).await,
            )?,
            Body::CreateTopics(r) => encode(
                api_key,
                version,
                cid,
                &admin::create_topics(&broker, r, version).await,
            )?,
            Body::DeleteTopics(r) => encode(
                api_key,
                version,
                cid,
                &admin::delete_topics(&broker, r, version).await,
            )?,
            Body::CreatePartitions(r) => encode(
                api_key,
                version,
                cid,
                &admin::create_partitions(&broker, r, version).await,
            )?,
            Body::DescribeConfigs(r) => encode(
                api_key,
                version,
                cid,
                &configs::describe_configs(&broker, r, version).await,
            )?,
            Body::AlterConfigs(r) => encode(
                api_key,
                version,
                cid,
                &configs::alter_configs(&broker, r, version).await,
            )?,
            Body::IncrementalAlterConfigs(r) => encode(
                api_key,
                version,
                cid,
                &configs::incremental_alter_configs(&broker, r, version).await,
            )?,
            Body::DeleteRecords(r) => encode(
                api_key,
                version,
                cid,
                &admin::delete_records(&broker, r, version).await,
            )?,
            Body::DescribeCluster(r) => encode(
                api_key,
                version,
                cid,
                &admin::describe_cluster(&broker, r, version).await,
            )?,
            Body::InitProducerId(r) => encode(
                api_key,
                version,
                cid,
                &admin::init_producer_id(&broker, r, version).await,
            )?,
            Body::FindCoordinator(r) => encode(
                api_key,
                version,
                cid,
                &groups::find_coordinator(&broker, r, version).await,
            )?,
            Body::JoinGroup(r) => {
                let client_id = header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                encode(
                    api_key,
                    version,
                    cid,
                    &groups::join_group(&broker, r, version, client_id).await,
                )?
            }
            Body::SyncGroup(r) => encode(
                api_key,
                version,
                cid,
                &groups::sync_group(&broker, r, version).await,
            )?,
            Body::Heartbeat(r) => encode(
                api_key,
                version,
                cid,
                &groups::heartbeat(&broker, r, version).await,
            )?,
            Body::LeaveGroup(r) => encode(
                api_key,
                version,
                cid,
                &groups::leave_group(&broker, r, version).await,
            )?,
            Body::OffsetCommit(r) => encode(
                api_key,
                version,
                cid,
                &groups::offset_commit(&broker, r, version).await,
            )?,
            Body::OffsetFetch(r) => encode(
                api_key,
                version,
                cid,
                &groups::offset_fetch(&broker, r, version).await,
            )?,
            Body::DescribeGroups(r) => encode(
                api_key,
                version,
                cid,
                &groups::describe_groups(&broker, r, version).await,
            )?,
            Body::ListGroups(r) => encode(
                api_key,
                version,
                cid,
                &groups::list_groups(&broker, r, version).await,
            )?,
            Body::DeleteGroups(r) => encode(
                api_key,
                version,
                cid,
                &groups::delete_groups(&broker, r, version).await,
            )?,
            Body::OffsetDelete(r) => encode(
                api_key,
                version,
                cid,
                &groups::offset_delete(&broker, r, version).await,
            )?,
        };
        Ok(Some(bytes))
    }
    .instrument(span)
    .boxed_local()
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
