//! `soak-bench`: many small batches into a few busy partitions (idempotent producer, a
//! consuming group committing every second, a short `retention.ms` so retention trims all
//! along) against a cluster started by `scripts/cluster up`, printing what must stay flat
//! over a long run: each process kind's memory, descriptors and threads, PD's snapshot and
//! Raft log on disk, the streams and ranges PD keeps, the ranges range servers hold, and the
//! bytes and records of the topic's meta streams (read back through the stream client).
//!
//! ```sh
//! scripts/cluster up && cargo run --release --bin soak-bench -- --duration-secs 720
//! ```
//!
//! One line per sample (`sample t=…s …`), then `start …` and `end …` (the first sample after
//! the warm-up and the last). At the default 1,000 batches/s per partition, 720 s is the
//! batch count of an hour at 200 batches/s per partition. WAL bytes grow with the data (WAL
//! reclaim comes with the object-storage tier); every other figure should stay flat.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use integration::kafka;
use protocol::pd::{ListStreams, ListTopics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use stream_client::StreamClient;

#[derive(Parser, Debug, Clone)]
#[command(about = "Soak benchmark: do memory, descriptors and metadata stay flat?")]
struct Args {
    /// The cluster's data directory (scripts/cluster's STRATA_DATA).
    #[arg(long, default_value = "strata-data")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "soak")]
    topic: String,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Target produce rate, in batches (one small record each) per second per partition.
    #[arg(long, default_value_t = 1000)]
    batches_per_sec: u64,
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// `retention.ms` of the topic.
    #[arg(long, default_value_t = 60_000)]
    retention_ms: u64,
    #[arg(long, default_value_t = 720)]
    duration_secs: u64,
    /// Samples before this are warm-up; the first one after it is `start`.
    #[arg(long, default_value_t = 60)]
    warmup_secs: u64,
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
}

/// What one sample measured.
#[derive(Debug, Default, Clone)]
struct Sample {
    /// (kind, resident MiB, open descriptors, threads) summed over that kind's processes.
    processes: Vec<(String, f64, u64, u64)>,
    pd_snapshot_bytes: u64,
    pd_raft_bytes: u64,
    pd_streams: usize,
    pd_ranges: usize,
    rs_ranges: f64,
    wal_bytes: u64,
    meta_bytes: u64,
    meta_records: u64,
    produced: u64,
    consumed: u64,
}

impl Sample {
    fn line(&self) -> String {
        let mut out = String::new();
        for (kind, rss, fds, threads) in &self.processes {
            out += &format!("{kind}_rss_mib={rss:.1} {kind}_fds={fds} {kind}_threads={threads} ");
        }
        out += &format!(
            "pd_snapshot_kib={:.1} pd_raft_kib={:.1} pd_streams={} pd_ranges={} rs_ranges={} \
             wal_mib={:.1} meta_kib={:.1} meta_records={} produced={} consumed={}",
            self.pd_snapshot_bytes as f64 / 1024.0,
            self.pd_raft_bytes as f64 / 1024.0,
            self.pd_streams,
            self.pd_ranges,
            self.rs_ranges,
            self.wal_bytes as f64 / (1 << 20) as f64,
            self.meta_bytes as f64 / 1024.0,
            self.meta_records,
            self.produced,
            self.consumed
        );
        out
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Resident MiB, open descriptors and threads of process `pid`.
fn process_figures(pid: &str) -> (f64, u64, u64) {
    let status = read(&Path::new("/proc").join(pid).join("status"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(Path::new("/proc").join(pid).join("fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (field("VmRSS:") as f64 / 1024.0, fds, field("Threads:"))
}

/// The value of an unlabelled metric `name` on the HTTP endpoint at `addr`.
fn metric(addr: &str, name: &str) -> f64 {
    integration::http_get(addr, "/metrics")
        .and_then(|(_, body)| {
            body.lines().find_map(|l| {
                let (key, value) = l.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok())?
            })
        })
        .unwrap_or(0.0)
}

struct Soak {
    args: Args,
    streams: StreamClient,
    produced: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
}

impl Soak {
    /// The cluster's process directories (those with a pid file), by kind.
    fn processes(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.args.data) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !e.path().join("pid").exists() {
                    continue;
                }
                let kind = match name.as_str() {
                    n if n.starts_with("broker") => "broker",
                    n if n.starts_with("range-server") => "rs",
                    n if n.starts_with("pd") => "pd",
                    _ => continue,
                };
                out.push((kind.to_string(), e.path()));
            }
        }
        out.sort();
        out
    }

    async fn sample(&self) -> Sample {
        let mut s = Sample::default();
        for (kind, dir) in self.processes() {
            let pid = read(&dir.join("pid")).trim().to_string();
            let (rss, fds, threads) = process_figures(&pid);
            match s.processes.iter_mut().find(|p| p.0 == kind) {
                Some(p) => {
                    p.1 += rss;
                    p.2 += fds;
                    p.3 += threads;
                }
                None => s.processes.push((kind.clone(), rss, fds, threads)),
            }
            if kind == "pd" {
                let raft = dir.join("raft");
                s.pd_snapshot_bytes += std::fs::metadata(raft.join("snapshot"))
                    .map(|m| m.len())
                    .unwrap_or(0);
                s.pd_raft_bytes += dir_bytes(&raft);
            }
            if kind == "rs" {
                s.rs_ranges += metric(read(&dir.join("http.addr")).trim(), "strata_rs_ranges");
                s.wal_bytes += dir_bytes(&dir.join("wal"));
            }
        }
        if let Ok(streams) = self.streams.pd().call(ListStreams {}).await {
            s.pd_streams = streams.len();
            s.pd_ranges = streams.iter().map(|st| st.ranges.len()).sum();
        }
        let (bytes, records) = self.meta_streams_size().await;
        s.meta_bytes = bytes;
        s.meta_records = records;
        s.produced = self.produced.load(Ordering::Relaxed);
        s.consumed = self.consumed.load(Ordering::Relaxed);
        s
    }

    /// Bytes and records now in the topic's meta streams, read from their start.
    async fn meta_streams_size(&self) -> (u64, u64) {
        let Ok(topics) = self.streams.pd().call(ListTopics {}).await else {
            return (0, 0);
        };
        let Some(topic) = topics.into_iter().find(|t| t.name == self.args.topic) else {
            return (0, 0);
        };
        let (mut bytes, mut records) = (0, 0);
        for p in &topic.partitions {
            let Ok(info) = self.streams.describe(p.meta_stream).await else {
                continue;
            };
            let mut offset = info.start_offset;
            loop {
                match self.streams.read(p.meta_stream, offset, 4 << 20).await {
                    Ok(r) if !r.batches.is_empty() => {
                        bytes += r
                            .batches
                            .iter()
                            .map(|b| b.payload.len() as u64)
                            .sum::<u64>();
                        records += r.next_offset - offset;
                        offset = r.next_offset;
                    }
                    _ => break,
                }
            }
        }
        (bytes, records)
    }
}

/// Sends small records round-robin over the partitions at the target rate until `stop`.
fn produce(args: &Args, produced: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let producer = kafka::producer(
        &args.bootstrap,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("linger.ms", "0"),
            ("queue.buffering.max.messages", "100000"),
        ],
    );
    let value = vec![b'x'; args.record_bytes];
    let total_rate = args.batches_per_sec * args.partitions.max(1) as u64;
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * total_rate as f64) as u64;
        if sent >= due {
            producer.poll(Duration::from_millis(1));
            continue;
        }
        let partition = (sent % args.partitions.max(1) as u64) as i32;
        let record =
            BaseRecord::<[u8], [u8], Box<usize>>::with_opaque_to(&args.topic, Box::new(0usize))
                .partition(partition)
                .payload(&value[..]);
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err(_) => {
                producer.poll(Duration::from_millis(10));
            }
        }
        let done = producer
            .context()
            .deliveries
            .lock()
            .map(|mut d| {
                let n = d.iter().filter(|d| d.error.is_none()).count();
                d.clear();
                n
            })
            .unwrap_or(0);
        produced.fetch_add(done as u64, Ordering::Relaxed);
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(Duration::from_secs(30));
}

/// A group member reading everything and committing every second, until `stop`.
fn consume(args: &Args, consumed: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let consumer: BaseConsumer = kafka::consumer(
        &args.bootstrap,
        &[
            ("group.id", "soak-group"),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    if consumer.subscribe(&[&args.topic]).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            consumed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let pd_addr = read(&args.data.join("pd").join("rpc.addr"))
        .trim()
        .to_string();
    if pd_addr.is_empty() {
        return Err(format!(
            "no PD address in {}/pd/rpc.addr: start the cluster with scripts/cluster up",
            args.data.display()
        ));
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let retention = args.retention_ms.to_string();
    rt.block_on(kafka::create_topic(
        &args.bootstrap,
        &args.topic,
        args.partitions,
        &[("retention.ms", &retention)],
    ))?;
    let soak = Soak {
        streams: StreamClient::new(&[pd_addr]),
        produced: Arc::new(AtomicU64::new(0)),
        consumed: Arc::new(AtomicU64::new(0)),
        args,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (args, produced, stop) = (soak.args.clone(), soak.produced.clone(), stop.clone());
        std::thread::spawn(move || produce(&args, produced, stop))
    };
    let consumer = {
        let (args, consumed, stop) = (soak.args.clone(), soak.consumed.clone(), stop.clone());
        std::thread::spawn(move || consume(&args, consumed, stop))
    };
    let started = Instant::now();
    let total = Duration::from_secs(soak.args.duration_secs);
    let every = Duration::from_secs(soak.args.sample_secs.max(1));
    let mut first: Option<Sample> = None;
    let mut last = Sample::default();
    let mut next = Duration::ZERO;
    while started.elapsed() < total {
        std::thread::sleep(next.saturating_sub(started.elapsed()));
        let sample = rt.block_on(soak.sample());
        let t = started.elapsed().as_secs();
        println!("sample t={t}s {}", sample.line());
        if first.is_none() && t >= soak.args.warmup_secs {
            first = Some(sample.clone());
        }
        last = sample;
        next += every;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = producer.join();
    let _ = consumer.join();
    let end = rt.block_on(soak.sample());
    println!("start {}", first.unwrap_or(last).line());
    println!("end {}", end.line());
    Ok(())
}
