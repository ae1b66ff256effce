//! Node liveness by lease, kept only in memory at the leader.
//!
//! Owns: the time of each node's last heartbeat (and the version it reported), and the grace
//! period after this PD started
//! (or became leader), during which nodes known from the persisted state count as alive so a
//! restarted PD does not declare everyone dead. Must not: go through Raft or touch disk;
//! heartbeats are far too frequent to replicate and liveness is re-learned within one lease.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Inner {
    grace_start: Instant,
    last: HashMap<u64, Instant>,
    versions: HashMap<u64, String>,
}

#[derive(Debug)]
pub struct Liveness {
    lease: Duration,
    inner: Mutex<Inner>,
}

impl Liveness {
    pub fn new(lease: Duration) -> Self {
        Liveness {
            lease,
            inner: Mutex::new(Inner {
                grace_start: Instant::now(),
                last: HashMap::new(),
                versions: HashMap::new(),
            }),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a heartbeat (or a registration) of `node` now.
    pub fn heartbeat(&self, node: u64) {
        self.heartbeat_at(node, Instant::now());
    }

    fn heartbeat_at(&self, node: u64, at: Instant) {
        self.lock().last.insert(node, at);
    }

    /// The software version `node` reported (truncated to `MAX_VERSION_LEN` bytes).
    pub fn reported_version(&self, node: u64, version: &str) {
        let mut g = self.lock();
        if g.versions.get(&node).map(String::as_str) != Some(version) {
            let mut v = version.to_string();
            let mut end = v.len().min(protocol::pd::MAX_VERSION_LEN);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.truncate(end);
            g.versions.insert(node, v);
        }
    }

    /// The version `node` last reported to this PD, if any.
    pub fn version(&self, node: u64) -> Option<String> {
        self.lock().versions.get(&node).cloned()
    }

    /// Starts a new grace period and forgets heartbeats (this PD just became leader).
    pub fn restart_grace(&self) {
        let mut g = self.lock();
        g.grace_start = Instant::now();
        g.last.clear();
    }

    /// Whether `node` (known to the state) holds a current lease.
    pub fn alive(&self, node: u64) -> bool {
        self.alive_at(node, Instant::now())
    }

    fn alive_at(&self, node: u64, now: Instant) -> bool {
        self.silent_at(node, now) < self.lease
    }

    /// How long `node` has been silent: since its last heartbeat, or since the grace period
    /// began when this leader has not heard from it at all.
    fn silent_at(&self, node: u64, now: Instant) -> Duration {
        let g = self.lock();
        let since = match g.last.get(&node) {
            Some(t) => *t,
            None => g.grace_start,
        };
        now.saturating_duration_since(since)
    }

    /// Whether `node` has been silent for at least `period` (and so is dead).
    pub fn silent_for(&self, node: u64, period: Duration) -> bool {
        self.silent_at(node, Instant::now()) >= period.max(self.lease)
    }

    /// Drops what is kept of `node` (it was forgotten by the state).
    pub fn forget(&self, node: u64) {
        let mut g = self.lock();
        g.last.remove(&node);
        g.versions.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_and_grace() {
        let l = Liveness::new(Duration::from_millis(3000));
        let t0 = Instant::now();
        // Grace: unknown-to-liveness nodes count as alive for one lease after start.
        assert!(l.alive_at(5, t0));
        assert!(!l.alive_at(5, t0 + Duration::from_millis(3100)));
        l.heartbeat_at(5, t0 + Duration::from_millis(3000));
        assert!(l.alive_at(5, t0 + Duration::from_millis(5999)));
        assert!(!l.alive_at(5, t0 + Duration::from_millis(6001)));
        assert!(!l.alive_at(6, t0 + Duration::from_millis(6001)));
        assert_eq!(
            l.silent_at(5, t0 + Duration::from_millis(9000)),
            Duration::from_millis(6000)
        );
        l.forget(5);
        assert!(l.silent_at(5, t0 + Duration::from_millis(9000)) >= Duration::from_millis(9000));
    }
}
