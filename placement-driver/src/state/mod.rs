//! The replicated placement-driver state and the rules that change it.
//!
//! Owns: nodes (with id reuse by kind and address), streams with their ranges, topics (rules in
//! [`crate::topics`]), the cluster id, id allocators, and [`PdState::apply`], which validates
//! and applies one [`Command`] in a single step (fencing epochs, range continuity, seal
//! idempotence) and names the [`Event`]s it caused. It also holds the deterministic placement
//! choice [`PdState::choose_servers`] that the leader runs before proposing a range.
//!
//! Must not: do I/O, read clocks, draw random numbers, or look at liveness. Everything here is a
//! pure function of the state and the command, because every voter applies the same log and
//! must reach the same state. Liveness and randomness enter only through what the leader puts
//! into the command (range servers, partition leaders, topic and cluster ids).
//!
//! Split by role: [`records`] holds the stored records, [`command`] the log entry payload and
//! its results, [`streams`] the stream and range rules; node registration, id allocation and
//! [`PdState::apply`] stay here.

mod command;
mod objects;
mod records;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use protocol::pd::Event;
use protocol::RpcError;
use serde::{Deserialize, Serialize};

use crate::topics::TopicRecord;

pub use command::{ApplyResult, Command, Response, StateError};
pub use objects::{ObjectState, SliceSpec, MAX_PREPARED};
pub use records::{Kind, NodeRecord, RangeRecord, StreamRecord};
pub use streams::{check_replication, RangeVerdict};

/// Largest `replica` a stream may ask for.
pub const MAX_REPLICA: u8 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdState {
    pub nodes: BTreeMap<u64, NodeRecord>,
    pub streams: BTreeMap<u64, StreamRecord>,
    pub allocators: BTreeMap<String, u64>,
    pub next_node_id: u64,
    pub next_stream_id: u64,
    /// Kafka topics by name.
    pub topics: BTreeMap<String, TopicRecord>,
    /// Fixed once, by the first leader.
    pub cluster_id: Option<String>,
    /// Objects in object storage and the stream slices they hold.
    pub objects: ObjectState,
}

impl Default for PdState {
    fn default() -> Self {
        PdState {
            nodes: BTreeMap::new(),
            streams: BTreeMap::new(),
            allocators: BTreeMap::new(),
            next_node_id: 1,
            next_stream_id: 1,
            topics: BTreeMap::new(),
            cluster_id: None,
            objects: ObjectState::default(),
        }
    }
}

/// [`PdState`] as snapshots stored it before object storage existed.
#[derive(Deserialize)]
struct PdStateBeforeObjects {
    nodes: BTreeMap<u64, NodeRecord>,
    streams: BTreeMap<u64, StreamRecord>,
    allocators: BTreeMap<String, u64>,
    next_node_id: u64,
    next_stream_id: u64,
    topics: BTreeMap<String, TopicRecord>,
    cluster_id: Option<String>,
}

/// [`PdState`] as snapshots stored it before topics existed.
#[derive(Deserialize)]
struct PdStateBeforeTopics {
    nodes: BTreeMap<u64, NodeRecord>,
    streams: BTreeMap<u64, StreamRecord>,
    allocators: BTreeMap<String, u64>,
    next_node_id: u64,
    next_stream_id: u64,
}

impl PdState {
    /// Decodes a snapshot's state, also in the layouts used before object storage and
    /// before topics existed. Streams that older versions kept as deleted tombstones are
    /// dropped.
    pub fn decode(bytes: &[u8]) -> Result<PdState, RpcError> {
        let mut state = protocol::codec::decode_serde::<PdState>(bytes)
            .or_else(|e| {
                let old: PdStateBeforeObjects =
                    protocol::codec::decode_serde(bytes).map_err(|_| e)?;
                Ok::<_, RpcError>(PdState {
                    nodes: old.nodes,
                    streams: old.streams,
                    allocators: old.allocators,
                    next_node_id: old.next_node_id,
                    next_stream_id: old.next_stream_id,
                    topics: old.topics,
                    cluster_id: old.cluster_id,
                    ..PdState::default()
                })
            })
            .or_else(|e| {
                let old: PdStateBeforeTopics =
                    protocol::codec::decode_serde(bytes).map_err(|_| e)?;
                Ok::<_, RpcError>(PdState {
                    nodes: old.nodes,
                    streams: old.streams,
                    allocators: old.allocators,
                    next_node_id: old.next_node_id,
                    next_stream_id: old.next_stream_id,
                    ..PdState::default()
                })
            })?;
        state.streams.retain(|_, s| !s.deleted);
        Ok(state)
    }

    /// Every node a range of a stream or a partition still names.
    pub fn nodes_in_use(&self) -> BTreeSet<u64> {
        let servers = self
            .streams
            .values()
            .flat_map(|s| &s.ranges)
            .flat_map(|r| r.servers.iter().copied());
        let leaders = self
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.leader);
        servers.chain(leaders).collect()
    }

    /// Nodes that may be forgotten: named by nothing and, by the leader's judgement, `dead`.
    pub fn forgettable_nodes(&self, dead: impl Fn(u64) -> bool) -> Vec<u64> {
        let in_use = self.nodes_in_use();
        self.nodes
            .keys()
            .copied()
            .filter(|id| !in_use.contains(id) && dead(*id))
            .collect()
    }
}

impl PdState {
    /// Applies one command. `Err` leaves the state unchanged. Events name what changed.
    pub fn apply(&mut self, cmd: &Command) -> (ApplyResult, Vec<Event>) {
        if let Command::Batch(cmds) = cmd {
            let mut results = Vec::with_capacity(cmds.len());
            let mut events = Vec::new();
            for c in cmds {
                if matches!(c, Command::Batch(_)) {
                    results.push(Err(StateError::InvalidArgument(
                        "a batch inside a batch".into(),
                    )));
                    continue;
                }
                let (result, mut more) = self.apply(c);
                results.push(result);
                events.append(&mut more);
            }
            return (Ok(Response::Batch(results)), events);
        }
        let result = match cmd {
            Command::RegisterNode {
                kind,
                node_id,
                addr,
                http_addr,
            } => self.register(*kind, *node_id, addr, http_addr),
            Command::CreateStream { replica, ack_count } => {
                self.create_stream(*replica, *ack_count)
            }
            Command::OpenStream {
                stream_id,
                min_epoch,
            } => self.open_stream(*stream_id, *min_epoch),
            Command::CreateRange {
                stream_id,
                epoch,
                start,
                servers,
            } => self.create_range(*stream_id, *epoch, *start, servers),
            Command::SealRange {
                stream_id,
                epoch,
                index,
                end,
            } => self.seal_range(*stream_id, *epoch, *index, *end),
            Command::TrimStream {
                stream_id,
                start_offset,
            } => self.trim(*stream_id, *start_offset),
            Command::DeleteStream { stream_id } => self.delete(*stream_id),
            Command::AllocateIds { key, count } => self.allocate(key, *count),
            Command::CreateTopic(spec) => self.create_topic(spec),
            Command::DeleteTopic { name } => self.delete_topic(name),
            Command::CreatePartitions {
                name,
                total,
                leaders,
            } => self.create_partitions(name, *total, leaders),
            Command::AlterTopicConfigs {
                name,
                set,
                remove,
                replace_all,
            } => self.alter_configs(name, set, remove, *replace_all),
            Command::AssignPartitions { changes } => self.assign_partitions(changes),
            Command::SetClusterId { cluster_id } => self.set_cluster_id(cluster_id),
            Command::ForgetNode { node_id } => self.forget_node(*node_id),
            Command::PrepareObject { node_id, at_ms } => self.prepare_object(*node_id, *at_ms),
            Command::CommitObject {
                object_id,
                size,
                slices,
            } => self.commit_object(*object_id, *size, slices),
            Command::CompactObjects {
                object_id,
                size,
                stream_id,
                replaces,
                start,
                end,
                bytes,
            } => self.compact_objects(
                *object_id,
                *size,
                *stream_id,
                replaces,
                (*start, *end, *bytes),
            ),
            Command::ExpirePrepared { before_ms } => self.expire_prepared(*before_ms),
            Command::ForgetObjects { ids } => self.forget_objects(ids),
            Command::MovePartitions { moves } => self.move_partitions(moves),
            Command::SetDraining { node_id, draining } => self.set_draining(*node_id, *draining),
            // Handled above.
            Command::Batch(_) => Err(StateError::InvalidArgument("a nested batch".into())),
        };
        let events = match (&result, cmd) {
            (Ok(Response::Node(n)), _) => vec![Event::NodeChanged(n.id)],
            (Ok(Response::Stream(s)), _) => vec![Event::StreamChanged(s.id)],
            (Ok(Response::Range(r)), _) => vec![Event::StreamChanged(r.stream_id)],
            // A deleted topic's streams are gone too: tell their holders.
            (Ok(Response::Topic(t)), Command::DeleteTopic { .. }) => {
                std::iter::once(Event::TopicChanged(t.name.clone()))
                    .chain(t.partitions.iter().flat_map(|p| {
                        [
                            Event::StreamChanged(p.data_stream),
                            Event::StreamChanged(p.meta_stream),
                        ]
                    }))
                    .collect()
            }
            (Ok(Response::Topic(t)), _) => vec![Event::TopicChanged(t.name.clone())],
            (Ok(Response::Assigned(names)), _) => {
                names.iter().cloned().map(Event::TopicChanged).collect()
            }
            (Ok(Response::Offloaded(ends)), _) => ends
                .iter()
                .map(|(id, _)| Event::StreamChanged(*id))
                .collect(),
            _ => Vec::new(),
        };
        (result, events)
    }

    fn register(
        &mut self,
        kind: Kind,
        node_id: Option<u64>,
        addr: &str,
        http_addr: &str,
    ) -> ApplyResult {
        let id = match node_id {
            Some(id) if id > 0 => id,
            Some(_) => return Err(StateError::InvalidArgument("node id 0".into())),
            // A broker that lost its id (empty data dir) but comes back at the same address
            // keeps its id, so its Kafka id and its clients' metadata stay stable. A range
            // server never does: one with an empty disk has lost the data its old id stands
            // for, and must not answer seals as if it still held it.
            None => self
                .nodes
                .values()
                .find(|n| kind == Kind::Broker && n.kind == kind && n.addr == addr)
                .map_or(self.next_node_id, |n| n.id),
        };
        if id == u64::MAX {
            return Err(StateError::InvalidArgument("node id too large".into()));
        }
        self.next_node_id = self.next_node_id.max(id + 1);
        let node = NodeRecord {
            id,
            kind,
            addr: addr.to_string(),
            http_addr: http_addr.to_string(),
            draining: false,
        };
        self.nodes.insert(id, node.clone());
        Ok(Response::Node(node))
    }

    fn set_draining(&mut self, node_id: u64, draining: bool) -> ApplyResult {
        let node = self
            .nodes
            .get_mut(&node_id)
            .ok_or_else(|| StateError::NotFound(format!("node {node_id}")))?;
        node.draining = draining;
        Ok(Response::Node(node.clone()))
    }

    fn forget_node(&mut self, node_id: u64) -> ApplyResult {
        if self.nodes_in_use().contains(&node_id) {
            return Err(StateError::InvalidArgument(format!(
                "node {node_id} is still named by a range or a partition"
            )));
        }
        // A forgotten broker's pins go with it (ids are never reused, so they could only
        // dangle).
        for p in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            if p.pinned == Some(node_id) {
                p.pinned = None;
            }
        }
        match self.nodes.remove(&node_id) {
            Some(node) => Ok(Response::Node(node)),
            None => Err(StateError::NotFound(format!("node {node_id}"))),
        }
    }

    fn allocate(&mut self, key: &str, count: u64) -> ApplyResult {
        if count == 0 {
            return Err(StateError::InvalidArgument(
                "count must be at least 1".into(),
            ));
        }
        let next = self.allocators.entry(key.to_string()).or_insert(1);
        let first = *next;
        *next = first
            .checked_add(count)
            .ok_or_else(|| StateError::InvalidArgument("allocator overflow".into()))?;
        Ok(Response::FirstId(first))
    }
}
