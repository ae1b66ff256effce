//! Every message that crosses a Strata process boundary.
//!
//! This crate owns the wire: the frame codec ([`frame`]), the error codes ([`error`]), the
//! shared data model ([`model`]) and the request/response pairs of the placement driver
//! ([`pd`]) and of the range servers ([`range_rpc`]), and the layout of objects in object
//! storage ([`object`]). It is the only crate that knows bincode exists
//! ([`codec`]); everything else sees typed messages. It does no I/O of its own and holds no
//! state.

/// Gives each request type its opcode and response type, one `Request => Response = opcode`
/// line each: the table of a module's opcodes, which are part of the wire format (never renumber
/// or reuse one).
macro_rules! rpc {
    ($($req:ty => $resp:ty = $code:expr),* $(,)?) => {
        $(
            impl $crate::Rpc for $req {
                const OPCODE: $crate::Opcode = $crate::Opcode($code);
                const NAME: &'static str = stringify!($req);
                type Response = $resp;
            }
        )*
    };
}

pub mod codec;
pub mod error;
pub mod frame;
pub mod fuzz;
pub mod model;
pub mod object;
pub mod partition_meta;
pub mod pd;
pub mod range_rpc;

pub use codec::{decode, encode, Message};
pub use error::{ErrorCode, RpcError};
pub use frame::{Frame, FrameCodec, Header, Opcode};

/// A request type and the response it gets. The opcode names the request on the wire.
pub trait Rpc: Message + Send + 'static {
    const OPCODE: Opcode;
    /// The request's name (its type's), for logs and trace spans.
    const NAME: &'static str;
    type Response: Message + Send + 'static;
}

/// Checksum used for every record payload, on the wire and on disk (CRC32C, Castagnoli).
pub fn checksum(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

#[cfg(test)]
mod tests {
    use crate::pd::*;
    use crate::range_rpc::*;
    use crate::Rpc;

    #[test]
    fn opcodes_stay_as_published() {
        let pd = [
            RegisterNode::OPCODE,
            Heartbeat::OPCODE,
            CreateStream::OPCODE,
            DescribeStream::OPCODE,
            OpenStream::OPCODE,
            CreateRange::OPCODE,
            SealRange::OPCODE,
            TrimStream::OPCODE,
            DeleteStream::OPCODE,
            ListNodes::OPCODE,
            Watch::OPCODE,
            AllocateIds::OPCODE,
            ListStreams::OPCODE,
            PrepareObject::OPCODE,
            CommitObject::OPCODE,
            CompactObjects::OPCODE,
            ObjectStats::OPCODE,
            CreateTopic::OPCODE,
            DeleteTopic::OPCODE,
            CreatePartitions::OPCODE,
            AlterTopicConfigs::OPCODE,
            ListTopics::OPCODE,
            GetClusterInfo::OPCODE,
            RaftMessage::OPCODE,
        ]
        .map(|o| o.0);
        let pd_expected = [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 25, 50,
        ];
        assert_eq!(pd, pd_expected);
        let range = [Append::OPCODE, Fetch::OPCODE, Seal::OPCODE, Commit::OPCODE].map(|o| o.0);
        assert_eq!(range, [100, 101, 102, 103]);
    }
}
