//! One actor per partition this broker owns: a [`StreamOwner`] over [`Partition`].
//!
//! It is the single writer of the partition's data stream: it assigns offsets, rewrites each
//! batch's base offset and leader epoch, appends, and advances the high watermark as the
//! stream confirms ([`produce`]). It serves reads through the one read path (tail cache, then
//! the stream), parks long-polling fetches until data arrives and answers offset lookups from
//! its time index ([`reads`]); it enforces retention and DeleteRecords by trimming the stream,
//! and records what a later owner must know (log start, leader epochs, time index) in the meta
//! stream, which [`replay`] reads back on open. It never touches the local disk. While it
//! opens, its mailbox waits, so early requests are served once it is ready; if its streams
//! fail or it is fenced, it stops and the metadata loop decides again.

pub mod produce;
pub mod reads;
pub mod replay;
pub mod state;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use protocol::partition_meta::MetaRecord;
use protocol::RpcError;
use tokio::sync::oneshot;

use crate::context::{Broker, SharedBroker};
use crate::metrics::PartitionLabels;
use crate::owner::{request, Confirmation, Opened, OwnedState, OwnerHandle, StreamOwner};
use crate::topic_config::TopicConfig;
use state::{EpochHistory, Producers, TailCache, TimeIndex};

pub use produce::{Produce, ProduceOutcome, Produced};
pub use reads::{
    EpochEnd, EpochEndOffset, ListOffset, OffsetFound, Read, ReadOutcome, WaitForData,
};

/// Meta records after which the partition writes a snapshot and trims its meta stream.
const SNAPSHOT_EVERY: usize = 256;
/// How often new time-index entries and changed producer states go to the meta stream.
const META_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// The partition actor.
pub type PartitionActor = StreamOwner<Partition>;

/// What one partition keeps in memory (rebuilt from its streams on open).
pub struct Partition {
    log_start: u64,
    /// Everything below is confirmed and readable.
    hw: u64,
    cache: TailCache,
    time_index: TimeIndex,
    epochs: EpochHistory,
    producers: Producers,
    /// Fetches parked until data past their offset is readable.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Retried idempotent batches waiting for their original to be confirmed: `(end, answer)`.
    parked_duplicates: Vec<(u64, Produced, oneshot::Sender<ProduceOutcome>)>,
    meta_records_since_snapshot: usize,
    /// A `retention.ms` scan is running (one at a time).
    retention_scan: bool,
}

impl Partition {
    fn new(cache_bytes: usize) -> Self {
        Partition {
            log_start: 0,
            hw: 0,
            cache: TailCache::new(cache_bytes),
            time_index: TimeIndex::default(),
            epochs: EpochHistory::default(),
            producers: Producers::default(),
            waiters: Vec::new(),
            parked_duplicates: Vec::new(),
            meta_records_since_snapshot: 0,
            retention_scan: false,
        }
    }

    /// Moves the high watermark to `end`: answers retried batches and wakes fetches it covers.
    fn advance_hw(&mut self, end: u64) {
        if end <= self.hw {
            return;
        }
        self.hw = end;
        let hw = self.hw;
        for (end, produced, reply) in std::mem::take(&mut self.parked_duplicates) {
            if end <= hw {
                let _ = reply.send(Ok(produced));
            } else {
                self.parked_duplicates.push((end, produced, reply));
            }
        }
        for (offset, tx) in std::mem::take(&mut self.waiters) {
            if offset < hw {
                let _ = tx.send(());
            } else if !tx.is_closed() {
                self.waiters.push((offset, tx));
            }
        }
    }
}

impl OwnedState for Partition {
    type Key = (String, u32);
    const KIND: &'static str = "partition";
    const HOLD_MAILBOX_WHILE_LOADING: bool = true;

    fn kafka_partition(key: &Self::Key) -> (String, u32) {
        key.clone()
    }

    fn table(broker: &Broker) -> &RefCell<HashMap<Self::Key, OwnerHandle<Self>>> {
        &broker.partitions
    }

    fn empty(broker: &SharedBroker, _key: &Self::Key) -> Self {
        Partition::new(broker.config.partition_cache_bytes)
    }

    async fn load(
        broker: SharedBroker,
        _key: Self::Key,
        opened: &Opened,
    ) -> Result<Self, RpcError> {
        let replayed = replay::replay(opened).await?;
        let mut partition = Partition::new(broker.config.partition_cache_bytes);
        partition.hw = opened.data.next_offset();
        partition.log_start = replayed.log_start;
        partition.epochs = replayed.epochs;
        partition.time_index = replayed.index;
        partition.producers = replayed.producers;
        partition.meta_records_since_snapshot = replayed.meta_records_since_snapshot;
        Ok(partition)
    }

    fn on_active(owner: &mut PartitionActor, ctx: &mut Context<PartitionActor>) {
        let (epoch, hw) = (owner.leader_epoch(), owner.state.hw);
        if owner.state.epochs.latest().is_none_or(|e| e < epoch) {
            owner.state.epochs.epochs.push((epoch, hw));
            owner.write_meta(
                ctx,
                MetaRecord::LeaderEpoch {
                    epoch,
                    start_offset: hw,
                },
            );
        }
        tracing::info!(
            topic = %owner.key.0, partition = owner.key.1, leader_epoch = epoch,
            log_start = owner.state.log_start, high_watermark = hw, "partition open"
        );
        owner.publish_offsets();
        ctx.run_interval(META_FLUSH_INTERVAL, |act, ctx| {
            act.flush_meta(ctx);
            act.publish_offsets();
        });
        let every = owner.broker.config.retention_check;
        ctx.run_interval(every, |act, ctx| act.enforce_retention(ctx));
    }

    fn before_close(owner: &mut PartitionActor, ctx: &mut Context<PartitionActor>) {
        owner.flush_meta(ctx);
    }

    fn on_stopped(&mut self) {
        self.waiters.clear();
    }

    fn on_gone(broker: &Broker, key: &Self::Key) {
        broker.metrics.partition.forget(&PartitionLabels {
            topic: key.0.clone(),
            partition: key.1,
        });
    }
}

impl PartitionActor {
    /// This partition's labels on the per-partition metrics.
    fn metric_labels(&self) -> PartitionLabels {
        PartitionLabels {
            topic: self.key.0.clone(),
            partition: self.key.1,
        }
    }

    /// Sets the high-watermark and log-start gauges (every [`META_FLUSH_INTERVAL`]).
    fn publish_offsets(&self) {
        if !self.is_active() {
            return;
        }
        let labels = self.metric_labels();
        let metrics = &self.broker.metrics.partition;
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        metrics
            .high_watermark
            .get_or_create(&labels)
            .set(gauge(self.state.hw));
        metrics
            .log_start_offset
            .get_or_create(&labels)
            .set(gauge(self.state.log_start));
    }

    fn config(&self) -> Option<TopicConfig> {
        self.broker
            .snapshot()
            .topics
            .get(&self.key.0)
            .map(TopicConfig::of)
    }

    /// Appends a meta record; returns its confirmation (None when the stream is closed).
    fn append_meta_record(&mut self, record: &MetaRecord) -> Option<Confirmation> {
        let body = match protocol::encode(record) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("cannot encode meta record: {e}");
                return None;
            }
        };
        let (_, confirmed) = self.append_meta([Bytes::from(body)])?;
        self.state.meta_records_since_snapshot += 1;
        Some(confirmed)
    }

    /// Writes a meta record and stops the partition if it cannot be confirmed.
    fn write_meta(&mut self, ctx: &mut Context<Self>, record: MetaRecord) {
        if let Some(confirmed) = self.append_meta_record(&record) {
            self.after_ok(ctx, confirmed, |_, _, ()| {});
        }
        if self.state.meta_records_since_snapshot >= SNAPSHOT_EVERY {
            self.write_partition_snapshot(ctx);
        }
    }

    /// Writes the whole replayable state (in pieces of bounded size), then trims the meta
    /// stream to it.
    fn write_partition_snapshot(&mut self, ctx: &mut Context<Self>) {
        let p = &self.state;
        let pieces =
            state::snapshot_pieces(p.log_start, &p.epochs, &p.time_index, p.hw, &p.producers);
        let mut bodies = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            match protocol::encode(piece) {
                Ok(body) => bodies.push(Bytes::from(body)),
                Err(e) => {
                    tracing::error!("cannot encode partition snapshot: {e}");
                    return;
                }
            }
        }
        if self.write_snapshot(ctx, bodies, None) {
            let hw = self.state.hw;
            self.state.time_index.flushed = self.state.time_index.confirmed_len(hw);
            self.state.meta_records_since_snapshot = 0;
        }
    }

    /// Writes new time-index entries and the producers changed since the last flush.
    fn flush_meta(&mut self, ctx: &mut Context<Self>) {
        if !self.is_active() {
            return;
        }
        let hw = self.state.hw;
        let index = &mut self.state.time_index;
        let unflushed = index.unflushed(hw);
        if !unflushed.is_empty() {
            let record = MetaRecord::TimeIndex {
                entries: unflushed.to_vec(),
                indexed_until: index.indexed_until.min(hw),
                indexed_bytes: index.position,
            };
            index.flushed = index.confirmed_len(hw);
            self.write_meta(ctx, record);
        }
        let changed = self.state.producers.take_dirty();
        for chunk in changed.chunks(state::SNAPSHOT_PIECE_PRODUCERS) {
            self.write_meta(ctx, MetaRecord::Producers(chunk.to_vec()));
        }
    }

    /// Moves the log start to `offset` (never past the high watermark): trims the data stream
    /// and records the new start. Resolves once the record is confirmed.
    fn move_log_start(&mut self, offset: u64) -> LocalBoxFuture<'static, Result<u64, RpcError>> {
        let offset = offset.min(self.state.hw);
        if offset <= self.state.log_start {
            let start = self.state.log_start;
            return Box::pin(async move { Ok(start) });
        }
        tracing::info!(topic = %self.key.0, partition = self.key.1, from = self.state.log_start, to = offset, "moving log start");
        self.state.log_start = offset;
        self.state.cache.trim(offset);
        self.state.time_index.trim(offset);
        let recorded = self.append_meta_record(&MetaRecord::LogStart(offset));
        let streams = self.broker.streams.clone();
        let data_stream = self.assignment.data_stream;
        Box::pin(async move {
            if let Some(confirmed) = recorded {
                confirmed.await?;
            }
            streams.trim(data_stream, offset).await?;
            Ok(offset)
        })
    }

    fn enforce_retention(&mut self, ctx: &mut Context<Self>) {
        if !self.is_active() {
            return;
        }
        let expiry = self.broker.config.producer_id_expiration.as_millis() as i64;
        let expired = self.state.producers.expire(crate::now_ms(), expiry);
        if expired > 0 {
            self.broker.metrics.producers_expired.inc_by(expired as u64);
            tracing::info!(topic = %self.key.0, partition = self.key.1, expired, "forgot idle producers");
        }
        let Some(config) = self.config() else { return };
        if !config.delete_policy {
            return;
        }
        let p = &self.state;
        let mut target = p.log_start;
        if config.retention_bytes >= 0 {
            target = target.max(
                p.time_index
                    .retention_by_bytes(config.retention_bytes as u64, p.log_start),
            );
        }
        if config.retention_ms < 0 || p.retention_scan {
            self.retain_from(ctx, target);
            return;
        }
        // Batches whose every timestamp is older than the cutoff go: the index says where
        // the first batch reaching it may be, a scan from there finds it.
        let cutoff = crate::now_ms().saturating_sub(config.retention_ms);
        let from = p.time_index.scan_start(cutoff, target);
        if from >= p.hw {
            self.retain_from(ctx, target);
            return;
        }
        let mut scan = self.scan(from, reads::SCAN_CHUNK);
        self.state.retention_scan = true;
        let find = async move { reads::first_batch_reaching(&mut scan, cutoff).await };
        self.after(ctx, find, move |act, ctx, result| {
            act.state.retention_scan = false;
            let by_time = match result {
                Ok((Some((batch, _)), _)) => batch.offset,
                // Only what was read is known to be older.
                Ok((None, read_to)) => read_to.unwrap_or(from),
                Err(e) => {
                    tracing::warn!(topic = %act.key.0, partition = act.key.1, "retention scan failed: {e}");
                    from
                }
            };
            act.retain_from(ctx, target.max(by_time));
        });
    }

    /// Moves the log start to `target` if that is forward.
    fn retain_from(&mut self, ctx: &mut Context<Self>, target: u64) {
        if target > self.state.log_start {
            let moved = self.move_log_start(target);
            self.after_ok(ctx, moved, |_, _, _| {});
        }
    }
}

/// Sends a request to the actor of `topic`/`index` on this broker and waits for its answer:
/// NOT_LEADER_OR_FOLLOWER when none runs here or it stops before answering.
pub async fn ask<T, M>(
    broker: &Broker,
    topic: &str,
    index: u32,
    request: impl FnOnce(oneshot::Sender<T>) -> M,
) -> Result<T, ResponseError>
where
    M: Message<Result = ()> + Send + 'static,
    PartitionActor: Handler<M>,
{
    let handle = broker
        .partition(topic, index)
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    let (tx, rx) = oneshot::channel();
    handle.addr.do_send(request(tx));
    rx.await.map_err(|_| ResponseError::NotLeaderOrFollower)
}

/// The index of a partition a client named, if its actor runs here; else the error to answer:
/// UNKNOWN_TOPIC_OR_PARTITION if the cluster has no such partition, else
/// NOT_LEADER_OR_FOLLOWER.
pub fn owned_index(broker: &Broker, topic: &str, index: i32) -> Result<u32, ResponseError> {
    match u32::try_from(index) {
        Ok(owned) if broker.partition(topic, owned).is_some() => Ok(owned),
        _ if broker.snapshot().has_partition(topic, index) => {
            Err(ResponseError::NotLeaderOrFollower)
        }
        _ => Err(ResponseError::UnknownTopicOrPartition),
    }
}

request! {
    /// DeleteRecords for one partition: the new log start.
    pub struct DeleteRecords {
        /// -1 means the high watermark.
        pub offset: i64,
    } -> Result<u64, ResponseError>;

    fn handle(self: &mut PartitionActor, msg, ctx) {
        if !self.is_active() {
            let _ = msg.reply.send(Err(ResponseError::NotLeaderOrFollower));
            return;
        }
        let hw = self.state.hw as i64;
        let target = if msg.offset == -1 { hw } else { msg.offset };
        if target < 0 || target > hw {
            let _ = msg.reply.send(Err(ResponseError::OffsetOutOfRange));
            return;
        }
        let moved = self.move_log_start(target as u64);
        let reply = msg.reply;
        self.after(ctx, moved, move |act, ctx, result| match result {
            Ok(start) => {
                let _ = reply.send(Ok(start));
            }
            Err(e) => {
                let _ = reply.send(Err(ResponseError::KafkaStorageError));
                act.fail(ctx, &e);
            }
        });
    }
}
