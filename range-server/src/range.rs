//! One stream range on this server: its rules ([`RangeState`], pure and unit-tested) and the
//! actix actor that owns it ([`RangeActor`]).
//!
//! The actor decides, in message order, whether an append is accepted, hands accepted batches
//! to the WAL without waiting for the sync (many appends stay in flight), and answers each
//! append once the WAL reports its record durable. It never blocks its thread: disk reads for
//! fetches run on tokio's blocking pool. It does not know about other ranges or about PD.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message};
use bytes::Bytes;
use protocol::model::RangeReport;
use protocol::range_rpc::{
    Append, AppendResponse, Batch, Commit, Fetch, FetchResponse, Seal, SealResponse,
    FETCH_BATCH_OVERHEAD, MAX_FETCH_BYTES,
};
use protocol::{ErrorCode, Rpc, RpcError};
use tokio::sync::oneshot;

use crate::cache::TailCache;
use crate::metrics::Metrics;
use crate::reclaim::SegmentPins;
use crate::wal::WalRecord;
use crate::wal::{BatchEntry, Location, RecoveredRange, SealRecord, Wal, WalError};

/// Where an answer goes: every request message carries its own reply channel, so requests
/// can be queued with `do_send` (which keeps their order) and answered later.
pub type Reply<T> = oneshot::Sender<Result<T, RpcError>>;

/// The bookkeeping of one range, without I/O.
#[derive(Debug, Clone)]
pub struct RangeState {
    pub stream_id: u64,
    pub index: u32,
    /// Newest writer epoch seen; older ones are fenced.
    pub epoch: u64,
    pub start: u64,
    /// Next offset accepted (includes appends still in flight).
    pub next: u64,
    /// Every offset below this is fsynced here.
    pub durable: u64,
    /// The writer's confirmed offset, as far as this server knows.
    pub confirmed: u64,
    pub sealed: bool,
    /// The range's end as decided at PD, once a seal carried it.
    pub final_end: Option<u64>,
    /// The stream's start offset as PD last told it: nothing below is read again, and the
    /// batches wholly below it are no longer indexed.
    pub trimmed_to: u64,
    batches: BTreeMap<u64, BatchEntry>,
}

impl RangeState {
    pub fn new(stream_id: u64, index: u32, epoch: u64, start: u64) -> Self {
        Self::from_recovered(RecoveredRange::new(stream_id, index, epoch, start))
    }

    /// Everything recovery found is durable (recovery synced it). A range whose first
    /// records were in reclaimed segments (offloaded or trimmed) serves from its first
    /// remaining batch on.
    pub fn from_recovered(r: RecoveredRange) -> Self {
        let first_kept = r.batches.keys().next().copied().unwrap_or(r.start);
        RangeState {
            stream_id: r.stream_id,
            index: r.index,
            epoch: r.epoch,
            start: r.start,
            next: r.next,
            durable: r.next,
            confirmed: r.confirmed,
            sealed: r.sealed,
            final_end: r.final_end,
            trimmed_to: first_kept.max(r.start),
            batches: r.batches,
        }
    }

    fn name(&self) -> String {
        format!("range {}/{}", self.stream_id, self.index)
    }

    /// An error about this range: `range <stream>/<index>: <what>`.
    fn error(&self, code: ErrorCode, what: std::fmt::Arguments) -> RpcError {
        RpcError::new(code, format!("{}: {what}", self.name()))
    }

    fn check_epoch(&self, epoch: u64) -> Result<(), RpcError> {
        if epoch < self.epoch {
            return Err(self.error(
                ErrorCode::Fenced,
                format_args!(
                    "epoch {epoch} is older than the range's epoch {}",
                    self.epoch
                ),
            ));
        }
        Ok(())
    }

    /// Applies the append rules; on success the append is accepted (`next` moves past it) and
    /// must be written to the WAL.
    pub fn check_append(&mut self, req: &Append) -> Result<(), RpcError> {
        self.check_epoch(req.epoch)?;
        // A sealed range takes appends only below its final end: a new writer copying the
        // sealed tail from the replica that has it (so the tail is not left on one copy).
        let repair = req
            .offset
            .checked_add(req.count as u64)
            .is_some_and(|end| self.final_end.is_some_and(|final_end| end <= final_end));
        if self.sealed && !repair {
            return Err(RpcError::new(
                ErrorCode::RangeSealed,
                format!("{} is sealed", self.name()),
            ));
        }
        if protocol::checksum(&req.payload) != req.crc {
            return Err(self.error(
                ErrorCode::BadChecksum,
                format_args!("payload CRC mismatch at offset {}", req.offset),
            ));
        }
        if req.range_start != self.start {
            return Err(self.error(
                ErrorCode::InvalidArgument,
                format_args!(
                    "range start {} differs from this server's {}",
                    req.range_start, self.start
                ),
            ));
        }
        if req.count == 0 {
            return Err(self.error(
                ErrorCode::InvalidArgument,
                format_args!("a batch must hold at least one offset"),
            ));
        }
        let end = req.offset.checked_add(req.count as u64).ok_or_else(|| {
            self.error(
                ErrorCode::InvalidArgument,
                format_args!("offset {} overflows", req.offset),
            )
        })?;
        self.epoch = self.epoch.max(req.epoch);
        self.confirmed = self.confirmed.max(req.confirmed);
        if end <= self.durable {
            return Err(self.error(
                ErrorCode::AlreadyCommitted,
                format_args!(
                    "offsets {}..{end} are already durable (durable end {})",
                    req.offset, self.durable
                ),
            ));
        }
        // Not durable yet, so the append must start exactly at the next offset.
        let (offset, next) = (req.offset, self.next);
        match offset.cmp(&next) {
            std::cmp::Ordering::Equal => {}
            std::cmp::Ordering::Less => {
                let what = format_args!("offset {offset} is being written (next {next})");
                return Err(self.error(ErrorCode::InFlight, what));
            }
            std::cmp::Ordering::Greater => {
                let what = format_args!("offset {offset} is past the next expected offset {next}");
                return Err(self.error(ErrorCode::Overtaking, what));
            }
        }
        self.next = end;
        Ok(())
    }

    /// The stream now starts at `start`: forgets the batches wholly below it.
    pub fn trim_to(&mut self, start: u64) {
        if start <= self.trimmed_to {
            return;
        }
        self.trimmed_to = start;
        // The batch holding `start` (if any) stays; every one before it goes.
        let keep_from = match self.batches.range(..=start).next_back() {
            Some((&off, e)) if off + e.count as u64 > start => off,
            _ => start,
        };
        self.batches = self.batches.split_off(&keep_from);
    }

    /// Batches indexed (for tests and metrics).
    pub fn indexed_batches(&self) -> usize {
        self.batches.len()
    }

    /// The oldest WAL segment holding a batch this range still indexes (batches are
    /// written in offset order, so it is the first batch's).
    pub fn lowest_segment(&self) -> Option<u64> {
        self.batches.values().next().map(|e| e.loc.segment)
    }

    /// Payload bytes of the indexed batches that start in `[from, end)`.
    pub fn bytes_between(&self, from: u64, end: u64) -> u64 {
        if from >= end {
            return 0;
        }
        self.batches
            .range(from..end)
            .map(|(_, e)| u64::from(e.payload_len))
            .sum()
    }

    /// Records that the batch at `offset` is durable at `entry.loc`.
    pub fn batch_durable(&mut self, offset: u64, entry: BatchEntry) {
        let end = offset + entry.count as u64;
        self.durable = self.durable.max(end);
        // A batch wholly below the stream's start (or offloaded end) as PD last said is
        // never read here: indexed, it would only hold its WAL segment.
        if end > self.trimmed_to {
            self.batches.insert(offset, entry);
        }
    }

    /// Seals the range (idempotent); the returned record must be written to the WAL and the
    /// seal answered after its sync.
    pub fn seal(&mut self, epoch: u64, end: Option<u64>) -> Result<SealRecord, RpcError> {
        self.check_epoch(epoch)?;
        if let Some(e) = end {
            if e < self.start {
                return Err(self.error(
                    ErrorCode::InvalidArgument,
                    format_args!("end {e} is before the range start {}", self.start),
                ));
            }
            if let Some(known) = self.final_end {
                if known != e {
                    return Err(self.error(
                        ErrorCode::InvalidArgument,
                        format_args!("already sealed at {known}, not {e}"),
                    ));
                }
            }
        }
        self.sealed = true;
        self.epoch = self.epoch.max(epoch);
        self.final_end = self.final_end.or(end);
        Ok(SealRecord {
            stream_id: self.stream_id,
            index: self.index,
            epoch: self.epoch,
            range_start: self.start,
            local_end: self.next,
            final_end: self.final_end,
        })
    }

    pub fn commit(&mut self, epoch: u64, confirmed: u64) -> Result<(), RpcError> {
        self.check_epoch(epoch)?;
        self.epoch = self.epoch.max(epoch);
        self.confirmed = self.confirmed.max(confirmed);
        Ok(())
    }

    /// Offsets below this may be served: up to the final end once known, else up to the
    /// confirmed offset; never past durable data.
    pub fn readable_end(&self) -> u64 {
        let limit = self.final_end.unwrap_or(self.confirmed);
        limit.min(self.durable).max(self.start)
    }

    /// What one fetch may read. A reader that names an end got it from PD's record of the
    /// sealed range, so everything below it is committed: it is served from local durable
    /// data even if this replica never heard the final end (the seal notice is best effort)
    /// or the writer's last confirmed offset. Every replica of a range holds a prefix of the
    /// same single writer's appends, so local data below that end is the stream's data.
    pub fn readable_end_for(&self, requested_end: u64) -> u64 {
        let limit = match self.final_end {
            Some(end) => end,
            None if requested_end != u64::MAX => requested_end.max(self.confirmed),
            None => self.confirmed,
        };
        limit.min(self.durable).max(self.start)
    }

    /// Chooses the batches a fetch returns: from the one containing `offset`, before `end`,
    /// before the readable end, within `max_bytes` and [`MAX_FETCH_BYTES`] (at least one
    /// batch).
    pub fn plan_fetch(&self, req: &Fetch) -> Result<Vec<(u64, BatchEntry)>, RpcError> {
        let readable = self.readable_end_for(req.end);
        if self.final_end.is_some_and(|end| req.offset >= end) {
            // Past the end of a sealed range: nothing here, and the answer's `sealed_end`
            // tells a reader with a stale descriptor to look up the next range.
            return Ok(Vec::new());
        }
        if req.offset < self.start.max(self.trimmed_to) {
            return Err(self.error(
                ErrorCode::OffsetOutOfRange,
                format_args!(
                    "offset {} is before the range start {} or the stream start {}",
                    req.offset, self.start, self.trimmed_to
                ),
            ));
        }
        if req.offset >= readable {
            return Err(self.error(
                ErrorCode::OffsetOutOfRange,
                format_args!(
                    "offset {} is at or past the readable end {readable}",
                    req.offset
                ),
            ));
        }
        let first = match self.batches.range(..=req.offset).next_back() {
            Some((&off, e)) if off + e.count as u64 > req.offset => off,
            _ => match self.batches.range(req.offset..).next() {
                Some((&off, _)) => off,
                None => return Ok(Vec::new()),
            },
        };
        // Whatever the reader asks, the answer must fit one frame.
        let max_bytes = u64::from(req.max_bytes).min(MAX_FETCH_BYTES);
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for (&off, e) in self.batches.range(first..) {
            if off >= req.end || off + e.count as u64 > readable {
                break;
            }
            let cost = e.payload_len as u64 + FETCH_BATCH_OVERHEAD;
            if !out.is_empty() && bytes + cost > max_bytes {
                break;
            }
            bytes += cost;
            out.push((off, *e));
        }
        Ok(out)
    }

    pub fn report(&self) -> RangeReport {
        RangeReport {
            stream_id: self.stream_id,
            index: self.index,
            epoch: self.epoch,
            start: self.start,
            next: self.next,
            sealed_end: self.final_end,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The actor

/// A request handed to a range actor, with where its answer goes.
pub struct Request<R: Rpc> {
    pub req: R,
    pub reply: Reply<R::Response>,
    /// The span of the RPC that asked (the actor's own spans are its children).
    pub span: tracing::Span,
}

impl<R: Rpc> Message for Request<R> {
    type Result = ();
}

pub type AppendMsg = Request<Append>;
pub type FetchMsg = Request<Fetch>;
pub type SealMsg = Request<Seal>;
pub type CommitMsg = Request<Commit>;

/// Hands `req` to the range actor now (`do_send`, so the requests of one caller keep their
/// order); the receiver gets the answer.
pub fn forward<R: Rpc>(
    addr: &Addr<RangeActor>,
    req: R,
) -> oneshot::Receiver<Result<R::Response, RpcError>>
where
    RangeActor: Handler<Request<R>>,
{
    let (reply, rx) = oneshot::channel();
    addr.do_send(Request {
        req,
        reply,
        span: tracing::Span::current(),
    });
    rx
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportMsg {
    pub reply: oneshot::Sender<RangeReport>,
}

/// Sent by the WAL thread when the record of pending operation `seq` is durable (or failed).
#[derive(Message)]
#[rtype(result = "()")]
struct WalDone {
    seq: u64,
    result: Result<Location, WalError>,
}

enum PendingKind {
    Append {
        offset: u64,
        count: u32,
        crc: u32,
        payload: Bytes,
        reply: Reply<AppendResponse>,
        /// Open until the append is answered (durable or failed).
        _span: tracing::Span,
    },
    Seal {
        reply: Reply<SealResponse>,
    },
}

struct Pending {
    kind: PendingKind,
    result: Option<Result<Location, WalError>>,
}

pub struct RangeActor {
    state: RangeState,
    wal: Wal,
    cache: Arc<TailCache>,
    metrics: Metrics,
    /// Operations written to the WAL and not answered yet, by submission number.
    pending: BTreeMap<u64, Pending>,
    next_seq: u64,
    /// This range's share of the `indexed_batches` gauge.
    counted: usize,
    /// Where this range says which WAL segments it still needs.
    pins: Arc<SegmentPins>,
    /// While records are written and not yet answered: the segment appends went to when the
    /// first of them was submitted.
    pending_floor: Option<u64>,
}

impl RangeActor {
    pub fn new(
        state: RangeState,
        wal: Wal,
        cache: Arc<TailCache>,
        metrics: Metrics,
        pins: Arc<SegmentPins>,
    ) -> Self {
        let mut actor = RangeActor {
            state,
            wal,
            cache,
            metrics,
            pending: BTreeMap::new(),
            next_seq: 0,
            counted: 0,
            pins,
            pending_floor: None,
        };
        actor.count_index();
        actor
    }

    fn key(&self) -> (u64, u32) {
        (self.state.stream_id, self.state.index)
    }

    /// Brings the `indexed_batches` gauge and this range's WAL pin up to date with its index.
    fn count_index(&mut self) {
        self.pin();
        let now = self.state.indexed_batches();
        let gauge = &self.metrics.indexed_batches;
        if now > self.counted {
            gauge.inc_by((now - self.counted) as i64);
        } else {
            gauge.dec_by((self.counted - now) as i64);
        }
        self.counted = now;
    }

    /// Pins the oldest WAL segment this range needs: the one of its oldest indexed batch, or
    /// for records written and not yet indexed, the segment appends went to when the first
    /// of them was submitted (they are in it or a later one). A record is thus pinned from
    /// its submission on, never deleted between its write and its indexing.
    fn pin(&mut self) {
        let lowest = match (self.state.lowest_segment(), self.pending_floor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.pins.set(self.key(), lowest);
    }

    fn submit(&mut self, record: WalRecord, kind: PendingKind, addr: Addr<RangeActor>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.pending.is_empty() {
            self.pending_floor = Some(self.wal.current_segment());
            self.pin();
        }
        self.pending.insert(seq, Pending { kind, result: None });
        self.wal.submit(
            record,
            Box::new(move |result| addr.do_send(WalDone { seq, result })),
        );
    }

    /// Answers pending operations in submission order, as far as their results are known.
    fn drain(&mut self) {
        self.drain_answers();
        if self.pending.is_empty() && self.pending_floor.take().is_some() {
            self.pin();
        }
    }

    fn drain_answers(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().result.is_none() {
                break;
            }
            let Pending { kind, result } = entry.remove();
            let Some(result) = result else { break };
            match (kind, result) {
                (
                    PendingKind::Append {
                        offset,
                        count,
                        crc,
                        payload,
                        reply,
                        _span,
                    },
                    Ok(loc),
                ) => {
                    let len = payload.len();
                    self.state.batch_durable(
                        offset,
                        BatchEntry {
                            count,
                            crc,
                            payload_len: len as u32,
                            loc,
                        },
                    );
                    self.count_index();
                    self.cache
                        .insert((self.state.stream_id, self.state.index, offset), payload);
                    self.metrics.appends.inc();
                    self.metrics.append_bytes.inc_by(len as u64);
                    let _ = reply.send(Ok(AppendResponse {
                        durable: self.state.durable,
                    }));
                }
                (PendingKind::Append { reply, .. }, Err(e)) => {
                    self.metrics.append_errors.inc();
                    let _ = reply.send(Err(e.into()));
                }
                (PendingKind::Seal { reply }, Ok(_)) => {
                    let _ = reply.send(Ok(SealResponse {
                        local_end: self.state.durable,
                    }));
                }
                (PendingKind::Seal { reply }, Err(e)) => {
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
    }
}

impl Actor for RangeActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.metrics.indexed_batches.dec_by(self.counted as i64);
        self.counted = 0;
        self.pins.set(self.key(), None);
    }
}

impl Handler<AppendMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: AppendMsg, ctx: &mut Context<Self>) {
        let AppendMsg { req, reply, span } = msg;
        if let Some(why) = self.wal.failure() {
            self.metrics.append_errors.inc();
            let _ = reply.send(Err(WalError::Failed(why).into()));
            return;
        }
        if self.wal.is_full() {
            self.metrics.append_errors.inc();
            self.metrics.storage_full.inc();
            let _ = reply.send(Err(RpcError::new(
                ErrorCode::StorageFull,
                format!(
                    "range {}/{}: the WAL is at its budget (--wal-max-bytes) until offload frees space",
                    req.stream_id, req.index
                ),
            )));
            return;
        }
        if let Err(e) = self.state.check_append(&req) {
            self.metrics.append_errors.inc();
            let _ = reply.send(Err(e));
            return;
        }
        // From here to the answer: the WAL write and its fsync (closed when dropped). Only
        // as part of a traced request: alone it would be a trace of its own.
        let span = if span.is_disabled() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                parent: &span,
                "wal.append",
                stream = req.stream_id,
                range = req.index,
                offset = req.offset,
                bytes = req.payload.len()
            )
        };
        let kind = PendingKind::Append {
            offset: req.offset,
            count: req.count,
            crc: req.crc,
            payload: req.payload.clone(),
            reply,
            _span: span,
        };
        // The accepted append is the WAL record, as received.
        let record = WalRecord::Data(req);
        self.submit(record, kind, ctx.address());
    }
}

impl Handler<WalDone> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: WalDone, _ctx: &mut Context<Self>) {
        if let Some(p) = self.pending.get_mut(&msg.seq) {
            p.result = Some(msg.result);
        }
        self.drain();
    }
}

impl Handler<SealMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: SealMsg, ctx: &mut Context<Self>) {
        let SealMsg { req, reply, .. } = msg;
        match self.state.seal(req.epoch, req.end) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok(record) => {
                tracing::info!(stream_id = req.stream_id, index = req.index, epoch = req.epoch,
                    end = ?req.end, local_end = record.local_end, "sealing range");
                self.submit(
                    WalRecord::Seal(record),
                    PendingKind::Seal { reply },
                    ctx.address(),
                );
            }
        }
    }
}

impl Handler<CommitMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: CommitMsg, _ctx: &mut Context<Self>) {
        let r = self.state.commit(msg.req.epoch, msg.req.confirmed);
        let _ = msg.reply.send(r);
    }
}

impl Handler<ReportMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: ReportMsg, _ctx: &mut Context<Self>) {
        let _ = msg.reply.send(self.state.report());
    }
}

/// The stream starts at `start` now (PD said so in a heartbeat answer).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TrimMsg {
    pub start: u64,
}

impl Handler<TrimMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: TrimMsg, _ctx: &mut Context<Self>) {
        self.state.trim_to(msg.start);
        self.count_index();
    }
}

/// How much of the range from `from` on could be offloaded now: its readable end and the
/// payload bytes below it. `sealed_end` is the final end as PD knows it: the local data below
/// it is readable even if this replica never heard the seal or the last confirmed offset.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OffloadStatusMsg {
    pub from: u64,
    pub sealed_end: Option<u64>,
    pub reply: oneshot::Sender<(u64, u64)>,
}

impl Handler<OffloadStatusMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: OffloadStatusMsg, _ctx: &mut Context<Self>) {
        let end = self
            .state
            .readable_end_for(msg.sealed_end.unwrap_or(u64::MAX));
        let _ = msg
            .reply
            .send((end, self.state.bytes_between(msg.from, end)));
    }
}

/// PD retired the range: nothing in it is readable any more. The actor stops; requests
/// still queued find it gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireMsg;

impl Handler<RetireMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, _msg: RetireMsg, ctx: &mut Context<Self>) {
        tracing::info!(
            stream_id = self.state.stream_id,
            index = self.state.index,
            "range retired"
        );
        ctx.stop();
    }
}

impl Handler<FetchMsg> for RangeActor {
    type Result = ();

    fn handle(&mut self, msg: FetchMsg, _ctx: &mut Context<Self>) {
        let FetchMsg { req, reply, .. } = msg;
        let plan = match self.state.plan_fetch(&req) {
            Ok(plan) => plan,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.metrics.fetches.inc();
        let readable_end = self.state.readable_end_for(req.end);
        let sealed_end = self.state.final_end;
        let (stream_id, index) = (self.state.stream_id, self.state.index);
        let mut batches: Vec<(u64, BatchEntry, Option<Bytes>)> = plan
            .into_iter()
            .map(|(off, e)| (off, e, self.cache.get(&(stream_id, index, off))))
            .collect();
        let hits = batches.iter().filter(|b| b.2.is_some()).count();
        self.metrics.fetch_cache_hits.inc_by(hits as u64);
        if hits == batches.len() {
            let _ = reply.send(Ok(FetchResponse {
                batches: batches
                    .into_iter()
                    .map(|(offset, e, p)| Batch {
                        offset,
                        count: e.count,
                        crc: e.crc,
                        payload: p.unwrap_or_default(),
                    })
                    .collect(),
                readable_end,
                sealed_end,
            }));
            return;
        }
        self.metrics
            .fetch_disk_reads
            .inc_by((batches.len() - hits) as u64);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            let result = (|| {
                let mut out = Vec::with_capacity(batches.len());
                for (offset, e, cached) in batches.drain(..) {
                    let payload = match cached {
                        Some(p) => p,
                        None => {
                            let mut recs = wal.read_data_blocking(&[e.loc])?;
                            let rec = recs
                                .pop()
                                .ok_or_else(|| WalError::Corrupt(e.loc, "no record read".into()))?;
                            if (rec.stream_id, rec.index, rec.offset, rec.count)
                                != (stream_id, index, offset, e.count)
                            {
                                return Err(WalError::Corrupt(
                                    e.loc,
                                    format!(
                                        "record is {}/{}@{}+{}, expected {stream_id}/{index}@{offset}+{}",
                                        rec.stream_id, rec.index, rec.offset, rec.count, e.count
                                    ),
                                ));
                            }
                            rec.payload
                        }
                    };
                    out.push(Batch {
                        offset,
                        count: e.count,
                        crc: e.crc,
                        payload,
                    });
                }
                Ok(out)
            })();
            let _ = reply.send(match result {
                Ok(batches) => Ok(FetchResponse {
                    batches,
                    readable_end,
                    sealed_end,
                }),
                Err(e) => {
                    tracing::error!(stream_id, index, error = %e, "fetch read failed");
                    Err(RpcError::from(e))
                }
            });
        });
    }
}

#[cfg(test)]
mod tests;
