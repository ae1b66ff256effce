//! Partition load as the brokers report it: bytes per second produced into and fetched from
//! each partition, by the broker that serves it, with the time of the report. Leader memory
//! only, like liveness: a new leader knows no load until the next reports (a few seconds).
//!
//! Owns: the latest report of each broker (a report replaces that broker's previous one, so
//! partitions it left out count as idle) and what ListLoads answers. Must not: decide
//! anything (the balancer reads it). Bounded by the partitions: a report is capped at
//! `MAX_LOADS_PER_HEARTBEAT`, and a broker's report older than [`LOAD_EXPIRY`] is dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::pd::{LoadInfo, PartitionLoad, MAX_LOADS_PER_HEARTBEAT};

/// A broker's report not renewed within this long is forgotten (the broker died or left).
pub const LOAD_EXPIRY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Loads {
    by_broker: Mutex<HashMap<u64, (Instant, Vec<PartitionLoad>)>>,
}

impl Loads {
    /// `broker`'s new report, replacing its previous one.
    pub fn report(&self, broker: u64, mut loads: Vec<PartitionLoad>) {
        loads.truncate(MAX_LOADS_PER_HEARTBEAT);
        if let Ok(mut by_broker) = self.by_broker.lock() {
            by_broker.retain(|_, (at, _)| at.elapsed() < LOAD_EXPIRY);
            by_broker.insert(broker, (Instant::now(), loads));
        }
    }

    /// Every reported partition load, by broker, busiest first within each.
    pub fn list(&self) -> Vec<LoadInfo> {
        let Ok(by_broker) = self.by_broker.lock() else {
            return Vec::new();
        };
        let mut brokers: Vec<_> = by_broker
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < LOAD_EXPIRY)
            .collect();
        brokers.sort_by_key(|(id, _)| **id);
        brokers
            .into_iter()
            .flat_map(|(id, (at, loads))| {
                loads.iter().map(move |l| LoadInfo {
                    broker: *id,
                    load: l.clone(),
                    age_ms: at.elapsed().as_millis() as u64,
                })
            })
            .collect()
    }

    /// Each reported partition's bytes per second, produced plus fetched, for the balancer.
    /// A partition in more than one broker's report (it just moved) takes the newest.
    pub fn rates(&self) -> crate::balancer::Rates {
        let Ok(by_broker) = self.by_broker.lock() else {
            return Default::default();
        };
        let mut newest: HashMap<(String, u32), (Instant, u64)> = HashMap::new();
        for (at, loads) in by_broker.values() {
            if at.elapsed() >= LOAD_EXPIRY {
                continue;
            }
            for l in loads {
                let rate = l
                    .produce_bytes_per_sec
                    .saturating_add(l.fetch_bytes_per_sec);
                let key = (l.topic.clone(), l.partition);
                if newest.get(&key).is_none_or(|(t, _)| t < at) {
                    newest.insert(key, (*at, rate));
                }
            }
        }
        newest.into_iter().map(|(k, (_, rate))| (k, rate)).collect()
    }

    /// This voter is no longer the leader.
    pub fn clear(&self) {
        if let Ok(mut by_broker) = self.by_broker.lock() {
            by_broker.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(partition: u32, produce: u64) -> PartitionLoad {
        PartitionLoad {
            topic: "t".into(),
            partition,
            produce_bytes_per_sec: produce,
            fetch_bytes_per_sec: 0,
        }
    }

    #[test]
    fn a_report_replaces_the_brokers_previous_one() {
        let loads = Loads::default();
        loads.report(2, vec![load(0, 100), load(1, 50)]);
        loads.report(1, vec![load(2, 7)]);
        let listed = loads.list();
        assert_eq!(
            listed
                .iter()
                .map(|l| (l.broker, l.load.partition))
                .collect::<Vec<_>>(),
            vec![(1, 2), (2, 0), (2, 1)]
        );
        // Partition 1 went idle at broker 2: left out of its next report, it is gone.
        loads.report(2, vec![load(0, 90)]);
        assert_eq!(loads.list().len(), 2);
        loads.clear();
        assert!(loads.list().is_empty());
    }
}
