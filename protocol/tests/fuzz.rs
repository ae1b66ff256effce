//! Fuzzing the RPC wire: spoiled frames through the frame codec, and whatever bodies come out
//! through the decoders of the messages a process receives. Nothing may panic or allocate
//! without bound; errors are expected. `scripts/fuzz` runs it for longer.

use bytes::{Bytes, BytesMut};
use protocol::fuzz::Budget;
use protocol::model::RangeReport;
use protocol::partition_meta::{MetaRecord, PartitionSnapshot, TimeIndexEntry};
use protocol::pd::{Heartbeat, PartitionLoad, RegisterNode, WatchResponse};
use protocol::range_rpc::{Append, Batch, Fetch, FetchResponse, Seal};
use protocol::{Frame, FrameCodec, Header, Opcode, RpcError};
use tokio_util::codec::{Decoder, Encoder};

fn frame(opcode: u16, body: Vec<u8>) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameCodec::new(1 << 20)
        .encode(
            Frame {
                header: Header::request(Opcode(opcode), 7, "00-abc-def-01".into()),
                body: Bytes::from(body),
            },
            &mut out,
        )
        .expect("encode");
    out.to_vec()
}

fn seeds() -> Vec<Vec<u8>> {
    let append = Append {
        stream_id: 3,
        index: 1,
        epoch: 2,
        range_start: 100,
        offset: 120,
        count: 4,
        confirmed: 110,
        crc: 9,
        payload: Bytes::from_static(b"some payload bytes"),
    };
    let fetched = FetchResponse {
        batches: vec![
            Batch {
                offset: 1,
                count: 2,
                crc: 3,
                payload: Bytes::from_static(b"abc"),
            };
            3
        ],
        readable_end: 10,
        sealed_end: Some(12),
    };
    let meta = MetaRecord::Snapshot(PartitionSnapshot {
        log_start: 5,
        epochs: vec![(0, 0), (3, 40)],
        time_index: vec![
            TimeIndexEntry {
                max_timestamp: 1000,
                offset: 3,
                position: 100,
            };
            4
        ],
        indexed_until: 50,
        indexed_bytes: 900,
    });
    let heartbeat = Heartbeat {
        node_id: 4,
        ranges: vec![
            RangeReport {
                stream_id: 1,
                index: 0,
                epoch: 1,
                start: 0,
                next: 10,
                sealed_end: None,
            };
            3
        ],
        loads: Some(vec![PartitionLoad {
            topic: "t".into(),
            partition: 3,
            produce_bytes_per_sec: 1000,
            fetch_bytes_per_sec: 20,
        }]),
        version: "0.1.0".into(),
    };
    let register = RegisterNode {
        kind: protocol::model::NodeKind::Broker,
        node_id: Some(4),
        addr: "127.0.0.1:9092".into(),
        http_addr: "127.0.0.1:10092".into(),
    };
    vec![
        frame(100, protocol::encode(&append).unwrap()),
        frame(101, protocol::encode(&fetched).unwrap()),
        frame(1, protocol::encode(&meta).unwrap()),
        frame(2, protocol::encode(&heartbeat).unwrap()),
        frame(3, protocol::encode(&register).unwrap()),
    ]
}

/// Decodes `body` as every message type a process takes off the wire.
fn decode_all(body: &[u8]) {
    let _ = protocol::decode::<Append>(body);
    let _ = protocol::decode::<Fetch>(body);
    let _ = protocol::decode::<FetchResponse>(body);
    let _ = protocol::decode::<Seal>(body);
    let _ = protocol::decode::<MetaRecord>(body);
    let _ = protocol::decode::<Heartbeat>(body);
    let _ = protocol::decode::<RegisterNode>(body);
    let _ = protocol::decode::<WatchResponse>(body);
    let _ = protocol::decode::<RpcError>(body);
}

#[test]
fn fuzz_rpc_frames_and_messages() {
    let seeds = seeds();
    let mut budget = Budget::new("rpc frames and messages", 20_000);
    while budget.another() {
        let bytes = budget.spoil(&seeds);
        // Whole bodies, as a body decoder sees them.
        decode_all(&bytes);
        // As a stream of frames.
        let mut buf = BytesMut::from(&bytes[..]);
        let mut codec = FrameCodec::new(1 << 20);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            decode_all(&frame.body);
        }
    }
}

/// Objects as a reader fetches them from object storage: spoiled whole objects must be errors,
/// never panics or allocations sized by their claims.
#[test]
fn fuzz_objects() {
    use protocol::object::{parse_object, ObjectBatch, ObjectBuilder};
    let mut seeds = Vec::new();
    for streams in 1..4u64 {
        let mut b = ObjectBuilder::new();
        for s in 0..streams {
            for i in 0..5u64 {
                let payload = bytes::Bytes::from(vec![(s + i) as u8; 20]);
                let batch = ObjectBatch {
                    offset: i * 2,
                    count: 2,
                    crc: protocol::checksum(&payload),
                    payload,
                };
                b.add(s, &batch).expect("in order");
            }
        }
        seeds.push(b.finish().0.to_vec());
    }
    let mut budget = Budget::new("objects", 20_000);
    while budget.another() {
        let bytes = budget.spoil(&seeds);
        let _ = parse_object(&bytes);
    }
}
