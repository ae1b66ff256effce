//! One actor per `__consumer_offsets` partition this broker owns: the group coordinator of
//! every group that hashes to that partition.
//!
//! It owns the partition's data and meta streams (opened with the partition's leader epoch,
//! which fences the previous coordinator whatever it is doing), rebuilds its groups from them
//! (the latest complete snapshot in the meta stream, then the data stream after it), and only
//! then serves; until then requests get COORDINATOR_LOAD_IN_PROGRESS (as Kafka answers).
//! Every change is appended to the data stream and answered once the stream confirms it.
//! Timers: group deadlines (sessions, rebalance, sync) every [`TICK`], offset expiry every
//! `offsets_retention_check`, and a snapshot of all groups into the meta stream once enough
//! records accumulated, after which both streams are trimmed to it.
//!
//! It must not serve a group whose partition it does not own, and it never keeps going after
//! a stream failure: it stops (pending requests get NOT_COORDINATOR), and the metadata loop
//! starts it again if PD still assigns the partition here.

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use protocol::RpcError;
use stream_client::{AppendFuture, StreamClient, StreamWriter};
use tokio::sync::oneshot;

use super::records::{self, OffsetValue, SnapshotAssembler};
use super::state::{
    CommitRequest, GroupState, GroupSummary, Groups, JoinRequest, JoinResult, SyncRequest,
    SyncResult, Write,
};
use super::GroupConfig;
use crate::context::SharedBroker;
use crate::partition::now_ms;

/// How often group deadlines are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// How often the coordinator considers writing a snapshot.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(2);
/// Largest stream batch a coordinator writes (records are packed up to this).
const MAX_BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Loading,
    Active,
    Stopped,
}

pub struct GroupCoordinator {
    broker: SharedBroker,
    partition: u32,
    leader_epoch: u32,
    data_stream: u64,
    meta_stream: u64,
    data: Option<StreamWriter>,
    meta: Option<StreamWriter>,
    status: Status,
    groups: Groups,
    /// Data records written since the last snapshot (drives the next one).
    records_since_snapshot: usize,
    snapshotting: bool,
}

impl GroupCoordinator {
    pub fn new(
        broker: SharedBroker,
        partition: u32,
        leader_epoch: u32,
        data_stream: u64,
        meta_stream: u64,
    ) -> Self {
        let config = broker.config.groups.clone();
        GroupCoordinator {
            broker,
            partition,
            leader_epoch,
            data_stream,
            meta_stream,
            data: None,
            meta: None,
            status: Status::Loading,
            groups: Groups::new(config),
            records_since_snapshot: 0,
            snapshotting: false,
        }
    }

    /// The error every request gets while this coordinator cannot serve.
    fn unavailable(&self) -> Option<i16> {
        match self.status {
            Status::Active => None,
            Status::Loading => Some(E::CoordinatorLoadInProgress.code()),
            Status::Stopped => Some(E::NotCoordinator.code()),
        }
    }

    /// Stops after a stream failure; dropping the groups drops every waiting answer (the
    /// handlers turn that into NOT_COORDINATOR).
    fn fail(&mut self, ctx: &mut Context<Self>, error: &RpcError) {
        if self.status == Status::Stopped {
            return;
        }
        tracing::warn!(
            partition = self.partition,
            "group coordinator stops: {error}"
        );
        self.status = Status::Stopped;
        self.groups = Groups::new(self.broker.config.groups.clone());
        self.data = None;
        self.meta = None;
        let mut coordinators = self.broker.coordinators.borrow_mut();
        if coordinators
            .get(&self.partition)
            .is_some_and(|h| h.addr == ctx.address())
        {
            coordinators.remove(&self.partition);
        }
        ctx.stop();
    }

    /// Appends every write the state machine queued, in order.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        loop {
            let writes = self.groups.take_writes();
            if writes.is_empty() {
                return;
            }
            for write in writes {
                self.append(ctx, write);
            }
        }
    }

    fn append(&mut self, ctx: &mut Context<Self>, write: Write) {
        if self.status != Status::Active {
            return;
        }
        let Write { records, done } = write;
        if records.is_empty() {
            if let Some(done) = done {
                done(&mut self.groups, now_ms());
            }
            return;
        }
        let Some(data) = self.data.as_mut() else {
            return;
        };
        self.records_since_snapshot += records.len();
        let encoded: Vec<Bytes> = records.iter().map(records::encode_record).collect();
        let appends: Vec<AppendFuture> = records::pack(encoded, MAX_BATCH_BYTES)
            .iter()
            .map(|batch| data.append(records::data_batch(batch), 1))
            .collect();
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
                    if act.status == Status::Active {
                        if let Some(done) = done {
                            done(&mut act.groups, now_ms());
                            act.flush(ctx);
                        }
                    }
                }
                Err(e) => act.fail(ctx, &e),
            }),
        );
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.status != Status::Active || self.groups.is_empty() {
            return;
        }
        self.groups.tick(now_ms());
        self.flush(ctx);
    }

    fn expire(&mut self, ctx: &mut Context<Self>) {
        if self.status != Status::Active {
            return;
        }
        self.groups.expire(now_ms());
        self.flush(ctx);
    }

    /// Writes a snapshot of every group to the meta stream once enough records accumulated,
    /// then trims both streams to it.
    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        let every = self.broker.config.groups.snapshot_every_records.max(1);
        if self.status != Status::Active || self.snapshotting || self.records_since_snapshot < every
        {
            return;
        }
        let (Some(data), Some(meta)) = (self.data.as_ref(), self.meta.as_mut()) else {
            return;
        };
        let covered = data.next_offset();
        let encoded: Vec<Bytes> = self
            .groups
            .snapshot_records()
            .iter()
            .map(records::encode_record)
            .collect();
        let mut packs = records::pack(encoded, MAX_BATCH_BYTES);
        if packs.is_empty() {
            packs.push(Vec::new());
        }
        let first = meta.next_offset();
        let n = packs.len();
        let appends: Vec<AppendFuture> = packs
            .iter()
            .enumerate()
            .map(|(i, p)| meta.append(records::snapshot_chunk(covered, i as u32, i + 1 == n, p), 1))
            .collect();
        tracing::info!(
            partition = self.partition,
            covered,
            chunks = n,
            groups = self.groups.len(),
            "writing group snapshot"
        );
        self.snapshotting = true;
        self.records_since_snapshot = 0;
        ctx.spawn(
            async move {
                for append in appends {
                    append.await?;
                }
                Ok::<_, RpcError>(())
            }
            .into_actor(self)
            .map(move |result, act, ctx| match result {
                Ok(()) => act.trim_to_snapshot(ctx, covered, first),
                Err(e) => act.fail(ctx, &e),
            }),
        );
    }

    /// Once the data the snapshot covers is confirmed, trims the data stream to it and the
    /// meta stream to the snapshot's first chunk.
    fn trim_to_snapshot(&mut self, ctx: &mut Context<Self>, covered: u64, meta_first: u64) {
        if self.status != Status::Active {
            return;
        }
        let confirmed = self.data.as_ref().map(|d| d.confirmed()).unwrap_or(0);
        if confirmed < covered {
            ctx.run_later(Duration::from_millis(50), move |act, ctx| {
                act.trim_to_snapshot(ctx, covered, meta_first)
            });
            return;
        }
        let streams = self.broker.streams.clone();
        let (data_stream, meta_stream) = (self.data_stream, self.meta_stream);
        ctx.spawn(
            async move {
                streams.trim(data_stream, covered).await?;
                streams.trim(meta_stream, meta_first).await?;
                Ok::<_, RpcError>(())
            }
            .into_actor(self)
            .map(move |result, act, _ctx| {
                act.snapshotting = false;
                match result {
                    Ok(()) => tracing::debug!(
                        partition = act.partition,
                        covered,
                        "trimmed group streams to the snapshot"
                    ),
                    Err(e) => tracing::warn!(
                        partition = act.partition,
                        "trimming group streams failed (retried at the next snapshot): {e}"
                    ),
                }
            }),
        );
    }
}

struct Loaded {
    data: StreamWriter,
    meta: StreamWriter,
    groups: Groups,
    records_since_snapshot: usize,
}

/// Opens both streams (fencing the previous coordinator) and replays them.
async fn load(
    streams: StreamClient,
    partition: u32,
    data_stream: u64,
    meta_stream: u64,
    leader_epoch: u32,
    config: GroupConfig,
) -> Result<Loaded, RpcError> {
    let data = streams
        .open_with_epoch(data_stream, leader_epoch as u64)
        .await?;
    let meta = streams
        .open_with_epoch(meta_stream, leader_epoch as u64)
        .await?;

    // The latest complete snapshot in the meta stream.
    let meta_info = streams.describe(meta_stream).await?;
    let mut assembler = SnapshotAssembler::default();
    let mut offset = meta_info.start_offset;
    let meta_end = meta.next_offset();
    while offset < meta_end {
        let read = streams.read(meta_stream, offset, 4 << 20).await?;
        if read.batches.is_empty() {
            break;
        }
        for batch in read.batches {
            offset = batch.offset + batch.count as u64;
            match records::decode_snapshot_chunk(&batch.payload) {
                Ok(chunk) => assembler.push(batch.offset, chunk),
                Err(e) => tracing::warn!(
                    partition,
                    offset = batch.offset,
                    "skipping group snapshot chunk: {e}"
                ),
            }
        }
    }
    let now = now_ms();
    let mut groups = Groups::new(config);
    let mut from = 0;
    if let Some((_, covered, records)) = assembler.complete.take() {
        from = covered;
        for record in records {
            groups.replay(record, now);
        }
    }

    // Then the data stream after it.
    let data_info = streams.describe(data_stream).await?;
    if data_info.start_offset > from {
        if from > 0 {
            tracing::warn!(
                partition,
                snapshot = from,
                start = data_info.start_offset,
                "group data stream starts after the snapshot"
            );
        }
        from = data_info.start_offset;
    }
    let end = data.next_offset();
    let mut offset = from;
    let mut replayed = 0;
    while offset < end {
        let read = streams.read(data_stream, offset, 4 << 20).await?;
        if read.batches.is_empty() {
            break;
        }
        for batch in read.batches {
            offset = batch.offset + batch.count as u64;
            match records::decode_data_batch(&batch.payload) {
                Ok(records) => {
                    replayed += records.len();
                    for record in records {
                        groups.replay(record, now);
                    }
                }
                Err(e) => tracing::warn!(
                    partition,
                    offset = batch.offset,
                    "skipping group records: {e}"
                ),
            }
        }
    }
    groups.finish_load(now_ms());
    Ok(Loaded {
        data,
        meta,
        groups,
        records_since_snapshot: replayed,
    })
}

impl Actor for GroupCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(usize::MAX);
        let loading = load(
            self.broker.streams.clone(),
            self.partition,
            self.data_stream,
            self.meta_stream,
            self.leader_epoch,
            self.broker.config.groups.clone(),
        );
        let started = std::time::Instant::now();
        ctx.spawn(loading.into_actor(self).map(move |result, act, ctx| {
            if act.status == Status::Stopped {
                return;
            }
            match result {
                Ok(loaded) => {
                    tracing::info!(
                        partition = act.partition,
                        groups = loaded.groups.len(),
                        replayed = loaded.records_since_snapshot,
                        ms = started.elapsed().as_millis() as u64,
                        "group coordinator loaded"
                    );
                    act.data = Some(loaded.data);
                    act.meta = Some(loaded.meta);
                    act.groups = loaded.groups;
                    act.records_since_snapshot = loaded.records_since_snapshot;
                    act.status = Status::Active;
                    ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
                    let every = act.broker.config.groups.offsets_retention_check;
                    ctx.run_interval(every, |act, ctx| act.expire(ctx));
                    ctx.run_interval(SNAPSHOT_CHECK, |act, ctx| act.maybe_snapshot(ctx));
                }
                Err(e) => {
                    tracing::warn!(
                        partition = act.partition,
                        "cannot load group coordinator: {e}"
                    );
                    act.status = Status::Loading; // let `fail` clean up
                    act.fail(ctx, &e);
                }
            }
        }));
    }
}

/// Stop coordinating: answer nothing more, close the streams gracefully, stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.status = Status::Stopped;
        self.groups = Groups::new(self.broker.config.groups.clone());
        let closing = crate::partition::open::close_streams(self.data.take(), self.meta.take());
        ctx.wait(closing.into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub request: JoinRequest,
    pub reply: oneshot::Sender<JoinResult>,
}

impl Handler<Join> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) {
        if let Some(error) = self.unavailable() {
            let _ = msg
                .reply
                .send(JoinResult::error(&msg.request.member_id, error));
            return;
        }
        let reply = msg.reply;
        self.groups.join(
            now_ms(),
            msg.request,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        );
        self.flush(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Sync {
    pub request: SyncRequest,
    pub reply: oneshot::Sender<SyncResult>,
}

impl Handler<Sync> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Sync, ctx: &mut Context<Self>) {
        if let Some(error) = self.unavailable() {
            // A loading coordinator lost the rebalance: rejoin (Kafka's answer).
            let error = if self.status == Status::Loading {
                E::RebalanceInProgress.code()
            } else {
                error
            };
            let _ = msg.reply.send(SyncResult::error(error));
            return;
        }
        let reply = msg.reply;
        self.groups.sync(
            now_ms(),
            msg.request,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        );
        self.flush(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub reply: oneshot::Sender<i16>,
}

impl Handler<Heartbeat> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) {
        let answer = match self.status {
            // Kafka answers heartbeats blindly while loading.
            Status::Loading => 0,
            Status::Stopped => E::NotCoordinator.code(),
            Status::Active => self.groups.heartbeat(
                now_ms(),
                &msg.group_id,
                &msg.member_id,
                msg.instance_id.as_deref(),
                msg.generation,
            ),
        };
        let _ = msg.reply.send(answer);
        self.flush(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub group_id: String,
    /// `(member id, instance id)`.
    pub members: Vec<(String, Option<String>)>,
    pub reply: oneshot::Sender<(i16, Vec<i16>)>,
}

impl Handler<Leave> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        if let Some(error) = self.unavailable() {
            let _ = msg.reply.send((error, Vec::new()));
            return;
        }
        let answer = self.groups.leave(now_ms(), &msg.group_id, &msg.members);
        let _ = msg.reply.send(answer);
        self.flush(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Commit {
    pub request: CommitRequest,
    pub reply: oneshot::Sender<Vec<i16>>,
}

impl Handler<Commit> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Commit, ctx: &mut Context<Self>) {
        if let Some(error) = self.unavailable() {
            let _ = msg.reply.send(vec![error; msg.request.offsets.len()]);
            return;
        }
        let reply = msg.reply;
        self.groups.commit(
            now_ms(),
            msg.request,
            Box::new(move |errors| {
                let _ = reply.send(errors);
            }),
        );
        self.flush(ctx);
    }
}

pub type FetchedOffsets = Vec<(String, i32, Option<OffsetValue>)>;

#[derive(Message)]
#[rtype(result = "()")]
pub struct FetchOffsets {
    pub group_id: String,
    /// None: every committed partition of the group.
    pub partitions: Option<Vec<(String, i32)>>,
    pub reply: oneshot::Sender<Result<FetchedOffsets, i16>>,
}

impl Handler<FetchOffsets> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: FetchOffsets, _ctx: &mut Context<Self>) {
        let answer = match self.unavailable() {
            Some(error) => Err(error),
            None => Ok(self
                .groups
                .fetch_offsets(&msg.group_id, msg.partitions.as_deref())),
        };
        let _ = msg.reply.send(answer);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Describe {
    pub group_id: String,
    pub reply: oneshot::Sender<Result<GroupSummary, i16>>,
}

impl Handler<Describe> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Describe, _ctx: &mut Context<Self>) {
        let answer = match self.unavailable() {
            Some(error) => Err(error),
            None => Ok(self.groups.describe(&msg.group_id)),
        };
        let _ = msg.reply.send(answer);
    }
}

pub type ListedGroups = Vec<(String, String, GroupState)>;

#[derive(Message)]
#[rtype(result = "()")]
pub struct List {
    pub reply: oneshot::Sender<Result<ListedGroups, i16>>,
}

impl Handler<List> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: List, _ctx: &mut Context<Self>) {
        let answer = match self.unavailable() {
            Some(error) => Err(error),
            None => Ok(self.groups.list()),
        };
        let _ = msg.reply.send(answer);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct DeleteGroups {
    pub group_ids: Vec<String>,
    pub reply: oneshot::Sender<Vec<(String, i16)>>,
}

impl Handler<DeleteGroups> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: DeleteGroups, ctx: &mut Context<Self>) {
        if let Some(error) = self.unavailable() {
            let answer = msg.group_ids.into_iter().map(|g| (g, error)).collect();
            let _ = msg.reply.send(answer);
            return;
        }
        let reply = msg.reply;
        self.groups.delete_groups(
            &msg.group_ids,
            Box::new(move |results| {
                let _ = reply.send(results);
            }),
        );
        self.flush(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct DeleteOffsets {
    pub group_id: String,
    pub partitions: Vec<(String, i32)>,
    pub reply: oneshot::Sender<(i16, Vec<i16>)>,
}

impl Handler<DeleteOffsets> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: DeleteOffsets, ctx: &mut Context<Self>) {
        if let Some(error) = self.unavailable() {
            let _ = msg.reply.send((error, Vec::new()));
            return;
        }
        let reply = msg.reply;
        self.groups.delete_offsets(
            &msg.group_id,
            msg.partitions,
            Box::new(move |error, errors| {
                let _ = reply.send((error, errors));
            }),
        );
        self.flush(ctx);
    }
}
