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

use std::collections::{BTreeMap, BTreeSet, HashSet};

use protocol::model::{NodeInfo, NodeKind, RangeInfo, StreamInfo};
use protocol::pd::Event;
use protocol::{ErrorCode, RpcError};
use serde::{Deserialize, Serialize};

use crate::topics::{TopicRecord, TopicSpec};

/// Largest `replica` a stream may ask for.
pub const MAX_REPLICA: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    RangeServer,
    Broker,
}

impl From<NodeKind> for Kind {
    fn from(k: NodeKind) -> Self {
        match k {
            NodeKind::RangeServer => Kind::RangeServer,
            NodeKind::Broker => Kind::Broker,
        }
    }
}

impl From<Kind> for NodeKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::RangeServer => NodeKind::RangeServer,
            Kind::Broker => NodeKind::Broker,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    pub kind: Kind,
    pub addr: String,
    pub http_addr: String,
}

impl NodeRecord {
    pub fn to_info(&self, alive: bool) -> NodeInfo {
        NodeInfo {
            id: self.id,
            kind: self.kind.into(),
            addr: self.addr.clone(),
            http_addr: self.http_addr.clone(),
            alive,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRecord {
    pub stream_id: u64,
    pub index: u32,
    pub epoch: u64,
    pub start: u64,
    pub end: Option<u64>,
    pub servers: Vec<u64>,
    pub offload_owner: u64,
}

impl RangeRecord {
    pub fn to_info(&self) -> RangeInfo {
        RangeInfo {
            stream_id: self.stream_id,
            index: self.index,
            epoch: self.epoch,
            start: self.start,
            end: self.end,
            servers: self.servers.clone(),
            offload_owner: self.offload_owner,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub id: u64,
    pub epoch: u64,
    pub replica: u8,
    pub ack_count: u8,
    pub start_offset: u64,
    pub ranges: Vec<RangeRecord>,
    pub deleted: bool,
}

impl StreamRecord {
    pub fn to_info(&self) -> StreamInfo {
        StreamInfo {
            id: self.id,
            epoch: self.epoch,
            replica: self.replica,
            ack_count: self.ack_count,
            start_offset: self.start_offset,
            ranges: self.ranges.iter().map(RangeRecord::to_info).collect(),
            deleted: self.deleted,
        }
    }
}

/// One change to the state: the payload of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterNode {
        kind: Kind,
        node_id: Option<u64>,
        addr: String,
        http_addr: String,
    },
    CreateStream {
        replica: u8,
        ack_count: u8,
    },
    OpenStream {
        stream_id: u64,
        min_epoch: u64,
    },
    /// `servers` was chosen by the leader (which knows liveness); apply only validates it.
    CreateRange {
        stream_id: u64,
        epoch: u64,
        start: u64,
        servers: Vec<u64>,
    },
    SealRange {
        stream_id: u64,
        epoch: u64,
        index: u32,
        end: u64,
    },
    TrimStream {
        stream_id: u64,
        start_offset: u64,
    },
    DeleteStream {
        stream_id: u64,
    },
    AllocateIds {
        key: String,
        count: u64,
    },
    /// A topic with its partitions' streams; id and leaders chosen by the leader.
    CreateTopic(TopicSpec),
    /// Removes the topic and marks its streams deleted.
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `total` partitions; `leaders[i]` leads the i-th new one.
    CreatePartitions {
        name: String,
        total: u32,
        leaders: Vec<Option<u64>>,
    },
    AlterTopicConfigs {
        name: String,
        set: Vec<(String, String)>,
        remove: Vec<String>,
        replace_all: bool,
    },
    /// The balancer's decisions: (topic, partition index, new leader broker).
    AssignPartitions {
        changes: Vec<(String, u32, u64)>,
    },
    /// Sets the cluster id if none is set yet.
    SetClusterId {
        cluster_id: String,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Node(NodeRecord),
    Stream(StreamRecord),
    Range(RangeRecord),
    FirstId(u64),
    Topic(TopicRecord),
    /// Topics whose partition ownership changed.
    Assigned(Vec<String>),
    ClusterId(String),
    /// Log entries without a command (blank, membership).
    Empty,
}

/// A command the rules refused. Carried through Raft as the command's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StateError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("no capacity: {0}")]
    NoCapacity(String),
}

impl From<StateError> for RpcError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NotFound(m) => RpcError::new(ErrorCode::NotFound, m),
            StateError::Fenced(m) => RpcError::new(ErrorCode::Fenced, m),
            StateError::InvalidArgument(m) => RpcError::new(ErrorCode::InvalidArgument, m),
            StateError::AlreadyExists(m) => RpcError::new(ErrorCode::AlreadyExists, m),
            StateError::NoCapacity(m) => RpcError::new(ErrorCode::NoCapacity, m),
        }
    }
}

/// The result of one applied log entry, as stored in the Raft response.
pub type ApplyResult = Result<Response, StateError>;

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
        }
    }
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
    /// Decodes a snapshot's state, also in the layout used before topics existed.
    pub fn decode(bytes: &[u8]) -> Result<PdState, RpcError> {
        protocol::codec::decode_serde::<PdState>(bytes).or_else(|e| {
            let old: PdStateBeforeTopics = protocol::codec::decode_serde(bytes).map_err(|_| e)?;
            Ok(PdState {
                nodes: old.nodes,
                streams: old.streams,
                allocators: old.allocators,
                next_node_id: old.next_node_id,
                next_stream_id: old.next_stream_id,
                ..PdState::default()
            })
        })
    }
}

/// The replication rule of a stream: `1 <= ack_count <= replica <= MAX_REPLICA`.
pub fn check_replication(replica: u8, ack_count: u8) -> Result<(), StateError> {
    if !(1..=MAX_REPLICA).contains(&replica) {
        return Err(StateError::InvalidArgument(format!(
            "replica {replica} not in 1..={MAX_REPLICA}"
        )));
    }
    if ack_count < 1 || ack_count > replica {
        return Err(StateError::InvalidArgument(format!(
            "ack_count {ack_count} not in 1..={replica}"
        )));
    }
    Ok(())
}

fn not_found(stream_id: u64) -> StateError {
    StateError::NotFound(format!("stream {stream_id}"))
}

impl PdState {
    /// A live (not deleted) stream.
    pub fn stream(&self, stream_id: u64) -> Result<&StreamRecord, StateError> {
        match self.streams.get(&stream_id) {
            Some(s) if !s.deleted => Ok(s),
            _ => Err(not_found(stream_id)),
        }
    }

    fn stream_mut(&mut self, stream_id: u64) -> Result<&mut StreamRecord, StateError> {
        match self.streams.get_mut(&stream_id) {
            Some(s) if !s.deleted => Ok(s),
            _ => Err(not_found(stream_id)),
        }
    }

    /// Open ranges per range server (only the last range of a live stream can be open).
    pub fn open_ranges(&self) -> BTreeMap<u64, usize> {
        let mut counts = BTreeMap::new();
        for s in self.streams.values().filter(|s| !s.deleted) {
            if let Some(last) = s.ranges.last().filter(|r| r.end.is_none()) {
                for id in &last.servers {
                    *counts.entry(*id).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// Picks up to `replica` servers for the next range of `stream_id`: live range servers not
    /// in `exclude`, preferring those not holding the previous range, then those with the fewest
    /// open ranges, then the lowest id. Deterministic for a given state and liveness.
    pub fn choose_servers(
        &self,
        stream_id: u64,
        exclude: &[u64],
        alive: impl Fn(u64) -> bool,
    ) -> Result<Vec<u64>, StateError> {
        let stream = self.stream(stream_id)?;
        let previous: HashSet<u64> = stream
            .ranges
            .last()
            .map(|r| r.servers.iter().copied().collect())
            .unwrap_or_default();
        let open = self.open_ranges();
        let mut candidates: Vec<(bool, usize, u64)> = self
            .nodes
            .values()
            .filter(|n| n.kind == Kind::RangeServer)
            .filter(|n| !exclude.contains(&n.id) && alive(n.id))
            .map(|n| {
                (
                    previous.contains(&n.id),
                    open.get(&n.id).copied().unwrap_or(0),
                    n.id,
                )
            })
            .collect();
        candidates.sort();
        Ok(candidates
            .into_iter()
            .take(usize::from(stream.replica))
            .map(|(_, _, id)| id)
            .collect())
    }

    /// Applies one command. `Err` leaves the state unchanged. Events name what changed.
    pub fn apply(&mut self, cmd: &Command) -> (ApplyResult, Vec<Event>) {
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
        };
        self.nodes.insert(id, node.clone());
        Ok(Response::Node(node))
    }

    fn create_stream(&mut self, replica: u8, ack_count: u8) -> ApplyResult {
        check_replication(replica, ack_count)?;
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        let stream = StreamRecord {
            id,
            epoch: 0,
            replica,
            ack_count,
            start_offset: 0,
            ranges: Vec::new(),
            deleted: false,
        };
        self.streams.insert(id, stream.clone());
        Ok(Response::Stream(stream))
    }

    fn open_stream(&mut self, stream_id: u64, min_epoch: u64) -> ApplyResult {
        let s = self.stream_mut(stream_id)?;
        let next = s
            .epoch
            .checked_add(1)
            .ok_or_else(|| StateError::InvalidArgument("epoch overflow".into()))?;
        s.epoch = next.max(min_epoch);
        Ok(Response::Stream(s.clone()))
    }

    fn create_range(
        &mut self,
        stream_id: u64,
        epoch: u64,
        start: u64,
        servers: &[u64],
    ) -> ApplyResult {
        let s = self.stream(stream_id)?;
        if epoch != s.epoch {
            return Err(StateError::Fenced(format!(
                "stream {stream_id} epoch is {}, request has {epoch}",
                s.epoch
            )));
        }
        let (index, expected_start) = match s.ranges.last() {
            None => (0, s.start_offset),
            Some(last) => match last.end {
                Some(end) => (last.index + 1, end),
                None if last.epoch == epoch && last.start == start => {
                    // A retried identical create: the range already exists.
                    return Ok(Response::Range(last.clone()));
                }
                None => {
                    return Err(StateError::InvalidArgument(format!(
                        "stream {stream_id}: last range {} still open",
                        last.index
                    )))
                }
            },
        };
        if start != expected_start {
            return Err(StateError::InvalidArgument(format!(
                "stream {stream_id}: range start {start} != expected {expected_start}"
            )));
        }
        if servers.len() < usize::from(s.ack_count) {
            return Err(StateError::NoCapacity(format!(
                "stream {stream_id} needs at least {} live range servers, {} available",
                s.ack_count,
                servers.len()
            )));
        }
        if servers.len() > usize::from(s.replica) {
            return Err(StateError::InvalidArgument(format!(
                "{} servers for replica {}",
                servers.len(),
                s.replica
            )));
        }
        let distinct: BTreeSet<u64> = servers.iter().copied().collect();
        if distinct.len() != servers.len() {
            return Err(StateError::InvalidArgument("duplicate servers".into()));
        }
        for id in servers {
            match self.nodes.get(id) {
                Some(n) if n.kind == Kind::RangeServer => {}
                _ => {
                    return Err(StateError::InvalidArgument(format!(
                        "node {id} is not a range server"
                    )))
                }
            }
        }
        let range = RangeRecord {
            stream_id,
            index,
            epoch,
            start,
            end: None,
            servers: servers.to_vec(),
            offload_owner: servers[0],
        };
        self.stream_mut(stream_id)?.ranges.push(range.clone());
        Ok(Response::Range(range))
    }

    fn seal_range(&mut self, stream_id: u64, epoch: u64, index: u32, end: u64) -> ApplyResult {
        let s = self.stream_mut(stream_id)?;
        if epoch != s.epoch {
            return Err(StateError::Fenced(format!(
                "stream {stream_id} epoch is {}, request has {epoch}",
                s.epoch
            )));
        }
        let last_index = s.ranges.last().map(|r| r.index);
        let Some(range) = s.ranges.iter_mut().find(|r| r.index == index) else {
            return Err(StateError::NotFound(format!(
                "stream {stream_id} range {index}"
            )));
        };
        match range.end {
            Some(existing) if existing == end => return Ok(Response::Range(range.clone())),
            Some(existing) => {
                return Err(StateError::InvalidArgument(format!(
                    "stream {stream_id} range {index} already sealed at {existing}, not {end}"
                )))
            }
            None => {}
        }
        if Some(index) != last_index {
            return Err(StateError::InvalidArgument(format!(
                "stream {stream_id} range {index} is not the last range"
            )));
        }
        if end < range.start {
            return Err(StateError::InvalidArgument(format!(
                "stream {stream_id} range {index}: end {end} < start {}",
                range.start
            )));
        }
        range.end = Some(end);
        Ok(Response::Range(range.clone()))
    }

    fn trim(&mut self, stream_id: u64, start_offset: u64) -> ApplyResult {
        let s = self.stream_mut(stream_id)?;
        if let Some(last) = s.ranges.last() {
            if let Some(end) = last.end {
                if start_offset > end {
                    return Err(StateError::InvalidArgument(format!(
                        "stream {stream_id}: trim to {start_offset} beyond end {end}"
                    )));
                }
            }
        }
        s.start_offset = s.start_offset.max(start_offset);
        Ok(Response::Stream(s.clone()))
    }

    fn delete(&mut self, stream_id: u64) -> ApplyResult {
        match self.streams.get_mut(&stream_id) {
            Some(s) => {
                s.deleted = true;
                Ok(Response::Stream(s.clone()))
            }
            None => Err(not_found(stream_id)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers a new node at a fresh address.
    fn reg(st: &mut PdState, kind: Kind) -> u64 {
        let addr = format!("127.0.0.1:{}", 9000 + st.next_node_id);
        match st
            .apply(&Command::RegisterNode {
                kind,
                node_id: None,
                addr,
                http_addr: "h".into(),
            })
            .0
        {
            Ok(Response::Node(n)) => n.id,
            other => panic!("{other:?}"),
        }
    }

    fn stream(st: &mut PdState, replica: u8, ack: u8) -> u64 {
        match st
            .apply(&Command::CreateStream {
                replica,
                ack_count: ack,
            })
            .0
        {
            Ok(Response::Stream(s)) => s.id,
            other => panic!("{other:?}"),
        }
    }

    fn open(st: &mut PdState, id: u64, min_epoch: u64) -> u64 {
        match st
            .apply(&Command::OpenStream {
                stream_id: id,
                min_epoch,
            })
            .0
        {
            Ok(Response::Stream(s)) => s.epoch,
            other => panic!("{other:?}"),
        }
    }

    fn create_range(
        st: &mut PdState,
        id: u64,
        epoch: u64,
        start: u64,
        servers: &[u64],
    ) -> ApplyResult {
        st.apply(&Command::CreateRange {
            stream_id: id,
            epoch,
            start,
            servers: servers.to_vec(),
        })
        .0
    }

    fn seal(st: &mut PdState, id: u64, epoch: u64, index: u32, end: u64) -> ApplyResult {
        st.apply(&Command::SealRange {
            stream_id: id,
            epoch,
            index,
            end,
        })
        .0
    }

    fn setup(servers: usize) -> (PdState, Vec<u64>) {
        let mut st = PdState::default();
        let ids = (0..servers)
            .map(|_| reg(&mut st, Kind::RangeServer))
            .collect();
        (st, ids)
    }

    #[test]
    fn register_allocates_and_keeps_ids() {
        let mut st = PdState::default();
        assert_eq!(reg(&mut st, Kind::RangeServer), 1);
        assert_eq!(reg(&mut st, Kind::Broker), 2);
        // Re-register with a known id updates the address.
        let (r, ev) = st.apply(&Command::RegisterNode {
            kind: Kind::RangeServer,
            node_id: Some(1),
            addr: "new".into(),
            http_addr: "h2".into(),
        });
        assert!(matches!(r, Ok(Response::Node(ref n)) if n.id == 1 && n.addr == "new"));
        assert_eq!(ev, vec![Event::NodeChanged(1)]);
        // An unknown but provided id is kept and the allocator moves past it.
        let (r, _) = st.apply(&Command::RegisterNode {
            kind: Kind::RangeServer,
            node_id: Some(10),
            addr: "x".into(),
            http_addr: "y".into(),
        });
        assert!(matches!(r, Ok(Response::Node(ref n)) if n.id == 10));
        assert_eq!(reg(&mut st, Kind::Broker), 11);
    }

    #[test]
    fn register_without_id_reuses_a_brokers_id_by_address_only() {
        let mut st = PdState::default();
        let register = |st: &mut PdState, kind, addr: &str, http: &str| match st
            .apply(&Command::RegisterNode {
                kind,
                node_id: None,
                addr: addr.into(),
                http_addr: http.into(),
            })
            .0
        {
            Ok(Response::Node(n)) => n,
            other => panic!("{other:?}"),
        };
        let b1 = register(&mut st, Kind::Broker, "127.0.0.1:9092", "h1");
        let b2 = register(&mut st, Kind::Broker, "127.0.0.1:9093", "h2");
        let rs = register(&mut st, Kind::RangeServer, "127.0.0.1:9092", "h3");
        assert_eq!((b1.id, b2.id, rs.id), (1, 2, 3));
        // Restarted with an empty data dir: same address, same id; http address updated.
        let again = register(&mut st, Kind::Broker, "127.0.0.1:9092", "h9");
        assert_eq!((again.id, again.http_addr.as_str()), (1, "h9"));
        // A range server with an empty disk is a new node: its old id's data is gone.
        assert_eq!(
            register(&mut st, Kind::RangeServer, "127.0.0.1:9092", "h").id,
            4
        );
        // A new address gets a new id.
        assert_eq!(register(&mut st, Kind::Broker, "127.0.0.1:9094", "h").id, 5);
        assert_eq!(st.nodes.len(), 5);
    }

    #[test]
    fn snapshots_from_before_topics_still_decode() {
        #[derive(Serialize)]
        struct Old<'a> {
            nodes: &'a BTreeMap<u64, NodeRecord>,
            streams: &'a BTreeMap<u64, StreamRecord>,
            allocators: &'a BTreeMap<String, u64>,
            next_node_id: u64,
            next_stream_id: u64,
        }
        let (mut st, _) = setup(2);
        stream(&mut st, 1, 1);
        let old = protocol::codec::encode_serde(&Old {
            nodes: &st.nodes,
            streams: &st.streams,
            allocators: &st.allocators,
            next_node_id: st.next_node_id,
            next_stream_id: st.next_stream_id,
        })
        .map_err(|e| e.message);
        assert_eq!(
            old.and_then(|b| PdState::decode(&b).map_err(|e| e.message)),
            Ok(st.clone())
        );
        st.cluster_id = Some("c".into());
        let new = protocol::codec::encode_serde(&st).map_err(|e| e.message);
        assert_eq!(
            new.and_then(|b| PdState::decode(&b).map_err(|e| e.message)),
            Ok(st)
        );
        assert!(PdState::decode(b"garbage").is_err());
    }

    #[test]
    fn create_stream_validates_replica_and_ack() {
        let mut st = PdState::default();
        for (r, a) in [(0, 0), (6, 1), (3, 0), (3, 4)] {
            let (res, ev) = st.apply(&Command::CreateStream {
                replica: r,
                ack_count: a,
            });
            assert!(
                matches!(res, Err(StateError::InvalidArgument(_))),
                "{r} {a}"
            );
            assert!(ev.is_empty());
        }
        assert_eq!(stream(&mut st, 3, 2), 1);
        assert_eq!(stream(&mut st, 1, 1), 2);
        assert_eq!(stream(&mut st, 5, 5), 3);
    }

    #[test]
    fn open_bumps_epoch_and_fences() {
        let (mut st, servers) = setup(3);
        let id = stream(&mut st, 3, 2);
        assert_eq!(open(&mut st, id, 0), 1);
        assert_eq!(open(&mut st, id, 7), 7);
        assert_eq!(open(&mut st, id, 3), 8);
        // The old writer (epoch 7) is fenced for create and seal.
        assert!(matches!(
            create_range(&mut st, id, 7, 0, &servers),
            Err(StateError::Fenced(_))
        ));
        assert!(create_range(&mut st, id, 8, 0, &servers).is_ok());
        assert!(matches!(
            seal(&mut st, id, 7, 0, 5),
            Err(StateError::Fenced(_))
        ));
        assert!(seal(&mut st, id, 8, 0, 5).is_ok());
    }

    #[test]
    fn range_continuity_rules() {
        let (mut st, servers) = setup(3);
        let id = stream(&mut st, 3, 2);
        let e = open(&mut st, id, 0);
        // First range must start at start_offset.
        assert!(matches!(
            create_range(&mut st, id, e, 5, &servers),
            Err(StateError::InvalidArgument(_))
        ));
        let r0 = create_range(&mut st, id, e, 0, &servers);
        assert!(
            matches!(r0, Ok(Response::Range(ref r)) if r.index == 0 && r.offload_owner == servers[0])
        );
        // Identical retry is idempotent.
        assert_eq!(create_range(&mut st, id, e, 0, &servers), r0);
        // Last range still open.
        assert!(matches!(
            create_range(&mut st, id, e, 10, &servers),
            Err(StateError::InvalidArgument(ref m)) if m.contains("still open")
        ));
        // An empty range (end == start) is allowed.
        assert!(matches!(
            seal(&mut st, id, e, 0, 0),
            Ok(Response::Range(ref r)) if r.end == Some(0)
        ));
        let r1 = create_range(&mut st, id, e, 0, &servers);
        assert!(matches!(r1, Ok(Response::Range(ref r)) if r.index == 1 && r.start == 0));
        assert!(seal(&mut st, id, e, 1, 100).is_ok());
        // Next start must equal previous end.
        assert!(matches!(
            create_range(&mut st, id, e, 99, &servers),
            Err(StateError::InvalidArgument(_))
        ));
        let r2 = create_range(&mut st, id, e, 100, &servers);
        assert!(matches!(r2, Ok(Response::Range(ref r)) if r.index == 2 && r.start == 100));
        assert!(matches!(
            seal(&mut st, id, e, 2, 50),
            Err(StateError::InvalidArgument(ref m)) if m.contains("end 50 < start 100")
        ));
    }

    #[test]
    fn seal_is_idempotent_with_same_end_only() {
        let (mut st, servers) = setup(3);
        let id = stream(&mut st, 3, 2);
        let e = open(&mut st, id, 0);
        create_range(&mut st, id, e, 0, &servers).ok();
        let first = seal(&mut st, id, e, 0, 42);
        assert!(first.is_ok());
        assert_eq!(seal(&mut st, id, e, 0, 42), first);
        assert!(matches!(
            seal(&mut st, id, e, 0, 43),
            Err(StateError::InvalidArgument(_))
        ));
        assert!(matches!(
            seal(&mut st, id, e, 5, 43),
            Err(StateError::NotFound(_))
        ));
        // Not the last range.
        create_range(&mut st, id, e, 42, &servers).ok();
        seal(&mut st, id, e, 1, 50).ok();
        create_range(&mut st, id, e, 50, &servers).ok();
        assert_eq!(seal(&mut st, id, e, 1, 50).map(|_| ()), Ok(()));
    }

    #[test]
    fn create_range_validates_servers() {
        let (mut st, servers) = setup(3);
        let broker = reg(&mut st, Kind::Broker);
        let id = stream(&mut st, 3, 2);
        let e = open(&mut st, id, 0);
        assert!(matches!(
            create_range(&mut st, id, e, 0, &servers[..1]),
            Err(StateError::NoCapacity(_))
        ));
        assert!(matches!(
            create_range(&mut st, id, e, 0, &[servers[0], broker]),
            Err(StateError::InvalidArgument(_))
        ));
        assert!(matches!(
            create_range(&mut st, id, e, 0, &[servers[0], servers[0]]),
            Err(StateError::InvalidArgument(_))
        ));
        assert!(matches!(
            create_range(&mut st, id, e, 0, &[servers[0], 99]),
            Err(StateError::InvalidArgument(_))
        ));
        // Degraded: 2 of 3 is allowed with ack_count 2.
        assert!(matches!(
            create_range(&mut st, id, e, 0, &servers[..2]),
            Ok(Response::Range(ref r)) if r.servers.len() == 2
        ));
    }

    #[test]
    fn placement_prefers_new_and_less_loaded_servers() {
        let (mut st, s) = setup(5);
        let all = |_: u64| true;
        let a = stream(&mut st, 3, 2);
        let ea = open(&mut st, a, 0);
        let chosen = st.choose_servers(a, &[], all).unwrap_or_default();
        assert_eq!(chosen, vec![s[0], s[1], s[2]]);
        create_range(&mut st, a, ea, 0, &chosen).ok();
        // A second stream goes to the least loaded servers first.
        let b = stream(&mut st, 3, 2);
        let chosen_b = st.choose_servers(b, &[], all).unwrap_or_default();
        assert_eq!(chosen_b, vec![s[3], s[4], s[0]]);
        // Exclusion and liveness.
        seal(&mut st, a, ea, 0, 10).ok();
        let dead = s[4];
        let next = st
            .choose_servers(a, &[s[3]], |id| id != dead)
            .unwrap_or_default();
        // Not in previous range preferred: only s[3], s[4] qualify and both are out; then
        // previous-range servers fill up.
        assert_eq!(next, vec![s[0], s[1], s[2]]);
        let next = st.choose_servers(a, &[s[0]], all).unwrap_or_default();
        assert_eq!(next, vec![s[3], s[4], s[1]]);
        // Degradation: only two live.
        let two = st
            .choose_servers(a, &[], |id| id == s[0] || id == s[1])
            .unwrap_or_default();
        assert_eq!(two.len(), 2);
        assert!(create_range(&mut st, a, ea, 10, &two).is_ok());
    }

    #[test]
    fn trim_moves_forward_and_delete_hides() {
        let (mut st, servers) = setup(3);
        let id = stream(&mut st, 3, 2);
        let e = open(&mut st, id, 0);
        create_range(&mut st, id, e, 0, &servers).ok();
        seal(&mut st, id, e, 0, 100).ok();
        let t = |st: &mut PdState, o| {
            st.apply(&Command::TrimStream {
                stream_id: id,
                start_offset: o,
            })
            .0
        };
        assert!(matches!(t(&mut st, 50), Ok(Response::Stream(ref s)) if s.start_offset == 50));
        assert!(matches!(t(&mut st, 10), Ok(Response::Stream(ref s)) if s.start_offset == 50));
        assert!(matches!(
            t(&mut st, 101),
            Err(StateError::InvalidArgument(_))
        ));
        let (r, ev) = st.apply(&Command::DeleteStream { stream_id: id });
        assert!(matches!(r, Ok(Response::Stream(ref s)) if s.deleted));
        assert_eq!(ev, vec![Event::StreamChanged(id)]);
        assert!(matches!(st.stream(id), Err(StateError::NotFound(_))));
        assert!(matches!(
            st.apply(&Command::OpenStream {
                stream_id: id,
                min_epoch: 0
            })
            .0,
            Err(StateError::NotFound(_))
        ));
        assert!(matches!(
            create_range(&mut st, id, e, 100, &servers),
            Err(StateError::NotFound(_))
        ));
        assert!(matches!(
            st.apply(&Command::DeleteStream { stream_id: 999 }).0,
            Err(StateError::NotFound(_))
        ));
    }

    #[test]
    fn allocator_hands_out_disjoint_blocks() {
        let mut st = PdState::default();
        let alloc = |st: &mut PdState, key: &str, count| {
            st.apply(&Command::AllocateIds {
                key: key.into(),
                count,
            })
            .0
        };
        assert_eq!(alloc(&mut st, "a", 10), Ok(Response::FirstId(1)));
        assert_eq!(alloc(&mut st, "a", 5), Ok(Response::FirstId(11)));
        assert_eq!(alloc(&mut st, "b", 1), Ok(Response::FirstId(1)));
        assert!(alloc(&mut st, "a", 0).is_err());
        assert!(alloc(&mut st, "a", u64::MAX).is_err());
        assert_eq!(alloc(&mut st, "a", 1), Ok(Response::FirstId(16)));
    }
}
