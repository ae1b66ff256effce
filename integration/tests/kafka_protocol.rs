//! Kafka's error answers to bad requests and the wire-level details no client library
//! exercises on purpose: raw Kafka frames (the `kafka-protocol` crate) for malformed frames,
//! corrupt and oversized batches, unknown APIs and versions, pipelining, acks=0, fetch edge
//! cases, ListOffsets max timestamp, OffsetForLeaderEpoch and InitProducerId. After every bad
//! request the broker must keep serving others.

use std::time::Duration;

use bytes::Bytes;
use integration::kafka;
use integration::raw_kafka::*;
use integration::testing::*;
use integration::Cluster;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, InitProducerIdRequest, MetadataRequest,
    OffsetForLeaderEpochRequest, ProduceRequest,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::Compression;

/// The broker still serves: a new connection gets ApiVersions and Metadata, and librdkafka
/// still reads `topic`.
fn still_serving(cluster: &Cluster, after: &str) {
    let addr = cluster.kafka_addr(0);
    let mut c = RawClient::connect(&addr);
    let resp = c.call(&ApiVersionsRequest::default(), 0);
    match resp {
        Ok(r) if r.error_code == 0 && !r.api_keys.is_empty() => {}
        other => fail(
            cluster,
            format!("after {after}: ApiVersions on a new connection: {other:?}"),
        ),
    }
    if let Err(e) = kafka::metadata(&addr, None) {
        fail(cluster, format!("after {after}: librdkafka metadata: {e}"));
    }
}

/// Expects the broker to refuse a request by answering it or by closing the connection,
/// not by leaving the client hanging.
fn refused(cluster: &Cluster, c: &mut RawClient, id: i32, what: &str) -> Outcome {
    let o = c.outcome(id, Duration::from_secs(10));
    if let Outcome::Silent = o {
        fail(
            cluster,
            format!("{what}: the broker neither answered nor closed the connection within 10 s"),
        );
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_versions_and_unknown_apis() {
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(1), &[]).await;
    let addr = cluster.kafka_addr(0);

    // ApiVersions v99: UNSUPPORTED_VERSION with a v0 body that lists the ranges.
    let mut c = RawClient::connect(&addr);
    let id = c.next_correlation_id();
    let mut frame = RawClient::encode(&ApiVersionsRequest::default(), 3, id);
    frame[2..4].copy_from_slice(&99i16.to_be_bytes());
    c.write_frame(&frame).unwrap();
    let body = match c.outcome(id, Duration::from_secs(10)) {
        Outcome::Response(body) => body,
        other => fail(
            &cluster,
            format!("ApiVersions v99: {other:?}, want a v0 response"),
        ),
    };
    let resp = ApiVersionsResponse::decode(&mut Bytes::from(body), 0).unwrap_or_else(|e| {
        fail(
            &cluster,
            format!("ApiVersions v99 answer is no v0 body: {e}"),
        )
    });
    assert_eq!(
        resp.error_code,
        code::UNSUPPORTED_VERSION,
        "ApiVersions v99 error"
    );
    let av = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == 18)
        .unwrap_or_else(|| panic!("ApiVersions v99 answer lists no ApiVersions range: {resp:?}"));
    assert!(
        av.min_version == 0 && av.max_version >= 3,
        "ApiVersions range {av:?}"
    );
    // Every API the broker serves is advertised: Produce, Fetch, ListOffsets, Metadata,
    // CreateTopics, DeleteTopics, OffsetForLeaderEpoch, DescribeConfigs, AlterConfigs,
    // CreatePartitions, ApiVersions, DeleteRecords, IncrementalAlterConfigs,
    // DescribeCluster and InitProducerId.
    let c2 = RawClient::negotiated(&addr);
    for key in [0i16, 1, 2, 3, 19, 20, 23, 32, 33, 37, 18, 21, 44, 60, 22] {
        assert!(
            c2.versions.contains_key(&key),
            "ApiVersions does not advertise API key {key}: {:?}",
            c2.versions
        );
    }
    still_serving(&cluster, "ApiVersions v99");

    // Metadata at a version far beyond the advertised one.
    let mut c = RawClient::connect(&addr);
    let id = c.next_correlation_id();
    let mut frame = RawClient::encode(&MetadataRequest::default(), 12, id);
    frame[2..4].copy_from_slice(&99i16.to_be_bytes());
    c.write_frame(&frame).unwrap();
    refused(&cluster, &mut c, id, "Metadata v99");
    still_serving(&cluster, "Metadata v99");

    // Unknown API key 999.
    let mut c = RawClient::connect(&addr);
    let id = c.next_correlation_id();
    let mut frame = Vec::new();
    frame.extend_from_slice(&999i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    frame.extend_from_slice(b"whatever body");
    c.write_frame(&frame).unwrap();
    refused(&cluster, &mut c, id, "unknown API key 999");
    still_serving(&cluster, "unknown API key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_the_connection_only() {
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(1), &[]).await;
    let addr = cluster.kafka_addr(0);
    // A client that stays connected and busy through all of it.
    let mut bystander = RawClient::negotiated(&addr);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative frame length", (-16i32).to_be_bytes().to_vec()),
        (
            "frame length of 2 GiB",
            [0x7fu8, 0xff, 0xff, 0xff, 0, 18, 0, 0].to_vec(),
        ),
        ("frame shorter than a header", {
            let mut f = 2i32.to_be_bytes().to_vec();
            f.extend_from_slice(&[0, 18]);
            f
        }),
        ("garbage header", {
            let mut f = 12i32.to_be_bytes().to_vec();
            f.extend_from_slice(&[0xff; 12]);
            f
        }),
        ("Produce with a truncated body", {
            let req = produce_request(
                "t",
                uuid::Uuid::nil(),
                0,
                record_batch(&[(None, b"x")], Compression::None, now_ms()),
                -1,
                7,
            );
            let full = RawClient::encode(&req, 7, 77);
            let cut = &full[..full.len() - 30];
            let mut f = (cut.len() as i32).to_be_bytes().to_vec();
            f.extend_from_slice(cut);
            f
        }),
        ("Metadata with a string length past the frame", {
            let mut body = Vec::new();
            body.extend_from_slice(&3i16.to_be_bytes()); // Metadata
            body.extend_from_slice(&1i16.to_be_bytes()); // v1
            body.extend_from_slice(&5i32.to_be_bytes()); // correlation id
            body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
            body.extend_from_slice(&1i32.to_be_bytes()); // one topic
            body.extend_from_slice(&1000i16.to_be_bytes()); // name of 1000 bytes...
            body.extend_from_slice(b"short"); // ...that is not there
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f
        }),
        // 18 bytes that once aborted the broker: the decoder reserved room for 2^31 - 1
        // topics (150 GB) before reading one.
        ("Metadata v0 claiming 2^31 - 1 topics", {
            let mut body = Vec::new();
            body.extend_from_slice(&3i16.to_be_bytes()); // Metadata
            body.extend_from_slice(&0i16.to_be_bytes()); // v0
            body.extend_from_slice(&6i32.to_be_bytes()); // correlation id
            body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
            body.extend_from_slice(&i32::MAX.to_be_bytes()); // topic count
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f
        }),
        ("Metadata v9 (flexible) claiming 2^32 - 2 topics", {
            let mut body = Vec::new();
            body.extend_from_slice(&3i16.to_be_bytes()); // Metadata
            body.extend_from_slice(&9i16.to_be_bytes()); // v9
            body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
            body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
            body.push(0); // no tagged fields in the header
            body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // compact topic count
            body.extend_from_slice(&[0, 0, 0]);
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f
        }),
    ];
    for (what, bytes) in cases {
        let mut c = RawClient::connect(&addr);
        c.write_raw(&bytes).unwrap();
        // Whatever the broker answers, it must not leave the connection hanging, and it
        // must not answer with a well-formed success.
        if let Outcome::Silent = c.outcome(-99, Duration::from_secs(10)) {
            // Acceptable only if the broker is still waiting for the rest of a frame
            // it has not judged yet; the next (valid) frame must then fail or close.
            let id = c.next_correlation_id();
            let _ = c.write_frame(&RawClient::encode(&ApiVersionsRequest::default(), 0, id));
            if let Outcome::Silent = c.outcome(id, Duration::from_secs(10)) {
                fail(
                    &cluster,
                    format!("{what}: the connection hangs (no answer, not closed)"),
                );
            }
        }
        let v = bystander.version::<MetadataRequest>();
        if let Err(e) = bystander.call(&MetadataRequest::default(), v) {
            fail(
                &cluster,
                format!("after {what}: another client's Metadata: {e}"),
            );
        }
        still_serving(&cluster, what);
    }
    // The huge counts reached the decoder and were refused there, with the reason logged.
    let log = cluster.brokers[0].log();
    for reason in [
        "cannot decode Metadata v0",
        "cannot decode Metadata v9: a length or count of 4294967295",
    ] {
        if !log.contains(reason) {
            fail(
                &cluster,
                format!("the broker's log does not say {reason:?}"),
            );
        }
    }
}

/// Sets a v2 batch's record count and last offset delta (consistently).
fn set_record_count(b: &mut [u8], count: i32) {
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
}

/// Makes a v2 batch's length field and CRC32C match its bytes again.
fn reseal(b: &mut [u8]) {
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_oversized_batches_are_refused() {
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(1), &[("crc", 1)]).await;
    create_topic(&cluster, "limit", 1, &[("max.message.bytes", "1024")]).await;
    let mut c = RawClient::negotiated(&cluster.kafka_addr(0));
    let (crc_id, _) = raw_wait_topic(&mut c, "crc", 1);
    let (limit_id, _) = raw_wait_topic(&mut c, "limit", 1);

    let good = record_batch(
        &[(Some(b"k1"), b"one"), (Some(b"k2"), b"two")],
        Compression::None,
        now_ms(),
    );
    // Corruptions of the good batch: what it is, how to make it, and the error it must get
    // (`None`: any error or a closed connection, after which the test reconnects).
    type Corrupt = fn(&mut Vec<u8>);
    let cases: [(&str, Corrupt, Option<i16>); 6] = [
        (
            // A flipped byte in the last record: the CRC no longer matches.
            "batch with a wrong CRC",
            |b| {
                let last = b.len() - 1;
                b[last] ^= 0x55;
            },
            Some(code::CORRUPT_MESSAGE),
        ),
        (
            "batch with a wrong CRC field",
            |b| b[17] ^= 0xff,
            Some(code::CORRUPT_MESSAGE),
        ),
        // Magic 1 in a v2 layout: not accepted (any error) and nothing stored.
        ("batch with magic 1 in v2 layout", |b| b[16] = 1, None),
        // A batch whose length field says more than there is.
        (
            "batch with a wrong length field",
            |b| b[8..12].copy_from_slice(&100_000i32.to_be_bytes()),
            None,
        ),
        // CRC-valid lies a hostile producer can tell: the record count (which would move the
        // log end by 2^31 offsets) and a header count (which a decoder would allocate for).
        (
            "CRC-valid batch claiming 2^31-1 records",
            |b| {
                set_record_count(b, i32::MAX);
                reseal(b);
            },
            Some(code::CORRUPT_MESSAGE),
        ),
        (
            "CRC-valid record claiming 2^31-1 headers",
            |b| {
                // One record: attributes, timestamp and offset deltas, no key, a 1-byte
                // value, then 2^31-1 headers (zigzag varints) and none present.
                let body = [0u8, 0, 0, 1, 2, b'v', 0xfe, 0xff, 0xff, 0xff, 0x0f];
                b.truncate(61);
                b.push((body.len() as u8) << 1);
                b.extend_from_slice(&body);
                set_record_count(b, 1);
                reseal(b);
            },
            Some(code::CORRUPT_MESSAGE),
        ),
    ];
    for (what, corrupt, want) in cases {
        let mut bad = good.to_vec();
        corrupt(&mut bad);
        let resp = raw_produce(&mut c, "crc", crc_id, 0, Bytes::from(bad));
        match want {
            Some(want) => {
                let resp = ok(&cluster, resp);
                assert_eq!(resp.error_code, want, "{what}: {resp:?}");
            }
            None => {
                if let Ok(r) = &resp {
                    assert_ne!(r.error_code, 0, "{what} was accepted");
                }
                c = RawClient::negotiated(&cluster.kafka_addr(0));
            }
        }
    }

    // Compressed batches are walked after a capped decompression: a CRC-valid count the
    // records do not match, and a gzip bomb (200 MiB of zeros in 200 KiB), are corrupt.
    let mut lying = record_batch(
        &[(Some(b"k1"), b"one"), (Some(b"k2"), b"two")],
        Compression::Zstd,
        now_ms(),
    )
    .to_vec();
    set_record_count(&mut lying, i32::MAX);
    reseal(&mut lying);
    let mut bomb = record_batch(&[(None, b"x")], Compression::Gzip, now_ms()).to_vec();
    bomb.truncate(61);
    let mut gz = flate2::write::GzEncoder::new(bomb, flate2::Compression::best());
    for _ in 0..200 {
        std::io::Write::write_all(&mut gz, &[0u8; 1 << 20]).expect("gzip");
    }
    let mut bomb = gz.finish().expect("gzip");
    reseal(&mut bomb);
    for (what, bad) in [
        ("zstd batch claiming 2^31-1 records", lying),
        ("gzip bomb", bomb),
    ] {
        let resp = ok(
            &cluster,
            raw_produce(&mut c, "crc", crc_id, 0, Bytes::from(bad)),
        );
        assert_eq!(resp.error_code, code::CORRUPT_MESSAGE, "{what}: {resp:?}");
    }

    // Nothing of it was stored: the good batch lands at offset 0.
    let resp = ok(
        &cluster,
        raw_produce(&mut c, "crc", crc_id, 0, good.clone()),
    );
    assert_eq!(
        (resp.error_code, resp.base_offset),
        (0, 0),
        "good batch after bad ones"
    );
    let records = read_from_start(&cluster, "crc", 0, 2);
    assert_eq!(
        records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        vec![Some(b"one".to_vec()), Some(b"two".to_vec())]
    );

    // Over max.message.bytes=1024.
    let big = record_batch(&[(None, &vec![7u8; 4000][..])], Compression::None, now_ms());
    let resp = ok(&cluster, raw_produce(&mut c, "limit", limit_id, 0, big));
    assert_eq!(
        resp.error_code,
        code::MESSAGE_TOO_LARGE,
        "4 KB batch to a topic with max.message.bytes=1024: {resp:?}"
    );
    let small = record_batch(&[(None, b"fits")], Compression::None, now_ms());
    let resp = ok(&cluster, raw_produce(&mut c, "limit", limit_id, 0, small));
    assert_eq!(
        (resp.error_code, resp.base_offset),
        (0, 0),
        "small batch after the big one"
    );
    still_serving(&cluster, "corrupt and oversized batches");
}

/// Pipelined requests are answered in order; an acks=0 produce gets no response at all
/// (the next response is the next request's) but its data is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_acks_zero() {
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(1), &[("pipe", 1)]).await;
    let mut c = RawClient::negotiated(&cluster.kafka_addr(0));
    let (topic_id, _) = raw_wait_topic(&mut c, "pipe", 1);
    let mv = c.version::<MetadataRequest>();
    let pv = c.version::<ProduceRequest>();

    // Five requests in one write: ApiVersions, Metadata, Produce(acks=1), Metadata,
    // ApiVersions; the answers come back in that order.
    let reqs: Vec<(i32, Vec<u8>)> = (0..5)
        .map(|i| {
            let id = 1000 + i;
            let f = match i {
                0 | 4 => RawClient::encode(&ApiVersionsRequest::default(), 0, id),
                1 | 3 => RawClient::encode(&MetadataRequest::default(), mv, id),
                _ => RawClient::encode(
                    &produce_request(
                        "pipe",
                        topic_id,
                        0,
                        record_batch(&[(None, b"pipelined")], Compression::None, now_ms()),
                        1,
                        pv,
                    ),
                    pv,
                    id,
                ),
            };
            (id, f)
        })
        .collect();
    let mut all = Vec::new();
    for (_, f) in &reqs {
        all.extend_from_slice(&(f.len() as i32).to_be_bytes());
        all.extend_from_slice(f);
    }
    c.write_raw(&all).unwrap();
    for (id, _) in &reqs {
        match c.outcome(*id, Duration::from_secs(20)) {
            Outcome::Response(_) => {}
            other => fail(
                &cluster,
                format!("pipelined request {id}: {other:?} (want its response, in order)"),
            ),
        }
    }

    // acks=0: no response; the ApiVersions sent after it is answered first.
    let id0 = c.next_correlation_id();
    let f = RawClient::encode(
        &produce_request(
            "pipe",
            topic_id,
            0,
            record_batch(&[(None, b"fire and forget")], Compression::None, now_ms()),
            0,
            pv,
        ),
        pv,
        id0,
    );
    c.write_frame(&f).unwrap();
    let id1 = c.next_correlation_id();
    c.write_frame(&RawClient::encode(&ApiVersionsRequest::default(), 0, id1))
        .unwrap();
    match c.outcome(id1, Duration::from_secs(20)) {
        Outcome::Response(_) => {}
        other => fail(
            &cluster,
            format!("after an acks=0 produce, the next response is {other:?}, want the ApiVersions answer (id {id1})"),
        ),
    }
    let records = read_from_start(&cluster, "pipe", 0, 2);
    assert_eq!(
        records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        vec![
            Some(b"pipelined".to_vec()),
            Some(b"fire and forget".to_vec())
        ],
        "records after the pipelined and the acks=0 produce"
    );
}

/// Fetch: from inside a batch it returns the whole batch; beyond the log end it answers
/// OFFSET_OUT_OF_RANGE; at the log end it waits and returns empty. ListOffsets -3 (max
/// timestamp), OffsetForLeaderEpoch and InitProducerId answer what Kafka does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_list_offsets_epochs_and_producer_ids() {
    let (_serial, cluster) =
        start_with_topics(Cluster::builder().brokers(1), &[("edges", 1)]).await;
    let mut c = RawClient::negotiated(&cluster.kafka_addr(0));
    let (topic_id, parts) = raw_wait_topic(&mut c, "edges", 1);
    assert!(
        parts[0].leader_epoch >= 0,
        "leader epoch in Metadata: {parts:?}"
    );
    assert!(
        !topic_id.is_nil() || c.version::<MetadataRequest>() < 10,
        "topic id in Metadata v10+"
    );

    // Three batches: 5 records (ts 1000..), 3 records (ts 9000..), 2 records (ts 5000..).
    let recs: Vec<(Option<&[u8]>, &[u8])> = vec![(None, b"r"); 5];
    for (n, ts, base) in [(5usize, 1000i64, 0i64), (3, 9000, 5), (2, 5000, 8)] {
        let resp = ok(
            &cluster,
            raw_produce(
                &mut c,
                "edges",
                topic_id,
                0,
                record_batch(&recs[..n], Compression::None, ts),
            ),
        );
        assert_eq!(
            (resp.error_code, resp.base_offset),
            (0, base),
            "produce of {n} records"
        );
    }

    // From inside the first batch: the whole batch, from base offset 0.
    let data = ok(&cluster, raw_fetch(&mut c, "edges", topic_id, 0, 2, 100));
    assert_eq!(data.error_code, 0, "fetch at offset 2: {data:?}");
    assert_eq!(data.high_watermark, 10, "high watermark");
    let headers = batch_headers(&data.records.clone().unwrap_or_default());
    assert_eq!(
        headers.first().map(|h| (h.0, h.1)),
        Some((0, 5)),
        "fetch at offset 2 must start with the whole batch 0..5: {headers:?}"
    );
    let data = ok(&cluster, raw_fetch(&mut c, "edges", topic_id, 0, 6, 100));
    let headers = batch_headers(&data.records.clone().unwrap_or_default());
    assert_eq!(
        headers.first().map(|h| h.0),
        Some(5),
        "fetch at 6 starts with the batch at 5"
    );

    let data = ok(&cluster, raw_fetch(&mut c, "edges", topic_id, 0, 1000, 100));
    assert_eq!(
        data.error_code,
        code::OFFSET_OUT_OF_RANGE,
        "fetch beyond the end: {data:?}"
    );
    let data = ok(&cluster, raw_fetch(&mut c, "edges", topic_id, 0, 10, 300));
    assert_eq!(data.error_code, 0, "fetch at the log end: {data:?}");
    assert!(
        batch_headers(&data.records.clone().unwrap_or_default()).is_empty(),
        "fetch at the log end returned batches"
    );

    // ListOffsets: earliest, latest, by timestamp (first at or after), max timestamp.
    for (ts, want) in [
        (-2i64, 0i64),
        (-1, 10),
        (0, 0),
        (1003, 3),
        (4999, 5),
        (5001, 5),
        (9002, 7),
        (9003, -1),
    ] {
        let r = ok(&cluster, raw_list_offsets(&mut c, "edges", 0, ts));
        assert_eq!(
            (r.error_code, r.offset),
            (0, want),
            "ListOffsets timestamp {ts}: {r:?}"
        );
    }
    let r = ok(&cluster, raw_list_offsets(&mut c, "edges", 0, -3));
    assert_eq!(
        (r.error_code, r.offset, r.timestamp),
        (0, 7, 9002),
        "ListOffsets max timestamp (-3): {r:?}"
    );

    // OffsetForLeaderEpoch at the current epoch: the log end.
    let v = c.version::<OffsetForLeaderEpochRequest>();
    let mut req =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name("edges"))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(parts[0].leader_epoch)
                .with_leader_epoch(parts[0].leader_epoch)])]);
    if v >= 3 {
        req = req.with_replica_id(BrokerId(-1));
    }
    let resp = ok(&cluster, c.call(&req, v));
    let e = &resp.topics[0].partitions[0];
    assert_eq!(
        (e.error_code, e.end_offset),
        (0, 10),
        "OffsetForLeaderEpoch v{v} at the current epoch: {e:?}"
    );

    // InitProducerId (not transactional): an id from PD, a new one each time.
    let v = c.version::<InitProducerIdRequest>();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        if v >= 3 {
            req = req
                .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                .with_producer_epoch(-1);
        }
        let resp = ok(&cluster, c.call(&req, v));
        assert_eq!(resp.error_code, 0, "InitProducerId v{v}: {resp:?}");
        assert!(resp.producer_id.0 >= 0, "producer id {resp:?}");
        ids.push(resp.producer_id.0);
    }
    assert_ne!(ids[0], ids[1], "two InitProducerId calls gave the same id");
}

/// One produce request's compressed batches may decompress to 256 MiB plus ten times its
/// bytes, together: three zstd batches of about 12 KB that each expand to 100 MiB (each
/// within the per-batch cap) overdraw it, so their partition is refused with
/// POLICY_VIOLATION and nothing of it is stored, while a batch within the budget is stored
/// and the broker goes on serving. Before, a request of many such batches was decompressed
/// whole on the broker's event loop, however long that took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_past_the_request_budget_are_refused() {
    let (_serial, cluster) =
        start_with_topics(Cluster::builder().brokers(1), &[("expanding", 1)]).await;
    let mut c = RawClient::negotiated(&cluster.kafka_addr(0));
    let (topic_id, _) = raw_wait_topic(&mut c, "expanding", 1);
    let zeros = vec![0u8; 100 << 20];
    let one = record_batch(&[(None, &zeros[..])], Compression::Zstd, now_ms());
    assert!(one.len() < 1 << 20, "a {} byte batch", one.len());
    // Within the budget: stored.
    let stored = ok(
        &cluster,
        raw_produce(&mut c, "expanding", topic_id, 0, one.clone()),
    );
    assert_eq!((stored.error_code, stored.base_offset), (0, 0));
    // Three together: over it.
    let mut three = Vec::new();
    for _ in 0..3 {
        three.extend_from_slice(&one);
    }
    let refused = ok(
        &cluster,
        raw_produce(&mut c, "expanding", topic_id, 0, Bytes::from(three)),
    );
    assert_eq!(refused.error_code, code::POLICY_VIOLATION, "{refused:?}");
    let data = ok(
        &cluster,
        raw_fetch(&mut c, "expanding", topic_id, 0, 0, 1 << 20),
    );
    assert_eq!(data.high_watermark, 1, "the refused batches were stored");
    let r = ok(&cluster, raw_list_offsets(&mut c, "expanding", 0, -1));
    assert_eq!((r.error_code, r.offset), (0, 1));
}
