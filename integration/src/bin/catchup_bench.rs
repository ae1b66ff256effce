//! `catchup-bench`: one consumer reads a topic from offset 0 to its end, as a consumer that
//! catches up does, and reports the read throughput. Against a cluster whose history is
//! offloaded (and brokers restarted, so no cache helps) the reads come from objects; against
//! one without an object store they come from the range servers.
//!
//! ```sh
//! scripts/cluster up && cargo run --release --bin kafka-bench -- --no-consumer
//! cargo run --release --bin catchup-bench -- --topic kafka-bench
//! ```
//!
//! Prints, last, one line: `catch-up MB/s=… records=… secs=…` (MB = 10^6 bytes of keys and
//! values).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use integration::kafka;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

#[derive(Parser, Debug)]
#[command(about = "Catch-up read benchmark: a topic from offset 0 to its end (librdkafka)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "kafka-bench")]
    topic: String,
    /// Give up after this long.
    #[arg(long, default_value_t = 300)]
    max_secs: u64,
}

fn main() {
    let args = Args::parse();
    let md = kafka::metadata(&args.bootstrap, Some(&args.topic)).expect("metadata");
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    assert!(!partitions.is_empty(), "no topic {}", args.topic);
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let (_, high) = kafka::watermarks(&args.bootstrap, &args.topic, p).expect("watermarks");
        ends.insert(p, high);
    }
    let consumer = kafka::consumer(
        &args.bootstrap,
        &[
            ("fetch.max.bytes", "52428800"),
            ("max.partition.fetch.bytes", "8388608"),
        ],
    );
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(&args.topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut left: BTreeMap<i32, i64> = ends.into_iter().filter(|(_, e)| *e > 0).collect();
    let (mut bytes, mut records) = (0u64, 0u64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "not caught up: {left:?} left");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                bytes += (m.payload_len() + m.key().map_or(0, |k| k.len())) as u64;
                records += 1;
                if left
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    left.remove(&m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "catch-up MB/s={:.1} records={records} secs={secs:.1}",
        bytes as f64 / secs / 1e6
    );
}
