//! The map from `(stream_id, range index)` to the range's actor. Creates range actors (on a
//! first append, on a seal of an unknown range, at recovery) and lists them for reports. It
//! applies no range rules itself. Must be used on the actix System thread that runs the
//! actors (creation starts an actor on the current arbiter).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr};
use dashmap::DashMap;
use protocol::model::RangeReport;
use tokio::sync::oneshot;

use crate::cache::TailCache;
use crate::metrics::Metrics;
use crate::range::{RangeActor, RangeState, ReportMsg};
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
}

impl RangeRegistry {
    pub fn new(wal: Wal, cache: Arc<TailCache>, metrics: Metrics, node_id: Arc<AtomicU64>) -> Self {
        RangeRegistry {
            ranges: DashMap::new(),
            node_id,
            unsure_since_recovery: std::sync::OnceLock::new(),
            wal,
            cache,
            metrics,
        }
    }

    /// Starts an actor for every range recovery found. When recovery discarded segments,
    /// remembers which ranges were known then (see [`RangeRegistry::can_vouch_for`]).
    pub fn recover(&self, recovered: &mut Recovered) {
        let lost_data = !recovered.discarded.is_empty();
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
                )
                .start()
            })
            .clone()
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

    /// The current state of every range, for PD.
    pub async fn reports(&self) -> Vec<RangeReport> {
        let addrs: Vec<Addr<RangeActor>> = self.ranges.iter().map(|e| e.value().clone()).collect();
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
