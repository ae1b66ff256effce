//! Group commit of PD's Raft writes: concurrent [`crate::service::PdService::write`] calls
//! are gathered and proposed as one `Command::Batch` log entry.
//!
//! openraft 0.9 makes every proposal its own trip through the Raft core (append, flush,
//! commit, apply), about 0.7 ms here, one after another: a failover's burst of partition
//! opens (several writes per partition) queued behind each other for over a second. One
//! writer task proposes whatever has queued while the previous proposal was in flight (at
//! most [`MAX_BATCH`] commands), so a lone write waits for nothing and a burst shares trips.
//!
//! Owns: the queue of writes not yet proposed, and the metrics of the writes
//! (`pd_raft_write_seconds`: from queueing to the applied result; `pd_raft_proposal_seconds`:
//! one proposal's trip through Raft; `pd_raft_proposal_commands`: commands per proposal).
//! Must not: reorder writes (they are proposed in the order they were queued, and a batch
//! applies in order) or hold a write back while the writer is idle. Bounded by the callers:
//! each queued write is a caller awaiting its answer.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use protocol::RpcError;
use tokio::sync::{oneshot, Notify};

use crate::state::{Command, Response};

/// Most commands proposed in one log entry.
pub const MAX_BATCH: usize = 256;

/// A queued write and where its answer goes.
pub type Queued = (Command, oneshot::Sender<Result<Response, RpcError>>);

pub struct Writes {
    queue: Mutex<VecDeque<Queued>>,
    ready: Notify,
    write_seconds: Histogram,
    proposal_seconds: Histogram,
    proposal_commands: Histogram,
}

impl Default for Writes {
    fn default() -> Self {
        Writes {
            queue: Mutex::default(),
            ready: Notify::new(),
            // 50 µs .. ~6.5 s.
            write_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 18)),
            proposal_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 18)),
            // 1 .. 256.
            proposal_commands: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
        }
    }
}

impl Writes {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pd_raft_write_seconds",
            "A PD write from queueing to its applied result (waiting, proposal, commit, apply)",
            self.write_seconds.clone(),
        );
        registry.register(
            "pd_raft_proposal_seconds",
            "One Raft proposal (a command or a batch) from proposing to applied",
            self.proposal_seconds.clone(),
        );
        registry.register(
            "pd_raft_proposal_commands",
            "Commands per Raft proposal (concurrent writes gathered into one log entry)",
            self.proposal_commands.clone(),
        );
    }

    /// Queues `cmd`; the answer comes on the returned receiver.
    pub fn push(&self, cmd: Command) -> oneshot::Receiver<Result<Response, RpcError>> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((cmd, tx));
        self.ready.notify_one();
        rx
    }

    /// Times one write (queueing to answer).
    pub fn observe_write(&self, since: Instant) {
        self.write_seconds.observe(since.elapsed().as_secs_f64());
    }

    /// Times one proposal of `commands` commands.
    pub fn observe_proposal(&self, since: Instant, commands: usize) {
        self.proposal_seconds.observe(since.elapsed().as_secs_f64());
        self.proposal_commands.observe(commands as f64);
    }

    /// Waits for queued writes and takes the oldest, at most [`MAX_BATCH`].
    pub async fn next_batch(&self) -> Vec<Queued> {
        loop {
            {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if !queue.is_empty() {
                    let n = queue.len().min(MAX_BATCH);
                    return queue.drain(..n).collect();
                }
            }
            self.ready.notified().await;
        }
    }
}
