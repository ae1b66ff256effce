//! Kafka v2 record batches as bytes: split a produce payload into batches, validate each
//! header and CRC, walk the records (decompressed, capped, when the batch is compressed) to
//! check every count and length in them, find a record by timestamp, and rewrite the fields a
//! broker owns (base offset, leader epoch, log append time). Batches travel and are stored as
//! the producer's bytes; records are only walked, never rebuilt.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::decompress;

pub const HEADER_LEN: usize = 61;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_FIRST_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORDS_COUNT: usize = 57;

const ATTR_COMPRESSION: i16 = 0b111;
const ATTR_TIMESTAMP_TYPE: i16 = 0b1000;
const ATTR_TRANSACTIONAL: i16 = 0b1_0000;
const ATTR_CONTROL: i16 = 0b10_0000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("the request's compressed batches decompress to more than its budget of {0} bytes")]
    OverBudget(usize),
}

/// Bytes the compressed batches of one produce request may decompress to, together: 256 MiB
/// plus ten times the request's record bytes. Validation decompresses every batch (each at
/// most [`decompress::MAX_DECOMPRESSED_BYTES`]); without a bound per request, one request of
/// many small batches that expand to the cap could hold the broker's event loop for hours.
#[derive(Debug, Clone, Copy)]
pub struct DecompressionBudget {
    pub total: usize,
    pub left: usize,
}

impl DecompressionBudget {
    pub fn for_request(record_bytes: usize) -> Self {
        let total = (256usize << 20).saturating_add(record_bytes.saturating_mul(10));
        DecompressionBudget { total, left: total }
    }

    /// No bound (for stored batches, already validated).
    pub fn unlimited() -> Self {
        DecompressionBudget {
            total: usize::MAX,
            left: usize::MAX,
        }
    }
}

/// The fields of a v2 batch header a broker looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub length: usize,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Offsets the batch takes.
    pub fn count(&self) -> u32 {
        (self.last_offset_delta as u32).saturating_add(1)
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    /// Last sequence number of an idempotent batch (wrapping like Kafka's).
    pub fn last_sequence(&self) -> i32 {
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// Reads the header of the batch at the start of `bytes` without checking its CRC.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() < HEADER_LEN {
        return Err(BatchError::Corrupt(format!(
            "{} bytes is shorter than a batch header",
            bytes.len()
        )));
    }
    let magic = bytes[OFFSET_MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let batch_length = i32_at(bytes, OFFSET_BATCH_LENGTH);
    if batch_length < (HEADER_LEN - 12) as i32 {
        return Err(BatchError::Corrupt(format!("batch length {batch_length}")));
    }
    Ok(BatchHeader {
        base_offset: i64_at(bytes, 0),
        length: 12 + batch_length as usize,
        attributes: i16_at(bytes, OFFSET_ATTRIBUTES),
        last_offset_delta: i32_at(bytes, OFFSET_LAST_OFFSET_DELTA),
        first_timestamp: i64_at(bytes, OFFSET_FIRST_TIMESTAMP),
        max_timestamp: i64_at(bytes, OFFSET_MAX_TIMESTAMP),
        producer_id: i64_at(bytes, OFFSET_PRODUCER_ID),
        producer_epoch: i16_at(bytes, OFFSET_PRODUCER_EPOCH),
        base_sequence: i32_at(bytes, OFFSET_BASE_SEQUENCE),
        records_count: i32_at(bytes, OFFSET_RECORDS_COUNT),
    })
}

/// Records in `bytes`, a run of stored batches (a fetch response's records), from their
/// headers; a batch cut short at the end (a fetch may end inside one) is not counted, nor is
/// anything after a header that does not parse.
pub fn record_count(bytes: &[u8]) -> u64 {
    let mut at = 0usize;
    let mut records = 0u64;
    while let Some(rest) = bytes.get(at..) {
        let Ok(header) = parse_header(rest) else {
            break;
        };
        if header.length > rest.len() {
            break;
        }
        records += u64::try_from(header.records_count).unwrap_or(0);
        at += header.length;
    }
    records
}

/// Splits a produce payload into its batches, checking each one's framing, magic, counts and
/// CRC, and its size against `max_batch_bytes`.
pub fn split_and_validate(
    records: &Bytes,
    max_batch_bytes: usize,
) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    split_and_validate_within(
        records,
        max_batch_bytes,
        &mut DecompressionBudget::unlimited(),
    )
}

/// [`split_and_validate`], taking what compressed batches decompress to from `budget` (a
/// batch that overdraws it is refused with [`BatchError::OverBudget`]).
pub fn split_and_validate_within(
    records: &Bytes,
    max_batch_bytes: usize,
    budget: &mut DecompressionBudget,
) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        let header = parse_header(rest)?;
        if header.length > rest.len() {
            return Err(BatchError::Corrupt(format!(
                "batch of {} bytes is cut short at {} bytes",
                header.length,
                rest.len()
            )));
        }
        if header.length > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size: header.length,
                limit: max_batch_bytes,
            });
        }
        let batch = &rest[..header.length];
        let stored = i32_at(batch, OFFSET_CRC) as u32;
        let computed = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
        if stored != computed {
            return Err(BatchError::Corrupt(format!(
                "CRC mismatch: batch says {stored:#010x}, bytes give {computed:#010x}"
            )));
        }
        if header.records_count <= 0 || header.last_offset_delta != header.records_count - 1 {
            return Err(BatchError::Corrupt(format!(
                "{} records with last offset delta {}",
                header.records_count, header.last_offset_delta
            )));
        }
        if budget.left == 0 && header.attributes & ATTR_COMPRESSION != 0 {
            return Err(BatchError::OverBudget(budget.total));
        }
        let (_, decompressed) = walk_records_sized(batch, &header, |_| false)?;
        match budget.left.checked_sub(decompressed) {
            Some(left) => budget.left = left,
            None => {
                // Spent: every later compressed batch of the request is refused unread.
                budget.left = 0;
                return Err(BatchError::OverBudget(budget.total));
            }
        }
        out.push((header, records.slice(at..at + header.length)));
        at += header.length;
    }
    if out.is_empty() {
        return Err(BatchError::Corrupt("no record batch".into()));
    }
    Ok(out)
}

/// Where one record sits in its batch, as [`walk_records`] meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAt {
    pub offset: i64,
    pub timestamp: i64,
}

/// Walks the records of `batch` (decompressed, at most
/// [`decompress::MAX_DECOMPRESSED_BYTES`], if the batch is compressed), checking that it holds
/// exactly the `records_count` its header declares and that every length inside each record
/// (key, value, header count, header keys and values) fits in the record, and calls `each`
/// with every record until it answers true; answers that record. The count and the lengths
/// are the producer's word, and a reader that trusted them would size its allocations by
/// them.
pub fn walk_records(
    batch: &[u8],
    header: &BatchHeader,
    each: impl FnMut(RecordAt) -> bool,
) -> Result<Option<RecordAt>, BatchError> {
    walk_records_sized(batch, header, each).map(|(found, _)| found)
}

/// [`walk_records`], also answering how many bytes the records decompressed to (0 for an
/// uncompressed batch).
fn walk_records_sized(
    batch: &[u8],
    header: &BatchHeader,
    mut each: impl FnMut(RecordAt) -> bool,
) -> Result<(Option<RecordAt>, usize), BatchError> {
    let corrupt = |what: String| BatchError::Corrupt(what);
    let stored = batch
        .get(HEADER_LEN..)
        .ok_or_else(|| corrupt("shorter than its header".into()))?;
    let records: Cow<[u8]> = match header.attributes & ATTR_COMPRESSION {
        0 => Cow::Borrowed(stored),
        codec => Cow::Owned(
            decompress::records(codec, stored, decompress::MAX_DECOMPRESSED_BYTES)
                .map_err(corrupt)?,
        ),
    };
    let decompressed = match &records {
        Cow::Owned(bytes) => bytes.len(),
        Cow::Borrowed(_) => 0,
    };
    let count = header.records_count;
    let mut records = Cursor(&records);
    let mut found = 0i32;
    while !records.is_empty() {
        if found == count {
            return Err(corrupt(format!(
                "more than the {count} records it declares"
            )));
        }
        let len = records.varint()?;
        let record = records.take(len)?;
        let (timestamp_delta, offset_delta) =
            check_record(Cursor(record)).map_err(|e| corrupt(format!("record {found}: {e}")))?;
        let at = RecordAt {
            offset: header.base_offset.saturating_add(offset_delta),
            timestamp: header.first_timestamp.saturating_add(timestamp_delta),
        };
        if each(at) {
            return Ok((Some(at), decompressed));
        }
        found += 1;
    }
    if found != count {
        return Err(corrupt(format!(
            "{found} records where it declares {count}"
        )));
    }
    Ok((None, decompressed))
}

/// One record's fields after its length: attributes, timestamp and offset deltas, key,
/// value, headers; nothing may be left over. Answers the two deltas.
fn check_record(mut r: Cursor<'_>) -> Result<(i64, i64), BatchError> {
    r.take(1)?; // attributes
    let timestamp_delta = r.varint()?; // a varlong
    let offset_delta = r.varint()?;
    r.nullable_bytes()?; // key
    r.nullable_bytes()?; // value
    let headers = r.varint()?;
    // Every header takes at least two bytes (two lengths).
    if headers < 0 || headers as usize > r.0.len() / 2 {
        return Err(BatchError::Corrupt(format!("{headers} headers")));
    }
    for _ in 0..headers {
        let key_len = r.varint()?;
        if key_len < 0 {
            return Err(BatchError::Corrupt("a header without a key".into()));
        }
        r.take(key_len)?;
        r.nullable_bytes()?;
    }
    if !r.is_empty() {
        return Err(BatchError::Corrupt(format!(
            "{} bytes after the last field",
            r.0.len()
        )));
    }
    Ok((timestamp_delta, offset_delta))
}

/// Reads a record's fields, refusing anything that runs past the end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A zigzag varint of up to 64 bits (Kafka's varint and varlong).
    fn varint(&mut self) -> Result<i64, BatchError> {
        let mut value = 0u64;
        for (i, byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(BatchError::Corrupt("a varint runs past the record".into()))
    }

    /// `len` bytes; a negative or too large length is corrupt.
    fn take(&mut self, len: impl TryInto<usize>) -> Result<&'a [u8], BatchError> {
        let len = len
            .try_into()
            .ok()
            .filter(|&l| l <= self.0.len())
            .ok_or_else(|| BatchError::Corrupt("a length runs past the record".into()))?;
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    /// A varint length and that many bytes, or -1 for null.
    fn nullable_bytes(&mut self) -> Result<(), BatchError> {
        match self.varint()? {
            -1 => Ok(()),
            len => self.take(len).map(|_| ()),
        }
    }
}

/// Copies `batch` with the broker-owned fields set: base offset, partition leader epoch and,
/// when `log_append_time` is given, the timestamp type and max timestamp (then the CRC is
/// recomputed; the first two fields lie outside the CRC).
pub fn rewrite(
    batch: &[u8],
    base_offset: u64,
    leader_epoch: u32,
    log_append_time: Option<i64>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(batch.len());
    out.put_slice(batch);
    out[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
    out[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&(leader_epoch as i32).to_be_bytes());
    if let Some(now) = log_append_time {
        let attributes = i16_at(&out, OFFSET_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
        out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        out[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
        out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use rand::Rng;

    pub(crate) fn encoded(n: usize, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder groups records whose offset - sequence is constant.
                sequence: i as i32 - 1,
                timestamp: 1000 + i as i64,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value {i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn record_count_walks_whole_batches_only() {
        let mut two = BytesMut::new();
        two.extend_from_slice(&encoded(5, Compression::None));
        two.extend_from_slice(&encoded(3, Compression::None));
        let two = two.freeze();
        assert_eq!(record_count(&two), 8);
        // A fetch may end inside a batch: that one is not counted.
        assert_eq!(record_count(&two[..two.len() - 1]), 5);
        assert_eq!(record_count(&two[..10]), 0);
        assert_eq!(record_count(&[]), 0);
    }

    #[test]
    fn validates_and_rewrites() {
        let bytes = encoded(5, Compression::None);
        let batches = split_and_validate(&bytes, 1 << 20).unwrap();
        assert_eq!(batches.len(), 1);
        let (header, batch) = &batches[0];
        assert_eq!(header.count(), 5);
        assert_eq!(header.max_timestamp, 1004);
        let rewritten = rewrite(batch, 42, 7, Some(99_999));
        let again = split_and_validate(&rewritten, 1 << 20).unwrap();
        assert_eq!(again[0].0.base_offset, 42);
        assert!(again[0].0.is_log_append_time());
        assert_eq!(again[0].0.max_timestamp, 99_999);
        // Offset and epoch rewrites keep the CRC valid without recomputing it.
        let plain = rewrite(batch, 7, 3, None);
        assert!(split_and_validate(&plain, 1 << 20).is_ok());
    }

    #[test]
    fn refuses_bad_crc_size_and_framing() {
        let bytes = encoded(3, Compression::None);
        let mut flipped = BytesMut::from(&bytes[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            split_and_validate(&flipped.freeze(), 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            split_and_validate(&bytes, 10),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(split_and_validate(&bytes.slice(..bytes.len() - 1), 1 << 20).is_err());
        assert!(split_and_validate(&Bytes::from_static(&[0; 70]), 1 << 20).is_err());
        assert!(split_and_validate(&Bytes::new(), 1 << 20).is_err());
    }

    /// `batch` with `edit` applied to its bytes and its CRC made valid again, as a hostile
    /// producer would send it.
    fn resealed(batch: &[u8], edit: impl FnOnce(&mut BytesMut)) -> Bytes {
        let mut b = BytesMut::from(batch);
        edit(&mut b);
        let len = (b.len() - 12) as i32;
        b[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[OFFSET_ATTRIBUTES..]);
        b[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    fn set_count(b: &mut BytesMut, count: i32) {
        b[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&(count - 1).to_be_bytes());
        b[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    }

    fn is_corrupt(bytes: &Bytes) -> bool {
        matches!(
            split_and_validate(bytes, 1 << 20),
            Err(BatchError::Corrupt(_))
        )
    }

    #[test]
    fn refuses_a_record_count_the_records_do_not_match() {
        let one = encoded(1, Compression::None);
        assert!(split_and_validate(&one, 1 << 20).is_ok());
        // A CRC-valid batch claiming 2^31-1 records (and offsets) while holding one.
        assert!(is_corrupt(&resealed(&one, |b| set_count(b, i32::MAX))));
        // Claiming fewer records than it holds.
        let three = encoded(3, Compression::None);
        assert!(is_corrupt(&resealed(&three, |b| set_count(b, 2))));
    }

    #[test]
    fn compressed_batches_are_walked_too() {
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let three = encoded(3, compression);
            let batches = split_and_validate(&three, 1 << 20).expect("honest batch");
            // The timestamp walk sees the decompressed records.
            let (header, batch) = &batches[0];
            let found = walk_records(batch, header, |r| r.timestamp >= 1001).unwrap();
            assert_eq!(
                found,
                Some(RecordAt {
                    offset: 1,
                    timestamp: 1001
                })
            );
            // A count the compressed records do not match, either way.
            assert!(is_corrupt(&resealed(&three, |b| set_count(b, i32::MAX))));
            assert!(is_corrupt(&resealed(&three, |b| set_count(b, 2))));
            // Compressed bytes that do not decompress.
            assert!(is_corrupt(&resealed(&three, |b| {
                b.truncate(HEADER_LEN + 4);
                b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            })));
        }
    }

    #[test]
    fn a_decompression_bomb_is_corrupt() {
        // One gzip "record" section of 200 MiB of zeros, in 200 KiB on the wire.
        let one = encoded(1, Compression::Gzip);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..200 {
            std::io::Write::write_all(&mut gz, &zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        let batch = resealed(&one, |b| {
            b.truncate(HEADER_LEN);
            b.extend_from_slice(&bomb);
        });
        match split_and_validate(&batch, 1 << 20) {
            Err(BatchError::Corrupt(why)) => assert!(why.contains("more than"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// What one request's compressed batches may decompress to is bounded together: once
    /// the budget is spent, the batch that overdrew it and every later compressed batch are
    /// refused (the later ones unread); uncompressed batches cost nothing.
    #[test]
    fn a_request_decompresses_within_its_budget() {
        let three = encoded(3, Compression::Zstd);
        let size = {
            let batches = split_and_validate(&three, 1 << 20).unwrap();
            let (header, batch) = &batches[0];
            walk_records_sized(batch, header, |_| false).unwrap().1
        };
        assert!(size > 0);
        let mut budget = DecompressionBudget {
            total: 2 * size,
            left: 2 * size,
        };
        assert!(split_and_validate_within(&three, 1 << 20, &mut budget).is_ok());
        assert!(split_and_validate_within(&three, 1 << 20, &mut budget).is_ok());
        assert_eq!(budget.left, 0);
        let plain = encoded(3, Compression::None);
        assert!(split_and_validate_within(&plain, 1 << 20, &mut budget).is_ok());
        assert!(matches!(
            split_and_validate_within(&three, 1 << 20, &mut budget),
            Err(BatchError::OverBudget(total)) if total == 2 * size
        ));
        let mut budget = DecompressionBudget {
            total: size + 1,
            left: size + 1,
        };
        assert!(split_and_validate_within(&three, 1 << 20, &mut budget).is_ok());
        assert!(split_and_validate_within(&three, 1 << 20, &mut budget).is_err());
        assert_eq!(budget.left, 0, "an overdraft spends the budget");
        // A request's budget: 256 MiB and ten times its bytes.
        assert_eq!(
            DecompressionBudget::for_request(1 << 20).total,
            (256 << 20) + (10 << 20)
        );
    }

    #[test]
    fn refuses_lengths_and_header_counts_that_run_past_the_record() {
        let one = encoded(1, Compression::None);
        // The record: length, attributes, timestamp delta, offset delta, key, value, headers.
        // Rebuild it with 2^31-1 headers and none present.
        let record = |headers: &[u8]| {
            let mut body = vec![0u8, 0, 0]; // attributes, timestamp delta 0, offset delta 0
            body.extend_from_slice(&[2, b'k']); // key of 1 byte (zigzag 1 = 2)
            body.extend_from_slice(&[2, b'v']); // value of 1 byte
            body.extend_from_slice(headers);
            let mut r = vec![(body.len() as u8) << 1];
            r.extend_from_slice(&body);
            r
        };
        let with_record = |r: Vec<u8>| {
            resealed(&one, move |b| {
                b.truncate(HEADER_LEN);
                b.extend_from_slice(&r);
            })
        };
        assert!(split_and_validate(&with_record(record(&[0])), 1 << 20).is_ok());
        // 2^31-1 headers: zigzag varint of 0xFFFF_FFFE.
        let huge = [0xfe, 0xff, 0xff, 0xff, 0x0f];
        assert!(is_corrupt(&with_record(record(&huge))));
        // A key longer than the record.
        let mut long_key = record(&[0]);
        long_key[4] = 0x7e; // key length 63
        assert!(is_corrupt(&with_record(long_key)));
        // Bytes left over after the headers.
        assert!(is_corrupt(&with_record(record(&[0, 0]))));
    }

    /// Spoiled batches (every codec) through validation and the timestamp walk: refused or
    /// accepted, never a crash.
    #[test]
    fn fuzz_batch_validation() {
        let seeds: Vec<Vec<u8>> = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
        .into_iter()
        .flat_map(|c| [encoded(1, c).to_vec(), encoded(7, c).to_vec()])
        .collect();
        let mut budget = protocol::fuzz::Budget::new("record batch validation", 20_000);
        while budget.another() {
            let mut bytes = budget.spoil(&seeds);
            // Half of them resealed, so the walk behind the CRC check is reached too.
            if budget.rng.random_bool(0.5) && bytes.len() >= HEADER_LEN {
                let len = (bytes.len() - 12) as i32;
                bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
                    .copy_from_slice(&len.to_be_bytes());
                let crc = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..]);
                bytes[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
            }
            if let Ok(batches) = split_and_validate(&Bytes::from(bytes), 1 << 20) {
                for (header, batch) in batches {
                    walk_records(&batch, &header, |r| r.timestamp > 1003).expect("valid walks");
                }
            }
        }
    }
}
