//! Opening a partition: take over its data and meta streams (the new epoch fences the
//! previous owner, whatever it is doing), replay the meta stream, and index whatever data the
//! meta stream had not indexed yet. Runs before the partition serves anything.

use protocol::partition_meta::MetaRecord;
use protocol::RpcError;
use stream_client::{StreamClient, StreamWriter};

use super::state::{EpochHistory, TimeIndex};
use crate::batch;

/// Closes a partition's data and meta streams (waits for their appends, seals their ranges so
/// the next owner opens at once). Failures are ignored: the next owner's open fences and
/// seals whatever is left.
pub async fn close_streams(data: Option<StreamWriter>, meta: Option<StreamWriter>) {
    for writer in [data, meta].into_iter().flatten() {
        let stream = writer.stream_id();
        if let Err(e) = writer.close().await {
            tracing::debug!(stream, "closing stream: {e}");
        }
    }
}

pub struct Opened {
    pub data: StreamWriter,
    pub meta: StreamWriter,
    pub log_start: u64,
    pub epochs: EpochHistory,
    pub index: TimeIndex,
    /// Meta records after the last snapshot (drives compaction).
    pub meta_records_since_snapshot: usize,
}

pub async fn open(
    streams: StreamClient,
    data_stream: u64,
    meta_stream: u64,
    leader_epoch: u32,
) -> Result<Opened, RpcError> {
    let data = streams
        .open_with_epoch(data_stream, leader_epoch as u64)
        .await?;
    let meta = streams
        .open_with_epoch(meta_stream, leader_epoch as u64)
        .await?;
    let leo = data.next_offset();

    // Replay the meta stream from its start (a snapshot after the first compaction).
    let meta_info = streams.describe(meta_stream).await?;
    let mut log_start = 0u64;
    let mut epochs = EpochHistory::default();
    let mut index = TimeIndex::default();
    let mut since_snapshot = 0;
    let mut offset = meta_info.start_offset;
    let meta_end = meta.next_offset();
    while offset < meta_end {
        let read = streams.read(meta_stream, offset, 1 << 20).await?;
        if read.batches.is_empty() {
            break;
        }
        for batch in read.batches {
            offset = batch.offset + batch.count as u64;
            let record: MetaRecord = match protocol::decode(&batch.payload) {
                Ok(record) => record,
                Err(e) => {
                    // A record this version cannot read: skip it rather than refuse to serve.
                    tracing::warn!(
                        meta_stream,
                        offset = batch.offset,
                        "skipping meta record: {e}"
                    );
                    continue;
                }
            };
            since_snapshot += 1;
            match record {
                MetaRecord::Snapshot(s) => {
                    log_start = s.log_start;
                    epochs.epochs = s.epochs;
                    index =
                        TimeIndex::from_snapshot(s.time_index, s.indexed_until, s.indexed_bytes);
                    since_snapshot = 0;
                }
                MetaRecord::LogStart(start) => log_start = log_start.max(start),
                MetaRecord::LeaderEpoch {
                    epoch,
                    start_offset,
                } => {
                    if epochs.latest().is_none_or(|e| epoch > e) {
                        epochs.epochs.push((epoch, start_offset));
                    }
                }
                MetaRecord::TimeIndex {
                    entries,
                    indexed_until,
                    indexed_bytes,
                } => {
                    let mut merged = index.entries.clone();
                    merged.extend(
                        entries
                            .into_iter()
                            .filter(|e| e.offset >= index.indexed_until),
                    );
                    index = TimeIndex::from_snapshot(merged, indexed_until, indexed_bytes);
                }
            }
        }
    }

    // Data may have been trimmed past the recorded start, and unconfirmed index entries may
    // point past the recovered end.
    let data_info = streams.describe(data_stream).await?;
    log_start = log_start.max(data_info.start_offset).min(leo);
    index.truncate(leo);
    index.flushed = index.entries.len();

    // Index the data the meta stream had not covered yet (batch headers only).
    let mut offset = index.indexed_until.max(log_start);
    if index.indexed_until < log_start {
        index.indexed_until = log_start;
    }
    while offset < leo {
        let read = streams.read(data_stream, offset, 4 << 20).await?;
        if read.batches.is_empty() {
            break;
        }
        for stored in read.batches {
            let header = batch::parse_header(&stored.payload)
                .map_err(|e| RpcError::new(protocol::ErrorCode::StorageError, e.to_string()))?;
            index.on_batch(
                stored.offset,
                stored.count,
                header.max_timestamp,
                stored.payload.len(),
            );
            offset = stored.offset + stored.count as u64;
        }
    }
    Ok(Opened {
        data,
        meta,
        log_start,
        epochs,
        index,
        meta_records_since_snapshot: since_snapshot,
    })
}
