//! What a group coordinator writes to the streams of its `__consumer_offsets` partition, and
//! the binary form of it.
//!
//! Data stream: one stream batch per coordinator write, holding one or more [`Record`]s
//! (offset commits, group metadata, tombstones). Replaying the data stream in order rebuilds
//! every group: the last record of a key wins, a tombstone (`value: None`) removes it.
//! Meta stream: snapshots of the whole state, cut into [`SnapshotChunk`]s; a snapshot that
//! covers the data stream up to `covered` lets the data before `covered` be trimmed.
//!
//! The form is versioned (`magic`, `version`) and every record is length-prefixed, so a
//! later version can add record kinds that this one skips. Decoding never panics: bad input is
//! a [`DecodeError`]. Nothing here does I/O.

use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: [u8; 2] = *b"SG";
const VERSION: u8 = 1;
const KIND_DATA: u8 = 0;
const KIND_SNAPSHOT: u8 = 1;
const RECORD_OFFSET: u8 = 1;
const RECORD_GROUP: u8 = 2;

/// A committed offset (Kafka's OffsetCommitValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only for commits of OffsetCommit v2-4 with an explicit retention time.
    pub expire_timestamp: Option<i64>,
}

/// One member as stored in the group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// Every protocol the member offered, in its order of preference, with its metadata.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

/// Group metadata (Kafka's GroupMetadataValue): written when a generation completes (the
/// leader's assignment), when a group becomes empty, and when a static member is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (drives expiry of empty groups).
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

/// One piece of a snapshot in the meta stream: a snapshot is chunks `0..=n` of the same
/// `covered`, the last one flagged; only a complete snapshot counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// Data-stream offset the snapshot covers: replay continues from here.
    pub covered: u64,
    pub index: u32,
    pub last: bool,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad group record: {0}")]
pub struct DecodeError(pub String);

fn err<T>(what: &str) -> Result<T, DecodeError> {
    Err(DecodeError(what.to_string()))
}

// ----- encoding -----

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.put_u8(1);
            put_str(buf, s);
        }
        None => buf.put_u8(0),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32(b.len() as u32);
    buf.put_slice(b);
}

/// The record alone (without its length prefix).
pub fn encode_record(record: &Record) -> Bytes {
    let mut buf = BytesMut::new();
    match record {
        Record::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            buf.put_u8(RECORD_OFFSET);
            put_str(&mut buf, group);
            put_str(&mut buf, topic);
            buf.put_i32(*partition);
            match value {
                None => buf.put_u8(0),
                Some(v) => {
                    buf.put_u8(1);
                    buf.put_i64(v.offset);
                    buf.put_i32(v.leader_epoch);
                    put_str(&mut buf, &v.metadata);
                    buf.put_i64(v.commit_timestamp);
                    match v.expire_timestamp {
                        Some(t) => {
                            buf.put_u8(1);
                            buf.put_i64(t);
                        }
                        None => buf.put_u8(0),
                    }
                }
            }
        }
        Record::Group { group, value } => {
            buf.put_u8(RECORD_GROUP);
            put_str(&mut buf, group);
            match value {
                None => buf.put_u8(0),
                Some(v) => {
                    buf.put_u8(1);
                    put_str(&mut buf, &v.protocol_type);
                    buf.put_i32(v.generation);
                    put_opt_str(&mut buf, v.protocol.as_deref());
                    put_opt_str(&mut buf, v.leader.as_deref());
                    buf.put_i64(v.state_timestamp);
                    buf.put_u32(v.members.len() as u32);
                    for m in &v.members {
                        put_str(&mut buf, &m.member_id);
                        put_opt_str(&mut buf, m.instance_id.as_deref());
                        put_str(&mut buf, &m.client_id);
                        put_str(&mut buf, &m.client_host);
                        buf.put_i32(m.rebalance_timeout_ms);
                        buf.put_i32(m.session_timeout_ms);
                        buf.put_u32(m.protocols.len() as u32);
                        for (name, metadata) in &m.protocols {
                            put_str(&mut buf, name);
                            put_bytes(&mut buf, metadata);
                        }
                        put_bytes(&mut buf, &m.assignment);
                    }
                }
            }
        }
    }
    buf.freeze()
}

fn header(buf: &mut BytesMut, kind: u8) {
    buf.put_slice(&MAGIC);
    buf.put_u8(VERSION);
    buf.put_u8(kind);
}

fn put_records(buf: &mut BytesMut, records: &[Bytes]) {
    buf.put_u32(records.len() as u32);
    for r in records {
        put_bytes(buf, r);
    }
}

/// A data-stream batch of already encoded records.
pub fn data_batch(records: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::new();
    header(&mut buf, KIND_DATA);
    put_records(&mut buf, records);
    buf.freeze()
}

/// A meta-stream snapshot chunk of already encoded records.
pub fn snapshot_chunk(covered: u64, index: u32, last: bool, records: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::new();
    header(&mut buf, KIND_SNAPSHOT);
    buf.put_u64(covered);
    buf.put_u32(index);
    buf.put_u8(last as u8);
    put_records(&mut buf, records);
    buf.freeze()
}

/// Cuts encoded records into groups of at most about `max_bytes` each (at least one record
/// per group; never an empty group unless `records` is empty).
pub fn pack(records: Vec<Bytes>, max_bytes: usize) -> Vec<Vec<Bytes>> {
    let mut out: Vec<Vec<Bytes>> = Vec::new();
    let mut size = 0;
    for r in records {
        let len = r.len() + 4;
        match out.last_mut() {
            Some(last) if size + len <= max_bytes => {
                last.push(r);
                size += len;
            }
            _ => {
                size = len;
                out.push(vec![r]);
            }
        }
    }
    out
}

// ----- decoding -----

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return err("truncated");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8".into()))
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => err("bad option flag"),
        }
    }

    /// A count of items each at least `min_size` bytes: refuses counts the input cannot hold.
    fn count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.buf.len() {
            return err("count larger than the data");
        }
        Ok(n)
    }
}

/// Decodes one record; `Ok(None)` for a record kind this version does not know.
pub fn decode_record(bytes: &[u8]) -> Result<Option<Record>, DecodeError> {
    let mut r = Reader { buf: bytes };
    match r.u8()? {
        RECORD_OFFSET => {
            let group = r.string()?;
            let topic = r.string()?;
            let partition = r.i32()?;
            let value = match r.u8()? {
                0 => None,
                1 => {
                    let offset = r.i64()?;
                    let leader_epoch = r.i32()?;
                    let metadata = r.string()?;
                    let commit_timestamp = r.i64()?;
                    let expire_timestamp = match r.u8()? {
                        0 => None,
                        1 => Some(r.i64()?),
                        _ => return err("bad option flag"),
                    };
                    Some(OffsetValue {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_timestamp,
                        expire_timestamp,
                    })
                }
                _ => return err("bad option flag"),
            };
            Ok(Some(Record::Offset {
                group,
                topic,
                partition,
                value,
            }))
        }
        RECORD_GROUP => {
            let group = r.string()?;
            let value = match r.u8()? {
                0 => None,
                1 => {
                    let protocol_type = r.string()?;
                    let generation = r.i32()?;
                    let protocol = r.opt_string()?;
                    let leader = r.opt_string()?;
                    let state_timestamp = r.i64()?;
                    let n = r.count(30)?;
                    let mut members = Vec::with_capacity(n);
                    for _ in 0..n {
                        let member_id = r.string()?;
                        let instance_id = r.opt_string()?;
                        let client_id = r.string()?;
                        let client_host = r.string()?;
                        let rebalance_timeout_ms = r.i32()?;
                        let session_timeout_ms = r.i32()?;
                        let np = r.count(8)?;
                        let mut protocols = Vec::with_capacity(np);
                        for _ in 0..np {
                            let name = r.string()?;
                            let metadata = Bytes::copy_from_slice(r.bytes()?);
                            protocols.push((name, metadata));
                        }
                        let assignment = Bytes::copy_from_slice(r.bytes()?);
                        members.push(MemberValue {
                            member_id,
                            instance_id,
                            client_id,
                            client_host,
                            rebalance_timeout_ms,
                            session_timeout_ms,
                            protocols,
                            assignment,
                        });
                    }
                    Some(GroupValue {
                        protocol_type,
                        generation,
                        protocol,
                        leader,
                        state_timestamp,
                        members,
                    })
                }
                _ => return err("bad option flag"),
            };
            Ok(Some(Record::Group { group, value }))
        }
        _ => Ok(None),
    }
}

fn check_header(r: &mut Reader<'_>, kind: u8) -> Result<(), DecodeError> {
    if r.take(2)? != MAGIC {
        return err("bad magic");
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError(format!("unknown version {version}")));
    }
    if r.u8()? != kind {
        return err("unexpected batch kind");
    }
    Ok(())
}

fn read_records(r: &mut Reader<'_>) -> Result<Vec<Record>, DecodeError> {
    let n = r.count(4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let bytes = r.bytes()?;
        if let Some(record) = decode_record(bytes)? {
            out.push(record);
        }
    }
    Ok(out)
}

/// The records of one data-stream batch.
pub fn decode_data_batch(bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut r = Reader { buf: bytes };
    check_header(&mut r, KIND_DATA)?;
    read_records(&mut r)
}

pub fn decode_snapshot_chunk(bytes: &[u8]) -> Result<SnapshotChunk, DecodeError> {
    let mut r = Reader { buf: bytes };
    check_header(&mut r, KIND_SNAPSHOT)?;
    let covered = r.u64()?;
    let index = r.u32()?;
    let last = r.u8()? != 0;
    let records = read_records(&mut r)?;
    Ok(SnapshotChunk {
        covered,
        index,
        last,
        records,
    })
}

/// Collects complete snapshots from meta-stream chunks read in order.
#[derive(Debug, Default)]
pub struct SnapshotAssembler {
    partial: Option<(u64, u32, u64, Vec<Record>)>,
    /// The latest complete snapshot: `(meta offset of its first chunk, covered, records)`.
    pub complete: Option<(u64, u64, Vec<Record>)>,
}

impl SnapshotAssembler {
    /// Feeds the chunk found at `meta_offset`.
    pub fn push(&mut self, meta_offset: u64, chunk: SnapshotChunk) {
        if chunk.index == 0 {
            self.partial = Some((meta_offset, 0, chunk.covered, chunk.records));
        } else {
            match self.partial.as_mut() {
                Some((_, index, covered, records))
                    if *index + 1 == chunk.index && *covered == chunk.covered =>
                {
                    *index = chunk.index;
                    records.extend(chunk.records);
                }
                _ => {
                    // A chunk out of sequence: that snapshot is incomplete; drop it.
                    self.partial = None;
                    return;
                }
            }
        }
        if chunk.last {
            if let Some((first, _, covered, records)) = self.partial.take() {
                self.complete = Some((first, covered, records));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "meta ✓".into(),
                    commit_timestamp: 1000,
                    expire_timestamp: Some(2000),
                }),
            },
            Record::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            Record::Group {
                group: "g".into(),
                value: Some(GroupValue {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: Some("m-1".into()),
                    state_timestamp: 99,
                    members: vec![MemberValue {
                        member_id: "m-1".into(),
                        instance_id: Some("i-1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300000,
                        session_timeout_ms: 10000,
                        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
                        assignment: Bytes::from_static(b"assign"),
                    }],
                }),
            },
            Record::Group {
                group: "gone".into(),
                value: None,
            },
        ]
    }

    #[test]
    fn data_batches_round_trip() {
        let records = sample();
        let encoded: Vec<Bytes> = records.iter().map(encode_record).collect();
        let batch = data_batch(&encoded);
        assert_eq!(decode_data_batch(&batch).unwrap(), records);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let encoded: Vec<Bytes> = sample().iter().map(encode_record).collect();
        let batch = data_batch(&encoded);
        for cut in 0..batch.len() {
            assert!(decode_data_batch(&batch[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = batch.to_vec();
        bad[0] = b'X';
        assert!(decode_data_batch(&bad).is_err());
        // A huge count is refused before allocating.
        let mut huge = BytesMut::new();
        header(&mut huge, KIND_DATA);
        huge.put_u32(u32::MAX);
        assert!(decode_data_batch(&huge).is_err());
        // An unknown record kind is skipped.
        let unknown = data_batch(&[Bytes::from_static(&[77, 1, 2, 3])]);
        assert_eq!(decode_data_batch(&unknown).unwrap(), vec![]);
    }

    #[test]
    fn snapshots_assemble_only_when_complete() {
        let encoded: Vec<Bytes> = sample().iter().map(encode_record).collect();
        let packs = pack(encoded, 64);
        assert!(packs.len() > 1);
        let mut asm = SnapshotAssembler::default();
        let n = packs.len();
        for (i, p) in packs.iter().enumerate() {
            let chunk = snapshot_chunk(10, i as u32, i + 1 == n, p);
            asm.push(100 + i as u64, decode_snapshot_chunk(&chunk).unwrap());
        }
        let (first, covered, records) = asm.complete.clone().unwrap();
        assert_eq!((first, covered), (100, 10));
        assert_eq!(records, sample());
        // A newer snapshot that never finished does not replace the complete one.
        let chunk = snapshot_chunk(20, 0, false, &packs[0]);
        asm.push(200, decode_snapshot_chunk(&chunk).unwrap());
        assert_eq!(asm.complete.as_ref().unwrap().1, 10);
        // A chunk out of sequence drops the partial snapshot.
        let chunk = snapshot_chunk(20, 2, true, &packs[0]);
        asm.push(201, decode_snapshot_chunk(&chunk).unwrap());
        assert_eq!(asm.complete.as_ref().unwrap().1, 10);
    }

    #[test]
    fn pack_respects_the_limit() {
        let records: Vec<Bytes> = (0..10).map(|_| Bytes::from(vec![0u8; 10])).collect();
        let packs = pack(records, 30);
        assert_eq!(packs.len(), 5);
        assert!(packs.iter().all(|p| p.len() == 2));
        assert!(pack(Vec::new(), 30).is_empty());
    }

    /// Spoiled data batches and snapshot chunks through their decoders: an error or records,
    /// never a crash.
    #[test]
    fn fuzz_group_record_decoding() {
        let encoded: Vec<Bytes> = sample().iter().map(encode_record).collect();
        let seeds = vec![
            data_batch(&encoded).to_vec(),
            snapshot_chunk(10, 0, true, &encoded).to_vec(),
        ];
        let mut budget = protocol::fuzz::Budget::new("group records", 20_000);
        while budget.another() {
            let bytes = budget.spoil(&seeds);
            let _ = decode_data_batch(&bytes);
            let _ = decode_snapshot_chunk(&bytes);
            let _ = decode_record(&bytes);
        }
    }
}
