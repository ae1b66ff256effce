//! Topic administration through real clients: auto-create on produce and on
//! Metadata, DeleteTopics (topic and streams gone), CreatePartitions, DescribeConfigs with
//! defaults and overrides (AlterConfigs, IncrementalAlterConfigs), retention trimming,
//! DeleteRecords, max.message.bytes and LogAppendTime.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration::kafka;
use integration::raw_kafka::*;
use integration::testing::*;
use integration::Cluster;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use protocol::pd::ListStreams;
use rdkafka::admin::{AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use stream_client::PdClient;

/// Produces `values` to `topic`/`partition` (each flushed on its own when `one_batch_each`)
/// with timestamp `ts` (None: now); answers the offsets.
fn produce(
    cluster: &Cluster,
    topic: &str,
    partition: Option<i32>,
    values: &[Vec<u8>],
    ts: Option<i64>,
    one_batch_each: bool,
) -> Vec<(i32, i64)> {
    let producer = kafka::producer(&cluster.bootstrap(), &[("acks", "all"), ("linger.ms", "5")]);
    let mut deliveries = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut r = BaseRecord::with_opaque_to(topic, Box::new(i)).payload(&v[..]);
        if let Some(p) = partition {
            r = r.partition(p);
        }
        if let Some(ts) = ts {
            r = r.timestamp(ts);
        }
        kafka::send(&producer, r);
        if one_batch_each {
            deliveries.extend(kafka::flush(&producer, Duration::from_secs(60)));
        }
    }
    deliveries.extend(kafka::flush(&producer, Duration::from_secs(60)));
    deliveries.sort_by_key(|d| d.id);
    if let Some(d) = deliveries.iter().find(|d| d.error.is_some()) {
        fail(cluster, format!("produce to {topic}: {d:?}"));
    }
    assert_eq!(
        deliveries.len(),
        values.len(),
        "delivery reports for {topic}"
    );
    deliveries.iter().map(|d| (d.partition, d.offset)).collect()
}

/// Produces `value` alone to partition 0 of `topic` and checks that it is the partition's
/// first record (offset 0); `what` names it in the failure.
fn produce_first(cluster: &Cluster, topic: &str, value: &[u8], what: &str) {
    let offsets = produce(cluster, topic, Some(0), &[value.to_vec()], None, false);
    assert_eq!(offsets, vec![(0, 0)], "{what}");
}

/// Two brokers that auto-create topics with three partitions.
async fn auto_creating_cluster() -> Cluster {
    Cluster::builder()
        .brokers(2)
        .num_partitions(3)
        .start()
        .await
}

fn topic_listed(bs: &str, topic: &str) -> Result<bool, String> {
    let md = kafka::metadata(bs, None)?;
    Ok(md.topics().iter().any(|t| t.name() == topic))
}

async fn live_streams(cluster: &Cluster) -> usize {
    let pd = PdClient::new(&[cluster.pd_addr()]);
    let streams = pd.call(ListStreams {}).await.expect("ListStreams at PD");
    streams.iter().filter(|s| !s.deleted).count()
}

/// Auto-creation: a produce to an unknown topic creates it with --num-partitions
/// partitions; so does Metadata asking with allow_auto_topic_creation, and Metadata without
/// it answers UNKNOWN_TOPIC_OR_PARTITION and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_auto_created_on_produce_and_metadata() {
    let _serial = serial().await;
    let cluster = auto_creating_cluster().await;
    let bs = cluster.bootstrap();

    // librdkafka producers ask Metadata with allow_auto_topic_creation=true.
    let offsets = produce(
        &cluster,
        "auto-on-produce",
        None,
        &[b"first".to_vec()],
        None,
        false,
    );
    assert_eq!(offsets[0].1, 0, "first message of a new topic");
    ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "auto-on-produce", 3, Duration::from_secs(60)),
    );

    let mut raw = RawClient::negotiated(&cluster.kafka_addr(0));
    let md = raw_metadata(&mut raw, Some(&["auto-on-metadata"]), true);
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("auto-on-metadata"));
    let code_seen = t.map(|t| t.error_code);
    assert!(
        matches!(code_seen, Some(code::NONE) | Some(code::LEADER_NOT_AVAILABLE)),
        "Metadata with allow_auto_topic_creation for a new topic answered {code_seen:?}, want 0 or LEADER_NOT_AVAILABLE"
    );
    ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "auto-on-metadata", 3, Duration::from_secs(60)),
    );

    let md = raw_metadata(&mut raw, Some(&["not-auto"]), false);
    let code_seen = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("not-auto"))
        .map(|t| t.error_code);
    assert_eq!(
        code_seen,
        Some(code::UNKNOWN_TOPIC_OR_PARTITION),
        "Metadata without allow_auto_topic_creation for an unknown topic"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !ok(&cluster, topic_listed(&bs, "not-auto")),
        "Metadata without allow_auto_topic_creation created the topic"
    );
}

/// With --auto-create-topics false a produce to an unknown topic fails and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_can_be_turned_off() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .brokers(1)
        .auto_create_topics(false)
        .start()
        .await;
    let bs = cluster.bootstrap();
    let producer = kafka::producer(&bs, &[("message.timeout.ms", "5000")]);
    kafka::send(
        &producer,
        BaseRecord::with_opaque_to("nowhere", Box::new(0)).payload(&b"x"[..]),
    );
    let _ = producer_flush_quietly(&producer);
    let deliveries = std::mem::take(&mut *producer_deliveries(&producer));
    assert_eq!(deliveries.len(), 1, "one delivery report");
    assert!(
        deliveries[0].error.is_some(),
        "produce to an unknown topic with auto-create off was acknowledged: {:?}",
        deliveries[0]
    );
    assert!(
        !ok(&cluster, topic_listed(&bs, "nowhere")),
        "the topic was created although auto-create is off"
    );
}

fn producer_flush_quietly(p: &kafka::TestProducer) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::producer::Producer;
    p.flush(Duration::from_secs(30))
}

fn producer_deliveries(p: &kafka::TestProducer) -> std::sync::MutexGuard<'_, Vec<kafka::Delivery>> {
    use rdkafka::producer::Producer;
    p.context().deliveries.lock().unwrap()
}

/// DeleteTopics: Metadata stops listing the topic, its streams are deleted at PD, and a
/// produce to the name afterwards auto-creates a new, empty topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topics_removes_topic_and_streams() {
    let _serial = serial().await;
    let cluster = auto_creating_cluster().await;
    let bs = cluster.bootstrap();
    let baseline = live_streams(&cluster).await;
    create_topic(&cluster, "doomed", 2, &[]).await;
    produce(
        &cluster,
        "doomed",
        Some(0),
        &vec![b"old".to_vec(); 10],
        None,
        false,
    );
    let with_topic = live_streams(&cluster).await;
    assert!(
        with_topic >= baseline + 2,
        "PD has {with_topic} live streams with a 2-partition topic, {baseline} before"
    );

    let admin = kafka::admin(&bs);
    let results = admin
        .delete_topics(&["doomed"], &kafka::admin_options())
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("DeleteTopics: {e}")));
    for r in results {
        if let Err((name, code)) = r {
            fail(&cluster, format!("DeleteTopics {name}: {code:?}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok(&cluster, topic_listed(&bs, "doomed")) {
        if Instant::now() > deadline {
            fail(
                &cluster,
                "Metadata still lists the deleted topic after 30 s".into(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = live_streams(&cluster).await;
        if live <= baseline {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &cluster,
                format!("PD still has {live} live streams after the delete ({baseline} before the topic)"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Re-created by the produce (auto-create is on): new, empty, --num-partitions wide.
    produce_first(
        &cluster,
        "doomed",
        b"new",
        "first message of the re-created topic",
    );
    ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "doomed", 3, Duration::from_secs(60)),
    );
    let records = read_from_start(&cluster, "doomed", 0, 1);
    assert_eq!(
        records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        vec![Some(b"new".to_vec())],
        "the re-created topic holds only the new message"
    );
    let (low, high) = ok(&cluster, kafka::watermarks(&bs, "doomed", 0));
    assert_eq!((low, high), (0, 1), "watermarks of the re-created topic");
}

/// CreatePartitions grows a topic; the new partitions get leaders and accept data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_adds_partitions_that_accept_data() {
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(2), &[("grow", 2)]).await;
    let bs = cluster.bootstrap();
    produce(
        &cluster,
        "grow",
        Some(1),
        &[b"before".to_vec()],
        None,
        false,
    );
    let admin = kafka::admin(&bs);
    let results = admin
        .create_partitions([&NewPartitions::new("grow", 5)], &kafka::admin_options())
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("CreatePartitions: {e}")));
    for r in results {
        if let Err((name, code)) = r {
            fail(&cluster, format!("CreatePartitions {name}: {code:?}"));
        }
    }
    ok(
        &cluster,
        kafka::wait_for_leaders(&bs, "grow", 5, Duration::from_secs(60)),
    );
    for p in 2..5 {
        let offsets = produce(
            &cluster,
            "grow",
            Some(p),
            &[format!("new partition {p}").into_bytes()],
            None,
            false,
        );
        assert_eq!(offsets, vec![(p, 0)], "first message of new partition {p}");
        let records = read_from_start(&cluster, "grow", p, 1);
        assert_eq!(
            records[0].value.as_deref(),
            Some(format!("new partition {p}").as_bytes())
        );
    }
    // The old partition kept its data.
    let records = read_from_start(&cluster, "grow", 1, 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"before"[..]));
    // Shrinking is refused.
    let results = admin
        .create_partitions([&NewPartitions::new("grow", 3)], &kafka::admin_options())
        .await;
    let refused = match results {
        Err(_) => true,
        Ok(rs) => rs.iter().all(|r| r.is_err()),
    };
    assert!(refused, "CreatePartitions to fewer partitions was accepted");
}

async fn describe(
    cluster: &Cluster,
    topic: &str,
) -> BTreeMap<String, (Option<String>, bool, String)> {
    let admin = kafka::admin(&cluster.bootstrap());
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &kafka::admin_options())
        .await
        .unwrap_or_else(|e| fail(cluster, format!("DescribeConfigs {topic}: {e}")));
    let resource = match results.into_iter().next() {
        Some(Ok(r)) => r,
        other => fail(cluster, format!("DescribeConfigs {topic}: {other:?}")),
    };
    resource
        .entries
        .into_iter()
        .map(|e| {
            let source = match e.source {
                ConfigSource::Default => "default",
                ConfigSource::DynamicTopic => "topic",
                ConfigSource::StaticBroker => "static-broker",
                ConfigSource::DynamicBroker => "dynamic-broker",
                ConfigSource::DynamicDefaultBroker => "dynamic-default-broker",
                ConfigSource::Unknown => "unknown",
            };
            (e.name, (e.value, e.is_default, source.to_string()))
        })
        .collect()
}

fn expect_config(
    configs: &BTreeMap<String, (Option<String>, bool, String)>,
    name: &str,
    value: &str,
    overridden: bool,
    when: &str,
) {
    let entry = configs
        .get(name)
        .unwrap_or_else(|| panic!("{when}: DescribeConfigs lacks {name}: {configs:?}"));
    assert_eq!(
        entry.0.as_deref(),
        Some(value),
        "{when}: value of {name} ({entry:?})"
    );
    if overridden {
        assert!(
            !entry.1 && entry.2 == "topic",
            "{when}: {name} should be a topic override (is_default false, source DynamicTopic): {entry:?}"
        );
    } else {
        assert!(
            entry.1 || entry.2 != "topic",
            "{when}: {name} should not be a topic override: {entry:?}"
        );
    }
}

fn incremental_alter(cluster: &Cluster, topic: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let mut raw = RawClient::negotiated(&cluster.kafka_addr(0));
    let v = raw.version::<IncrementalAlterConfigsRequest>();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes(topic))
            .with_configs(
                ops.iter()
                    .map(|(k, op, val)| {
                        AlterableConfig::default()
                            .with_name(str_bytes(k))
                            .with_config_operation(*op)
                            .with_value(val.map(str_bytes))
                    })
                    .collect(),
            ),
    ]);
    let resp = ok(cluster, raw.call(&req, v));
    assert_eq!(resp.responses.len(), 1, "IncrementalAlterConfigs responses");
    resp.responses[0].error_code
}

const INVALID_CONFIG: i16 = 40;

/// AlterConfigs (API 33) for one topic, raw; answers the resource's error code.
fn raw_alter(cluster: &Cluster, topic: &str, set: &[(&str, &str)]) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{
        AlterConfigsResource as Resource, AlterableConfig as Config,
    };
    use kafka_protocol::messages::AlterConfigsRequest;
    let mut raw = RawClient::negotiated(&cluster.kafka_addr(0));
    let v = raw.version::<AlterConfigsRequest>();
    let req = AlterConfigsRequest::default().with_resources(vec![Resource::default()
        .with_resource_type(2)
        .with_resource_name(str_bytes(topic))
        .with_configs(
            set.iter()
                .map(|(k, v)| {
                    Config::default()
                        .with_name(str_bytes(k))
                        .with_value(Some(str_bytes(v)))
                })
                .collect(),
        )]);
    let resp = ok(cluster, raw.call(&req, v));
    assert_eq!(resp.responses.len(), 1, "AlterConfigs responses");
    resp.responses[0].error_code
}

async fn alter(cluster: &Cluster, topic: &str, set: &[(&str, &str)]) -> Result<(), String> {
    let admin = kafka::admin(&cluster.bootstrap());
    let mut ac = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in set {
        ac = ac.set(k, v);
    }
    let results = admin
        .alter_configs([&ac], &kafka::admin_options())
        .await
        .map_err(|e| format!("AlterConfigs: {e}"))?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(format!("AlterConfigs {topic}: {code:?}"));
        }
    }
    Ok(())
}

/// DescribeConfigs shows Kafka's defaults and the topic's overrides; AlterConfigs replaces
/// the whole set of overrides, IncrementalAlterConfigs sets and deletes single ones; an
/// invalid value is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_alter_topic_configs() {
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(2), &[("cfg", 1)]).await;
    create_topic(&cluster, "cfg-created", 1, &[("retention.ms", "3600000")]).await;

    let c = describe(&cluster, "cfg").await;
    expect_config(&c, "retention.ms", "604800000", false, "defaults");
    expect_config(&c, "retention.bytes", "-1", false, "defaults");
    expect_config(&c, "cleanup.policy", "delete", false, "defaults");
    expect_config(
        &c,
        "message.timestamp.type",
        "CreateTime",
        false,
        "defaults",
    );
    let max = c
        .get("max.message.bytes")
        .and_then(|e| e.0.as_deref())
        .and_then(|v| v.parse::<i64>().ok());
    assert!(
        max.is_some_and(|m| m > 0),
        "defaults: max.message.bytes is a positive number: {:?}",
        c.get("max.message.bytes")
    );
    let c = describe(&cluster, "cfg-created").await;
    expect_config(&c, "retention.ms", "3600000", true, "set at CreateTopics");

    ok(
        &cluster,
        alter(
            &cluster,
            "cfg",
            &[("retention.ms", "7200000"), ("cleanup.policy", "compact")],
        )
        .await,
    );
    let c = describe(&cluster, "cfg").await;
    expect_config(&c, "retention.ms", "7200000", true, "after AlterConfigs");
    expect_config(&c, "cleanup.policy", "compact", true, "after AlterConfigs");

    let code_seen = incremental_alter(&cluster, "cfg", &[("max.message.bytes", 0, Some("2048"))]);
    assert_eq!(
        code_seen, 0,
        "IncrementalAlterConfigs SET max.message.bytes"
    );
    let c = describe(&cluster, "cfg").await;
    expect_config(
        &c,
        "max.message.bytes",
        "2048",
        true,
        "after incremental SET",
    );
    expect_config(
        &c,
        "retention.ms",
        "7200000",
        true,
        "after incremental SET (kept)",
    );

    let code_seen = incremental_alter(&cluster, "cfg", &[("retention.ms", 1, None)]);
    assert_eq!(code_seen, 0, "IncrementalAlterConfigs DELETE retention.ms");
    let c = describe(&cluster, "cfg").await;
    expect_config(
        &c,
        "retention.ms",
        "604800000",
        false,
        "after incremental DELETE",
    );
    expect_config(
        &c,
        "max.message.bytes",
        "2048",
        true,
        "after incremental DELETE (kept)",
    );

    // AlterConfigs (not incremental) replaces the whole set: the others revert.
    ok(
        &cluster,
        alter(&cluster, "cfg", &[("retention.ms", "1000000")]).await,
    );
    let c = describe(&cluster, "cfg").await;
    expect_config(
        &c,
        "retention.ms",
        "1000000",
        true,
        "after a second AlterConfigs",
    );
    expect_config(
        &c,
        "cleanup.policy",
        "delete",
        false,
        "after a second AlterConfigs",
    );
    assert_ne!(
        c.get("max.message.bytes").and_then(|e| e.0.as_deref()),
        Some("2048"),
        "AlterConfigs replaces every override: max.message.bytes should be back to its default"
    );

    // Refused: a non-numeric retention, an unknown topic. (rust-rdkafka 0.39's
    // alter_configs drops per-resource errors, so the error code is checked raw.)
    let code_seen = raw_alter(&cluster, "cfg", &[("retention.ms", "soon")]);
    assert_eq!(
        code_seen, INVALID_CONFIG,
        "AlterConfigs retention.ms=soon: want INVALID_CONFIG"
    );
    let code_seen = incremental_alter(&cluster, "cfg", &[("retention.ms", 0, Some("soon"))]);
    assert_ne!(
        code_seen, 0,
        "IncrementalAlterConfigs retention.ms=soon was accepted"
    );
    // A max.message.bytes the storage path cannot carry (one append is at most a frame, 16
    // MiB) is refused when set, not discovered when a 17 MiB batch arrives.
    let code_seen = raw_alter(&cluster, "cfg", &[("max.message.bytes", "20971520")]);
    assert_eq!(
        code_seen, INVALID_CONFIG,
        "AlterConfigs max.message.bytes=20 MiB: want INVALID_CONFIG"
    );
    match kafka::create_topic(
        &cluster.bootstrap(),
        "cfg-too-large",
        1,
        &[("max.message.bytes", "20971520")],
    )
    .await
    {
        Err(e) if e.contains("InvalidConfig") => {}
        other => fail(
            &cluster,
            format!(
                "CreateTopics with max.message.bytes=20 MiB: want InvalidConfig, got {other:?}"
            ),
        ),
    }
    let code_seen = incremental_alter(&cluster, "no-such-topic", &[("retention.ms", 0, Some("1"))]);
    assert_ne!(
        code_seen, 0,
        "IncrementalAlterConfigs on an unknown topic was accepted"
    );
    let c = describe(&cluster, "cfg").await;
    expect_config(&c, "retention.ms", "1000000", true, "after refused changes");
}

/// Polls the watermarks of partition 0 of `topic` every 250 ms: `check` asserts on each
/// reading with the distinct readings so far, until the log start offset is `trimmed`;
/// fails with `late` and the readings after 60 s.
fn trimmed_until(
    cluster: &Cluster,
    topic: &str,
    check: impl Fn(i64, i64, &[(i64, i64)]),
    trimmed: impl Fn(i64) -> bool,
    late: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let (low, high) = ok(cluster, kafka::watermarks(&cluster.bootstrap(), topic, 0));
        if seen.last() != Some(&(low, high)) {
            seen.push((low, high));
        }
        check(low, high, &seen);
        if trimmed(low) {
            break;
        }
        if Instant::now() > deadline {
            fail(cluster, format!("{late}: watermarks over time {seen:?}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// retention.ms trims records older than the retention (by their timestamps), and
/// retention.bytes trims the oldest data beyond the size; the log start offset moves,
/// ListOffsets earliest follows, a fetch below it is OFFSET_OUT_OF_RANGE, newer data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_old_data() {
    let _serial = serial().await;
    let cluster = Cluster::builder()
        .brokers(1)
        .retention_check_ms(500)
        .start()
        .await;
    let bs = cluster.bootstrap();

    // retention.ms: 10 batches an hour old, then 10 batches from now; 10 minutes retention.
    create_topic(&cluster, "ret-ms", 1, &[("retention.ms", "600000")]).await;
    let old: Vec<Vec<u8>> = (0..10).map(|i| format!("old {i}").into_bytes()).collect();
    let new: Vec<Vec<u8>> = (0..10).map(|i| format!("new {i}").into_bytes()).collect();
    produce(
        &cluster,
        "ret-ms",
        Some(0),
        &old,
        Some(now_ms() - 3_600_000),
        true,
    );
    produce(&cluster, "ret-ms", Some(0), &new, None, true);
    trimmed_until(
        &cluster,
        "ret-ms",
        |low, high, seen| {
            assert!(
                low <= 10 && high == 20,
                "retention.ms trimmed data newer than the retention: watermarks over time {seen:?}"
            )
        },
        |low| low == 10,
        "retention.ms=600000 did not trim the 10 hour-old batches within 60 s (check every 500 ms)",
    );
    let mut raw = RawClient::negotiated(&cluster.kafka_addr(0));
    let (topic_id, _) = raw_wait_topic(&mut raw, "ret-ms", 1);
    let data = ok(&cluster, raw_fetch(&mut raw, "ret-ms", topic_id, 0, 0, 100));
    assert_eq!(
        data.error_code,
        code::OFFSET_OUT_OF_RANGE,
        "fetch at offset 0 after it was trimmed: {data:?}"
    );
    let earliest = ok(&cluster, raw_list_offsets(&mut raw, "ret-ms", 0, -2));
    assert_eq!(
        (earliest.error_code, earliest.offset),
        (0, 10),
        "ListOffsets earliest"
    );
    // A consumer starting at 0 resets to the new start and reads exactly the new records.
    let records = ok(
        &cluster,
        kafka::read_partition(
            &bs,
            "ret-ms",
            0,
            Offset::Offset(0),
            20,
            Duration::from_secs(30),
        ),
    );
    assert_eq!(
        records
            .iter()
            .map(|r| (r.offset, r.value.clone().unwrap_or_default()))
            .collect::<Vec<_>>(),
        (10..20)
            .map(|o| (o, format!("new {}", o - 10).into_bytes()))
            .collect::<Vec<_>>(),
        "records left after retention.ms"
    );

    // retention.bytes: 100 batches of about 20 KB, 600 KB retained. Like Kafka (whole
    // segments), the size is kept at a granularity: the time index's step of 256 KiB.
    create_topic(&cluster, "ret-bytes", 1, &[("retention.bytes", "600000")]).await;
    let values: Vec<Vec<u8>> = (0..100).map(|i| value_for(5, i, 20_000, false)).collect();
    produce(&cluster, "ret-bytes", Some(0), &values, None, true);
    trimmed_until(
        &cluster,
        "ret-bytes",
        |low, high, seen| {
            assert_eq!(high, 100, "high watermark of ret-bytes: {seen:?}");
            assert!(
                low <= 85,
                "retention.bytes=600000 kept less than 300 KB (15 batches of 20 KB): watermarks {seen:?}"
            );
        },
        |low| low >= 70,
        "retention.bytes=600000 kept more than 600 KB of 2 MB after 60 s",
    );
}

/// DeleteRecords moves the log start offset: ListOffsets earliest and consumers follow it,
/// and deleting beyond the high watermark is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_log_start_offset() {
    let (_serial, cluster) = start_with_topics(Cluster::builder().brokers(1), &[("dr", 1)]).await;
    let bs = cluster.bootstrap();
    let values: Vec<Vec<u8>> = (0..100).map(|i| format!("v{i}").into_bytes()).collect();
    // Several records per batch, so 40 falls inside a batch.
    produce(&cluster, "dr", Some(0), &values, None, false);
    let admin = kafka::admin(&bs);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("dr", 0, Offset::Offset(40))
        .unwrap();
    let result = admin
        .delete_records(&tpl, &kafka::admin_options())
        .await
        .unwrap_or_else(|e| fail(&cluster, format!("DeleteRecords: {e}")));
    let e = result.find_partition("dr", 0).expect("partition in result");
    assert!(e.error().is_ok(), "DeleteRecords dr/0: {:?}", e.error());
    assert_eq!(
        e.offset(),
        Offset::Offset(40),
        "DeleteRecords low watermark"
    );
    let (low, high) = ok(&cluster, kafka::watermarks(&bs, "dr", 0));
    assert_eq!((low, high), (40, 100), "watermarks after DeleteRecords");
    let records = read_from_start(&cluster, "dr", 0, 100);
    assert_eq!(
        records.first().map(|r| r.offset),
        Some(40),
        "first record read from the beginning after DeleteRecords"
    );
    assert_eq!(records.len(), 60, "records left");
    assert!(records
        .iter()
        .all(|r| r.value.as_deref() == Some(format!("v{}", r.offset).as_bytes())));

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("dr", 0, Offset::Offset(500))
        .unwrap();
    let result = admin.delete_records(&tpl, &kafka::admin_options()).await;
    let refused = match &result {
        Err(_) => true,
        Ok(r) => r
            .find_partition("dr", 0)
            .map(|e| e.error().is_err())
            .unwrap_or(true),
    };
    assert!(
        refused,
        "DeleteRecords beyond the high watermark was accepted: {result:?}"
    );
    let (low, _) = ok(&cluster, kafka::watermarks(&bs, "dr", 0));
    assert_eq!(low, 40, "log start after a refused DeleteRecords");
}

/// max.message.bytes is enforced per topic (the client gets MESSAGE_TOO_LARGE), and
/// message.timestamp.type=LogAppendTime gives records the broker's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_bytes_and_log_append_time() {
    let _serial = serial().await;
    let cluster = Cluster::builder().brokers(1).start().await;
    let bs = cluster.bootstrap();
    create_topic(&cluster, "small", 1, &[("max.message.bytes", "2000")]).await;
    let producer = kafka::producer(&bs, &[("acks", "all")]);
    let big = value_for(6, 0, 5000, false);
    kafka::send(
        &producer,
        BaseRecord::with_opaque_to("small", Box::new(0))
            .partition(0)
            .payload(&big[..]),
    );
    let d = kafka::flush(&producer, Duration::from_secs(60));
    assert_eq!(d.len(), 1);
    let err = d[0].error.clone().unwrap_or_default();
    assert!(
        err.contains("MessageSizeTooLarge") || err.contains("too large"),
        "a 5000-byte message to a topic with max.message.bytes=2000: {:?}",
        d[0]
    );
    produce_first(
        &cluster,
        "small",
        b"fits",
        "a small message after the refused one",
    );

    create_topic(
        &cluster,
        "appended",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let before = now_ms();
    produce(
        &cluster,
        "appended",
        Some(0),
        &[b"a".to_vec(), b"b".to_vec()],
        Some(1_000_000),
        false,
    );
    let after = now_ms();
    let records = read_from_start(&cluster, "appended", 0, 2);
    for r in records {
        assert_eq!(
            r.timestamp.0, "log-append",
            "timestamp type at offset {}",
            r.offset
        );
        assert!(
            r.timestamp.1 >= before - 5000 && r.timestamp.1 <= after + 5000,
            "LogAppendTime {} not between produce start {before} and end {after}",
            r.timestamp.1
        );
    }
}
