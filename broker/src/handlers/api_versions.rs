//! ApiVersions: advertises exactly the table in [`super::SUPPORTED`]. A request at a version
//! this broker does not speak gets Kafka's fallback: a v0 body with UNSUPPORTED_VERSION and the
//! supported ranges, so the client can pick a version and retry. It keeps no table of its own.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;

use crate::context::SharedBroker;

fn api_ranges() -> Vec<ApiVersion> {
    super::SUPPORTED
        .iter()
        .filter_map(|(key, _, _)| {
            super::supported(*key).map(|(min, max)| {
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
        })
        .collect()
}

pub async fn handle(
    _broker: &SharedBroker,
    _request: ApiVersionsRequest,
    _version: i16,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_ranges())
}

/// A complete v0 ApiVersions response (header v0 + body) with UNSUPPORTED_VERSION.
pub fn unsupported_version_answer(correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(correlation_id);
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_ranges());
    if let Err(e) = body.encode(&mut buf, 0) {
        tracing::error!("cannot encode ApiVersions v0 fallback: {e}");
    }
    buf.freeze()
}
