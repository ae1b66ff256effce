//! Read handles of WAL segments: opened on demand and kept in a small cache, at most
//! [`MAX_OPEN_SEGMENTS`], the least recently used closed first. A WAL of thousands of segments
//! thus holds a few descriptors, not one per segment for the life of the process. It never
//! opens a segment for writing (the writer owns that handle and lends it here).

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::segment_name;

/// Segment handles kept open for reads.
pub const MAX_OPEN_SEGMENTS: usize = 32;

pub struct SegmentHandles {
    dir: PathBuf,
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Segment -> (handle, when last used).
    files: HashMap<u64, (Arc<File>, u64)>,
    clock: u64,
    /// Segments below this were deleted (they are reclaimed oldest first).
    deleted_below: u64,
}

impl SegmentHandles {
    pub fn new(dir: PathBuf, max: usize) -> Self {
        SegmentHandles {
            dir,
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle of `segment`, opened now if none is kept.
    pub fn get(&self, segment: u64) -> std::io::Result<Arc<File>> {
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            if let Some((file, used)) = inner.files.get_mut(&segment) {
                *used = now;
                return Ok(file.clone());
            }
        }
        let file = Arc::new(File::open(self.dir.join(segment_name(segment)))?);
        self.keep(segment, file.clone());
        Ok(file)
    }

    /// Keeps `file` as the handle of `segment` (the writer lends its new segment), closing the
    /// least recently used handles over the bound. A handle still in use elsewhere closes
    /// when its last user drops it.
    pub fn keep(&self, segment: u64, file: Arc<File>) {
        let mut inner = self.lock();
        if segment < inner.deleted_below {
            return;
        }
        inner.clock += 1;
        let now = inner.clock;
        inner.files.insert(segment, (file, now));
        while inner.files.len() > self.max {
            let oldest = inner
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(segment, _)| *segment);
            match oldest {
                Some(segment) => inner.files.remove(&segment),
                None => break,
            };
        }
    }

    /// Closes the kept handle of a deleted segment, and keeps none of it from now on (a
    /// reader that opened it just before the delete must not put its handle back: the file
    /// would stay on disk while it is cached).
    pub fn forget(&self, segment: u64) {
        let mut inner = self.lock();
        inner.files.remove(&segment);
        inner.deleted_below = inner.deleted_below.max(segment + 1);
    }

    /// Handles kept now.
    pub fn open(&self) -> usize {
        self.lock().files.len()
    }
}
