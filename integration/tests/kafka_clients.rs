//! The Kafka broker seen by real clients (librdkafka through `rdkafka`, Debian's kcat, and
//! the Python clients): every test starts PD, three range servers and one or three
//! `strata-broker`s as real processes and asserts what a client user observes.
//!
//! Run: `cargo build --release --workspace --bins && cargo test --release -p integration
//! --test kafka_clients`. `STRATA_KEEP_TEST_DIRS=1` keeps each cluster's data and logs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use integration::kafka::{self, Delivery};
use integration::raw_kafka::*;
use integration::testing::*;
use integration::Cluster;
use kafka_protocol::messages::{DescribeClusterRequest, ProduceRequest};
use kafka_protocol::records::Compression;
use rdkafka::consumer::Consumer;
use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn check_deliveries(cluster: &Cluster, deliveries: &[Delivery], n: usize) {
    let errors: Vec<&Delivery> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    if !errors.is_empty() {
        fail(
            cluster,
            format!(
                "{} of {} messages failed delivery, first: {:?}",
                errors.len(),
                deliveries.len(),
                &errors[..errors.len().min(5)]
            ),
        );
    }
    if deliveries.len() != n {
        fail(
            cluster,
            format!("{} delivery reports for {n} messages", deliveries.len()),
        );
    }
}

/// 8 partitions, 100,000 keyed messages with acks=all, every partition read
/// from the beginning: every message exactly once, in order per partition, bytes equal.
/// Asserts that `r` holds `key` and `value`; `at` says which record, for the failure message
/// (values are compared without printing them: they are long).
fn assert_key_and_value(r: &kafka::Record, key: &[u8], value: &[u8], at: &str) {
    assert_eq!(r.key.as_deref(), Some(key), "key at {at}");
    assert!(r.value.as_deref() == Some(value), "value at {at} differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_messages_arrive_once_in_order_on_8_partitions() {
    let topic = "keyed";
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(3), &[(topic, 8)]).await;
    let bs = cluster.bootstrap();

    const N: usize = 100_000;
    let key = |i: usize| format!("key-{:05}", i % 5000).into_bytes();
    let value = |i: usize| value_for(1, i as u64, 20 + (i * 7919) % 300, false);
    // One request in flight per connection: without idempotence that is what keeps a
    // partition's messages in send order when librdkafka retries.
    let producer = kafka::producer(
        &bs,
        &[
            ("acks", "all"),
            ("linger.ms", "5"),
            ("max.in.flight.requests.per.connection", "1"),
        ],
    );
    for i in 0..N {
        let k = key(i);
        let v = value(i);
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(i))
                .key(&k[..])
                .payload(&v[..]),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(300));
    check_deliveries(&cluster, &deliveries, N);

    // Where each message landed; per partition the offsets must be 0..n without gaps, and
    // in the order the messages were sent.
    let mut at: BTreeMap<i32, BTreeMap<i64, usize>> = BTreeMap::new();
    for d in &deliveries {
        if let Some(prev) = at.entry(d.partition).or_default().insert(d.offset, d.id) {
            fail(
                &cluster,
                format!(
                    "messages {prev} and {} both acknowledged at {}/{}",
                    d.id, d.partition, d.offset
                ),
            );
        }
    }
    assert_eq!(
        at.keys().copied().collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>(),
        "the default partitioner should have used all 8 partitions"
    );
    for (p, offsets) in &at {
        let n = offsets.len() as i64;
        if offsets.keys().next() != Some(&0) || offsets.keys().last() != Some(&(n - 1)) {
            fail(
                &cluster,
                format!(
                    "partition {p}: {n} messages acknowledged at offsets {:?}..={:?}, want 0..{n}",
                    offsets.keys().next(),
                    offsets.keys().last()
                ),
            );
        }
        let ids: Vec<usize> = offsets.values().copied().collect();
        if let Some(w) = ids.windows(2).find(|w| w[0] > w[1]) {
            fail(
                &cluster,
                format!(
                    "partition {p}: message {} was acknowledged at a lower offset than the earlier-sent {}",
                    w[1], w[0]
                ),
            );
        }
    }

    let consumer = kafka::consumer(&bs, &[]);
    let from: BTreeMap<i32, Offset> = (0..8).map(|p| (p, Offset::Beginning)).collect();
    let until: BTreeMap<i32, i64> = at.iter().map(|(p, o)| (*p, o.len() as i64)).collect();
    let read = ok(
        &cluster,
        kafka::read_partitions(&consumer, topic, &from, &until, Duration::from_secs(300)),
    );
    for (p, records) in &read {
        let expected = &at[p];
        assert_eq!(
            records.len(),
            expected.len(),
            "partition {p}: read {} records, {} were acknowledged",
            records.len(),
            expected.len()
        );
        for (i, r) in records.iter().enumerate() {
            assert_eq!(
                r.offset, i as i64,
                "partition {p}: record #{i} read has offset {}",
                r.offset
            );
            let id = expected[&r.offset];
            let at = format!("{p}/{} (message {id} was sent there)", r.offset);
            assert_key_and_value(r, &key(id), &value(id), &at);
        }
    }
    // Nothing beyond what was acknowledged.
    for (p, offsets) in &at {
        let (low, high) = ok(&cluster, kafka::watermarks(&bs, topic, *p));
        assert_eq!(
            (low, high),
            (0, offsets.len() as i64),
            "partition {p} watermarks"
        );
    }
}

/// gzip, snappy, lz4 and zstd batches round-trip through produce and fetch,
/// and the broker stores them as sent (the fetched batch carries the producer's codec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    let _serial = serial().await;
    let cluster = Cluster::builder().brokers(1).start().await;
    let bs = cluster.bootstrap();
    for (codec, id) in [("gzip", 1i16), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let topic = format!("codec-{codec}");
        create_topic(&cluster, &topic, 1, &[]).await;
        let producer = kafka::producer(
            &bs,
            &[
                ("acks", "all"),
                ("compression.type", codec),
                ("linger.ms", "20"),
            ],
        );
        const N: usize = 2000;
        let value = |i: usize| value_for(2, i as u64, 50 + i % 700, !i.is_multiple_of(3));
        for i in 0..N {
            let k = format!("{codec}-{i}");
            let v = value(i);
            kafka::send(
                &producer,
                BaseRecord::with_opaque_to(&topic, Box::new(i))
                    .partition(0)
                    .key(k.as_bytes())
                    .payload(&v[..]),
            );
        }
        let deliveries = kafka::flush(&producer, Duration::from_secs(120));
        check_deliveries(&cluster, &deliveries, N);
        let records = ok(
            &cluster,
            kafka::read_partition(
                &bs,
                &topic,
                0,
                Offset::Beginning,
                N as i64,
                Duration::from_secs(120),
            ),
        );
        assert_eq!(records.len(), N, "{codec}: records read");
        let by_offset: HashMap<i64, usize> = deliveries.iter().map(|d| (d.offset, d.id)).collect();
        for r in &records {
            let id = by_offset[&r.offset];
            let at = format!("{codec}, offset {}", r.offset);
            assert_key_and_value(r, format!("{codec}-{id}").as_bytes(), &value(id), &at);
        }
        // Stored as sent: the fetched batches carry the codec. (librdkafka sends a batch
        // uncompressed when compressing does not make it smaller, so some may be plain.)
        let mut raw = RawClient::negotiated(&cluster.kafka_addr(0));
        let (topic_id, _) = raw_wait_topic(&mut raw, &topic, 1);
        let mut offset = 0;
        let mut codecs = BTreeMap::new();
        let mut batches = 0;
        while offset < N as i64 {
            let data = ok(
                &cluster,
                raw_fetch(&mut raw, &topic, topic_id, 0, offset, 1000),
            );
            assert_eq!(data.error_code, 0, "{codec}: raw fetch at {offset}");
            let headers = batch_headers(&data.records.unwrap_or_default());
            assert!(
                !headers.is_empty(),
                "{codec}: raw fetch at {offset} returned no batch"
            );
            for (base, count, attrs) in headers {
                if base + count as i64 <= offset {
                    continue;
                }
                *codecs.entry(attrs & 7).or_insert(0) += 1;
                batches += 1;
                offset = base + count as i64;
            }
        }
        // The same codec in a batch made here: fetched back byte for byte (from the magic
        // byte on; the base offset and partition leader epoch are the broker's).
        let sent = record_batch(
            &[
                (Some(b"raw-1"), &value(1)[..]),
                (Some(b"raw-2"), &value(2)[..]),
            ],
            [
                Compression::None,
                Compression::Gzip,
                Compression::Snappy,
                Compression::Lz4,
                Compression::Zstd,
            ][id as usize],
            now_ms(),
        );
        let resp = ok(
            &cluster,
            raw_produce(&mut raw, &topic, topic_id, 0, sent.clone()),
        );
        assert_eq!(
            (resp.error_code, resp.base_offset),
            (0, N as i64),
            "{codec}: raw produce of a {codec} batch"
        );
        let data = ok(
            &cluster,
            raw_fetch(&mut raw, &topic, topic_id, 0, N as i64, 1000),
        );
        let got = data.records.unwrap_or_default();
        assert!(
            got.len() >= sent.len() && got[16..sent.len()] == sent[16..],
            "{codec}: the raw {codec} batch is not fetched back as sent (headers sent {:?}, fetched {:?})",
            batch_headers(&sent),
            batch_headers(&got)
        );
        let hint = if codec == "lz4" && !codecs.contains_key(&id) {
            "; librdkafka compresses with lz4 only when the broker advertises FindCoordinator \
             (API key 10) in ApiVersions (RD_KAFKA_FEATURE_LZ4 in rdkafka_feature.c), else it \
             silently sends lz4 batches uncompressed"
        } else {
            ""
        };
        assert!(
            codecs.get(&id).copied().unwrap_or(0) > 0 && codecs.keys().all(|c| *c == id || *c == 0),
            "{codec}: librdkafka's batches as fetched, by compression bits: {codecs:?}, want {id} (and maybe 0){hint}"
        );
        assert!(
            batches < N,
            "{codec}: librdkafka batched several records per batch, yet {batches} batches for {N} records"
        );
    }
}

/// ListOffsets by timestamp answers the first offset whose timestamp is at or
/// after the one asked (explicit CreateTime timestamps, several records per batch), and
/// still does after every broker was restarted with an empty data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_survive_brokers_losing_their_disks() {
    let _serial = serial().await;
    let mut cluster = Cluster::builder().brokers(3).start().await;
    let bs = cluster.bootstrap();
    let topic = "times";
    create_topic(&cluster, topic, 2, &[]).await;

    // Partition 0: ts(k) = base + 1000 k; partition 1: ts(k) = base + 1000 k + 500.
    // Five groups of 20, flushed per group, so batches hold many records each.
    let base = now_ms() - 3_600_000;
    const N: i64 = 100;
    let ts = |p: i32, k: i64| base + 1000 * k + if p == 1 { 500 } else { 0 };
    let producer = kafka::producer(&bs, &[("acks", "all"), ("linger.ms", "50")]);
    let mut deliveries = Vec::new();
    for group in 0..5 {
        for k in group * 20..group * 20 + 20i64 {
            for p in 0..2 {
                let v = format!("p{p}-k{k}");
                kafka::send(
                    &producer,
                    BaseRecord::with_opaque_to(topic, Box::new((p as i64 * 1000 + k) as usize))
                        .partition(p)
                        .timestamp(ts(p, k))
                        .payload(v.as_bytes()),
                );
            }
        }
        deliveries.extend(kafka::flush(&producer, Duration::from_secs(60)));
    }
    check_deliveries(&cluster, &deliveries, 2 * N as usize);
    for d in &deliveries {
        let (p, k) = ((d.id / 1000) as i32, (d.id % 1000) as i64);
        assert_eq!(
            (d.partition, d.offset),
            (p, k),
            "message {k} to partition {p}"
        );
    }

    let check = |cluster: &Cluster, when: &str| {
        let consumer = kafka::consumer(&bs, &[]);
        // (timestamp asked, expected offset per partition; -1 = none at or after)
        let mut queries: Vec<(i64, [i64; 2])> = vec![
            (base - 86_400_000, [0, 0]),
            (base, [0, 0]),
            (ts(1, N - 1) + 1, [-1, -1]),
            (ts(0, N - 1) + 1, [-1, N - 1]),
        ];
        for k in [0i64, 1, 7, 19, 20, 21, 39, 40, 55, 80, 98, 99] {
            // exactly ts0(k): p0 -> k; p1's ts(k-1) = ts0(k) - 500 < it -> k
            queries.push((ts(0, k), [k, k]));
            // 300 ms before ts0(k): p0 -> k; p1: ts1(k-1) = ts0(k) - 500 < it -> k
            queries.push((ts(0, k) - 300, [k, k]));
            // 1 ms after ts0(k): p0 -> k+1; p1 -> k (ts1(k) = ts0(k) + 500)
            queries.push((ts(0, k) + 1, [if k + 1 < N { k + 1 } else { -1 }, k]));
        }
        for (t, want) in queries {
            let mut tpl = TopicPartitionList::new();
            for p in 0..2 {
                tpl.add_partition_offset(topic, p, Offset::Offset(t))
                    .expect("tpl");
            }
            let got = match consumer.offsets_for_times(tpl, Duration::from_secs(15)) {
                Ok(got) => got,
                Err(e) => fail(
                    cluster,
                    format!("{when}: offsets_for_times({t}) failed: {e}"),
                ),
            };
            for p in 0..2 {
                let e = got.find_partition(topic, p).expect("partition in answer");
                if let Err(err) = e.error() {
                    fail(
                        cluster,
                        format!("{when}: offsets_for_times({t}) partition {p}: {err}"),
                    );
                }
                let off = match e.offset() {
                    Offset::Offset(o) => o,
                    Offset::End => -1,
                    other => fail(
                        cluster,
                        format!("{when}: offsets_for_times({t}) partition {p} answered {other:?}"),
                    ),
                };
                assert_eq!(
                    off,
                    want[p as usize],
                    "{when}: first offset of partition {p} at or after timestamp {t} (base+{})",
                    t - base
                );
            }
        }
        // The records and their timestamps read back as written.
        for p in 0..2 {
            let records = match kafka::read_partition(
                &bs,
                topic,
                p,
                Offset::Beginning,
                N,
                Duration::from_secs(60),
            ) {
                Ok(r) => r,
                Err(e) => fail(cluster, format!("{when}: {e}")),
            };
            assert_eq!(
                records.len(),
                N as usize,
                "{when}: records of partition {p}"
            );
            for r in records {
                assert_eq!(
                    r.timestamp,
                    ("create".to_string(), ts(p, r.offset)),
                    "{when}: timestamp at {p}/{}",
                    r.offset
                );
                assert_eq!(
                    r.value.as_deref(),
                    Some(format!("p{p}-k{}", r.offset).as_bytes()),
                    "{when}: value at {p}/{}",
                    r.offset
                );
            }
        }
    };
    check(&cluster, "before restart");
    cluster.restart_all_brokers_wiped().await;
    ok(
        &cluster,
        kafka::wait_for_leaders(&bs, topic, 2, Duration::from_secs(60)),
    );
    check(
        &cluster,
        "after every broker restarted with an empty data dir",
    );
}

/// A consumer that seeks to offsets anywhere in a partition (as a binary search by timestamp
/// does) gets the record at each offset in its first fetch: from the tail cache, and after
/// the broker restarted with an empty cache, from the range servers. The consumers' fetch wait
/// (30 s) is far longer than the 10 s a seek may take here, so a fetch that came back empty
/// and waited would fail the seek.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeks_anywhere_in_a_partition_get_their_record_at_once() {
    let (_serial, mut cluster) =
        start_with_topics(Cluster::builder().brokers(1), &[("seek", 1)]).await;
    let bs = cluster.bootstrap();
    const N: i64 = 1000;
    let sent = {
        let bs = bs.clone();
        blocking(move || {
            let producer = kafka::producer(&bs, &[("acks", "all"), ("linger.ms", "0")]);
            let mut deliveries = Vec::new();
            for i in 0..N {
                let v = format!("record {i}");
                kafka::send(
                    &producer,
                    BaseRecord::with_opaque_to("seek", Box::new(i as usize)).payload(v.as_bytes()),
                );
                // Batches of one to a few records.
                if i % 7 == 0 {
                    deliveries.extend(kafka::flush(&producer, Duration::from_secs(30)));
                }
            }
            deliveries.extend(kafka::flush(&producer, Duration::from_secs(30)));
            deliveries
        })
        .await
    };
    check_deliveries(&cluster, &sent, N as usize);
    let seeks = |cluster: &Cluster, when: &str| {
        for at in [500i64, 3, 999, 250, 751, 0, 612, 613, 1, 998, 333] {
            // A consumer of its own per seek: one that already read to the end has a fetch
            // parked at the high watermark, and librdkafka sends the next only after it.
            let consumer = kafka::consumer(&bs, &[("fetch.wait.max.ms", "30000")]);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("seek", 0, Offset::Offset(at))
                .expect("tpl");
            consumer.assign(&tpl).expect("assign");
            let first = match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(m)) => kafka::Record::from_message(&m),
                Some(Err(e)) => fail(cluster, format!("{when}: seek to {at}: {e}")),
                None => fail(
                    cluster,
                    format!("{when}: seek to {at}: nothing within 10 s"),
                ),
            };
            assert_eq!(
                first.offset, at,
                "{when}: first record after a seek to {at}"
            );
            assert_eq!(
                first.value.as_deref(),
                Some(format!("record {at}").as_bytes()),
                "{when}: value at {at}"
            );
        }
    };
    seeks(&cluster, "from the tail cache");
    cluster.restart_broker_wiped(0).await;
    ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "seek", 1, Duration::from_secs(60)),
    );
    seeks(&cluster, "after a restart, from the range servers");
}

/// Three brokers share the partitions (balanced by count), clients find every
/// leader through Metadata, every broker tells the same leaders, and a produce or fetch sent
/// to a broker that does not lead the partition gets NOT_LEADER_OR_FOLLOWER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_over_three_brokers_and_wrong_broker_is_refused() {
    let _serial = serial().await;
    let cluster = Cluster::builder().brokers(3).start().await;
    let bs = cluster.bootstrap();
    let topic = "spread";
    const P: i32 = 12;
    create_topic(&cluster, topic, P, &[]).await;

    let addrs: BTreeSet<String> = (0..3).map(|i| cluster.kafka_addr(i)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let leaders = loop {
        let leaders = ok(
            &cluster,
            kafka::wait_for_leaders(&bs, topic, P as usize, Duration::from_secs(60)),
        );
        let mut per: BTreeMap<String, usize> = addrs.iter().map(|a| (a.clone(), 0)).collect();
        for l in &leaders {
            *per.entry(l.addr.clone()).or_default() += 1;
        }
        let balanced = per.len() == 3 && per.values().all(|n| *n == (P / 3) as usize);
        if balanced {
            break leaders;
        }
        if std::time::Instant::now() > deadline {
            fail(
                &cluster,
                format!(
                    "leaders per broker address {per:?} (want 4 each on {addrs:?}): {leaders:?}"
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // Every broker gives the same answer.
    for i in 0..3 {
        let l = ok(
            &cluster,
            kafka::wait_for_leaders(
                &cluster.kafka_addr(i),
                topic,
                P as usize,
                Duration::from_secs(30),
            ),
        );
        assert_eq!(l, leaders, "leaders per broker-{}", i + 1);
    }

    // The client finds every leader: one message to each partition, all read back.
    let producer = kafka::producer(&bs, &[("acks", "all")]);
    for p in 0..P {
        let v = format!("to partition {p}");
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(p as usize))
                .partition(p)
                .payload(v.as_bytes()),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(60));
    check_deliveries(&cluster, &deliveries, P as usize);
    let consumer = kafka::consumer(&bs, &[]);
    let from: BTreeMap<i32, Offset> = (0..P).map(|p| (p, Offset::Beginning)).collect();
    let until: BTreeMap<i32, i64> = (0..P).map(|p| (p, 1)).collect();
    let read = ok(
        &cluster,
        kafka::read_partitions(&consumer, topic, &from, &until, Duration::from_secs(60)),
    );
    for p in 0..P {
        assert_eq!(
            read[&p].iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
            vec![Some(format!("to partition {p}").into_bytes())],
            "partition {p}"
        );
    }

    // Raw requests to a broker that does not lead partition 0.
    let leader_addr = leaders[0].addr.clone();
    let other = addrs.iter().find(|a| **a != leader_addr).unwrap().clone();
    let mut wrong = RawClient::negotiated(&other);
    let (topic_id, _) = raw_wait_topic(&mut wrong, topic, P as usize);
    let batch = record_batch(
        &[(Some(b"k"), b"to the wrong broker")],
        Compression::None,
        now_ms(),
    );
    let resp = ok(
        &cluster,
        raw_produce(&mut wrong, topic, topic_id, 0, batch.clone()),
    );
    assert_eq!(
        resp.error_code,
        code::NOT_LEADER_OR_FOLLOWER,
        "Produce v{} for {topic}/0 to {other} (the leader is {leader_addr}): {resp:?}",
        wrong.version::<ProduceRequest>()
    );
    let data = ok(&cluster, raw_fetch(&mut wrong, topic, topic_id, 0, 0, 100));
    assert_eq!(
        data.error_code,
        code::NOT_LEADER_OR_FOLLOWER,
        "Fetch {topic}/0 from {other} (the leader is {leader_addr})"
    );
    // The same batch to the leader is accepted, after the message produced above.
    let mut right = RawClient::negotiated(&leader_addr);
    let resp = ok(&cluster, raw_produce(&mut right, topic, topic_id, 0, batch));
    assert_eq!(
        (resp.error_code, resp.base_offset),
        (0, 1),
        "Produce to the leader: {resp:?}"
    );

    // DescribeCluster lists the three brokers at their addresses.
    let v = right.version::<DescribeClusterRequest>();
    let dc = ok(&cluster, right.call(&DescribeClusterRequest::default(), v));
    assert_eq!(dc.error_code, 0, "DescribeCluster v{v}: {dc:?}");
    let listed: BTreeSet<String> = dc
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect();
    assert_eq!(listed, addrs, "DescribeCluster brokers");
    assert!(!dc.cluster_id.is_empty(), "DescribeCluster cluster id");
    assert!(
        dc.brokers.iter().any(|b| b.broker_id == dc.controller_id),
        "DescribeCluster controller {:?} is one of the brokers",
        dc.controller_id
    );
}

/// Debian's kcat (librdkafka 2.0.2) lists metadata, produces and consumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_kcat_lists_produces_and_consumes() {
    require_command("kcat", "apt-get install kcat");
    let topic = "kcat-topic";
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(3), &[(topic, 2)]).await;
    let bs = cluster.bootstrap();

    let kcat = |args: &[&str], stdin: Option<&str>| -> (bool, String, String) {
        use std::io::Write;
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("60")
            .arg("kcat")
            .arg("-b")
            .arg(&bs)
            .arg("-X")
            .arg("broker.address.family=v4")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run kcat");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).expect("kcat stdin");
            }
        }
        let out = child.wait_with_output().expect("kcat output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let (okay, out, err) = kcat(&["-L"], None);
    if !okay
        || !out.contains(" 3 brokers:")
        || !out.contains(&format!("topic \"{topic}\" with 2 partitions:"))
    {
        fail(
            &cluster,
            format!("kcat -L: success={okay}\nstdout:\n{out}\nstderr:\n{err}"),
        );
    }
    for i in 0..3 {
        assert!(
            out.contains(&format!(" at {}", cluster.kafka_addr(i))),
            "kcat -L lists broker-{} at {}:\n{out}",
            i + 1,
            cluster.kafka_addr(i)
        );
    }

    let mut lines0 = String::new();
    let mut lines1 = String::new();
    for i in 0..50 {
        lines0.push_str(&format!("k{i}:zero {i}\n"));
        lines1.push_str(&format!("k{i}:one {i}\n"));
    }
    for (p, lines) in [("0", &lines0), ("1", &lines1)] {
        let (okay, out, err) = kcat(&["-P", "-t", topic, "-p", p, "-K", ":"], Some(lines));
        if !okay {
            fail(
                &cluster,
                format!("kcat -P -p {p}: stdout:\n{out}\nstderr:\n{err}"),
            );
        }
    }

    let (okay, out, err) = kcat(
        &[
            "-C",
            "-t",
            topic,
            "-p",
            "0",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k:%s@%o\\n",
        ],
        None,
    );
    let want: String = (0..50).map(|i| format!("k{i}:zero {i}@{i}\n")).collect();
    if !okay || out != want {
        fail(
            &cluster,
            format!("kcat -C -p 0: success={okay}\nstdout:\n{out}\nwant:\n{want}\nstderr:\n{err}"),
        );
    }
    // All partitions (kcat assigns them all itself: no consumer group).
    let (okay, out, err) = kcat(&["-C", "-t", topic, "-e", "-o", "beginning"], None);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..50)
        .flat_map(|i| [format!("zero {i}"), format!("one {i}")])
        .collect();
    want.sort();
    if !okay || got != want {
        fail(
            &cluster,
            format!("kcat -C (all partitions): success={okay}\nstdout:\n{out}\nstderr:\n{err}"),
        );
    }
}

/// The Python clients (kafka-python and confluent-kafka from PyPI) create a topic, produce
/// and consume: `integration/python/clients_test.py` against a three-broker cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_produce_and_consume() {
    require_python_modules("kafka, confluent_kafka", "the Python clients are");
    let _serial = serial().await;
    let cluster = Cluster::builder().brokers(3).start().await;
    run_python_test(&cluster, "clients_test.py");
}

/// Brokers are stateless: after 8 MiB were produced and read back, no file in a broker's
/// data dir grew with the data (only the address files and the process log are there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_data_dirs_hold_no_partition_data() {
    let topic = "stateless";
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(2), &[(topic, 4)]).await;
    let bs = cluster.bootstrap();
    let before: Vec<HashMap<std::path::PathBuf, u64>> = cluster
        .brokers
        .iter()
        .map(|b| b.files().into_iter().collect())
        .collect();

    const N: usize = 8192;
    let producer = kafka::producer(&bs, &[("acks", "all"), ("linger.ms", "5")]);
    for i in 0..N {
        let v = value_for(3, i as u64, 1024, false);
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(i))
                .partition((i % 4) as i32)
                .payload(&v[..]),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(300));
    check_deliveries(&cluster, &deliveries, N);
    let consumer = kafka::consumer(&bs, &[]);
    let from: BTreeMap<i32, Offset> = (0..4).map(|p| (p, Offset::Beginning)).collect();
    let until: BTreeMap<i32, i64> = (0..4).map(|p| (p, (N / 4) as i64)).collect();
    ok(
        &cluster,
        kafka::read_partitions(&consumer, topic, &from, &until, Duration::from_secs(300)),
    );

    for (b, before) in cluster.brokers.iter().zip(&before) {
        let files = b.files();
        let mut total = 0;
        for (path, size) in &files {
            if path.as_os_str() == "process.log" {
                continue;
            }
            total += size;
            let grew = size.saturating_sub(before.get(path).copied().unwrap_or(0));
            assert!(
                grew < 64 << 10,
                "{}: {} grew by {grew} bytes while 8 MiB were produced; files: {files:?}",
                b.name,
                path.display()
            );
        }
        assert!(
            total < 1 << 20,
            "{}: {total} bytes in files other than process.log: {files:?}",
            b.name
        );
    }
}

/// `kafka-bench` runs against the cluster and prints its summary line last (figures are
/// not judged here: benchmarks are not tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bench_prints_its_summary() {
    let _serial = serial().await;
    let cluster = Cluster::builder().brokers(2).start().await;
    let bench = integration::bin_dir().join("kafka-bench");
    let out = std::process::Command::new("timeout")
        .arg("180")
        .arg(&bench)
        .args(["--bootstrap", &cluster.bootstrap()])
        .args(["--duration-secs", "2", "--partitions", "4", "--rate", "2"])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bench.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        fail(
            &cluster,
            format!(
                "kafka-bench failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status
            ),
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    let fields: HashMap<&str, f64> = last
        .strip_prefix("produce ")
        .unwrap_or_else(|| panic!("last line of kafka-bench: {last:?}\n{stdout}"))
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse::<f64>().unwrap_or(f64::NAN)))
        .collect();
    for key in ["MB/s", "p50_ms", "p99_ms", "e2e_p99_ms"] {
        let v = fields.get(key).copied().unwrap_or(f64::NAN);
        assert!(
            v.is_finite() && v >= 0.0,
            "kafka-bench summary field {key} = {v} in {last:?}:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        stdout.contains("failed 0"),
        "kafka-bench reported failed deliveries:\n{stdout}"
    );
}
