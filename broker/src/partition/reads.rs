//! What a partition answers about its data: reads (a [`Scan`] over the tail cache, then the
//! stream, up to the high watermark), waits for data past an offset, offset lookups by time
//! (ListOffsets) and by leader epoch (OffsetForLeaderEpoch). The partition only decides what
//! is readable; the bytes are read by whoever holds the scan, off the actor.

use kafka_protocol::error::ResponseError;
use protocol::{ErrorCode, RpcError};

use super::PartitionActor;
use crate::batch;
use crate::owner::request;
use crate::read::Scan;

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
    fn scan(&self, offset: u64, max_bytes: usize) -> Scan {
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
            -3 => match p.time_index.max_timestamp_below(p.hw) {
                Some((offset, ts)) if offset >= p.log_start => Some((offset, ts)),
                _ => None,
            },
            t if t < 0 => {
                let _ = msg.reply.send(Err(ResponseError::UnsupportedVersion));
                return;
            }
            t => p.time_index.scan_start(t, p.log_start).map(|o| (o, t)),
        };
        let Some((from, target)) = scan_from else {
            let _ = msg.reply.send(found(-1, -1));
            return;
        };
        let scan = self.scan(from, usize::MAX);
        let reply = msg.reply;
        self.after(ctx, find_timestamp(scan, target), move |act, _, result| {
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

/// The first record with a timestamp `>= target` in the scanned batches.
async fn find_timestamp(mut scan: Scan, target: i64) -> Result<Option<(u64, i64)>, RpcError> {
    while let Some(stored) = scan.next().await? {
        let header = batch::parse_header(&stored.payload)
            .map_err(|e| RpcError::new(ErrorCode::StorageError, e.to_string()))?;
        let base = header.base_offset.max(0) as u64;
        if header.max_timestamp < target {
            continue;
        }
        if header.is_log_append_time() {
            return Ok(Some((base, header.max_timestamp)));
        }
        let found = batch::walk_records(&stored.payload, &header, |r| r.timestamp >= target)
            .map_err(|e| RpcError::new(ErrorCode::StorageError, format!("batch at {base}: {e}")))?;
        if let Some(record) = found {
            return Ok(Some((record.offset.max(0) as u64, record.timestamp)));
        }
    }
    Ok(None)
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
