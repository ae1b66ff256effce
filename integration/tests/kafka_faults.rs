//! Kafka produce through storage faults: a range server that stalls (SIGSTOP) and one that
//! dies (SIGKILL) while librdkafka produces with acks=all and no client retries. Whatever
//! the stream writer does underneath (sealing, new ranges, re-sending unconfirmed appends),
//! every acknowledged record is read back at the offset it was acknowledged at, and no
//! record is stored twice (without client retries, a duplicate can only be the broker's).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use integration::kafka;
use integration::testing::*;
use integration::Cluster;
use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::Offset;

fn producer_poll(p: &kafka::TestProducer, t: Duration) {
    let deadline = std::time::Instant::now() + t;
    while std::time::Instant::now() < deadline {
        p.poll(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_stored_once_through_range_server_faults() {
    let _serial = serial().await;
    let mut cluster = Cluster::builder().range_servers(4).brokers(1).start().await;
    produce_and_verify(&mut cluster, "faults", 60_000, true, Fault::RangeServers).await;
}

/// A broker stalls (SIGSTOP) past its lease at PD, so its partitions move to the other
/// brokers while it holds produce requests; then it wakes up, fenced. No record may end up
/// stored twice, and acknowledged ones stay where they were acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_stored_once_when_a_broker_stalls_past_its_lease() {
    let _serial = serial().await;
    let mut cluster = Cluster::builder().range_servers(3).brokers(3).start().await;
    produce_and_verify(&mut cluster, "stall", 60_000, true, Fault::Broker).await;
}

/// The placement driver is killed (SIGKILL) at a third of the load and started again with
/// its data at two thirds: produce goes on without it (appends need no PD), and nothing
/// acknowledged is lost or stored twice across the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_stored_once_through_a_pd_restart() {
    let _serial = serial().await;
    let mut cluster = Cluster::builder().range_servers(3).brokers(3).start().await;
    produce_and_verify(&mut cluster, "pd-restart", 60_000, true, Fault::Pd).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// PD is killed at a third and restarted at two thirds.
    Pd,
    /// range-server-1 stalls 3 s at a third, range-server-2 is killed at two thirds.
    RangeServers,
    /// broker-1 stalls 8 s at a third (PD's lease in the harness is 3 s).
    Broker,
}

/// Unpaced load (as kafka-bench makes, 3 brokers, 16 partitions) saturates the machine; the
/// stream writers then see replica timeouts and move ranges. Still every acknowledged record
/// is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_stored_once_under_overload() {
    let _serial = serial().await;
    let mut cluster = Cluster::builder().range_servers(3).brokers(3).start().await;
    // STRATA_OVERLOAD_RECORDS makes it heavier (kafka-bench showed duplicates at ~1.2M).
    let n = std::env::var("STRATA_OVERLOAD_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    produce_and_verify(&mut cluster, "overload", n, false, Fault::None).await;
}

/// Produces `n` 1 KiB records (acks=all, client retries off) round-robin over the topic's
/// partitions, optionally paced and with a stalled and a killed range server on the way;
/// then reads everything back and checks each acknowledged record is where it was
/// acknowledged and no record is stored twice.
async fn produce_and_verify(
    cluster: &mut Cluster,
    topic: &str,
    n: usize,
    paced: bool,
    fault: Fault,
) {
    let bs = cluster.bootstrap();
    let partitions: i32 = match fault {
        Fault::RangeServers => 4,
        Fault::Broker | Fault::Pd => 6,
        Fault::None => 16,
    };
    if let Err(e) = kafka::create_topic(&bs, topic, partitions, &[]).await {
        fail(cluster, e);
    }
    let producer = kafka::producer(
        &bs,
        &[
            ("acks", "all"),
            ("linger.ms", "5"),
            ("retries", "0"),
            ("message.timeout.ms", "120000"),
            ("queue.buffering.max.kbytes", "1048576"),
            ("queue.buffering.max.messages", "1000000"),
        ],
    );
    let value = |i: usize| {
        let mut v = (i as u64).to_be_bytes().to_vec();
        v.extend(value_for(7, i as u64, 1016, false));
        v
    };
    let mut resume = None;
    for i in 0..n {
        if fault == Fault::Pd && i == n / 3 {
            cluster.pd.kill();
        }
        if fault == Fault::Pd && i == 2 * n / 3 {
            cluster.pd.start();
        }
        if matches!(fault, Fault::RangeServers | Fault::Broker) && i == n / 3 {
            // Stall a process (SIGSTOP), then let it go on.
            let (pid, secs) = if fault == Fault::Broker {
                (cluster.broker(0).pid().expect("broker-1 runs"), 8)
            } else {
                (
                    cluster.range_server(0).pid().expect("range-server-1 runs"),
                    3,
                )
            };
            let pid = pid as i32;
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            resume = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(secs));
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }));
        }
        if fault == Fault::RangeServers && i == 2 * n / 3 {
            cluster.range_server(1).kill();
        }
        if paced && i % 1000 == 999 {
            // About 20k records/s, so that the faults hit appends in flight.
            producer_poll(&producer, Duration::from_millis(50));
        }
        let v = value(i);
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(i))
                .partition((i % partitions as usize) as i32)
                .payload(&v[..]),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(600));
    if let Some(t) = resume {
        let _ = t.join();
    }
    assert_eq!(deliveries.len(), n, "delivery reports");
    let acked: HashMap<(i32, i64), usize> = deliveries
        .iter()
        .filter(|d| d.error.is_none())
        .map(|d| ((d.partition, d.offset), d.id))
        .collect();
    let failed = deliveries.iter().filter(|d| d.error.is_some()).count();
    // Which partitions failed, and how: (partition, error) -> records.
    let mut failures: BTreeMap<(i32, &str), usize> = BTreeMap::new();
    for d in &deliveries {
        if let Some(e) = &d.error {
            *failures.entry((d.partition, e.as_str())).or_default() += 1;
        }
    }
    eprintln!(
        "{topic}: {} acknowledged, {failed} failed (allowed: the client was told): {failures:?}",
        acked.len()
    );
    assert!(
        acked.len() > n / 2,
        "most records should be acknowledged: {} of {n}; first error {:?}",
        acked.len(),
        deliveries.iter().find(|d| d.error.is_some())
    );

    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        match kafka::watermarks(&bs, topic, p) {
            Ok((_, high)) => {
                ends.insert(p, high);
            }
            Err(e) => fail(cluster, e),
        }
    }
    let consumer = kafka::consumer(&bs, &[]);
    let from: BTreeMap<i32, Offset> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    let read =
        match kafka::read_partitions(&consumer, topic, &from, &ends, Duration::from_secs(600)) {
            Ok(r) => r,
            Err(e) => fail(cluster, e),
        };
    let mut seen: HashMap<usize, (i32, i64)> = HashMap::new();
    let mut duplicates = Vec::new();
    for (p, records) in &read {
        for r in records {
            let bytes = r.value.clone().unwrap_or_default();
            let id = u64::from_be_bytes(bytes[..8].try_into().expect("id")) as usize;
            assert!(bytes == value(id), "record at {p}/{} is corrupt", r.offset);
            if let Some(first) = seen.insert(id, (*p, r.offset)) {
                duplicates.push((id, first, (*p, r.offset)));
            }
        }
    }
    let total: i64 = ends.values().sum();
    if !duplicates.is_empty() {
        fail(
            cluster,
            format!(
                "{topic}: {} records are stored twice (log holds {total} records for {} acknowledged, {failed} failed, client retries off); first (id, first at, again at): {:?}",
                duplicates.len(),
                acked.len(),
                &duplicates[..duplicates.len().min(5)]
            ),
        );
    }
    let mut misplaced = Vec::new();
    for ((p, o), id) in &acked {
        match seen.get(id) {
            Some(at) if at == &(*p, *o) => {}
            other => misplaced.push((*id, (*p, *o), other.copied())),
        }
    }
    if !misplaced.is_empty() {
        fail(
            cluster,
            format!(
                "{topic}: {} acknowledged records are not read where they were acknowledged; first (id, acknowledged at, read at): {:?}",
                misplaced.len(),
                &misplaced[..misplaced.len().min(5)]
            ),
        );
    }
}

/// An idempotent producer (client retries on) sends while its partitions move: broker-1 is
/// killed (its partitions go to broker-2 once its lease lapses; appends it confirmed but did
/// not answer are retried there) and started again (partitions move back, gracefully: the
/// stopping owner answers what it confirmed). Every record is stored exactly once, where it
/// was acknowledged. Before, the new owner knew nothing of the producer and stored retries
/// again (a broker restart left 325 records for 300 sends); here the duplicates need a
/// confirmed but unanswered batch at the moment of a move, which this run may not hit, so
/// the raw test below is the one that fails on that code every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_is_stored_once_across_partition_moves() {
    let (_serial, mut cluster) =
        start_with_topics(Cluster::builder().range_servers(3).brokers(2), &[]).await;
    let topic = "idempotent-moves";
    let partitions = 4;
    create_topic(&cluster, topic, partitions, &[]).await;
    let bs = cluster.bootstrap();
    let producer = kafka::idempotent_producer(&bs);
    // About 5k records/s for about 15 s: broker-1 dies at 3 s, and comes back at 9 s, after
    // its lease (3 s) lapsed and its partitions moved to broker-2; then some move back.
    let n = 75_000usize;
    for i in 0..n {
        if i == n / 5 {
            cluster.broker(0).kill();
            assert!(!cluster.broker(0).is_running());
        }
        if i == 3 * n / 5 {
            cluster.broker(0).start();
        }
        if i % 1000 == 999 {
            producer_poll(&producer, Duration::from_millis(200));
        }
        let v = format!("record {i}");
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(i))
                .partition((i % partitions as usize) as i32)
                .payload(v.as_bytes()),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(300));
    stored_once(&cluster, topic, partitions, n, &deliveries);
}

/// The same, deterministically with raw requests: batches of one producer are acknowledged by
/// the partition's leader, the leader is killed, and a retry of an acknowledged batch sent to
/// the new leader is answered with its original offset instead of being stored again (the
/// producer state came back from the meta and data streams). Then the first broker returns
/// and the partition may move back, gracefully: a retry there is answered the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_idempotent_batch_keeps_its_offset_on_the_next_owner() {
    use integration::raw_kafka::*;
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(2),
        &[("idem-raw", 1)],
    )
    .await;
    let topic = "idem-raw";
    let mut any = RawClient::negotiated(&cluster.kafka_addr(1));
    let (topic_id, parts) = raw_wait_topic(&mut any, topic, 1);
    let v = any.version::<InitProducerIdRequest>();
    let mut init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    if v >= 3 {
        init = init
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let pid = ok(&cluster, any.call(&init, v));
    let (pid, epoch) = (pid.producer_id.0, pid.producer_epoch);
    let batch = |seq: i32| idempotent_batch(pid, epoch, seq, &[b"a", b"b"]);

    let leader_addr = parts[0].leader_addr.clone();
    let leader = (0..2)
        .find(|&i| cluster.kafka_addr(i) == leader_addr)
        .expect("the leader is one of the brokers");
    let mut to_leader = RawClient::negotiated(&leader_addr);
    for (seq, offset) in [(0, 0), (2, 2), (4, 4)] {
        let r = ok(
            &cluster,
            raw_produce(&mut to_leader, topic, topic_id, 0, batch(seq)),
        );
        assert_eq!((r.error_code, r.base_offset), (0, offset), "batch {seq}");
    }
    // A retry on the same owner: its offset.
    let r = ok(
        &cluster,
        raw_produce(&mut to_leader, topic, topic_id, 0, batch(2)),
    );
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 2),
        "retry on the same owner"
    );

    // The leader dies; once the other broker leads, the retry goes there.
    cluster.broker(leader).kill();
    assert!(!cluster.broker(leader).is_running());
    let other = 1 - leader;
    let other_addr = cluster.kafka_addr(other);
    let mut c = RawClient::negotiated(&other_addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let retried = loop {
        let r = ok(&cluster, raw_produce(&mut c, topic, topic_id, 0, batch(4)));
        if r.error_code == 0 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (retried.error_code, retried.base_offset),
        (0, 4),
        "a retry of the batch acknowledged at 4, on the next owner"
    );
    let r = ok(&cluster, raw_produce(&mut c, topic, topic_id, 0, batch(6)));
    assert_eq!((r.error_code, r.base_offset), (0, 6), "the next batch");

    // The first broker comes back; wherever the partition is now, a retry keeps its offset.
    cluster.broker(leader).start();
    std::thread::sleep(Duration::from_secs(2));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let again = loop {
        let (_, parts) = raw_wait_topic(&mut c, topic, 1);
        let mut now = RawClient::negotiated(&parts[0].leader_addr);
        let r = ok(
            &cluster,
            raw_produce(&mut now, topic, topic_id, 0, batch(6)),
        );
        if r.error_code == 0 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (again.error_code, again.base_offset),
        (0, 6),
        "a retry after the move back"
    );
    let records = read_from_start(&cluster, topic, 0, 8);
    assert_eq!(records.len(), 8, "four batches of two, each stored once");
}
