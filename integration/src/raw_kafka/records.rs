//! Kafka v2 record batches for raw requests: encoding test batches and reading batch
//! headers back from a Fetch answer. It knows nothing of connections or brokers.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One v2 record batch holding `records` (key, value) with timestamps `timestamp + i`.
pub fn record_batch(
    records: &[(Option<&[u8]>, &[u8])],
    compression: Compression,
    timestamp: i64,
) -> Bytes {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol puts records in one batch while offset - sequence stays the
            // same; this keeps the batch's base sequence at -1 (no idempotence).
            sequence: i as i32 - 1,
            timestamp: timestamp + i as i64,
            key: k.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(v)),
            headers: IndexMap::new(),
        })
        .collect();
    encode(&recs, compression)
}

/// `records` as one v2 batch.
fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// One idempotent v2 batch of `values` from producer `producer_id` at `epoch`, its first
/// record at sequence `base_sequence`.
pub fn idempotent_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    values: &[&[u8]],
) -> Bytes {
    let recs: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: 1_000 + i as i64,
            key: None,
            value: Some(Bytes::copy_from_slice(v)),
            headers: IndexMap::new(),
        })
        .collect();
    encode(&recs, Compression::None)
}

/// Byte offset of the attributes field in a v2 batch header (compression in bits 0-2,
/// timestamp type in bit 3).
pub const BATCH_ATTRIBUTES_AT: usize = 21;

/// The v2 batch headers in `records` (as a Fetch answers them): (base offset, record count,
/// attributes) of each complete batch.
pub fn batch_headers(records: &[u8]) -> Vec<(i64, i32, i16)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 61 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().unwrap());
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().unwrap()) as usize;
        if at + 12 + len > records.len() {
            break;
        }
        let attrs = i16::from_be_bytes(
            records[at + BATCH_ATTRIBUTES_AT..at + BATCH_ATTRIBUTES_AT + 2]
                .try_into()
                .unwrap(),
        );
        let count = i32::from_be_bytes(records[at + 57..at + 61].try_into().unwrap());
        out.push((base, count, attrs));
        at += 12 + len;
    }
    out
}
