//! Records of a Kafka partition's meta stream: a small key-value log that a broker
//! replays when it opens the partition. Written by one broker, read by the next owner, so it
//! is part of the wire contract between processes over time: never reorder or rename a field
//! or variant. Replay rules belong to the broker, not here.

use bincode::{Decode, Encode};

/// One sparse time-index entry: at the batch starting at `offset`, the largest record
/// timestamp seen so far in the partition reached `max_timestamp`; `position` is the count of
/// batch bytes appended to the partition before that batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct TimeIndexEntry {
    pub max_timestamp: i64,
    pub offset: u64,
    pub position: u64,
}

/// The whole replayable state, written from time to time so the meta stream can be trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct PartitionSnapshot {
    pub log_start: u64,
    /// `(leader_epoch, first offset written in that epoch)`, ascending.
    pub epochs: Vec<(u32, u64)>,
    pub time_index: Vec<TimeIndexEntry>,
    /// Data-stream offset up to which `time_index` reflects every batch.
    pub indexed_until: u64,
    /// Bytes of batches appended before `indexed_until` (continues `position`).
    pub indexed_bytes: u64,
}

/// What a partition remembers of one idempotent producer: its epoch and its last batches.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ProducerState {
    pub producer_id: i64,
    pub epoch: i16,
    /// `(first sequence, last sequence, base offset)` of its last batches (at most five),
    /// oldest first.
    pub recent: Vec<(i32, i32, u64)>,
    /// When it last wrote (broker clock, ms): producers idle for long are forgotten.
    pub last_write_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum MetaRecord {
    Snapshot(PartitionSnapshot),
    LogStart(u64),
    LeaderEpoch {
        epoch: u32,
        start_offset: u64,
    },
    /// New time-index entries, covering batches up to `indexed_until` (`indexed_bytes`).
    TimeIndex {
        entries: Vec<TimeIndexEntry>,
        indexed_until: u64,
        indexed_bytes: u64,
    },
    /// The current state of these producers (replacing what was known of each), so the next
    /// owner answers a retried batch with its original offset.
    Producers(Vec<ProducerState>),
}
