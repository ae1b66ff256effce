//! The stream writer: the single writer of one open stream.
//!
//! It sends every append to all replicas of the open range in parallel, many appends in
//! flight, and confirms an append once `ack_count` replicas hold it and everything before it
//! (the "Writing" rules in docs/architecture.md). When a replica fails or errs, the writer seals the range at its confirmed
//! offset, opens a new range elsewhere and re-sends the unconfirmed appends there, so no
//! confirmed record is lost and no offset is reused. It does the same, unasked, when a replica
//! of its range is being drained ([`crate::nodes::Nodes::draining`]). A `Fenced` answer (a newer writer opened
//! the stream) ends the writer: every waiting append fails with it.
//!
//! The writer runs as one task (its state is never shared); replicas are fed by one task each
//! so appends reach every replica in offset order, and that task also awaits the replica's
//! answers (no task per append). Every replica gets the same payload buffer, not a copy. It
//! does not read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::RpcClient;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use protocol::model::{NodeId, RangeInfo, StreamId};
use protocol::range_rpc::{Append, Commit, Fetch, Seal, MAX_APPEND_BYTES};
use protocol::{ErrorCode, RpcError};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::metrics::SealReason;
use crate::StreamClient;

/// How long a replica that failed is kept out of new ranges of this writer.
const EXCLUDE_FOR: Duration = Duration::from_secs(10);

/// Handle to an open stream. Appends are ordered by call order. Dropping it without
/// [`StreamWriter::close`] abandons the stream as a crash would: unconfirmed appends may or may
/// not survive, and the next opener seals the open range with the quorum rule.
pub struct StreamWriter {
    stream_id: StreamId,
    epoch: u64,
    next: u64,
    commands: mpsc::UnboundedSender<Command>,
    confirmed: Arc<AtomicU64>,
    /// Payload bytes appended but not yet confirmed (or failed).
    unconfirmed_bytes: Arc<AtomicU64>,
    /// Set while too few replicas take appends (their WALs are full) to confirm any.
    stalled: Arc<AtomicBool>,
}

/// Resolves to the append's first offset once it is confirmed, or to the error that ended the
/// writer.
pub type AppendFuture = BoxFuture<'static, Result<u64, RpcError>>;

impl StreamWriter {
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// The epoch this writer holds; an opener with a higher one fences it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The offset the next append will get.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Everything below this offset is confirmed.
    pub fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Payload bytes waiting for confirmation: grows while replicas or PD are slow or down,
    /// so callers can stop taking work instead of queueing without bound.
    pub fn unconfirmed_bytes(&self) -> u64 {
        self.unconfirmed_bytes.load(Ordering::Acquire)
    }

    /// True while appends cannot be confirmed because too many replicas refuse them for
    /// lack of space (their WALs wait for offload). The writer keeps every append and
    /// resends it; callers should push back on new work meanwhile.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// Appends one batch that takes `count` offsets. The offset is assigned now (it is
    /// `next_offset()` before the call); the future resolves when the batch is confirmed. A
    /// payload over [`MAX_APPEND_BYTES`] (or no offsets) fails at once, takes no offset and
    /// leaves the writer as it was.
    pub fn append(&mut self, payload: Bytes, count: u32) -> AppendFuture {
        let offset = self.next;
        let refused = if count == 0 {
            Some(RpcError::new(
                ErrorCode::InvalidArgument,
                "an append takes at least one offset",
            ))
        } else if payload.len() > MAX_APPEND_BYTES {
            // Refused here, taking no offset: sent, it would fail on every replica and end
            // the writer.
            Some(RpcError::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "an append of {} bytes exceeds the {MAX_APPEND_BYTES} an append may carry",
                    payload.len()
                ),
            ))
        } else {
            None
        };
        if let Some(err) = refused {
            return Box::pin(async move { Err(err) });
        }
        self.next += count as u64;
        let (done, wait) = oneshot::channel();
        let crc = protocol::checksum(&payload);
        self.unconfirmed_bytes
            .fetch_add(payload.len() as u64, Ordering::AcqRel);
        let sent = self.commands.send(Command::Append(PendingAppend {
            offset,
            count,
            crc,
            payload,
            done,
            span: tracing::Span::current(),
            started: Instant::now(),
        }));
        Box::pin(async move {
            if sent.is_err() {
                return Err(stopped());
            }
            wait.await.unwrap_or_else(|_| Err(stopped()))
        })
    }

    /// Waits for every append to be confirmed, then seals the open range at PD so the next
    /// opener starts at once. Returns the stream's end offset.
    pub async fn close(self) -> Result<u64, RpcError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// What an append or close gets once the writer task is gone.
fn stopped() -> RpcError {
    RpcError::new(ErrorCode::NotReady, "stream writer has stopped")
}

enum Command {
    Append(PendingAppend),
    Close(oneshot::Sender<Result<u64, RpcError>>),
}

struct PendingAppend {
    offset: u64,
    count: u32,
    crc: u32,
    payload: Bytes,
    done: oneshot::Sender<Result<u64, RpcError>>,
    /// The caller's span: the replica requests carry its trace context.
    span: tracing::Span,
    /// When `append` was called (the append latency metric).
    started: Instant,
}

impl PendingAppend {
    fn end(&self) -> u64 {
        self.offset + self.count as u64
    }
}

/// An answer from one replica about one append.
struct Ack {
    generation: u64,
    /// The replica's send round (see [`Replica::round`]).
    round: u64,
    node: NodeId,
    end: u64,
    result: Result<u64, RpcError>,
}

enum ReplicaOp {
    /// An append, in the replica's send round it belongs to.
    Append(Append, tracing::Span, u64),
    Commit(Commit),
}

struct Replica {
    node: NodeId,
    ops: mpsc::UnboundedSender<ReplicaOp>,
    durable: u64,
    /// Bumped when the replica refuses an append for lack of space ([`ErrorCode::StorageFull`]):
    /// the appends sent after it fail too, and their errors (from the older round) are not
    /// failures of the replica. Its successes stay true whatever the round.
    round: u64,
    /// Refused for lack of space; resent from `durable` after a pause.
    stalled: bool,
    /// The pause before the next resend.
    pause: Duration,
}

/// A stalled replica's pause is over: resend to it (if it is still in `round`).
struct Resume {
    generation: u64,
    node: NodeId,
    round: u64,
}

/// Pauses before resending to a replica whose WAL was full: doubling, at most the second.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

struct WriterTask {
    client: StreamClient,
    stream_id: StreamId,
    epoch: u64,
    ack_count: usize,
    range: RangeInfo,
    replicas: Vec<Replica>,
    /// Bumped at each range switch; answers from older generations are ignored.
    generation: u64,
    confirmed: u64,
    commit_sent: u64,
    pending: VecDeque<PendingAppend>,
    acks_tx: mpsc::UnboundedSender<Ack>,
    resume_tx: mpsc::UnboundedSender<Resume>,
    failed: Vec<(NodeId, Instant)>,
    fatal: Option<RpcError>,
    shared_confirmed: Arc<AtomicU64>,
    unconfirmed_bytes: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
    /// The range servers being drained: the writer moves its range off them.
    draining: tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>,
}

pub(crate) async fn start(
    client: StreamClient,
    stream_id: StreamId,
    epoch: u64,
    ack_count: u8,
    range: RangeInfo,
) -> Result<StreamWriter, RpcError> {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let (resume_tx, resume_rx) = mpsc::unbounded_channel();
    let shared_confirmed = Arc::new(AtomicU64::new(range.start));
    let unconfirmed_bytes = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let draining = client.nodes.draining();
    let mut task = WriterTask {
        client,
        stream_id,
        epoch,
        ack_count: ack_count.max(1) as usize,
        range: range.clone(),
        replicas: Vec::new(),
        generation: 0,
        confirmed: range.start,
        commit_sent: range.start,
        pending: VecDeque::new(),
        acks_tx,
        resume_tx,
        failed: Vec::new(),
        fatal: None,
        shared_confirmed: shared_confirmed.clone(),
        unconfirmed_bytes: unconfirmed_bytes.clone(),
        stalled: stalled.clone(),
        draining,
    };
    task.install_range(range.clone()).await?;
    tokio::spawn(task.run(commands_rx, acks_rx, resume_rx));
    Ok(StreamWriter {
        stream_id,
        epoch,
        next: range.start,
        commands,
        confirmed: shared_confirmed,
        unconfirmed_bytes,
        stalled,
    })
}

impl WriterTask {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut acks: mpsc::UnboundedReceiver<Ack>,
        mut resumes: mpsc::UnboundedReceiver<Resume>,
    ) {
        let mut closing: Option<oneshot::Sender<Result<u64, RpcError>>> = None;
        self.draining.mark_changed();
        loop {
            if let Some(reply) = closing.take() {
                if self.pending.is_empty() || self.fatal.is_some() {
                    let _ = reply.send(self.finish().await);
                    return;
                }
                closing = Some(reply);
            }
            tokio::select! {
                command = commands.recv(), if closing.is_none() => match command {
                    Some(Command::Append(append)) => self.append(append),
                    Some(Command::Close(reply)) => closing = Some(reply),
                    // The handle was dropped without `close`: abandon the stream as a crashed
                    // writer would; the next opener seals the range with the quorum rule.
                    None => return,
                },
                Some(ack) = acks.recv() => self.on_ack(ack).await,
                Some(resume) = resumes.recv() => self.resume(resume),
                Ok(()) = self.draining.changed(), if closing.is_none() => self.leave_draining().await,
            }
        }
    }

    /// Moves the open range off a replica that is being drained: seals it at the confirmed
    /// offset and goes on in a new range (PD places none on a draining server).
    async fn leave_draining(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let set = self.draining.borrow_and_update().clone();
        if let Some(node) = self.range.servers.iter().copied().find(|n| set.contains(n)) {
            tracing::info!(
                stream = self.stream_id,
                range = self.range.index,
                node,
                "a replica is being drained; moving to a new range"
            );
            self.switch_range(node).await;
        }
    }

    fn append(&mut self, append: PendingAppend) {
        if let Some(err) = &self.fatal {
            self.settled(&append);
            let _ = append.done.send(Err(err.clone()));
            return;
        }
        self.send_to_replicas(&append);
        self.pending.push_back(append);
    }

    fn request(&self, append: &PendingAppend) -> Append {
        Append {
            stream_id: self.stream_id,
            index: self.range.index,
            epoch: self.epoch,
            range_start: self.range.start,
            offset: append.offset,
            count: append.count,
            confirmed: self.confirmed,
            crc: append.crc,
            payload: append.payload.clone(),
        }
    }

    fn send_to_replicas(&self, append: &PendingAppend) {
        for replica in self.replicas.iter().filter(|r| !r.stalled) {
            // A closed queue means the replica task ended; its failure is reported as an ack.
            let op = ReplicaOp::Append(self.request(append), append.span.clone(), replica.round);
            let _ = replica.ops.send(op);
        }
    }

    async fn on_ack(&mut self, ack: Ack) {
        if ack.generation != self.generation || self.fatal.is_some() {
            return;
        }
        if let Err(e) = &ack.result {
            let Some(replica) = self.replicas.iter_mut().find(|r| r.node == ack.node) else {
                return;
            };
            let resent = replica.round > 0;
            if ack.round != replica.round || replica.stalled {
                // Sent after an append this replica refused for lack of space: resent later.
                return;
            }
            if e.code == ErrorCode::StorageFull {
                let others = self
                    .replicas
                    .iter()
                    .filter(|r| !r.stalled && r.node != ack.node)
                    .count();
                if others >= self.ack_count {
                    // The others confirm without it, and it would only fall behind: go on
                    // in a new range without it.
                    self.switch_range(ack.node).await;
                } else {
                    self.stall(ack.node);
                }
                return;
            }
            if e.code == ErrorCode::InFlight && resent {
                // A resend of an append the replica took before it filled up: the first
                // send's answer will come.
                return;
            }
            if e.code == ErrorCode::Overtaking && resent {
                // It missed appends confirmed (and dropped here) while it was full: it cannot
                // catch up in this range.
                tracing::info!(
                    stream = self.stream_id,
                    range = self.range.index,
                    node = ack.node,
                    "a replica fell behind while its WAL was full; moving to a new range"
                );
                self.switch_range(ack.node).await;
                return;
            }
        }
        let durable = match ack.result {
            Ok(durable) => durable,
            Err(e) if e.code == ErrorCode::AlreadyCommitted => ack.end,
            Err(e) if matches!(e.code, ErrorCode::Fenced | ErrorCode::RangeSealed) => {
                self.fail(RpcError::new(
                    ErrorCode::Fenced,
                    format!(
                        "stream {} was taken over by a newer writer: {e}",
                        self.stream_id
                    ),
                ));
                return;
            }
            Err(e) => {
                tracing::warn!(
                    stream = self.stream_id,
                    range = self.range.index,
                    node = ack.node,
                    "replica failed, moving to a new range: {e}"
                );
                self.switch_range(ack.node).await;
                return;
            }
        };
        if let Some(replica) = self.replicas.iter_mut().find(|r| r.node == ack.node) {
            replica.durable = replica.durable.max(durable);
        }
        self.advance();
    }

    /// `node` refused an append for lack of space: stop sending to it, and resend from what
    /// it holds after a pause. The append stays pending; the replica is not dropped.
    fn stall(&mut self, node: NodeId) {
        let Some(replica) = self.replicas.iter_mut().find(|r| r.node == node) else {
            return;
        };
        replica.stalled = true;
        replica.round += 1;
        let pause = replica.pause;
        replica.pause = (pause * 2).min(MAX_PAUSE);
        let resume = Resume {
            generation: self.generation,
            node,
            round: replica.round,
        };
        tracing::info!(
            stream = self.stream_id,
            range = self.range.index,
            node,
            pause_ms = pause.as_millis() as u64,
            "replica's WAL is full; resending to it after a pause"
        );
        self.update_stalled();
        self.send_commit();
        let resumes = self.resume_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let _ = resumes.send(resume);
        });
    }

    /// A stalled replica's pause is over: feed it again from what it holds.
    fn resume(&mut self, resume: Resume) {
        if resume.generation != self.generation || self.fatal.is_some() {
            return;
        }
        let Some(i) = self
            .replicas
            .iter()
            .position(|r| r.node == resume.node && r.round == resume.round && r.stalled)
        else {
            return;
        };
        self.replicas[i].stalled = false;
        let (round, durable) = (self.replicas[i].round, self.replicas[i].durable);
        for append in self.pending.iter().filter(|a| a.end() > durable) {
            let op = ReplicaOp::Append(self.request(append), append.span.clone(), round);
            let _ = self.replicas[i].ops.send(op);
        }
        self.update_stalled();
    }

    /// Publishes whether enough replicas take appends to confirm any.
    fn update_stalled(&self) {
        let taking = self.replicas.iter().filter(|r| !r.stalled).count();
        self.stalled
            .store(taking < self.ack_count, Ordering::Release);
    }

    /// Confirms every pending append that `ack_count` replicas now hold.
    fn advance(&mut self) {
        let mut durables: Vec<u64> = self.replicas.iter().map(|r| r.durable).collect();
        durables.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&candidate) = durables.get(self.ack_count - 1) else {
            return;
        };
        if candidate <= self.confirmed {
            return;
        }
        self.confirmed = candidate;
        self.shared_confirmed.store(candidate, Ordering::Release);
        while self.pending.front().is_some_and(|p| p.end() <= candidate) {
            if let Some(done) = self.pending.pop_front() {
                self.settled(&done);
                self.client
                    .metrics()
                    .appended(done.payload.len(), done.started.elapsed().as_secs_f64());
                let _ = done.done.send(Ok(done.offset));
            }
        }
        // When no append is left to carry the confirmed offset, send it on its own so readers
        // of the replicas see the tail. Nor do appends carry it while a replica is stalled:
        // the replicas' offloaders upload only what they know is confirmed, and a full WAL
        // frees space only once that is uploaded.
        if self.pending.is_empty() || self.replicas.iter().any(|r| r.stalled) {
            self.send_commit();
        }
    }

    /// Tells every replica the confirmed offset, unless it was told already.
    fn send_commit(&mut self) {
        if self.confirmed <= self.commit_sent {
            return;
        }
        self.commit_sent = self.confirmed;
        for replica in &self.replicas {
            let _ = replica.ops.send(ReplicaOp::Commit(Commit {
                stream_id: self.stream_id,
                index: self.range.index,
                epoch: self.epoch,
                confirmed: self.confirmed,
            }));
        }
    }

    /// An append left the unconfirmed set (confirmed or failed).
    fn settled(&self, append: &PendingAppend) {
        self.unconfirmed_bytes
            .fetch_sub(append.payload.len() as u64, Ordering::AcqRel);
    }

    /// Ends the writer with `err`. Appends still pending fail with it, except when a newer
    /// writer took over (`Fenced`): that writer seals this range where a quorum of replicas
    /// holds it, which may include appends this one never saw confirmed, so each is answered
    /// by what became of it ([`resolve_taken_over`]).
    fn fail(&mut self, err: RpcError) {
        tracing::warn!(stream = self.stream_id, "stream writer stops: {err}");
        let pending = std::mem::take(&mut self.pending);
        if err.code == ErrorCode::Fenced && !pending.is_empty() {
            tokio::spawn(resolve_taken_over(
                self.client.clone(),
                self.stream_id,
                self.range.index,
                pending,
                self.unconfirmed_bytes.clone(),
                err.clone(),
            ));
        } else {
            for pending in pending {
                self.settled(&pending);
                self.client.metrics().append_failed();
                let _ = pending.done.send(Err(err.clone()));
            }
        }
        self.replicas.clear();
        self.fatal = Some(err);
    }

    /// Seals the open range at the confirmed offset and continues in a new range that avoids
    /// `failed_node`, re-sending every unconfirmed append.
    async fn switch_range(&mut self, failed_node: NodeId) {
        // A trace of its own: PD's seal and new range are its children.
        let span = tracing::debug_span!(
            "stream.switch_range",
            stream = self.stream_id,
            range = self.range.index,
            leaving = failed_node
        );
        self.switch_range_in_span(failed_node)
            .instrument(span)
            .await
    }

    async fn switch_range_in_span(&mut self, failed_node: NodeId) {
        self.generation += 1;
        self.replicas.clear();
        let now = Instant::now();
        self.failed
            .retain(|(_, at)| now.duration_since(*at) < EXCLUDE_FOR);
        self.failed.push((failed_node, now));
        let end = self.confirmed;
        let started = Instant::now();
        let sealed = self
            .client
            .seal_range(&self.range, self.epoch, end, &[failed_node])
            .await;
        if let Err(e) = sealed {
            self.fail(e);
            return;
        }
        self.client.metrics().sealed(SealReason::Switch);
        self.client.metrics().switched_range();
        let exclude: Vec<NodeId> = self.failed.iter().map(|(n, _)| *n).collect();
        let range = match self
            .client
            .create_range(self.stream_id, self.epoch, end, &exclude)
            .await
        {
            Ok(range) => {
                // Readers sharing this client must not keep reading the sealed range.
                self.client.invalidate(self.stream_id);
                range
            }
            Err(e) => {
                self.fail(e);
                return;
            }
        };
        tracing::info!(
            stream = self.stream_id,
            old_range = self.range.index,
            new_range = range.index,
            start = end,
            servers = ?range.servers,
            resent = self.pending.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "switched to a new range"
        );
        if let Err(e) = self.install_range(range).await {
            self.fail(e);
            return;
        }
        for append in &self.pending {
            self.send_to_replicas(append);
        }
    }

    async fn install_range(&mut self, range: RangeInfo) -> Result<(), RpcError> {
        let mut replicas = Vec::with_capacity(range.servers.len());
        for &node in &range.servers {
            let client = self.client.nodes.client(node).await?;
            let (ops, ops_rx) = mpsc::unbounded_channel();
            tokio::spawn(replica_loop(
                client,
                node,
                self.generation,
                ops_rx,
                self.acks_tx.clone(),
            ));
            replicas.push(Replica {
                node,
                ops,
                durable: range.start,
                round: 0,
                stalled: false,
                pause: FIRST_PAUSE,
            });
        }
        self.replicas = replicas;
        self.range = range;
        self.update_stalled();
        Ok(())
    }

    /// Ends the writer: seals the open range at the confirmed offset.
    async fn finish(&mut self) -> Result<u64, RpcError> {
        if let Some(err) = &self.fatal {
            return Err(err.clone());
        }
        let end = self.confirmed;
        self.client
            .seal_range(&self.range, self.epoch, end, &[])
            .await?;
        self.client.metrics().sealed(SealReason::Close);
        self.client.invalidate(self.stream_id);
        Ok(end)
    }
}

/// How long a taken-over writer waits for the new writer to seal its range before it calls
/// the outcome of its pending appends unknown.
const RESOLVE_FOR: Duration = Duration::from_secs(10);

/// Answers each append `pending` in range `index` when a newer writer took the stream over:
/// once PD shows the range sealed, an append below the sealed end is stored (its offset), one
/// past it is not (`err`, `Fenced`). A range not sealed within [`RESOLVE_FOR`] (or gone)
/// leaves the outcome unknown: `Timeout`. Without this, a produce the new owner kept would be
/// answered NOT_LEADER and a client's retry would store it twice.
async fn resolve_taken_over(
    client: StreamClient,
    stream_id: StreamId,
    index: u32,
    pending: VecDeque<PendingAppend>,
    unconfirmed_bytes: Arc<AtomicU64>,
    err: RpcError,
) {
    let deadline = Instant::now() + RESOLVE_FOR;
    let sealed_end = loop {
        client.invalidate(stream_id);
        if let Ok(info) = client.describe(stream_id).await {
            match info.ranges.iter().find(|r| r.index == index) {
                Some(range) if range.end.is_some() => break range.end,
                Some(_) => {}
                None => break None,
            }
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let kept = pending
        .iter()
        .filter(|p| sealed_end.is_some_and(|end| p.end() <= end))
        .count();
    tracing::info!(
        stream = stream_id,
        range = index,
        ?sealed_end,
        kept,
        lost = pending.len() - kept,
        "taken over with appends in flight: answered each with its outcome"
    );
    for p in pending {
        unconfirmed_bytes.fetch_sub(p.payload.len() as u64, Ordering::AcqRel);
        let answer = match sealed_end {
            Some(end) if p.end() <= end => Ok(p.offset),
            Some(_) => Err(err.clone()),
            None => Err(RpcError::new(
                ErrorCode::Timeout,
                format!(
                    "stream {stream_id} was taken over with this append in flight, and its range was not sealed within {RESOLVE_FOR:?}: it may or may not be stored"
                ),
            )),
        };
        let _ = p.done.send(answer);
    }
}

/// Answers still on the wire from one replica: for an append, its end, its round and the
/// result; for a commit, nothing (its answer is only awaited so the call is not abandoned).
type InFlight = FuturesUnordered<BoxFuture<'static, Option<((u64, u64), Result<u64, RpcError>)>>>;

/// Feeds one replica in order: each request is queued on the connection before the next is
/// taken, and its answer comes back to the writer as an [`Ack`] as soon as it arrives. The
/// answers are awaited here, beside the queue, not in a task per request; they keep flowing
/// while a send waits for a connection.
async fn replica_loop(
    client: RpcClient,
    node: NodeId,
    generation: u64,
    mut ops: mpsc::UnboundedReceiver<ReplicaOp>,
    acks: mpsc::UnboundedSender<Ack>,
) {
    let ack = |(end, round): (u64, u64), result: Result<u64, RpcError>| {
        let _ = acks.send(Ack {
            generation,
            round,
            node,
            end,
            result,
        });
    };
    let mut in_flight = InFlight::new();
    loop {
        let op = tokio::select! {
            op = ops.recv() => op,
            Some(answer) = in_flight.next() => {
                if let Some((sent, result)) = answer {
                    ack(sent, result);
                }
                continue;
            }
        };
        let Some(op) = op else { break };
        match op {
            ReplicaOp::Append(request, span, round) => {
                let sent = (request.offset + request.count as u64, round);
                let send = client.send(request).instrument(span);
                match send_beside(send, &mut in_flight, &ack).await {
                    Ok(call) => in_flight
                        .push(async move { Some((sent, call.await.map(|r| r.durable))) }.boxed()),
                    Err(e) => ack(sent, Err(e)),
                }
            }
            ReplicaOp::Commit(request) => {
                if let Ok(call) = send_beside(client.send(request), &mut in_flight, &ack).await {
                    in_flight.push(
                        async move {
                            let _ = call.await;
                            None
                        }
                        .boxed(),
                    );
                }
            }
        }
    }
    // The writer dropped this replica; answers already on the wire still finish (the writer
    // ignores them), as they would have in tasks of their own.
    while let Some(answer) = in_flight.next().await {
        if let Some((sent, result)) = answer {
            ack(sent, result);
        }
    }
}

/// Awaits `send` while forwarding the answers of earlier requests that arrive meanwhile.
async fn send_beside<T>(
    send: impl std::future::Future<Output = T>,
    in_flight: &mut InFlight,
    ack: &impl Fn((u64, u64), Result<u64, RpcError>),
) -> T {
    tokio::pin!(send);
    loop {
        tokio::select! {
            sent = &mut send => return sent,
            Some(answer) = in_flight.next() => {
                if let Some((sent, result)) = answer {
                    ack(sent, result);
                }
            }
        }
    }
}

/// Seals `range` on its replicas at `epoch` and returns the quorum end: at
/// least `n - ack + 1` replicas must answer; `end = sort_ascending(ends)[n - ack]`, a silent
/// replica counting as the largest. Also returns each answering replica's local end.
///
/// The end is never below `offloaded_end` (what object storage holds of the stream): that
/// data is the stream's even where replicas dropped it. A replica that lost its disk
/// (another node answers at its address: `WrongNode`) lost what was not offloaded. When every replica either answers or lost its disk and too few
/// answer for the quorum rule, the range ends at the most anyone still holds: the largest
/// answered end or `offloaded_end` (what object storage holds of the stream).
pub(crate) async fn seal_with_quorum(
    client: &StreamClient,
    range: &RangeInfo,
    epoch: u64,
    ack_count: u8,
    offloaded_end: u64,
) -> Result<(u64, Vec<(NodeId, u64)>), RpcError> {
    let n = range.servers.len();
    let ack = (ack_count as usize).clamp(1, n.max(1));
    let need = n + 1 - ack;
    let deadline = Instant::now() + client.config.retry_for;
    let mut backoff = Duration::from_millis(50);
    loop {
        let answers = futures::future::join_all(range.servers.iter().map(|&node| {
            let client = client.clone();
            async move {
                let rpc = client.nodes.client(node).await?;
                let request = Seal {
                    stream_id: range.stream_id,
                    index: range.index,
                    epoch,
                    range_start: range.start,
                    end: None,
                    node,
                };
                match rpc.call_with_timeout(request, Duration::from_secs(2)).await {
                    Ok(answer) => Ok(answer.local_end),
                    Err(e) if e.code == ErrorCode::NotFound => Ok(range.start),
                    Err(e) => {
                        if e.code == ErrorCode::WrongNode {
                            // Another server at the replica's address (it lost its disk and
                            // came back as a new node): silent, not "holds nothing".
                            tracing::warn!(
                                node,
                                stream = range.stream_id,
                                range = range.index,
                                "seal: {e}"
                            );
                        }
                        Err(e)
                    }
                }
            }
        }))
        .await;
        let mut ends = Vec::with_capacity(n);
        let mut answered = Vec::with_capacity(n);
        let mut last_error = None;
        let mut wiped = 0;
        for (answer, &node) in answers.into_iter().zip(&range.servers) {
            match answer {
                Ok(end) => {
                    ends.push(end.max(range.start));
                    answered.push((node, end.max(range.start)));
                }
                Err(e) if e.code == ErrorCode::Fenced => return Err(e),
                Err(e) => {
                    wiped += usize::from(e.code == ErrorCode::WrongNode);
                    last_error = Some(e);
                }
            }
        }
        if ends.len() < need && ends.len() + wiped == n {
            let end = ends
                .iter()
                .copied()
                .chain([offloaded_end, range.start])
                .max()
                .unwrap_or(range.start);
            tracing::warn!(
                stream = range.stream_id,
                range = range.index,
                wiped,
                end,
                offloaded_end,
                "replicas lost their disks: sealing at what survives (answers and objects)"
            );
            return Ok((end, answered));
        }
        if ends.len() >= need {
            while ends.len() < n {
                ends.push(u64::MAX);
            }
            ends.sort_unstable();
            // What object storage holds of the range is part of it whatever the replicas
            // still have (they drop what is offloaded, and may forget an idle range whose
            // WAL records were all reclaimed).
            return Ok((ends[n - ack].max(offloaded_end), answered));
        }
        if Instant::now() + backoff > deadline {
            return Err(last_error.unwrap_or_else(|| {
                RpcError::new(ErrorCode::Unavailable, "too few replicas answered the seal")
            }));
        }
        tracing::info!(
            stream = range.stream_id,
            range = range.index,
            answered = ends.len(),
            need,
            "waiting for more replicas to seal"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Copies `[local end, end)` of the sealed `range` to each replica that answered the seal
/// with less than `end`, from one that holds it, so the sealed tail (which may never have
/// been acknowledged, but is now part of the stream) does not live on a single copy. Best
/// effort: a replica that cannot be repaired is logged and left; the data stays readable
/// from the source.
pub(crate) async fn repair_sealed_tail(
    client: &StreamClient,
    range: &RangeInfo,
    epoch: u64,
    end: u64,
    answered: &[(NodeId, u64)],
) {
    let Some(&(source, _)) = answered.iter().find(|(_, local)| *local >= end) else {
        return;
    };
    for &(target, local) in answered.iter().filter(|(_, local)| *local < end) {
        match copy_range_tail(client, range, epoch, end, source, target, local).await {
            Ok(()) => tracing::info!(
                stream = range.stream_id,
                range = range.index,
                from = local,
                end,
                source,
                target,
                "copied the sealed tail to a replica that missed it"
            ),
            Err(e) => tracing::warn!(
                stream = range.stream_id,
                range = range.index,
                target,
                "could not copy the sealed tail to a replica that missed it: {e}"
            ),
        }
    }
}

async fn copy_range_tail(
    client: &StreamClient,
    range: &RangeInfo,
    epoch: u64,
    end: u64,
    source: NodeId,
    target: NodeId,
    from: u64,
) -> Result<(), RpcError> {
    let reader = client.nodes.client(source).await?;
    let writer = client.nodes.client(target).await?;
    // The target must know the final end before it takes appends on a sealed range.
    writer
        .call(Seal {
            stream_id: range.stream_id,
            index: range.index,
            epoch,
            range_start: range.start,
            end: Some(end),
            node: target,
        })
        .await?;
    let mut offset = from;
    while offset < end {
        let answer = reader
            .call(Fetch {
                stream_id: range.stream_id,
                index: range.index,
                offset,
                end,
                max_bytes: REPAIR_READ_BYTES,
            })
            .await?;
        let Some(last) = answer.batches.last() else {
            return Err(RpcError::new(
                ErrorCode::Unavailable,
                format!("replica {source} returned nothing at {offset}"),
            ));
        };
        let next = last.offset + last.count as u64;
        for batch in answer.batches {
            let appended = writer
                .call(Append {
                    stream_id: range.stream_id,
                    index: range.index,
                    epoch,
                    range_start: range.start,
                    offset: batch.offset,
                    count: batch.count,
                    confirmed: end,
                    crc: batch.crc,
                    payload: batch.payload,
                })
                .await;
            match appended {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::AlreadyCommitted => {}
                Err(e) => return Err(e),
            }
        }
        offset = next;
    }
    Ok(())
}

/// Bytes read from the source per call while copying a sealed tail.
const REPAIR_READ_BYTES: u32 = 4 << 20;

#[cfg(test)]
mod tests;
