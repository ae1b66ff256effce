//! Consumer groups and committed offsets (Kafka's classic group coordinator), durable in
//! the streams of the internal `__consumer_offsets` topic.
//!
//! - [`records`]: the records a coordinator writes (offset commits, group metadata, their
//!   tombstones, snapshots) and their binary form. Part of the contract between brokers over
//!   time: a later owner replays what an earlier one wrote.
//! - [`state`]: the pure group state machine (join, sync, heartbeat, leave, commit, expiry,
//!   replay). No I/O and no actors: every rule is unit-tested there.
//! - [`coordinator`]: one stream owner (`crate::owner`) per `__consumer_offsets` partition this
//!   broker owns. It is the single writer of that partition's data and meta streams, rebuilds
//!   its groups from them on open, persists every change before answering, runs the timers and
//!   snapshots its state into the meta stream so the data stream can be trimmed.
//!
//! The coordinator of a group is the broker that owns partition
//! `abs(java_hash_code(group_id)) % partitions` of `__consumer_offsets` (what Kafka does).
//! This module decides nothing about placement: PD assigns the partitions, the metadata loop
//! starts and stops coordinators accordingly (`crate::owner::reconcile`).

pub mod coordinator;
pub mod records;
pub mod state;

use std::collections::HashMap;
use std::time::Duration;

use crate::context::ClusterSnapshot;
pub use coordinator::{Coordinator, GroupCoordinator};

/// Name of the internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Group-coordination settings (Kafka's `group.*` and `offsets.*` broker configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` when this broker creates it.
    pub offsets_topic_partitions: u32,
    /// Offsets of groups without members expire after this long (`offsets.retention.minutes`).
    pub offsets_retention: Duration,
    /// How often expired offsets and groups are removed.
    pub offsets_retention_check: Duration,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members.
    pub initial_rebalance_delay_ms: i32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// A coordinator snapshots its groups into the meta stream (and trims the data stream)
    /// after writing this many records.
    pub snapshot_every_records: usize,
    /// Most groups one coordinator (one `__consumer_offsets` partition) holds; a request
    /// that would create one more is refused with GROUP_MAX_SIZE_REACHED.
    pub max_groups_per_coordinator: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: 50,
            offsets_retention: Duration::from_secs(10080 * 60),
            offsets_retention_check: Duration::from_secs(600),
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            offset_metadata_max_bytes: 4096,
            snapshot_every_records: 1000,
            max_groups_per_coordinator: 10_000,
        }
    }
}

/// Java's `String.hashCode()` (over UTF-16 code units, wrapping 32-bit arithmetic).
pub fn java_hash_code(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`.
pub fn partition_for(group_id: &str, partitions: u32) -> u32 {
    let h = java_hash_code(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    if partitions == 0 {
        return 0;
    }
    (abs as u32) % partitions
}

/// Coordinators this broker runs, by `__consumer_offsets` partition.
pub type Coordinators = HashMap<u32, crate::owner::OwnerHandle<Coordinator>>;

/// The `__consumer_offsets` partition of `group_id`, if the topic exists.
pub fn offsets_partition(snapshot: &ClusterSnapshot, group_id: &str) -> Option<u32> {
    let topic = snapshot.topics.get(OFFSETS_TOPIC)?;
    let n = topic.partitions.len() as u32;
    (n > 0).then(|| partition_for(group_id, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_java() {
        // Values computed with Java's String.hashCode().
        assert_eq!(java_hash_code(""), 0);
        assert_eq!(java_hash_code("a"), 97);
        assert_eq!(java_hash_code("hello"), 99162322);
        assert_eq!(java_hash_code("my-group"), -1906497762);
        assert_eq!(partition_for("my-group", 50), 1906497762 % 50);
        // Overflowing hashes wrap like Java ints.
        assert_eq!(java_hash_code("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Non-ASCII: UTF-16 code units, a surrogate pair counts twice.
        assert_eq!(java_hash_code("é"), 233);
        assert_eq!(java_hash_code("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn partition_is_abs_hash_mod_n() {
        let h = java_hash_code("console-consumer-1");
        assert_eq!(
            partition_for("console-consumer-1", 50),
            (h.unsigned_abs() % 50)
        );
        assert!(partition_for("x", 7) < 7);
        assert_eq!(partition_for("x", 0), 0);
    }
}
