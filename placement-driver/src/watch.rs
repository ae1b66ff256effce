//! Change notification for watchers: a bounded, in-memory list of recent events keyed by
//! revision, and long-poll waiting.
//!
//! A revision is `log_index << LOCAL_BITS | local`: the Raft log index whose entry produced the
//! events, and a counter of leader-local events (node liveness flips, which are not replicated)
//! published since that entry. Watchers treat revisions as opaque and ordered.
//!
//! Owns: the last `capacity` events, the current revision and the oldest revision it can still
//! answer from (`floor`). Must not: persist anything or decide what changed (the state machine
//! reports events as it applies entries; the balancer reports liveness flips). After a restart
//! the list starts empty at the snapshot's revision, so an old `since` is answered with `reset`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use protocol::pd::{Event, WatchResponse};

/// Events kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Longest a watch waits, whatever the caller asks.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Low bits of a revision that count leader-local events after a log entry.
pub const LOCAL_BITS: u32 = 20;
const LOCAL_MASK: u64 = (1 << LOCAL_BITS) - 1;

/// The revision of the events of the log entry at `log_index`.
pub fn revision_of(log_index: u64) -> u64 {
    log_index.saturating_mul(1 << LOCAL_BITS)
}

#[derive(Debug)]
struct Inner {
    events: VecDeque<(u64, Event)>,
    /// Every event with a revision above `floor` is in `events`.
    floor: u64,
    revision: u64,
}

#[derive(Debug)]
pub struct WatchHub {
    inner: Mutex<Inner>,
    capacity: usize,
    tx: tokio::sync::watch::Sender<u64>,
}

impl WatchHub {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = tokio::sync::watch::channel(0);
        WatchHub {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                floor: 0,
                revision: 0,
            }),
            capacity: capacity.max(1),
            tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every event and starts over at `log_index` (state loaded from a snapshot).
    pub fn reset_to(&self, log_index: u64) {
        let revision = revision_of(log_index);
        let mut g = self.lock();
        g.events.clear();
        g.floor = revision;
        g.revision = revision;
        drop(g);
        self.tx.send_replace(revision);
    }

    /// Records the events of the entry applied at `log_index` and makes it current.
    pub fn publish(&self, log_index: u64, events: Vec<Event>) {
        let g = self.lock();
        let revision = revision_of(log_index).max(g.revision);
        self.push(g, revision, events);
    }

    /// Records events that did not come through Raft (at the next local revision). Dropped, with
    /// a debug log, in the unlikely case that 2^20 of them follow one log entry.
    pub fn publish_local(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let g = self.lock();
        if g.revision & LOCAL_MASK == LOCAL_MASK {
            tracing::debug!(?events, "local watch revisions exhausted; events dropped");
            return;
        }
        let revision = g.revision + 1;
        self.push(g, revision, events);
    }

    fn push(&self, mut g: std::sync::MutexGuard<'_, Inner>, revision: u64, events: Vec<Event>) {
        for e in events {
            g.events.push_back((revision, e));
        }
        while g.events.len() > self.capacity {
            if let Some((rev, _)) = g.events.pop_front() {
                g.floor = g.floor.max(rev);
                // Keep whole revisions only: drop the rest of the one just cut.
                while g.events.front().is_some_and(|(r, _)| *r <= rev) {
                    g.events.pop_front();
                }
            }
        }
        g.revision = g.revision.max(revision);
        let current = g.revision;
        drop(g);
        self.tx.send_replace(current);
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// Answers at once when there is something to say: events after `since`, or a reset.
    pub fn poll(&self, since: u64) -> Option<WatchResponse> {
        let g = self.lock();
        if since > g.revision || since < g.floor {
            return Some(WatchResponse {
                revision: g.revision,
                reset: true,
                events: Vec::new(),
            });
        }
        let events: Vec<Event> = g
            .events
            .iter()
            .filter(|(rev, _)| *rev > since)
            .map(|(_, e)| e.clone())
            .collect();
        if events.is_empty() {
            None
        } else {
            Some(WatchResponse {
                revision: g.revision,
                reset: false,
                events,
            })
        }
    }

    /// Long-poll: answers as soon as [`Self::poll`] has something, or after `timeout` (capped at
    /// [`MAX_WAIT`]) with no events and the current revision.
    pub async fn wait(&self, since: u64, timeout: Duration) -> WatchResponse {
        let mut rx = self.tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        loop {
            if let Some(resp) = self.poll(since) {
                return resp;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out (or the hub is gone): nothing happened.
                _ => {
                    return WatchResponse {
                        revision: self.revision(),
                        reset: false,
                        events: Vec::new(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(i: u64) -> u64 {
        revision_of(i)
    }

    #[test]
    fn events_after_since_and_reset_rules() {
        let hub = WatchHub::new(3);
        assert!(hub.poll(0).is_none());
        hub.publish(1, vec![Event::NodeChanged(1)]);
        hub.publish(2, vec![]);
        hub.publish(3, vec![Event::StreamChanged(7)]);
        let r = hub.poll(0).expect("events");
        assert_eq!(r.revision, rev(3));
        assert_eq!(
            r.events,
            vec![Event::NodeChanged(1), Event::StreamChanged(7)]
        );
        assert_eq!(
            hub.poll(rev(1)).map(|r| r.events),
            Some(vec![Event::StreamChanged(7)])
        );
        assert!(hub.poll(rev(3)).is_none());
        // Ahead of the current revision (e.g. PD restarted on older state): reset.
        assert!(hub.poll(rev(9)).is_some_and(|r| r.reset));
        assert!(hub.poll(rev(3) + 1).is_some_and(|r| r.reset));
        // Overflow moves the floor: an old since gets a reset.
        hub.publish(4, vec![Event::StreamChanged(8), Event::StreamChanged(9)]);
        hub.publish(5, vec![Event::StreamChanged(10)]);
        assert!(hub.poll(0).is_some_and(|r| r.reset));
        assert_eq!(hub.poll(rev(3)).map(|r| r.events.len()), Some(3));
        hub.reset_to(100);
        assert!(hub.poll(rev(5)).is_some_and(|r| r.reset));
        assert!(hub.poll(rev(100)).is_none());
    }

    #[test]
    fn local_events_sit_between_log_entries() {
        let hub = WatchHub::new(100);
        hub.publish(7, vec![Event::StreamChanged(1)]);
        hub.publish_local(vec![]);
        assert_eq!(hub.revision(), rev(7));
        hub.publish_local(vec![Event::NodeChanged(2)]);
        assert_eq!(hub.revision(), rev(7) + 1);
        // A watcher at the log entry sees the local event, and one at the local event does not.
        assert_eq!(
            hub.poll(rev(7)).map(|r| r.events),
            Some(vec![Event::NodeChanged(2)])
        );
        assert!(hub.poll(rev(7) + 1).is_none());
        hub.publish_local(vec![Event::NodeChanged(3)]);
        hub.publish(8, vec![Event::StreamChanged(4)]);
        assert_eq!(hub.revision(), rev(8));
        assert_eq!(
            hub.poll(rev(7) + 1).map(|r| r.events),
            Some(vec![Event::NodeChanged(3), Event::StreamChanged(4)])
        );
    }

    #[tokio::test]
    async fn wait_wakes_on_publish_and_times_out() {
        let hub = std::sync::Arc::new(WatchHub::new(10));
        let h2 = hub.clone();
        let waiter = tokio::spawn(async move { h2.wait(0, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.publish(1, vec![Event::NodeChanged(3)]);
        let r = waiter.await.expect("join");
        assert_eq!(r.events, vec![Event::NodeChanged(3)]);
        let r = hub.wait(rev(1), Duration::from_millis(30)).await;
        assert!(r.events.is_empty() && !r.reset);
        assert_eq!(r.revision, rev(1));
    }
}
