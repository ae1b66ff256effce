//! Typed error codes carried in error responses. Each code names one fault so the caller can
//! act on it (retry, re-open, give up) without parsing messages. Codes are part of the wire:
//! never renumber or reuse one.

use bincode::{Decode, Encode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum ErrorCode {
    /// The frame or its body could not be decoded.
    MalformedFrame,
    /// The frame is larger than the receiver accepts.
    FrameTooLarge,
    /// The opcode is not one this process serves.
    UnknownOpcode,
    /// The frame's protocol version is not supported.
    UnsupportedVersion,
    /// A payload checksum did not match its bytes.
    BadChecksum,
    /// The request carries an epoch older than the current one: another writer took over.
    Fenced,
    /// The range is sealed and takes no more appends.
    RangeSealed,
    /// The offset is already durable here (a duplicate append; the caller may treat it as done).
    AlreadyCommitted,
    /// The offset is being written here but is not durable yet.
    InFlight,
    /// The offset is beyond the next expected one: an earlier append is missing.
    Overtaking,
    /// The offset lies outside what this range or stream holds.
    OffsetOutOfRange,
    /// This placement-driver node is not the Raft leader.
    NotLeader,
    /// The named node, stream or range does not exist (or was deleted).
    NotFound,
    /// The object already exists.
    AlreadyExists,
    /// A request field is out of its allowed domain.
    InvalidArgument,
    /// Not enough live range servers to place a range.
    NoCapacity,
    /// The local disk refused a write or a read (full, failing, corrupt).
    StorageError,
    /// The peer did not answer in time.
    Timeout,
    /// The peer could not be reached or the connection broke.
    Unavailable,
    /// The process is shutting down or not ready.
    NotReady,
    /// A bug or an unexpected state; the message says more.
    Internal,
    /// The request named another node than the one that received it.
    WrongNode,
    /// The range server's WAL is at its size budget (`--wal-max-bytes`) until offload frees
    /// space: retry later, the same server or another.
    StorageFull,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// True for faults where the same request may succeed against the same or another peer
    /// later (connection trouble, timeouts, leadership changes).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::Timeout
                | ErrorCode::Unavailable
                | ErrorCode::NotLeader
                | ErrorCode::NotReady
        )
    }
}
