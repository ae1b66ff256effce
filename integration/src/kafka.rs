//! librdkafka (the `rdkafka` crate) helpers shared by the Kafka tests and `kafka-bench`:
//! client configs that work against any Kafka-compatible bootstrap address, a producer
//! context that records every delivery report, and waits on what Metadata shows.
//!
//! Everything here is blocking (librdkafka's own threads do the I/O); call it from a test
//! thread or `spawn_blocking`, not from inside a single-threaded async runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

/// A client config for `bootstrap` with what every test client wants: IPv4 only (librdkafka
/// may try `::1` for `localhost`), short reconnect backoff, and quick metadata refresh so that
/// clients follow partition moves.
pub fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("socket.timeout.ms", "30000");
    c
}

/// One delivery report: which message (`id`, the opaque given at send), where it landed.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: usize,
    pub partition: i32,
    pub offset: i64,
    pub error: Option<String>,
    /// When the report arrived.
    pub at: Instant,
}

/// A producer context that keeps every delivery report.
#[derive(Default)]
pub struct Collector {
    pub deliveries: Mutex<Vec<Delivery>>,
}

impl ClientContext for Collector {}

impl ProducerContext for Collector {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<usize>) {
        let d = match result {
            Ok(m) => Delivery {
                id: *id,
                partition: m.partition(),
                offset: m.offset(),
                error: None,
                at: Instant::now(),
            },
            Err((e, m)) => Delivery {
                id: *id,
                partition: m.partition(),
                offset: m.offset(),
                error: Some(e.to_string()),
                at: Instant::now(),
            },
        };
        self.deliveries.lock().unwrap().push(d);
    }
}

pub type TestProducer = BaseProducer<Collector>;

/// [`config`] with `settings` on top, then `extra` (a caller's additions, which win).
pub fn config_with(
    bootstrap: &str,
    settings: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> ClientConfig {
    let mut c = config(bootstrap);
    for (k, v) in settings.iter().chain(extra) {
        c.set(*k, *v);
    }
    c
}

/// A producer for `bootstrap` with the `extra` settings on top of [`config`].
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> TestProducer {
    config_with(bootstrap, &[("message.timeout.ms", "60000")], extra)
        .create_with_context(Collector::default())
        .expect("create producer")
}

/// A producer as an application that must not lose or duplicate records sets one up:
/// idempotent, acks=all, client retries for two minutes.
pub fn idempotent_producer(bootstrap: &str) -> TestProducer {
    producer(
        bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "120000"),
        ],
    )
}

/// Sends `record`, polling for delivery reports while librdkafka's queue is full.
pub fn send(producer: &TestProducer, record: BaseRecord<'_, [u8], [u8], Box<usize>>) {
    if let Err(e) = send_when_queued(producer, record, Duration::from_millis(10)) {
        panic!("produce failed at send: {e}");
    }
}

/// Sends `record` with any producer; while librdkafka's queue is full, polls for `poll`
/// (which serves delivery reports and makes room) and tries again. Any other error is answered.
pub fn send_when_queued<C: ProducerContext>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
    poll: Duration,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(poll);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Flushes and answers the delivery reports (taken out of the producer's collector).
pub fn flush(producer: &TestProducer, timeout: Duration) -> Vec<Delivery> {
    if let Err(e) = producer.flush(timeout) {
        let pending = producer.in_flight_count();
        panic!("flush did not finish within {timeout:?}: {e} ({pending} messages pending)");
    }
    std::mem::take(&mut *producer.context().deliveries.lock().unwrap())
}

/// A consumer that is only ever `assign`ed (no group membership, no commits): reads from
/// the earliest offset when an assigned offset is out of range.
pub fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let settings = [
        ("group.id", "strata-test-unused"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("fetch.wait.max.ms", "100"),
    ];
    config_with(bootstrap, &settings, extra)
        .create()
        .expect("create consumer")
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    config(bootstrap).create().expect("create admin client")
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .operation_timeout(Some(Duration::from_secs(30)))
}

/// Metadata of one topic (or of all topics) as `bootstrap` answers it, asked by a consumer
/// client (which never asks the broker to auto-create a topic).
pub fn metadata(bootstrap: &str, topic: Option<&str>) -> Result<Metadata, String> {
    let c = consumer(bootstrap, &[]);
    c.fetch_metadata(topic, Duration::from_secs(10))
        .map_err(|e| format!("metadata request failed: {e}"))
}

/// A partition and the broker that leads it, as Metadata shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub partition: i32,
    pub broker_id: i32,
    /// `host:port` of the leader, from the Metadata broker list.
    pub addr: String,
}

/// Waits until Metadata shows `topic` with exactly `partitions` partitions, each with a
/// leader that is in the broker list; answers the leaders in partition order.
pub fn wait_for_leaders(
    bootstrap: &str,
    topic: &str,
    partitions: usize,
    timeout: Duration,
) -> Result<Vec<Leader>, String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match metadata(bootstrap, Some(topic)) {
            Ok(md) => match leaders_in(&md, topic) {
                Ok(leaders) if leaders.len() == partitions => return Ok(leaders),
                Ok(leaders) => {
                    last = format!(
                    "topic {topic} has {} partitions with leaders, want {partitions}: {leaders:?}",
                    leaders.len()
                )
                }
                Err(e) => last = e,
            },
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(format!("after {timeout:?}: {last}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The leaders of `topic` in `md`, or why they are not all there yet.
pub fn leaders_in(md: &Metadata, topic: &str) -> Result<Vec<Leader>, String> {
    let brokers: HashMap<i32, String> = md
        .brokers()
        .iter()
        .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
        .collect();
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("topic {topic} not in metadata"))?;
    if let Some(e) = t.error() {
        return Err(format!("topic {topic} error in metadata: {e:?}"));
    }
    let mut out = Vec::new();
    for p in t.partitions() {
        if let Some(e) = p.error() {
            return Err(format!("partition {topic}/{} error: {e:?}", p.id()));
        }
        let addr = brokers.get(&p.leader()).ok_or_else(|| {
            format!(
                "partition {topic}/{} leader {} is not in the broker list {brokers:?}",
                p.id(),
                p.leader()
            )
        })?;
        out.push(Leader {
            partition: p.id(),
            broker_id: p.leader(),
            addr: addr.clone(),
        });
    }
    out.sort_by_key(|l| l.partition);
    Ok(out)
}

/// Waits until the broker at `addr` lists every address of `expected` in its Metadata.
pub fn wait_for_broker_list(
    addr: &str,
    expected: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match metadata(addr, None) {
            Ok(md) => {
                let listed: Vec<String> = md
                    .brokers()
                    .iter()
                    .map(|b| format!("{}:{}", b.host(), b.port()))
                    .collect();
                if expected.iter().all(|e| listed.contains(e)) {
                    return Ok(());
                }
                last = format!("lists {listed:?}, want all of {expected:?}");
            }
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(format!("after {timeout:?}: {last}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates `topic` through the admin API (replication factor: the broker's default) with
/// the given config overrides and waits until all its partitions have leaders.
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<Vec<Leader>, String> {
    let admin = admin(bootstrap);
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = admin
        .create_topics([&new], &admin_options())
        .await
        .map_err(|e| format!("CreateTopics {topic} failed: {e}"))?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(format!("CreateTopics {name}: {code:?}"));
        }
    }
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        wait_for_leaders(
            &bootstrap,
            &topic,
            partitions as usize,
            Duration::from_secs(60),
        )
    })
    .await
    .expect("metadata task")
}

/// (low, high) watermarks of one partition: ListOffsets earliest and latest.
///
/// Like an application, it asks again (for 30 s, with fresh metadata) when the answer is a
/// leadership change: librdkafka's watermark query does not retry those itself, and a
/// partition may be moving between brokers when a test asks.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> Result<(i64, i64), String> {
    use rdkafka::error::RDKafkaErrorCode as Code;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut c = consumer(bootstrap, &[]);
    let mut asked = 1;
    loop {
        match c.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(w) => return Ok(w),
            Err(e)
                if std::time::Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(Code::NotLeaderForPartition | Code::LeaderNotAvailable)
                    ) =>
            {
                if asked == 1 {
                    eprintln!("ListOffsets {topic}/{partition}: {e}; asking again for 30 s");
                }
                asked += 1;
                std::thread::sleep(Duration::from_millis(200));
                c = consumer(bootstrap, &[]);
            }
            Err(e) => {
                return Err(format!(
                    "ListOffsets {topic}/{partition} (asked {asked} times): {e}"
                ))
            }
        }
    }
}

/// A consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// (timestamp type name, milliseconds)
    pub timestamp: (String, i64),
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Record {
        let timestamp = match m.timestamp() {
            rdkafka::Timestamp::NotAvailable => ("none".to_string(), -1),
            rdkafka::Timestamp::CreateTime(t) => ("create".to_string(), t),
            rdkafka::Timestamp::LogAppendTime(t) => ("log-append".to_string(), t),
        };
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| k.to_vec()),
            value: m.payload().map(|v| v.to_vec()),
            timestamp,
            headers,
        }
    }
}

/// Reads `topic`'s partitions from the given start offsets until each has reached its end
/// offset (exclusive) in `until`; answers the records per partition in the order consumed.
/// Fails on a consumer error or when `timeout` passes first.
pub fn read_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    from: &BTreeMap<i32, Offset>,
    until: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<BTreeMap<i32, Vec<Record>>, String> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in from {
        tpl.add_partition_offset(topic, *p, *o)
            .map_err(|e| format!("assign {topic}/{p}: {e}"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assign {topic}: {e}"))?;
    let mut out: BTreeMap<i32, Vec<Record>> = from.keys().map(|p| (*p, Vec::new())).collect();
    let done = |out: &BTreeMap<i32, Vec<Record>>| {
        until.iter().all(|(p, end)| {
            *end <= 0
                || out
                    .get(p)
                    .and_then(|v| v.last())
                    .is_some_and(|r| r.offset >= end - 1)
        })
    };
    let deadline = Instant::now() + timeout;
    while !done(&out) {
        if Instant::now() > deadline {
            let got: BTreeMap<i32, (usize, Option<i64>)> = out
                .iter()
                .map(|(p, v)| (*p, (v.len(), v.last().map(|r| r.offset))))
                .collect();
            return Err(format!(
                "reading {topic} timed out after {timeout:?}: got (count, last offset) {got:?}, want ends {until:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let r = Record::from_message(&m);
                out.entry(r.partition).or_default().push(r);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(format!("consumer error reading {topic}: {e}")),
        }
    }
    Ok(out)
}

/// Reads one partition from `from` up to `end` (exclusive) with a fresh consumer.
pub fn read_partition(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    from: Offset,
    end: i64,
    timeout: Duration,
) -> Result<Vec<Record>, String> {
    let c = consumer(bootstrap, &[]);
    let mut out = read_partitions(
        &c,
        topic,
        &BTreeMap::from([(partition, from)]),
        &BTreeMap::from([(partition, end)]),
        timeout,
    )?;
    Ok(out.remove(&partition).unwrap_or_default())
}
