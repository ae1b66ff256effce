//! What each range server last reported holding of each range, kept only in memory at the
//! leader (like liveness): how far its local data of the range goes. The leader uses it to
//! hand the offload of a sealed range to a replica that holds all of it, so a replica that
//! missed the range's tail never blocks the stream's offload.
//!
//! Must not: go through Raft or touch disk; reports are re-learned within one heartbeat
//! cycle. Bounded by the ranges range servers hold: an entry goes when its range is retired.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use protocol::model::RangeReport;

#[derive(Debug, Default)]
pub struct Holdings {
    /// (stream, range index) -> node -> the end of the node's local data.
    inner: Mutex<HashMap<(u64, u32), BTreeMap<u64, u64>>>,
}

impl Holdings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u32), BTreeMap<u64, u64>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one heartbeat's reports of `node`.
    pub fn record(&self, node: u64, reports: &[RangeReport]) {
        let mut map = self.lock();
        for r in reports {
            map.entry((r.stream_id, r.index))
                .or_default()
                .insert(node, r.next);
        }
    }

    /// How far `node` last said it holds the range, if it said.
    pub fn local_end(&self, range: (u64, u32), node: u64) -> Option<u64> {
        self.lock()
            .get(&range)
            .and_then(|nodes| nodes.get(&node).copied())
    }

    /// Forgets retired ranges.
    pub fn forget(&self, ranges: &[(u64, u32)]) {
        let mut map = self.lock();
        for r in ranges {
            map.remove(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stream_id: u64, index: u32, next: u64) -> RangeReport {
        RangeReport {
            stream_id,
            index,
            epoch: 1,
            start: 0,
            next,
            sealed_end: None,
        }
    }

    #[test]
    fn reports_are_kept_per_node_until_the_range_retires() {
        let h = Holdings::default();
        h.record(1, &[report(5, 0, 10), report(5, 1, 3)]);
        h.record(2, &[report(5, 0, 7)]);
        h.record(1, &[report(5, 0, 12)]);
        assert_eq!(h.local_end((5, 0), 1), Some(12));
        assert_eq!(h.local_end((5, 0), 2), Some(7));
        assert_eq!(h.local_end((5, 0), 3), None);
        h.forget(&[(5, 0)]);
        assert_eq!(h.local_end((5, 0), 1), None);
        assert_eq!(h.local_end((5, 1), 1), Some(3));
    }
}
