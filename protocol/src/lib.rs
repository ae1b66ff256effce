//! Every message that crosses a Strata process boundary.
//!
//! This crate owns the wire: the frame codec ([`frame`]), the error codes ([`error`]), the
//! shared data model ([`model`]) and the request/response pairs of the placement driver
//! ([`pd`]) and of the range servers ([`range_rpc`]). It is the only crate that knows bincode exists
//! ([`codec`]); everything else sees typed messages. It does no I/O of its own and holds no
//! state.

pub mod codec;
pub mod error;
pub mod frame;
pub mod model;
pub mod partition_meta;
pub mod pd;
pub mod range_rpc;

pub use codec::{decode, encode, Message};
pub use error::{ErrorCode, RpcError};
pub use frame::{Frame, FrameCodec, Header, Opcode};

/// A request type and the response it gets. The opcode names the request on the wire.
pub trait Rpc: Message + Send + 'static {
    const OPCODE: Opcode;
    type Response: Message + Send + 'static;
}

/// Checksum used for every record payload, on the wire and on disk (CRC32C, Castagnoli).
pub fn checksum(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}
