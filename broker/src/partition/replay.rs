//! Rebuilding a partition when it opens: replay its meta stream (the latest snapshot, then
//! log-start moves, leader epochs and time-index pieces after it), then index whatever data
//! the meta stream had not indexed yet (batch headers only). Runs before the partition serves
//! anything; it reads, it never writes.

use protocol::partition_meta::MetaRecord;
use protocol::{ErrorCode, RpcError};

use super::state::{EpochHistory, Producers, TimeIndex};
use crate::batch;
use crate::owner::Opened;

pub struct Replayed {
    pub log_start: u64,
    pub epochs: EpochHistory,
    pub index: TimeIndex,
    pub producers: Producers,
    /// Meta records after the last snapshot (drives the next one).
    pub meta_records_since_snapshot: usize,
}

/// The state the meta records rebuild, record by record.
#[derive(Debug, Default)]
pub struct MetaState {
    pub log_start: u64,
    pub epochs: EpochHistory,
    pub index: TimeIndex,
    pub producers: Producers,
    /// Records since the last snapshot's first piece.
    pub since_snapshot: usize,
}

impl MetaState {
    pub fn apply(&mut self, record: MetaRecord) {
        self.since_snapshot += 1;
        match record {
            MetaRecord::Snapshot(s) => {
                self.log_start = s.log_start;
                self.epochs.epochs = s.epochs;
                self.index =
                    TimeIndex::from_snapshot(s.time_index, s.indexed_until, s.indexed_bytes);
                self.since_snapshot = 0;
            }
            MetaRecord::LogStart(start) => self.log_start = self.log_start.max(start),
            MetaRecord::LeaderEpoch {
                epoch,
                start_offset,
            } => {
                if self.epochs.latest().is_none_or(|e| epoch > e) {
                    self.epochs.epochs.push((epoch, start_offset));
                }
            }
            MetaRecord::TimeIndex {
                entries,
                indexed_until,
                indexed_bytes,
            } => {
                let index = std::mem::take(&mut self.index);
                let from = index.indexed_until;
                let mut merged = index.entries;
                merged.extend(entries.into_iter().filter(|e| e.offset >= from));
                self.index = TimeIndex::from_snapshot(merged, indexed_until, indexed_bytes);
            }
            MetaRecord::Producers(states) => self.producers.restore(states),
        }
    }
}

pub async fn replay(opened: &Opened) -> Result<Replayed, RpcError> {
    let leo = opened.data.next_offset();
    let mut state = MetaState::default();
    let mut meta = opened.scan_meta().await?;
    while let Some(batch) = meta.next().await? {
        match protocol::decode(&batch.payload) {
            Ok(record) => state.apply(record),
            // A record this version cannot read: skip it rather than refuse to serve.
            Err(e) => tracing::warn!(offset = batch.offset, "skipping meta record: {e}"),
        }
    }
    let MetaState {
        mut log_start,
        epochs,
        mut index,
        mut producers,
        since_snapshot,
    } = state;

    // Data may have been trimmed past the recorded start, and unconfirmed index entries may
    // point past the recovered end.
    log_start = log_start.max(opened.data_start().await?).min(leo);
    index.truncate(leo);
    index.flushed = index.entries.len();
    producers.truncate(leo);

    // Index the data the meta stream had not covered yet (batch headers only).
    if index.indexed_until < log_start {
        index.indexed_until = log_start;
    }
    let now = crate::now_ms();
    let mut data = opened.scan_data(index.indexed_until);
    while let Some(stored) = data.next().await? {
        let header = batch::parse_header(&stored.payload)
            .map_err(|e| RpcError::new(ErrorCode::StorageError, e.to_string()))?;
        index.on_batch(
            stored.offset,
            stored.count,
            header.max_timestamp,
            stored.payload.len(),
        );
        // Batches the recorded producer state already holds are ignored.
        producers.record(&header, stored.offset, now);
    }
    Ok(Replayed {
        log_start,
        epochs,
        index,
        producers,
        meta_records_since_snapshot: since_snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::state::{snapshot_pieces, SNAPSHOT_PIECE_ENTRIES};

    /// A long partition's index once went into one snapshot record past the 16 MiB frame.
    /// Now every piece is small, and replaying the pieces rebuilds the index exactly.
    #[test]
    fn a_long_time_index_snapshots_in_small_pieces_that_replay_to_the_same_index() {
        let mut index = TimeIndex::default();
        let batches = 80_000u64;
        let step = crate::partition::state::INDEX_BYTES_STEP as usize;
        for i in 0..batches {
            index.on_batch(i * 3, 3, 1_000 + i as i64, step);
        }
        assert_eq!(index.entries.len() as u64, batches);
        let epochs = EpochHistory {
            epochs: vec![(0, 0), (4, 1_000)],
        };
        let hw = index.indexed_until;
        let pieces = snapshot_pieces(17, &epochs, &index, hw, &Producers::default());
        assert_eq!(
            pieces.len(),
            (batches as usize).div_ceil(SNAPSHOT_PIECE_ENTRIES)
        );
        for piece in &pieces {
            let size = protocol::encode(piece).unwrap().len();
            assert!(size < 1 << 20, "a piece of {size} bytes");
        }
        let mut replayed = MetaState::default();
        // An earlier, stale state first: the snapshot replaces it.
        replayed.apply(MetaRecord::LogStart(3));
        for piece in pieces.clone() {
            replayed.apply(piece);
        }
        assert_eq!(replayed.log_start, 17);
        assert_eq!(replayed.epochs.epochs, epochs.epochs);
        assert_eq!(replayed.index.entries, index.entries);
        // Indexing starts again at the last entry.
        let last = index.entries.last().unwrap();
        assert_eq!(replayed.index.indexed_until, last.offset);
        assert_eq!(replayed.index.position, last.position);
        // A crash after the first two pieces: what they cover is indexed, and the rest is
        // left to indexing the data from the last entry they hold.
        let mut partial = MetaState::default();
        for piece in pieces.into_iter().take(2) {
            partial.apply(piece);
        }
        let covered = 2 * SNAPSHOT_PIECE_ENTRIES;
        assert_eq!(partial.index.entries[..], index.entries[..covered]);
        assert_eq!(
            partial.index.indexed_until,
            index.entries[covered - 1].offset
        );
        assert_eq!(partial.index.position, index.entries[covered - 1].position);
    }
}
