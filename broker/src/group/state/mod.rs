//! The pure state of the groups of one `__consumer_offsets` partition: Kafka's classic group
//! protocol (generations, member ids, join/sync/heartbeat/leave, rebalance and session
//! timeouts, static membership), committed offsets and their expiry, and replay of the
//! persisted records.
//!
//! It follows Apache Kafka's `GroupCoordinator` rule for rule, with two differences of form:
//! time is passed in (`now`, wall-clock milliseconds) and timers are deadlines checked by
//! [`Groups::tick`]; and what must be persisted is queued as [`Write`]s that the owner (the
//! coordinator actor) appends to the data stream in order, calling each write's `done` once
//! the stream has confirmed it. Answers that depend on a write (offset commits, the leader's
//! assignment, deletions) are given from `done`. If a write fails the owner drops this whole
//! state (the next owner replays the stream), so there is no failure path here.
//!
//! No I/O, no actors, no panics on client input.
//!
//! Layout: [`Groups`] and its write queue here; per-group bookkeeping in `group`; the data
//! the API takes and gives in `requests`; the rules in `join`, `rebalance` (and timers),
//! `membership`, `offsets` (and expiry), `admin`, `replay` (and snapshots). Everything the
//! coordinator and the handlers use is re-exported here under its old path.

use std::collections::HashMap;

use super::records::{GroupValue, OffsetValue, Record};
use super::GroupConfig;

/// New members that never finish joining are dropped after this long (Kafka's
/// `NewMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

mod admin;
mod group;
mod join;
mod membership;
mod offsets;
mod rebalance;
mod replay;
mod requests;

pub use group::*;
pub use requests::*;

/// Every group of one `__consumer_offsets` partition.
pub struct Groups {
    pub config: GroupConfig,
    groups: HashMap<String, Group>,
    writes: Vec<Write>,
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        Groups {
            config,
            groups: HashMap::new(),
            writes: Vec::new(),
        }
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Every committed offset: (group, topic-partition, offset).
    pub fn committed_offsets(&self) -> impl Iterator<Item = (&str, &TopicPartition, i64)> {
        self.groups.iter().flat_map(|(id, group)| {
            group
                .offsets
                .iter()
                .map(move |(tp, value)| (id.as_str(), tp, value.offset))
        })
    }

    /// Writes queued since the last call, in the order they must be appended.
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    fn write(&mut self, records: Vec<Record>, done: Option<WriteDone>) {
        self.writes.push(Write { records, done });
    }

    /// Records the group metadata and queues its write.
    fn store_group(&mut self, group_id: &str, value: GroupValue, done: Option<WriteDone>) {
        if let Some(g) = self.groups.get_mut(group_id) {
            g.persisted = Some(value.clone());
        }
        self.write(
            vec![Record::Group {
                group: group_id.to_string(),
                value: Some(value),
            }],
            done,
        );
    }
}

/// The record of a committed offset (a tombstone when `value` is None).
fn offset_record(group: &str, key: &TopicPartition, value: Option<OffsetValue>) -> Record {
    Record::Offset {
        group: group.to_string(),
        topic: key.topic.clone(),
        partition: key.partition,
        value,
    }
}

#[cfg(test)]
mod tests;
