//! One actor per partition this broker owns (DESIGN.md §4–5).
//!
//! It is the single writer of the partition's data stream: it assigns offsets, rewrites each
//! batch's base offset and leader epoch, appends, and advances the high watermark as the
//! stream confirms. It serves reads from its tail cache (or says where in the stream to read),
//! parks long-polling fetches until data arrives, answers offset lookups from its time index,
//! enforces retention and DeleteRecords by trimming the stream, and records what a later owner
//! must know (log start, leader epochs, time index) in the meta stream. It never touches the
//! local disk. While it opens, its mailbox waits, so early requests are served once it is
//! ready; if its streams fail or it is fenced, it stops and the metadata loop decides again.

pub mod open;
pub mod state;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use protocol::partition_meta::MetaRecord;
use protocol::{ErrorCode, RpcError};
use stream_client::{AppendFuture, StreamWriter};
use tokio::sync::oneshot;

use crate::batch::{self, BatchHeader};
use crate::context::SharedBroker;
use crate::topic_config::TopicConfig;
use state::{EpochHistory, Producers, SequenceCheck, TailCache, TimeIndex};

/// Meta records after which the partition writes a snapshot and trims its meta stream.
const SNAPSHOT_EVERY: usize = 256;
const INDEX_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Unconfirmed bytes a partition holds before it refuses produce requests (retriably).
const MAX_UNCONFIRMED_BYTES: u64 = 64 * 1024 * 1024;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct PartitionActor {
    broker: SharedBroker,
    topic: String,
    index: u32,
    leader_epoch: u32,
    data_stream: u64,
    meta_stream: u64,
    data: Option<StreamWriter>,
    meta: Option<StreamWriter>,
    ready: bool,
    log_start: u64,
    /// Everything below is confirmed and readable.
    hw: u64,
    cache: TailCache,
    time_index: TimeIndex,
    epochs: EpochHistory,
    producers: Producers,
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Retried idempotent batches waiting for their original to be confirmed: `(end, answer)`.
    parked_duplicates: Vec<(u64, ProduceOutcome, oneshot::Sender<ProduceOutcome>)>,
    meta_records_since_snapshot: usize,
}

impl PartitionActor {
    pub fn new(
        broker: SharedBroker,
        topic: String,
        index: u32,
        leader_epoch: u32,
        data_stream: u64,
        meta_stream: u64,
    ) -> Self {
        let cache = TailCache::new(broker.config.partition_cache_bytes);
        PartitionActor {
            broker,
            topic,
            index,
            leader_epoch,
            data_stream,
            meta_stream,
            data: None,
            meta: None,
            ready: false,
            log_start: 0,
            hw: 0,
            cache,
            time_index: TimeIndex::default(),
            epochs: EpochHistory::default(),
            producers: Producers::default(),
            waiters: Vec::new(),
            parked_duplicates: Vec::new(),
            meta_records_since_snapshot: 0,
        }
    }

    fn config(&self) -> Option<TopicConfig> {
        self.broker
            .snapshot()
            .topics
            .get(&self.topic)
            .map(TopicConfig::of)
    }

    /// Stops serving after a stream failure; the metadata loop restarts the partition if PD
    /// still assigns it here.
    fn fail(&mut self, ctx: &mut Context<Self>, error: &RpcError) {
        if !self.ready {
            return;
        }
        tracing::warn!(topic = %self.topic, partition = self.index, "partition stops: {error}");
        self.ready = false;
        self.waiters.clear();
        let key = (self.topic.clone(), self.index);
        let mut partitions = self.broker.partitions.borrow_mut();
        if partitions
            .get(&key)
            .is_some_and(|h| h.addr == ctx.address())
        {
            partitions.remove(&key);
        }
        ctx.stop();
    }

    fn advance_hw(&mut self, end: u64) {
        if end <= self.hw {
            return;
        }
        self.hw = end;
        let hw = self.hw;
        let parked = std::mem::take(&mut self.parked_duplicates);
        for (end, outcome, reply) in parked {
            if end <= hw {
                let _ = reply.send(outcome);
            } else {
                self.parked_duplicates.push((end, outcome, reply));
            }
        }
        let waiters = std::mem::take(&mut self.waiters);
        for (offset, tx) in waiters {
            if offset < hw {
                let _ = tx.send(());
            } else if !tx.is_closed() {
                self.waiters.push((offset, tx));
            }
        }
    }

    /// Appends a meta record; a failure stops the partition.
    fn append_meta(
        &mut self,
        ctx: &mut Context<Self>,
        record: &MetaRecord,
    ) -> Option<(u64, AppendFuture)> {
        let meta = self.meta.as_mut()?;
        let body = match protocol::encode(record) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("cannot encode meta record: {e}");
                return None;
            }
        };
        let offset = meta.next_offset();
        let fut = meta.append(Bytes::from(body), 1);
        self.meta_records_since_snapshot += 1;
        let _ = ctx;
        Some((offset, fut))
    }

    /// Writes a meta record and stops the partition if it cannot be confirmed.
    fn write_meta(&mut self, ctx: &mut Context<Self>, record: MetaRecord) {
        if let Some((_, fut)) = self.append_meta(ctx, &record) {
            ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
                if let Err(e) = result {
                    act.fail(ctx, &e);
                }
            }));
        }
        if self.meta_records_since_snapshot >= SNAPSHOT_EVERY {
            self.write_snapshot(ctx);
        }
    }

    /// Writes the whole replayable state, then trims the meta stream to it.
    fn write_snapshot(&mut self, ctx: &mut Context<Self>) {
        let snapshot = MetaRecord::Snapshot(state::snapshot(
            self.log_start,
            &self.epochs,
            &self.time_index,
        ));
        self.time_index.flushed = self.time_index.entries.len();
        if let Some((offset, fut)) = self.append_meta(ctx, &snapshot) {
            self.meta_records_since_snapshot = 0;
            let streams = self.broker.streams.clone();
            let meta_stream = self.meta_stream;
            ctx.spawn(
                async move {
                    fut.await?;
                    streams.trim(meta_stream, offset).await.map(|_| ())
                }
                .into_actor(self)
                .map(|result, act, ctx| {
                    if let Err(e) = result {
                        act.fail(ctx, &e);
                    }
                }),
            );
        }
    }

    fn flush_time_index(&mut self, ctx: &mut Context<Self>) {
        if !self.ready || self.time_index.unflushed().is_empty() {
            return;
        }
        let record = MetaRecord::TimeIndex {
            entries: self.time_index.unflushed().to_vec(),
            indexed_until: self.time_index.indexed_until,
            indexed_bytes: self.time_index.position,
        };
        self.time_index.flushed = self.time_index.entries.len();
        self.write_meta(ctx, record);
    }

    /// Moves the log start to `offset` (never past the high watermark): trims the data stream
    /// and records the new start. Resolves once the record is confirmed.
    fn move_log_start(
        &mut self,
        ctx: &mut Context<Self>,
        offset: u64,
    ) -> LocalBoxFuture<'static, Result<u64, RpcError>> {
        let offset = offset.min(self.hw);
        if offset <= self.log_start {
            let start = self.log_start;
            return Box::pin(async move { Ok(start) });
        }
        tracing::info!(topic = %self.topic, partition = self.index, from = self.log_start, to = offset, "moving log start");
        self.log_start = offset;
        self.cache.trim(offset);
        self.time_index.trim(offset);
        let appended = self.append_meta(ctx, &MetaRecord::LogStart(offset));
        let streams = self.broker.streams.clone();
        let data_stream = self.data_stream;
        Box::pin(async move {
            if let Some((_, fut)) = appended {
                fut.await?;
            }
            streams.trim(data_stream, offset).await?;
            Ok(offset)
        })
    }

    fn enforce_retention(&mut self, ctx: &mut Context<Self>) {
        if !self.ready {
            return;
        }
        let Some(config) = self.config() else { return };
        if !config.delete_policy {
            return;
        }
        let mut target = self.log_start;
        if config.retention_ms >= 0 {
            let cutoff = now_ms().saturating_sub(config.retention_ms);
            target = target.max(self.time_index.retention_by_time(cutoff, self.hw));
        }
        if config.retention_bytes >= 0 {
            target = target.max(
                self.time_index
                    .retention_by_bytes(config.retention_bytes as u64, self.log_start),
            );
        }
        if target > self.log_start {
            let fut = self.move_log_start(ctx, target);
            ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
                if let Err(e) = result {
                    act.fail(ctx, &e);
                }
            }));
        }
    }
}

impl Actor for PartitionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(usize::MAX);
        let streams = self.broker.streams.clone();
        let opening = open::open(
            streams,
            self.data_stream,
            self.meta_stream,
            self.leader_epoch,
        );
        // `wait` holds the mailbox until the partition is open: requests queue, then are served.
        ctx.wait(opening.into_actor(self).map(|result, act, ctx| match result {
            Ok(opened) => {
                act.hw = opened.data.next_offset();
                act.log_start = opened.log_start;
                act.epochs = opened.epochs;
                act.time_index = opened.index;
                act.meta_records_since_snapshot = opened.meta_records_since_snapshot;
                act.data = Some(opened.data);
                act.meta = Some(opened.meta);
                act.ready = true;
                if act.epochs.latest().is_none_or(|e| e < act.leader_epoch) {
                    act.epochs.epochs.push((act.leader_epoch, act.hw));
                    let record = MetaRecord::LeaderEpoch {
                        epoch: act.leader_epoch,
                        start_offset: act.hw,
                    };
                    act.write_meta(ctx, record);
                }
                tracing::info!(
                    topic = %act.topic, partition = act.index, leader_epoch = act.leader_epoch,
                    log_start = act.log_start, high_watermark = act.hw, "partition open"
                );
                ctx.run_interval(INDEX_FLUSH_INTERVAL, |act, ctx| act.flush_time_index(ctx));
                let every = act.broker.config.retention_check;
                ctx.run_interval(every, |act, ctx| act.enforce_retention(ctx));
            }
            Err(e) => {
                tracing::warn!(topic = %act.topic, partition = act.index, "cannot open partition: {e}");
                act.ready = true; // let `fail` run its cleanup
                act.fail(ctx, &e);
            }
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.waiters.clear();
    }
}

fn not_leader() -> i16 {
    ResponseError::NotLeaderOrFollower.code()
}

/// Stop serving: flush, close the streams gracefully, then stop the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for PartitionActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        if !self.ready {
            ctx.stop();
            return;
        }
        self.flush_time_index(ctx);
        self.ready = false;
        self.waiters.clear();
        let closing = open::close_streams(self.data.take(), self.meta.take());
        ctx.wait(closing.into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ProduceOutcome {
    pub error: i16,
    pub base_offset: i64,
    pub log_append_time: i64,
    pub log_start: i64,
}

impl ProduceOutcome {
    fn error(code: i16) -> Self {
        ProduceOutcome {
            error: code,
            base_offset: -1,
            log_append_time: -1,
            log_start: -1,
        }
    }
}

/// Append validated batches. Answered when they are confirmed (acks=1/all) or failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Produce {
    pub batches: Vec<(BatchHeader, Bytes)>,
    pub reply: oneshot::Sender<ProduceOutcome>,
    /// The request's span: the stream appends (and the range servers' work) join its trace.
    pub span: tracing::Span,
}

impl Handler<Produce> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: Produce, ctx: &mut Context<Self>) {
        if !self.ready {
            let _ = msg.reply.send(ProduceOutcome::error(not_leader()));
            return;
        }
        let Some(config) = self.config() else {
            let _ = msg.reply.send(ProduceOutcome::error(
                ResponseError::UnknownTopicOrPartition.code(),
            ));
            return;
        };
        // Idempotence: check every batch before appending any.
        let mut duplicate = None;
        for (header, _) in &msg.batches {
            match self.producers.check(header) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(offset) => {
                    duplicate = Some((offset, offset + header.count() as u64));
                }
                SequenceCheck::Reject(error) => {
                    let _ = msg.reply.send(ProduceOutcome::error(error.code()));
                    return;
                }
            }
        }
        if let Some((offset, end)) = duplicate {
            if msg.batches.len() > 1 {
                // A producer resends whole requests; a request mixing old and new batches of
                // one partition is not one we can answer truthfully.
                let _ = msg
                    .reply
                    .send(ProduceOutcome::error(ResponseError::InvalidRequest.code()));
                return;
            }
            let outcome = ProduceOutcome {
                error: 0,
                base_offset: offset as i64,
                log_append_time: -1,
                log_start: self.log_start as i64,
            };
            // A retry of a batch still in flight is answered when the original is confirmed,
            // never before (if the original fails, the partition stops and the retry gets a
            // retriable error).
            if end <= self.hw {
                let _ = msg.reply.send(outcome);
            } else {
                self.parked_duplicates.push((end, outcome, msg.reply));
            }
            return;
        }
        let log_append_time = config.log_append_time.then(now_ms);
        let Some(data) = self.data.as_mut() else {
            let _ = msg.reply.send(ProduceOutcome::error(not_leader()));
            return;
        };
        if data.unconfirmed_bytes() > MAX_UNCONFIRMED_BYTES {
            // The stream is not confirming (replicas or PD slow or down): push back with a
            // retriable error instead of queueing without bound.
            let _ = msg.reply.send(ProduceOutcome::error(
                ResponseError::NotEnoughReplicas.code(),
            ));
            return;
        }
        let base_offset = data.next_offset();
        let _entered = msg.span.enter();
        let mut appends = Vec::with_capacity(msg.batches.len());
        let mut end = base_offset;
        for (header, bytes) in &msg.batches {
            let offset = data.next_offset();
            let stored = batch::rewrite(bytes, offset, self.leader_epoch, log_append_time);
            let count = header.count();
            appends.push(data.append(stored.clone(), count));
            let max_timestamp = log_append_time.unwrap_or(header.max_timestamp);
            self.time_index
                .on_batch(offset, count, max_timestamp, stored.len());
            self.cache.push(offset, count, stored.clone());
            self.producers.record(header, offset);
            self.broker
                .metrics
                .produced_bytes
                .inc_by(stored.len() as u64);
            self.broker.metrics.produced_batches.inc();
            end = offset + count as u64;
        }
        let reply = msg.reply;
        ctx.spawn(
            async move {
                for append in appends {
                    append.await?;
                }
                Ok::<_, RpcError>(())
            }
            .into_actor(self)
            .map(move |result, act, ctx| match result {
                Ok(()) => {
                    act.advance_hw(end);
                    let _ = reply.send(ProduceOutcome {
                        error: 0,
                        base_offset: base_offset as i64,
                        log_append_time: log_append_time.unwrap_or(-1),
                        log_start: act.log_start as i64,
                    });
                }
                Err(e) => {
                    let code = if e.code == ErrorCode::Fenced {
                        not_leader()
                    } else {
                        ResponseError::KafkaStorageError.code()
                    };
                    let _ = reply.send(ProduceOutcome::error(code));
                    act.fail(ctx, &e);
                }
            }),
        );
    }
}

/// What a fetch of one partition gets now.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    pub error: i16,
    pub high_watermark: i64,
    pub log_start: i64,
    /// Batches served from the tail cache.
    pub batches: Vec<Bytes>,
    /// When the cache does not reach back far enough: read `[offset, end)` of this stream.
    pub from_stream: Option<(u64, u64, u64)>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Read {
    pub offset: i64,
    pub max_bytes: usize,
    pub reply: oneshot::Sender<ReadOutcome>,
}

impl Handler<Read> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: Read, _ctx: &mut Context<Self>) {
        let mut outcome = ReadOutcome {
            high_watermark: self.hw as i64,
            log_start: self.log_start as i64,
            ..Default::default()
        };
        if !self.ready {
            outcome.error = not_leader();
        } else if msg.offset < self.log_start as i64 || msg.offset > self.hw as i64 {
            outcome.error = ResponseError::OffsetOutOfRange.code();
        } else if (msg.offset as u64) < self.hw {
            let offset = msg.offset as u64;
            match self.cache.read(offset, self.hw, msg.max_bytes) {
                Some(batches) => outcome.batches = batches,
                None => outcome.from_stream = Some((self.data_stream, offset, self.hw)),
            }
        }
        let _ = msg.reply.send(outcome);
    }
}

/// Resolves (the sender fires or is dropped) once data past `offset` is readable, or the
/// partition stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WaitForData {
    pub offset: i64,
    pub reply: oneshot::Sender<()>,
}

impl Handler<WaitForData> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: WaitForData, _ctx: &mut Context<Self>) {
        if !self.ready || msg.offset < 0 || (msg.offset as u64) < self.hw {
            let _ = msg.reply.send(());
            return;
        }
        // Fetches that timed out dropped their receivers: forget them.
        self.waiters.retain(|(_, tx)| !tx.is_closed());
        self.waiters.push((msg.offset as u64, msg.reply));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct OffsetOutcome {
    pub error: i16,
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

/// ListOffsets for one partition: -2 earliest, -1 latest, -3 max timestamp, else the first
/// offset whose record timestamp is at or after the given one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ListOffset {
    pub timestamp: i64,
    pub reply: oneshot::Sender<OffsetOutcome>,
}

impl Handler<ListOffset> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: ListOffset, ctx: &mut Context<Self>) {
        let epoch = self.leader_epoch as i32;
        let answer = move |offset: i64, timestamp: i64| OffsetOutcome {
            error: 0,
            offset,
            timestamp,
            leader_epoch: epoch,
        };
        if !self.ready {
            let _ = msg.reply.send(OffsetOutcome {
                error: not_leader(),
                offset: -1,
                timestamp: -1,
                leader_epoch: -1,
            });
            return;
        }
        let scan_from = match msg.timestamp {
            -2 | -4 => {
                let _ = msg.reply.send(answer(self.log_start as i64, -1));
                return;
            }
            -1 => {
                let _ = msg.reply.send(answer(self.hw as i64, -1));
                return;
            }
            -3 => match self.time_index.max_timestamp_below(self.hw) {
                Some((offset, ts)) if offset >= self.log_start => Some((offset, ts)),
                _ => None,
            },
            t if t < 0 => {
                let _ = msg.reply.send(OffsetOutcome {
                    error: ResponseError::UnsupportedVersion.code(),
                    offset: -1,
                    timestamp: -1,
                    leader_epoch: -1,
                });
                return;
            }
            t => self
                .time_index
                .scan_start(t, self.log_start)
                .map(|o| (o, t)),
        };
        let Some((from, target)) = scan_from else {
            let _ = msg.reply.send(answer(-1, -1));
            return;
        };
        let cached = self.cache.read(from, self.hw, usize::MAX);
        let streams = self.broker.streams.clone();
        let (data_stream, hw) = (self.data_stream, self.hw);
        let reply = msg.reply;
        ctx.spawn(
            async move {
                find_timestamp(streams, data_stream, cached, from, hw, target).await
            }
            .into_actor(self)
            .map(move |found, act, _| {
                let outcome = match found {
                    Ok(Some((offset, ts))) => answer(offset as i64, ts),
                    Ok(None) => answer(-1, -1),
                    Err(e) => {
                        tracing::warn!(topic = %act.topic, partition = act.index, "timestamp lookup failed: {e}");
                        OffsetOutcome {
                            error: ResponseError::KafkaStorageError.code(),
                            offset: -1,
                            timestamp: -1,
                            leader_epoch: -1,
                        }
                    }
                };
                let _ = reply.send(outcome);
            }),
        );
    }
}

/// Scans batches from `from` for the first record with a timestamp `>= target`.
async fn find_timestamp(
    streams: stream_client::StreamClient,
    data_stream: u64,
    cached: Option<Vec<Bytes>>,
    from: u64,
    hw: u64,
    target: i64,
) -> Result<Option<(u64, i64)>, RpcError> {
    let mut offset = from;
    let mut cached = cached.map(|c| c.into_iter());
    while offset < hw {
        let batches: Vec<Bytes> = match cached.as_mut() {
            Some(iter) => {
                let next: Vec<Bytes> = iter.by_ref().take(64).collect();
                if next.is_empty() {
                    return Ok(None);
                }
                next
            }
            None => {
                let read = streams.read(data_stream, offset, 1 << 20).await?;
                if read.batches.is_empty() {
                    return Ok(None);
                }
                read.batches.into_iter().map(|b| b.payload).collect()
            }
        };
        for stored in batches {
            let header = batch::parse_header(&stored)
                .map_err(|e| RpcError::new(ErrorCode::StorageError, e.to_string()))?;
            let base = header.base_offset.max(0) as u64;
            offset = base + header.count() as u64;
            if header.max_timestamp < target {
                continue;
            }
            if header.is_log_append_time() {
                return Ok(Some((base, header.max_timestamp)));
            }
            let mut buf = stored.clone();
            let records = RecordBatchDecoder::decode(&mut buf).map_err(|e| {
                RpcError::new(
                    ErrorCode::StorageError,
                    format!("decode batch at {base}: {e}"),
                )
            })?;
            if let Some(record) = records.records.iter().find(|r| r.timestamp >= target) {
                return Ok(Some((record.offset.max(0) as u64, record.timestamp)));
            }
        }
    }
    Ok(None)
}

/// OffsetForLeaderEpoch for one partition: `(error, epoch, end offset)`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EpochEnd {
    pub leader_epoch: i32,
    pub reply: oneshot::Sender<(i16, i32, i64)>,
}

impl Handler<EpochEnd> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: EpochEnd, _ctx: &mut Context<Self>) {
        let answer = if !self.ready {
            (not_leader(), -1, -1)
        } else {
            match self.epochs.end_offset(msg.leader_epoch, self.hw) {
                Some((epoch, end)) => (0, epoch, end as i64),
                None => (0, -1, -1),
            }
        };
        let _ = msg.reply.send(answer);
    }
}

/// DeleteRecords for one partition: `(error, low watermark)`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeleteRecords {
    /// -1 means the high watermark.
    pub offset: i64,
    pub reply: oneshot::Sender<(i16, i64)>,
}

impl Handler<DeleteRecords> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: DeleteRecords, ctx: &mut Context<Self>) {
        if !self.ready {
            let _ = msg.reply.send((not_leader(), -1));
            return;
        }
        let target = if msg.offset == -1 {
            self.hw as i64
        } else {
            msg.offset
        };
        if target < 0 || target > self.hw as i64 {
            let _ = msg.reply.send((ResponseError::OffsetOutOfRange.code(), -1));
            return;
        }
        let fut = self.move_log_start(ctx, target as u64);
        let reply = msg.reply;
        ctx.spawn(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(start) => {
                        let _ = reply.send((0, start as i64));
                    }
                    Err(e) => {
                        let _ = reply.send((ResponseError::KafkaStorageError.code(), -1));
                        act.fail(ctx, &e);
                    }
                }),
        );
    }
}
