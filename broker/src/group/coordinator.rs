//! The group coordinator of every group that hashes to one `__consumer_offsets` partition:
//! a stream owner (`crate::owner::StreamOwner<Coordinator>`) over the groups of that partition.
//!
//! The owner lifecycle (opening the partition's data and meta streams at its leader epoch,
//! which fences the previous coordinator; stopping on any stream failure; snapshots and trims;
//! graceful stop) is `crate::owner`'s. This module holds what is the coordinator's own: replay
//! (the latest complete snapshot in the meta stream, then the data stream after it), the
//! requests (answered COORDINATOR_LOAD_IN_PROGRESS until loaded, as Kafka answers), writing
//! each change to the data stream and answering once the stream confirms it, and the timers:
//! group deadlines (sessions, rebalance, sync) every [`TICK`], offset expiry every
//! `offsets_retention_check`, and a snapshot of all groups once enough records accumulated.
//!
//! It must not serve a group whose partition it does not own, and it never keeps going after
//! a stream failure: it stops (pending requests get NOT_COORDINATOR), and the metadata loop
//! starts it again if PD still assigns the partition here.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use protocol::RpcError;
use tokio::sync::oneshot;

use super::records::{self, SnapshotAssembler};
use super::state::{
    CommitRequest, DeletedGroup, FetchedOffset, GroupOutcomes, GroupSummary, Groups, JoinRequest,
    JoinResult, LeavingMember, ListedGroup, Outcome, SyncRequest, SyncResult, TopicPartition,
    Write,
};
use super::GroupConfig;
use crate::context::{Broker, SharedBroker};
use crate::metrics::{GroupOffsetLabels, MAX_GROUP_OFFSET_SERIES};
use crate::now_ms;
use crate::owner::{request, Opened, OwnedState, OwnerHandle, Status, StreamOwner};

/// How often group deadlines are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// How often the coordinator considers writing a snapshot.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(2);
/// Largest stream batch a coordinator writes (records are packed up to this).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// How often the committed offsets are published as metrics.
const PUBLISH_OFFSETS: Duration = Duration::from_secs(2);

/// The coordinator actor of one `__consumer_offsets` partition.
pub type GroupCoordinator = StreamOwner<Coordinator>;

/// What a coordinator keeps: its groups and how much it wrote since its last snapshot.
pub struct Coordinator {
    config: GroupConfig,
    groups: Groups,
    /// Data records written since the last snapshot (drives the next one).
    records_since_snapshot: usize,
    /// The committed-offset series this coordinator exports (removed when it stops).
    exported: HashSet<GroupOffsetLabels>,
    committed_metric: Family<GroupOffsetLabels, Gauge>,
}

impl OwnedState for Coordinator {
    /// The `__consumer_offsets` partition.
    type Key = u32;
    const KIND: &'static str = "group coordinator";
    const HOLD_MAILBOX_WHILE_LOADING: bool = false;

    fn kafka_partition(key: &u32) -> (String, u32) {
        (super::OFFSETS_TOPIC.to_string(), *key)
    }

    fn table(broker: &Broker) -> &RefCell<HashMap<u32, OwnerHandle<Self>>> {
        &broker.coordinators
    }

    fn empty(broker: &SharedBroker, _key: &u32) -> Self {
        Coordinator {
            config: broker.config.groups.clone(),
            groups: Groups::new(broker.config.groups.clone()),
            records_since_snapshot: 0,
            exported: HashSet::new(),
            committed_metric: broker.metrics.group_committed_offset.clone(),
        }
    }

    async fn load(broker: SharedBroker, partition: u32, opened: &Opened) -> Result<Self, RpcError> {
        // The latest complete snapshot in the meta stream.
        let mut assembler = SnapshotAssembler::default();
        let mut meta = opened.scan_meta().await?;
        while let Some(batch) = meta.next().await? {
            match records::decode_snapshot_chunk(&batch.payload) {
                Ok(chunk) => assembler.push(batch.offset, chunk),
                Err(e) => tracing::warn!(
                    partition,
                    offset = batch.offset,
                    "skipping group snapshot chunk: {e}"
                ),
            }
        }
        let now = now_ms();
        let mut groups = Groups::new(broker.config.groups.clone());
        let mut from = 0;
        if let Some((_, covered, records)) = assembler.complete.take() {
            from = covered;
            for record in records {
                groups.replay(record, now);
            }
        }

        // Then the data stream after it.
        let data_start = opened.data_start().await?;
        if data_start > from {
            if from > 0 {
                tracing::warn!(
                    partition,
                    snapshot = from,
                    start = data_start,
                    "group data stream starts after the snapshot"
                );
            }
            from = data_start;
        }
        let mut data = opened.scan_data(from);
        let mut replayed = 0;
        while let Some(batch) = data.next().await? {
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
        groups.finish_load(now_ms());
        tracing::info!(partition, groups = groups.len(), replayed, "groups loaded");
        Ok(Coordinator {
            config: broker.config.groups.clone(),
            groups,
            records_since_snapshot: replayed,
            exported: HashSet::new(),
            committed_metric: broker.metrics.group_committed_offset.clone(),
        })
    }

    fn on_active(owner: &mut GroupCoordinator, ctx: &mut Context<GroupCoordinator>) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        let every = owner.broker.config.groups.offsets_retention_check;
        ctx.run_interval(every, |act, ctx| act.expire(ctx));
        ctx.run_interval(SNAPSHOT_CHECK, |act, ctx| act.maybe_snapshot(ctx));
        ctx.run_interval(PUBLISH_OFFSETS, |act, _| {
            if act.is_active() {
                act.state.publish_offsets();
            }
        });
    }

    /// Dropping the groups drops every waiting answer (the handlers turn that into
    /// NOT_COORDINATOR).
    fn on_stopped(&mut self) {
        self.groups = Groups::new(self.config.clone());
        self.publish_offsets();
    }
}

impl Coordinator {
    /// Sets the committed-offset series to the groups' offsets now (at most
    /// [`MAX_GROUP_OFFSET_SERIES`]) and removes those no longer committed.
    fn publish_offsets(&mut self) {
        let mut now = HashSet::new();
        for (group, tp, offset) in self.groups.committed_offsets() {
            if now.len() >= MAX_GROUP_OFFSET_SERIES {
                break;
            }
            let labels = GroupOffsetLabels {
                group: group.to_string(),
                topic: tp.topic.clone(),
                partition: tp.partition,
            };
            self.committed_metric.get_or_create(&labels).set(offset);
            now.insert(labels);
        }
        for gone in self.exported.difference(&now) {
            self.committed_metric.remove(gone);
        }
        self.exported = now;
    }
}

impl GroupCoordinator {
    /// The error every request gets while this coordinator cannot serve.
    fn unavailable(&self) -> Option<E> {
        match self.status {
            Status::Active => None,
            Status::Loading => Some(E::CoordinatorLoadInProgress),
            Status::Stopped => Some(E::NotCoordinator),
        }
    }

    /// Appends every write the state machine queued, in order.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        loop {
            let writes = self.state.groups.take_writes();
            if writes.is_empty() {
                return;
            }
            for write in writes {
                self.append(ctx, write);
            }
        }
    }

    fn append(&mut self, ctx: &mut Context<Self>, write: Write) {
        if !self.is_active() {
            return;
        }
        let Write { records, done } = write;
        if records.is_empty() {
            if let Some(done) = done {
                done(&mut self.state.groups, now_ms());
            }
            return;
        }
        let encoded: Vec<Bytes> = records.iter().map(records::encode_record).collect();
        let batches = records::pack(encoded, MAX_BATCH_BYTES);
        let Some(confirmed) = self.append_data(batches.iter().map(|b| records::data_batch(b)))
        else {
            return;
        };
        self.state.records_since_snapshot += records.len();
        self.after_ok(ctx, confirmed, move |act, ctx, ()| {
            if act.is_active() {
                if let Some(done) = done {
                    done(&mut act.state.groups, now_ms());
                    act.flush(ctx);
                }
            }
        });
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.is_active() || self.state.groups.is_empty() {
            return;
        }
        self.state.groups.tick(now_ms());
        self.flush(ctx);
    }

    fn expire(&mut self, ctx: &mut Context<Self>) {
        if !self.is_active() {
            return;
        }
        self.state.groups.expire(now_ms());
        self.flush(ctx);
    }

    /// Writes a snapshot of every group to the meta stream once enough records accumulated;
    /// both streams are then trimmed to it.
    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        let every = self.broker.config.groups.snapshot_every_records.max(1);
        if self.state.records_since_snapshot < every {
            return;
        }
        let Some(covered) = self.data.as_ref().map(|d| d.next_offset()) else {
            return;
        };
        let encoded: Vec<Bytes> = self
            .state
            .groups
            .snapshot_records()
            .iter()
            .map(records::encode_record)
            .collect();
        let mut packs = records::pack(encoded, MAX_BATCH_BYTES);
        if packs.is_empty() {
            packs.push(Vec::new());
        }
        let n = packs.len();
        let chunks = packs
            .iter()
            .enumerate()
            .map(|(i, p)| records::snapshot_chunk(covered, i as u32, i + 1 == n, p))
            .collect();
        if self.write_snapshot(ctx, chunks, Some(covered)) {
            tracing::info!(
                partition = self.key,
                covered,
                chunks = n,
                groups = self.state.groups.len(),
                "writing group snapshot"
            );
            self.state.records_since_snapshot = 0;
        }
    }
}

/// Whether a request may create the group `group_id` (`creates`: it would, if the group does
/// not exist): refused with GROUP_MAX_SIZE_REACHED (counted, logged at most once a second)
/// when the coordinator already holds its limit of groups.
fn refuse_new_group(owner: &GroupCoordinator, group_id: &str, creates: bool) -> Option<E> {
    let groups = &owner.state.groups;
    let max = owner.state.config.max_groups_per_coordinator;
    if !creates || groups.group(group_id).is_some() || groups.len() < max {
        return None;
    }
    owner.broker.metrics.groups_refused.inc();
    if let Some(refused) = GROUP_REFUSALS.hit() {
        tracing::warn!(
            group = group_id,
            max,
            refused,
            "refusing new consumer groups: the coordinator holds --max-groups-per-coordinator"
        );
    }
    Some(E::GroupMaxSizeReached)
}

/// Refused new groups, for the log line (one for the whole broker).
static GROUP_REFUSALS: std::sync::LazyLock<::actors::throttle::LogThrottle> =
    std::sync::LazyLock::new(::actors::throttle::LogThrottle::new);

/// Answers a request: through the callback `op` hands to the groups (after the writes it
/// queued are confirmed) when active, else at once with `refused(error)`.
fn answer_later<T: 'static>(
    owner: &mut GroupCoordinator,
    ctx: &mut Context<GroupCoordinator>,
    reply: oneshot::Sender<T>,
    refused: impl FnOnce(E) -> T,
    op: impl FnOnce(&mut Groups, i64, Box<dyn FnOnce(T)>),
) {
    if let Some(error) = owner.unavailable() {
        let _ = reply.send(refused(error));
        return;
    }
    let answer = Box::new(move |result| {
        let _ = reply.send(result);
    });
    op(&mut owner.state.groups, now_ms(), answer);
    owner.flush(ctx);
}

/// Answers a request at once: `op`'s result when active, else `refused(error)`.
fn answer_now<T>(
    owner: &mut GroupCoordinator,
    ctx: &mut Context<GroupCoordinator>,
    reply: oneshot::Sender<T>,
    refused: impl FnOnce(E) -> T,
    op: impl FnOnce(&mut Groups, i64) -> T,
) {
    let answer = match owner.unavailable() {
        Some(error) => refused(error),
        None => op(&mut owner.state.groups, now_ms()),
    };
    let _ = reply.send(answer);
    owner.flush(ctx);
}

request! {
    /// JoinGroup: answered once the group's rebalance completes (or the join fails).
    pub struct Join { pub request: JoinRequest } -> JoinResult;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        let member_id = msg.request.member_id.clone();
        let refused = |error| JoinResult::error(&member_id, error);
        let creates = member_id.is_empty();
        if let Some(error) = refuse_new_group(self, &msg.request.group_id, creates) {
            let _ = msg.reply.send(refused(error));
            return;
        }
        if !self.state.groups.join_fits(&msg.request) {
            tracing::warn!(group = %msg.request.group_id, client = %msg.request.client_id,
                "refusing a join: the group's record would not fit one append");
            let _ = msg.reply.send(refused(E::GroupMaxSizeReached));
            return;
        }
        answer_later(self, ctx, msg.reply, refused, |groups, now, answer| {
            groups.join(now, msg.request, answer)
        });
    }
}

request! {
    /// SyncGroup: answered with the member's assignment.
    pub struct Sync { pub request: SyncRequest } -> SyncResult;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        // A loading coordinator lost the rebalance: rejoin (Kafka's answer).
        let loading = self.status == Status::Loading;
        let refused = |error| {
            SyncResult::error(if loading {
                E::RebalanceInProgress
            } else {
                error
            })
        };
        if !self.state.groups.sync_fits(&msg.request) {
            // Kafka's answer when a group record is too large to store.
            tracing::warn!(group = %msg.request.group_id,
                "refusing a sync: the group's record with these assignments would not fit one append");
            let _ = msg.reply.send(refused(E::UnknownServerError));
            return;
        }
        answer_later(self, ctx, msg.reply, refused, |groups, now, answer| {
            groups.sync(now, msg.request, answer)
        });
    }
}

request! {
    /// Heartbeat: keeps a member's session alive.
    pub struct Heartbeat {
        pub group_id: String,
        pub member_id: String,
        pub instance_id: Option<String>,
        pub generation: i32,
    } -> Outcome;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        // Kafka answers heartbeats blindly while loading.
        let loading = self.status == Status::Loading;
        let refused = |error| if loading { Ok(()) } else { Err(error) };
        answer_now(self, ctx, msg.reply, refused, |groups, now| {
            groups.heartbeat(
                now,
                &msg.group_id,
                &msg.member_id,
                msg.instance_id.as_deref(),
                msg.generation,
            )
        });
    }
}

request! {
    /// LeaveGroup: removes members; one outcome per member, or the group's error.
    pub struct Leave {
        pub group_id: String,
        pub members: Vec<LeavingMember>,
    } -> GroupOutcomes;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        answer_now(self, ctx, msg.reply, Err, |groups, now| {
            groups.leave(now, &msg.group_id, &msg.members)
        });
    }
}

request! {
    /// OffsetCommit: one outcome per partition, answered once the commit is written.
    pub struct Commit { pub request: CommitRequest } -> Vec<Outcome>;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        let partitions = msg.request.offsets.len();
        let refused = |error| vec![Err(error); partitions];
        let creates = msg.request.generation < 0;
        if let Some(error) = refuse_new_group(self, &msg.request.group_id, creates) {
            let _ = msg.reply.send(refused(error));
            return;
        }
        answer_later(self, ctx, msg.reply, refused, |groups, now, answer| {
            groups.commit(now, msg.request, answer)
        });
    }
}

request! {
    /// OffsetFetch: a group's committed offsets.
    pub struct FetchOffsets {
        pub group_id: String,
        /// None: every committed partition of the group.
        pub partitions: Option<Vec<TopicPartition>>,
    } -> Result<Vec<FetchedOffset>, E>;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        answer_now(self, ctx, msg.reply, Err, |groups, _| {
            Ok(groups.fetch_offsets(&msg.group_id, msg.partitions.as_deref()))
        });
    }
}

request! {
    /// DescribeGroups, for one group.
    pub struct Describe { pub group_id: String } -> Result<GroupSummary, E>;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        answer_now(self, ctx, msg.reply, Err, |groups, _| {
            Ok(groups.describe(&msg.group_id))
        });
    }
}

request! {
    /// ListGroups: the groups this coordinator holds.
    pub struct List {} -> Result<Vec<ListedGroup>, E>;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        answer_now(self, ctx, msg.reply, Err, |groups, _| Ok(groups.list()));
    }
}

request! {
    /// DeleteGroups: one outcome per group, answered once the deletions are written.
    pub struct DeleteGroups { pub group_ids: Vec<String> } -> Vec<DeletedGroup>;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        let group_ids = msg.group_ids;
        let refused = |error| {
            let refused = |g: &String| DeletedGroup {
                group_id: g.clone(),
                result: Err(error),
            };
            group_ids.iter().map(refused).collect()
        };
        answer_later(self, ctx, msg.reply, refused, |groups, _, answer| {
            groups.delete_groups(&group_ids, answer)
        });
    }
}

request! {
    /// OffsetDelete: removes committed offsets of topics the group does not consume.
    pub struct DeleteOffsets {
        pub group_id: String,
        /// Answered in order; GROUP_SUBSCRIBED_TO_TOPIC for a topic the group consumes.
        pub partitions: Vec<TopicPartition>,
    } -> GroupOutcomes;

    fn handle(self: &mut GroupCoordinator, msg, ctx) {
        let (group_id, partitions) = (msg.group_id, msg.partitions);
        answer_later(self, ctx, msg.reply, Err, |groups, _, answer| {
            groups.delete_offsets(&group_id, partitions, answer)
        });
    }
}
