//! WAL reclamation: which segments the ranges still need, and the task that deletes the
//! others.
//!
//! Every range actor pins the oldest segment holding a batch it still indexes
//! ([`SegmentPins`]); a range drops batches from its index only when PD says they are
//! trimmed or committed in objects, or when the range is retired. A closed segment below
//! every pin therefore holds nothing any range can serve and nothing not kept elsewhere, and
//! [`run`] deletes it. It never decides what a range needs; the ranges say.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::registry::RangeKey;
use crate::wal::Wal;

/// The oldest segment each range still needs.
#[derive(Default)]
pub struct SegmentPins {
    pins: DashMap<RangeKey, u64>,
}

impl SegmentPins {
    /// Records the oldest segment `key` needs; None: it needs none.
    pub fn set(&self, key: RangeKey, segment: Option<u64>) {
        match segment {
            Some(segment) => {
                self.pins.insert(key, segment);
            }
            None => {
                self.pins.remove(&key);
            }
        }
    }

    /// The oldest segment any range needs, and a range that needs it.
    pub fn lowest(&self) -> Option<(u64, RangeKey)> {
        self.pins.iter().map(|e| (*e.value(), *e.key())).min()
    }
}

/// Deletes, every `interval`, the closed segments below every range's pin.
pub async fn run(wal: Wal, pins: Arc<SegmentPins>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let full = actors::throttle::LogThrottle::new();
    loop {
        tick.tick().await;
        let current = wal.current_segment();
        let lowest = pins.lowest();
        let below = lowest.map_or(current, |(low, _)| low.min(current));
        if wal.is_full() {
            if let Some(times) = full.hit() {
                tracing::warn!(
                    times,
                    used = wal.used_bytes(),
                    oldest_needed = ?lowest,
                    "WAL is at its budget; the oldest segment still needed is held by this range"
                );
            }
        }
        let reclaiming = wal.clone();
        let done = tokio::task::spawn_blocking(move || reclaiming.reclaim_below(below)).await;
        match done {
            Ok(Ok((0, _))) => {}
            Ok(Ok((segments, bytes))) => tracing::info!(
                segments,
                bytes,
                below,
                "WAL segments reclaimed (offloaded or trimmed)"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "WAL reclaim failed; retrying later"),
            Err(e) => tracing::warn!(error = %e, "WAL reclaim task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_pin_wins_and_unpinned_ranges_do_not_count() {
        let pins = SegmentPins::default();
        assert_eq!(pins.lowest(), None);
        pins.set((1, 0), Some(4));
        pins.set((2, 0), Some(2));
        assert_eq!(pins.lowest(), Some((2, (2, 0))));
        pins.set((2, 0), None);
        assert_eq!(pins.lowest(), Some((4, (1, 0))));
    }
}
