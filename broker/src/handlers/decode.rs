//! Decoding a request body without trusting the counts in it.
//!
//! `kafka-protocol` 0.18 reserves a `Vec`'s capacity from an array count read off the wire
//! before it decodes a single element: an 18-byte Metadata v0 request claiming 2^31 - 1
//! topics asks for 150 GB and aborts the process. [`decode_body`] runs the crate's decoder
//! over [`Checked`], a `bytes::Buf` that sees every count before the decoder can use it:
//!
//! - An unsigned varint (flexible versions: compact array, string and bytes lengths, tagged
//!   field counts, tags and sizes) above the bytes left plus [`SLACK`] is refused on the
//!   spot: no honest one can be that large, since every element takes at least one byte.
//! - An int32 above the bytes left plus [`SLACK`] may be an array count or a plain number (a
//!   byte limit, a timeout); the buffer cannot tell which. So this first decode, the probe,
//!   reads such an int32 as one more than could fit: as an array count it then fails for
//!   want of bytes, having reserved no more than the frame's size allows; as a plain number
//!   it changes nothing else in the decode. Only when the probe succeeds does a second decode
//!   run, over the plain bytes, with the real numbers; every array count it meets then fits
//!   the frame. Without such an int32 the probe's result is the answer (one decode).
//!
//! Must not: copy the frame (both decodes slice the same `Bytes`), or accept a body the
//! crate's own decoder would refuse.

use bytes::{Buf, Bytes, TryGetError};
use kafka_protocol::protocol::buf::ByteBuf;
use kafka_protocol::protocol::Decodable;

/// How far a count may exceed the bytes left before it is distrusted. Counts this small
/// reserve little even when false, and small tags and numbers are never questioned.
pub const SLACK: usize = 64 * 1024;

/// Decodes `T` at `version` from `frame`, advancing it past the body; an error says why the
/// body was refused.
pub fn decode_body<T: Decodable>(frame: &mut Bytes, version: i16) -> Result<T, String> {
    let mut probe = Checked::new(frame.clone());
    let decoded = match T::decode(&mut probe, version) {
        Ok(decoded) => decoded,
        Err(e) => return Err(probe.refused.unwrap_or_else(|| e.to_string())),
    };
    if probe.distrusted == 0 {
        *frame = probe.bytes;
        return Ok(decoded);
    }
    T::decode(frame, version).map_err(|e| e.to_string())
}

/// The frame as the probe decode reads it (see the module doc).
struct Checked {
    bytes: Bytes,
    /// The varint being read, byte by byte: (value so far, bytes read).
    varint: (u64, u32),
    /// How many int32s were read as "too large to fit".
    distrusted: usize,
    /// Why a varint was refused, if one was.
    refused: Option<String>,
}

impl Checked {
    fn new(bytes: Bytes) -> Checked {
        Checked {
            bytes,
            varint: (0, 0),
            distrusted: 0,
            refused: None,
        }
    }

    fn limit(&self) -> u64 {
        (self.bytes.remaining() + SLACK) as u64
    }
}

impl Buf for Checked {
    fn remaining(&self) -> usize {
        self.bytes.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.bytes.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.varint = (0, 0);
        self.bytes.advance(cnt)
    }

    fn try_get_i32(&mut self) -> Result<i32, TryGetError> {
        self.varint = (0, 0);
        let value = self.bytes.try_get_i32()?;
        if value > 0 && value as u64 > self.limit() {
            self.distrusted += 1;
            return Ok(i32::try_from(self.limit() + 1).unwrap_or(i32::MAX));
        }
        Ok(value)
    }

    /// Varints are read a byte at a time; this puts them together to check each whole one.
    /// (Booleans come here too: a 0 or 1 reads as a one-byte varint, which is harmless.)
    fn try_get_u8(&mut self) -> Result<u8, TryGetError> {
        let byte = self.bytes.try_get_u8()?;
        let (value, read) = self.varint;
        let value = value | (u64::from(byte & 0x7f) << (7 * read));
        // The crate's varint ends at a byte without the high bit or after its fifth byte
        // (whatever that byte says), keeping the low 32 bits.
        if byte & 0x80 != 0 && read < 4 {
            self.varint = (value, read + 1);
            return Ok(byte);
        }
        self.varint = (0, 0);
        let value = value & u64::from(u32::MAX);
        if value > self.limit() {
            self.refused = Some(format!(
                "a length or count of {value} with {} bytes left",
                self.bytes.remaining()
            ));
            return Err(TryGetError {
                requested: usize::try_from(value).unwrap_or(usize::MAX),
                available: self.bytes.remaining(),
            });
        }
        Ok(byte)
    }
}

impl ByteBuf for Checked {
    fn peek_bytes(&mut self, r: std::ops::Range<usize>) -> Bytes {
        self.bytes.peek_bytes(r)
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.varint = (0, 0);
        self.bytes.get_bytes(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode<T: Encodable>(request: &T, version: i16) -> Bytes {
        let mut buf = bytes::BytesMut::new();
        request.encode(&mut buf, version).expect("encode");
        buf.freeze()
    }

    fn topic(name: &str) -> MetadataRequestTopic {
        MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
    }

    #[test]
    fn honest_bodies_decode_as_the_crate_decodes_them() {
        let metadata = MetadataRequest::default().with_topics(Some(vec![topic("a"), topic("b")]));
        let fetch = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_max_bytes(52_428_800)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(3)
                    .with_partition_max_bytes(1_048_576)])]);
        for version in [0, 4, 9, 12] {
            let bytes = encode(&metadata, version);
            let mut frame = bytes.clone();
            let decoded: MetadataRequest = decode_body(&mut frame, version).expect("metadata");
            assert_eq!(
                decoded,
                MetadataRequest::decode(&mut bytes.clone(), version).unwrap()
            );
            assert!(frame.is_empty());
        }
        // Numbers far larger than the body (max_bytes) are not counts: they stay as sent.
        for version in [4, 11, 12] {
            let mut frame = encode(&fetch, version);
            let decoded: FetchRequest = decode_body(&mut frame, version).expect("fetch");
            assert_eq!(decoded.max_bytes, 52_428_800);
            assert_eq!(
                decoded.topics[0].partitions[0].partition_max_bytes,
                1_048_576
            );
            assert!(frame.is_empty());
        }
    }

    #[test]
    fn counts_larger_than_the_body_are_refused_before_anything_is_reserved() {
        // Metadata v0: a topic array of 2^31 - 1 and two bytes. Decoded by the crate alone,
        // this aborts the process.
        let mut frame = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 1]);
        let r: Result<MetadataRequest, _> = decode_body(&mut frame, 0);
        assert!(r.is_err());
        // Metadata v9 (flexible): a compact array claiming 2^32 - 2 topics.
        let mut frame = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
        let r: Result<MetadataRequest, _> = decode_body(&mut frame, 9);
        let e = r.expect_err("refused");
        assert!(e.contains("4294967295"), "{e}");
        // The crate ends a varint after five bytes even when the fifth has the high bit set
        // (found by fuzz_request_parsing): 2^32 - 2 topics again.
        let mut frame = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
        let r: Result<MetadataRequest, _> = decode_body(&mut frame, 9);
        assert!(r.is_err());
        // A nested count: one Fetch v4 topic whose partition array claims 2^31 - 1.
        let mut body = encode(
            &FetchRequest::default().with_topics(vec![
                FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("t")))
            ]),
            4,
        )
        .to_vec();
        let n = body.len();
        body[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        body.extend_from_slice(&[0; 8]);
        let r: Result<FetchRequest, _> = decode_body(&mut Bytes::from(body), 4);
        assert!(r.is_err());
    }

    /// A whole request frame (header and body) of `api` at `version`, as a client sends it
    /// (without the size prefix).
    fn request_frame<T: Encodable>(api: ApiKey, version: i16, body: &T) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(9)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")));
        let mut buf = bytes::BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.to_vec()
    }

    /// Spoiled requests of several APIs and versions, and random frames, through the whole
    /// parse: each is decoded or refused, never a crash.
    #[test]
    fn fuzz_request_parsing() {
        use crate::handlers::parse;
        use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let metadata = MetadataRequest::default().with_topics(Some(vec![topic("a"), topic("bb")]));
        let fetch = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![FetchPartition::default(); 3])]);
        let produce = ProduceRequest::default().with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![
                PartitionProduceData::default().with_records(Some(Bytes::from_static(&[0; 70])))
            ])]);
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"meta"))]);
        let mut seeds = Vec::new();
        for v in [0, 1, 4, 9, 12] {
            seeds.push(request_frame(ApiKey::Metadata, v, &metadata));
        }
        for v in [4, 11, 12, 13] {
            seeds.push(request_frame(ApiKey::Fetch, v, &fetch));
        }
        for v in [3, 8, 9] {
            seeds.push(request_frame(ApiKey::Produce, v, &produce));
        }
        for v in [0, 5, 6, 9] {
            seeds.push(request_frame(ApiKey::JoinGroup, v, &join));
        }
        let mut budget = protocol::fuzz::Budget::new("kafka request parsing", 20_000);
        while budget.another() {
            let frame = budget.spoil(&seeds);
            let _ = parse(Bytes::from(frame));
        }
    }
}
