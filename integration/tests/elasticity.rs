//! Planned partition moves through the Kafka admin APIs: AlterPartitionReassignments moves a
//! partition to the broker its replica list names (and pins it there),
//! ListPartitionReassignments shows the move until the new owner serves, Metadata shows the
//! new leader, and an idempotent producer that keeps sending while partitions move again and
//! again gets every record stored exactly once, at contiguous offsets.

use std::time::{Duration, Instant};

use integration::kafka;
use integration::raw_kafka::{
    raw_elect_leaders, raw_list_reassignments, raw_reassign, InFlight, RawClient,
};
use integration::testing::*;
use integration::Cluster;
use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::Offset;

/// AlterPartitionReassignments of one partition; panics if the request itself fails.
fn reassign(
    c: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> (i16, i16, String) {
    raw_reassign(c, version, topic, partition, replicas, allow_rf_change)
        .unwrap_or_else(|e| panic!("AlterPartitionReassignments: {e}"))
}

/// The moves ListPartitionReassignments shows; panics if the request itself fails.
fn in_flight(c: &mut RawClient, only: Option<(&str, i32)>) -> Vec<InFlight> {
    raw_list_reassignments(c, only).unwrap_or_else(|e| panic!("ListPartitionReassignments: {e}"))
}

/// Index in `cluster.brokers` of the broker with Kafka address `addr`.
fn broker_index(cluster: &Cluster, addr: &str, brokers: usize) -> usize {
    (0..brokers)
        .find(|i| cluster.kafka_addr(*i) == addr)
        .unwrap_or_else(|| panic!("no broker at {addr}"))
}

/// Moves `topic`/`p` (led by `from`) to the next broker after `from` in `ids` (sorted) with
/// AlterPartitionReassignments, then waits (30 s at most) until the new owner serves it;
/// answers the new leader.
fn move_to_next(
    cluster: &Cluster,
    c: &mut RawClient,
    topic: &str,
    p: usize,
    from: i32,
    ids: &[i32],
) -> i32 {
    let to = ids[(ids.iter().position(|b| *b == from).unwrap_or(0) + 1) % ids.len()];
    let (top, code, why) = reassign(c, 0, topic, p as i32, Some(vec![to]), false);
    if (top, code) != (0, 0) {
        fail(
            cluster,
            format!("move of {topic}/{p} to {to} refused: {top} {code} {why}"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !in_flight(c, Some((topic, p as i32))).is_empty() {
        if Instant::now() > deadline {
            fail(
                cluster,
                format!("move of {topic}/{p} to {to} still in flight after 30 s"),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    to
}

/// An idempotent librdkafka producer on its own thread sending `n` records ("record i") round
/// robin over `partitions`, pausing `pause` after every 500; answers its delivery reports.
fn spawn_idempotent_producer(
    bootstrap: &str,
    topic: &'static str,
    partitions: i32,
    n: usize,
    pause: Duration,
) -> std::thread::JoinHandle<Vec<kafka::Delivery>> {
    spawn_producer(bootstrap, topic, partitions, n, pause, true)
}

/// [`spawn_idempotent_producer`], or with `idempotent` false a plain acks=all producer with
/// librdkafka's default retries (which resend after NOT_LEADER_OR_FOLLOWER).
fn spawn_producer(
    bootstrap: &str,
    topic: &'static str,
    partitions: i32,
    n: usize,
    pause: Duration,
    idempotent: bool,
) -> std::thread::JoinHandle<Vec<kafka::Delivery>> {
    let bootstrap = bootstrap.to_string();
    std::thread::spawn(move || {
        let producer = if idempotent {
            kafka::idempotent_producer(&bootstrap)
        } else {
            kafka::producer(&bootstrap, &[("acks", "all"), ("linger.ms", "5")])
        };
        for i in 0..n {
            if i % 500 == 499 {
                let until = Instant::now() + pause;
                while Instant::now() < until {
                    producer.poll(Duration::from_millis(5));
                }
            }
            let v = format!("record {i}");
            kafka::send(
                &producer,
                BaseRecord::with_opaque_to(topic, Box::new(i))
                    .partition((i % partitions as usize) as i32)
                    .payload(v.as_bytes()),
            );
        }
        kafka::flush(&producer, Duration::from_secs(300))
    })
}

/// A consumer in a group (subscribed, offsets committed automatically) reading `topic` on its
/// own thread until it has seen `n` distinct records or 300 s passed; answers how many
/// distinct records it got, how many arrived again, and the longest wait between two (after
/// the first).
fn spawn_group_consumer(
    bootstrap: &str,
    topic: &'static str,
    n: usize,
) -> std::thread::JoinHandle<(usize, usize, Duration)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    let consumer = kafka::consumer(
        bootstrap,
        &[
            ("group.id", "elasticity-readers"),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "true"),
        ],
    );
    consumer.subscribe(&[topic]).expect("subscribe");
    std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        let mut twice = 0;
        // The wait before the first record is the group's join, not a stall.
        let mut last: Option<Instant> = None;
        let mut longest = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen.len() < n && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some(last) = last {
                        longest = longest.max(last.elapsed());
                    }
                    last = Some(Instant::now());
                    let text = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    if !seen.insert(text) {
                        twice += 1;
                    }
                }
                Some(Err(e)) => eprintln!("group consumer: {e}"),
                None => {}
            }
        }
        (seen.len(), twice, longest)
    })
}

/// A reassignment moves a partition: in flight while its new owner cannot serve yet (it is
/// stopped, SIGSTOP, for a moment shorter than its lease), then done; Metadata shows the new
/// leader, a produce there succeeds, and the balancer leaves the partition where it was
/// put. Bad requests get Kafka's error codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassignment_moves_a_partition_and_is_listed_until_served() {
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(2),
        &[("moves", 2)],
    )
    .await;
    let bs = cluster.bootstrap();
    let leaders = ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "moves", 2, Duration::from_secs(30)),
    );
    let from = leaders[0].clone();
    let other = leaders
        .iter()
        .find(|l| l.broker_id != from.broker_id)
        .cloned()
        .unwrap_or_else(|| {
            fail(
                &cluster,
                format!("both partitions on one broker: {leaders:?}"),
            )
        });
    let mut c = RawClient::negotiated(&from.addr);
    assert_eq!(
        c.versions.get(&45),
        Some(&(0, 1)),
        "AlterPartitionReassignments advertised"
    );
    assert_eq!(
        c.versions.get(&46),
        Some(&(0, 0)),
        "ListPartitionReassignments advertised"
    );
    assert!(in_flight(&mut c, None).is_empty());

    // Refusals first: nothing may move.
    let bad = [
        (0, Some(vec![]), false, 39),    // empty list
        (0, Some(vec![999]), false, 39), // no such broker
        (0, Some(vec![other.broker_id, other.broker_id]), false, 39), // duplicates
        (1, Some(vec![other.broker_id, from.broker_id]), false, 38), // v1: one replica
        (0, None, false, 85),            // nothing to cancel
    ];
    for (version, replicas, allow, want) in bad {
        let (top, code, why) = reassign(&mut c, version, "moves", 0, replicas.clone(), allow);
        assert_eq!((top, code), (0, want), "{replicas:?} v{version}: {why}");
    }
    let (_, code, _) = reassign(
        &mut c,
        0,
        "no-such-topic",
        0,
        Some(vec![other.broker_id]),
        false,
    );
    assert_eq!(code, 3, "unknown topic");
    let (_, code, _) = reassign(&mut c, 0, "moves", 9, Some(vec![other.broker_id]), false);
    assert_eq!(code, 3, "unknown partition");
    let after = ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "moves", 2, Duration::from_secs(10)),
    );
    assert_eq!(after, leaders, "a refused reassignment moved something");

    // The target cannot open the partition while stopped: the move stays in flight.
    let target = broker_index(&cluster, &other.addr, 2);
    let pid = cluster.broker(target).pid().expect("target broker runs") as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let (top, code, why) = reassign(&mut c, 0, "moves", 0, Some(vec![other.broker_id]), false);
    let listed = in_flight(&mut c, Some(("moves", 0)));
    let listed_all = in_flight(&mut c, None);
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!((top, code), (0, 0), "reassignment refused: {why}");
    assert_eq!(
        listed,
        vec![InFlight {
            topic: "moves".to_string(),
            partition: 0,
            replicas: vec![other.broker_id, from.broker_id],
            adding: vec![other.broker_id],
            removing: vec![from.broker_id],
        }],
        "the move in flight, as listed"
    );
    assert_eq!(listed_all, listed);
    // Cancelling a move in flight is refused (it completes within a moment).
    let (_, code, _) = reassign(&mut c, 0, "moves", 0, None, false);
    assert!(code == 42 || code == 85, "cancel: {code}");

    let deadline = Instant::now() + Duration::from_secs(30);
    while !in_flight(&mut c, None).is_empty() {
        if Instant::now() > deadline {
            fail(&cluster, "the move is still in flight after 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "moves", 2, Duration::from_secs(10)),
    );
    assert_eq!(
        now[0].broker_id, other.broker_id,
        "Metadata after the move: {now:?}"
    );
    let producer = kafka::producer(&bs, &[("enable.idempotence", "true")]);
    kafka::send(
        &producer,
        BaseRecord::with_opaque_to("moves", Box::new(0))
            .partition(0)
            .payload(&b"after the move"[..]),
    );
    let d = kafka::flush(&producer, Duration::from_secs(30));
    assert!(
        d.len() == 1 && d[0].error.is_none(),
        "produce after the move: {d:?}"
    );
    // Two partitions on one broker, one pinned: the balancer evens counts out with the
    // other one and leaves the pinned one where it was put.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = ok(
            &cluster,
            kafka::wait_for_leaders(&bs, "moves", 2, Duration::from_secs(10)),
        );
        assert_eq!(
            now[0].broker_id, other.broker_id,
            "the pinned partition moved: {now:?}"
        );
        if now[1].broker_id == from.broker_id {
            break;
        }
        if Instant::now() > deadline {
            fail(&cluster, format!("counts not evened out: {now:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Partitions move again and again (AlterPartitionReassignments, each to a broker that does
/// not lead it) while an idempotent producer keeps sending and a group consumer reads: every
/// record is stored exactly once, at contiguous offsets, where it was acknowledged, and the
/// consumer gets each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_moves_under_idempotent_produce_store_every_record_once() {
    let (_serial, cluster) =
        start_with_topics(Cluster::builder().range_servers(3).brokers(3), &[]).await;
    let topic = "many-moves";
    let partitions = 4;
    create_topic(&cluster, topic, partitions, &[]).await;
    let bs = cluster.bootstrap();
    let leaders = ok(
        &cluster,
        kafka::wait_for_leaders(&bs, topic, partitions as usize, Duration::from_secs(30)),
    );
    let ids: Vec<i32> = {
        let mut ids: Vec<i32> = (0..3)
            .map(|i| {
                let md = ok(&cluster, kafka::metadata(&cluster.kafka_addr(i), None));
                md.brokers()
                    .iter()
                    .find(|b| format!("{}:{}", b.host(), b.port()) == cluster.kafka_addr(i))
                    .map(|b| b.id())
                    .unwrap_or_else(|| {
                        fail(&cluster, format!("broker {i} not in its own metadata"))
                    })
            })
            .collect();
        ids.sort_unstable();
        ids
    };
    let mut at: Vec<i32> = leaders.iter().map(|l| l.broker_id).collect();
    let moves = 100;
    let n = 60_000usize;
    // About 20,000 records a second at most, so the sends span the moves.
    let producing = spawn_idempotent_producer(&bs, topic, partitions, n, Duration::from_millis(25));
    let consuming = spawn_group_consumer(&bs, topic, n);
    let mut c = RawClient::negotiated(bs.split(',').next().unwrap_or_default());
    for m in 0..moves {
        let p = m % partitions as usize;
        at[p] = move_to_next(&cluster, &mut c, topic, p, at[p], &ids);
        std::thread::sleep(Duration::from_millis(100));
    }
    let deliveries = producing.join().expect("producer thread");
    let now = ok(
        &cluster,
        kafka::wait_for_leaders(&bs, topic, partitions as usize, Duration::from_secs(10)),
    );
    assert_eq!(
        now.iter().map(|l| l.broker_id).collect::<Vec<_>>(),
        at,
        "leaders after the moves"
    );
    let (received, twice, longest_gap) = consuming.join().expect("consumer thread");
    if received != n || twice != 0 {
        fail(
            &cluster,
            format!("the group consumer got {received} of {n} records, {twice} of them again"),
        );
    }
    eprintln!("the group consumer got every record once; its longest wait between records: {longest_gap:?}");
    stored_once(&cluster, topic, partitions, n, &deliveries);
    eprintln!("{moves} moves under produce: {n} records stored once each");
}

/// kafkajs's admin client moves a partition (`alterPartitionReassignments`) and sees it in
/// flight and then done (`listPartitionReassignments`), driven by
/// `integration/node/reassign.js` (kafkajs from npm, installed by `.ci/run`). The range
/// servers are stopped (SIGSTOP, for less than their lease) from before the move until the
/// first list, so the new owner cannot open the partition's streams and the move is
/// certainly in flight then (kafkajs talks to every broker, so stopping one would stall it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_moves_a_partition_and_lists_it() {
    use std::io::{BufRead, BufReader, Write};
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(2),
        &[("js-moves", 2)],
    )
    .await;
    let bs = cluster.bootstrap();
    let leaders = ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "js-moves", 2, Duration::from_secs(30)),
    );
    // kafkajs talks to its bootstrap broker and the controller (the lowest live broker id):
    // move a partition of the lowest-id broker to the other one, which is the one stopped.
    let low = leaders.iter().map(|l| l.broker_id).min().unwrap_or(-1);
    let Some(moved) = leaders.iter().find(|l| l.broker_id == low).cloned() else {
        fail(&cluster, format!("no leaders: {leaders:?}"));
    };
    let Some(target) = leaders.iter().find(|l| l.broker_id != low).cloned() else {
        fail(
            &cluster,
            format!("both partitions on one broker: {leaders:?}"),
        );
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node/reassign.js");
    let stderr_path = cluster.root().join("reassign.js.stderr");
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut child = std::process::Command::new("timeout")
        .args(["120", "node"])
        .arg(&script)
        .args([
            moved.addr.clone(),
            "js-moves".into(),
            moved.partition.to_string(),
            target.broker_id.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("run node {}: {e}", script.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut step = |want: &str, cluster: &Cluster| -> serde_json::Value {
        let line = match out.next() {
            Some(Ok(line)) => line,
            other => fail(
                cluster,
                format!(
                    "reassign.js ended before {want}: {other:?}; its stderr:\n{}",
                    stderr()
                ),
            ),
        };
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| fail(cluster, format!("reassign.js said {line:?}: {e}")));
        if v["step"] != want {
            fail(cluster, format!("reassign.js: {v}, want step {want}"));
        }
        v
    };
    step("ready", &cluster);
    let pids: Vec<i32> = (0..3)
        .map(|i| cluster.range_server(i).pid().expect("range server runs") as i32)
        .collect();
    for pid in &pids {
        unsafe { libc::kill(*pid, libc::SIGSTOP) };
    }
    writeln!(stdin, "go").expect("write to reassign.js");
    let listed = step("listed", &cluster);
    for pid in &pids {
        unsafe { libc::kill(*pid, libc::SIGCONT) };
    }
    writeln!(stdin, "go").expect("write to reassign.js");
    let done = step("done", &cluster);
    let status = child.wait().expect("reassign.js exit");
    assert!(
        status.success(),
        "reassign.js failed: {status}\n{}",
        stderr()
    );
    let p = &listed["topics"][0]["partitions"][0];
    assert_eq!(listed["topics"][0]["name"], "js-moves", "listed: {listed}");
    assert_eq!(p["partition"], moved.partition, "listed: {listed}");
    assert_eq!(
        p["addingReplicas"],
        serde_json::json!([target.broker_id]),
        "listed: {listed}"
    );
    assert_eq!(
        p["removingReplicas"],
        serde_json::json!([low]),
        "listed: {listed}"
    );
    eprintln!(
        "kafkajs saw the move in flight, then done after {} ms",
        done["ms"]
    );
    let now = ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "js-moves", 2, Duration::from_secs(10)),
    );
    assert_eq!(
        now[moved.partition as usize].broker_id, target.broker_id,
        "Metadata after the move: {now:?}"
    );
}

/// The leader of each partition of `topic`, per Metadata.
fn leaders_of(cluster: &Cluster, topic: &str, partitions: usize) -> Vec<i32> {
    ok(
        cluster,
        kafka::wait_for_leaders(
            &cluster.bootstrap(),
            topic,
            partitions,
            Duration::from_secs(30),
        ),
    )
    .iter()
    .map(|l| l.broker_id)
    .collect()
}

/// Scale out from three brokers to five and back to three while an idempotent producer
/// sends: each new broker gets partitions; one is drained by hand (PD moves its partitions
/// away while it is alive) and then stopped, the other only gets SIGTERM and hands its
/// partitions over by itself before it exits. Every record is stored exactly once and the
/// client saw no error it did not retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_to_five_brokers_and_back_under_idempotent_produce() {
    let (_serial, mut cluster) =
        start_with_topics(Cluster::builder().range_servers(3).brokers(3), &[]).await;
    let topic = "scaling";
    let partitions = 10;
    create_topic(&cluster, topic, partitions, &[]).await;
    let n = 60_000usize;
    // About 4,000 records a second: the sends span the scaling (checked below).
    let producing = spawn_idempotent_producer(
        &cluster.bootstrap(),
        topic,
        partitions,
        n,
        Duration::from_millis(125),
    );
    std::thread::sleep(Duration::from_millis(500));

    let mut added = Vec::new();
    for _ in 0..2 {
        let i = cluster.add_broker();
        let id = cluster.broker_id(i).expect("the new broker's id") as i32;
        added.push((i, id));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !leaders_of(&cluster, topic, partitions as usize).contains(&id) {
            if Instant::now() > deadline {
                fail(
                    &cluster,
                    format!("new broker {id} leads nothing after 30 s"),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!(
        "five brokers: leaders {:?}",
        leaders_of(&cluster, topic, partitions as usize)
    );

    let pd = stream_client::PdClient::new(&[cluster.pd_addr()]);
    // How many partitions PD says broker `id` leads.
    let leads = |pd: stream_client::PdClient, id: i32| async move {
        pd.call(protocol::pd::ListTopics {}).await.map(|topics| {
            topics
                .iter()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.leader == Some(id as u64))
                .count()
        })
    };
    // The last one added is drained by hand (as `scripts/cluster remove` does), then stopped.
    let (i, id) = added[1];
    let node = pd
        .call(protocol::pd::DrainNode {
            node_id: id as u64,
            draining: true,
        })
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("drain {id}: {e}")));
    assert!(node.draining);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match leads(pd.clone(), id).await {
            Ok(0) => break,
            Ok(n) if Instant::now() > deadline => {
                fail(&cluster, format!("broker {id} still leads {n} after 30 s"))
            }
            Ok(_) => {}
            Err(e) => fail(&cluster, format!("list topics: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !cluster.broker(i).terminate(Duration::from_secs(30)) {
        fail(
            &cluster,
            format!("broker {id} still runs 30 s after SIGTERM"),
        );
    }
    // The other is only sent SIGTERM: it hands its partitions over by itself before it
    // exits, so once it is gone PD already names it leader of nothing (its lease, 3 s, has
    // not lapsed; without the handover its partitions would wait for that).
    let (i, id) = added[0];
    let before = leads(pd.clone(), id)
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("list topics: {e}")));
    assert!(before > 0, "broker {id} leads nothing to hand over");
    if !cluster.broker(i).terminate(Duration::from_secs(30)) {
        fail(
            &cluster,
            format!("broker {id} still runs 30 s after SIGTERM"),
        );
    }
    let after = leads(pd.clone(), id)
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("list topics: {e}")));
    if after != 0 {
        fail(
            &cluster,
            format!("broker {id} exited on SIGTERM still leading {after} of {before} partitions"),
        );
    }
    assert!(
        !producing.is_finished(),
        "the producer finished before the scaling did: make it slower"
    );
    let deliveries = producing.join().expect("producer thread");
    let ids: Vec<i32> = (0..3)
        .map(|i| cluster.broker_id(i).expect("broker id") as i32)
        .collect();
    let now = leaders_of(&cluster, topic, partitions as usize);
    assert!(
        now.iter().all(|l| ids.contains(l)),
        "leaders after scaling in: {now:?}, brokers {ids:?}"
    );
    stored_once(&cluster, topic, partitions, n, &deliveries);
}

/// Brokers report each partition's traffic to PD (every 2 s): while one partition of two is
/// produced to and read, PD's ListLoads shows bytes in and out for it and nothing for the
/// idle one; once the traffic stops, the next reports leave it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_report_partition_load_to_pd() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_serial, cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(2),
        &[("loaded", 2)],
    )
    .await;
    let bs = cluster.bootstrap();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (bs, stop) = (bs.clone(), stop.clone());
        std::thread::spawn(move || {
            let producer = kafka::producer(&bs, &[("linger.ms", "5")]);
            let value = vec![b'x'; 1000];
            let consumer = kafka::consumer(&bs, &[]);
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition_offset("loaded", 0, Offset::Beginning)
                .expect("assign");
            rdkafka::consumer::Consumer::assign(&consumer, &tpl).expect("assign");
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    kafka::send(
                        &producer,
                        BaseRecord::with_opaque_to("loaded", Box::new(0))
                            .partition(0)
                            .payload(&value[..]),
                    );
                }
                let _ = consumer.poll(Duration::from_millis(20));
            }
            kafka::flush(&producer, Duration::from_secs(30));
        })
    };
    let pd = stream_client::PdClient::new(&[cluster.pd_addr()]);
    let load_of = |loads: &[protocol::pd::LoadInfo], p: u32| {
        loads
            .iter()
            .find(|l| l.load.topic == "loaded" && l.load.partition == p)
            .map(|l| (l.load.produce_bytes_per_sec, l.load.fetch_bytes_per_sec))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let loads = pd
            .call(protocol::pd::ListLoads {})
            .await
            .unwrap_or_else(|e| fail(&cluster, format!("ListLoads: {e}")));
        if let Some((produce, fetch)) = load_of(&loads, 0) {
            if produce > 0 && fetch > 0 {
                assert_eq!(load_of(&loads, 1), None, "the idle partition: {loads:?}");
                break (produce, fetch);
            }
        }
        if Instant::now() > deadline {
            fail(
                &cluster,
                format!("no load for loaded/0 after 30 s: {loads:?}"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("loaded/0: {} B/s in, {} B/s out", seen.0, seen.1);
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic thread");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let loads = pd
            .call(protocol::pd::ListLoads {})
            .await
            .unwrap_or_else(|e| fail(&cluster, format!("ListLoads: {e}")));
        if load_of(&loads, 0).is_none() {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &cluster,
                format!("loaded/0 still reported 30 s after the traffic stopped: {loads:?}"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Skewed traffic: three brokers, and the three partitions that get all the produce traffic
/// (2 MB/s each) all led by one of them. Within a minute PD's balancer, working from the
/// brokers' load reports, leaves each broker one hot partition and its produce traffic within
/// the band around the mean; it makes few moves (each logged with reason "load" and counted
/// in `pd_partition_moves`), and then none while the traffic holds. With
/// `--balance-load-moves-per-minute 0` (the balancer of counts only) this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_traffic_is_evened_out_within_a_minute() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_serial, cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(3),
        &[("skewed", 9)],
    )
    .await;
    let first = cluster.broker_id(0).expect("broker id") as i32;
    let ids: Vec<i32> = (0..3)
        .map(|i| cluster.broker_id(i).expect("broker id") as i32)
        .collect();
    let hot: Vec<i32> = leaders_of(&cluster, "skewed", 9)
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == first)
        .map(|(p, _)| p as i32)
        .collect();
    assert_eq!(hot.len(), 3, "partitions are created spread 3/3/3");
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (bs, stop, hot) = (cluster.bootstrap(), stop.clone(), hot.clone());
        // 200 records of 1,000 bytes to each hot partition every 100 ms: 2 MB/s each.
        std::thread::spawn(move || {
            let producer = kafka::producer(&bs, &[("linger.ms", "5")]);
            let value = vec![b'x'; 1000];
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for &p in &hot {
                    for _ in 0..200 {
                        kafka::send(
                            &producer,
                            BaseRecord::with_opaque_to("skewed", Box::new(0))
                                .partition(p)
                                .payload(&value[..]),
                        );
                    }
                }
                next += Duration::from_millis(100);
                while Instant::now() < next {
                    producer.poll(Duration::from_millis(5));
                }
            }
            kafka::flush(&producer, Duration::from_secs(30))
        })
    };
    let started = Instant::now();
    let pd = stream_client::PdClient::new(&[cluster.pd_addr()]);
    // PD's default --balance-load-band.
    let band = 0.2;
    // Each broker's reported produce bytes/s, by PD's current leaders.
    let produce_by_broker = |loads: &[protocol::pd::LoadInfo], leaders: &[i32]| {
        let mut by: std::collections::BTreeMap<i32, u64> = ids.iter().map(|i| (*i, 0)).collect();
        for l in loads.iter().filter(|l| l.load.topic == "skewed") {
            let leader = leaders[l.load.partition as usize];
            *by.entry(leader).or_default() += l.load.produce_bytes_per_sec;
        }
        by
    };
    let mut settled_at = None;
    let mut in_band_polls = 0;
    while settled_at.is_none() {
        let loads = pd
            .call(protocol::pd::ListLoads {})
            .await
            .unwrap_or_else(|e| fail(&cluster, format!("ListLoads: {e}")));
        let leaders = leaders_of(&cluster, "skewed", 9);
        let by = produce_by_broker(&loads, &leaders);
        let mean = by.values().sum::<u64>() as f64 / by.len() as f64;
        let within = mean > 5e5 && by.values().all(|l| (*l as f64 - mean).abs() <= band * mean);
        let hot_per_broker: Vec<usize> = ids
            .iter()
            .map(|id| hot.iter().filter(|p| leaders[**p as usize] == *id).count())
            .collect();
        eprintln!(
            "{:>5.1} s: produce B/s by broker {by:?}, hot partitions per broker {hot_per_broker:?}",
            started.elapsed().as_secs_f64()
        );
        // In the band in three polls in a row (over 2 s: more than one report each).
        in_band_polls = if within && hot_per_broker == [1, 1, 1] {
            in_band_polls + 1
        } else {
            0
        };
        if in_band_polls == 3 {
            settled_at = Some(started.elapsed());
        } else if started.elapsed() > Duration::from_secs(60) {
            fail(
                &cluster,
                format!("not evened out within a minute: {by:?}, {hot_per_broker:?}"),
            );
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Then the traffic holds for 10 s more: nothing moves.
    let moves = |pd: stream_client::PdClient| async move {
        pd.call(protocol::pd::ListMoves { recent: true })
            .await
            .map(|m| {
                m.into_iter()
                    .filter(|m| m.topic == "skewed")
                    .collect::<Vec<_>>()
            })
    };
    let before = moves(pd.clone())
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("ListMoves: {e}")));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = moves(pd.clone())
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("ListMoves: {e}")));
    stop.store(true, Ordering::Relaxed);
    let deliveries = traffic.join().expect("traffic thread");
    let failed = deliveries.iter().filter(|d| d.error.is_some()).count();
    assert_eq!(failed, 0, "produce errors while partitions moved");
    let summary: Vec<_> = after
        .iter()
        .map(|m| (m.partition, m.from, m.to, m.reason.as_str(), m.took_ms))
        .collect();
    eprintln!("settled after {settled_at:?}; moves (partition, from, to, reason, ms): {summary:?}");
    assert_eq!(
        after.len(),
        before.len(),
        "moves after settling: {summary:?}"
    );
    let for_load = after.iter().filter(|m| m.reason == "load").count();
    // Two hot partitions must leave the busy broker; cold ones may come back for counts.
    assert!(
        (2..=4).contains(&for_load) && after.len() <= 8,
        "moves: {summary:?}"
    );
    let metrics = integration::http_get(&cluster.pd.http_addr, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pd_partition_moves") && l.contains("reason=\"load\"")),
        "no pd_partition_moves{{reason=\"load\"}} in PD's metrics"
    );
}

/// Open ranges of live streams that name range server `node`, per PD.
async fn open_ranges_on(pd: &stream_client::PdClient, node: u64) -> Result<usize, String> {
    let streams = pd
        .call(protocol::pd::ListStreams {})
        .await
        .map_err(|e| format!("ListStreams: {e}"))?;
    Ok(streams
        .iter()
        .flat_map(|s| &s.ranges)
        .filter(|r| r.end.is_none() && r.servers.contains(&node))
        .count())
}

/// Draining a range server under idempotent produce: PD places no new range on it, every
/// stream writer with an open range there (busy partitions and idle ones alike) seals it and
/// goes on elsewhere, and PD then says no range needs it. It is then killed, and every record
/// is still stored exactly once. Draining another would leave fewer range servers than the
/// streams' three replicas: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_range_server_moves_its_ranges_and_loses_nothing() {
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder().range_servers(4).brokers(2),
        &[("idle", 2)],
    )
    .await;
    let topic = "rs-drain";
    let partitions = 4;
    create_topic(&cluster, topic, partitions, &[]).await;
    let n = 60_000usize;
    // About 3,000 records a second: the sends span the drain and the kill (checked below).
    let producing = spawn_idempotent_producer(
        &cluster.bootstrap(),
        topic,
        partitions,
        n,
        Duration::from_millis(150),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let pd = stream_client::PdClient::new(&[cluster.pd_addr()]);
    // The range server with the most open ranges is drained.
    let ids: Vec<u64> = (0..4)
        .map(|i| cluster.range_server_id(i).expect("range server id"))
        .collect();
    let mut open = Vec::new();
    for id in &ids {
        open.push(ok(&cluster, open_ranges_on(&pd, *id).await));
    }
    let (i, node) = (0..4)
        .max_by_key(|i| open[*i])
        .map(|i| (i, ids[i]))
        .expect("range servers");
    assert!(open[i] > 0, "no open range on any range server: {open:?}");
    eprintln!("open ranges per range server {open:?}; draining node {node}");
    let drained = pd
        .call(protocol::pd::DrainNode {
            node_id: node,
            draining: true,
        })
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("drain {node}: {e}")));
    assert!(drained.draining);
    let started = Instant::now();
    loop {
        let nodes = pd
            .call(protocol::pd::ListNodes {})
            .await
            .unwrap_or_else(|e| fail(&cluster, format!("ListNodes: {e}")));
        let needed = nodes
            .iter()
            .find(|n| n.id == node)
            .and_then(|n| n.still_needed);
        if needed == Some(0) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            fail(
                &cluster,
                format!("range server {node} still needed by {needed:?} ranges after 30 s"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "range server {node} drained in {} ms",
        started.elapsed().as_millis()
    );
    let left = ok(&cluster, open_ranges_on(&pd, node).await);
    assert_eq!(left, 0, "open ranges left on the drained range server");
    // A fourth range server would be needed for the next one's streams: refused.
    let other = ids.iter().copied().find(|id| *id != node).expect("another");
    let refused = pd
        .call(protocol::pd::DrainNode {
            node_id: other,
            draining: true,
        })
        .await;
    assert!(
        matches!(&refused, Err(e) if e.code == protocol::ErrorCode::NoCapacity),
        "{refused:?}"
    );
    cluster.range_server(i).kill();
    assert!(
        !cluster.range_server(i).is_running(),
        "the range server still runs"
    );
    assert!(
        !producing.is_finished(),
        "the producer finished before the drain: make it slower"
    );
    let deliveries = producing.join().expect("producer thread");
    stored_once(&cluster, topic, partitions, n, &deliveries);
}

/// The leader and pinned broker of `topic`/`partition` as PD has them.
async fn pd_partition(
    pd: &stream_client::PdClient,
    topic: &str,
    partition: usize,
) -> (Option<u64>, Option<u64>) {
    let topics = pd
        .call(protocol::pd::ListTopics {})
        .await
        .unwrap_or_else(|e| panic!("ListTopics: {e}"));
    let p = topics
        .iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.partitions.get(partition))
        .unwrap_or_else(|| panic!("no {topic}/{partition} at PD"));
    (p.leader, p.pinned)
}

/// ElectLeaders as it applies to Strata: a partition led by its preferred broker (its pin,
/// else its leader) needs no election (84); one whose pinned broker is dead cannot have it
/// (80) though an unclean election is not needed (it has a live leader); once that broker
/// lives again a preferred election moves the partition back (0) — the balancer is told not
/// to (`--balance-max-moves 0`), so only the election can have done it. Unknown partitions
/// get 3 and an unknown election type 42.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_leaders_moves_a_partition_back_to_its_preferred_broker() {
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder()
            .range_servers(3)
            .brokers(2)
            .pd_arg("--balance-max-moves", "0"),
        &[("elect", 2)],
    )
    .await;
    let leaders = leaders_of(&cluster, "elect", 2);
    let ids: Vec<i32> = (0..2)
        .map(|i| cluster.broker_id(i).expect("broker id") as i32)
        .collect();
    let a = leaders[0];
    let (ia, ib) = if ids[0] == a { (0, 1) } else { (1, 0) };
    let mut c = RawClient::negotiated(&cluster.kafka_addr(ib));
    assert_eq!(
        c.versions.get(&43),
        Some(&(0, 2)),
        "ElectLeaders advertised"
    );
    let elect = |c: &mut RawClient, version, kind, which: Option<&[(&str, Vec<i32>)]>| {
        raw_elect_leaders(c, version, kind, which).unwrap_or_else(|e| panic!("ElectLeaders: {e}"))
    };
    let ours = |r: &[(String, i32, i16)]| -> Vec<(i32, i16)> {
        r.iter()
            .filter(|(t, _, _)| t == "elect")
            .map(|(_, p, e)| (*p, *e))
            .collect()
    };
    // Everything (null): no election needed.
    let (top, all) = elect(&mut c, 2, 0, None);
    assert_eq!(top, 0);
    assert_eq!(ours(&all), vec![(0, 84), (1, 84)]);
    let (_, r) = elect(&mut c, 0, 0, Some(&[("elect", vec![7]), ("nope", vec![0])]));
    assert_eq!(r, vec![("elect".into(), 7, 3), ("nope".into(), 0, 3)]);
    let (top, _) = elect(&mut c, 1, 7, Some(&[("elect", vec![0])]));
    assert_eq!(top, 42, "unknown election type");

    // Pin partition 0 where it is, then stop that broker until PD gives it to the other.
    let (_, code, why) = reassign(&mut c, 0, "elect", 0, Some(vec![a]), false);
    assert_eq!(code, 0, "pin: {why}");
    let pd = stream_client::PdClient::new(&[cluster.pd_addr()]);
    let pid = cluster.broker(ia).pid().expect("broker runs") as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (leader, pinned) = pd_partition(&pd, "elect", 0).await;
        assert_eq!(pinned, Some(a as u64));
        if leader.is_some_and(|l| l != a as u64) {
            break;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(pid, libc::SIGCONT) };
            fail(
                &cluster,
                "partition 0 did not leave its stopped broker".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let preferred = elect(&mut c, 2, 0, Some(&[("elect", vec![0])]));
    let unclean = elect(&mut c, 2, 1, Some(&[("elect", vec![0])]));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(ours(&preferred.1), vec![(0, 80)], "preferred broker dead");
    assert_eq!(
        ours(&unclean.1),
        vec![(0, 84)],
        "unclean: it has a live leader"
    );

    // The pinned broker is back; the balancer may not move it (max moves 0): it stays away.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = pd
            .call(protocol::pd::ListNodes {})
            .await
            .unwrap_or_else(|e| fail(&cluster, format!("ListNodes: {e}")));
        if nodes.iter().any(|n| n.id == a as u64 && n.alive) {
            break;
        }
        if Instant::now() > deadline {
            fail(&cluster, "the stopped broker did not come back".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (leader, _) = pd_partition(&pd, "elect", 0).await;
    assert_ne!(
        leader,
        Some(a as u64),
        "the balancer moved it back by itself"
    );
    let (_, r) = elect(&mut c, 2, 0, Some(&[("elect", vec![0])]));
    assert_eq!(ours(&r), vec![(0, 0)], "preferred election");
    let deadline = Instant::now() + Duration::from_secs(30);
    while leaders_of(&cluster, "elect", 2)[0] != a {
        if Instant::now() > deadline {
            fail(
                &cluster,
                "partition 0 is not back on its preferred broker".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, r) = elect(&mut c, 2, 0, Some(&[("elect", vec![0])]));
    assert_eq!(ours(&r), vec![(0, 84)]);
}

/// Failover at scale: three brokers share a topic of 1,000 partitions; one of them (a third,
/// at least 300 partitions) is killed. Every one of its partitions takes a produce again on a
/// live broker, and Metadata names a live leader for each. Prints the time from the kill to
/// the last acknowledgement (`elastic-bench` measures the same more tightly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_brokers_third_of_a_thousand_partitions_produce_again_elsewhere() {
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(3),
        &[("thousand", 1000)],
    )
    .await;
    let victim = 2;
    let victim_id = cluster.broker_id(victim).expect("broker id") as i32;
    let before = leaders_of(&cluster, "thousand", 1000);
    let led: Vec<i32> = (0..1000)
        .filter(|p| before[*p as usize] == victim_id)
        .collect();
    assert!(
        led.len() >= 300,
        "broker {victim_id} leads {} partitions",
        led.len()
    );
    let bootstrap = format!("{},{}", cluster.kafka_addr(0), cluster.kafka_addr(1));
    let producer = kafka::producer(
        &bootstrap,
        &[("linger.ms", "5"), ("message.timeout.ms", "60000")],
    );
    // Connected, with metadata, before the kill.
    kafka::send(
        &producer,
        BaseRecord::with_opaque_to("thousand", Box::new(usize::MAX))
            .partition(led[0])
            .payload(&b"before"[..]),
    );
    let d = kafka::flush(&producer, Duration::from_secs(30));
    assert!(d.iter().all(|d| d.error.is_none()), "{d:?}");
    let killed = Instant::now();
    cluster.broker(victim).kill();
    assert!(
        !cluster.broker(victim).is_running(),
        "the broker still runs"
    );
    for (i, p) in led.iter().enumerate() {
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to("thousand", Box::new(i))
                .partition(*p)
                .payload(&b"after the kill"[..]),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(90));
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    if !failed.is_empty() {
        fail(
            &cluster,
            format!(
                "{} of {} produces failed: {:?}",
                failed.len(),
                led.len(),
                failed[0]
            ),
        );
    }
    assert_eq!(deliveries.len(), led.len());
    let last = deliveries.iter().map(|d| d.at).max().expect("deliveries");
    eprintln!(
        "{} partitions of the killed broker acknowledged elsewhere {} ms after the kill",
        led.len(),
        (last - killed).as_millis()
    );
    let after = leaders_of(&cluster, "thousand", 1000);
    for p in &led {
        assert_ne!(
            after[*p as usize], victim_id,
            "partition {p} still names the dead broker"
        );
    }
    // The burst of opens went through Raft in batches (PD's group commit), not one by one.
    let metrics = integration::http_get(&cluster.pd.http_addr, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (commands, proposals) = (
        value("pd_raft_proposal_commands_sum "),
        value("pd_raft_proposal_commands_count "),
    );
    eprintln!("PD: {commands} commands in {proposals} Raft proposals");
    assert!(
        proposals > 0.0 && commands > 2.0 * proposals,
        "PD's writes were not batched: {commands} commands in {proposals} proposals"
    );
}

/// Planned moves under a plain (not idempotent) acks=all producer that sends as fast as it
/// can: a move can fence the old owner's appends in flight, and the new owner's seal keeps
/// those a quorum of replicas held. The old owner must answer those as stored (their
/// offsets), not NOT_LEADER_OR_FOLLOWER, or the client's retry stores them twice. Every
/// record is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_moves_under_plain_produce_store_nothing_twice() {
    let (_serial, cluster) =
        start_with_topics(Cluster::builder().range_servers(3).brokers(3), &[]).await;
    let topic = "plain-moves";
    let partitions = 4;
    create_topic(&cluster, topic, partitions, &[]).await;
    let bs = cluster.bootstrap();
    let leaders = leaders_of(&cluster, topic, partitions as usize);
    let mut ids: Vec<i32> = (0..3)
        .map(|i| cluster.broker_id(i).expect("broker id") as i32)
        .collect();
    ids.sort_unstable();
    let mut at = leaders;
    let n = 300_000usize;
    let producing = spawn_producer(&bs, topic, partitions, n, Duration::ZERO, false);
    let mut c = RawClient::negotiated(bs.split(',').next().unwrap_or_default());
    let mut moves = 0;
    while !producing.is_finished() && moves < 60 {
        let p = moves % partitions as usize;
        at[p] = move_to_next(&cluster, &mut c, topic, p, at[p], &ids);
        moves += 1;
    }
    let deliveries = producing.join().expect("producer thread");
    assert!(moves >= 10, "only {moves} moves while producing: send more");
    eprintln!("{moves} moves under plain produce");
    stored_once(&cluster, topic, partitions, n, &deliveries);
}
