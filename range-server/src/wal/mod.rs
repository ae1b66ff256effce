//! The write-ahead log shared by every range on this server.
//!
//! Owns the segment files in `<data>/wal/` (`<seq:020>.wal`): recovery at open
//! ([`recovery`]), the single group-commit writer thread ([`writer`]) and positional reads of
//! records by [`Location`]. It knows nothing of range rules (epochs, offsets): it stores and
//! returns records. It must never acknowledge a record before the fdatasync that covers it,
//! and never block an actor thread (reads are blocking calls meant for `spawn_blocking`).

mod handles;
pub mod record;
pub mod recovery;
mod writer;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use protocol::{ErrorCode, RpcError};

use crate::metrics::Metrics;
use handles::SegmentHandles;
pub use handles::MAX_OPEN_SEGMENTS;
pub use record::{DataRecord, SealRecord, WalRecord};
pub use recovery::{BatchEntry, Recovered, RecoveredRange};

/// Where a record lives: segment number, byte position of its frame, frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: u64,
    pub position: u64,
    pub length: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "segment {} @{} ({} bytes)",
            self.segment, self.position, self.length
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    /// An earlier write or sync failed; the WAL refuses every write since.
    #[error("WAL is failed and refuses writes: {0}")]
    Failed(String),
    /// A write or sync of this group failed (the WAL is now failed).
    #[error("WAL write failed: {0}")]
    Io(String),
    /// A record read back does not match what was written.
    #[error("corrupt WAL record at {0}: {1}")]
    Corrupt(Location, String),
    #[error("WAL record of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The writer thread is gone (shutdown).
    #[error("WAL writer stopped")]
    Closed,
}

impl From<WalError> for RpcError {
    fn from(e: WalError) -> RpcError {
        let code = match e {
            WalError::TooLarge(_) => ErrorCode::InvalidArgument,
            WalError::Closed => ErrorCode::NotReady,
            _ => ErrorCode::StorageError,
        };
        RpcError::new(code, e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed and a new one started once the next record would pass this size.
    pub segment_bytes: u64,
    /// A group commit stops draining the queue once it holds this many bytes.
    pub max_group_bytes: usize,
    /// Largest record the WAL is given (an append within one RPC frame).
    pub max_record_bytes: usize,
    /// Budget of the WAL's disk use (`--wal-max-bytes`): once segments on disk and records
    /// queued reach it, [`Wal::is_full`] says so (appends are refused until segments are
    /// reclaimed). None: no budget.
    pub max_bytes: Option<u64>,
}

impl WalOptions {
    /// The most bytes one group commit writes: a crash can leave at most this much of a
    /// segment's end unsynced (torn), since the next group is written only after this
    /// group's sync returned.
    pub fn torn_window(&self) -> u64 {
        (self.max_group_bytes + self.max_record_bytes + record::FRAME_HEADER) as u64
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            max_group_bytes: 16 * 1024 * 1024,
            max_record_bytes: protocol::frame::DEFAULT_MAX_FRAME,
            max_bytes: None,
        }
    }
}

/// Called on the writer thread once the record is durable (or failed). Must not block.
pub type Completion = Box<dyn FnOnce(Result<Location, WalError>) + Send>;

struct Request {
    record: WalRecord,
    done: Completion,
}

struct Shared {
    dir: PathBuf,
    failed: Mutex<Option<String>>,
    failed_flag: AtomicBool,
    /// Read handles of segments, a bounded few at a time.
    handles: SegmentHandles,
    /// Test hook: the next sync fails as a disk would.
    inject_fault: AtomicBool,
    metrics: Metrics,
    /// Closed segments (all but the one appended to) and their lengths.
    closed: Mutex<std::collections::BTreeMap<u64, u64>>,
    /// The segment appends go to.
    current: AtomicU64,
    /// Bytes of segments on disk, and of records submitted but not written yet.
    disk_bytes: AtomicU64,
    queued_bytes: AtomicU64,
    max_bytes: Option<u64>,
}

impl Shared {
    fn fail(&self, why: String) {
        if let Ok(mut f) = self.failed.lock() {
            if f.is_none() {
                *f = Some(why);
            }
        }
        self.failed_flag.store(true, Ordering::SeqCst);
        self.metrics.wal_failed.set(1);
    }

    fn failure(&self) -> Option<String> {
        if !self.failed_flag.load(Ordering::SeqCst) {
            return None;
        }
        match self.failed.lock() {
            Ok(f) => f.clone().or_else(|| Some("unknown failure".into())),
            Err(_) => Some("failure state poisoned".into()),
        }
    }
}

/// Handle to the WAL: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

impl Wal {
    /// Recovers the WAL in `dir` (creating it if needed) and starts the writer thread.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        metrics: Metrics,
    ) -> Result<(Wal, Recovered), WalError> {
        let recovered =
            recovery::recover(dir, opts.torn_window()).map_err(|e| WalError::Io(e.to_string()))?;
        let mut closed = std::collections::BTreeMap::new();
        let mut disk_bytes = 0;
        for (seq, len) in recovery::segment_lengths(dir).map_err(|e| WalError::Io(e.to_string()))? {
            disk_bytes += len;
            if seq != recovered.tail_segment {
                closed.insert(seq, len);
            }
        }
        metrics.wal_disk_bytes.set(disk_bytes as i64);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            failed: Mutex::new(None),
            failed_flag: AtomicBool::new(false),
            handles: SegmentHandles::new(dir.to_path_buf(), MAX_OPEN_SEGMENTS),
            inject_fault: AtomicBool::new(false),
            metrics,
            closed: Mutex::new(closed),
            current: AtomicU64::new(recovered.tail_segment),
            disk_bytes: AtomicU64::new(disk_bytes),
            queued_bytes: AtomicU64::new(0),
            max_bytes: opts.max_bytes,
        });
        let (tx, rx) = mpsc::channel();
        let w = writer::Writer::open(
            shared.clone(),
            opts,
            recovered.tail_segment,
            recovered.tail_len,
        )
        .map_err(|e| WalError::Io(e.to_string()))?;
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| WalError::Io(format!("spawn writer thread: {e}")))?;
        Ok((Wal { tx, shared }, recovered))
    }

    /// Queues a record; `done` runs on the writer thread after the sync covering it.
    pub fn submit(&self, record: WalRecord, done: Completion) {
        if record.body_len() > record::MAX_BODY {
            done(Err(WalError::TooLarge(record.body_len())));
            return;
        }
        if let Some(why) = self.shared.failure() {
            done(Err(WalError::Failed(why)));
            return;
        }
        let len = record.frame_len() as u64;
        self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if let Err(mpsc::SendError(req)) = self.tx.send(Request { record, done }) {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            (req.done)(Err(WalError::Closed));
        }
    }

    /// Bytes the WAL takes on disk, counting records queued but not written yet.
    pub fn used_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Acquire)
            + self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// True when the WAL is at its budget ([`WalOptions::max_bytes`]).
    pub fn is_full(&self) -> bool {
        self.shared
            .max_bytes
            .is_some_and(|max| self.used_bytes() >= max)
    }

    /// True when the WAL has used half its budget or more.
    pub fn is_half_full(&self) -> bool {
        self.shared
            .max_bytes
            .is_some_and(|max| self.used_bytes().saturating_mul(2) >= max)
    }

    /// The segment appends go to now.
    pub fn current_segment(&self) -> u64 {
        self.shared.current.load(Ordering::Acquire)
    }

    /// Deletes every closed segment numbered below `below`: the caller knows that no record
    /// in them is needed any more. Returns how many segments and bytes went.
    pub fn reclaim_below(&self, below: u64) -> Result<(usize, u64), WalError> {
        let doomed: Vec<(u64, u64)> = {
            let closed = self.shared.closed.lock().map_err(|_| WalError::Closed)?;
            closed.range(..below).map(|(s, l)| (*s, *l)).collect()
        };
        let (mut segments, mut bytes) = (0, 0);
        for (seq, len) in doomed {
            match std::fs::remove_file(self.shared.dir.join(segment_name(seq))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::Io(format!("delete segment {seq}: {e}"))),
            }
            self.shared.handles.forget(seq);
            if let Ok(mut closed) = self.shared.closed.lock() {
                closed.remove(&seq);
            }
            self.shared.disk_bytes.fetch_sub(len, Ordering::AcqRel);
            self.shared.metrics.wal_segments_reclaimed.inc();
            segments += 1;
            bytes += len;
        }
        self.shared
            .metrics
            .wal_disk_bytes
            .set(self.shared.disk_bytes.load(Ordering::Acquire) as i64);
        Ok((segments, bytes))
    }

    /// Writes a record and waits for its sync.
    pub async fn append(&self, record: WalRecord) -> Result<Location, WalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            record,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// True until a write or sync failed.
    pub fn is_healthy(&self) -> bool {
        !self.shared.failed_flag.load(Ordering::SeqCst)
    }

    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Test hook: makes the next group commit fail as a failing disk would.
    #[doc(hidden)]
    pub fn inject_fault(&self) {
        self.shared.inject_fault.store(true, Ordering::SeqCst);
    }

    fn file(&self, segment: u64) -> Result<Arc<File>, std::io::Error> {
        self.shared.handles.get(segment)
    }

    /// Segment handles held open for reads now (at most [`MAX_OPEN_SEGMENTS`]).
    pub fn open_segments(&self) -> usize {
        self.shared.handles.open()
    }

    /// Reads and verifies (length, CRC, decode) the record at `loc`. Blocking: call it from
    /// `spawn_blocking` or a dedicated thread.
    pub fn read_blocking(&self, loc: Location) -> Result<WalRecord, WalError> {
        let corrupt = |why: String| WalError::Corrupt(loc, why);
        let len = loc.length as usize;
        if !(record::FRAME_HEADER..=record::FRAME_HEADER + record::MAX_BODY).contains(&len) {
            return Err(corrupt(format!("bad location length {len}")));
        }
        let file = self.file(loc.segment).map_err(|e| corrupt(e.to_string()))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, loc.position)
            .map_err(|e| corrupt(format!("read: {e}")))?;
        let mut header = [0u8; record::FRAME_HEADER];
        header.copy_from_slice(&buf[..record::FRAME_HEADER]);
        let (body_len, crc) = record::parse_header(&header);
        if body_len != len - record::FRAME_HEADER {
            return Err(corrupt(format!(
                "length field {body_len} does not match the index ({})",
                len - record::FRAME_HEADER
            )));
        }
        if protocol::checksum(&buf[record::FRAME_HEADER..]) != crc {
            return Err(corrupt("CRC mismatch".into()));
        }
        let body = bytes::Bytes::from(buf).slice(record::FRAME_HEADER..);
        WalRecord::decode_bytes(body).map_err(|e| corrupt(e.to_string()))
    }

    /// Reads several data records; each must be a Data record.
    pub fn read_data_blocking(&self, locs: &[Location]) -> Result<Vec<DataRecord>, WalError> {
        locs.iter()
            .map(|loc| match self.read_blocking(*loc)? {
                WalRecord::Data(d) => {
                    if protocol::checksum(&d.payload) != d.crc {
                        return Err(WalError::Corrupt(*loc, "payload CRC mismatch".into()));
                    }
                    Ok(d)
                }
                WalRecord::Seal(_) => Err(WalError::Corrupt(*loc, "expected a data record".into())),
            })
            .collect()
    }

    /// Async wrapper of [`Wal::read_data_blocking`] on tokio's blocking pool.
    pub async fn read_data(&self, locs: Vec<Location>) -> Result<Vec<DataRecord>, WalError> {
        let wal = self.clone();
        tokio::task::spawn_blocking(move || wal.read_data_blocking(&locs))
            .await
            .map_err(|e| WalError::Io(format!("read task: {e}")))?
    }
}

#[cfg(test)]
mod tests;
