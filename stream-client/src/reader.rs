//! The read path of the stream client: offloaded offsets from object storage (through
//! [`crate::Objects`]), the rest as confirmed batches from any replica of the range that holds
//! an offset, spread over replicas and checked against their CRC32C. It retries another
//! replica on a bad batch or a failed call and refreshes a stale stream descriptor once (an
//! object compacted away, a range whose data moved to objects). It never writes, seals or
//! changes a stream.

use protocol::model::{NodeId, RangeInfo, StreamId};
use protocol::range_rpc::{Batch, Fetch, FetchResponse};
use protocol::{ErrorCode, RpcError};
use tracing::Instrument;

use crate::StreamClient;

/// Batches read from a stream.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub batches: Vec<Batch>,
    /// Where the next read should start (the end of the last batch, or the offset asked for
    /// when nothing was readable yet).
    pub next_offset: u64,
}

impl ReadResult {
    fn from_objects(batches: Vec<protocol::object::ObjectBatch>) -> Self {
        let next_offset = batches.last().map_or(0, |b| b.end());
        ReadResult {
            batches: batches
                .into_iter()
                .map(|b| Batch {
                    offset: b.offset,
                    count: b.count,
                    crc: b.crc,
                    payload: b.payload,
                })
                .collect(),
            next_offset,
        }
    }

    /// Nothing readable yet at `offset`.
    fn nothing_at(offset: u64) -> Self {
        ReadResult {
            batches: Vec::new(),
            next_offset: offset,
        }
    }
}

impl StreamClient {
    /// Reads confirmed batches from `offset`, up to about `max_bytes` (always at least one
    /// batch when any is readable). A batch that contains `offset` is returned whole.
    pub async fn read(
        &self,
        stream_id: StreamId,
        offset: u64,
        max_bytes: u32,
    ) -> Result<ReadResult, RpcError> {
        // A span per read, saying where the data came from (`source`: object or range).
        let span = tracing::debug_span!(
            "stream.read",
            stream = stream_id,
            offset,
            source = tracing::field::Empty,
            object = tracing::field::Empty,
            range = tracing::field::Empty
        );
        self.read_from_anywhere(stream_id, offset, max_bytes)
            .instrument(span)
            .await
    }

    async fn read_from_anywhere(
        &self,
        stream_id: StreamId,
        offset: u64,
        max_bytes: u32,
    ) -> Result<ReadResult, RpcError> {
        let mut info = self.cached(stream_id).await?;
        let mut refreshed = false;
        loop {
            if offset < info.start_offset {
                return Err(RpcError::new(
                    ErrorCode::OffsetOutOfRange,
                    format!(
                        "offset {offset} is before the stream start {}",
                        info.start_offset
                    ),
                ));
            }
            if let (Some(slice), Some(objects)) = (info.object_at(offset), &self.objects) {
                match objects
                    .read(slice, stream_id, offset, u64::from(max_bytes))
                    .await
                {
                    Ok(batches) => {
                        let span = tracing::Span::current();
                        span.record("source", "object");
                        span.record("object", slice.object_id);
                        return Ok(ReadResult::from_objects(batches));
                    }
                    Err(e) if !refreshed => {
                        tracing::debug!(
                            stream = stream_id,
                            offset,
                            "object read failed, looking again: {e}"
                        );
                        info = self.describe(stream_id).await?;
                        refreshed = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(range) = info.ranges.iter().find(|r| r.contains(offset)).cloned() else {
                if !refreshed {
                    info = self.describe(stream_id).await?;
                    refreshed = true;
                    continue;
                }
                // Past the end of every range: nothing to read yet.
                return Ok(ReadResult::nothing_at(offset));
            };
            let read = match self.read_range(&range, offset, max_bytes).await {
                // The range may have moved to objects (its servers dropped it) since the
                // descriptor was cached: look again once.
                Err(_) if !refreshed => {
                    info = self.describe(stream_id).await?;
                    refreshed = true;
                    continue;
                }
                other => other?,
            };
            match read {
                // Nothing readable in what the cache says is the open range: it may have been
                // sealed since (by a writer elsewhere), so look again once.
                RangeRead::Batches(result)
                    if result.batches.is_empty() && range.end.is_none() && !refreshed =>
                {
                    info = self.describe(stream_id).await?;
                    refreshed = true;
                }
                RangeRead::Batches(result) => {
                    let span = tracing::Span::current();
                    span.record("source", "range");
                    span.record("range", range.index);
                    return Ok(result);
                }
                RangeRead::SealedBefore if !refreshed => {
                    info = self.describe(stream_id).await?;
                    refreshed = true;
                }
                RangeRead::SealedBefore => return Ok(ReadResult::nothing_at(offset)),
            }
        }
    }

    async fn read_range(
        &self,
        range: &RangeInfo,
        offset: u64,
        max_bytes: u32,
    ) -> Result<RangeRead, RpcError> {
        let end = range.end.unwrap_or(u64::MAX);
        let n = range.servers.len().max(1);
        // Spread readers over replicas, starting at a different one per offset.
        let first = (offset as usize) % n;
        let mut last_error = RpcError::new(ErrorCode::Unavailable, "range has no servers");
        let mut sealed_before = false;
        for i in 0..range.servers.len() {
            let node = range.servers[(first + i) % n];
            let answer = self.fetch_from(node, range, offset, end, max_bytes).await;
            match answer {
                Ok(response) => {
                    if response.batches.is_empty() {
                        if response.sealed_end.is_some_and(|e| offset >= e) && range.end.is_none() {
                            sealed_before = true;
                            continue;
                        }
                        if range.end.is_none() {
                            return Ok(RangeRead::Batches(ReadResult::nothing_at(offset)));
                        }
                        continue;
                    }
                    if let Some(bad) = response
                        .batches
                        .iter()
                        .find(|b| protocol::checksum(&b.payload) != b.crc)
                    {
                        // Corrupt in transit or on that replica's disk: try another replica.
                        tracing::warn!(
                            node,
                            offset = bad.offset,
                            "batch fails its CRC; trying another replica"
                        );
                        last_error = RpcError::new(
                            ErrorCode::BadChecksum,
                            format!(
                                "batch at offset {} from node {node} fails its CRC",
                                bad.offset
                            ),
                        );
                        continue;
                    }
                    let next_offset = response
                        .batches
                        .last()
                        .map(|b| b.offset + b.count as u64)
                        .unwrap_or(offset);
                    return Ok(RangeRead::Batches(ReadResult {
                        batches: response.batches,
                        next_offset,
                    }));
                }
                Err(e) if e.code == ErrorCode::OffsetOutOfRange && range.end.is_none() => {
                    // The open range's readable end has not reached `offset` on this replica.
                    last_error = e;
                }
                Err(e) => last_error = e,
            }
        }
        if sealed_before {
            return Ok(RangeRead::SealedBefore);
        }
        if range.end.is_none() && last_error.code == ErrorCode::OffsetOutOfRange {
            return Ok(RangeRead::Batches(ReadResult::nothing_at(offset)));
        }
        Err(last_error)
    }

    async fn fetch_from(
        &self,
        node: NodeId,
        range: &RangeInfo,
        offset: u64,
        end: u64,
        max_bytes: u32,
    ) -> Result<FetchResponse, RpcError> {
        let rpc = self.nodes.client(node).await?;
        let request = Fetch {
            stream_id: range.stream_id,
            index: range.index,
            offset,
            end,
            max_bytes,
        };
        let result = rpc.call(request.clone()).await;
        if let Err(e) = &result {
            if e.code == ErrorCode::Unavailable {
                // The server may have come back on another address.
                let _ = self.nodes.refresh().await;
            }
        }
        result
    }
}

enum RangeRead {
    Batches(ReadResult),
    /// The range turned out to be sealed before the offset: the stream descriptor is stale.
    SealedBefore,
}
