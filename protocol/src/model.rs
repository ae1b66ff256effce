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
    /// Being drained: a draining broker gets no partitions and gives its own away; a draining
    /// range server gets no new ranges and its open ranges move elsewhere.
    pub draining: bool,
    /// For a draining range server (None for other nodes): how many ranges still need it —
    /// open ranges it serves, and sealed ones holding data that neither another live replica
    /// nor an object holds. 0: it may stop without making any data less available.
    pub still_needed: Option<u32>,
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
    /// The offloaded part of the stream, in offset order without gaps: offsets from the
    /// stream start to [`StreamInfo::offloaded_end`] are read from object storage.
    pub objects: Vec<ObjectSlice>,
}

/// Offsets `[start, end)` of one stream, kept in one object in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ObjectSlice {
    pub object_id: u64,
    /// The whole object's length in bytes (where its footer is).
    pub object_size: u64,
    pub start: u64,
    pub end: u64,
    /// Payload bytes of the stream's batches in the object.
    pub bytes: u64,
    /// When the object's newest data was uploaded, in ms since the Unix epoch by PD's clock
    /// (compaction leaves young objects alone).
    pub created_ms: u64,
}

impl StreamInfo {
    /// Offsets below this are in object storage (or trimmed): never below the start offset.
    pub fn offloaded_end(&self) -> u64 {
        self.objects
            .last()
            .map_or(self.start_offset, |o| o.end.max(self.start_offset))
    }

    /// The slice holding `offset`, if it is offloaded.
    pub fn object_at(&self, offset: u64) -> Option<&ObjectSlice> {
        if offset < self.start_offset {
            return None;
        }
        let i = self.objects.partition_point(|o| o.end <= offset);
        self.objects.get(i).filter(|o| o.start <= offset)
    }

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
    /// The broker an operator moved it to, which the balancer keeps it on while that broker
    /// lives.
    pub pinned: Option<NodeId>,
}
