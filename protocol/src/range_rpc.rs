//! Requests served by range servers (append, fetch, seal, commit). Every request names a range
//! by `(stream_id, index)`; the writes carry the writer's epoch, and a range server refuses any
//! epoch older than the newest it saw.
//!
//! Batch payloads are [`Bytes`] so the writer can send one buffer to every replica and the
//! server can keep it in its WAL record and tail cache without copying. They go through serde
//! (`#[bincode(with_serde)]`), which writes a length-prefixed byte string: the same bytes on the
//! wire as a `Vec<u8>` field.
//!
//! Message types and their opcode table only: no range rules (those are the range server's),
//! and no field may be renamed or reordered.

use bincode::{Decode, Encode};
use bytes::Bytes;

use crate::frame::DEFAULT_MAX_FRAME;
use crate::model::{NodeId, StreamId};

/// The most payload bytes one [`Append`] carries: a frame less room for the request's other
/// fields, the frame header and a trace context. The stream writer refuses a larger payload
/// at once, and brokers refuse a `max.message.bytes` above it.
pub const MAX_APPEND_BYTES: usize = DEFAULT_MAX_FRAME - 64 * 1024;

/// The most bytes a [`Fetch`] answer holds, whatever its `max_bytes` asks: the batches'
/// payloads plus [`FETCH_BATCH_OVERHEAD`] each. Its first batch is always returned, and one
/// batch is at most [`MAX_APPEND_BYTES`], so every answer fits a frame.
pub const MAX_FETCH_BYTES: u64 = MAX_APPEND_BYTES as u64;

/// What a [`Batch`] costs in a [`FetchResponse`] besides its payload (its other fields and
/// the payload's length, as varints), rounded up.
pub const FETCH_BATCH_OVERHEAD: u64 = 32;

/// Append one batch of `count` offsets at `offset`. The first append of a range (at
/// `range_start`) creates the range on this server. A range server keeps it as its WAL record.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
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
    #[bincode(with_serde)]
    pub payload: Bytes,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct AppendResponse {
    /// Every offset below this is durable on this server.
    pub durable: u64,
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
    #[bincode(with_serde)]
    pub payload: Bytes,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct FetchResponse {
    pub batches: Vec<Batch>,
    /// Offsets below this are readable here now.
    pub readable_end: u64,
    pub sealed_end: Option<u64>,
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
    /// The node the sender means to ask (the range's replica, by PD's id), or 0 for whoever
    /// listens. A server with another id (a replacement at the same address, with an empty
    /// disk) refuses with `WrongNode` instead of answering for data it never held.
    pub node: NodeId,
}
#[derive(Debug, Clone, Encode, Decode)]
pub struct SealResponse {
    /// The next offset this server would have accepted: the end of its local data.
    pub local_end: u64,
}

/// Tell replicas how far the stream is confirmed when no append is there to carry it.
#[derive(Debug, Clone, Encode, Decode)]
pub struct Commit {
    pub stream_id: StreamId,
    pub index: u32,
    pub epoch: u64,
    pub confirmed: u64,
}

// Opcodes 100-103: part of the wire format.
rpc! {
    Append => AppendResponse = 100,
    Fetch => FetchResponse = 101,
    Seal => SealResponse = 102,
    Commit => () = 103,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bytes_payload_encodes_like_a_byte_vector() {
        #[derive(Encode, Decode)]
        struct AsVec {
            offset: u64,
            payload: Vec<u8>,
        }
        #[derive(Encode, Decode)]
        struct AsBytes {
            offset: u64,
            #[bincode(with_serde)]
            payload: Bytes,
        }
        let payload = (0..300u32).map(|i| i as u8).collect::<Vec<u8>>();
        let vec_form = crate::encode(&AsVec {
            offset: 7,
            payload: payload.clone(),
        })
        .unwrap();
        let bytes_form = crate::encode(&AsBytes {
            offset: 7,
            payload: Bytes::from(payload.clone()),
        })
        .unwrap();
        assert_eq!(vec_form, bytes_form);
        let back: AsBytes = crate::decode(&bytes_form).unwrap();
        assert_eq!((back.offset, &back.payload[..]), (7, &payload[..]));
    }

    #[test]
    fn fetch_response_round_trips() {
        let response = FetchResponse {
            batches: vec![
                Batch {
                    offset: 10,
                    count: 2,
                    crc: crate::checksum(b"ab"),
                    payload: Bytes::from_static(b"ab"),
                },
                Batch {
                    offset: 12,
                    count: 1,
                    crc: crate::checksum(b""),
                    payload: Bytes::new(),
                },
            ],
            readable_end: 13,
            sealed_end: Some(13),
        };
        let back: FetchResponse = crate::decode(&crate::encode(&response).unwrap()).unwrap();
        assert_eq!(back.batches, response.batches);
        assert_eq!((back.readable_end, back.sealed_end), (13, Some(13)));
    }

    #[test]
    fn a_payload_longer_than_the_body_is_refused() {
        let mut body = crate::encode(&Append {
            stream_id: 1,
            index: 0,
            epoch: 1,
            range_start: 0,
            offset: 0,
            count: 1,
            confirmed: 0,
            crc: crate::checksum(b"abc"),
            payload: Bytes::from_static(b"abc"),
        })
        .unwrap();
        body.pop();
        assert!(crate::decode::<Append>(&body).is_err());
    }
}
