//! The durable Raft log and vote, in segment files under `<data>/raft/`.
//!
//! Owns: segment files `log-<first index>.seg` of checksummed records (one serde-bincode
//! openraft entry each), the `vote` file, the `purged` file (last purged log id) and the
//! `committed` hint. Appends are fsynced (`sync_data`) before openraft is told they are
//! flushed, in groups: `append` writes and returns, and a flusher thread fsyncs everything
//! written so far and then completes every append it covered (openraft 0.9 appends each
//! client write on its own; with one fsync each, a burst of writes such as a failover's
//! partition opens waited on the disk one by one). Recovery stops at the first torn or
//! corrupt record and truncates it away.
//! A copy of the live entries is kept in memory for reads (the log is bounded by snapshots).
//!
//! Must not: apply entries or know what they mean (that is the state machine), nor panic on
//! anything read from disk. File I/O runs on tokio's blocking pool, never on the caller's
//! thread.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageError,
    StorageIOError,
};

use crate::fsutil::{self, DiskError, Parsed};
use crate::{Entry, LogId, NodeId, TypeConfig, Vote};

/// A new segment is started once the current one reaches this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
const VOTE_FILE: &str = "vote";
const PURGED_FILE: &str = "purged";
const COMMITTED_FILE: &str = "committed";

fn seg_name(first: u64) -> String {
    format!("log-{first:020}.seg")
}

fn parse_seg_name(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

fn io_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::Logs, verb, AnyError::new(&e)).into()
}

fn codec_err(e: protocol::RpcError) -> DiskError {
    DiskError::Corrupt(e.message)
}

/// Completes one append once its data is durable (or the fsync failed).
type Done = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Appends written but not yet fsynced, in order.
#[derive(Default)]
struct Unflushed(Vec<Done>);

impl Debug for Unflushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} appends waiting for fsync", self.0.len())
    }
}

/// Everything the log keeps; shared by the store and its readers.
#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Live entries (index > last purged), in memory.
    entries: BTreeMap<u64, Entry>,
    /// Where each entry on disk starts: index -> (segment first index, byte offset).
    positions: BTreeMap<u64, (u64, u64)>,
    /// Segment first index -> size in bytes.
    segments: BTreeMap<u64, u64>,
    /// The segment appends go to; `None` until the next append opens one.
    active: Option<(u64, File)>,
    /// Index of the last record written to the active segment.
    active_last: Option<u64>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    /// Set when a write or fsync failed: the file tail is unknown, so nothing more is appended.
    failed: bool,
    /// Written to the active segment, not yet fsynced: the flusher's work.
    unflushed: Unflushed,
}

/// The Raft log storage. Cheap to clone (readers share it). The flusher thread ends soon
/// after the last clone is dropped.
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    /// Wakes the flusher when `unflushed` gets work.
    wake: Arc<Condvar>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering up to the first bad record.
    pub fn open(dir: &Path) -> Result<Self, DiskError> {
        fs::create_dir_all(dir).map_err(DiskError::io(format!("create {}", dir.display())))?;
        let vote = match fsutil::read_atomic(dir, VOTE_FILE)? {
            Some(b) => Some(protocol::codec::decode_serde::<Vote>(&b).map_err(codec_err)?),
            None => None,
        };
        let last_purged = match fsutil::read_atomic(dir, PURGED_FILE)? {
            Some(b) => protocol::codec::decode_serde::<Option<LogId>>(&b).map_err(codec_err)?,
            None => None,
        };
        // The committed hint is written without fsync: a damaged one is simply ignored.
        let committed = fsutil::read_hint(dir, COMMITTED_FILE)
            .and_then(|b| protocol::codec::decode_serde::<Option<LogId>>(&b).ok())
            .flatten();

        let mut firsts = Vec::new();
        for ent in fs::read_dir(dir).map_err(DiskError::io(format!("list {}", dir.display())))? {
            let ent = ent.map_err(DiskError::io("list"))?;
            if let Some(first) = ent.file_name().to_str().and_then(parse_seg_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let purged_index = last_purged.as_ref().map(|l| l.index);
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            entries: BTreeMap::new(),
            positions: BTreeMap::new(),
            segments: BTreeMap::new(),
            active: None,
            active_last: None,
            vote,
            committed: None,
            last_purged,
            failed: false,
            unflushed: Unflushed::default(),
        };
        let mut last: Option<u64> = None;
        let mut stop_at: Option<usize> = None;
        for (i, &first) in firsts.iter().enumerate() {
            // A segment must continue the previous one, unless the gap lies in the purged part.
            let continues = match last {
                None => true,
                Some(l) => first == l + 1 || purged_index.is_some_and(|p| first <= p + 1),
            };
            if !continues {
                tracing::warn!(
                    first,
                    "log segment does not continue the log; dropping it and later ones"
                );
                stop_at = Some(i);
                break;
            }
            if first != last.map_or(first, |l| l + 1) {
                // Entries before a purged gap are all purged: forget them.
                inner.entries.clear();
                inner.positions.clear();
            }
            let path = dir.join(seg_name(first));
            let data =
                fs::read(&path).map_err(DiskError::io(format!("read {}", path.display())))?;
            let mut pos = 0usize;
            let mut expect = first;
            let mut bad = None;
            loop {
                match fsutil::parse_record(&data, pos) {
                    Parsed::End => break,
                    Parsed::Bad(why) => {
                        bad = Some(why);
                        break;
                    }
                    Parsed::Record(payload, next) => {
                        let entry = match protocol::codec::decode_serde::<Entry>(payload) {
                            Ok(e) if e.log_id.index == expect => e,
                            Ok(e) => {
                                bad = Some(format!(
                                    "index {} where {expect} expected",
                                    e.log_id.index
                                ));
                                break;
                            }
                            Err(e) => {
                                bad = Some(e.message);
                                break;
                            }
                        };
                        if purged_index.is_none_or(|p| expect > p) {
                            inner.entries.insert(expect, entry);
                        }
                        inner.positions.insert(expect, (first, pos as u64));
                        last = Some(expect);
                        expect += 1;
                        pos = next;
                    }
                }
            }
            if let Some(why) = bad {
                tracing::warn!(segment = %path.display(), offset = pos, %why, "truncating log at a torn or corrupt record");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(DiskError::io(format!("open {}", path.display())))?;
                f.set_len(pos as u64)
                    .and_then(|_| f.sync_all())
                    .map_err(DiskError::io(format!("truncate {}", path.display())))?;
                stop_at = Some(i + 1);
            }
            if pos == 0 {
                fs::remove_file(&path)
                    .map_err(DiskError::io(format!("remove {}", path.display())))?;
            } else {
                inner.segments.insert(first, pos as u64);
            }
            if stop_at.is_some() {
                break;
            }
        }
        if let Some(i) = stop_at {
            for &first in firsts[i..].iter().rev() {
                let path = dir.join(seg_name(first));
                if path.exists() {
                    fs::remove_file(&path)
                        .map_err(DiskError::io(format!("remove {}", path.display())))?;
                }
            }
            fsutil::sync_dir(dir)?;
        }
        // Only trust the committed hint if it names an entry we still hold.
        inner.committed = committed.filter(|c| {
            inner.entries.get(&c.index).map(|e| &e.log_id) == Some(c)
                || inner.last_purged.as_ref() == Some(c)
        });
        let store = LogStore {
            inner: Arc::new(Mutex::new(inner)),
            wake: Arc::new(Condvar::new()),
        };
        let (inner, wake) = (Arc::downgrade(&store.inner), store.wake.clone());
        std::thread::Builder::new()
            .name("pd-log-flush".into())
            .spawn(move || flusher(inner, wake))
            .map_err(DiskError::io("start the log flusher"))?;
        Ok(store)
    }

    /// The store's data; a poisoned lock (a panic elsewhere mid-update) still yields the data,
    /// which every update leaves consistent before it can fail.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the blocking pool with the store locked.
    async fn blocking<T: Send + 'static>(
        &self,
        verb: ErrorVerb,
        f: impl FnOnce(&mut Inner) -> Result<T, DiskError> + Send + 'static,
    ) -> Result<T, StorageError<NodeId>> {
        let inner = self.inner.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await;
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(io_err(verb, e)),
            Err(e) => Err(io_err(verb, e)),
        }
    }

    /// Index of the last entry, or of the last purged one.
    pub fn last_index(&self) -> Option<u64> {
        let g = self.lock();
        g.entries
            .keys()
            .next_back()
            .copied()
            .or(g.last_purged.as_ref().map(|l| l.index))
    }
}

/// The flusher thread: waits for unflushed appends, fsyncs the active segment outside the
/// lock (appends go on meanwhile; an append is only queued after its write, so the fsync
/// covers it), then completes them in order. Ends once the store is gone.
fn flusher(inner: Weak<Mutex<Inner>>, wake: Arc<Condvar>) {
    loop {
        let Some(shared) = inner.upgrade() else {
            return;
        };
        let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
        if g.unflushed.0.is_empty() {
            // Wake now and then to notice that the store was dropped.
            let (guard, _) = wake
                .wait_timeout(g, Duration::from_millis(500))
                .unwrap_or_else(|p| p.into_inner());
            g = guard;
        }
        let done = std::mem::take(&mut g.unflushed.0);
        if done.is_empty() {
            continue;
        }
        let file = g.active.as_ref().map(|(_, f)| f.try_clone());
        drop(g);
        let synced = match file {
            Some(Ok(f)) => f.sync_data(),
            Some(Err(e)) => Err(e),
            // Appends are queued only with an active segment, and truncation flushes first.
            None => Ok(()),
        };
        if synced.is_err() {
            shared.lock().unwrap_or_else(|p| p.into_inner()).failed = true;
        }
        for d in done {
            d(match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

impl Inner {
    /// Fsyncs the active segment now and completes every unflushed append (before the file
    /// changes under them: a truncation or a new segment).
    fn flush_now(&mut self) -> Result<(), DiskError> {
        let synced = match &self.active {
            Some((_, f)) => f.sync_data(),
            None => Ok(()),
        };
        let done = std::mem::take(&mut self.unflushed.0);
        for d in done {
            d(match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
        synced.map_err(|e| {
            self.failed = true;
            DiskError::io("fsync the active segment")(e)
        })
    }

    /// Writes `entries` (not fsynced: see [`Inner::flush_now`] and the flusher).
    fn append(&mut self, entries: Vec<Entry>) -> Result<(), DiskError> {
        if self.failed {
            return Err(DiskError::Corrupt(
                "an earlier log write failed; restart to recover".into(),
            ));
        }
        let Some(first_new) = entries.first().map(|e| e.log_id.index) else {
            return Ok(());
        };
        let needs_roll = match (&self.active, self.active_last) {
            (Some((first, _)), Some(last)) => {
                last + 1 != first_new
                    || self.segments.get(first).copied().unwrap_or(0) >= SEGMENT_BYTES
            }
            (Some(_), None) => false,
            (None, _) => true,
        };
        if needs_roll {
            self.flush_now()?;
            let path = self.dir.join(seg_name(first_new));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(DiskError::io(format!("create {}", path.display())))?;
            // A fresh segment file: make its name durable.
            f.sync_all()
                .map_err(DiskError::io(format!("fsync {}", path.display())))?;
            fsutil::sync_dir(&self.dir)?;
            let len = f
                .metadata()
                .map_err(DiskError::io(format!("stat {}", path.display())))?
                .len();
            self.segments.insert(first_new, len);
            self.active = Some((first_new, f));
            self.active_last = None;
        }
        let Some((seg_first, file)) = self.active.as_mut() else {
            return Err(DiskError::Corrupt("no active segment".into()));
        };
        let seg_first = *seg_first;
        let mut offset = self.segments.get(&seg_first).copied().unwrap_or(0);
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for e in &entries {
            let payload = protocol::codec::encode_serde(e).map_err(codec_err)?;
            placed.push((e.log_id.index, offset + buf.len() as u64));
            fsutil::frame_record(&mut buf, &payload)?;
        }
        let path = self.dir.join(seg_name(seg_first));
        if let Err(e) = file.write_all(&buf) {
            self.failed = true;
            return Err(DiskError::io(format!("append {}", path.display()))(e));
        }
        offset += buf.len() as u64;
        self.segments.insert(seg_first, offset);
        for (idx, pos) in placed {
            self.positions.insert(idx, (seg_first, pos));
        }
        self.active_last = entries.last().map(|e| e.log_id.index);
        for e in entries {
            self.entries.insert(e.log_id.index, e);
        }
        Ok(())
    }

    /// Removes every entry with index >= `index`.
    fn truncate(&mut self, index: u64) -> Result<(), DiskError> {
        self.flush_now()?;
        self.active = None;
        self.active_last = None;
        if let Some(&(seg, pos)) = self.positions.get(&index) {
            let later: Vec<u64> = self.segments.range(seg + 1..).map(|(k, _)| *k).collect();
            for first in later.into_iter().rev() {
                let path = self.dir.join(seg_name(first));
                fs::remove_file(&path)
                    .map_err(DiskError::io(format!("remove {}", path.display())))?;
                self.segments.remove(&first);
            }
            let path = self.dir.join(seg_name(seg));
            if pos == 0 {
                fs::remove_file(&path)
                    .map_err(DiskError::io(format!("remove {}", path.display())))?;
                self.segments.remove(&seg);
            } else {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(DiskError::io(format!("open {}", path.display())))?;
                f.set_len(pos)
                    .and_then(|_| f.sync_all())
                    .map_err(DiskError::io(format!("truncate {}", path.display())))?;
                self.segments.insert(seg, pos);
            }
            fsutil::sync_dir(&self.dir)?;
        }
        self.positions.split_off(&index);
        self.entries.split_off(&index);
        Ok(())
    }

    /// Forgets every entry up to and including `log_id`.
    fn purge(&mut self, log_id: LogId) -> Result<(), DiskError> {
        let payload = protocol::codec::encode_serde(&Some(log_id)).map_err(codec_err)?;
        fsutil::write_atomic(&self.dir, PURGED_FILE, &payload, true)?;
        let index = log_id.index;
        self.last_purged = Some(log_id);
        self.entries = self.entries.split_off(&(index + 1));
        self.positions = self.positions.split_off(&(index + 1));
        // Delete whole segments whose entries are all purged: those followed by a segment
        // starting at or before index + 1. The active segment is never deleted here.
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let active = self.active.as_ref().map(|(f, _)| *f);
        for pair in firsts.windows(2) {
            let (first, next) = (pair[0], pair[1]);
            if next <= index + 1 && Some(first) != active {
                let path = self.dir.join(seg_name(first));
                fs::remove_file(&path)
                    .map_err(DiskError::io(format!("remove {}", path.display())))?;
                self.segments.remove(&first);
            }
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let g = self.lock();
        Ok(g.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let g = self.lock();
        let last_purged_log_id = g.last_purged;
        let last_log_id = g
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.blocking(ErrorVerb::Write, move |inner| {
            let payload = protocol::codec::encode_serde(&vote).map_err(codec_err)?;
            fsutil::write_atomic(&inner.dir, VOTE_FILE, &payload, true)?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| match e.into_io() {
            Some(io) => StorageIOError::write_vote(AnyError::new(&io)).into(),
            None => io_err(ErrorVerb::Write, DiskError::Corrupt("vote".into())),
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        // A hint only (openraft re-derives it otherwise), written at every commit: in place,
        // without fsync.
        self.blocking(ErrorVerb::Write, move |inner| {
            let payload = protocol::codec::encode_serde(&committed).map_err(codec_err)?;
            fsutil::overwrite_hint(&inner.dir, COMMITTED_FILE, &payload)?;
            inner.committed = committed;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let res = self
            .blocking(ErrorVerb::Write, move |inner| match inner.append(entries) {
                Ok(()) => {
                    let done: Done = Box::new(move |r| callback.log_io_completed(r));
                    inner.unflushed.0.push(done);
                    Ok(())
                }
                Err(e) => {
                    callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                    Err(e)
                }
            })
            .await;
        self.wake.notify_one();
        res
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.blocking(ErrorVerb::Delete, move |inner| inner.truncate(log_id.index))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.blocking(ErrorVerb::Delete, move |inner| inner.purge(log_id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::state::Command;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::AllocateIds {
                key: format!("k{index}"),
                count: index,
            }),
        }
    }

    fn append(store: &LogStore, range: std::ops::Range<u64>) -> Result<(), DiskError> {
        let mut g = store
            .inner
            .lock()
            .map_err(|_| DiskError::Corrupt("lock".into()))?;
        g.append(range.map(entry).collect())
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store
            .inner
            .lock()
            .map(|g| g.entries.keys().copied().collect())
            .unwrap_or_default()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A log directory written by one store and closed: `entries` appended, then `then` run on
    /// the store's state (to truncate, purge or start a new segment).
    fn closed_log(
        entries: std::ops::Range<u64>,
        then: impl FnOnce(&mut Inner) -> Result<(), DiskError>,
    ) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = LogStore::open(dir.path())?;
        append(&store, entries)?;
        then(&mut *store.inner.lock().map_err(|_| "lock")?)?;
        Ok(dir)
    }

    #[test]
    fn reopen_keeps_entries_vote_and_purge() -> Result<(), Box<dyn std::error::Error>> {
        let dir = closed_log(1..11, |g| {
            g.truncate(8)?;
            g.append((8..9).map(entry).collect())?;
            g.purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
        })?;
        let store = LogStore::open(dir.path())?;
        assert_eq!(indexes(&store), vec![4, 5, 6, 7, 8]);
        let g = store.inner.lock().map_err(|_| "lock")?;
        assert_eq!(g.last_purged.map(|l| l.index), Some(3));
        assert_eq!(g.entries.get(&8), Some(&entry(8)));
        Ok(())
    }

    /// A log directory holding entries 1..=5, closed, and its last segment file.
    fn closed_log_of_five() -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
        let dir = closed_log(1..6, |_| Ok(()))?;
        let seg = segment_files(dir.path()).pop().ok_or("no segment")?;
        Ok((dir, seg))
    }

    #[test]
    fn torn_tail_is_truncated() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, seg) = closed_log_of_five()?;
        let len = fs::metadata(&seg)?.len();
        let f = OpenOptions::new().write(true).open(&seg)?;
        f.set_len(len - 3)?;
        drop(f);
        let store = LogStore::open(dir.path())?;
        assert_eq!(indexes(&store), vec![1, 2, 3, 4]);
        // The log continues after recovery and survives another reopen.
        append(&store, 5..7)?;
        drop(store);
        let store = LogStore::open(dir.path())?;
        assert_eq!(indexes(&store), vec![1, 2, 3, 4, 5, 6]);
        Ok(())
    }

    #[test]
    fn flipped_bit_stops_recovery_there() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, seg) = closed_log_of_five()?;
        let store = LogStore::open(dir.path())?;
        let (_, pos3) = store.inner.lock().map_err(|_| "lock")?.positions[&3];
        drop(store);
        let mut data = fs::read(&seg)?;
        data[pos3 as usize + RECORD_HEADER_FOR_TEST + 2] ^= 0x10;
        fs::write(&seg, &data)?;
        let store = LogStore::open(dir.path())?;
        assert_eq!(indexes(&store), vec![1, 2]);
        assert_eq!(fs::metadata(&seg)?.len(), pos3);
        Ok(())
    }

    const RECORD_HEADER_FOR_TEST: usize = fsutil::RECORD_HEADER;

    #[test]
    fn corrupt_middle_segment_drops_later_segments() -> Result<(), Box<dyn std::error::Error>> {
        let dir = closed_log(1..4, |g| {
            // Force a second segment.
            g.active = None;
            g.append((4..7).map(entry).collect())
        })?;
        let segs = segment_files(dir.path());
        assert_eq!(segs.len(), 2);
        let mut data = fs::read(&segs[0])?;
        let n = data.len();
        data[n - 1] ^= 0xff;
        fs::write(&segs[0], &data)?;
        let store = LogStore::open(dir.path())?;
        assert_eq!(indexes(&store), vec![1, 2]);
        assert_eq!(segment_files(dir.path()).len(), 1);
        Ok(())
    }

    #[test]
    fn garbage_segment_is_not_a_panic() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join(seg_name(1)), [0xffu8; 64])?;
        let store = LogStore::open(dir.path())?;
        assert!(indexes(&store).is_empty());
        fs::write(dir.path().join(VOTE_FILE), [1u8, 2, 3])?;
        assert!(LogStore::open(dir.path()).is_err());
        Ok(())
    }

    /// Appends are completed by the flusher, in order, each only once an fsync that started
    /// after its write has returned; a truncation completes what is pending first.
    #[test]
    fn the_flusher_completes_appends_in_order() -> Result<(), DiskError> {
        let dir = tempfile::tempdir().map_err(DiskError::io("tempdir"))?;
        let store = LogStore::open(dir.path())?;
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 1..=50u64 {
            let mut g = store.lock();
            g.append(vec![entry(i)])?;
            let tx = tx.clone();
            g.unflushed.0.push(Box::new(move |r| {
                let _ = tx.send((i, r.is_ok()));
            }));
            drop(g);
            store.wake.notify_one();
        }
        let got: Vec<(u64, bool)> = (0..50)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)))
            .collect::<Result<_, _>>()
            .map_err(|e| DiskError::Corrupt(format!("an append was never completed: {e}")))?;
        assert_eq!(got, (1..=50).map(|i| (i, true)).collect::<Vec<_>>());
        // Pending when the log is truncated: completed by the truncation itself.
        let mut g = store.lock();
        g.append(vec![entry(51)])?;
        let tx2 = tx.clone();
        g.unflushed.0.push(Box::new(move |r| {
            let _ = tx2.send((51, r.is_ok()));
        }));
        g.truncate(40)?;
        assert!(g.unflushed.0.is_empty());
        drop(g);
        assert_eq!(rx.try_recv().ok(), Some((51, true)));
        drop(store);
        Ok(())
    }
}
