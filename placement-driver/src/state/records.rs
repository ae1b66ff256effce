//! The records the replicated state stores: nodes, streams and their ranges, and how each
//! shows to clients. Plain data: no rules here, and field order and names are the stored
//! format (snapshots and log entries), so they must not change.

use protocol::model::{NodeInfo, NodeKind, RangeInfo, StreamInfo};
use serde::{Deserialize, Serialize};

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
    /// Being drained by an operator: a broker gets no partitions and gives its own away; a
    /// range server gets no new ranges.
    /// Cleared when the node registers again (starting it means it should serve).
    pub draining: bool,
}

impl NodeRecord {
    pub fn to_info(&self, alive: bool) -> NodeInfo {
        NodeInfo {
            id: self.id,
            kind: self.kind.into(),
            addr: self.addr.clone(),
            http_addr: self.http_addr.clone(),
            alive,
            draining: self.draining,
            still_needed: None,
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
            // Filled in by `PdState::stream_info`, which knows the objects.
            objects: Vec::new(),
        }
    }
}
