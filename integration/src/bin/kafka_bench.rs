//! `kafka-bench`: produce load against any Kafka-compatible bootstrap address through
//! librdkafka, and report produce throughput, produce latency (delivery report minus send)
//! and end-to-end latency (a consumer assigned to every partition from the end reads the
//! send time carried in each record).
//!
//! ```sh
//! scripts/cluster up && cargo run --release --bin kafka-bench          # ~10 s, defaults
//! kafka-bench --bootstrap 127.0.0.1:9092 --rate 50 --duration-secs 30 # latency at 50 MB/s
//! ```
//!
//! Prints, last, one line: `produce MB/s=… p50_ms=… p99_ms=… e2e_p99_ms=…` (MB = 10^6 bytes).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use integration::kafka;
use rand::RngCore;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

#[derive(Parser, Debug)]
#[command(about = "Kafka produce/end-to-end latency benchmark (librdkafka)")]
struct Args {
    /// Bootstrap servers (any Kafka-compatible broker).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to use; created with --partitions if it does not exist.
    #[arg(long, default_value = "kafka-bench")]
    topic: String,
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Bytes per record value (the first 24 carry the send time, run id and sequence).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Target produce rate in MB/s (10^6 bytes of values); unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Skip the end-to-end consumer.
    #[arg(long)]
    no_consumer: bool,
    /// Extra librdkafka producer setting, `key=value` (repeatable), e.g. `-X retries=0`.
    #[arg(short = 'X', long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Delivery reports: latency of each acknowledged record, count of failures.
#[derive(Default)]
struct Reports {
    latencies_us: Mutex<Vec<u32>>,
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    last_delivery: Mutex<Option<Instant>>,
}

struct BenchContext {
    reports: Arc<Reports>,
    record_bytes: u64,
}

impl ClientContext for BenchContext {}

impl ProducerContext for BenchContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let now = Instant::now();
        match result {
            Ok(_) => {
                let us = now.duration_since(*sent).as_micros().min(u32::MAX as u128) as u32;
                self.reports.latencies_us.lock().unwrap().push(us);
                self.reports.delivered.fetch_add(1, Ordering::Relaxed);
                self.reports
                    .delivered_bytes
                    .fetch_add(self.record_bytes, Ordering::Relaxed);
                *self.reports.last_delivery.lock().unwrap() = Some(now);
            }
            Err((e, _)) => {
                self.reports.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.reports.first_error.lock().unwrap();
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn ensure_topic(args: &Args) -> Result<(), String> {
    let md = kafka::metadata(&args.bootstrap, Some(&args.topic));
    let exists = md.as_ref().is_ok_and(|md| {
        md.topics()
            .iter()
            .any(|t| t.name() == args.topic && t.error().is_none() && !t.partitions().is_empty())
    });
    if !exists {
        let admin = kafka::admin(&args.bootstrap);
        let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(-1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let results = rt
            .block_on(admin.create_topics([&topic], &kafka::admin_options()))
            .map_err(|e| format!("create topic {}: {e}", args.topic))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(format!("create topic {name}: {code:?}")),
            }
        }
    }
    let md = kafka::metadata(&args.bootstrap, Some(&args.topic))?;
    let n = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    kafka::wait_for_leaders(
        &args.bootstrap,
        &args.topic,
        n.max(args.partitions as usize),
        Duration::from_secs(60),
    )
    .map(|_| ())
    .or_else(|_| {
        // An existing topic with another partition count: use what it has.
        kafka::wait_for_leaders(&args.bootstrap, &args.topic, n, Duration::from_secs(60))
            .map(|_| ())
    })
}

fn main() {
    let args = Args::parse();
    if args.record_bytes < 24 {
        eprintln!("--record-bytes must be at least 24");
        std::process::exit(2);
    }
    if let Err(e) = ensure_topic(&args) {
        eprintln!("kafka-bench: {e}");
        std::process::exit(1);
    }
    let partitions = kafka::metadata(&args.bootstrap, Some(&args.topic))
        .ok()
        .and_then(|md| {
            md.topics()
                .iter()
                .find(|t| t.name() == args.topic)
                .map(|t| t.partitions().len() as i32)
        })
        .unwrap_or(args.partitions);
    let before: i64 = (0..partitions)
        .filter_map(|p| kafka::watermarks(&args.bootstrap, &args.topic, p).ok())
        .map(|(_, high)| high)
        .sum();
    let mut run_id = [0u8; 8];
    rand::rng().fill_bytes(&mut run_id);

    // End-to-end consumer: assigned to every partition at the end, before producing.
    let stop = Arc::new(AtomicBool::new(false));
    let e2e: Arc<Mutex<Vec<u32>>> = Arc::default();
    let consumed = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let consumer_thread = if args.no_consumer {
        None
    } else {
        let consumer: BaseConsumer = kafka::consumer(
            &args.bootstrap,
            &[("fetch.wait.max.ms", "10"), ("fetch.min.bytes", "1")],
        );
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&args.topic, p, Offset::End)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        // Let the consumer resolve its end offsets before the first record is sent.
        let ready = Instant::now() + Duration::from_secs(10);
        while Instant::now() < ready {
            let _ = consumer.poll(Duration::from_millis(100));
            let positions = consumer.position().ok();
            let resolved = positions.is_some_and(|tpl| {
                tpl.elements()
                    .iter()
                    .all(|e| matches!(e.offset(), Offset::Offset(_)))
            });
            if resolved {
                break;
            }
        }
        let (stop, e2e, consumed, duplicates) = (
            stop.clone(),
            e2e.clone(),
            consumed.clone(),
            duplicates.clone(),
        );
        Some(std::thread::spawn(move || {
            let mut local = Vec::new();
            let mut seen = std::collections::HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let Some(v) = m.payload() else { continue };
                        if v.len() < 24 || v[8..16] != run_id {
                            continue;
                        }
                        if !seen.insert(u64::from_be_bytes(v[16..24].try_into().unwrap())) {
                            duplicates.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let sent = u64::from_be_bytes(v[0..8].try_into().unwrap());
                        local.push(now_us().saturating_sub(sent).min(u32::MAX as u64) as u32);
                        consumed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                    Some(Err(e)) => eprintln!("consumer: {e}"),
                }
            }
            e2e.lock().unwrap().extend(local);
        }))
    };

    let reports = Arc::new(Reports::default());
    let mut config = kafka::config(&args.bootstrap);
    config
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", args.linger_ms.to_string())
        .set("message.timeout.ms", "60000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000");
    for kv in &args.set {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("-X wants key=value, not {kv:?}");
            std::process::exit(2);
        };
        config.set(k, v);
    }
    let producer: BaseProducer<BenchContext> = config
        .create_with_context(BenchContext {
            reports: reports.clone(),
            record_bytes: args.record_bytes as u64,
        })
        .expect("create producer");

    let mut value = vec![0u8; args.record_bytes];
    rand::rng().fill_bytes(&mut value);
    value[8..16].copy_from_slice(&run_id);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration_secs);
    let mut sent: u64 = 0;
    let mut partition = 0;
    eprintln!(
        "kafka-bench: {} topic {} ({partitions} partitions), {} B records, acks={}, compression={}, rate={}, {} s",
        args.bootstrap,
        args.topic,
        args.record_bytes,
        args.acks,
        args.compression,
        args.rate.map(|r| format!("{r} MB/s")).unwrap_or("unlimited".into()),
        args.duration_secs
    );
    // Delivery reports are served by a thread of their own, as they arrive: a poll from the
    // send loop serves one event per call, and a report that waits in the queue adds its
    // wait to the produce latency (which once read 100 ms at a p50 of 10 ms end to end).
    let polling = AtomicBool::new(true);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while polling.load(Ordering::Relaxed) {
                producer.poll(Duration::from_millis(10));
            }
        });
        while Instant::now() < end {
            if let Some(rate) = args.rate {
                let allowed = rate * 1e6 * start.elapsed().as_secs_f64();
                if (sent * args.record_bytes as u64) as f64 >= allowed {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
            }
            value[0..8].copy_from_slice(&now_us().to_be_bytes());
            value[16..24].copy_from_slice(&sent.to_be_bytes());
            let record: BaseRecord<'_, [u8], [u8], Box<Instant>> =
                BaseRecord::with_opaque_to(&args.topic, Box::new(Instant::now()))
                    .partition(partition)
                    .payload(&value[..]);
            if let Err(e) = kafka::send_when_queued(&producer, record, Duration::from_millis(1)) {
                eprintln!("send failed: {e}");
                std::process::exit(1);
            }
            sent += 1;
            partition = (partition + 1) % partitions;
        }
        polling.store(false, Ordering::Relaxed);
    });
    let send_secs = start.elapsed().as_secs_f64();
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        eprintln!(
            "flush: {e} ({} still in flight)",
            producer.in_flight_count()
        );
    }
    let delivered = reports.delivered.load(Ordering::Relaxed);
    let failed = reports.failed.load(Ordering::Relaxed);
    let last = reports
        .last_delivery
        .lock()
        .unwrap()
        .unwrap_or_else(Instant::now);
    let secs = last
        .duration_since(start)
        .as_secs_f64()
        .max(send_secs)
        .max(1e-9);
    let bytes = reports.delivered_bytes.load(Ordering::Relaxed) as f64;

    // Give the consumer a moment to catch up, then stop it.
    if let Some(t) = consumer_thread {
        let wait = Instant::now() + Duration::from_secs(10);
        while consumed.load(Ordering::Relaxed) < delivered && Instant::now() < wait {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
    }

    let mut lat = std::mem::take(&mut *reports.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let mut e2e = std::mem::take(&mut *e2e.lock().unwrap());
    e2e.sort_unstable();
    let mbps = bytes / 1e6 / secs;
    println!(
        "sent {sent} records, delivered {delivered}, failed {failed}{}",
        reports
            .first_error
            .lock()
            .unwrap()
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
    println!(
        "produce: {mbps:.1} MB/s, {:.0} records/s over {secs:.2} s",
        delivered as f64 / secs
    );
    println!(
        "produce latency ms: p50={:.2} p99={:.2} p999={:.2} max={:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(f64::NAN)
    );
    // Records the log holds for this run's partitions, from the watermarks before and after.
    let after: i64 = (0..partitions)
        .filter_map(|p| kafka::watermarks(&args.bootstrap, &args.topic, p).ok())
        .map(|(_, high)| high)
        .sum();
    println!(
        "log grew by {} records for {delivered} acknowledged; consumer saw {} duplicates",
        after - before,
        duplicates.load(Ordering::Relaxed)
    );
    println!(
        "end-to-end latency ms ({} of {delivered} records seen by the consumer): p50={:.2} p99={:.2} p999={:.2}",
        e2e.len(),
        percentile(&e2e, 0.5),
        percentile(&e2e, 0.99),
        percentile(&e2e, 0.999)
    );
    println!(
        "produce MB/s={mbps:.1} p50_ms={:.2} p99_ms={:.2} e2e_p99_ms={:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&e2e, 0.99)
    );
    if delivered == 0 {
        std::process::exit(1);
    }
}
