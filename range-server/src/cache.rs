//! The tail cache: recently appended batch payloads kept in memory under one global byte
//! budget, so fetches of the tail do not touch disk. Evicts oldest first. It is only a cache:
//! a miss is served from the WAL, and it never decides what is readable.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;

/// `(stream_id, range index, batch offset)`.
pub type CacheKey = (u64, u32, u64);

#[derive(Default)]
struct Inner {
    map: HashMap<CacheKey, Bytes>,
    order: VecDeque<CacheKey>,
    bytes: usize,
}

/// Memory an entry takes besides its payload (map and queue slots, the `Bytes` handle and
/// allocator rounding), counted against the budget: with small batches it is most of it.
pub const ENTRY_OVERHEAD: usize = 128;

fn cost(payload: &Bytes) -> usize {
    payload.len() + ENTRY_OVERHEAD
}

pub struct TailCache {
    budget: usize,
    inner: Mutex<Inner>,
    gauge: Gauge,
}

impl TailCache {
    pub fn new(budget: usize, gauge: Gauge) -> Self {
        TailCache {
            budget,
            inner: Mutex::new(Inner::default()),
            gauge,
        }
    }

    /// Keeps `payload` under `key`, evicting the oldest entries to stay within the budget.
    /// A payload larger than the whole budget is not cached.
    pub fn insert(&self, key: CacheKey, payload: Bytes) {
        if cost(&payload) > self.budget {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.map.contains_key(&key) {
            return;
        }
        inner.bytes += cost(&payload);
        inner.map.insert(key, payload);
        inner.order.push_back(key);
        while inner.bytes > self.budget {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(p) = inner.map.remove(&old) {
                inner.bytes -= cost(&p);
            }
        }
        self.gauge.set(inner.bytes as i64);
    }

    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        self.inner.lock().ok()?.map.get(key).cloned()
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget counts each entry's overhead too, so many small batches cannot hold
    /// several times the budget.
    #[test]
    fn evicts_oldest_first_within_budget() {
        let one = 30 + ENTRY_OVERHEAD;
        let cache = TailCache::new(3 * one + 10, Gauge::default());
        for i in 0..5u64 {
            cache.insert((1, 0, i), Bytes::from(vec![i as u8; 30]));
        }
        assert_eq!(cache.bytes(), 3 * one);
        assert!(cache.get(&(1, 0, 0)).is_none());
        assert!(cache.get(&(1, 0, 1)).is_none());
        assert_eq!(cache.get(&(1, 0, 4)).unwrap()[0], 4);
        assert_eq!(cache.get(&(1, 0, 2)).unwrap().len(), 30);
        // Too big for the budget: not cached, nothing evicted.
        cache.insert((2, 0, 0), Bytes::from(vec![0; 3 * one]));
        assert!(cache.get(&(2, 0, 0)).is_none());
        assert_eq!(cache.bytes(), 3 * one);
        // A repeated key does not double count.
        cache.insert((1, 0, 4), Bytes::from(vec![9; 30]));
        assert_eq!(cache.bytes(), 3 * one);
        assert_eq!(cache.gauge.get(), 3 * one as i64);
    }
}
