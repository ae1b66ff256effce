//! The shared data model: nodes, streams, ranges, as the placement driver keeps them and every
//! other process sees them. Plain data with small read-only helpers: no rules, no I/O; fields
//! are bincode on the wire, so never renamed or reordered.

use bincode::{Decode, Encode};

pub type NodeId = u64;
pub type StreamId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum NodeKind {
    RangeServer,
    Broker,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct NodeInfo {
    pub id: NodeId,
    pub kind: NodeKind,
    /// Address of the node's RPC listener (range server) or Kafka listener (broker).
    pub addr: String,
    /// Address of the node's HTTP endpoint (`/healthz`, `/metrics`).
    pub http_addr: String,
    /// Whether the node's lease is current at the placement driver that answered.
    pub alive: bool,
}

/// A contiguous slice of a stream kept by a set of range servers. Only the last range of a
/// stream is open (`end == None`); a sealed range never changes.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RangeInfo {
    pub stream_id: StreamId,
    pub index: u32,
    /// The stream epoch of the writer that created the range.
    pub epoch: u64,
    pub start: u64,
    pub end: Option<u64>,
    pub servers: Vec<NodeId>,
    /// The replica that uploads this range to object storage.
    pub offload_owner: NodeId,
}

impl RangeInfo {
    pub fn contains(&self, offset: u64) -> bool {
        offset >= self.start && self.end.is_none_or(|end| offset < end)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StreamInfo {
    pub id: StreamId,
    /// Fencing epoch: bumped each time a writer opens the stream.
    pub epoch: u64,
    /// How many range servers keep each new range.
    pub replica: u8,
    /// How many of them must have an append before it is confirmed.
    pub ack_count: u8,
    /// First offset still readable; everything before it was trimmed.
    pub start_offset: u64,
    pub ranges: Vec<RangeInfo>,
    pub deleted: bool,
}

impl StreamInfo {
    pub fn last_range(&self) -> Option<&RangeInfo> {
        self.ranges.last()
    }

    /// The end of the last sealed range, or the start of the stream when none is sealed.
    pub fn sealed_end(&self) -> u64 {
        self.ranges
            .iter()
            .rev()
            .find_map(|r| r.end)
            .unwrap_or(self.start_offset)
    }
}

/// What a range server holds of one range, as reported to the placement driver.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RangeReport {
    pub stream_id: StreamId,
    pub index: u32,
    pub epoch: u64,
    pub start: u64,
    /// Next offset this server would accept (end of its local data).
    pub next: u64,
    pub sealed_end: Option<u64>,
}

/// A Kafka topic as the placement driver keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TopicInfo {
    pub name: String,
    /// Kafka topic id (a UUID), fixed at creation.
    pub id: [u8; 16],
    pub partitions: Vec<PartitionInfo>,
    /// Topic-level config overrides (`retention.ms`, `max.message.bytes`, ...), sorted by key.
    pub configs: Vec<(String, String)>,
    /// Stream replication of the topic's partitions.
    pub replica: u8,
    pub ack_count: u8,
    pub internal: bool,
}

impl TopicInfo {
    pub fn config(&self, key: &str) -> Option<&str> {
        self.configs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One partition: its streams and the broker that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PartitionInfo {
    pub index: u32,
    /// Record batches; stream offsets are Kafka offsets.
    pub data_stream: StreamId,
    /// The partition's small key-value log (log start offset, leader epochs, time index, ...).
    pub meta_stream: StreamId,
    /// The broker that serves the partition, if any is assigned.
    pub leader: Option<NodeId>,
    /// Kafka leader epoch: bumped each time the partition moves to another broker.
    pub leader_epoch: u32,
}
