//! Group commit of PD's Raft writes: concurrent [`crate::service::PdService::write`] calls
//! are gathered and proposed as one `Command::Batch` log entry.
//!
//! openraft 0.9 makes every proposal its own trip through the Raft core (append, flush,
//! commit, apply), about 0.7 ms here, one after another: a failover's burst of partition
//! opens (several writes per partition) queued behind each other for over a second. One
//! writer task proposes whatever has queued while the previous proposal was in flight (at
//! most [`MAX_BATCH`] commands), so a lone write waits for nothing and a burst shares trips.
//!
//! Owns: the queue of writes not yet proposed. Must not: reorder writes (they are proposed in
//! the order they were queued, and a batch applies in order) or hold a write back while the
//! writer is idle. Bounded by the callers: each queued write is a caller awaiting its answer.

use std::collections::VecDeque;
use std::sync::Mutex;

use protocol::RpcError;
use tokio::sync::{oneshot, Notify};

use crate::state::{Command, Response};

/// Most commands proposed in one log entry.
pub const MAX_BATCH: usize = 256;

/// A queued write and where its answer goes.
pub type Queued = (Command, oneshot::Sender<Result<Response, RpcError>>);

#[derive(Default)]
pub struct Writes {
    queue: Mutex<VecDeque<Queued>>,
    ready: Notify,
}

impl Writes {
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
