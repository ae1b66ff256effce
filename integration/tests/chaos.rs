//! Chaos: an idempotent producer (client retries on) and a consumer group keep working while
//! range servers, brokers and the placement driver are killed (SIGKILL) and restarted, one at
//! a time, round after round. Afterwards the history is checked: every acknowledged record is
//! stored exactly once, where it was acknowledged (so no offset holds two values); nothing is
//! stored twice; the group's consumer never skipped an offset. CI runs it for about 25 s;
//! `STRATA_CHAOS_SECS=600 cargo test --release -p integration --test chaos -- --nocapture`
//! runs it longer. Prints its figures as `chaos: ...`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::kafka;
use integration::testing::*;
use integration::Cluster;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::Offset;
use rdkafka::Message;

/// What the group's consumer saw, per partition: the last offset and the problems.
#[derive(Default)]
struct Consumed {
    last: HashMap<i32, i64>,
    records: u64,
    /// Re-deliveries after a rebalance (allowed: at least once).
    rewinds: u64,
    /// Offsets jumped over (never allowed): (partition, expected, got).
    skips: Vec<(i32, i64, i64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_and_consumers_survive_random_kills() {
    let secs: u64 = std::env::var("STRATA_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let (_serial, mut cluster) = start_with_topics(
        Cluster::builder().range_servers(3).brokers(3),
        &[("chaos", 6)],
    )
    .await;
    let bs = cluster.bootstrap();

    // The group's consumer, on a thread of its own.
    let stop = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(Mutex::new(Consumed::default()));
    let consumer_thread = {
        let (bs, stop, consumed) = (bs.clone(), stop.clone(), consumed.clone());
        std::thread::spawn(move || {
            let c: BaseConsumer = kafka::config(&bs)
                .set("group.id", "chaos-group")
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "true")
                .set("session.timeout.ms", "10000")
                .create()
                .expect("group consumer");
            c.subscribe(&["chaos"]).expect("subscribe");
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let mut seen = consumed.lock().unwrap();
                seen.records += 1;
                let (p, o) = (m.partition(), m.offset());
                match seen.last.insert(p, o) {
                    Some(last) if o <= last => seen.rewinds += 1,
                    Some(last) if o > last + 1 => seen.skips.push((p, last + 1, o)),
                    _ => {}
                }
            }
        })
    };

    let producer = kafka::producer(
        &bs,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "300000"),
        ],
    );
    let victims: Vec<&str> = vec![
        "range-server-1",
        "broker-1",
        "range-server-2",
        "pd",
        "broker-2",
        "range-server-3",
        "broker-3",
    ];
    let mut kills: BTreeMap<&str, u32> = BTreeMap::new();
    // (when, what) of every kill and restart, to name what preceded the longest stall.
    let mut timeline: Vec<(Instant, String)> = Vec::new();
    let start = Instant::now();
    let mut next_kill = start + Duration::from_secs(3);
    let mut down: Option<(&str, Instant)> = None;
    let mut round = 0usize;
    let mut sent = 0usize;
    while start.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        if let Some((name, back_at)) = down {
            if now >= back_at {
                proc_named(&mut cluster, name).start();
                timeline.push((Instant::now(), format!("{name} started")));
                down = None;
                next_kill = now + Duration::from_secs(2);
            }
        } else if now >= next_kill {
            let name = victims[round % victims.len()];
            round += 1;
            let p = proc_named(&mut cluster, name);
            p.kill();
            assert!(!p.is_running(), "{name} still runs");
            *kills.entry(kind(name)).or_default() += 1;
            timeline.push((now, format!("{name} killed")));
            down = Some((name, now + Duration::from_millis(1500)));
        }
        for _ in 0..100 {
            let v = format!("record {sent}");
            kafka::send(
                &producer,
                BaseRecord::with_opaque_to("chaos", Box::new(sent)).payload(v.as_bytes()),
            );
            sent += 1;
        }
        producer.poll(Duration::from_millis(50));
    }
    if let Some((name, _)) = down {
        proc_named(&mut cluster, name).start();
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(300));
    assert_eq!(deliveries.len(), sent, "delivery reports");
    let acked: HashMap<usize, (i32, i64)> = deliveries
        .iter()
        .filter(|d| d.error.is_none())
        .map(|d| (d.id, (d.partition, d.offset)))
        .collect();
    let failed = sent - acked.len();
    let mut at: Vec<Instant> = deliveries.iter().map(|d| d.at).collect();
    at.sort();
    let (max_stall, stall_start) = at
        .windows(2)
        .map(|w| (w[1].duration_since(w[0]), w[0]))
        .max()
        .unwrap_or((Duration::ZERO, start));
    let before_stall: Vec<String> = timeline
        .iter()
        .filter(|(t, _)| {
            *t <= stall_start + max_stall && *t + Duration::from_secs(8) >= stall_start
        })
        .map(|(t, what)| {
            let at = t.duration_since(start).as_secs_f64();
            format!("{what} at {at:.1} s")
        })
        .collect();

    // Let the group's consumer catch up, then stop it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (consumed.lock().unwrap().records as usize) < acked.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = consumer_thread.join();

    // The history: read every partition from the start.
    let mut ends = BTreeMap::new();
    for p in 0..6 {
        let (_, high) = ok(&cluster, kafka::watermarks(&bs, "chaos", p));
        ends.insert(p, high);
    }
    let reader = kafka::consumer(&bs, &[]);
    let from: BTreeMap<i32, Offset> = (0..6).map(|p| (p, Offset::Beginning)).collect();
    let read = ok(
        &cluster,
        kafka::read_partitions(&reader, "chaos", &from, &ends, Duration::from_secs(300)),
    );
    let mut stored: HashMap<usize, (i32, i64)> = HashMap::new();
    let mut twice = Vec::new();
    for (p, records) in &read {
        for r in records {
            let text = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
            let Some(id) = text
                .strip_prefix("record ")
                .and_then(|s| s.parse::<usize>().ok())
            else {
                fail(
                    &cluster,
                    format!("unexpected value {text:?} at {p}/{}", r.offset),
                );
            };
            if let Some(first) = stored.insert(id, (*p, r.offset)) {
                twice.push((id, first, (*p, r.offset)));
            }
        }
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(id, at)| stored.get(id) != Some(at))
        .take(5)
        .collect();
    let seen = consumed.lock().unwrap();
    eprintln!(
        "chaos: {secs} s, kills {kills:?}, {sent} sent, {} acknowledged, {failed} failed, {} stored, max stall between acknowledgements {} ms (from {:.1} s; around it: {before_stall:?}), group consumer read {} ({} re-deliveries after rebalances)",
        acked.len(),
        stored.len(),
        max_stall.as_millis(),
        stall_start.duration_since(start).as_secs_f64(),
        seen.records,
        seen.rewinds
    );
    if !twice.is_empty() || !lost.is_empty() || !seen.skips.is_empty() {
        fail(
            &cluster,
            format!(
                "history: {} stored twice (first {:?}); acknowledged but not where acknowledged: {lost:?}; consumer skipped {:?}",
                twice.len(),
                twice.first(),
                &seen.skips[..seen.skips.len().min(5)]
            ),
        );
    }
}

fn kind(name: &str) -> &'static str {
    if name.starts_with("range-server") {
        "range server"
    } else if name.starts_with("broker") {
        "broker"
    } else {
        "pd"
    }
}

fn proc_named<'a>(cluster: &'a mut Cluster, name: &str) -> &'a mut integration::Proc {
    if name == "pd" {
        return &mut cluster.pd;
    }
    let (kind, n) = name.rsplit_once('-').expect("NAME-N");
    let i: usize = n.parse::<usize>().expect("index") - 1;
    match kind {
        "range-server" => cluster.range_server(i),
        _ => cluster.broker(i),
    }
}
