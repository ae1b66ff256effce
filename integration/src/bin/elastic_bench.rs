//! `elastic-bench`: how fast partitions move, against a running cluster, under load.
//!
//! An idempotent librdkafka producer sends at `--rate` records/s to every partition of the
//! topic the whole time. Then `--moves` planned moves, one after another: each partition in
//! turn is moved (AlterPartitionReassignments) to the next broker by id, and the move's time
//! is from just before the request to the first produce the new owner acknowledges (a raw
//! Produce to that broker, retried every millisecond until it answers without error). With
//! `--kill-cmd`, last, a broker is killed (the command, e.g. `scripts/cluster kill
//! broker-3`, must kill the broker at `--kill-addr`) and the failover time is until every
//! partition it led is acknowledged by a live broker. With `--add-cmd`, a broker is added and
//! the scale-out time is until it leads its share of a fresh topic (`<topic>-scale`, whose
//! partitions no move pinned) and has acknowledged a produce to one of them. The background
//! producer must end with no failed delivery.
//!
//! ```sh
//! scripts/cluster up && target/release/elastic-bench --moves 100
//! elastic-bench --kill-addr 127.0.0.1:9094 --kill-cmd "scripts/cluster kill broker-3" \
//!     --add-cmd "scripts/cluster add broker"
//! ```
//!
//! Prints, last, one line: `move_p50_ms=… move_p99_ms=… failover_ms=… scale_out_s=…`
//! (failover_ms is NaN without `--kill-cmd`, scale_out_s without `--add-cmd`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use integration::kafka;
use integration::raw_kafka::{
    raw_metadata, raw_produce, raw_reassign, raw_topic, record_batch, RawClient,
};
use kafka_protocol::records::Compression;
use rdkafka::producer::BaseRecord;

#[derive(Parser, Debug)]
#[command(about = "Partition move and failover times under load")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to use; created with --partitions if it does not exist.
    #[arg(long, default_value = "elastic-bench")]
    topic: String,
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Planned moves to make and time.
    #[arg(long, default_value_t = 100)]
    moves: usize,
    /// Background load: idempotent records per second (1 KiB each).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// A command that kills the broker at --kill-addr, for the failover time.
    #[arg(long)]
    kill_cmd: Option<String>,
    #[arg(long)]
    kill_addr: Option<String>,
    /// A command that starts one more broker (e.g. `scripts/cluster add broker`), for the
    /// scale-out time: until it leads its share of a fresh topic's partitions and has
    /// acknowledged a produce to one of them.
    #[arg(long)]
    add_cmd: Option<String>,
}

/// Brokers as Metadata shows them: id -> address.
fn brokers(c: &mut RawClient) -> BTreeMap<i32, String> {
    raw_metadata(c, None, false)
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect()
}

/// Leader id of each partition of `topic`.
fn leaders(c: &mut RawClient, topic: &str) -> Result<BTreeMap<i32, i32>, String> {
    let (_, parts) = raw_topic(c, topic).map_err(|e| format!("metadata of {topic}: error {e}"))?;
    Ok(parts.into_iter().map(|p| (p.partition, p.leader)).collect())
}

/// Produces one small record to `partition` at the broker `addr` until it is acknowledged;
/// answers when. Connection errors and Kafka errors are retried (1 ms apart) until `deadline`.
fn first_ack(
    addr: &str,
    topic: &str,
    topic_id: uuid::Uuid,
    partition: i32,
    deadline: Instant,
) -> Result<Instant, String> {
    let mut client: Option<RawClient> = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        if client.is_none() {
            // RawClient::negotiated panics on a refused connection: check first.
            if std::net::TcpStream::connect(addr).is_ok() {
                client = Some(RawClient::negotiated(addr));
            }
        }
        if let Some(c) = client.as_mut() {
            let batch = record_batch(&[(None, b"elastic-bench probe")], Compression::None, 0);
            match raw_produce(c, topic, topic_id, partition, batch) {
                Ok(p) if p.error_code == 0 => return Ok(Instant::now()),
                Ok(p) => last = format!("error code {}", p.error_code),
                Err(e) => {
                    last = e;
                    client = None;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(format!(
        "{topic}/{partition} at {addr}: no acknowledgement: {last}"
    ))
}

/// One produce of a small record to `partition` at `addr` (connecting once, through
/// `clients`): when it was acknowledged, if it was.
fn probe(
    clients: &mut HashMap<String, RawClient>,
    addr: &str,
    topic: &str,
    topic_id: uuid::Uuid,
    partition: i32,
) -> Option<Instant> {
    if !clients.contains_key(addr) {
        std::net::TcpStream::connect(addr).ok()?;
        clients.insert(addr.to_string(), RawClient::negotiated(addr));
    }
    let c = clients.get_mut(addr)?;
    let batch = record_batch(&[(None, b"elastic-bench probe")], Compression::None, 0);
    match raw_produce(c, topic, topic_id, partition, batch) {
        Ok(p) if p.error_code == 0 => Some(Instant::now()),
        Ok(_) => None,
        Err(_) => {
            clients.remove(addr);
            None
        }
    }
}

/// Runs `cmd` through `sh -c`; an error unless it exits 0.
fn run_cmd(cmd: &str) -> Result<(), String> {
    let status = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd}: {status}"));
    }
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("elastic-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let first = args
        .bootstrap
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut c = RawClient::negotiated(&first);
    if raw_topic(&mut c, &args.topic).is_err() {
        rt.block_on(kafka::create_topic(
            &args.bootstrap,
            &args.topic,
            args.partitions,
            &[],
        ))?;
    }
    let (topic_id, _) =
        raw_topic(&mut c, &args.topic).map_err(|e| format!("topic {}: error {e}", args.topic))?;
    let partitions = leaders(&mut c, &args.topic)?.len() as i32;

    // The background load.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (bootstrap, topic, rate) = (args.bootstrap.clone(), args.topic.clone(), args.rate);
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let producer = kafka::idempotent_producer(&bootstrap);
            let value = vec![b'x'; 1024];
            let started = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while i < due {
                    kafka::send(
                        &producer,
                        BaseRecord::with_opaque_to(&topic, Box::new(i as usize))
                            .partition((i % partitions as u64) as i32)
                            .payload(&value[..]),
                    );
                    i += 1;
                }
                producer.poll(Duration::from_millis(5));
            }
            sent.store(i, Ordering::Relaxed);
            kafka::flush(&producer, Duration::from_secs(180))
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    let ids: Vec<i32> = brokers(&mut c).keys().copied().collect();
    if ids.len() < 2 {
        return Err(format!(
            "moves need two brokers or more, Metadata shows {ids:?}"
        ));
    }
    let mut times_ms = Vec::with_capacity(args.moves);
    for m in 0..args.moves {
        let p = (m % partitions as usize) as i32;
        let at = leaders(&mut c, &args.topic)?
            .get(&p)
            .copied()
            .ok_or(format!("no partition {p}"))?;
        let to = ids[(ids.iter().position(|b| *b == at).unwrap_or(0) + 1) % ids.len()];
        let addr = brokers(&mut c)
            .get(&to)
            .cloned()
            .ok_or(format!("broker {to} not in Metadata"))?;
        let start = Instant::now();
        let (top, code, why) = raw_reassign(&mut c, 0, &args.topic, p, Some(vec![to]), false)?;
        if (top, code) != (0, 0) {
            return Err(format!(
                "move {m}: {}/{p} to {to} refused: {top} {code} {why}",
                args.topic
            ));
        }
        let acked = first_ack(
            &addr,
            &args.topic,
            topic_id,
            p,
            start + Duration::from_secs(60),
        )?;
        times_ms.push((acked - start).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    times_ms.sort_by(f64::total_cmp);
    eprintln!(
        "{} moves: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times_ms.len(),
        percentile(&times_ms, 0.5),
        percentile(&times_ms, 0.99),
        times_ms.last().copied().unwrap_or(f64::NAN)
    );

    let mut failover_ms = f64::NAN;
    if let (Some(cmd), Some(victim)) = (&args.kill_cmd, &args.kill_addr) {
        let ids_by_addr = brokers(&mut c);
        let victim_id = ids_by_addr
            .iter()
            .find(|(_, a)| *a == victim)
            .map(|(id, _)| *id)
            .ok_or(format!("no broker at {victim}"))?;
        if first == *victim {
            return Err("--kill-addr must not be the first bootstrap address".into());
        }
        let led: Vec<i32> = leaders(&mut c, &args.topic)?
            .into_iter()
            .filter(|(_, l)| *l == victim_id)
            .map(|(p, _)| p)
            .collect();
        let start = Instant::now();
        run_cmd(cmd)?;
        // The port closes once the last of the process's threads is gone, a moment after
        // its main thread shows as exited.
        let closing = Instant::now();
        while std::net::TcpStream::connect(victim).is_ok() {
            if closing.elapsed() > Duration::from_secs(2) {
                return Err(format!(
                    "{victim} still accepts connections 2 s after {cmd}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let deadline = start + Duration::from_secs(60);
        let mut last = start;
        // Each round: one Metadata for all, then one produce to each partition still waiting
        // whose leader is live; until every partition was acknowledged once.
        let mut waiting: BTreeSet<i32> = led.iter().copied().collect();
        let mut clients: HashMap<String, RawClient> = HashMap::new();
        while !waiting.is_empty() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} partitions of {} not acknowledged after 60 s: {waiting:?}",
                    waiting.len(),
                    args.topic
                ));
            }
            let now = leaders(&mut c, &args.topic)?;
            let addrs = brokers(&mut c);
            for p in waiting.clone() {
                let Some(addr) = now
                    .get(&p)
                    .filter(|l| **l != victim_id && **l >= 0)
                    .and_then(|l| addrs.get(l))
                else {
                    continue;
                };
                if let Some(at) = probe(&mut clients, addr, &args.topic, topic_id, p) {
                    last = last.max(at);
                    waiting.remove(&p);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        failover_ms = (last - start).as_secs_f64() * 1000.0;
        eprintln!(
            "failover: {} partitions of broker {victim_id} acknowledged elsewhere after {failover_ms:.0} ms",
            led.len()
        );
    }

    let mut scale_out_s = f64::NAN;
    if let Some(cmd) = &args.add_cmd {
        let scale_topic = format!("{}-scale", args.topic);
        if raw_topic(&mut c, &scale_topic).is_err() {
            rt.block_on(kafka::create_topic(
                &args.bootstrap,
                &scale_topic,
                args.partitions,
                &[],
            ))?;
        }
        let (scale_id, _) = raw_topic(&mut c, &scale_topic)
            .map_err(|e| format!("topic {scale_topic}: error {e}"))?;
        let before: Vec<i32> = brokers(&mut c).keys().copied().collect();
        let start = Instant::now();
        run_cmd(cmd)?;
        let deadline = start + Duration::from_secs(60);
        let (new_id, share) = loop {
            let now = brokers(&mut c);
            if let Some(id) = now.keys().find(|id| !before.contains(id)) {
                let share = args.partitions as usize / now.len();
                let led: Vec<i32> = leaders(&mut c, &scale_topic)?
                    .into_iter()
                    .filter(|(_, l)| l == id)
                    .map(|(p, _)| p)
                    .collect();
                if led.len() >= share.max(1) {
                    break (*id, led);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{cmd}: no new broker with its share after 60 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let addr = brokers(&mut c)
            .get(&new_id)
            .cloned()
            .ok_or("the new broker left Metadata")?;
        let acked = first_ack(&addr, &scale_topic, scale_id, share[0], deadline)?;
        scale_out_s = (acked - start).as_secs_f64();
        eprintln!(
            "scale out: broker {new_id} leads {} partitions of {scale_topic}, first acknowledged after {scale_out_s:.2} s",
            share.len()
        );
    }

    stop.store(true, Ordering::Relaxed);
    let deliveries = load.join().map_err(|_| "the load thread panicked")?;
    let failed = deliveries.iter().filter(|d| d.error.is_some()).count();
    eprintln!(
        "background load: {} records sent, {} acknowledged, {failed} failed",
        sent.load(Ordering::Relaxed),
        deliveries.len() - failed
    );
    if failed > 0 {
        return Err(format!(
            "{failed} background records failed, first: {:?}",
            deliveries.iter().find(|d| d.error.is_some())
        ));
    }
    println!(
        "move_p50_ms={:.1} move_p99_ms={:.1} failover_ms={failover_ms:.0} scale_out_s={scale_out_s:.2}",
        percentile(&times_ms, 0.5),
        percentile(&times_ms, 0.99)
    );
    Ok(())
}
