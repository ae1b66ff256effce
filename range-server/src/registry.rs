//! The map from `(stream_id, range index)` to the range's actor. Creates range actors (on a
//! first append, on a seal of an unknown range, at recovery; requests may create at most
//! `max_ranges`), retires the ones PD says hold nothing readable, and lists them for reports a
//! page at a time. It applies no range rules itself. Creation must happen on the actix System
//! thread that runs the actors (it starts an actor on the current arbiter).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr};
use dashmap::DashMap;
use protocol::model::RangeReport;
use protocol::{ErrorCode, RpcError};
use tokio::sync::oneshot;

use crate::cache::TailCache;
use crate::metrics::Metrics;
use crate::range::{RangeActor, RangeState, ReportMsg, RetireMsg, TrimMsg};
use crate::reclaim::SegmentPins;
use crate::wal::{Recovered, Wal};

pub type RangeKey = (u64, u32);

pub struct RangeRegistry {
    ranges: DashMap<RangeKey, Addr<RangeActor>>,
    /// This server's node id at PD (0 until registered).
    node_id: Arc<AtomicU64>,
    /// Set when recovery discarded WAL segments: then this server cannot tell how far it held
    /// any range it knew before (or lost entirely), and must not answer seals of them as if
    /// it could. Ranges it learns of after recovery are not affected.
    unsure_since_recovery: std::sync::OnceLock<HashSet<RangeKey>>,
    wal: Wal,
    cache: Arc<TailCache>,
    metrics: Metrics,
    /// Most ranges requests may create (recovery is not limited).
    max_ranges: usize,
    refusals: actors::throttle::LogThrottle,
    /// The WAL segments each range still needs.
    pins: Arc<SegmentPins>,
}

impl RangeRegistry {
    pub fn new(
        wal: Wal,
        cache: Arc<TailCache>,
        metrics: Metrics,
        node_id: Arc<AtomicU64>,
        max_ranges: usize,
    ) -> Self {
        RangeRegistry {
            ranges: DashMap::new(),
            node_id,
            unsure_since_recovery: std::sync::OnceLock::new(),
            wal,
            cache,
            metrics,
            max_ranges,
            refusals: actors::throttle::LogThrottle::new(),
            pins: Arc::new(SegmentPins::default()),
        }
    }

    /// Starts an actor for every range recovery found. When recovery discarded segments,
    /// remembers which ranges were known then (see [`RangeRegistry::can_vouch_for`]).
    pub fn recover(&self, recovered: &mut Recovered) {
        let lost_data = recovered.lost_data;
        let mut known = HashSet::new();
        for (key, range) in std::mem::take(&mut recovered.ranges) {
            known.insert(key);
            self.get_or_create(key, || RangeState::from_recovered(range));
        }
        if lost_data {
            let _ = self.unsure_since_recovery.set(known);
        }
    }

    /// Whether this server may say how far it holds `key`: always, unless recovery discarded
    /// WAL segments and the range was known then or is unknown now (it may have been lost
    /// whole); a range first written after recovery is fine.
    pub fn can_vouch_for(&self, key: RangeKey) -> bool {
        match self.unsure_since_recovery.get() {
            None => true,
            Some(known) => !known.contains(&key) && self.ranges.contains_key(&key),
        }
    }

    /// This server's node id at PD, 0 until registered.
    pub fn node_id(&self) -> u64 {
        self.node_id.load(Ordering::Acquire)
    }

    pub fn get(&self, key: RangeKey) -> Option<Addr<RangeActor>> {
        self.ranges.get(&key).map(|a| a.clone())
    }

    pub fn get_or_create(
        &self,
        key: RangeKey,
        init: impl FnOnce() -> RangeState,
    ) -> Addr<RangeActor> {
        self.ranges
            .entry(key)
            .or_insert_with(|| {
                self.metrics.ranges.inc();
                RangeActor::new(
                    init(),
                    self.wal.clone(),
                    self.cache.clone(),
                    self.metrics.clone(),
                    self.pins.clone(),
                )
                .start()
            })
            .clone()
    }

    /// [`RangeRegistry::get_or_create`] for a request: refused with `NoCapacity` (counted,
    /// and logged at most once a second) when creating would pass `max_ranges`.
    pub fn get_or_create_for_request(
        &self,
        key: RangeKey,
        init: impl FnOnce() -> RangeState,
    ) -> Result<Addr<RangeActor>, RpcError> {
        if let Some(addr) = self.get(key) {
            return Ok(addr);
        }
        if self.ranges.len() >= self.max_ranges {
            self.metrics.ranges_refused.inc();
            if let Some(refused) = self.refusals.hit() {
                tracing::warn!(
                    max_ranges = self.max_ranges,
                    refused,
                    "refusing new ranges: at --max-ranges"
                );
            }
            return Err(RpcError::new(
                ErrorCode::NoCapacity,
                format!(
                    "range {}/{}: this server holds its limit of {} ranges (--max-ranges)",
                    key.0, key.1, self.max_ranges
                ),
            ));
        }
        Ok(self.get_or_create(key, init))
    }

    /// Drops a range PD retired: its actor stops. Its WAL records stay until their segment
    /// is reclaimed.
    pub fn retire(&self, key: RangeKey) {
        if let Some((_, addr)) = self.ranges.remove(&key) {
            self.metrics.ranges.dec();
            self.metrics.ranges_retired.inc();
            addr.do_send(RetireMsg);
        }
    }

    /// Tells a range that its stream starts at `start` now.
    pub fn trim(&self, key: RangeKey, start: u64) {
        if let Some(addr) = self.get(key) {
            addr.do_send(TrimMsg { start });
        }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    pub fn pins(&self) -> &Arc<SegmentPins> {
        &self.pins
    }

    /// The current state of up to `limit` ranges with keys after `after`, in key order: one
    /// page of what this server holds.
    pub async fn report_page(&self, after: Option<RangeKey>, limit: usize) -> Vec<RangeReport> {
        let mut keys: Vec<RangeKey> = self
            .ranges
            .iter()
            .map(|e| *e.key())
            .filter(|k| after.is_none_or(|a| *k > a))
            .collect();
        if keys.len() > limit {
            keys.select_nth_unstable(limit);
            keys.truncate(limit);
        }
        let addrs: Vec<Addr<RangeActor>> = keys.iter().filter_map(|k| self.get(*k)).collect();
        let mut out = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let (tx, rx) = oneshot::channel();
            addr.do_send(ReportMsg { reply: tx });
            if let Ok(r) = rx.await {
                out.push(r);
            }
        }
        out.sort_by_key(|r| (r.stream_id, r.index));
        out
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;
    use crate::wal::WalOptions;

    /// Appends and seals create at most `max_ranges` ranges (counted when refused), retired
    /// ranges free their place, and reports come a page at a time in key order.
    #[actix::test]
    async fn ranges_are_limited_retired_and_reported_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::default();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default(), metrics.clone()).unwrap();
        let cache = Arc::new(TailCache::new(1024, Gauge::default()));
        let registry =
            RangeRegistry::new(wal, cache, metrics.clone(), Arc::new(AtomicU64::new(1)), 3);
        let create = |key: RangeKey| {
            registry.get_or_create_for_request(key, || RangeState::new(key.0, key.1, 1, 0))
        };
        for key in [(7, 2), (7, 0), (3, 5)] {
            assert!(create(key).is_ok());
        }
        assert!(create((7, 0)).is_ok(), "an existing range is not new");
        assert_eq!(
            create((9, 9)).map(|_| ()).unwrap_err().code,
            ErrorCode::NoCapacity
        );
        assert_eq!(metrics.ranges_refused.get(), 1);
        assert_eq!(metrics.ranges.get(), 3);

        let keys = |page: Vec<RangeReport>| -> Vec<RangeKey> {
            page.iter().map(|r| (r.stream_id, r.index)).collect()
        };
        assert_eq!(
            keys(registry.report_page(None, 2).await),
            vec![(3, 5), (7, 0)]
        );
        assert_eq!(
            keys(registry.report_page(Some((7, 0)), 2).await),
            vec![(7, 2)]
        );
        assert_eq!(keys(registry.report_page(Some((7, 2)), 2).await), vec![]);

        registry.retire((7, 0));
        registry.retire((7, 0)); // once only
        assert_eq!(metrics.ranges_retired.get(), 1);
        assert_eq!(metrics.ranges.get(), 2);
        assert!(registry.get((7, 0)).is_none());
        assert!(create((9, 9)).is_ok());
        assert_eq!(
            keys(registry.report_page(None, usize::MAX).await),
            vec![(3, 5), (7, 2), (9, 9)]
        );
    }
}
