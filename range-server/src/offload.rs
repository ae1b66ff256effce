//! The offloader: uploads the confirmed data of the ranges this server is the offload owner
//! of (PD says which, and from where, in heartbeat answers) as objects, and commits each at
//! PD.
//!
//! One object carries the pending data of every such range, so many small partitions cost
//! few PUTs. An upload starts when the pending bytes reach `object_bytes` or the oldest
//! pending data is `max_age` old. The order is fixed: reserve an id at PD, PUT the object,
//! then commit it at PD; a crash or failure between leaves an uploaded orphan that PD's
//! sweeper deletes, never a committed object that is missing. Only after the commit does PD
//! tell the replicas (in heartbeat answers) that the data is offloaded, and only then do they
//! drop it from their indexes and let [`crate::reclaim`] delete its WAL segments.
//!
//! Every few seconds (every 30 s while uploads have a backlog: merging competes with them) it
//! also has [`crate::compact`] merge the small objects of the streams it offloads. It reads
//! through the range actors (as fetches do) and never changes a range.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::model::StreamId;
use protocol::object::{ObjectBatch, ObjectBuilder};
use protocol::pd::{CommitObject, OffloadTask, PrepareObject, SliceSpec};
use protocol::range_rpc::Fetch;
use protocol::{ErrorCode, RpcError};
use stream_client::{Objects, PdClient};
use tokio::sync::oneshot;

use crate::compact::{compact_streams, CompactConfig};
use crate::metrics::Metrics;
use crate::range::{forward, OffloadStatusMsg};
use crate::registry::{RangeKey, RangeRegistry};

/// How long an assignment lasts without PD repeating it (heartbeats repeat it every cycle).
const ASSIGNMENT_TTL: Duration = Duration::from_secs(10);
/// Bytes read from a range per fetch while building an object.
const READ_CHUNK: u32 = 4 << 20;

#[derive(Debug, Clone)]
pub struct OffloadConfig {
    /// Upload once this many bytes are pending.
    pub object_bytes: u64,
    /// Upload once the oldest pending data is this old.
    pub max_age: Duration,
    /// Merging the small objects of the streams offloaded here.
    pub compact: CompactConfig,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        OffloadConfig {
            object_bytes: 16 << 20,
            max_age: Duration::from_secs(30),
            compact: CompactConfig::default(),
        }
    }
}

/// How often the streams offloaded here are looked at for small objects to merge, while
/// offload is caught up.
const COMPACT_EVERY: Duration = Duration::from_secs(2);
/// How often they are looked at even while offload has a backlog: merging re-reads and
/// re-writes objects, which would slow offload (and so produce) down during a burst, but
/// must not wait for good under a steady full load.
const COMPACT_EVERY_UNDER_BACKLOG: Duration = Duration::from_secs(30);

/// One assignment: upload from `from`, up to `sealed_end` when the range is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Assignment {
    from: u64,
    sealed_end: Option<u64>,
    seen: Instant,
}

/// The ranges PD asked this server to offload, with the offset each continues from.
#[derive(Default)]
pub struct OffloadTasks {
    tasks: Mutex<HashMap<RangeKey, Assignment>>,
}

impl OffloadTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RangeKey, Assignment>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes PD's assignments from one heartbeat answer.
    pub fn assign(&self, tasks: &[OffloadTask]) {
        let seen = Instant::now();
        let mut map = self.lock();
        for t in tasks {
            let assignment = Assignment {
                from: t.from,
                sealed_end: t.sealed_end,
                seen,
            };
            map.insert((t.stream_id, t.index), assignment);
        }
    }

    /// The current assignments (range, from, sealed end); forgets those PD stopped repeating.
    fn current(&self) -> Vec<(RangeKey, u64, Option<u64>)> {
        let mut map = self.lock();
        map.retain(|_, a| a.seen.elapsed() < ASSIGNMENT_TTL);
        let mut out: Vec<_> = map
            .iter()
            .map(|(k, a)| (*k, a.from, a.sealed_end))
            .collect();
        out.sort();
        out
    }

    /// The stream's data is offloaded up to `end` now.
    fn advanced(&self, stream_id: StreamId, end: u64) {
        for ((s, _), a) in self.lock().iter_mut() {
            if *s == stream_id {
                a.from = a.from.max(end);
            }
        }
    }
}

/// One range's data waiting to be offloaded.
struct Pending {
    key: RangeKey,
    from: u64,
    end: u64,
    /// Payload bytes waiting (an estimate: the batches that start in `[from, end)`).
    bytes: u64,
    /// When data of the range was first seen waiting.
    since: Instant,
}

/// Runs the offloader forever.
pub async fn run(
    config: OffloadConfig,
    objects: Objects,
    pd: PdClient,
    ranges: Arc<RangeRegistry>,
    tasks: Arc<OffloadTasks>,
    node_id: Arc<AtomicU64>,
    metrics: Metrics,
) {
    let tick = (config.max_age / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    // When each range first had data waiting (the age threshold counts from it).
    let mut waiting_since: HashMap<RangeKey, Instant> = HashMap::new();
    let throttle = actors::throttle::LogThrottle::new();
    let mut backoff = tick;
    let mut compacted = Instant::now();
    let mut again = false;
    // Whether the last look found an object's worth (or more) waiting, or a WAL pressed.
    let mut backlog = false;
    loop {
        // Right after an upload, look again at once: more may be due (a backlog drains at
        // the speed of uploads, not one object per tick).
        if !std::mem::take(&mut again) {
            tokio::time::sleep(tick).await;
        }
        let compact_every = if backlog {
            COMPACT_EVERY_UNDER_BACKLOG
        } else {
            COMPACT_EVERY
        };
        if compacted.elapsed() >= compact_every {
            compacted = Instant::now();
            let streams = tasks
                .current()
                .into_iter()
                .map(|((s, _), _, _)| s)
                .collect();
            let node = node_id.load(Ordering::Acquire);
            let merged = compact_streams(&config.compact, &objects, &pd, node, &streams).await;
            metrics.objects_merged.inc_by(merged as u64);
        }
        let mut pending = Vec::new();
        let mut bytes = 0;
        for (key, from, sealed_end) in tasks.current() {
            let Some(addr) = ranges.get(key) else {
                continue;
            };
            let (tx, rx) = oneshot::channel();
            addr.do_send(OffloadStatusMsg {
                from,
                sealed_end,
                reply: tx,
            });
            let Ok((end, range_bytes)) = rx.await else {
                continue;
            };
            if end > from {
                let since = *waiting_since.entry(key).or_insert_with(Instant::now);
                pending.push(Pending {
                    key,
                    from,
                    end,
                    bytes: range_bytes,
                    since,
                });
                bytes += range_bytes;
            } else {
                waiting_since.remove(&key);
            }
        }
        waiting_since.retain(|k, _| pending.iter().any(|p| p.key == *k));
        metrics.offload_lag_bytes.set(bytes as i64);
        let oldest = waiting_since.values().min().map(|t| t.elapsed());
        // A WAL past half its budget uploads everything now: a quiet stream's few batches
        // would otherwise hold its oldest segments until they are old enough.
        let pressed = ranges.wal().is_half_full();
        backlog = pressed || bytes >= config.object_bytes;
        if pending.is_empty()
            || (bytes < config.object_bytes
                && !pressed
                && oldest.is_none_or(|age| age < config.max_age))
        {
            continue;
        }
        // The longest waiting first, so that no range starves behind busier ones.
        pending.sort_by_key(|p| (p.since, p.key));
        let node = node_id.load(Ordering::Acquire);
        match upload(&config, &objects, &pd, &ranges, node, &pending).await {
            Ok(Some((id, size, offloaded))) => {
                backoff = tick;
                metrics.objects_uploaded.inc();
                metrics.object_bytes_uploaded.inc_by(size);
                for (stream, end) in &offloaded {
                    tasks.advanced(*stream, *end);
                }
                // Ranges uploaded to their end wait no more; the others keep their age.
                waiting_since.retain(|key, _| {
                    let done = |p: &Pending| {
                        p.key == *key
                            && offloaded
                                .iter()
                                .any(|(s, end)| *s == key.0 && *end >= p.end)
                    };
                    !pending.iter().any(done)
                });
                again = true;
                tracing::debug!(
                    object = id,
                    size,
                    streams = offloaded.len(),
                    "object committed"
                );
            }
            Ok(None) => {}
            Err(e) => {
                metrics.offload_failures.inc();
                if let Some(failed) = throttle.hit() {
                    tracing::warn!(failed, error = %e, "offload failed; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Builds one object from the pending ranges, uploads it and commits it. Returns the object's
/// id, size and the streams' offloaded ends as PD answered; None when nothing was read.
async fn upload(
    config: &OffloadConfig,
    objects: &Objects,
    pd: &PdClient,
    ranges: &RangeRegistry,
    node: u64,
    pending: &[Pending],
) -> Result<Option<(u64, u64, Vec<(StreamId, u64)>)>, RpcError> {
    // Which ranges go in (`pending` is longest waiting first), about `object_bytes` of them;
    // an object holds its streams in stream order.
    let mut chosen: Vec<&Pending> = Vec::new();
    let mut planned = 0;
    for p in pending {
        if planned >= config.object_bytes {
            break;
        }
        planned += p.bytes.max(1);
        chosen.push(p);
    }
    chosen.sort_by_key(|p| p.key);
    let mut builder = ObjectBuilder::new();
    let mut slices = Vec::new();
    for p in chosen {
        if slices
            .last()
            .is_some_and(|s: &SliceSpec| s.stream_id == p.key.0)
        {
            // One stream's ranges are offloaded in order; a second one is a stale assignment.
            continue;
        }
        let Some(addr) = ranges.get(p.key) else {
            continue;
        };
        let mut offset = p.from;
        let mut first = None;
        let mut bytes = 0u64;
        // Every chosen range gets at least one read, so none starves.
        while offset < p.end && (first.is_none() || (builder.len() as u64) < config.object_bytes) {
            let fetched = forward(
                &addr,
                Fetch {
                    stream_id: p.key.0,
                    index: p.key.1,
                    offset,
                    end: p.end,
                    // An object stops near `object_bytes` (a fetch returns at least one batch).
                    max_bytes: (config.object_bytes.saturating_sub(builder.len() as u64))
                        .clamp(1, u64::from(READ_CHUNK)) as u32,
                },
            )
            .await
            .map_err(|_| RpcError::new(ErrorCode::NotReady, "range stopped"))
            .and_then(|r| r);
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(e) => {
                    // This range alone is left out (what was read of it so far stays): one
                    // failing range must not hold up the others' offload.
                    tracing::warn!(
                        stream = p.key.0,
                        range = p.key.1,
                        offset,
                        "offload read failed; leaving the range out of this object: {e}"
                    );
                    break;
                }
            };
            let Some(last) = fetched.batches.last() else {
                break;
            };
            offset = last.offset + u64::from(last.count);
            for b in fetched.batches {
                first.get_or_insert(b.offset);
                bytes += b.payload.len() as u64;
                let batch = ObjectBatch {
                    offset: b.offset,
                    count: b.count,
                    crc: b.crc,
                    payload: b.payload,
                };
                builder.add(p.key.0, &batch).map_err(|e| {
                    RpcError::new(ErrorCode::Internal, format!("building an object: {e}"))
                })?;
            }
        }
        if let Some(start) = first {
            slices.push(SliceSpec {
                stream_id: p.key.0,
                start,
                end: offset,
                bytes,
            });
        }
    }
    if slices.is_empty() {
        return Ok(None);
    }
    let (object, _) = builder.finish();
    let size = object.len() as u64;
    let id = pd.call(PrepareObject { node_id: node }).await?;
    put(objects, id, object).await?;
    let committed = pd
        .call(CommitObject {
            object_id: id,
            size,
            slices,
        })
        .await?;
    Ok(Some((id, size, committed.offloaded)))
}

async fn put(objects: &Objects, id: u64, object: Bytes) -> Result<(), RpcError> {
    if let Ok(ms) = std::env::var("STRATA_TEST_OFFLOAD_COMMIT_DELAY_MS") {
        // Fault drills only: the object is uploaded, not committed, for this long.
        objects.put(id, object).await?;
        tracing::warn!(object = id, "uploaded; holding the commit (test delay)");
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return Ok(());
    }
    objects.put(id, object).await
}
