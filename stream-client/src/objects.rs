//! The object tier as every process sees it: where objects live (an `--object-store URL`),
//! what each object is called, uploads and deletes, and reads of offloaded stream data
//! through a bounded cache of indexes and blocks, with read-ahead for sequential readers.
//!
//! URLs: `file:///abs/dir` (a local directory, the embedded default) and
//! `s3://bucket[/prefix]` (any S3-compatible server, configured by the standard `AWS_*`
//! variables: `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_ALLOW_HTTP`). Objects are `<prefix>/objects/<id, 20 digits>.obj` in the layout of
//! [`protocol::object`].
//!
//! Uploads are durable before `put` returns: S3 acknowledges a PUT once stored, and a
//! `file://` object is fsynced with its directory entry (the range servers delete their WAL
//! copy of the data once it is committed). S3 uploads send `UNSIGNED-PAYLOAD` unless
//! `AWS_UNSIGNED_PAYLOAD` says otherwise: hashing every body for the signature costs a core's
//! worth of SHA-256 at offload rates, and an object carries its own checksums (a CRC32C per
//! batch and a checksummed index), verified on every read; TLS covers transit where used.
//!
//! It knows nothing of streams' metadata or of who may write or delete an object: callers
//! (the offloader, PD's collector, the reader) decide that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore as _, PutPayload};
use protocol::model::{ObjectSlice, StreamId};
use protocol::object::{self, IndexEntry, ObjectBatch, FOOTER_LEN};
use protocol::{ErrorCode, RpcError};

use crate::metrics::{ObjectMetrics, ObjectOp};

/// Bytes of an object's end read at once to find its footer (and usually its index).
const TAIL_READ: u64 = 64 * 1024;
/// Indexes kept in memory.
const MAX_INDEXES: usize = 4096;
/// Default block cache budget.
pub const DEFAULT_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// A cluster's object store. Cheap to clone.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn object_store::ObjectStore>,
    prefix: Path,
    url: String,
    cache: Arc<Cache>,
    /// The directory of a `file://` store (its uploads are fsynced here).
    local_dir: Option<PathBuf>,
    /// Every request to the store is counted here.
    metrics: ObjectMetrics,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({})", self.url)
    }
}

fn store_error(what: &str, e: object_store::Error) -> RpcError {
    match e {
        object_store::Error::NotFound { .. } => {
            RpcError::new(ErrorCode::NotFound, format!("{what}: {e}"))
        }
        _ => RpcError::new(ErrorCode::Unavailable, format!("{what}: {e}")),
    }
}

fn corrupt(id: u64, e: object::ObjectError) -> RpcError {
    RpcError::new(ErrorCode::BadChecksum, format!("object {id}: {e}"))
}

impl Objects {
    /// Opens the store named by `url` (see the module doc), with a block cache of
    /// `cache_bytes`. A `file://` directory is created if missing.
    pub fn open(url: &str, cache_bytes: usize) -> Result<Objects, RpcError> {
        let invalid = |why: String| RpcError::new(ErrorCode::InvalidArgument, why);
        let mut local_dir = None;
        let (store, prefix): (Arc<dyn object_store::ObjectStore>, Path) =
            if let Some(dir) = url.strip_prefix("file://") {
                if !dir.starts_with('/') {
                    return Err(invalid(format!(
                        "object store {url}: a file:// URL needs an absolute path"
                    )));
                }
                std::fs::create_dir_all(dir)
                    .map_err(|e| invalid(format!("object store {url}: {e}")))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| invalid(format!("object store {url}: {e}")))?;
                local_dir = Some(PathBuf::from(dir));
                (Arc::new(fs), Path::default())
            } else if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid(format!("object store {url}: no bucket")));
                }
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
                    builder = builder.with_unsigned_payload(true);
                }
                let s3 = builder
                    .build()
                    .map_err(|e| invalid(format!("object store {url}: {e}")))?;
                (Arc::new(s3), Path::from(prefix.trim_matches('/')))
            } else {
                return Err(invalid(format!(
                    "object store {url}: expected file:///dir or s3://bucket[/prefix]"
                )));
            };
        Ok(Objects {
            store,
            prefix,
            url: url.to_string(),
            cache: Arc::new(Cache::new(cache_bytes)),
            local_dir,
            metrics: ObjectMetrics::default(),
        })
    }

    /// Counts this store's requests in `metrics` (a stream client's, to share its registry).
    pub fn with_metrics(mut self, metrics: ObjectMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The store's request metrics, for the process to register.
    pub fn metrics(&self) -> &ObjectMetrics {
        &self.metrics
    }

    /// Counts one request (`bytes` moved when it succeeded) and passes its result on.
    fn counted<T>(
        &self,
        op: ObjectOp,
        started: std::time::Instant,
        result: Result<T, object_store::Error>,
        bytes: impl Fn(&T) -> usize,
    ) -> Result<T, object_store::Error> {
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(value) => self.metrics.request(op, true, seconds, bytes(value)),
            // A delete of what is already gone is what the caller wanted.
            Err(object_store::Error::NotFound { .. }) if op == ObjectOp::Delete => {
                self.metrics.request(op, true, seconds, 0)
            }
            Err(_) => self.metrics.request(op, false, seconds, 0),
        }
        result
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn dir(&self) -> Path {
        self.prefix.child("objects")
    }

    /// Where object `id` lives.
    pub fn key(&self, id: u64) -> Path {
        self.dir().child(format!("{id:020}.obj"))
    }

    /// The object id a key names, if it is one of ours.
    fn id_of(&self, key: &Path) -> Option<u64> {
        let name = key.filename()?;
        let digits = name.strip_suffix(".obj")?;
        (digits.len() == 20).then(|| digits.parse().ok()).flatten()
    }

    /// Uploads object `id` whole.
    pub async fn put(&self, id: u64, bytes: Bytes) -> Result<(), RpcError> {
        let what = format!("upload object {id}");
        let len = bytes.len();
        let started = std::time::Instant::now();
        let put = self
            .store
            .put(&self.key(id), PutPayload::from_bytes(bytes))
            .await;
        self.counted(ObjectOp::Put, started, put, |_| len)
            .map_err(|e| store_error(&what, e))?;
        if let Some(dir) = &self.local_dir {
            // The store wrote a staging file and renamed it: make both the bytes and the
            // name durable.
            let dir = dir.join(self.dir().as_ref());
            let file = dir.join(format!("{id:020}.obj"));
            tokio::task::spawn_blocking(move || {
                std::fs::File::open(&file)?.sync_all()?;
                std::fs::File::open(&dir)?.sync_all()
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| RpcError::new(ErrorCode::Unavailable, format!("{what}: fsync: {e}")))?;
        }
        Ok(())
    }

    /// Deletes object `id`; one that is not there counts as deleted.
    pub async fn delete(&self, id: u64) -> Result<(), RpcError> {
        let started = std::time::Instant::now();
        let deleted = self.store.delete(&self.key(id)).await;
        match self.counted(ObjectOp::Delete, started, deleted, |_| 0) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                self.cache.forget(id);
                Ok(())
            }
            Err(e) => Err(store_error(&format!("delete object {id}"), e)),
        }
    }

    /// Every object in the store with its age.
    pub async fn list(&self) -> Result<Vec<(u64, Duration)>, RpcError> {
        let now = SystemTime::now();
        let started = std::time::Instant::now();
        let listed = self.store.list(Some(&self.dir())).try_collect().await;
        let metas: Vec<_> = self
            .counted(ObjectOp::List, started, listed, |_| 0)
            .map_err(|e| store_error("list objects", e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let id = self.id_of(&m.location)?;
                let modified: SystemTime = m.last_modified.into();
                Some((id, now.duration_since(modified).unwrap_or_default()))
            })
            .collect())
    }

    /// Reads a whole object (compaction reads its sources this way).
    pub async fn get(&self, id: u64) -> Result<Bytes, RpcError> {
        let what = format!("read object {id}");
        let started = std::time::Instant::now();
        let got = match self.store.get(&self.key(id)).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        self.counted(ObjectOp::Get, started, got, Bytes::len)
            .map_err(|e| store_error(&what, e))
    }

    async fn get_range(&self, id: u64, range: Range<u64>) -> Result<Bytes, RpcError> {
        let started = std::time::Instant::now();
        let got = self.store.get_range(&self.key(id), range.clone()).await;
        self.counted(ObjectOp::GetRange, started, got, Bytes::len)
            .map_err(|e| store_error(&format!("read object {id} at {range:?}"), e))
    }

    /// The object's index, from the cache or read from its tail.
    async fn index(&self, id: u64, size: u64) -> Result<Arc<Vec<IndexEntry>>, RpcError> {
        if let Some(index) = self.cache.index(id) {
            return Ok(index);
        }
        if size < FOOTER_LEN as u64 {
            return Err(RpcError::new(
                ErrorCode::BadChecksum,
                format!("object {id} of {size} bytes is shorter than a footer"),
            ));
        }
        let tail_start = size.saturating_sub(TAIL_READ);
        let tail = self.get_range(id, tail_start..size).await?;
        if tail.len() as u64 != size - tail_start {
            // PD's size and the stored object disagree: no offset below can be trusted.
            return Err(RpcError::new(
                ErrorCode::BadChecksum,
                format!(
                    "object {id}: {} bytes read of its last {}",
                    tail.len(),
                    size - tail_start
                ),
            ));
        }
        let footer_at = tail.len().saturating_sub(FOOTER_LEN);
        let footer = object::parse_footer(&tail[footer_at..], size).map_err(|e| corrupt(id, e))?;
        let index_bytes = if footer.index_position >= tail_start {
            let at = (footer.index_position - tail_start) as usize;
            tail.slice(at..footer_at)
        } else {
            let end = footer.index_position + u64::from(footer.index_length);
            self.get_range(id, footer.index_position..end).await?
        };
        let index =
            Arc::new(object::parse_index(&index_bytes, &footer).map_err(|e| corrupt(id, e))?);
        self.cache.put_index(id, index.clone());
        Ok(index)
    }

    async fn block(&self, id: u64, entry: IndexEntry) -> Result<Arc<Vec<ObjectBatch>>, RpcError> {
        let key = (id, entry.position);
        if let Some(block) = self.cache.block(key) {
            return Ok(block);
        }
        let end = entry.position + u64::from(entry.length);
        let bytes = self.get_range(id, entry.position..end).await?;
        let block = Arc::new(object::parse_block(&bytes, &entry).map_err(|e| corrupt(id, e))?);
        self.cache.put_block(key, block.clone(), bytes.len());
        Ok(block)
    }

    /// Starts reading `entry` into the cache in the background, unless it is there or on
    /// its way.
    fn read_ahead(&self, id: u64, entry: IndexEntry) {
        let key = (id, entry.position);
        if !self.cache.start_fetch(key) {
            return;
        }
        let objects = self.clone();
        tokio::spawn(async move {
            if let Err(e) = objects.block(id, entry).await {
                tracing::debug!(object = id, "read-ahead failed: {e}");
            }
            objects.cache.end_fetch(key);
        });
    }

    /// Reads batches of `stream` from `slice` starting with the one that holds `offset`, up
    /// to about `max_bytes` (at least one batch) and never past the slice's end.
    pub async fn read(
        &self,
        slice: &ObjectSlice,
        stream: StreamId,
        offset: u64,
        max_bytes: u64,
    ) -> Result<Vec<ObjectBatch>, RpcError> {
        let id = slice.object_id;
        let index = self.index(id, slice.object_size).await?;
        let entries = object::entries_from(&index, stream, offset);
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut next_entry = None;
        for (i, entry) in entries.iter().enumerate() {
            if entry.start >= slice.end || (!out.is_empty() && bytes >= max_bytes) {
                next_entry = Some(i);
                break;
            }
            let block = self.block(id, *entry).await?;
            for batch in block.iter() {
                if batch.end() <= offset {
                    continue;
                }
                if batch.offset >= slice.end || (!out.is_empty() && bytes >= max_bytes) {
                    break;
                }
                bytes += batch.payload.len() as u64;
                out.push(batch.clone());
            }
        }
        // A sequential reader will want the next block soon: fetch it now.
        if let Some(entry) = next_entry
            .and_then(|i| entries.get(i))
            .filter(|e| e.start < slice.end)
        {
            self.read_ahead(id, *entry);
        }
        if out.is_empty() {
            return Err(RpcError::new(
                ErrorCode::NotFound,
                format!("object {id} holds nothing of stream {stream} at {offset}"),
            ));
        }
        Ok(out)
    }

    /// Block cache figures: (bytes held, hits, misses).
    pub fn cache_stats(&self) -> (usize, u64, u64) {
        self.cache.stats()
    }
}

type BlockKey = (u64, u64);

/// Indexes and blocks, least recently used first out; bounded by count and bytes.
struct Cache {
    inner: Mutex<CacheInner>,
    budget: usize,
}

#[derive(Default)]
struct CacheInner {
    indexes: HashMap<u64, (Arc<Vec<IndexEntry>>, u64)>,
    index_order: BTreeMap<u64, u64>,
    blocks: HashMap<BlockKey, (Arc<Vec<ObjectBatch>>, usize, u64)>,
    block_order: BTreeMap<u64, BlockKey>,
    bytes: usize,
    tick: u64,
    fetching: HashSet<BlockKey>,
    hits: u64,
    misses: u64,
}

impl Cache {
    fn new(budget: usize) -> Self {
        Cache {
            inner: Mutex::new(CacheInner::default()),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn index(&self, id: u64) -> Option<Arc<Vec<IndexEntry>>> {
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        let (index, old) = c.indexes.get_mut(&id).map(|(i, t)| {
            let old = *t;
            *t = tick;
            (i.clone(), old)
        })?;
        c.index_order.remove(&old);
        c.index_order.insert(tick, id);
        Some(index)
    }

    fn put_index(&self, id: u64, index: Arc<Vec<IndexEntry>>) {
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        if let Some((_, old)) = c.indexes.insert(id, (index, tick)) {
            c.index_order.remove(&old);
        }
        c.index_order.insert(tick, id);
        while c.indexes.len() > MAX_INDEXES {
            let Some((_, victim)) = c.index_order.pop_first() else {
                break;
            };
            c.indexes.remove(&victim);
        }
    }

    fn block(&self, key: BlockKey) -> Option<Arc<Vec<ObjectBatch>>> {
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        let Some((block, _, t)) = c.blocks.get_mut(&key) else {
            c.misses += 1;
            return None;
        };
        let (block, old) = (block.clone(), *t);
        *t = tick;
        c.block_order.remove(&old);
        c.block_order.insert(tick, key);
        c.hits += 1;
        Some(block)
    }

    fn put_block(&self, key: BlockKey, block: Arc<Vec<ObjectBatch>>, len: usize) {
        if len > self.budget {
            return;
        }
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        if let Some((_, old_len, old)) = c.blocks.insert(key, (block, len, tick)) {
            c.block_order.remove(&old);
            c.bytes -= old_len;
        }
        c.block_order.insert(tick, key);
        c.bytes += len;
        while c.bytes > self.budget {
            let Some((_, victim)) = c.block_order.pop_first() else {
                break;
            };
            if let Some((_, len, _)) = c.blocks.remove(&victim) {
                c.bytes -= len;
            }
        }
    }

    /// Marks `key` as being fetched; false when it is cached or already on its way.
    fn start_fetch(&self, key: BlockKey) -> bool {
        let mut c = self.lock();
        !c.blocks.contains_key(&key) && c.fetching.insert(key)
    }

    fn end_fetch(&self, key: BlockKey) {
        self.lock().fetching.remove(&key);
    }

    /// Drops what is cached of a deleted object.
    fn forget(&self, id: u64) {
        let mut c = self.lock();
        if let Some((_, t)) = c.indexes.remove(&id) {
            c.index_order.remove(&t);
        }
        let keys: Vec<BlockKey> = c.blocks.keys().filter(|k| k.0 == id).copied().collect();
        for key in keys {
            if let Some((_, len, t)) = c.blocks.remove(&key) {
                c.block_order.remove(&t);
                c.bytes -= len;
            }
        }
    }

    fn stats(&self) -> (usize, u64, u64) {
        let c = self.lock();
        (c.bytes, c.hits, c.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::object::ObjectBuilder;

    fn batch(offset: u64, count: u32, len: usize) -> ObjectBatch {
        let payload = Bytes::from(vec![(offset % 251) as u8; len]);
        ObjectBatch {
            offset,
            count,
            crc: protocol::checksum(&payload),
            payload,
        }
    }

    /// An object of two streams round-trips through a `file://` store: reads start at the
    /// batch holding the offset, stop at the slice end and the byte budget, and a second
    /// read of the same blocks is served from the cache; a deleted object is gone.
    #[tokio::test]
    async fn objects_round_trip_through_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let objects = Objects::open(&url, 64 << 20).unwrap();
        let mut builder = ObjectBuilder::new();
        let mut offset = 0;
        for _ in 0..300 {
            builder.add(1, &batch(offset, 10, 10_000)).unwrap();
            offset += 10;
        }
        builder.add(2, &batch(0, 1, 5)).unwrap();
        let (bytes, _) = builder.finish();
        let size = bytes.len() as u64;
        objects.put(7, bytes).await.unwrap();
        assert!(dir.path().join("objects/00000000000000000007.obj").exists());
        let slice = ObjectSlice {
            object_id: 7,
            object_size: size,
            start: 0,
            end: 2000,
            bytes: 0,
            created_ms: 0,
        };
        let read = objects.read(&slice, 1, 1234, 25_000).await.unwrap();
        assert_eq!(read.first().map(|b| b.offset), Some(1230));
        assert_eq!(read.len(), 3);
        // Across blocks (each about 1 MiB, ~100 batches), stopping at the slice end.
        let read = objects.read(&slice, 1, 1500, u64::MAX).await.unwrap();
        assert_eq!((read[0].offset, read.last().unwrap().end()), (1500, 2000));
        let (_, hits_before, _) = objects.cache_stats();
        objects.read(&slice, 1, 1500, u64::MAX).await.unwrap();
        assert!(objects.cache_stats().1 > hits_before);
        let other = ObjectSlice {
            end: 1,
            ..slice.clone()
        };
        assert_eq!(
            objects.read(&other, 2, 0, 1).await.unwrap()[0]
                .payload
                .len(),
            5
        );
        assert_eq!(
            objects
                .list()
                .await
                .unwrap()
                .iter()
                .map(|o| o.0)
                .collect::<Vec<_>>(),
            vec![7]
        );
        objects.delete(7).await.unwrap();
        objects.delete(7).await.unwrap();
        assert!(objects.list().await.unwrap().is_empty());
        let gone = objects.read(&slice, 1, 0, 1).await.unwrap_err();
        assert_eq!(gone.code, ErrorCode::NotFound);
    }

    #[test]
    fn urls_are_checked() {
        assert!(Objects::open("file://relative/dir", 1).is_err());
        assert!(Objects::open("http://x", 1).is_err());
        assert!(Objects::open("s3://", 1).is_err());
    }
}
