//! The pure, synchronous state of one partition: the tail cache, the sparse time index, the
//! leader-epoch history and idempotent-producer sequences. No I/O and no actors here, so every
//! rule can be unit-tested.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use protocol::partition_meta::{MetaRecord, PartitionSnapshot, ProducerState, TimeIndexEntry};

use crate::batch::BatchHeader;
use crate::read::StoredBatch;

/// The time index has an entry every this many bytes of batches: a lookup reads at most about
/// this much past the answer, and the index holds one entry (24 bytes) per step retained.
pub const INDEX_BYTES_STEP: u64 = 256 << 10;

/// Recent batches of the partition (stored bytes, base offset already set), for tail reads.
#[derive(Debug, Default)]
pub struct TailCache {
    batches: VecDeque<StoredBatch>,
    bytes: usize,
    limit: usize,
}

impl TailCache {
    pub fn new(limit: usize) -> Self {
        TailCache {
            batches: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    pub fn push(&mut self, offset: u64, count: u32, payload: Bytes) {
        self.bytes += payload.len();
        self.batches.push_back(StoredBatch {
            offset,
            count,
            payload,
        });
        // Keep at least the newest batch; drop the oldest beyond the limit.
        while self.bytes > self.limit && self.batches.len() > 1 {
            if let Some(old) = self.batches.pop_front() {
                self.bytes -= old.payload.len();
            }
        }
    }

    /// Drops batches that end at or before `offset` (after a trim).
    pub fn trim(&mut self, offset: u64) {
        while self.batches.front().is_some_and(|b| b.end() <= offset) {
            if let Some(old) = self.batches.pop_front() {
                self.bytes -= old.payload.len();
            }
        }
    }

    /// Batches from the one holding `offset` up to `end` (exclusive), stopping once
    /// `max_bytes` is reached (always at least one). None when the cache does not reach back
    /// to `offset`.
    pub fn read(&self, offset: u64, end: u64, max_bytes: usize) -> Option<Vec<StoredBatch>> {
        if offset < self.batches.front()?.offset {
            return None;
        }
        let start = self.batches.partition_point(|b| b.end() <= offset);
        let mut out = Vec::new();
        let mut size = 0;
        for batch in self.batches.iter().skip(start) {
            if batch.offset >= end || (!out.is_empty() && size + batch.payload.len() > max_bytes) {
                break;
            }
            size += batch.payload.len();
            out.push(batch.clone());
        }
        Some(out)
    }
}

/// Sparse time index: an entry at the first batch and then at the first batch after every
/// [`INDEX_BYTES_STEP`] bytes, each holding the largest timestamp of every batch *before* it.
/// So every batch before entry `j` has timestamps `<= entries[j].max_timestamp`, and the first
/// batch holding a timestamp `>= t` lies at or after the last entry whose maximum is below
/// `t`: lookups scan the data from there ([`TimeIndex::scan_start`]). Its size is bounded by
/// the bytes retained, not by the batch count.
#[derive(Debug, Clone)]
pub struct TimeIndex {
    pub entries: Vec<TimeIndexEntry>,
    /// Largest timestamp of every batch indexed so far.
    running_max: i64,
    /// Bytes of every batch appended so far (position of the next batch).
    pub position: u64,
    /// Every batch before this offset is reflected in `entries` and `running_max`.
    pub indexed_until: u64,
    /// Entries before this index were already written to the meta stream.
    pub flushed: usize,
}

impl Default for TimeIndex {
    fn default() -> Self {
        TimeIndex::from_snapshot(Vec::new(), 0, 0)
    }
}

impl TimeIndex {
    /// The index as the meta stream recorded it. Only what the entries say survives: the
    /// running maximum of the batches after the last entry was not recorded, so indexing
    /// starts again at the last entry and the caller indexes the data from `indexed_until`.
    pub fn from_snapshot(entries: Vec<TimeIndexEntry>, indexed_until: u64, position: u64) -> Self {
        let (indexed_until, position, running_max) = match entries.last() {
            Some(last) => (last.offset, last.position, last.max_timestamp),
            None => (indexed_until, position, i64::MIN),
        };
        let flushed = entries.len();
        TimeIndex {
            entries,
            running_max,
            position,
            indexed_until,
            flushed,
        }
    }

    pub fn on_batch(&mut self, offset: u64, count: u32, max_timestamp: i64, len: usize) {
        if offset < self.indexed_until {
            return; // already indexed (replay overlap)
        }
        let step = match self.entries.last() {
            None => true,
            Some(last) => self.position - last.position >= INDEX_BYTES_STEP,
        };
        if step && self.entries.last().is_none_or(|last| last.offset < offset) {
            self.entries.push(TimeIndexEntry {
                max_timestamp: self.running_max,
                offset,
                position: self.position,
            });
        }
        self.running_max = self.running_max.max(max_timestamp);
        self.position += len as u64;
        self.indexed_until = offset + count as u64;
    }

    /// Drops what lies at or past `end` (data that was never confirmed); indexing starts
    /// again at the last entry left, so the caller indexes the data from `indexed_until`.
    pub fn truncate(&mut self, end: u64) {
        self.entries.retain(|e| e.offset < end);
        self.flushed = self.flushed.min(self.entries.len());
        match self.entries.last() {
            Some(last) => {
                self.indexed_until = last.offset;
                self.position = last.position;
                self.running_max = last.max_timestamp;
            }
            None => {
                self.indexed_until = self.indexed_until.min(end);
                self.running_max = i64::MIN;
            }
        }
    }

    /// Where to start scanning the data for the first batch holding a timestamp `>= target`
    /// (also the first batch whose maximum reaches `target`, which `retention.ms` keeps): at
    /// the last entry whose maximum is below `target`, or the log start.
    pub fn scan_start(&self, target: i64, log_start: u64) -> u64 {
        let k = self.entries.partition_point(|e| e.max_timestamp < target);
        match k.checked_sub(1).and_then(|j| self.entries.get(j)) {
            Some(e) => e.offset.max(log_start),
            None => log_start,
        }
    }

    /// Where to start scanning for the record with the largest timestamp below `hw` (the
    /// scan goes on to `hw`): at the entry before the first one carrying the largest maximum
    /// of the entries below `hw`. The batch that set that maximum lies between the two, and
    /// any larger timestamp lies after them.
    pub fn max_timestamp_scan_start(&self, hw: u64, log_start: u64) -> u64 {
        let below = &self.entries[..self.entries.partition_point(|e| e.offset < hw)];
        let Some(max) = below.iter().map(|e| e.max_timestamp).max() else {
            return log_start;
        };
        let k = below
            .iter()
            .position(|e| e.max_timestamp == max)
            .unwrap_or(0);
        below
            .get(k.saturating_sub(1))
            .map_or(log_start, |e| e.offset.max(log_start))
    }

    /// First offset to keep so that at most `limit` bytes remain (at entry granularity).
    pub fn retention_by_bytes(&self, limit: u64, log_start: u64) -> u64 {
        self.entries
            .iter()
            .find(|e| e.offset >= log_start && self.position - e.position <= limit)
            .map(|e| e.offset)
            .unwrap_or(log_start)
    }

    /// Forgets entries wholly before `log_start`.
    pub fn trim(&mut self, log_start: u64) {
        let k = self.entries.partition_point(|e| e.offset < log_start);
        // Keep the entry just before the new start: it still carries the running maximum.
        let drop = k.saturating_sub(1);
        self.entries.drain(..drop);
        self.flushed = self.flushed.saturating_sub(drop);
    }

    /// Entries at or below `hw`: each says something about batches before it only, so these
    /// say nothing about data that may yet be lost, and only these are written down.
    pub fn confirmed_len(&self, hw: u64) -> usize {
        self.entries.partition_point(|e| e.offset <= hw)
    }

    /// Confirmed entries (see [`TimeIndex::confirmed_len`]) not yet written down.
    pub fn unflushed(&self, hw: u64) -> &[TimeIndexEntry] {
        let end = self.confirmed_len(hw);
        &self.entries[self.flushed.min(end)..end]
    }
}

/// Leader epochs and where each began, for OffsetForLeaderEpoch.
#[derive(Debug, Clone, Default)]
pub struct EpochHistory {
    pub epochs: Vec<(u32, u64)>,
}

impl EpochHistory {
    pub fn latest(&self) -> Option<u32> {
        self.epochs.last().map(|(e, _)| *e)
    }

    /// `(epoch, end offset)` for a follower or consumer at `requested`: the largest known epoch
    /// `<= requested` and the offset where the next epoch began (or `leo` for the latest).
    pub fn end_offset(&self, requested: i32, leo: u64) -> Option<(i32, u64)> {
        if requested < 0 {
            return None;
        }
        let k = self
            .epochs
            .partition_point(|(e, _)| (*e as i64) <= requested as i64);
        if k == 0 {
            return None;
        }
        let (epoch, _) = self.epochs[k - 1];
        let end = self.epochs.get(k).map(|(_, start)| *start).unwrap_or(leo);
        Some((epoch as i32, end))
    }
}

/// How long a producer that stopped writing is remembered (Kafka's
/// `producer.id.expiration.ms` default, one day).
pub const DEFAULT_PRODUCER_EXPIRY_MS: i64 = 24 * 60 * 60 * 1000;

/// Per producer id: the epoch and the last five batches, as Kafka keeps them. Kept in the
/// meta stream too (`MetaRecord::Producers`, and in snapshots), so the next owner of the
/// partition answers a retry with its original offset instead of storing it again.
#[derive(Debug, Default)]
pub struct Producers {
    by_id: HashMap<i64, ProducerEntry>,
    /// Producers changed since their state was last written to the meta stream.
    dirty: HashSet<i64>,
}

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    /// `(first sequence, last sequence, base offset)` of recent batches, oldest first.
    recent: VecDeque<(i32, i32, u64)>,
    last_write_ms: i64,
}

/// What to do with an idempotent batch.
#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already stored at this base offset.
    Duplicate(u64),
    Reject(ResponseError),
}

impl Producers {
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if header.producer_id < 0 {
            return SequenceCheck::Append;
        }
        if header.is_transactional() {
            return SequenceCheck::Reject(ResponseError::InvalidTxnState);
        }
        let Some(entry) = self.by_id.get(&header.producer_id) else {
            // Unknown producer (new, or expired): accept.
            return SequenceCheck::Append;
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ResponseError::InvalidProducerEpoch);
        }
        if header.producer_epoch > entry.epoch {
            return SequenceCheck::Append;
        }
        let last_sequence = header.last_sequence();
        if let Some((_, _, offset)) = entry
            .recent
            .iter()
            .find(|(first, last, _)| *first == header.base_sequence && *last == last_sequence)
        {
            return SequenceCheck::Duplicate(*offset);
        }
        let expected = entry
            .recent
            .back()
            .map(|(_, last, _)| if *last == i32::MAX { 0 } else { last + 1 });
        match expected {
            Some(expected) if expected != header.base_sequence => {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Records a batch stored at `base_offset` at time `now_ms`. A batch at or before the
    /// producer's newest recorded one is ignored, so a replay that indexes data again from
    /// an earlier point than the recorded state changes nothing.
    pub fn record(&mut self, header: &BatchHeader, base_offset: u64, now_ms: i64) {
        if header.producer_id < 0 {
            return;
        }
        let entry = self
            .by_id
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                recent: VecDeque::new(),
                last_write_ms: now_ms,
            });
        if entry
            .recent
            .back()
            .is_some_and(|(_, _, offset)| base_offset <= *offset)
        {
            return;
        }
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.recent.clear();
        }
        entry
            .recent
            .push_back((header.base_sequence, header.last_sequence(), base_offset));
        while entry.recent.len() > 5 {
            entry.recent.pop_front();
        }
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
        self.dirty.insert(header.producer_id);
    }

    /// The state of the producers changed since the last call (for a `Producers` record).
    pub fn take_dirty(&mut self) -> Vec<ProducerState> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out: Vec<ProducerState> = dirty
            .into_iter()
            .filter_map(|id| self.by_id.get(&id).map(|e| e.to_state(id)))
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Every producer's state (for a snapshot).
    pub fn all(&self) -> Vec<ProducerState> {
        let mut out: Vec<ProducerState> =
            self.by_id.iter().map(|(id, e)| e.to_state(*id)).collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Takes these states as they were written (replay).
    pub fn restore(&mut self, states: Vec<ProducerState>) {
        for p in states {
            self.by_id.insert(
                p.producer_id,
                ProducerEntry {
                    epoch: p.epoch,
                    recent: p.recent.into_iter().collect(),
                    last_write_ms: p.last_write_ms,
                },
            );
        }
    }

    /// Forgets batches at or past `end` (never confirmed, lost with the last owner).
    pub fn truncate(&mut self, end: u64) {
        for entry in self.by_id.values_mut() {
            entry.recent.retain(|(_, _, offset)| *offset < end);
        }
        self.by_id.retain(|_, e| !e.recent.is_empty());
    }

    /// Forgets producers that have not written since `now_ms - expiry_ms`; answers how many.
    pub fn expire(&mut self, now_ms: i64, expiry_ms: i64) -> usize {
        let before = self.by_id.len();
        self.by_id
            .retain(|_, e| now_ms.saturating_sub(e.last_write_ms) < expiry_ms);
        before - self.by_id.len()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl ProducerEntry {
    fn to_state(&self, producer_id: i64) -> ProducerState {
        ProducerState {
            producer_id,
            epoch: self.epoch,
            recent: self.recent.iter().copied().collect(),
            last_write_ms: self.last_write_ms,
        }
    }
}

/// Time-index entries per snapshot piece: a piece encodes to well under 1 MiB (an entry is
/// at most 30 bytes), however long the index grows.
pub const SNAPSHOT_PIECE_ENTRIES: usize = 32 * 1024;

/// Producers per snapshot piece (at most about 100 bytes each).
pub const SNAPSHOT_PIECE_PRODUCERS: usize = 4 * 1024;

/// The replayable state as snapshot pieces, to be appended in order: a `Snapshot` with the log
/// start, the epochs and the first entries, then `TimeIndex` records with the rest, then
/// `Producers` records with every producer. Each piece
/// claims to index only up to where the next one starts, so replaying them in order rebuilds
/// the whole index, and replaying a prefix (a crash between pieces) leaves the rest to be
/// re-indexed from the data.
pub fn snapshot_pieces(
    log_start: u64,
    epochs: &EpochHistory,
    index: &TimeIndex,
    hw: u64,
    producers: &Producers,
) -> Vec<MetaRecord> {
    let confirmed = &index.entries[..index.confirmed_len(hw)];
    let chunks: Vec<&[TimeIndexEntry]> = if confirmed.is_empty() {
        vec![&[]]
    } else {
        confirmed.chunks(SNAPSHOT_PIECE_ENTRIES).collect()
    };
    let mut pieces = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let (indexed_until, indexed_bytes) = match chunks.get(i + 1) {
            Some(next) => (next[0].offset, next[0].position),
            None => (index.indexed_until.min(hw), index.position),
        };
        pieces.push(if i == 0 {
            MetaRecord::Snapshot(PartitionSnapshot {
                log_start,
                epochs: epochs.epochs.clone(),
                time_index: chunk.to_vec(),
                indexed_until,
                indexed_bytes,
            })
        } else {
            MetaRecord::TimeIndex {
                entries: chunk.to_vec(),
                indexed_until,
                indexed_bytes,
            }
        });
    }
    for chunk in producers.all().chunks(SNAPSHOT_PIECE_PRODUCERS) {
        pieces.push(MetaRecord::Producers(chunk.to_vec()));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_reads_whole_batches_and_respects_limits() {
        let mut cache = TailCache::new(100);
        cache.push(0, 5, Bytes::from(vec![0; 40]));
        cache.push(5, 5, Bytes::from(vec![1; 40]));
        cache.push(10, 5, Bytes::from(vec![2; 40]));
        // The oldest batch fell out (limit 100).
        assert!(cache.read(0, 15, 1000).is_none());
        let got = cache.read(7, 15, 1000).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload[0], 1);
        assert_eq!(
            cache.read(7, 15, 10).unwrap().len(),
            1,
            "at least one batch"
        );
        assert_eq!(cache.read(7, 10, 1000).unwrap().len(), 1, "stops at end");
    }

    /// Batches of a quarter step with these timestamps, two offsets each.
    fn index_of(timestamps: &[i64]) -> TimeIndex {
        let mut index = TimeIndex::default();
        for (i, t) in timestamps.iter().enumerate() {
            index.on_batch(i as u64 * 2, 2, *t, (INDEX_BYTES_STEP / 4) as usize);
        }
        index
    }

    #[test]
    fn time_index_points_at_or_before_the_first_batch_reaching_a_time() {
        let index = index_of(&[100, 90, 200, 150, 300, 250, 400, 380, 500]);
        // An entry every fourth batch, holding the largest timestamp before it.
        let entries: Vec<(u64, i64)> = index
            .entries
            .iter()
            .map(|e| (e.offset, e.max_timestamp))
            .collect();
        assert_eq!(entries, vec![(0, i64::MIN), (8, 200), (16, 400)]);
        assert_eq!(index.scan_start(50, 0), 0);
        assert_eq!(index.scan_start(200, 0), 0);
        assert_eq!(index.scan_start(201, 0), 8); // 300 at offset 8
        assert_eq!(index.scan_start(450, 0), 16); // 500 at offset 16
        assert_eq!(index.scan_start(600, 0), 16); // none: the scan finds nothing
        assert_eq!(index.scan_start(201, 10), 10);
        // The largest timestamp (500 at 16) lies after the entry before the largest entry.
        assert_eq!(index.max_timestamp_scan_start(u64::MAX, 0), 8);
        // Below 16, the largest (400 at 12) lies after offset 0.
        assert_eq!(index.max_timestamp_scan_start(16, 0), 0);
        assert_eq!(index.max_timestamp_scan_start(0, 3), 3);
    }

    #[test]
    fn the_time_index_grows_with_bytes_not_batches() {
        let mut index = TimeIndex::default();
        // 100,000 batches of 100 bytes with rising timestamps: 10 MB.
        for i in 0..100_000u64 {
            index.on_batch(i, 1, 1_000 + i as i64, 100);
        }
        let expected = (100_000 * 100u64).div_ceil(INDEX_BYTES_STEP) as usize;
        assert_eq!(index.entries.len(), expected);
    }

    /// Dropping unconfirmed data, or replaying a recorded index, starts indexing again at the
    /// last entry: what the entries did not record (the running maximum after the last one)
    /// is rebuilt from the data, never guessed.
    #[test]
    fn indexing_starts_again_at_the_last_entry() {
        let full = index_of(&[100, 90, 200, 150, 300, 250, 400, 380, 500]);
        let mut index = full.clone();
        index.truncate(14);
        assert_eq!((index.entries.len(), index.indexed_until), (2, 8));
        for (i, t) in [300, 250, 400, 380, 500].iter().enumerate() {
            index.on_batch(8 + i as u64 * 2, 2, *t, (INDEX_BYTES_STEP / 4) as usize);
        }
        assert_eq!(index.entries, full.entries);
        assert_eq!(
            (index.indexed_until, index.position),
            (full.indexed_until, full.position)
        );
        let replayed = TimeIndex::from_snapshot(full.entries.clone(), full.indexed_until, 0);
        assert_eq!(replayed.indexed_until, 16);
        // Only entries at or below the high watermark are written down.
        assert_eq!(full.confirmed_len(8), 2);
        assert_eq!(full.unflushed(7).len(), 1);
    }

    #[test]
    fn retention_by_bytes_uses_positions() {
        let mut index = TimeIndex::default();
        for i in 0..10u64 {
            index.on_batch(i, 1, i as i64, 1 << 19); // half a step each, rising timestamps
        }
        // 10 batches of 512 KiB: keep at most 2 MiB -> the last four batches.
        assert_eq!(index.retention_by_bytes(2 << 20, 0), 6);
    }

    #[test]
    fn epochs() {
        let history = EpochHistory {
            epochs: vec![(1, 0), (3, 50), (4, 80)],
        };
        assert_eq!(history.end_offset(0, 100), None);
        assert_eq!(history.end_offset(1, 100), Some((1, 50)));
        assert_eq!(history.end_offset(2, 100), Some((1, 50)));
        assert_eq!(history.end_offset(3, 100), Some((3, 80)));
        assert_eq!(history.end_offset(9, 100), Some((4, 100)));
    }

    fn header(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            length: 61,
            attributes: 0,
            last_offset_delta: n - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn producer_sequences() {
        let mut producers = Producers::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(producers.check(&first), SequenceCheck::Append);
        producers.record(&first, 100, 5);
        assert_eq!(producers.check(&first), SequenceCheck::Duplicate(100));
        assert_eq!(
            producers.check(&header(7, 0, 5, 1)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(producers.check(&header(7, 0, 3, 1)), SequenceCheck::Append);
        assert_eq!(
            producers.check(&header(7, -1, 3, 1)),
            SequenceCheck::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(producers.check(&header(7, 1, 0, 1)), SequenceCheck::Append);
        assert_eq!(
            producers.check(&header(-1, -1, -1, 1)),
            SequenceCheck::Append
        );
    }

    /// What the meta stream carries of producers rebuilds the same answers on the next
    /// owner: a retry is a duplicate at its original offset, re-indexing batches already held
    /// changes nothing, lost batches are forgotten, idle producers expire.
    #[test]
    fn producer_state_survives_a_move() {
        let mut old_owner = Producers::default();
        for (i, seq) in [0, 3, 6].into_iter().enumerate() {
            old_owner.record(&header(7, 2, seq, 3), 100 + 10 * i as u64, 1_000);
        }
        old_owner.record(&header(9, 0, 0, 1), 50, 2_000);
        let written = old_owner.take_dirty();
        assert_eq!(written.len(), 2);
        assert!(old_owner.take_dirty().is_empty());

        let mut new_owner = Producers::default();
        new_owner.restore(written);
        assert_eq!(
            new_owner.check(&header(7, 2, 3, 3)),
            SequenceCheck::Duplicate(110)
        );
        assert_eq!(new_owner.check(&header(7, 2, 9, 3)), SequenceCheck::Append);
        // Re-indexing data from before the recorded state: ignored.
        new_owner.record(&header(7, 2, 0, 3), 100, 3_000);
        new_owner.record(&header(7, 2, 3, 3), 110, 3_000);
        assert_eq!(new_owner.check(&header(7, 2, 9, 3)), SequenceCheck::Append);
        // The batch at 120 was never confirmed: after truncating there, 6..8 is expected next.
        new_owner.truncate(120);
        assert_eq!(new_owner.check(&header(7, 2, 6, 3)), SequenceCheck::Append);
        assert_eq!(
            new_owner.check(&header(7, 2, 9, 3)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        // Producer 9 (last write at 2 s) expires a day later; producer 7 writes at 3 s.
        new_owner.record(&header(7, 2, 6, 3), 120, 3_000);
        assert_eq!(
            new_owner.expire(
                2_000 + DEFAULT_PRODUCER_EXPIRY_MS,
                DEFAULT_PRODUCER_EXPIRY_MS
            ),
            1
        );
        assert_eq!(new_owner.len(), 1);
    }
}
