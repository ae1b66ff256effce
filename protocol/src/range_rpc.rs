//! Requests served by range servers. Every request names a range by `(stream_id, index)` and
//! carries the writer's epoch; a range server refuses any epoch older than the newest it saw.

use bincode::{Decode, Encode};

use crate::frame::Opcode;
use crate::model::StreamId;
use crate::Rpc;

/// Append one batch of `count` offsets at `offset`. The first append of a range (at
/// `range_start`) creates the range on this server.
#[derive(Debug, Clone, Encode, Decode)]
pub struct Append {
    pub stream_id: StreamId,
    pub index: u32,
    pub epoch: u64,
    pub range_start: u64,
    pub offset: u64,
    pub count: u32,
    /// The writer's confirmed offset: everything below it may be served to readers.
    pub confirmed: u64,
    /// CRC32C of `payload`.
    pub crc: u32,
    pub payload: Vec<u8>,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct AppendResponse {
    /// Every offset below this is durable on this server.
    pub durable: u64,
}
impl Rpc for Append {
    const OPCODE: Opcode = Opcode(100);
    type Response = AppendResponse;
}

/// Read confirmed batches from `offset` until `end` (exclusive) or `max_bytes`.
#[derive(Debug, Clone, Encode, Decode)]
pub struct Fetch {
    pub stream_id: StreamId,
    pub index: u32,
    pub offset: u64,
    /// Exclusive bound; offsets at or past it are not returned.
    pub end: u64,
    pub max_bytes: u32,
}
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Batch {
    pub offset: u64,
    pub count: u32,
    pub crc: u32,
    pub payload: Vec<u8>,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct FetchResponse {
    pub batches: Vec<Batch>,
    /// Offsets below this are readable here now.
    pub readable_end: u64,
    pub sealed_end: Option<u64>,
}
impl Rpc for Fetch {
    const OPCODE: Opcode = Opcode(101);
    type Response = FetchResponse;
}

/// Stop taking appends for a range at `epoch` and report the local end. With `end` set, also
/// record the range's final end as decided at the placement driver.
#[derive(Debug, Clone, Encode, Decode)]
pub struct Seal {
    pub stream_id: StreamId,
    pub index: u32,
    pub epoch: u64,
    /// Start of the range, so a server that never saw an append can still record the seal
    /// (and fence a stale writer's first append).
    pub range_start: u64,
    pub end: Option<u64>,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct SealResponse {
    /// The next offset this server would have accepted: the end of its local data.
    pub local_end: u64,
}
impl Rpc for Seal {
    const OPCODE: Opcode = Opcode(102);
    type Response = SealResponse;
}

/// Tell replicas how far the stream is confirmed when no append is there to carry it.
#[derive(Debug, Clone, Encode, Decode)]
pub struct Commit {
    pub stream_id: StreamId,
    pub index: u32,
    pub epoch: u64,
    pub confirmed: u64,
}
impl Rpc for Commit {
    const OPCODE: Opcode = Opcode(103);
    type Response = ();
}
