//! Kafka topics and partitions in the replicated state, and the rules that change them.
//!
//! Owns: [`TopicRecord`] / [`PartitionRecord`], the Kafka naming and count rules, config
//! normalization, and the `impl PdState` methods that create, grow, reconfigure and delete
//! topics (each in one step together with the partitions' data and meta streams), record
//! partition ownership changes ([`PdState::assign_partitions`]) and fix the cluster id once.
//! The `plan_*` methods run every check and return what a command would produce without
//! changing anything (used for `validate_only` and by `apply` itself).
//!
//! Must not: generate ids, read clocks or look at liveness (the leader puts topic ids, cluster
//! ids and chosen partition leaders into the command; apply only re-validates them), or check
//! Kafka config semantics (the broker does that before calling).

use std::collections::{BTreeMap, BTreeSet};

use protocol::model::{PartitionInfo, TopicInfo};
use serde::{Deserialize, Serialize};

use crate::state::{
    check_replication, ApplyResult, Kind, PdState, Response, StateError, StreamRecord,
};

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME: usize = 249;
/// Most config overrides a topic may carry.
pub const MAX_CONFIGS: usize = 1_000;
/// Longest config key.
pub const MAX_CONFIG_KEY: usize = 255;
/// Longest config value.
pub const MAX_CONFIG_VALUE: usize = 64 * 1024;
/// Longest cluster id accepted.
pub const MAX_CLUSTER_ID: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub index: u32,
    pub data_stream: u64,
    pub meta_stream: u64,
    /// The broker that serves the partition (a registered broker), if any.
    pub leader: Option<u64>,
    /// Bumped by one each time `leader` changes.
    pub leader_epoch: u32,
    /// The broker an operator moved the partition to: the balancer keeps it there while that
    /// broker lives (and brings it back when the broker returns).
    pub pinned: Option<u64>,
}

impl PartitionRecord {
    pub fn to_info(&self) -> PartitionInfo {
        PartitionInfo {
            index: self.index,
            data_stream: self.data_stream,
            meta_stream: self.meta_stream,
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            pinned: self.pinned,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: Vec<PartitionRecord>,
    /// Sorted by key, keys unique.
    pub configs: Vec<(String, String)>,
    pub replica: u8,
    pub ack_count: u8,
    pub internal: bool,
}

impl TopicRecord {
    pub fn to_info(&self) -> TopicInfo {
        TopicInfo {
            name: self.name.clone(),
            id: self.id,
            partitions: self
                .partitions
                .iter()
                .map(PartitionRecord::to_info)
                .collect(),
            configs: self.configs.clone(),
            replica: self.replica,
            ack_count: self.ack_count,
            internal: self.internal,
        }
    }
}

/// Everything a new topic needs; `id` and `leaders` were chosen by the Raft leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: u32,
    pub configs: Vec<(String, String)>,
    pub replica: u8,
    pub ack_count: u8,
    pub internal: bool,
    /// Leader of partition `i` at `leaders[i]`; missing or not a registered broker: none yet.
    pub leaders: Vec<Option<u64>>,
}

/// Kafka's topic name rule: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), StateError> {
    if name.is_empty() || name.len() > MAX_TOPIC_NAME {
        return Err(StateError::InvalidArgument(format!(
            "topic name must be 1..={MAX_TOPIC_NAME} characters, got {}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(StateError::InvalidArgument(format!(
            "topic name `{name}` is not allowed"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(StateError::InvalidArgument(format!(
            "topic name `{}` contains `{}`; allowed are [a-zA-Z0-9._-]",
            name.escape_debug(),
            c.escape_debug()
        )));
    }
    Ok(())
}

fn validate_partitions(count: u32, what: &str) -> Result<(), StateError> {
    if !(1..=MAX_PARTITIONS).contains(&count) {
        return Err(StateError::InvalidArgument(format!(
            "{what} {count} not in 1..={MAX_PARTITIONS}"
        )));
    }
    Ok(())
}

fn check_config_entry(key: &str, value: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_CONFIG_KEY {
        return Err(StateError::InvalidArgument(format!(
            "config key must be 1..={MAX_CONFIG_KEY} bytes"
        )));
    }
    if value.len() > MAX_CONFIG_VALUE {
        return Err(StateError::InvalidArgument(format!(
            "config `{key}`: value longer than {MAX_CONFIG_VALUE} bytes"
        )));
    }
    Ok(())
}

/// Checks a list of config entries and returns it as a map (duplicate keys are refused).
fn config_map(entries: &[(String, String)]) -> Result<BTreeMap<String, String>, StateError> {
    let mut map = BTreeMap::new();
    for (k, v) in entries {
        check_config_entry(k, v)?;
        if map.insert(k.clone(), v.clone()).is_some() {
            return Err(StateError::InvalidArgument(format!(
                "config `{k}` given more than once"
            )));
        }
    }
    Ok(map)
}

fn config_vec(map: BTreeMap<String, String>) -> Result<Vec<(String, String)>, StateError> {
    if map.len() > MAX_CONFIGS {
        return Err(StateError::InvalidArgument(format!(
            "more than {MAX_CONFIGS} config overrides"
        )));
    }
    Ok(map.into_iter().collect())
}

fn topic_not_found(name: &str) -> StateError {
    StateError::NotFound(format!("topic `{}`", name.escape_debug()))
}

impl PdState {
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Result<&TopicRecord, StateError> {
        self.topics.get(name).ok_or_else(|| topic_not_found(name))
    }

    /// `leader` if it names a registered broker, else `None`.
    fn broker_or_none(&self, leader: Option<u64>) -> Option<u64> {
        leader.filter(|id| self.nodes.get(id).is_some_and(|n| n.kind == Kind::Broker))
    }

    /// New partitions `from..to` with fresh stream ids starting at `next_stream_id`.
    fn new_partitions(
        &self,
        from: u32,
        to: u32,
        leaders: &[Option<u64>],
    ) -> Result<Vec<PartitionRecord>, StateError> {
        let count = u64::from(to.saturating_sub(from));
        self.next_stream_id
            .checked_add(count * 2)
            .ok_or_else(|| StateError::InvalidArgument("stream ids exhausted".into()))?;
        Ok((from..to)
            .enumerate()
            .map(|(i, index)| {
                let data_stream = self.next_stream_id + 2 * i as u64;
                PartitionRecord {
                    index,
                    data_stream,
                    meta_stream: data_stream + 1,
                    leader: self.broker_or_none(leaders.get(i).copied().flatten()),
                    leader_epoch: 0,
                    pinned: None,
                }
            })
            .collect())
    }

    /// Adds the streams of `partitions` (fresh ids from [`Self::new_partitions`]).
    fn add_partition_streams(&mut self, partitions: &[PartitionRecord], replica: u8, ack: u8) {
        for p in partitions {
            for id in [p.data_stream, p.meta_stream] {
                self.streams.insert(
                    id,
                    StreamRecord {
                        id,
                        epoch: 0,
                        replica,
                        ack_count: ack,
                        start_offset: 0,
                        ranges: Vec::new(),
                        deleted: false,
                    },
                );
                self.next_stream_id = self.next_stream_id.max(id + 1);
            }
        }
    }

    /// What [`Command::CreateTopic`](crate::state::Command::CreateTopic) would create, or why not.
    pub fn plan_create_topic(&self, spec: &TopicSpec) -> Result<TopicRecord, StateError> {
        validate_topic_name(&spec.name)?;
        validate_partitions(spec.partitions, "partition count")?;
        check_replication(spec.replica, spec.ack_count)?;
        let configs = config_vec(config_map(&spec.configs)?)?;
        if self.topics.contains_key(&spec.name) {
            return Err(StateError::AlreadyExists(format!(
                "topic `{}` already exists",
                spec.name
            )));
        }
        if spec.id == [0; 16] || self.topics.values().any(|t| t.id == spec.id) {
            return Err(StateError::AlreadyExists(
                "topic id is zero or already in use".into(),
            ));
        }
        Ok(TopicRecord {
            name: spec.name.clone(),
            id: spec.id,
            partitions: self.new_partitions(0, spec.partitions, &spec.leaders)?,
            configs,
            replica: spec.replica,
            ack_count: spec.ack_count,
            internal: spec.internal,
        })
    }

    pub(crate) fn create_topic(&mut self, spec: &TopicSpec) -> ApplyResult {
        let topic = self.plan_create_topic(spec)?;
        self.add_partition_streams(&topic.partitions, topic.replica, topic.ack_count);
        self.topics.insert(topic.name.clone(), topic.clone());
        Ok(Response::Topic(topic))
    }

    /// Removes the topic and forgets every stream of its partitions.
    pub(crate) fn delete_topic(&mut self, name: &str) -> ApplyResult {
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| topic_not_found(name))?;
        for p in &topic.partitions {
            for id in [p.data_stream, p.meta_stream] {
                self.streams.remove(&id);
                self.drop_slices_below(id);
            }
        }
        Ok(Response::Topic(topic))
    }

    /// The topic grown to `total` partitions; the new ones led by `leaders[i]` (for new
    /// partition `i`, counted from the first new one).
    pub fn plan_create_partitions(
        &self,
        name: &str,
        total: u32,
        leaders: &[Option<u64>],
    ) -> Result<TopicRecord, StateError> {
        let topic = self.topic(name)?;
        let current = topic.partitions.len() as u32;
        validate_partitions(total, "partition total")?;
        if total <= current {
            return Err(StateError::InvalidArgument(format!(
                "topic `{name}` has {current} partitions; the new total {total} must be larger"
            )));
        }
        let mut grown = topic.clone();
        grown
            .partitions
            .extend(self.new_partitions(current, total, leaders)?);
        Ok(grown)
    }

    pub(crate) fn create_partitions(
        &mut self,
        name: &str,
        total: u32,
        leaders: &[Option<u64>],
    ) -> ApplyResult {
        let grown = self.plan_create_partitions(name, total, leaders)?;
        let old = self.topic(name)?.partitions.len();
        self.add_partition_streams(&grown.partitions[old..], grown.replica, grown.ack_count);
        self.topics.insert(grown.name.clone(), grown.clone());
        Ok(Response::Topic(grown))
    }

    /// The topic with its configs changed: `replace_all` makes `set` the whole set; otherwise
    /// `set` is merged, then the keys in `remove` deleted.
    pub fn plan_alter_configs(
        &self,
        name: &str,
        set: &[(String, String)],
        remove: &[String],
        replace_all: bool,
    ) -> Result<TopicRecord, StateError> {
        let topic = self.topic(name)?;
        let set = config_map(set)?;
        let configs = if replace_all {
            set
        } else {
            let mut merged: BTreeMap<String, String> = topic.configs.iter().cloned().collect();
            merged.extend(set);
            for k in remove {
                merged.remove(k);
            }
            merged
        };
        let mut changed = topic.clone();
        changed.configs = config_vec(configs)?;
        Ok(changed)
    }

    pub(crate) fn alter_configs(
        &mut self,
        name: &str,
        set: &[(String, String)],
        remove: &[String],
        replace_all: bool,
    ) -> ApplyResult {
        let changed = self.plan_alter_configs(name, set, remove, replace_all)?;
        self.topics.insert(changed.name.clone(), changed.clone());
        Ok(Response::Topic(changed))
    }

    /// Applies the balancer's ownership decisions. Each change is re-validated on its own: a
    /// change whose topic or partition is gone, whose target is not a registered broker, or
    /// that names the current leader is skipped. Answers the topics that changed.
    pub(crate) fn assign_partitions(&mut self, changes: &[(String, u32, u64)]) -> ApplyResult {
        self.assign(changes, false)
    }

    /// An operator's moves: assigned as [`Self::assign_partitions`] does, and each partition
    /// pinned to its new broker (also when it is there already).
    pub(crate) fn move_partitions(&mut self, moves: &[(String, u32, u64)]) -> ApplyResult {
        self.assign(moves, true)
    }

    fn assign(&mut self, changes: &[(String, u32, u64)], pin: bool) -> ApplyResult {
        let mut changed = BTreeSet::new();
        for (name, index, leader) in changes {
            if self.broker_or_none(Some(*leader)).is_none() {
                continue;
            }
            let Some(topic) = self.topics.get_mut(name) else {
                continue;
            };
            let Some(p) = topic.partitions.get_mut(*index as usize) else {
                continue;
            };
            if pin && p.pinned != Some(*leader) {
                p.pinned = Some(*leader);
                changed.insert(name.clone());
            }
            if p.leader == Some(*leader) {
                continue;
            }
            let Some(epoch) = p.leader_epoch.checked_add(1) else {
                continue;
            };
            p.leader = Some(*leader);
            p.leader_epoch = epoch;
            changed.insert(name.clone());
        }
        Ok(Response::Assigned(changed.into_iter().collect()))
    }

    /// Fixes the cluster id the first time; later calls leave it and answer the stored one.
    pub(crate) fn set_cluster_id(&mut self, id: &str) -> ApplyResult {
        if let Some(existing) = &self.cluster_id {
            return Ok(Response::ClusterId(existing.clone()));
        }
        if id.is_empty() || id.len() > MAX_CLUSTER_ID {
            return Err(StateError::InvalidArgument(format!(
                "cluster id must be 1..={MAX_CLUSTER_ID} bytes"
            )));
        }
        self.cluster_id = Some(id.to_string());
        Ok(Response::ClusterId(id.to_string()))
    }
}

#[cfg(test)]
mod tests;
