//! The lifecycle every owner of a partition's streams shares, written once: the partition
//! actor and the group coordinator are both a [`StreamOwner`] over their own state
//! ([`OwnedState`]).
//!
//! A stream owner is assigned a partition (its data and meta streams) at a Kafka leader epoch
//! by PD. It opens both streams with that epoch as the minimum stream epoch (which fences the
//! previous owner, whatever it is doing), lets its state replay them, and only then serves.
//! Appends are awaited off the actor and their outcome handled back in it; any stream failure
//! stops the owner for good (the metadata loop starts a new one if PD still assigns the
//! partition here). Snapshots go into the meta stream in pieces, after which the streams are
//! trimmed to them. A graceful [`Stop`] flushes, closes both streams (waiting for their appends
//! and sealing their ranges, so the next owner opens at once) and stops.
//!
//! This module owns only that lifecycle: what is replayed, served and snapshotted is the
//! state's business, and which owners run where is [`reconcile`]'s (driven by PD).

pub mod reconcile;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use protocol::RpcError;
use stream_client::{AppendFuture, StreamClient, StreamWriter};
use tracing::Instrument;

use crate::context::{Broker, SharedBroker};
use crate::read::Scan;
pub use reconcile::{Assignment, OwnerHandle};

/// Bytes asked of a range server per read while replaying.
const REPLAY_CHUNK_BYTES: usize = 4 << 20;
/// How long a snapshot waits for the data it covers to be confirmed before trimming.
const SNAPSHOT_TRIM_RETRY: Duration = Duration::from_millis(50);
/// The longest a graceful stop waits for unfinished work after closing its streams.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Opening and replaying its streams.
    Loading,
    Active,
    /// Failed or told to stop: serves nothing more.
    Stopped,
}

/// A partition's two streams, freshly opened for writing, for the state to replay.
pub struct Opened {
    pub client: StreamClient,
    pub data: StreamWriter,
    pub meta: StreamWriter,
}

impl Opened {
    /// Every batch of the meta stream, from its start to what the writer recovered.
    pub async fn scan_meta(&self) -> Result<Scan, RpcError> {
        let start = self
            .client
            .describe(self.meta.stream_id())
            .await?
            .start_offset;
        Ok(self.scan(&self.meta, start))
    }

    /// The data stream from `from` (at or after its start) to what the writer recovered.
    pub fn scan_data(&self, from: u64) -> Scan {
        self.scan(&self.data, from)
    }

    /// Where the data stream starts now (it may have been trimmed past what the meta stream
    /// recorded).
    pub async fn data_start(&self) -> Result<u64, RpcError> {
        Ok(self
            .client
            .describe(self.data.stream_id())
            .await?
            .start_offset)
    }

    fn scan(&self, writer: &StreamWriter, from: u64) -> Scan {
        Scan::new(
            self.client.clone(),
            writer.stream_id(),
            from,
            writer.next_offset(),
            REPLAY_CHUNK_BYTES,
        )
    }
}

/// What a stream owner keeps and serves: a partition's log state or a coordinator's groups.
pub trait OwnedState: Sized + Unpin + 'static {
    /// How the broker's table names owners of this kind.
    type Key: Clone + Eq + Hash + Debug + Unpin + 'static;
    /// For log lines: "partition", "group coordinator".
    const KIND: &'static str;
    /// Whether requests wait in the mailbox while the owner loads (they are then served) or
    /// are handled at once (and answered as loading).
    const HOLD_MAILBOX_WHILE_LOADING: bool;

    /// The Kafka topic and partition an owner of `key` serves.
    fn kafka_partition(key: &Self::Key) -> (String, u32);

    /// The broker's table of running owners of this kind.
    fn table(broker: &Broker) -> &RefCell<HashMap<Self::Key, OwnerHandle<Self>>>;

    /// The state before it is loaded.
    fn empty(broker: &SharedBroker, key: &Self::Key) -> Self;

    /// Rebuilds the state from the freshly opened streams (replays them).
    fn load(
        broker: SharedBroker,
        key: Self::Key,
        opened: &Opened,
    ) -> impl Future<Output = Result<Self, RpcError>>;

    /// Runs in the actor once loaded: timers, first records.
    fn on_active(owner: &mut StreamOwner<Self>, ctx: &mut Context<StreamOwner<Self>>);

    /// Runs before a graceful stop closes the streams: write out what is buffered.
    fn before_close(_owner: &mut StreamOwner<Self>, _ctx: &mut Context<StreamOwner<Self>>) {}

    /// The owner stopped (failed or told to): drop waiting work so its askers hear of it.
    fn on_stopped(&mut self);

    /// The owner's actor has ended and no other owner of `key` runs on this broker: drop
    /// what is kept for the key outside the actor (its metric series).
    fn on_gone(_broker: &Broker, _key: &Self::Key) {}
}

/// The actor owning one partition's data and meta streams.
pub struct StreamOwner<S: OwnedState> {
    pub broker: SharedBroker,
    pub key: S::Key,
    pub assignment: Assignment,
    pub data: Option<StreamWriter>,
    pub meta: Option<StreamWriter>,
    pub status: Status,
    /// A snapshot is being written or trimmed to: no second one meanwhile.
    snapshotting: bool,
    /// Work started with [`StreamOwner::after`] whose continuation has not run yet (appends
    /// waiting for confirmation, with their askers' answers): a graceful stop waits for it.
    unfinished: usize,
    pub state: S,
}

impl<S: OwnedState> StreamOwner<S> {
    /// Tells PD this broker serves the partition at its leader epoch (which ends and times
    /// the move that brought it here). Best effort: a lost report only leaves PD's list of
    /// moves in flight stale until it expires.
    fn report_opened(&self) {
        let (topic, partition) = S::kafka_partition(&self.key);
        let report = protocol::pd::PartitionOpened {
            broker: self.broker.node_id,
            topic,
            partition,
            leader_epoch: self.assignment.leader_epoch,
        };
        let pd = self.broker.pd.clone();
        actix::spawn(async move {
            if let Err(e) = pd.call(report).await {
                tracing::debug!("reporting an opened partition to PD: {e}");
            }
        });
    }

    pub fn new(broker: SharedBroker, key: S::Key, assignment: Assignment) -> Self {
        let state = S::empty(&broker, &key);
        StreamOwner {
            broker,
            key,
            assignment,
            data: None,
            meta: None,
            status: Status::Loading,
            snapshotting: false,
            unfinished: 0,
            state,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    pub fn leader_epoch(&self) -> u32 {
        self.assignment.leader_epoch
    }

    /// Stops after a stream failure: forgets its writers (the next owner seals what they
    /// left), leaves the broker's table and stops the actor once the continuations still
    /// waiting have answered their askers (a writer taken over answers each append with what
    /// became of it).
    pub fn fail(&mut self, ctx: &mut Context<Self>, error: &RpcError) {
        if self.status == Status::Stopped {
            return;
        }
        tracing::warn!(kind = S::KIND, key = ?self.key, "stops: {error}");
        self.status = Status::Stopped;
        self.state.on_stopped();
        self.data = None;
        self.meta = None;
        let mut table = S::table(&self.broker).borrow_mut();
        if table
            .get(&self.key)
            .is_some_and(|h| h.addr == ctx.address())
        {
            table.remove(&self.key);
        }
        drop(table);
        self.stop_when_finished(ctx, Instant::now());
    }

    /// Runs `then` in the actor with the outcome of `work`.
    pub fn after<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl Future<Output = Result<T, RpcError>> + 'static,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Result<T, RpcError>) + 'static,
    ) {
        self.unfinished += 1;
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.unfinished -= 1;
            then(act, ctx, result)
        }));
    }

    /// Stops the actor once every continuation of [`StreamOwner::after`] has run (so every
    /// asker has its real answer), or after [`STOP_GRACE`] at the latest.
    fn stop_when_finished(&mut self, ctx: &mut Context<Self>, since: Instant) {
        if self.unfinished == 0 || since.elapsed() >= STOP_GRACE {
            ctx.stop();
            return;
        }
        ctx.run_later(Duration::from_millis(5), move |act, ctx| {
            act.stop_when_finished(ctx, since)
        });
    }

    /// Runs `then` in the actor once `work` succeeds; a failure stops the owner.
    pub fn after_ok<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl Future<Output = Result<T, RpcError>> + 'static,
        then: impl FnOnce(&mut Self, &mut Context<Self>, T) + 'static,
    ) {
        self.after(ctx, work, move |act, ctx, result| match result {
            Ok(value) => then(act, ctx, value),
            Err(e) => act.fail(ctx, &e),
        });
    }

    /// Appends each payload as one data-stream batch of one offset; returns a future confirming
    /// them all. None when the stream is not open.
    pub fn append_data(
        &mut self,
        payloads: impl IntoIterator<Item = Bytes>,
    ) -> Option<Confirmation> {
        let writer = self.data.as_mut()?;
        Some(confirm_all(
            payloads.into_iter().map(|p| writer.append(p, 1)).collect(),
        ))
    }

    /// Appends each payload as one meta-stream batch; returns the offset of the first and a
    /// future confirming them all.
    pub fn append_meta(
        &mut self,
        payloads: impl IntoIterator<Item = Bytes>,
    ) -> Option<(u64, Confirmation)> {
        let writer = self.meta.as_mut()?;
        let first = writer.next_offset();
        let appends = payloads.into_iter().map(|p| writer.append(p, 1)).collect();
        Some((first, confirm_all(appends)))
    }

    /// Writes a snapshot (its pieces, in order) to the meta stream; once confirmed, trims the
    /// data stream to `covered_data` (when given, after that much data is confirmed) and the
    /// meta stream to the snapshot's first piece. A failed append stops the owner; a failed
    /// trim is logged and done again by the next snapshot. Returns false (and writes nothing)
    /// while an earlier snapshot is still in progress.
    pub fn write_snapshot(
        &mut self,
        ctx: &mut Context<Self>,
        pieces: Vec<Bytes>,
        covered_data: Option<u64>,
    ) -> bool {
        if self.snapshotting || self.status != Status::Active {
            return false;
        }
        let Some((first, confirmed)) = self.append_meta(pieces) else {
            return false;
        };
        self.snapshotting = true;
        self.after_ok(ctx, confirmed, move |act, ctx, ()| {
            act.trim_to_snapshot(ctx, covered_data, first)
        });
        true
    }

    fn trim_to_snapshot(
        &mut self,
        ctx: &mut Context<Self>,
        covered_data: Option<u64>,
        meta_first: u64,
    ) {
        if self.status != Status::Active {
            return;
        }
        let confirmed = self.data.as_ref().map(|d| d.confirmed()).unwrap_or(0);
        if covered_data.is_some_and(|covered| confirmed < covered) {
            ctx.run_later(SNAPSHOT_TRIM_RETRY, move |act, ctx| {
                act.trim_to_snapshot(ctx, covered_data, meta_first)
            });
            return;
        }
        let client = self.broker.streams.clone();
        let (data_stream, meta_stream) = (self.assignment.data_stream, self.assignment.meta_stream);
        let trims = async move {
            if let Some(covered) = covered_data {
                client.trim(data_stream, covered).await?;
            }
            client.trim(meta_stream, meta_first).await?;
            Ok(())
        };
        self.after(ctx, trims, move |act, _ctx, result: Result<(), RpcError>| {
            act.snapshotting = false;
            match result {
                Ok(()) => tracing::debug!(kind = S::KIND, key = ?act.key, meta_first, "trimmed streams to the snapshot"),
                Err(e) => tracing::warn!(
                    kind = S::KIND, key = ?act.key,
                    "trimming streams to the snapshot failed (retried at the next snapshot): {e}"
                ),
            }
        });
    }
}

/// Resolves when appends are confirmed (or the first of them fails).
pub type Confirmation = LocalBoxFuture<'static, Result<(), RpcError>>;

/// Waits for every append in order; the first failure is the outcome.
pub fn confirm_all(appends: Vec<AppendFuture>) -> Confirmation {
    Box::pin(async move {
        for append in appends {
            append.await?;
        }
        Ok(())
    })
}

/// Opens both streams at the leader epoch and lets the state replay them.
async fn open_and_load<S: OwnedState>(
    broker: SharedBroker,
    key: S::Key,
    assignment: Assignment,
) -> Result<(S, Opened), RpcError> {
    let client = broker.streams.clone();
    let epoch = assignment.leader_epoch as u64;
    let data = client
        .open_with_epoch(assignment.data_stream, epoch)
        .await?;
    let meta = client
        .open_with_epoch(assignment.meta_stream, epoch)
        .await?;
    let opened = Opened { client, data, meta };
    let state = S::load(broker, key, &opened).await?;
    Ok((state, opened))
}

impl<S: OwnedState> Actor for StreamOwner<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(usize::MAX);
        let running = &self.broker.owners_running;
        running.set(running.get() + 1);
        let started = Instant::now();
        // A trace of its own: PD's side of opening the streams (sealing the previous owner's
        // ranges, new ranges) and the replay reads are its children.
        let (topic, partition) = S::kafka_partition(&self.key);
        let span = tracing::debug_span!(
            "owner.open",
            otel.name = %format!("open {topic}-{partition}"),
            kind = S::KIND,
            "messaging.destination.name" = %topic,
            "messaging.destination.partition.id" = partition,
            leader_epoch = self.assignment.leader_epoch,
        );
        let loading = open_and_load::<S>(self.broker.clone(), self.key.clone(), self.assignment)
            .instrument(span)
            .into_actor(self)
            .map(move |result, act, ctx| {
                if act.status == Status::Stopped {
                    return; // told to stop while loading; dropping the writers abandons them
                }
                match result {
                    Ok((state, opened)) => {
                        act.state = state;
                        act.data = Some(opened.data);
                        act.meta = Some(opened.meta);
                        act.status = Status::Active;
                        tracing::info!(
                            kind = S::KIND, key = ?act.key, leader_epoch = act.assignment.leader_epoch,
                            ms = started.elapsed().as_millis() as u64, "loaded, serving"
                        );
                        S::on_active(act, ctx);
                        act.report_opened();
                    }
                    Err(e) => {
                        tracing::warn!(kind = S::KIND, key = ?act.key, "cannot load: {e}");
                        act.fail(ctx, &e);
                    }
                }
            });
        if S::HOLD_MAILBOX_WHILE_LOADING {
            // Requests queue until the owner is loaded, then are served.
            ctx.wait(loading);
        } else {
            ctx.spawn(loading);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let running = &self.broker.owners_running;
        running.set(running.get().saturating_sub(1));
        self.state.on_stopped();
        if !S::table(&self.broker).borrow().contains_key(&self.key) {
            S::on_gone(&self.broker, &self.key);
        }
    }
}

/// Declares a request to a stream owner that is answered on a oneshot: the message (its doc,
/// its fields and a `reply: oneshot::Sender<answer>`) and the owner's handler (an actix
/// `Handler` with no result of its own), which answers on `msg.reply`. An owner that stops before answering drops the sender, which the asker sees as
/// the owner being gone.
///
/// ```ignore
/// request! {
///     /// What it asks.
///     pub struct Ask { pub what: u32 } -> Answer;
///
///     fn handle(self: &mut Actor, msg, ctx) {
///         let _ = msg.reply.send(self.answer(msg.what));
///     }
/// }
/// ```
macro_rules! request {
    (
        $(#[$doc:meta])*
        pub struct $name:ident {
            $($(#[$field_doc:meta])* pub $field:ident: $ty:ty),* $(,)?
        } -> $answer:ty;

        fn handle($this:ident: &mut $actor:ty, $msg:ident, $ctx:ident) $body:block
    ) => {
        $(#[$doc])*
        #[derive(actix::Message)]
        #[rtype(result = "()")]
        pub struct $name {
            $($(#[$field_doc])* pub $field: $ty,)*
            pub reply: tokio::sync::oneshot::Sender<$answer>,
        }

        impl actix::Handler<$name> for $actor {
            type Result = ();

            fn handle(&mut $this, $msg: $name, $ctx: &mut actix::Context<Self>) $body
        }
    };
}
pub(crate) use request;

/// Stop serving: flush, close the streams gracefully, then stop the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl<S: OwnedState> Handler<Stop> for StreamOwner<S> {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        if self.status == Status::Active {
            S::before_close(self, ctx);
        }
        self.status = Status::Stopped;
        self.state.on_stopped();
        let writers = [self.data.take(), self.meta.take()];
        let closing = async move {
            for writer in writers.into_iter().flatten() {
                let stream = writer.stream_id();
                // Failures are fine: the next owner's open fences and seals what is left.
                if let Err(e) = writer.close().await {
                    tracing::debug!(stream, "closing stream: {e}");
                }
            }
        };
        // Closing waits for every append to be confirmed or failed; the appends' own
        // continuations then answer their askers with that outcome (a confirmed produce is
        // acknowledged, not turned into NOT_LEADER_OR_FOLLOWER and retried on the next
        // owner), and only then does the actor stop. Requests arriving meanwhile are refused.
        let since = Instant::now();
        ctx.spawn(
            closing
                .into_actor(self)
                .map(move |_, act, ctx| act.stop_when_finished(ctx, since)),
        );
    }
}
