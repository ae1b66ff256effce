//! The one way the broker reads a stream: a [`Scan`] walks the batches of `[from, end)` in
//! order, first whatever the caller already holds in memory (a partition's tail cache), then
//! the stream itself through the stream client, a bounded chunk per request. Fetch, ListOffsets
//! by timestamp and the replay of every stream owner (partitions and group coordinators) read
//! through it; nothing else in the broker loops over stream reads.
//!
//! It only reads: it never decides what is readable (the owner of the stream passes the end,
//! its high watermark or the writer's confirmed end) and never decodes a payload.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use protocol::model::StreamId;
use protocol::RpcError;
use stream_client::StreamClient;

/// Most bytes asked of a range server in one read: well inside the RPC frame limit.
pub const MAX_READ_BYTES: usize = 8 << 20;

/// One stored batch: `count` offsets from `offset`, its payload as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub offset: u64,
    pub count: u32,
    pub payload: Bytes,
}

impl StoredBatch {
    /// The offset after this batch.
    pub fn end(&self) -> u64 {
        self.offset + self.count as u64
    }
}

/// Reads the batches of a stream in `[from, end)` in order. A batch holding `from` is
/// returned whole.
pub struct Scan {
    client: StreamClient,
    stream: StreamId,
    next: u64,
    end: u64,
    /// Bytes asked of the stream per read.
    chunk_bytes: u32,
    buffered: VecDeque<StoredBatch>,
    /// Batches handed over from the tail cache not yet traced (see [`Scan::take_bytes`]).
    from_cache: usize,
}

impl Scan {
    /// `chunk_bytes`: asked of the stream per read (at most [`MAX_READ_BYTES`]).
    pub fn new(
        client: StreamClient,
        stream: StreamId,
        from: u64,
        end: u64,
        chunk_bytes: usize,
    ) -> Self {
        Scan {
            client,
            stream,
            next: from,
            end,
            chunk_bytes: chunk_bytes.clamp(1, MAX_READ_BYTES) as u32,
            buffered: VecDeque::new(),
            from_cache: 0,
        }
    }

    /// Serves `batches` (consecutive, the first holding the scan's start) before reading the
    /// stream after them.
    pub fn with_cached(mut self, batches: Vec<StoredBatch>) -> Self {
        self.from_cache = batches.len();
        self.buffered.extend(batches);
        self
    }

    /// The next batch, or None at the end (or when the stream has nothing readable yet).
    pub async fn next(&mut self) -> Result<Option<StoredBatch>, RpcError> {
        if self.buffered.is_empty() && self.next < self.end {
            let read = self
                .client
                .read(self.stream, self.next, self.chunk_bytes)
                .await?;
            self.buffered.extend(
                read.batches
                    .into_iter()
                    .filter(|b| b.offset < self.end)
                    .map(|b| StoredBatch {
                        offset: b.offset,
                        count: b.count,
                        payload: b.payload,
                    }),
            );
        }
        match self.buffered.pop_front() {
            Some(batch) if batch.offset < self.end => {
                self.next = batch.end();
                Ok(Some(batch))
            }
            _ => {
                // At the end, or nothing readable: stop here.
                self.buffered.clear();
                self.next = self.end;
                Ok(None)
            }
        }
    }

    /// Batches from the current position up to about `max_bytes` (always at least one when
    /// any is readable). A read failure after some batches ends the read early with what it
    /// has; a failure before any is returned.
    pub async fn take_bytes(&mut self, max_bytes: usize) -> Result<Vec<Bytes>, RpcError> {
        if self.from_cache > 0 {
            // In the request's trace: what came from the tail cache (reads of the stream
            // past it are `stream.read` spans).
            let _ = tracing::debug_span!("tail_cache.read", batches = self.from_cache).entered();
            self.from_cache = 0;
        }
        let mut parts: Vec<Bytes> = Vec::new();
        let mut size = 0usize;
        while parts.is_empty() || size < max_bytes {
            match self.next().await {
                Ok(Some(batch)) => {
                    if !parts.is_empty() && size + batch.payload.len() > max_bytes {
                        // Does not fit: leave it for the next read.
                        self.next = batch.offset;
                        self.buffered.push_front(batch);
                        break;
                    }
                    size += batch.payload.len();
                    parts.push(batch.payload);
                }
                Ok(None) => break,
                Err(e) if parts.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        stream = self.stream,
                        offset = self.next,
                        "stream read failed: {e}"
                    );
                    break;
                }
            }
        }
        Ok(parts)
    }
}

/// The parts as one buffer (no copy for zero or one part).
pub fn concat(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
            for p in parts {
                buf.extend_from_slice(&p);
            }
            buf.freeze()
        }
    }
}
