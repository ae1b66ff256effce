//! The WAL writer thread: group commit. Takes the first queued request (blocking), drains
//! whatever else is queued, writes the group with as few write calls as possible, runs one
//! fdatasync for all of it, and only then completes each request. A write or sync error fails
//! the whole group and the WAL for good: it never retries a failed sync and never acknowledges
//! a record that was not synced.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use super::{segment_name, Location, Request, Shared, WalError, WalOptions};

pub(super) struct Writer {
    shared: Arc<Shared>,
    opts: WalOptions,
    seq: u64,
    file: Arc<File>,
    len: u64,
    buf: Vec<u8>,
}

fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Writer {
    /// Continues appending to segment `seq` at `len` (what recovery left), creating it if
    /// needed.
    pub(super) fn open(
        shared: Arc<Shared>,
        opts: WalOptions,
        seq: u64,
        len: u64,
    ) -> std::io::Result<Writer> {
        let path = shared.dir.join(segment_name(seq));
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if !existed {
            sync_dir(&shared.dir)?;
        }
        let file = Arc::new(file);
        shared.handles.keep(seq, file.clone());
        Ok(Writer {
            shared,
            opts,
            seq,
            file,
            len,
            buf: Vec::new(),
        })
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut bytes = first.record.frame_len();
            let mut group = vec![first];
            while bytes < self.opts.max_group_bytes {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.record.frame_len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        tracing::debug!("WAL writer stopped: every handle dropped");
    }

    fn commit(&mut self, group: Vec<Request>) {
        // No longer queued once written (counted on disk by then) or failed; until then the
        // group counts as queued, so the WAL's budget never misses it.
        let queued: u64 = group.iter().map(|r| r.record.frame_len() as u64).sum();
        self.commit_group(group);
        self.shared.queued_bytes.fetch_sub(queued, Ordering::AcqRel);
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if let Some(why) = self.shared.failure() {
            for req in group {
                (req.done)(Err(WalError::Failed(why.clone())));
            }
            return;
        }
        self.shared.metrics.group_size.observe(group.len() as f64);
        match self.write_group(&group) {
            Ok(locations) => {
                for (req, loc) in group.into_iter().zip(locations) {
                    (req.done)(Ok(loc));
                }
            }
            Err(e) => {
                let why = format!("segment {}: {e}", self.seq);
                tracing::error!(error = %why, "WAL write failed; refusing further writes");
                self.shared.fail(why.clone());
                for req in group {
                    (req.done)(Err(WalError::Io(why.clone())));
                }
            }
        }
    }

    fn write_group(&mut self, group: &[Request]) -> std::io::Result<Vec<Location>> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut locations = Vec::with_capacity(group.len());
        let result = (|| {
            for req in group {
                let n = req.record.frame_len() as u64;
                let used = self.len + buf.len() as u64;
                if used > 0 && used + n > self.opts.segment_bytes {
                    self.flush(&mut buf)?;
                    self.sync()?;
                    self.roll()?;
                }
                locations.push(Location {
                    segment: self.seq,
                    position: self.len + buf.len() as u64,
                    length: n as u32,
                });
                req.record.encode_into(&mut buf);
            }
            self.flush(&mut buf)?;
            self.sync()
        })();
        // Keep the buffer for the next group unless one huge group inflated it.
        if buf.capacity() <= 2 * self.opts.max_group_bytes {
            self.buf = buf;
        }
        result.map(|()| locations)
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(buf, self.len)?;
        self.len += buf.len() as u64;
        let disk = self
            .shared
            .disk_bytes
            .fetch_add(buf.len() as u64, Ordering::AcqRel);
        self.shared
            .metrics
            .wal_disk_bytes
            .set((disk + buf.len() as u64) as i64);
        self.shared.metrics.wal_bytes.inc_by(buf.len() as u64);
        buf.clear();
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.shared.inject_fault.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected disk fault"));
        }
        let started = Instant::now();
        self.file.sync_data()?;
        self.shared
            .metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        self.shared.metrics.fsyncs.inc();
        Ok(())
    }

    fn roll(&mut self) -> std::io::Result<()> {
        let seq = self.seq + 1;
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(self.shared.dir.join(segment_name(seq)))?;
        sync_dir(&self.shared.dir)?;
        let file = Arc::new(file);
        self.shared.handles.keep(seq, file.clone());
        if let Ok(mut closed) = self.shared.closed.lock() {
            closed.insert(self.seq, self.len);
        }
        self.shared.current.store(seq, Ordering::Release);
        tracing::info!(segment = seq, "WAL segment rolled");
        self.seq = seq;
        self.file = file;
        self.len = 0;
        Ok(())
    }
}
