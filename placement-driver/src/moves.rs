//! Partition moves in flight: every ownership change PD decides (an operator's
//! `MovePartitions` or the balancer's), from the decision until the new owner reports, with
//! `PartitionOpened`, that it serves the partition at the new leader epoch.
//!
//! Owns: the in-flight table ListMoves answers (Kafka's ListPartitionReassignments), the
//! timing of each move (logged, and the `pd_partition_move_seconds` histogram) and the count
//! of moves by reason. Leader memory only, like liveness: a new PD leader starts with an empty
//! table, so moves decided before it are neither listed nor timed.
//!
//! Must not: change ownership or wait for anything. It is bounded by the partitions: one
//! entry each, and an entry not reported within [`MOVE_EXPIRY`] is dropped (its owner died,
//! or the topic was deleted).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use protocol::pd::MoveInfo;

/// A move its new owner has not reported within this long is dropped from the table.
pub const MOVE_EXPIRY: Duration = Duration::from_secs(300);
/// Completed moves kept for people to look at (`strata-ctl moves`).
pub const RECENT_MOVES: usize = 256;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

struct Move {
    from: Option<u64>,
    to: u64,
    leader_epoch: u32,
    since: Instant,
    reason: &'static str,
}

pub struct Moves {
    table: Mutex<BTreeMap<(String, u32), Move>>,
    /// The last [`RECENT_MOVES`] that completed, oldest first.
    recent: Mutex<VecDeque<MoveInfo>>,
    seconds: Histogram,
    decided: Family<ReasonLabel, Counter>,
}

impl Default for Moves {
    fn default() -> Self {
        Moves {
            table: Mutex::default(),
            recent: Mutex::default(),
            // 1 ms .. ~65 s.
            seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            decided: Family::default(),
        }
    }
}

impl Moves {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pd_partition_move_seconds",
            "From a partition move's decision to its new owner serving (leader only)",
            self.seconds.clone(),
        );
        registry.register(
            "pd_partition_moves",
            "Partition moves decided, by reason (requested, orphan, drain, pinned, count, load)",
            self.decided.clone(),
        );
    }

    /// A move was decided: `topic`/`partition` goes from `from` to `to` at `leader_epoch`.
    pub fn decided(
        &self,
        topic: &str,
        partition: u32,
        from: Option<u64>,
        to: u64,
        leader_epoch: u32,
        reason: &'static str,
    ) {
        self.decided
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        table.retain(|_, m| m.since.elapsed() < MOVE_EXPIRY);
        table.insert(
            (topic.to_string(), partition),
            Move {
                from,
                to,
                leader_epoch,
                since: Instant::now(),
                reason,
            },
        );
    }

    /// `broker` serves the partition at `leader_epoch`: ends the move there, if one is in
    /// flight, and answers how long it took. A report of an older epoch changes nothing;
    /// one of a newer epoch ends a move that was superseded.
    pub fn opened(
        &self,
        topic: &str,
        partition: u32,
        broker: u64,
        leader_epoch: u32,
    ) -> Option<Duration> {
        let mut table = self.table.lock().ok()?;
        let key = (topic.to_string(), partition);
        let m = table.get(&key)?;
        if leader_epoch < m.leader_epoch || (leader_epoch == m.leader_epoch && broker != m.to) {
            return None;
        }
        let m = table.remove(&key)?;
        if leader_epoch > m.leader_epoch {
            return None;
        }
        let took = m.since.elapsed();
        self.seconds.observe(took.as_secs_f64());
        tracing::info!(
            topic, partition, from = ?m.from, to = m.to, leader_epoch, reason = m.reason,
            ms = took.as_millis() as u64, "partition moved"
        );
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= RECENT_MOVES {
                recent.pop_front();
            }
            recent.push_back(info(topic, partition, &m, Some(took)));
        }
        Some(took)
    }

    /// The moves in flight, by topic and partition; with `recent`, first the last ones
    /// that completed.
    pub fn list(&self, recent: bool) -> Vec<MoveInfo> {
        let mut out: Vec<MoveInfo> = match (recent, self.recent.lock()) {
            (true, Ok(done)) => done.iter().cloned().collect(),
            _ => Vec::new(),
        };
        if let Ok(table) = self.table.lock() {
            out.extend(
                table
                    .iter()
                    .filter(|(_, m)| m.since.elapsed() < MOVE_EXPIRY)
                    .map(|((topic, partition), m)| info(topic, *partition, m, None)),
            );
        }
        out
    }

    /// This voter is no longer the leader: what it knew of moves is stale.
    pub fn clear(&self) {
        if let Ok(mut table) = self.table.lock() {
            table.clear();
        }
    }
}

fn info(topic: &str, partition: u32, m: &Move, took: Option<Duration>) -> MoveInfo {
    MoveInfo {
        topic: topic.to_string(),
        partition,
        from: m.from,
        to: m.to,
        leader_epoch: m.leader_epoch,
        elapsed_ms: m.since.elapsed().as_millis() as u64,
        reason: m.reason.to_string(),
        took_ms: took.map(|t| t.as_millis() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_ends_when_its_new_owner_reports_the_epoch() {
        let moves = Moves::default();
        moves.decided("t", 0, Some(1), 2, 5, "requested");
        moves.decided("t", 1, None, 3, 1, "orphan");
        assert_eq!(moves.list(false).len(), 2);
        let reasons: Vec<_> = moves.list(false).into_iter().map(|m| m.reason).collect();
        assert_eq!(reasons, ["requested", "orphan"]);
        // An older epoch, or the old owner, does not end it.
        assert_eq!(moves.opened("t", 0, 2, 4), None);
        assert_eq!(moves.opened("t", 0, 1, 5), None);
        assert_eq!(moves.list(false).len(), 2);
        assert!(moves.opened("t", 0, 2, 5).is_some());
        // A newer epoch ends a superseded move, untimed.
        assert_eq!(moves.opened("t", 1, 2, 2), None);
        assert_eq!(moves.list(false).len(), 0);
        // The completed one is kept as recent, with how long it took.
        let recent = moves.list(true);
        assert_eq!(recent.len(), 1);
        assert_eq!((recent[0].partition, recent[0].to), (0, 2));
        assert!(recent[0].took_ms.is_some());
        // Reports of partitions not moving are ignored.
        assert_eq!(moves.opened("t", 7, 2, 2), None);
    }
}
