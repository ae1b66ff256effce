//! The pure, synchronous state of one partition: the tail cache, the sparse time index, the
//! leader-epoch history and idempotent-producer sequences. No I/O and no actors here, so every
//! rule can be unit-tested.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use protocol::partition_meta::{MetaRecord, PartitionSnapshot, ProducerState, TimeIndexEntry};

use crate::batch::BatchHeader;
use crate::read::StoredBatch;

/// Add a time-index entry at least every this many bytes, so `retention.bytes` can find a
/// trim point even when timestamps stop rising.
pub const INDEX_BYTES_STEP: u64 = 1 << 20;

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

/// Sparse time index: an entry at every batch that raises the partition's running maximum
/// timestamp (and at least every [`INDEX_BYTES_STEP`] bytes). The first entry whose
/// `max_timestamp >= t` is then exactly the first batch holding a timestamp `>= t`.
#[derive(Debug, Clone, Default)]
pub struct TimeIndex {
    pub entries: Vec<TimeIndexEntry>,
    running_max: i64,
    /// Bytes of every batch appended so far (position of the next batch).
    pub position: u64,
    /// Every batch before this offset is reflected in `entries`.
    pub indexed_until: u64,
    /// Entries before this index were already written to the meta stream.
    pub flushed: usize,
}

impl TimeIndex {
    pub fn from_snapshot(entries: Vec<TimeIndexEntry>, indexed_until: u64, position: u64) -> Self {
        let running_max = entries
            .iter()
            .map(|e| e.max_timestamp)
            .max()
            .unwrap_or(i64::MIN);
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
        let raises = max_timestamp > self.running_max;
        let far = self
            .entries
            .last()
            .is_none_or(|e| self.position - e.position >= INDEX_BYTES_STEP);
        if raises {
            self.running_max = max_timestamp;
        }
        if raises || far {
            self.entries.push(TimeIndexEntry {
                max_timestamp: self.running_max,
                offset,
                position: self.position,
            });
        }
        self.position += len as u64;
        self.indexed_until = offset + count as u64;
    }

    /// Drops what lies at or past `end` (data that was never confirmed).
    pub fn truncate(&mut self, end: u64) {
        self.entries.retain(|e| e.offset < end);
        self.indexed_until = self.indexed_until.min(end);
        self.flushed = self.flushed.min(self.entries.len());
        self.running_max = self
            .entries
            .iter()
            .map(|e| e.max_timestamp)
            .max()
            .unwrap_or(i64::MIN);
    }

    /// Where to start scanning for the first batch holding a timestamp `>= target`, or None
    /// when no batch does. The answer is exact unless entries before it were trimmed away.
    pub fn scan_start(&self, target: i64, log_start: u64) -> Option<u64> {
        let k = self.entries.partition_point(|e| e.max_timestamp < target);
        if k == self.entries.len() {
            return None;
        }
        if k == 0 {
            return Some(log_start);
        }
        Some(self.entries[k].offset.max(log_start))
    }

    /// The confirmed batch (starting below `hw`) holding the largest timestamp, and that
    /// timestamp: the first entry carrying the largest running maximum below `hw`.
    pub fn max_timestamp_below(&self, hw: u64) -> Option<(u64, i64)> {
        let confirmed = self.entries.partition_point(|e| e.offset < hw);
        let max = self.entries[..confirmed]
            .iter()
            .map(|e| e.max_timestamp)
            .max()?;
        self.entries[..confirmed]
            .iter()
            .find(|e| e.max_timestamp == max)
            .map(|e| (e.offset, e.max_timestamp))
    }

    /// First offset to keep so that no batch whose timestamps are all below `cutoff` remains.
    pub fn retention_by_time(&self, cutoff: i64, hw: u64) -> u64 {
        let k = self.entries.partition_point(|e| e.max_timestamp < cutoff);
        self.entries.get(k).map(|e| e.offset).unwrap_or(hw)
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

    pub fn unflushed(&self) -> &[TimeIndexEntry] {
        &self.entries[self.flushed.min(self.entries.len())..]
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
pub const PRODUCER_EXPIRY_MS: i64 = 24 * 60 * 60 * 1000;

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

    /// Forgets producers that have not written since `now_ms - PRODUCER_EXPIRY_MS`; answers
    /// how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.by_id.len();
        self.by_id
            .retain(|_, e| now_ms.saturating_sub(e.last_write_ms) < PRODUCER_EXPIRY_MS);
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
    producers: &Producers,
) -> Vec<MetaRecord> {
    let chunks: Vec<&[TimeIndexEntry]> = if index.entries.is_empty() {
        vec![&[]]
    } else {
        index.entries.chunks(SNAPSHOT_PIECE_ENTRIES).collect()
    };
    let mut pieces = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let (indexed_until, indexed_bytes) = match chunks.get(i + 1) {
            Some(next) => (next[0].offset, next[0].position),
            None => (index.indexed_until, index.position),
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

    #[test]
    fn time_index_finds_first_batch_at_or_after() {
        let mut index = TimeIndex::default();
        index.on_batch(0, 2, 100, 10);
        index.on_batch(2, 2, 90, 10); // out of order: no entry
        index.on_batch(4, 2, 200, 10);
        index.on_batch(6, 2, 150, 10);
        index.on_batch(8, 2, 300, 10);
        assert_eq!(index.scan_start(50, 0), Some(0));
        assert_eq!(index.scan_start(101, 0), Some(4));
        assert_eq!(index.scan_start(200, 0), Some(4));
        assert_eq!(index.scan_start(201, 0), Some(8));
        assert_eq!(index.scan_start(301, 0), None);
        assert_eq!(index.max_timestamp_below(u64::MAX), Some((8, 300)));
        assert_eq!(index.max_timestamp_below(8), Some((4, 200)));
        assert_eq!(index.max_timestamp_below(0), None);
        assert_eq!(index.retention_by_time(150, 10), 4);
        assert_eq!(index.retention_by_time(1000, 10), 10);
        index.truncate(6);
        assert_eq!(index.indexed_until, 6);
        assert_eq!(index.scan_start(201, 0), None);
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
        assert_eq!(new_owner.expire(2_000 + PRODUCER_EXPIRY_MS), 1);
        assert_eq!(new_owner.len(), 1);
    }
}
