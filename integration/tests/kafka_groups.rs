//! Consumer groups and committed offsets, seen by real clients: librdkafka through
//! `rdkafka`, kafka-python (`integration/python/groups_test.py`), and raw requests through
//! `kafka-protocol` for the error paths no client library takes on purpose. Every test starts
//! PD, three range servers and brokers as real processes.
//!
//! Run: `cargo build --release --workspace --bins && cargo test --release -p integration
//! --test kafka_groups`. `STRATA_KEEP_TEST_DIRS=1` keeps each cluster's data and logs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use integration::kafka;
use integration::raw_kafka::*;
use integration::testing::*;
use integration::{Cluster, ClusterBuilder};
use kafka_protocol::messages::{
    CreatePartitionsRequest, DeleteTopicsRequest, LeaveGroupRequest, SyncGroupRequest,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

/// A cluster for group tests: a small `__consumer_offsets` and a short initial rebalance
/// delay, so tests do not wait for Kafka's production defaults.
fn cluster(brokers: usize) -> ClusterBuilder {
    Cluster::builder()
        .brokers(brokers)
        .broker_arg("--offsets-topic-partitions", "6")
        .broker_arg("--group-initial-rebalance-delay-ms", "300")
}

/// Starts a group-test cluster of `brokers` with `topics` (see [`start_with_topics`]) and runs
/// `test` on a blocking thread (the clients block) with the cluster, its bootstrap address and
/// the name of the test's group; the cluster stops after `test` returns.
async fn group_test(
    brokers: usize,
    topics: &[(&str, i32)],
    group: &'static str,
    test: impl FnOnce(&Cluster, String, &'static str) + Send + 'static,
) {
    let (_serial, cluster) = start_with_topics(cluster(brokers), topics).await;
    let bs = cluster.bootstrap();
    blocking(move || {
        test(&cluster, bs, group);
        cluster
    })
    .await;
}

/// Produces `n` keyed messages to `topic`; answers `(partition, offset)` of each.
fn produce(cluster: &Cluster, topic: &str, n: usize, tag: &str) -> Vec<(i32, i64)> {
    let producer = kafka::producer(&cluster.bootstrap(), &[("acks", "all"), ("linger.ms", "5")]);
    for i in 0..n {
        let key = format!("{tag}-{i}");
        let value = format!("{tag} value {i}");
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(i))
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(60));
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    if !failed.is_empty() || deliveries.len() != n {
        fail(
            cluster,
            format!(
                "{} of {n} deliveries failed: {:?}",
                failed.len(),
                &failed[..failed.len().min(3)]
            ),
        );
    }
    deliveries.iter().map(|d| (d.partition, d.offset)).collect()
}

/// One consumed record: which member, where, and whether its commit succeeded.
#[derive(Debug, Clone, Copy)]
struct Consumed {
    member: usize,
    partition: i32,
    offset: i64,
    committed: bool,
}

/// Counts rebalances a consumer goes through (assignments and revocations it sees).
#[derive(Default)]
struct Counting {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn post_rebalance(&self, _base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A group member consuming on its own thread; commits every record synchronously before
/// it polls again (so a record is committed before any rebalance can take its partition), and
/// commits again what was refused during a rebalance while the partition stays with it.
struct Member {
    stop: Arc<AtomicBool>,
    assignment: Arc<Mutex<Option<Vec<i32>>>>,
    rebalances: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(
        bootstrap: &str,
        group: &str,
        topic: &str,
        index: usize,
        extra: &[(&str, &str)],
        log: Arc<Mutex<Vec<Consumed>>>,
    ) -> Member {
        let settings = [
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("fetch.wait.max.ms", "100"),
        ];
        let config = kafka::config_with(bootstrap, &settings, extra);
        let rebalances = Arc::new(AtomicUsize::new(0));
        let consumer: BaseConsumer<Counting> = config
            .create_with_context(Counting {
                rebalances: rebalances.clone(),
            })
            .expect("create consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let assignment = Arc::new(Mutex::new(None));
        let (s, a) = (stop.clone(), assignment.clone());
        let topic = topic.to_string();
        let thread = std::thread::spawn(move || {
            use rdkafka::Message;
            // Records whose commit was refused (a cooperative member keeps consuming while a
            // rebalance completes, and commits are refused then): committed again below while
            // the partition stays here, else left to its next owner, which re-reads them.
            let mut refused: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
            let record = |partition, offset, committed| Consumed {
                member: index,
                partition,
                offset,
                committed,
            };
            while !s.load(Ordering::SeqCst) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let committed = consumer.commit_message(&m, CommitMode::Sync).is_ok();
                    let mut log = log.lock().unwrap();
                    log.push(record(m.partition(), m.offset(), committed));
                    match refused.remove(&m.partition()) {
                        // This commit covers the earlier refused ones too.
                        Some(earlier) if committed => {
                            log.extend(earlier.into_iter().map(|o| record(m.partition(), o, true)))
                        }
                        Some(mut earlier) => {
                            earlier.push(m.offset());
                            refused.insert(m.partition(), earlier);
                        }
                        None if !committed => {
                            refused.insert(m.partition(), vec![m.offset()]);
                        }
                        None => {}
                    }
                }
                let Ok(tpl) = consumer.assignment() else {
                    continue;
                };
                let mut ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                ps.sort();
                refused.retain(|p, _| ps.contains(p));
                for (&partition, offsets) in refused.iter_mut() {
                    let Some(&last) = offsets.iter().max() else {
                        continue;
                    };
                    let mut commit = TopicPartitionList::new();
                    let next = Offset::Offset(last + 1);
                    if commit.add_partition_offset(&topic, partition, next).is_ok()
                        && consumer.commit(&commit, CommitMode::Sync).is_ok()
                    {
                        let done = std::mem::take(offsets);
                        let mut log = log.lock().unwrap();
                        log.extend(done.into_iter().map(|o| record(partition, o, true)));
                    }
                }
                refused.retain(|_, offsets| !offsets.is_empty());
                *a.lock().unwrap() = Some(ps);
            }
            drop(consumer); // closes: LeaveGroup (unless static)
        });
        Member {
            stop,
            assignment,
            rebalances,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> Vec<i32> {
        self.assignment.lock().unwrap().clone().unwrap_or_default()
    }

    /// Closes the consumer and waits for its thread.
    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.close();
    }
}

/// How long the group waits below give a rebalance or the consumers to catch up.
const WAIT: Duration = Duration::from_secs(60);

/// Waits until the live members' assignments partition `0..partitions` exactly, each member
/// holding at least one (when there are fewer members than partitions).
/// [`wait_for_assignment`], then asserts every member holds the same number of partitions
/// (`partitions` divided among them).
fn wait_for_even_assignment(
    cluster: &Cluster,
    members: &[Member],
    partitions: i32,
) -> Vec<Vec<i32>> {
    let assignments = wait_for_assignment(cluster, members, partitions);
    let each = partitions as usize / members.len();
    assert!(
        assignments.iter().all(|a| a.len() == each),
        "{} × {each} partitions: {assignments:?}",
        members.len()
    );
    assignments
}

fn wait_for_assignment(cluster: &Cluster, members: &[Member], partitions: i32) -> Vec<Vec<i32>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let assignments: Vec<Vec<i32>> = members.iter().map(|m| m.assignment()).collect();
        let mut all: Vec<i32> = assignments.iter().flatten().copied().collect();
        all.sort();
        if all == (0..partitions).collect::<Vec<_>>() && assignments.iter().all(|a| !a.is_empty()) {
            return assignments;
        }
        if Instant::now() > deadline {
            fail(
                cluster,
                format!("assignment never covered 0..{partitions} exactly once: {assignments:?}"),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every produced record was consumed with a successful commit; then checks
/// that none was consumed-and-committed twice.
fn wait_for_consumed(cluster: &Cluster, log: &Arc<Mutex<Vec<Consumed>>>, produced: &[(i32, i64)]) {
    let want: BTreeSet<(i32, i64)> = produced.iter().copied().collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let got: BTreeSet<(i32, i64)> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.committed)
            .map(|c| (c.partition, c.offset))
            .collect();
        if want.is_subset(&got) {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want.difference(&got).take(10).collect();
            fail(
                cluster,
                format!(
                    "{} of {} records never consumed and committed, e.g. {missing:?}",
                    want.difference(&got).count(),
                    want.len()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut seen: HashMap<(i32, i64), Vec<usize>> = HashMap::new();
    for c in log.lock().unwrap().iter().filter(|c| c.committed) {
        seen.entry((c.partition, c.offset))
            .or_default()
            .push(c.member);
    }
    let twice: Vec<_> = seen.iter().filter(|(_, m)| m.len() > 1).take(10).collect();
    if !twice.is_empty() {
        fail(
            cluster,
            format!("records consumed and committed more than once: {twice:?}"),
        );
    }
}

/// Three consumers share 12 partitions, each partition assigned to exactly
/// one; a fourth joins and one leaves while records keep coming: every record consumed
/// (and committed) exactly once, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_then_four_then_three_consumers_share_partitions_exactly_once() {
    let topic = "shared";
    group_test(3, &[(topic, 12)], "g-shared", move |cluster, bs, group| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut produced = produce(cluster, topic, 600, "a");
        let mut members: Vec<Member> = (0..3)
            .map(|i| Member::start(&bs, group, topic, i, &[], log.clone()))
            .collect();
        wait_for_even_assignment(cluster, &members, 12);
        wait_for_consumed(cluster, &log, &produced);

        // A fourth member joins while records keep coming.
        members.push(Member::start(&bs, group, topic, 3, &[], log.clone()));
        produced.extend(produce(cluster, topic, 600, "b"));
        wait_for_even_assignment(cluster, &members, 12);
        produced.extend(produce(cluster, topic, 600, "c"));
        wait_for_consumed(cluster, &log, &produced);

        // One member leaves (LeaveGroup on close) while records keep coming.
        members[0].close();
        produced.extend(produce(cluster, topic, 600, "d"));
        wait_for_even_assignment(cluster, &members[1..], 12);
        wait_for_consumed(cluster, &log, &produced);
        let failed_commits = log.lock().unwrap().iter().filter(|c| !c.committed).count();
        eprintln!(
            "consumed {} records ({} commits refused during rebalances)",
            log.lock().unwrap().len(),
            failed_commits
        );
    })
    .await;
}

/// Stale generations, unknown members, commits during a rebalance, fenced
/// static members and requests to a broker that is not the coordinator get Kafka's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_the_ones_clients_expect() {
    let topic = "raw-t";
    group_test(2, &[(topic, 2)], "raw-group", move |cluster, bs, group| {
        let (coordinator_id, coordinator_addr) = find_coordinator(&cluster.kafka_addr(0), group);
        assert_eq!(
            find_coordinator(&cluster.kafka_addr(1), group).0,
            coordinator_id
        );
        let mut a_conn = RawClient::negotiated(&coordinator_addr);
        let mut b_conn = RawClient::negotiated(&coordinator_addr);

        // Generation 1: a alone.
        let (a, cid) = start_join(&mut a_conn, group, topic);
        let ra = finish_join(&mut a_conn, cid);
        assert_eq!((ra.error_code, ra.generation_id), (0, 1));
        assert_eq!(ra.leader.as_str(), a);
        let v = a_conn.version::<SyncGroupRequest>();
        let sa = a_conn
            .call(&sync_request(group, &a, 1, &[(&a, b"A1")]), v)
            .expect("SyncGroup");
        assert_eq!((sa.error_code, sa.assignment.as_ref()), (0, &b"A1"[..]));
        assert_eq!(heartbeat(&mut a_conn, group, &a, None, 1), 0);
        assert_eq!(
            heartbeat(&mut a_conn, group, &a, None, 0),
            code::ILLEGAL_GENERATION
        );
        assert_eq!(
            heartbeat(&mut a_conn, group, "nobody", None, 1),
            code::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            commit(&mut a_conn, group, &a, 0, &[(topic, 0, 5)]),
            vec![code::ILLEGAL_GENERATION]
        );
        assert_eq!(
            commit(&mut a_conn, group, "nobody", 1, &[(topic, 0, 5)]),
            vec![code::UNKNOWN_MEMBER_ID]
        );
        assert_eq!(
            commit(&mut a_conn, group, "", -1, &[(topic, 0, 5)]),
            vec![code::UNKNOWN_MEMBER_ID],
            "simple commit to a group with members"
        );
        assert_eq!(
            commit(&mut a_conn, group, &a, 1, &[(topic, 0, 5), (topic, 7, 1)]),
            vec![0, 3],
            "unknown partition"
        );

        // b joins: a learns of the rebalance from its heartbeat; its commits with the
        // current generation are still accepted while the group prepares.
        let (b, b_cid) = start_join(&mut b_conn, group, topic);
        // b's join was only sent: until the coordinator has taken it (it came on another
        // connection), a's heartbeat may still find the group stable.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answer = heartbeat(&mut a_conn, group, &a, None, 1);
        while answer == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            answer = heartbeat(&mut a_conn, group, &a, None, 1);
        }
        assert_eq!(answer, code::REBALANCE_IN_PROGRESS);
        assert_eq!(commit(&mut a_conn, group, &a, 1, &[(topic, 0, 6)]), vec![0]);
        let ra = join(&mut a_conn, &join_request(group, &a, None, topic));
        let rb = finish_join(&mut b_conn, b_cid);
        assert_eq!((ra.error_code, ra.generation_id), (0, 2));
        assert_eq!((rb.error_code, rb.generation_id), (0, 2));
        assert_eq!(ra.members.len(), 2, "the leader gets every member");
        assert!(rb.members.is_empty());
        // Between JoinGroup and SyncGroup: commits get REBALANCE_IN_PROGRESS.
        assert_eq!(
            commit(&mut a_conn, group, &a, 2, &[(topic, 0, 7)]),
            vec![code::REBALANCE_IN_PROGRESS]
        );
        assert_eq!(
            commit(&mut a_conn, group, &a, 1, &[(topic, 0, 7)]),
            vec![code::ILLEGAL_GENERATION]
        );
        let stale = a_conn
            .call(&sync_request(group, &a, 1, &[]), v)
            .expect("SyncGroup");
        assert_eq!(stale.error_code, code::ILLEGAL_GENERATION);
        let b_sync = b_conn.send(&sync_request(group, &b, 2, &[]), v);
        let sa = a_conn
            .call(&sync_request(group, &a, 2, &[(&a, b"A2"), (&b, b"B2")]), v)
            .expect("SyncGroup");
        let sb = b_conn
            .recv::<SyncGroupRequest>(b_sync, v)
            .expect("SyncGroup");
        assert_eq!((sa.error_code, sa.assignment.as_ref()), (0, &b"A2"[..]));
        assert_eq!((sb.error_code, sb.assignment.as_ref()), (0, &b"B2"[..]));
        assert_eq!(commit(&mut a_conn, group, &a, 2, &[(topic, 1, 9)]), vec![0]);
        assert_eq!(
            fetch_offsets(&mut a_conn, group, &[(topic, 0), (topic, 1)]),
            vec![(6, "meta-6".to_string()), (9, "meta-9".to_string())]
        );
        // b leaves: a is told to rejoin.
        let lv = b_conn.version::<LeaveGroupRequest>();
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid(group))
                .with_members(vec![
                    kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                        .with_member_id(str_bytes(&b)),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid(group))
                .with_member_id(str_bytes(&b))
        };
        let left = b_conn.call(&leave, lv).expect("LeaveGroup");
        assert_eq!(left.error_code, 0);
        assert_eq!(
            heartbeat(&mut a_conn, group, &a, None, 2),
            code::REBALANCE_IN_PROGRESS
        );
        assert_eq!(
            heartbeat(&mut b_conn, group, &b, None, 2),
            code::UNKNOWN_MEMBER_ID
        );

        // The other broker is not the coordinator.
        let other = (0..2)
            .map(|i| cluster.kafka_addr(i))
            .find(|addr| *addr != coordinator_addr)
            .expect("a broker that is not the coordinator");
        let mut o = RawClient::negotiated(&other);
        assert_eq!(heartbeat(&mut o, group, &a, None, 2), code::NOT_COORDINATOR);
        assert_eq!(
            commit(&mut o, group, &a, 2, &[(topic, 0, 1)]),
            vec![code::NOT_COORDINATOR]
        );
        assert_eq!(
            join(&mut o, &join_request(group, "", None, topic)).error_code,
            code::NOT_COORDINATOR
        );

        // Static membership: a restarted instance replaces its old member id, which is fenced.
        let sgroup = "raw-static";
        let mut s_conn = coordinator_client(&bs, sgroup);
        // Joins as instance inst-1 and checks it is in generation 1; answers the member id.
        let join_inst_1 = |c: &mut RawClient, what: &str| {
            let r = join(c, &join_request(sgroup, "", Some("inst-1"), topic));
            assert_eq!((r.error_code, r.generation_id), (0, 1), "{what}");
            r.member_id.to_string()
        };
        let old = join_inst_1(&mut s_conn, "static members need no MEMBER_ID_REQUIRED");
        let sv = s_conn.version::<SyncGroupRequest>();
        let s = s_conn
            .call(&sync_request(sgroup, &old, 1, &[(&old, b"S1")]), sv)
            .expect("SyncGroup");
        assert_eq!(s.error_code, 0);
        let new = join_inst_1(&mut s_conn, "no new generation");
        assert_ne!(new, old);
        assert_eq!(
            heartbeat(&mut s_conn, sgroup, &old, Some("inst-1"), 1),
            code::FENCED_INSTANCE_ID
        );
        assert_eq!(heartbeat(&mut s_conn, sgroup, &new, Some("inst-1"), 1), 0);
        let s = s_conn
            .call(
                &sync_request(sgroup, &new, 1, &[])
                    .with_group_instance_id(Some(str_bytes("inst-1"))),
                sv,
            )
            .expect("SyncGroup");
        assert_eq!(
            (s.error_code, s.assignment.as_ref()),
            (0, &b"S1"[..]),
            "the old assignment back"
        );

        // Clients cannot write to the internal topic.
        let mut any = RawClient::negotiated(&cluster.kafka_addr(0));
        let (id, _) =
            raw_topic(&mut any, "__consumer_offsets").expect("__consumer_offsets in Metadata");
        let md = raw_metadata(&mut any, Some(&["__consumer_offsets"]), false);
        assert!(md.topics[0].is_internal, "listed as internal");
        let batch = record_batch(
            &[(Some(b"k"), b"v")],
            kafka_protocol::records::Compression::None,
            now_ms(),
        );
        let produced = raw_produce(&mut any, "__consumer_offsets", id, 0, batch).expect("Produce");
        assert_eq!(produced.error_code, code::INVALID_TOPIC_EXCEPTION);
    })
    .await;
}

/// DescribeGroups, ListGroups, DeleteGroups and OffsetDelete report and act as
/// Kafka's do, for a live group and after its last member left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_list_delete_groups_and_offsets() {
    group_test(
        2,
        &[("desc-t", 3), ("other-t", 1)],
        "desc-group",
        move |cluster, bs, group| {
            let produced = produce(cluster, "desc-t", 30, "d");
            let log = Arc::new(Mutex::new(Vec::new()));
            let mut member = Member::start(
                &bs,
                group,
                "desc-t",
                0,
                &[("client.id", "describer")],
                log.clone(),
            );
            wait_for_assignment(cluster, std::slice::from_ref(&member), 3);
            wait_for_consumed(cluster, &log, &produced);
            let mut c = coordinator_client(&bs, group);

            let d = describe(&mut c, group);
            assert_eq!(d.error_code, 0);
            assert_eq!(d.group_state.as_str(), "Stable");
            assert_eq!(d.protocol_type.as_str(), "consumer");
            assert_eq!(d.protocol_data.as_str(), "range");
            assert_eq!(d.members.len(), 1);
            assert_eq!(d.members[0].client_id.as_str(), "describer");
            assert!(!d.members[0].member_assignment.is_empty());
            assert!(!d.members[0].member_metadata.is_empty());
            let stable = list_groups(&bs, &[]);
            assert!(
                stable.contains(&(
                    group.to_string(),
                    "consumer".to_string(),
                    "Stable".to_string()
                )),
                "{stable:?}"
            );
            assert!(!list_groups(&bs, &["Empty"]).iter().any(|g| g.0 == group));
            assert_eq!(delete_group(&mut c, group), code::NON_EMPTY_GROUP);

            // A commit for a topic the group does not subscribe to, through the member (a simple
            // commit would be refused while the group has members).
            let other = commit(&mut c, group, "", -1, &[("other-t", 0, 4)]);
            assert_eq!(other, vec![code::UNKNOWN_MEMBER_ID]);
            member.close();
            let deadline = Instant::now() + Duration::from_secs(30);
            while describe(&mut c, group).group_state.as_str() != "Empty" {
                assert!(Instant::now() < deadline, "group never became Empty");
                std::thread::sleep(Duration::from_millis(100));
            }
            let d = describe(&mut c, group);
            assert!(d.members.is_empty());
            assert_eq!(d.protocol_type.as_str(), "consumer");
            assert!(list_groups(&bs, &["Empty"]).contains(&(
                group.to_string(),
                "consumer".to_string(),
                "Empty".to_string()
            )));
            assert_eq!(
                commit(&mut c, group, "", -1, &[("other-t", 0, 4)]),
                vec![0],
                "simple commit to an empty group"
            );
            let in_p0 = produced.iter().filter(|(p, _)| *p == 0).count() as i64;
            assert_eq!(
                fetch_offsets(&mut c, group, &[("other-t", 0), ("desc-t", 0)]),
                vec![(4, "meta-4".to_string()), (in_p0, String::new())]
            );

            // OffsetDelete: refused for the subscribed topic while a member is active; done here
            // (empty group) for both.
            let mut member = Member::start(&bs, group, "desc-t", 1, &[], log.clone());
            wait_for_assignment(cluster, std::slice::from_ref(&member), 3);
            assert_eq!(
                delete_offsets(&mut c, group, &[("desc-t", 0), ("other-t", 0)]),
                (0, vec![code::GROUP_SUBSCRIBED_TO_TOPIC, 0])
            );
            assert_eq!(
                fetch_offsets(&mut c, group, &[("other-t", 0)]),
                vec![(-1, String::new())]
            );
            member.close();
            let deadline = Instant::now() + Duration::from_secs(30);
            while describe(&mut c, group).group_state.as_str() != "Empty" {
                assert!(Instant::now() < deadline, "group never became Empty");
                std::thread::sleep(Duration::from_millis(100));
            }
            assert_eq!(
                delete_offsets(&mut c, group, &[("desc-t", 0)]),
                (0, vec![0])
            );
            assert_eq!(
                fetch_offsets(&mut c, group, &[("desc-t", 0)]),
                vec![(-1, String::new())]
            );
            assert_eq!(
                delete_offsets(&mut c, "no-such-group", &[("desc-t", 0)]).0,
                code::GROUP_ID_NOT_FOUND
            );

            // DeleteGroups through librdkafka's admin client, then the group is Dead.
            let admin = kafka::admin(&bs);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let deleted = rt
                .block_on(admin.delete_groups(&[group], &kafka::admin_options()))
                .expect("DeleteGroups");
            assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
            let d = describe(&mut c, group);
            assert_eq!((d.error_code, d.group_state.as_str()), (0, "Dead"));
            assert_eq!(delete_group(&mut c, group), code::GROUP_ID_NOT_FOUND);
            assert_eq!(
                fetch_offsets(&mut c, group, &[("desc-t", 1)]),
                vec![(-1, String::new())]
            );
            assert!(!list_groups(&bs, &[]).iter().any(|g| g.0 == group));
        },
    )
    .await;
}

/// The index of the cluster broker listening on `addr`.
fn broker_index(cluster: &Cluster, addr: &str) -> usize {
    (0..cluster.brokers.len())
        .find(|i| cluster.kafka_addr(*i) == addr)
        .unwrap_or_else(|| panic!("no broker at {addr}"))
}

/// A plain group consumer (no thread): reads until `n` records, committing each.
fn consume_and_commit(
    cluster: &Cluster,
    bootstrap: &str,
    group: &str,
    topic: &str,
    n: usize,
) -> BTreeMap<i32, i64> {
    let c = kafka::consumer(
        bootstrap,
        &[("group.id", group), ("session.timeout.ms", "6000")],
    );
    c.subscribe(&[topic]).expect("subscribe");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < n {
        if Instant::now() > deadline {
            fail(cluster, format!("consumed {got} of {n}"));
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            use rdkafka::Message;
            if let Err(e) = c.commit_message(&m, CommitMode::Sync) {
                fail(cluster, format!("commit failed: {e}"));
            }
            next.insert(m.partition(), m.offset() + 1);
            got += 1;
        }
    }
    next
}

/// Committed offsets survive kill -9 of the coordinator's broker; the group
/// finds its new coordinator (which rebuilt the state from a snapshot and the data after
/// it) and resumes at the committed offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_kill_of_the_coordinator() {
    let _serial = serial().await;
    let cluster = cluster(3)
        .broker_arg("--offsets-snapshot-records", "25")
        .start()
        .await;
    let bs = cluster.bootstrap();
    let topic = "durable";
    create_topic(&cluster, topic, 4, &[]).await;
    let group = "durable-group";
    let (mut cluster, committed, old_coordinator) = blocking(move || {
        produce(&cluster, topic, 400, "x");
        let mut committed = consume_and_commit(&cluster, &bs, group, topic, 200);
        // Give the coordinator time to write a snapshot and trim (checked every 2 s), then
        // commit a little more, which only the data stream after the snapshot holds.
        std::thread::sleep(Duration::from_secs(3));
        committed.extend(consume_and_commit(&cluster, &bs, group, topic, 10));
        let (node, addr) = find_coordinator(&cluster.kafka_addr(0), group);
        (cluster, committed, (node, addr))
    })
    .await;
    let victim = broker_index(&cluster, &old_coordinator.1);
    assert!(
        cluster.brokers[victim]
            .log()
            .contains("writing group snapshot"),
        "the coordinator wrote snapshots"
    );
    cluster.broker(victim).kill();
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| cluster.kafka_addr(i))
        .collect();
    let bs = survivors.join(",");
    blocking(move || {
        // PD gives the dead broker's partitions to the others once its lease runs out.
        let deadline = Instant::now() + Duration::from_secs(60);
        while find_coordinator(&survivors[0], group).0 == old_coordinator.0 {
            if Instant::now() > deadline {
                fail(&cluster, "the group never got a new coordinator".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The committed offsets, as the new coordinator reports them.
        let c = kafka::consumer(&bs, &[("group.id", group)]);
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition(topic, p);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = loop {
            match c.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(t) => break t,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("committed offsets not readable yet: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => fail(&cluster, format!("OffsetFetch after the kill: {e}")),
            }
        };
        for (p, next) in &committed {
            let got = seen.find_partition(topic, *p).map(|e| e.offset());
            assert_eq!(
                got,
                Some(Offset::Offset(*next)),
                "committed offset of partition {p}"
            );
        }
        drop(c);
        // A new member resumes exactly there: the first record it reads of each partition is
        // the committed one, and it reads the other 190 records once each.
        let c = kafka::consumer(&bs, &[("group.id", group)]);
        c.subscribe(&[topic]).expect("subscribe");
        let mut first: BTreeMap<i32, i64> = BTreeMap::new();
        let mut got = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < 190 {
            if Instant::now() > deadline {
                fail(
                    &cluster,
                    format!("resumed consumer read {} of 190", got.len()),
                );
            }
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                use rdkafka::Message;
                first.entry(m.partition()).or_insert(m.offset());
                assert!(got.insert((m.partition(), m.offset())), "read twice");
            }
        }
        for (p, offset) in &first {
            assert_eq!(
                Some(offset),
                committed.get(p).or(Some(&0)),
                "partition {p} resumed elsewhere"
            );
        }
        cluster
    })
    .await;
}

/// A static member (group.instance.id) restarted within its session timeout
/// gets its partitions back, and the other members see no rebalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_keeps_partitions_without_rebalance() {
    let topic = "static-t";
    group_test(
        2,
        &[(topic, 6)],
        "static-group",
        move |cluster, bs, group| {
            let log = Arc::new(Mutex::new(Vec::new()));
            let props = |i: usize| {
                vec![
                    ("group.instance.id".to_string(), format!("instance-{i}")),
                    ("session.timeout.ms".to_string(), "10000".to_string()),
                ]
            };
            let start = |i: usize| {
                let p = props(i);
                let extra: Vec<(&str, &str)> =
                    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Member::start(&bs, group, topic, i, &extra, log.clone())
            };
            let mut members: Vec<Member> = (0..3).map(start).collect();
            let before = wait_for_assignment(cluster, &members, 6);
            std::thread::sleep(Duration::from_secs(2));
            let rebalances: Vec<usize> = members
                .iter()
                .map(|m| m.rebalances.load(Ordering::SeqCst))
                .collect();

            // Restart member 0 with the same instance id (a static member sends no LeaveGroup).
            members[0].close();
            members[0] = start(0);
            let deadline = Instant::now() + Duration::from_secs(30);
            while members[0].assignment() != before[0] {
                if Instant::now() > deadline {
                    fail(
                        cluster,
                        format!(
                            "restarted static member got {:?}, had {:?}",
                            members[0].assignment(),
                            before[0]
                        ),
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Well past the heartbeat interval: still no rebalance for the others.
            std::thread::sleep(Duration::from_secs(3));
            for i in 1..3 {
                assert_eq!(
                    members[i].rebalances.load(Ordering::SeqCst),
                    rebalances[i],
                    "member {i} saw a rebalance"
                );
                assert_eq!(members[i].assignment(), before[i]);
            }
            let mut c = coordinator_client(&bs, group);
            let d = describe(&mut c, group);
            assert_eq!((d.group_state.as_str(), d.members.len()), ("Stable", 3));
            let mut instances: Vec<String> = d
                .members
                .iter()
                .filter_map(|m| m.group_instance_id.as_ref().map(|i| i.to_string()))
                .collect();
            instances.sort();
            assert_eq!(instances, vec!["instance-0", "instance-1", "instance-2"]);
        },
    )
    .await;
}

/// librdkafka: cooperative-sticky members share the partitions, move only
/// what must move when a member joins or leaves, and consume every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_rebalances_incrementally() {
    let topic = "coop-t";
    group_test(2, &[(topic, 6)], "coop-group", move |cluster, bs, group| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let extra = [("partition.assignment.strategy", "cooperative-sticky")];
        let mut produced = produce(cluster, topic, 300, "p");
        let mut members: Vec<Member> = (0..2)
            .map(|i| Member::start(&bs, group, topic, i, &extra, log.clone()))
            .collect();
        let two = wait_for_even_assignment(cluster, &members, 6);
        wait_for_consumed(cluster, &log, &produced);

        members.push(Member::start(&bs, group, topic, 2, &extra, log.clone()));
        produced.extend(produce(cluster, topic, 300, "q"));
        let three = wait_for_even_assignment(cluster, &members, 6);
        // Sticky: the first two kept two of their three partitions each.
        for i in 0..2 {
            let kept = three[i].iter().filter(|p| two[i].contains(p)).count();
            assert_eq!(kept, 2, "member {i} had {:?}, now {:?}", two[i], three[i]);
        }
        wait_for_consumed(cluster, &log, &produced);

        members[2].close();
        produced.extend(produce(cluster, topic, 300, "r"));
        let back = wait_for_assignment(cluster, &members[..2], 6);
        for i in 0..2 {
            assert!(
                three[i].iter().all(|p| back[i].contains(p)),
                "member {i} lost a partition it kept: {:?} -> {:?}",
                three[i],
                back[i]
            );
        }
        wait_for_consumed(cluster, &log, &produced);
    })
    .await;
}

/// kafka-python: range and round-robin groups, assigned by the client's own
/// assignors: `integration/python/groups_test.py` against a two-broker cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_range_and_roundrobin_groups() {
    require_python_modules("kafka", "kafka-python is");
    let _serial = serial().await;
    let cluster = cluster(2).start().await;
    run_python_test(&cluster, "groups_test.py");
}

/// The internal offsets topic is the coordinators' storage: clients cannot delete it, grow it
/// (that would move groups to other coordinators) or create it themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_offsets_topic_is_protected() {
    let _serial = serial().await;
    let cluster = cluster(1).start().await;
    let bs = cluster.bootstrap();
    let first = bs.split(',').next().expect("bootstrap").to_string();
    blocking(move || {
        // FindCoordinator makes the broker create __consumer_offsets.
        find_coordinator(&first, "protect-group");
        let mut c = RawClient::negotiated(&first);

        let v = c.version::<DeleteTopicsRequest>();
        let mut req = DeleteTopicsRequest::default();
        if v >= 6 {
            req = req.with_topics(vec![
                kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(topic_name("__consumer_offsets"))),
            ]);
        } else {
            req = req.with_topic_names(vec![topic_name("__consumer_offsets")]);
        }
        let resp = c.call(&req, v).expect("DeleteTopics");
        assert_eq!(
            resp.responses[0].error_code, 42,
            "INVALID_REQUEST for deleting it"
        );

        let v = c.version::<CreatePartitionsRequest>();
        let req = CreatePartitionsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic_name("__consumer_offsets"))
                .with_count(60),
        ]);
        let resp = c.call(&req, v).expect("CreatePartitions");
        assert_eq!(
            resp.results[0].error_code, 42,
            "INVALID_REQUEST for growing it"
        );

        // It is still there and still serves groups.
        find_coordinator(&first, "protect-group-2");
    })
    .await;
}

/// Offsets of a group without members are removed after `offsets.retention.minutes` (one
/// minute here), and the group with them; a group is kept while its offsets are fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_group_offsets_expire_after_the_retention() {
    let _serial = serial().await;
    let cluster = cluster(1)
        .broker_arg("--offsets-retention-minutes", "1")
        .broker_arg("--offsets-retention-check-ms", "1000")
        .start()
        .await;
    let bs = cluster.bootstrap();
    create_topic(&cluster, "expire-t", 1, &[]).await;
    blocking(move || {
        let group = "expiring-group";
        let mut c = coordinator_client(&bs, group);
        // A simple consumer's commit: no membership, generation -1.
        assert_eq!(
            commit(&mut c, group, "", -1, &[("expire-t", 0, 5)]),
            vec![0]
        );
        let committed_at = Instant::now();
        assert_eq!(fetch_offsets(&mut c, group, &[("expire-t", 0)])[0].0, 5);
        // Well within the retention it is still there.
        std::thread::sleep(Duration::from_secs(20));
        assert_eq!(
            fetch_offsets(&mut c, group, &[("expire-t", 0)])[0].0,
            5,
            "expired after {:?}, before the one-minute retention",
            committed_at.elapsed()
        );
        assert!(list_groups(&bs, &[]).iter().any(|(g, _, _)| g == group));
        // Past the retention (plus the check interval) the offsets and the group are gone.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let offset = fetch_offsets(&mut c, group, &[("expire-t", 0)])[0].0;
            let listed = list_groups(&bs, &[]).iter().any(|(g, _, _)| g == group);
            if offset == -1 && !listed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "offset {offset}, listed {listed} after {:?}",
                committed_at.elapsed()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await;
}

/// A coordinator holds at most --max-groups-per-coordinator groups: a JoinGroup or a simple
/// consumer's OffsetCommit that would create one more is refused with GROUP_MAX_SIZE_REACHED
/// (and counted), while the groups it holds go on. Before, any client could create groups
/// without end, each kept and scanned every tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_groups_past_the_limit_are_refused() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .brokers(1)
        .broker_arg("--offsets-topic-partitions", "1")
        .broker_arg("--max-groups-per-coordinator", "2")
        .start()
        .await;
    let bs = cluster.bootstrap();
    create_topic(&cluster, "limited-t", 1, &[]).await;
    blocking(move || {
        let mut c = coordinator_client(&bs, "limited-a");
        // Two groups: a member joining one, a simple consumer committing to the other.
        let (member, cid) = start_join(&mut c, "limited-a", "limited-t");
        let joined = finish_join(&mut c, cid);
        assert_eq!(joined.error_code, code::NONE, "join of the first group");
        let v = c.version::<SyncGroupRequest>();
        let synced = c
            .call(
                &sync_request(
                    "limited-a",
                    &member,
                    joined.generation_id,
                    &[(&member, b"A")],
                ),
                v,
            )
            .expect("SyncGroup");
        assert_eq!(synced.error_code, code::NONE, "sync of the first group");
        assert_eq!(
            commit(&mut c, "limited-b", "", -1, &[("limited-t", 0, 5)]),
            vec![0]
        );
        // A third, either way, is refused.
        let third = join(&mut c, &join_request("limited-c", "", None, "limited-t"));
        assert_eq!(
            third.error_code,
            code::GROUP_MAX_SIZE_REACHED,
            "third group's join"
        );
        assert_eq!(
            commit(&mut c, "limited-d", "", -1, &[("limited-t", 0, 5)]),
            vec![code::GROUP_MAX_SIZE_REACHED],
            "third group's commit"
        );
        let listed: BTreeSet<String> = list_groups(&bs, &[]).into_iter().map(|g| g.0).collect();
        assert_eq!(
            listed,
            BTreeSet::from(["limited-a".into(), "limited-b".into()])
        );
        // The groups it holds keep working.
        assert_eq!(
            commit(
                &mut c,
                "limited-a",
                &member,
                joined.generation_id,
                &[("limited-t", 0, 7)]
            ),
            vec![0]
        );
        assert_eq!(
            commit(&mut c, "limited-b", "", -1, &[("limited-t", 0, 9)]),
            vec![0]
        );
        let metrics = integration::http_get(&cluster.brokers[0].http_addr, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        assert!(
            metrics.lines().any(|l| l == "groups_refused_total 2"),
            "groups_refused is not 2:\n{metrics}"
        );
        cluster
    })
    .await;
}

/// A JoinGroup whose metadata would make the group's record larger than one stream append
/// is refused (GROUP_MAX_SIZE_REACHED) and nothing else changes: the coordinator keeps
/// serving its other groups. Before, the record's append failed and the coordinator
/// restarted, dropping every group's pending requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_too_large_to_store_is_refused_alone() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .brokers(1)
        .broker_arg("--offsets-topic-partitions", "1")
        .start()
        .await;
    let bs = cluster.bootstrap();
    create_topic(&cluster, "huge-join-t", 1, &[]).await;
    blocking(move || {
        let mut c = coordinator_client(&bs, "kept-group");
        assert_eq!(
            commit(&mut c, "kept-group", "", -1, &[("huge-join-t", 0, 5)]),
            vec![0]
        );
        // 17 MiB of subscription metadata: a valid Kafka request, too large to store.
        let huge = bytes::Bytes::from(vec![0u8; 17 << 20]);
        let mut req = join_request("huge-group", "", None, "huge-join-t");
        req.protocols[0].metadata = huge;
        let answer = join(&mut c, &req);
        assert_eq!(
            answer.error_code,
            code::GROUP_MAX_SIZE_REACHED,
            "oversized join"
        );
        // The coordinator did not restart: the other group is served at once, as it was.
        assert_eq!(
            fetch_offsets(&mut c, "kept-group", &[("huge-join-t", 0)])[0].0,
            5
        );
        assert_eq!(
            commit(&mut c, "kept-group", "", -1, &[("huge-join-t", 0, 6)]),
            vec![0]
        );
        let log = cluster.brokers[0].log();
        assert!(
            log.contains("the group's record would not fit one append"),
            "the refusal was not logged"
        );
        // A stream owner that stops logs "stops: <why>" with its kind.
        assert!(
            !log.lines()
                .any(|l| l.contains("stops:") && l.contains("group coordinator")),
            "the coordinator stopped:\n{}",
            cluster.brokers[0].log_tail()
        );
        cluster
    })
    .await;
}
