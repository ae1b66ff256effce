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
}

impl PartitionRecord {
    pub fn to_info(&self) -> PartitionInfo {
        PartitionInfo {
            index: self.index,
            data_stream: self.data_stream,
            meta_stream: self.meta_stream,
            leader: self.leader,
            leader_epoch: self.leader_epoch,
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

    /// Removes the topic and marks every stream of its partitions deleted.
    pub(crate) fn delete_topic(&mut self, name: &str) -> ApplyResult {
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| topic_not_found(name))?;
        for p in &topic.partitions {
            for id in [p.data_stream, p.meta_stream] {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.deleted = true;
                }
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
mod tests {
    use protocol::pd::Event;

    use super::*;
    use crate::state::Command;

    fn spec(name: &str, partitions: u32) -> TopicSpec {
        let mut id = [7u8; 16];
        id[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
        TopicSpec {
            name: name.into(),
            id,
            partitions,
            configs: vec![],
            replica: 3,
            ack_count: 2,
            internal: false,
            leaders: vec![],
        }
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    fn create(st: &mut PdState, spec: TopicSpec) -> Result<TopicRecord, StateError> {
        match st.apply(&Command::CreateTopic(spec)).0? {
            Response::Topic(t) => Ok(t),
            other => panic!("{other:?}"),
        }
    }

    fn invalid<T: std::fmt::Debug>(r: Result<T, StateError>) -> bool {
        matches!(r, Err(StateError::InvalidArgument(_)))
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "A-b_c.9", "..a", "...", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "é",
            "a\0",
            "a:b",
            &"x".repeat(250),
        ] {
            assert!(invalid(validate_topic_name(bad)), "{bad:?}");
        }
        let mut st = PdState::default();
        assert!(invalid(create(&mut st, spec("bad name", 1))));
        assert!(st.topics.is_empty() && st.streams.is_empty());
    }

    #[test]
    fn create_checks_counts_replication_configs_and_duplicates() {
        let mut st = PdState::default();
        assert!(invalid(create(&mut st, spec("t", 0))));
        assert!(invalid(create(&mut st, spec("t", MAX_PARTITIONS + 1))));
        assert!(invalid(create(
            &mut st,
            TopicSpec {
                ack_count: 4,
                ..spec("t", 1)
            }
        )));
        assert!(invalid(create(
            &mut st,
            TopicSpec {
                replica: 0,
                ..spec("t", 1)
            }
        )));
        assert!(invalid(create(
            &mut st,
            TopicSpec {
                configs: vec![kv("a", "1"), kv("a", "2")],
                ..spec("t", 1)
            }
        )));
        assert!(invalid(create(
            &mut st,
            TopicSpec {
                configs: vec![kv("", "1")],
                ..spec("t", 1)
            }
        )));
        assert_eq!(st, PdState::default());

        let t = create(
            &mut st,
            TopicSpec {
                configs: vec![kv("retention.ms", "1000"), kv("cleanup.policy", "compact")],
                ..spec("t", 3)
            },
        )
        .expect("created");
        // Configs sorted by key; streams two per partition, in order, with the topic's replication.
        assert_eq!(
            t.configs,
            vec![kv("cleanup.policy", "compact"), kv("retention.ms", "1000")]
        );
        let ids: Vec<(u64, u64)> = t
            .partitions
            .iter()
            .map(|p| (p.data_stream, p.meta_stream))
            .collect();
        assert_eq!(ids, vec![(1, 2), (3, 4), (5, 6)]);
        for id in 1..=6 {
            let s = st.stream(id).expect("stream");
            assert_eq!((s.replica, s.ack_count, s.epoch), (3, 2, 0));
        }
        assert_eq!(st.next_stream_id, 7);
        assert!(t
            .partitions
            .iter()
            .all(|p| p.leader.is_none() && p.leader_epoch == 0));

        // Name taken; id taken.
        assert!(matches!(
            create(&mut st, spec("t", 1)),
            Err(StateError::AlreadyExists(_))
        ));
        assert!(matches!(
            create(
                &mut st,
                TopicSpec {
                    id: t.id,
                    ..spec("u", 1)
                }
            ),
            Err(StateError::AlreadyExists(_))
        ));
        // Event.
        let (_, ev) = st.apply(&Command::CreateTopic(spec("v", 1)));
        assert_eq!(ev, vec![Event::TopicChanged("v".into())]);
        // Max partition count is accepted.
        assert_eq!(
            create(&mut st, spec("big", MAX_PARTITIONS))
                .map(|t| t.partitions.len())
                .ok(),
            Some(MAX_PARTITIONS as usize)
        );
    }

    #[test]
    fn leaders_in_the_command_are_kept_only_for_registered_brokers() {
        let mut st = PdState::default();
        let reg = |st: &mut PdState, kind, addr: &str| match st
            .apply(&Command::RegisterNode {
                kind,
                node_id: None,
                addr: addr.into(),
                http_addr: String::new(),
            })
            .0
        {
            Ok(Response::Node(n)) => n.id,
            other => panic!("{other:?}"),
        };
        let b = reg(&mut st, Kind::Broker, "b");
        let rs = reg(&mut st, Kind::RangeServer, "r");
        let t = create(
            &mut st,
            TopicSpec {
                leaders: vec![Some(b), Some(rs), Some(99)],
                ..spec("t", 4)
            },
        )
        .expect("created");
        let leaders: Vec<Option<u64>> = t.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![Some(b), None, None, None]);
    }

    #[test]
    fn plans_change_nothing() {
        let mut st = PdState::default();
        create(&mut st, spec("t", 2)).expect("created");
        let before = st.clone();
        let planned = st.plan_create_topic(&spec("u", 2)).expect("valid");
        assert_eq!(planned.partitions[0].data_stream, 5);
        assert!(matches!(
            st.plan_create_topic(&spec("t", 2)),
            Err(StateError::AlreadyExists(_))
        ));
        assert!(invalid(st.plan_create_topic(&spec("u", 0))));
        assert_eq!(
            st.plan_create_partitions("t", 5, &[])
                .map(|t| t.partitions.len())
                .ok(),
            Some(5)
        );
        assert!(st
            .plan_alter_configs("t", &[kv("a", "b")], &[], false)
            .is_ok());
        assert_eq!(st, before);
    }

    #[test]
    fn delete_removes_the_topic_and_marks_its_streams_deleted() {
        let mut st = PdState::default();
        create(&mut st, spec("t", 2)).expect("created");
        create(&mut st, spec("keep", 1)).expect("created");
        let (r, ev) = st.apply(&Command::DeleteTopic { name: "t".into() });
        assert!(matches!(r, Ok(Response::Topic(ref t)) if t.name == "t"));
        assert_eq!(
            ev,
            vec![
                Event::TopicChanged("t".into()),
                Event::StreamChanged(1),
                Event::StreamChanged(2),
                Event::StreamChanged(3),
                Event::StreamChanged(4),
            ]
        );
        for id in 1..=4 {
            assert!(matches!(st.stream(id), Err(StateError::NotFound(_))));
            assert!(st.streams.get(&id).is_some_and(|s| s.deleted));
        }
        assert!(st.stream(5).is_ok());
        assert!(matches!(st.topic("t"), Err(StateError::NotFound(_))));
        assert!(matches!(
            st.apply(&Command::DeleteTopic { name: "t".into() }).0,
            Err(StateError::NotFound(_))
        ));
        // The name can be used again, with new streams.
        let t = create(&mut st, spec("t", 1)).expect("re-created");
        assert_eq!(t.partitions[0].data_stream, 7);
    }

    #[test]
    fn create_partitions_grows_only() {
        let mut st = PdState::default();
        create(&mut st, spec("t", 2)).expect("created");
        let grow = |st: &mut PdState, total| {
            st.apply(&Command::CreatePartitions {
                name: "t".into(),
                total,
                leaders: vec![],
            })
        };
        assert!(invalid(grow(&mut st, 2).0));
        assert!(invalid(grow(&mut st, 1).0));
        assert!(invalid(grow(&mut st, MAX_PARTITIONS + 1).0));
        assert!(matches!(
            st.apply(&Command::CreatePartitions {
                name: "nope".into(),
                total: 3,
                leaders: vec![]
            })
            .0,
            Err(StateError::NotFound(_))
        ));
        let (r, ev) = grow(&mut st, 4);
        let Ok(Response::Topic(t)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(ev, vec![Event::TopicChanged("t".into())]);
        let parts: Vec<(u32, u64, u64)> = t
            .partitions
            .iter()
            .map(|p| (p.index, p.data_stream, p.meta_stream))
            .collect();
        assert_eq!(parts, vec![(0, 1, 2), (1, 3, 4), (2, 5, 6), (3, 7, 8)]);
        assert!(st
            .stream(8)
            .is_ok_and(|s| s.replica == 3 && s.ack_count == 2));
        assert_eq!(st.topic("t").map(|t| t.partitions.len()).ok(), Some(4));
    }

    #[test]
    fn alter_configs_merge_and_replace() {
        let mut st = PdState::default();
        create(
            &mut st,
            TopicSpec {
                configs: vec![kv("a", "1"), kv("b", "2")],
                ..spec("t", 1)
            },
        )
        .expect("created");
        let alter = |st: &mut PdState, set: Vec<(String, String)>, remove: Vec<&str>, all| match st
            .apply(&Command::AlterTopicConfigs {
                name: "t".into(),
                set,
                remove: remove.into_iter().map(String::from).collect(),
                replace_all: all,
            })
            .0
        {
            Ok(Response::Topic(t)) => Ok(t.configs),
            Err(e) => Err(e),
            Ok(other) => panic!("{other:?}"),
        };
        // Incremental: set merges, remove deletes (also a key just set), unknown removes ignored.
        assert_eq!(
            alter(
                &mut st,
                vec![kv("c", "3"), kv("a", "9")],
                vec!["b", "zz"],
                false
            ),
            Ok(vec![kv("a", "9"), kv("c", "3")])
        );
        assert_eq!(
            alter(&mut st, vec![kv("d", "4")], vec!["d"], false),
            Ok(vec![kv("a", "9"), kv("c", "3")])
        );
        // Replace all: set is the whole config.
        assert_eq!(
            alter(&mut st, vec![kv("z", "1"), kv("x", "2")], vec![], true),
            Ok(vec![kv("x", "2"), kv("z", "1")])
        );
        assert_eq!(alter(&mut st, vec![], vec![], true), Ok(vec![]));
        assert!(invalid(alter(
            &mut st,
            vec![kv("a", "1"), kv("a", "1")],
            vec![],
            false
        )));
        assert!(matches!(
            st.apply(&Command::AlterTopicConfigs {
                name: "nope".into(),
                set: vec![],
                remove: vec![],
                replace_all: true
            })
            .0,
            Err(StateError::NotFound(_))
        ));
    }

    #[test]
    fn cluster_id_is_fixed_once() {
        let mut st = PdState::default();
        let set = |st: &mut PdState, id: &str| {
            st.apply(&Command::SetClusterId {
                cluster_id: id.into(),
            })
            .0
        };
        assert!(invalid(set(&mut st, "")));
        assert_eq!(
            set(&mut st, "first"),
            Ok(Response::ClusterId("first".into()))
        );
        assert_eq!(
            set(&mut st, "second"),
            Ok(Response::ClusterId("first".into()))
        );
        assert_eq!(st.cluster_id.as_deref(), Some("first"));
    }
}
