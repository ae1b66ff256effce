//! Produce into one partition: idempotent-sequence checks, offsets assigned and written into
//! each batch, the append to the data stream, and the answer once the stream confirms it.
//! Validation of the batches' framing happens before (in `crate::batch`, by the handler).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use protocol::ErrorCode;

use super::state::SequenceCheck;
use super::PartitionActor;
use crate::batch::{self, BatchHeader};
use crate::owner::{confirm_all, request, Confirmation};

/// Unconfirmed bytes a partition holds before it refuses produce requests (retriably).
const MAX_UNCONFIRMED_BYTES: u64 = 64 * 1024 * 1024;

/// Where an acknowledged produce landed.
#[derive(Debug, Clone, Copy)]
pub struct Produced {
    pub base_offset: u64,
    /// The broker's time written into the batches (`LogAppendTime` topics), else None.
    pub log_append_time: Option<i64>,
    pub log_start: u64,
}

pub type ProduceOutcome = Result<Produced, ResponseError>;

request! {
    /// Append validated batches. Answered when they are confirmed (acks=1/all) or failed.
    pub struct Produce {
        pub batches: Vec<(BatchHeader, Bytes)>,
        /// The request's span: the stream appends (and the range servers' work) join its trace.
        pub span: tracing::Span,
    } -> ProduceOutcome;

    fn handle(self: &mut PartitionActor, msg, ctx) {
        match self.produce(msg.batches, &msg.span) {
            Ok(Appended::Now(produced)) => {
                let _ = msg.reply.send(Ok(produced));
            }
            Ok(Appended::WhenConfirmed(end, produced)) => {
                self.state
                    .parked_duplicates
                    .push((end, produced, msg.reply));
            }
            Ok(Appended::Appending(end, produced, confirmed)) => {
                let reply = msg.reply;
                self.after(ctx, confirmed, move |act, ctx, result| match result {
                    Ok(()) => {
                        act.state.advance_hw(end);
                        let produced = Produced {
                            log_start: act.state.log_start,
                            ..produced
                        };
                        let _ = reply.send(Ok(produced));
                    }
                    Err(e) => {
                        let error = match e.code {
                            // Not stored (the new owner's seal ends before it).
                            ErrorCode::Fenced => ResponseError::NotLeaderOrFollower,
                            // Maybe stored: what Kafka answers when it cannot tell.
                            ErrorCode::Timeout => ResponseError::RequestTimedOut,
                            _ => ResponseError::KafkaStorageError,
                        };
                        let _ = reply.send(Err(error));
                        act.fail(ctx, &e);
                    }
                });
            }
            Err(error) => {
                let _ = msg.reply.send(Err(error));
            }
        }
    }
}

/// What became of a produce request.
enum Appended {
    /// A retry of batches already confirmed.
    Now(Produced),
    /// A retry of batches still in flight: answered once the high watermark reaches the end.
    WhenConfirmed(u64, Produced),
    /// Appended up to the end; answered when the stream confirms.
    Appending(u64, Produced, Confirmation),
}

impl PartitionActor {
    fn produce(
        &mut self,
        batches: Vec<(BatchHeader, Bytes)>,
        span: &tracing::Span,
    ) -> Result<Appended, ResponseError> {
        if !self.is_active() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let config = self
            .config()
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        // Idempotence: check every batch before appending any.
        let mut duplicate = None;
        for (header, _) in &batches {
            match self.state.producers.check(header) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(offset) => {
                    duplicate = Some((offset, offset + header.count() as u64));
                }
                SequenceCheck::Reject(error) => return Err(error),
            }
        }
        if let Some((offset, end)) = duplicate {
            if batches.len() > 1 {
                // A producer resends whole requests; a request mixing old and new batches of
                // one partition is not one we can answer truthfully.
                return Err(ResponseError::InvalidRequest);
            }
            let produced = Produced {
                base_offset: offset,
                log_append_time: None,
                log_start: self.state.log_start,
            };
            // A retry of a batch still in flight is answered when the original is confirmed,
            // never before (if the original fails, the partition stops and the retry gets a
            // retriable error).
            return Ok(if end <= self.state.hw {
                Appended::Now(produced)
            } else {
                Appended::WhenConfirmed(end, produced)
            });
        }
        let log_append_time = config.log_append_time.then(crate::now_ms);
        let leader_epoch = self.leader_epoch();
        let data = self
            .data
            .as_mut()
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        if data.unconfirmed_bytes() > MAX_UNCONFIRMED_BYTES || data.is_stalled() {
            // (Stalled: the range servers' WALs are full until offload frees space.)
            // The stream is not confirming (replicas or PD slow or down): push back with a
            // retriable error instead of queueing without bound.
            return Err(ResponseError::NotEnoughReplicas);
        }
        let base_offset = data.next_offset();
        // This partition's part of the request: the stream appends (and so the range
        // servers' spans) are its children.
        let records_total: u64 = batches.iter().map(|(h, _)| u64::from(h.count())).sum();
        let send = tracing::debug_span!(
            parent: span,
            "send",
            otel.name = %format!("send {}", self.key.0),
            "messaging.system" = "kafka",
            "messaging.operation.type" = "send",
            "messaging.destination.name" = %self.key.0,
            "messaging.destination.partition.id" = self.key.1,
            "messaging.batch.message_count" = records_total,
            "messaging.kafka.offset" = base_offset,
        );
        let _entered = send.enter();
        let mut appends = Vec::with_capacity(batches.len());
        let mut end = base_offset;
        let mut stored_bytes = 0u64;
        let mut records = 0u64;
        let state = &mut self.state;
        let now = crate::now_ms();
        for (header, bytes) in &batches {
            let offset = data.next_offset();
            let stored = batch::rewrite(bytes, offset, leader_epoch, log_append_time);
            let count = header.count();
            appends.push(data.append(stored.clone(), count));
            let max_timestamp = log_append_time.unwrap_or(header.max_timestamp);
            state
                .time_index
                .on_batch(offset, count, max_timestamp, stored.len());
            state.producers.record(header, offset, now);
            self.broker
                .metrics
                .produced_bytes
                .inc_by(stored.len() as u64);
            self.broker.metrics.produced_batches.inc();
            records = records.saturating_add(u64::from(count));
            stored_bytes += stored.len() as u64;
            state.cache.push(offset, count, stored);
            end = offset + count as u64;
        }
        self.broker
            .loads
            .produced(&self.key.0, self.key.1, stored_bytes);
        self.broker
            .metrics
            .partition
            .produced(&self.metric_labels(), stored_bytes, records);
        let confirmed = confirm_all(appends);
        let produced = Produced {
            base_offset,
            log_append_time,
            log_start: self.state.log_start,
        };
        Ok(Appended::Appending(end, produced, confirmed))
    }
}
