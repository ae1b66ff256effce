//! The traffic this broker serves per partition, for PD (its balancer and `strata-ctl`):
//! bytes of record batches stored by produce and returned to fetches, counted since the last
//! report. The heartbeat thread takes the counts every [`REPORT_EVERY`] and sends them as
//! rates ([`Loads::take_rates`]).
//!
//! Must not: block for long (one short lock per append and per fetched partition), or keep
//! history: the map is emptied at each report, so it holds only the partitions active within
//! one interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::pd::{PartitionLoad, MAX_LOADS_PER_HEARTBEAT};

/// How often a heartbeat carries a load report.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Bytes (produced, fetched) of each partition, by topic.
type Counts = HashMap<String, HashMap<u32, (u64, u64)>>;

/// The counts since the instant beside them.
pub struct Loads {
    counts: Mutex<(Instant, Counts)>,
}

impl Default for Loads {
    fn default() -> Self {
        Loads {
            counts: Mutex::new((Instant::now(), HashMap::new())),
        }
    }
}

impl Loads {
    pub fn produced(&self, topic: &str, partition: u32, bytes: u64) {
        self.add(topic, partition, bytes, 0);
    }

    pub fn fetched(&self, topic: &str, partition: u32, bytes: u64) {
        self.add(topic, partition, 0, bytes);
    }

    fn add(&self, topic: &str, partition: u32, produced: u64, fetched: u64) {
        if produced == 0 && fetched == 0 {
            return;
        }
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let per_topic = match counts.1.get_mut(topic) {
            Some(p) => p,
            None => counts.1.entry(topic.to_string()).or_default(),
        };
        let c = per_topic.entry(partition).or_default();
        c.0 = c.0.saturating_add(produced);
        c.1 = c.1.saturating_add(fetched);
    }

    /// The counts since the last call as bytes per second, busiest first (at most
    /// [`MAX_LOADS_PER_HEARTBEAT`]), and starts counting afresh.
    pub fn take_rates(&self) -> Vec<PartitionLoad> {
        let Ok(mut counts) = self.counts.lock() else {
            return Vec::new();
        };
        let (since, taken) = std::mem::replace(&mut *counts, (Instant::now(), HashMap::new()));
        drop(counts);
        let secs = since.elapsed().as_secs_f64().max(0.001);
        let mut loads: Vec<PartitionLoad> = taken
            .into_iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .into_iter()
                    .map(move |(partition, (p, f))| PartitionLoad {
                        topic: topic.clone(),
                        partition,
                        produce_bytes_per_sec: (p as f64 / secs) as u64,
                        fetch_bytes_per_sec: (f as f64 / secs) as u64,
                    })
            })
            .collect();
        loads.sort_by_key(|l| std::cmp::Reverse(l.produce_bytes_per_sec + l.fetch_bytes_per_sec));
        loads.truncate(MAX_LOADS_PER_HEARTBEAT);
        loads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_since_the_last_report_and_start_afresh() {
        let loads = Loads::default();
        loads.produced("t", 0, 3000);
        loads.fetched("t", 0, 1000);
        loads.produced("u", 2, 10);
        std::thread::sleep(Duration::from_millis(100));
        let rates = loads.take_rates();
        assert_eq!(rates.len(), 2);
        assert_eq!((rates[0].topic.as_str(), rates[0].partition), ("t", 0));
        // 3000 bytes in a bit over 0.1 s: between 10 and 30 kB/s.
        assert!(
            (10_000..30_000).contains(&rates[0].produce_bytes_per_sec),
            "{rates:?}"
        );
        assert!(rates[0].fetch_bytes_per_sec < rates[0].produce_bytes_per_sec);
        assert!(loads.take_rates().is_empty(), "counts start afresh");
    }
}
