//! Requests served by the placement driver and their opcodes (the table at the end). Message
//! types only: no behaviour, and no field or variant may be renamed or reordered (bincode).

use bincode::{Decode, Encode};

use crate::error::RpcError;
use crate::model::{
    NodeId, NodeInfo, NodeKind, RangeInfo, RangeReport, StreamId, StreamInfo, TopicInfo,
};

/// Join the cluster, or re-join with the id kept from an earlier run.
#[derive(Debug, Clone, Encode, Decode)]
pub struct RegisterNode {
    pub kind: NodeKind,
    pub node_id: Option<NodeId>,
    pub addr: String,
    pub http_addr: String,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct RegisterNodeResponse {
    pub node_id: NodeId,
    /// A node whose last heartbeat is older than this is considered dead.
    pub lease_ms: u64,
}

/// Most range reports one heartbeat carries: a range server with more sends them over
/// several heartbeats, a page each.
pub const MAX_REPORTS_PER_HEARTBEAT: usize = 1024;

#[derive(Debug, Clone, Encode, Decode)]
pub struct Heartbeat {
    pub node_id: NodeId,
    /// One page (at most [`MAX_REPORTS_PER_HEARTBEAT`]) of the ranges this node holds; a range
    /// server cycles through all of them, a page per heartbeat. PD ignores reports past the
    /// page limit.
    pub ranges: Vec<RangeReport>,
    /// A broker's load report, every few heartbeats: the traffic of each partition it served
    /// since the last report (partitions with none are left out, at most
    /// [`MAX_LOADS_PER_HEARTBEAT`], the busiest). Replaces the broker's previous report.
    /// None: no report in this heartbeat.
    pub loads: Option<Vec<PartitionLoad>>,
    /// The node's software version (at most [`MAX_VERSION_LEN`] bytes are kept).
    pub version: String,
}

/// Longest node version PD keeps.
pub const MAX_VERSION_LEN: usize = 64;

/// Most partition loads one heartbeat carries (the busiest; the rest count as idle).
pub const MAX_LOADS_PER_HEARTBEAT: usize = 4096;

/// One partition's traffic at the broker that serves it, in bytes per second: record
/// batches stored (produce) and returned to fetches.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PartitionLoad {
    pub topic: String,
    pub partition: u32,
    pub produce_bytes_per_sec: u64,
    pub fetch_bytes_per_sec: u64,
}

/// Every partition's load as its broker last reported it (leader memory; partitions left
/// out are idle).
#[derive(Debug, Clone, Encode, Decode)]
pub struct ListLoads {}
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LoadInfo {
    pub broker: NodeId,
    pub load: PartitionLoad,
    /// Since the report.
    pub age_ms: u64,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct HeartbeatResponse {
    pub lease_ms: u64,
    /// Reported ranges that hold nothing readable any more (their stream was deleted or
    /// trimmed past their end, or PD never knew them): the server may drop them.
    pub retired: Vec<(StreamId, u32)>,
    /// For reported ranges that start below what their stream keeps elsewhere (its start
    /// offset, or the end of its offloaded part): that offset. Data below it is never read
    /// from this server again.
    pub stream_starts: Vec<(StreamId, u64)>,
    /// Reported ranges this server is to offload now: each holds its stream's offload
    /// frontier, given as where the next object of the stream must start.
    pub offload: Vec<OffloadTask>,
    /// The range servers being drained: a broker's stream writers move their open ranges off
    /// them (seal, continue in a new range elsewhere).
    pub draining: Vec<NodeId>,
}

/// Upload range `(stream_id, index)` from `from` (the stream's offloaded end) on.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct OffloadTask {
    pub stream_id: StreamId,
    pub index: u32,
    pub from: u64,
    /// The range's final end when it is sealed. Everything below it is committed, so the
    /// uploader reads its local data up to it even if it never heard the seal or the last
    /// confirmed offset (a replica left out of a range switch).
    pub sealed_end: Option<u64>,
}

#[derive(Debug, Clone, Encode, Decode)]
pub struct CreateStream {
    pub replica: u8,
    pub ack_count: u8,
}

#[derive(Debug, Clone, Encode, Decode)]
pub struct DescribeStream {
    pub stream_id: StreamId,
}

/// Open a stream for writing: bumps its epoch, which fences every earlier writer.
#[derive(Debug, Clone, Encode, Decode)]
pub struct OpenStream {
    pub stream_id: StreamId,
    /// The new epoch is at least this (lets a broker use its Kafka leader epoch).
    pub min_epoch: u64,
}

/// Create the next range of a stream, starting where the last sealed range ended.
#[derive(Debug, Clone, Encode, Decode)]
pub struct CreateRange {
    pub stream_id: StreamId,
    pub epoch: u64,
    pub start: u64,
    /// Range servers the writer just saw fail; avoided even if their lease is still current.
    pub exclude: Vec<NodeId>,
}

#[derive(Debug, Clone, Encode, Decode)]
pub struct SealRange {
    pub stream_id: StreamId,
    pub epoch: u64,
    pub index: u32,
    pub end: u64,
}

/// Move the stream's start offset forward; data before it may be deleted.
#[derive(Debug, Clone, Encode, Decode)]
pub struct TrimStream {
    pub stream_id: StreamId,
    pub start_offset: u64,
}

#[derive(Debug, Clone, Encode, Decode)]
pub struct DeleteStream {
    pub stream_id: StreamId,
}

#[derive(Debug, Clone, Encode, Decode)]
pub struct ListNodes {}

/// Long-poll for changes after `since` (a revision from an earlier answer; 0 for all).
#[derive(Debug, Clone, Encode, Decode)]
pub struct Watch {
    pub since: u64,
    pub timeout_ms: u64,
}
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Event {
    NodeChanged(NodeId),
    StreamChanged(StreamId),
    /// A topic was created, deleted, grew partitions, changed configs or had a partition
    /// move to another broker.
    TopicChanged(String),
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct WatchResponse {
    /// Pass this as `since` next time.
    pub revision: u64,
    /// True when `since` is too old to list events: the watcher must reload what it caches.
    pub reset: bool,
    pub events: Vec<Event>,
}

/// Take `count` ids from the named allocator; answers the first one.
#[derive(Debug, Clone, Encode, Decode)]
pub struct AllocateIds {
    pub key: String,
    pub count: u64,
}

#[derive(Debug, Clone, Encode, Decode)]
pub struct ListStreams {}

/// Reserve an id for an object about to be uploaded. PD remembers the reservation for a
/// while (`--prepared-object-ttl-ms`); an object committed after it expired is refused and
/// its upload is swept as an orphan.
#[derive(Debug, Clone, Encode, Decode)]
pub struct PrepareObject {
    pub node_id: NodeId,
}

/// One stream's part of an uploaded object.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SliceSpec {
    pub stream_id: StreamId,
    pub start: u64,
    pub end: u64,
    /// Payload bytes of the stream's batches in the object.
    pub bytes: u64,
}

/// Record an uploaded object (prepared before) as part of its streams, in one step. A slice
/// is taken when it continues its stream's offloaded part (starts at or before its end and
/// ends after it); the others are ignored. An object no slice of which is taken is deleted.
#[derive(Debug, Clone, Encode, Decode)]
pub struct CommitObject {
    pub object_id: u64,
    pub size: u64,
    pub slices: Vec<SliceSpec>,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct CommitObjectResponse {
    /// For each live stream of the object: its offloaded end after the commit.
    pub offloaded: Vec<(StreamId, u64)>,
}

/// Replace a run of consecutive slices of one stream by one new object (prepared before)
/// that holds the same batches (less those below the stream's start). Refused unless the
/// run is still exactly what the stream has at `replaces`.
#[derive(Debug, Clone, Encode, Decode)]
pub struct CompactObjects {
    pub object_id: u64,
    pub size: u64,
    pub stream_id: StreamId,
    /// Object ids of the replaced slices, in offset order.
    pub replaces: Vec<u64>,
    pub start: u64,
    pub end: u64,
    pub bytes: u64,
}

/// Object-storage bookkeeping at PD: counts, for status pages and tests.
#[derive(Debug, Clone, Encode, Decode)]
pub struct ObjectStats {}
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ObjectStatsResponse {
    pub committed: u64,
    pub committed_bytes: u64,
    pub prepared: u64,
    /// Unreferenced objects waiting to be deleted from the store.
    pub doomed: u64,
    /// Ids below this were handed out.
    pub next_object_id: u64,
}

/// Raft traffic between placement-driver voters: an openraft message carried as bincode of its
/// serde form. Opaque to everyone else.
#[derive(Debug, Clone, Encode, Decode)]
pub struct RaftMessage {
    pub kind: RaftMessageKind,
    pub payload: Vec<u8>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum RaftMessageKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// Create a topic and, in the same step, a data and a meta stream for each partition.
/// `AlreadyExists` when the name is taken; `InvalidArgument` for a bad name or count.
#[derive(Debug, Clone, Encode, Decode)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: u32,
    pub configs: Vec<(String, String)>,
    pub replica: u8,
    pub ack_count: u8,
    pub internal: bool,
    /// Check everything, change nothing (Kafka's `validate_only`).
    pub validate_only: bool,
}

/// Delete a topic and its streams. `NotFound` when there is no such topic.
#[derive(Debug, Clone, Encode, Decode)]
pub struct DeleteTopic {
    pub name: String,
}

/// Grow a topic to `total` partitions (new ones get new streams and an owner).
#[derive(Debug, Clone, Encode, Decode)]
pub struct CreatePartitions {
    pub name: String,
    pub total: u32,
    pub validate_only: bool,
}

/// Change topic config overrides: with `replace_all`, `set` becomes the whole set (Kafka's
/// AlterConfigs); otherwise `set` is merged and `remove` deleted (IncrementalAlterConfigs).
#[derive(Debug, Clone, Encode, Decode)]
pub struct AlterTopicConfigs {
    pub name: String,
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    pub replace_all: bool,
    pub validate_only: bool,
}

/// Every topic (deleted ones are gone).
#[derive(Debug, Clone, Encode, Decode)]
pub struct ListTopics {}

/// Identity of the cluster: a fixed id chosen when PD first started.
#[derive(Debug, Clone, Encode, Decode)]
pub struct GetClusterInfo {}
#[derive(Debug, Clone, Encode, Decode)]
pub struct ClusterInfo {
    pub cluster_id: String,
}

/// Move partitions to the brokers named (an operator's or a Kafka client's reassignment). Each
/// target must be a registered broker holding a current lease; the partition is then pinned
/// there: the balancer does not move it away while that broker lives, and moves it back when
/// the broker returns after losing it. One answer per move, in order: `None` when the move
/// was made (or the partition was there already), else why not.
#[derive(Debug, Clone, Encode, Decode)]
pub struct MovePartitions {
    pub moves: Vec<PartitionMove>,
}
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PartitionMove {
    pub topic: String,
    pub partition: u32,
    pub broker: NodeId,
}

/// The ownership changes decided (by an operator or the balancer) whose new owner has not yet
/// reported serving, and with `recent` also the last ones that completed (newest last).
/// Known to the PD leader only: a new leader starts with none.
#[derive(Debug, Clone, Encode, Decode)]
pub struct ListMoves {
    pub recent: bool,
}
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct MoveInfo {
    pub topic: String,
    pub partition: u32,
    /// The leader before the move (None: it had none).
    pub from: Option<NodeId>,
    pub to: NodeId,
    pub leader_epoch: u32,
    /// Since the move was decided.
    pub elapsed_ms: u64,
    /// Why it was decided: "requested" (MovePartitions), or the balancer's "orphan",
    /// "drain", "pinned", "count", "load".
    pub reason: String,
    /// From the decision to the new owner serving; None while in flight.
    pub took_ms: Option<u64>,
}

/// A broker serves a partition at this leader epoch: its streams are open and replayed. Ends
/// the partition's move, if one is in flight (PD times it).
#[derive(Debug, Clone, Encode, Decode)]
pub struct PartitionOpened {
    pub broker: NodeId,
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: u32,
}

/// Start (or end) draining a node. A draining broker gets no partitions, and the ones it leads
/// move to the other brokers (gracefully: it is alive and hands them over). A draining range
/// server gets no new ranges, and the writers of its open ranges seal them and go on
/// elsewhere; [`NodeInfo::still_needed`] says when it may stop. A node that registers again
/// is no longer draining. Answers the node as it is now.
#[derive(Debug, Clone, Encode, Decode)]
pub struct DrainNode {
    pub node_id: NodeId,
    pub draining: bool,
}

// Opcodes 1-50: part of the wire format.
rpc! {
    RegisterNode => RegisterNodeResponse = 1,
    Heartbeat => HeartbeatResponse = 2,
    CreateStream => StreamInfo = 3,
    DescribeStream => StreamInfo = 4,
    OpenStream => StreamInfo = 5,
    CreateRange => RangeInfo = 6,
    SealRange => RangeInfo = 7,
    TrimStream => StreamInfo = 8,
    DeleteStream => StreamInfo = 9,
    ListNodes => Vec<NodeInfo> = 10,
    Watch => WatchResponse = 11,
    AllocateIds => u64 = 12,
    ListStreams => Vec<StreamInfo> = 13,
    PrepareObject => u64 = 14,
    CommitObject => CommitObjectResponse = 15,
    CompactObjects => StreamInfo = 16,
    ObjectStats => ObjectStatsResponse = 17,
    CreateTopic => TopicInfo = 20,
    DeleteTopic => TopicInfo = 21,
    CreatePartitions => TopicInfo = 22,
    AlterTopicConfigs => TopicInfo = 23,
    ListTopics => Vec<TopicInfo> = 24,
    GetClusterInfo => ClusterInfo = 25,
    MovePartitions => Vec<Option<RpcError>> = 26,
    ListMoves => Vec<MoveInfo> = 27,
    PartitionOpened => () = 28,
    DrainNode => NodeInfo = 29,
    ListLoads => Vec<LoadInfo> = 30,
    RaftMessage => Vec<u8> = 50,
}
