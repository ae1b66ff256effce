//! Rebuilding a partition when it opens: replay its meta stream (the latest snapshot, then
//! log-start moves, leader epochs and time-index pieces after it), then index whatever data
//! the meta stream had not indexed yet (batch headers only). Runs before the partition serves
//! anything; it reads, it never writes.

use protocol::partition_meta::MetaRecord;
use protocol::{ErrorCode, RpcError};

use super::state::{EpochHistory, TimeIndex};
use crate::batch;
use crate::owner::Opened;

pub struct Replayed {
    pub log_start: u64,
    pub epochs: EpochHistory,
    pub index: TimeIndex,
    /// Meta records after the last snapshot (drives the next one).
    pub meta_records_since_snapshot: usize,
}

pub async fn replay(opened: &Opened) -> Result<Replayed, RpcError> {
    let leo = opened.data.next_offset();
    let mut log_start = 0u64;
    let mut epochs = EpochHistory::default();
    let mut index = TimeIndex::default();
    let mut since_snapshot = 0;
    let mut meta = opened.scan_meta().await?;
    while let Some(batch) = meta.next().await? {
        let record: MetaRecord = match protocol::decode(&batch.payload) {
            Ok(record) => record,
            Err(e) => {
                // A record this version cannot read: skip it rather than refuse to serve.
                tracing::warn!(offset = batch.offset, "skipping meta record: {e}");
                continue;
            }
        };
        since_snapshot += 1;
        match record {
            MetaRecord::Snapshot(s) => {
                log_start = s.log_start;
                epochs.epochs = s.epochs;
                index = TimeIndex::from_snapshot(s.time_index, s.indexed_until, s.indexed_bytes);
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

    // Data may have been trimmed past the recorded start, and unconfirmed index entries may
    // point past the recovered end.
    log_start = log_start.max(opened.data_start().await?).min(leo);
    index.truncate(leo);
    index.flushed = index.entries.len();

    // Index the data the meta stream had not covered yet (batch headers only).
    if index.indexed_until < log_start {
        index.indexed_until = log_start;
    }
    let mut data = opened.scan_data(index.indexed_until);
    while let Some(stored) = data.next().await? {
        let header = batch::parse_header(&stored.payload)
            .map_err(|e| RpcError::new(ErrorCode::StorageError, e.to_string()))?;
        index.on_batch(
            stored.offset,
            stored.count,
            header.max_timestamp,
            stored.payload.len(),
        );
    }
    Ok(Replayed {
        log_start,
        epochs,
        index,
        meta_records_since_snapshot: since_snapshot,
    })
}
