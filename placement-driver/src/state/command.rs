//! The payload of a Raft log entry ([`Command`]) and what applying it answers ([`Response`],
//! [`StateError`]). These types are the stored log format: variants and fields must not be
//! reordered or renamed. The rules that apply them live elsewhere.

use protocol::{ErrorCode, RpcError};
use serde::{Deserialize, Serialize};

use super::objects::SliceSpec;
use super::{Kind, NodeRecord, RangeRecord, StreamRecord};
use crate::topics::{TopicRecord, TopicSpec};

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
    /// Forgets a node that the leader saw dead for long; refused while a range or a
    /// partition still names it.
    ForgetNode {
        node_id: u64,
    },
    /// Reserves an object id for an upload by `node_id`; `at_ms` is the leader's clock.
    PrepareObject {
        node_id: u64,
        at_ms: u64,
    },
    /// Records an uploaded object as slices of its streams.
    CommitObject {
        object_id: u64,
        size: u64,
        slices: Vec<SliceSpec>,
    },
    /// Replaces a run of one stream's slices by one compacted object.
    CompactObjects {
        object_id: u64,
        size: u64,
        stream_id: u64,
        replaces: Vec<u64>,
        start: u64,
        end: u64,
        bytes: u64,
    },
    /// Drops the reservations made before `before_ms` (leader's clock) that were not
    /// committed: their uploads are orphans from now on.
    ExpirePrepared {
        before_ms: u64,
    },
    /// Forgets doomed objects the leader deleted from the store.
    ForgetObjects {
        ids: Vec<u64>,
    },
    /// An operator's moves: (topic, partition index, broker), each partition pinned there.
    MovePartitions {
        moves: Vec<(String, u32, u64)>,
    },
    /// Starts or ends draining a node.
    SetDraining {
        node_id: u64,
        draining: bool,
    },
    /// Several commands in one log entry (PD's group commit, `crate::writes`), applied in
    /// order, each with its own result (`Response::Batch`): one refused changes nothing and
    /// does not stop the others. A batch inside a batch is refused.
    Batch(Vec<Command>),
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
    /// Each stream's offloaded end after an object commit.
    Offloaded(Vec<(u64, u64)>),
    /// Object ids (expired reservations, forgotten objects).
    Objects(Vec<u64>),
    /// Log entries without a command (blank, membership).
    Empty,
    /// The result of each command of a `Command::Batch`, in order.
    Batch(Vec<Result<Response, StateError>>),
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
