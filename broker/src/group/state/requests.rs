//! The inputs and answers of the group operations: requests as the handlers build them,
//! results and callbacks, and the [`Write`]s the owner must append. Plain data; no rules.
//! Errors are Kafka's [`ResponseError`]s; only the handlers turn them into wire codes.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::{GroupState, Groups};
use crate::group::records::{OffsetValue, Record};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(member_id: &str, error: ResponseError) -> JoinResult {
        JoinResult {
            error: Some(error),
            member_id: member_id.to_string(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

pub type JoinCallback = Box<dyn FnOnce(JoinResult)>;
pub type SyncCallback = Box<dyn FnOnce(SyncResult)>;
/// The outcome of one partition or member of a request.
pub type Outcome = Result<(), ResponseError>;
/// The answer to a LeaveGroup or an OffsetDelete: one outcome per member or partition, in
/// request order, or the error of the whole group.
pub type GroupOutcomes = Result<Vec<Outcome>, ResponseError>;

/// Per-partition outcomes of an offset commit, in request order.
pub type CommitCallback = Box<dyn FnOnce(Vec<Outcome>)>;
/// One outcome per group, in request order.
pub type DeleteCallback = Box<dyn FnOnce(Vec<DeletedGroup>)>;
pub type OffsetDeleteCallback = Box<dyn FnOnce(GroupOutcomes)>;

/// A topic partition, as the group APIs name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A member named in a LeaveGroup (an empty member id with an instance id: that static
/// member, whatever its current id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// One partition's committed offset as OffsetFetch answers it (None: no commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub value: Option<OffsetValue>,
}

/// One live group as ListGroups shows it (ordered by id, then type and state).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// The outcome of deleting one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedGroup {
    pub group_id: String,
    pub result: Outcome,
}

/// What runs once a write is confirmed: the state and the time.
pub type WriteDone = Box<dyn FnOnce(&mut Groups, i64)>;

/// Something to append to the data stream; `done` runs once it is confirmed.
pub struct Write {
    pub records: Vec<Record>,
    pub done: Option<WriteDone>,
}

pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ without an instance id: a new member must come back with its id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+.
    pub supports_skip_assignment: bool,
}

pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

pub struct CommitRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// OffsetCommit v2-4 retention time; -1: the broker's retention.
    pub retention_ms: i64,
    pub offsets: Vec<OffsetToCommit>,
}

/// One partition's offset in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    pub partition: TopicPartition,
    pub offset: i64,
    /// -1 when the client sent none.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}
