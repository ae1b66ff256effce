//! What a partition answers about its data: reads (a [`Scan`] over the tail cache, then the
//! stream, up to the high watermark), waits for data past an offset, offset lookups by time
//! (ListOffsets) and by leader epoch (OffsetForLeaderEpoch). The partition only decides what
//! is readable; the bytes are read by whoever holds the scan, off the actor.

use kafka_protocol::error::ResponseError;
use protocol::{ErrorCode, RpcError};

use super::PartitionActor;
use futures::FutureExt;

use crate::batch::{self, BatchHeader};
use crate::owner::request;
use crate::read::{Scan, StoredBatch};

/// What a read of one partition gets.
pub struct ReadOutcome {
    pub high_watermark: u64,
    pub log_start: u64,
    /// The batches from the offset asked for up to the high watermark (none at the high
    /// watermark itself), or OFFSET_OUT_OF_RANGE.
    pub scan: Result<Scan, ResponseError>,
}

request! {
    /// Reads from `offset`: answered at once with a scan of what is readable.
    pub struct Read {
        pub offset: i64,
        /// Tail-cache bytes to hand over (the reader stops there anyway).
        pub max_bytes: usize,
    } -> Result<ReadOutcome, ResponseError>;

    fn handle(self: &mut PartitionActor, msg, _ctx) {
        let (log_start, hw) = (self.state.log_start, self.state.hw);
        let answer = if !self.is_active() {
            Err(ResponseError::NotLeaderOrFollower)
        } else {
            let readable = msg.offset >= log_start as i64 && msg.offset <= hw as i64;
            Ok(ReadOutcome {
                high_watermark: hw,
                log_start,
                scan: if readable {
                    Ok(self.scan(msg.offset as u64, msg.max_bytes))
                } else {
                    Err(ResponseError::OffsetOutOfRange)
                },
            })
        };
        let _ = msg.reply.send(answer);
    }
}

impl PartitionActor {
    /// The one read of this partition: from `offset` to the high watermark, the tail cache
    /// first (up to `max_bytes` of it) when it reaches back that far, then the data stream in
    /// reads of up to `max_bytes`.
    pub(super) fn scan(&self, offset: u64, max_bytes: usize) -> Scan {
        let p = &self.state;
        let client = self.broker.streams.clone();
        let stream = self.assignment.data_stream;
        match p.cache.read(offset, p.hw, max_bytes) {
            Some(cached) => {
                // The cache holds everything from `offset` on: if it stopped short of the
                // high watermark, the next batch does not fit in `max_bytes`, so the scan ends
                // there rather than ask a range server for it.
                let end = cached.last().map_or(p.hw, |b| b.end().min(p.hw));
                Scan::new(client, stream, offset, end, max_bytes).with_cached(cached)
            }
            None => Scan::new(client, stream, offset, p.hw, max_bytes),
        }
    }
}

request! {
    /// Resolves (the sender fires or is dropped) once data past `offset` is readable, or the
    /// partition stops.
    pub struct WaitForData { pub offset: i64 } -> ();

    fn handle(self: &mut PartitionActor, msg, _ctx) {
        if !self.is_active() || msg.offset < 0 || (msg.offset as u64) < self.state.hw {
            let _ = msg.reply.send(());
            return;
        }
        // Fetches that timed out dropped their receivers: forget them.
        let waiters = &mut self.state.waiters;
        waiters.retain(|(_, tx)| !tx.is_closed());
        waiters.push((msg.offset as u64, msg.reply));
    }
}

/// An offset found by ListOffsets (-1 offset and timestamp when there is none).
#[derive(Debug, Clone, Copy)]
pub struct OffsetFound {
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

request! {
    /// ListOffsets for one partition: -2 earliest, -1 latest, -3 max timestamp, else the first
    /// offset whose record timestamp is at or after the given one.
    pub struct ListOffset { pub timestamp: i64 } -> Result<OffsetFound, ResponseError>;

    fn handle(self: &mut PartitionActor, msg, ctx) {
        let leader_epoch = self.leader_epoch() as i32;
        let found = move |offset: i64, timestamp: i64| {
            Ok(OffsetFound {
                offset,
                timestamp,
                leader_epoch,
            })
        };
        if !self.is_active() {
            let _ = msg.reply.send(Err(ResponseError::NotLeaderOrFollower));
            return;
        }
        let p = &self.state;
        let scan_from = match msg.timestamp {
            -2 | -4 => {
                let _ = msg.reply.send(found(p.log_start as i64, -1));
                return;
            }
            -1 => {
                let _ = msg.reply.send(found(p.hw as i64, -1));
                return;
            }
            -3 => None,
            t if t < 0 => {
                let _ = msg.reply.send(Err(ResponseError::UnsupportedVersion));
                return;
            }
            t => Some(t),
        };
        let reply = msg.reply;
        let lookup = match scan_from {
            Some(target) => {
                let scan = self.scan(p.time_index.scan_start(target, p.log_start), SCAN_CHUNK);
                find_timestamp(scan, target).boxed_local()
            }
            None => {
                let from = p.time_index.max_timestamp_scan_start(p.hw, p.log_start);
                find_max_timestamp(self.scan(from, SCAN_CHUNK)).boxed_local()
            }
        };
        self.after(ctx, lookup, move |act, _, result| {
            let answer = match result {
                Ok(Some((offset, ts))) => found(offset as i64, ts),
                Ok(None) => found(-1, -1),
                Err(e) => {
                    tracing::warn!(topic = %act.key.0, partition = act.key.1, "timestamp lookup failed: {e}");
                    Err(ResponseError::KafkaStorageError)
                }
            };
            let _ = reply.send(answer);
        });
    }
}

/// Bytes a timestamp lookup reads from the stream at a time: the time index points within
/// [`super::state::INDEX_BYTES_STEP`] of the answer.
pub const SCAN_CHUNK: usize = 64 << 10;

fn storage_error(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(ErrorCode::StorageError, e.to_string())
}

/// Reads `scan` up to the first batch whose maximum timestamp is `>= target`: that batch and
/// its header, or None when the scan ended first; and the end of the last batch read (every
/// batch before it has all timestamps below `target`).
pub async fn first_batch_reaching(
    scan: &mut Scan,
    target: i64,
) -> Result<(Option<(StoredBatch, BatchHeader)>, Option<u64>), RpcError> {
    let mut read_to = None;
    while let Some(stored) = scan.next().await? {
        let header = batch::parse_header(&stored.payload).map_err(storage_error)?;
        if header.max_timestamp >= target {
            return Ok((Some((stored, header)), read_to));
        }
        read_to = Some(stored.end());
    }
    Ok((None, read_to))
}

/// The record holding the first timestamp `>= target` in `batch`.
fn record_reaching(
    stored: &StoredBatch,
    header: &BatchHeader,
    target: i64,
) -> Result<Option<(u64, i64)>, RpcError> {
    if header.is_log_append_time() {
        return Ok(Some((stored.offset, header.max_timestamp)));
    }
    let found = batch::walk_records(&stored.payload, header, |r| r.timestamp >= target)
        .map_err(|e| storage_error(format!("batch at {}: {e}", stored.offset)))?;
    Ok(found.map(|r| (r.offset.max(0) as u64, r.timestamp)))
}

/// The first record with a timestamp `>= target` in the scanned batches.
async fn find_timestamp(mut scan: Scan, target: i64) -> Result<Option<(u64, i64)>, RpcError> {
    loop {
        let (Some((stored, header)), _) = first_batch_reaching(&mut scan, target).await? else {
            return Ok(None);
        };
        // A batch's maximum is the producer's word; its records decide.
        if let Some(found) = record_reaching(&stored, &header, target)? {
            return Ok(Some(found));
        }
    }
}

/// The first record holding the largest timestamp of the scanned batches.
async fn find_max_timestamp(mut scan: Scan) -> Result<Option<(u64, i64)>, RpcError> {
    let mut best: Option<(StoredBatch, BatchHeader)> = None;
    while let Some(stored) = scan.next().await? {
        let header = batch::parse_header(&stored.payload).map_err(storage_error)?;
        if best
            .as_ref()
            .is_none_or(|(_, b)| header.max_timestamp > b.max_timestamp)
        {
            best = Some((stored, header));
        }
    }
    match best {
        Some((stored, header)) => record_reaching(&stored, &header, header.max_timestamp),
        None => Ok(None),
    }
}

/// Where a leader epoch ends, for OffsetForLeaderEpoch (-1 and -1 for an unknown epoch).
#[derive(Debug, Clone, Copy)]
pub struct EpochEndOffset {
    pub leader_epoch: i32,
    pub end_offset: i64,
}

request! {
    /// OffsetForLeaderEpoch for one partition.
    pub struct EpochEnd { pub leader_epoch: i32 } -> Result<EpochEndOffset, ResponseError>;

    fn handle(self: &mut PartitionActor, msg, _ctx) {
        let answer = if !self.is_active() {
            Err(ResponseError::NotLeaderOrFollower)
        } else {
            let (leader_epoch, end_offset) = self
                .state
                .epochs
                .end_offset(msg.leader_epoch, self.state.hw)
                .map_or((-1, -1), |(epoch, end)| (epoch, end as i64));
            Ok(EpochEndOffset {
                leader_epoch,
                end_offset,
            })
        };
        let _ = msg.reply.send(answer);
    }
}
