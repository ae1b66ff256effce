//! The object-storage tier end to end, with real processes, real Kafka clients and a real
//! object store (a `file://` directory, and the S3 protocol through s3s-fs): range servers
//! keep a bounded WAL while history moves to objects, consumers read it back byte for byte,
//! also after every range server lost its disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::kafka::{self, Record};
use integration::s3::S3Server;
use integration::{http_get, payload_for, Cluster, ClusterBuilder, Proc};
use protocol::pd::{DescribeStream, ListTopics, ObjectStats};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;
use stream_client::PdClient;

const TOPIC: &str = "history";
const PARTITIONS: i32 = 4;
const RECORD_BYTES: usize = 10 * 1024;
const SEED: u64 = 0x00b1_ec75;

/// Budget of each range server's WAL in these tests.
const WAL_BUDGET: u64 = 32 << 20;
/// A WAL may pass its budget by what was admitted while it was just below: one append.
const WAL_SLACK: u64 = 2 << 20;

/// Sum of a metric's samples in a process's `/metrics` (0 when absent).
fn metric(proc: &Proc, name: &str) -> f64 {
    let Some((200, text)) = http_get(&proc.http_addr, "/metrics") else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Bytes of WAL segments in a range server's data dir.
fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("wal"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The numbers of a range server's WAL segments, oldest first.
fn wal_segments(dir: &Path) -> Vec<u64> {
    let mut segments: Vec<u64> = std::fs::read_dir(dir.join("wal"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    segments.sort_unstable();
    segments
}

/// Object files under a store directory.
fn objects_in(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("objects"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".obj"))
                .count()
        })
        .unwrap_or(0)
}

fn key_of(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Produces `count` records (record `i` to partition `i % PARTITIONS`, key `i`, value
/// `payload_for(SEED, i)`), idempotent and acks=all; fails on any failed delivery.
fn produce(bootstrap: &str, first: u64, count: u64) {
    produce_to(bootstrap, TOPIC, PARTITIONS, first, count)
}

fn produce_to(bootstrap: &str, topic: &str, partitions: i32, first: u64, count: u64) {
    let producer = kafka::producer(
        bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("batch.size", "1000000"),
            ("message.timeout.ms", "300000"),
        ],
    );
    for i in first..first + count {
        let value = payload_for(SEED, i, RECORD_BYTES);
        let key = key_of(i);
        kafka::send(
            &producer,
            BaseRecord::with_opaque_to(topic, Box::new(i as usize))
                .partition((i % partitions as u64) as i32)
                .key(&key[..])
                .payload(&value[..]),
        );
    }
    let deliveries = kafka::flush(&producer, Duration::from_secs(300));
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "failed deliveries: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(deliveries.len() as u64, count);
}

/// Reads every partition from offset 0 to its high watermark and checks that it holds
/// exactly records `0..total` in order, byte for byte.
fn verify_all(bootstrap: &str, total: u64) {
    verify_topic(bootstrap, TOPIC, PARTITIONS, total)
}

/// [`verify_all`] for `topic` of `partitions` (as [`produce_to`] wrote it).
fn verify_topic(bootstrap: &str, topic: &str, partitions: i32, total: u64) {
    let mut until = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = kafka::watermarks(bootstrap, topic, p).expect("watermarks");
        assert_eq!(low, 0, "partition {p} starts at {low}");
        until.insert(p, high);
    }
    let from = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    let consumer = kafka::consumer(bootstrap, &[("fetch.max.bytes", "8388608")]);
    let read = kafka::read_partitions(&consumer, topic, &from, &until, Duration::from_secs(300))
        .expect("read back");
    let mut seen = 0u64;
    for (p, records) in &read {
        for (
            n,
            Record {
                offset, key, value, ..
            },
        ) in records.iter().enumerate()
        {
            assert_eq!(*offset, n as i64, "partition {p}: offsets are dense from 0");
            let i = u64::from_be_bytes(key.as_deref().unwrap_or(&[]).try_into().expect("key"));
            assert_eq!(i % partitions as u64, *p as u64);
            assert_eq!(
                i / partitions as u64,
                n as u64,
                "partition {p}: record {n} is {i}"
            );
            assert!(
                value.as_deref() == Some(&payload_for(SEED, i, RECORD_BYTES)[..]),
                "record {i} differs"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, total);
}

/// Waits until every range server has nothing left to offload and PD holds every record of
/// the topic's data streams in objects.
async fn wait_until_offloaded(cluster: &Cluster, bootstrap: &str) {
    let pd = PdClient::new(&[cluster.pd_addr()]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let topics = pd.call(ListTopics {}).await.expect("topics");
    let topic = topics.iter().find(|t| t.name == TOPIC).expect("topic");
    let mut calm = 0;
    loop {
        let lag: f64 = cluster
            .range_servers
            .iter()
            .map(|rs| metric(rs, "strata_rs_offload_lag_bytes"))
            .sum();
        let mut behind = Vec::new();
        for p in &topic.partitions {
            let (_, high) = kafka::watermarks(bootstrap, TOPIC, p.index as i32).expect("hw");
            let info = pd
                .call(DescribeStream {
                    stream_id: p.data_stream,
                })
                .await
                .expect("describe");
            if info.offloaded_end() < high as u64 {
                behind.push((p.index, info.offloaded_end(), high));
            }
        }
        calm = if lag == 0.0 && behind.is_empty() {
            calm + 1
        } else {
            0
        };
        if calm >= 3 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "offload did not catch up: lag {lag}, behind {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Kills `proc` (SIGKILL) and fails unless its process is really gone.
fn kill_and_check_gone(proc: &mut Proc) {
    let pid = proc.pid().expect("running");
    proc.kill();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "{} (pid {pid}) is still running",
        proc.name
    );
}

/// Samples every range server's WAL size until stopped; answers the largest seen per server.
fn watch_wals(dirs: Vec<PathBuf>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut max = vec![0; dirs.len()];
        while !stop.load(Ordering::Relaxed) {
            for (m, dir) in max.iter_mut().zip(&dirs) {
                *m = (*m).max(wal_bytes(dir));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        max
    })
}

/// Tests 1 and 2 of the object tier: many times the WAL budget produced, every WAL within
/// its budget, objects in the store, everything read back from offset 0; then every range
/// server killed and its disk wiped, and everything still read back (from objects), and
/// producing goes on.
async fn history_outlives_the_wal_budget_and_the_disks(
    builder: ClusterBuilder,
    store_dir: &Path,
    total_bytes: u64,
) {
    let mut cluster = builder
        .range_server_arg("--wal-max-bytes", &WAL_BUDGET.to_string())
        .range_server_arg("--offload-bytes", &(4u64 << 20).to_string())
        .range_server_arg("--offload-max-age-ms", "300")
        .pd_arg("--object-gc-interval-ms", "500")
        .start()
        .await;
    let bootstrap = cluster.bootstrap();
    kafka::create_topic(&bootstrap, TOPIC, PARTITIONS, &[])
        .await
        .expect("topic");

    let records = total_bytes / RECORD_BYTES as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let dirs = cluster
        .range_servers
        .iter()
        .map(|rs| rs.dir.clone())
        .collect();
    let watcher = watch_wals(dirs, stop.clone());
    let started = Instant::now();
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&producing, 0, records))
        .await
        .expect("producer");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let max_wal = watcher.join().expect("watcher");
    eprintln!(
        "produced {} MiB in {took:?} ({:.1} MB/s); largest WALs {:?} MiB; storage-full refusals {}",
        total_bytes >> 20,
        total_bytes as f64 / took.as_secs_f64() / 1e6,
        max_wal.iter().map(|b| b >> 20).collect::<Vec<_>>(),
        cluster
            .range_servers
            .iter()
            .map(|rs| metric(rs, "strata_rs_storage_full_total"))
            .sum::<f64>()
    );
    for (rs, max) in cluster.range_servers.iter().zip(&max_wal) {
        assert!(
            *max <= WAL_BUDGET + WAL_SLACK,
            "{}: WAL reached {max} bytes, budget {WAL_BUDGET}",
            rs.name
        );
        assert!(
            metric(rs, "strata_rs_wal_segments_reclaimed_total") > 0.0,
            "{} reclaimed no WAL segment",
            rs.name
        );
    }
    assert!(
        objects_in(store_dir) > 0,
        "no object in {}",
        store_dir.display()
    );

    let reading = bootstrap.clone();
    tokio::task::spawn_blocking(move || verify_all(&reading, records))
        .await
        .expect("reader");

    // Every range server loses its disk once everything is offloaded.
    wait_until_offloaded(&cluster, &bootstrap).await;
    let uploaded: f64 = cluster
        .range_servers
        .iter()
        .map(|rs| metric(rs, "strata_rs_object_bytes_uploaded_total"))
        .sum();
    assert!(
        uploaded >= total_bytes as f64,
        "only {uploaded} bytes uploaded"
    );
    let stats = PdClient::new(&[cluster.pd_addr()])
        .call(ObjectStats {})
        .await
        .expect("object stats");
    eprintln!(
        "objects at PD: {stats:?}; in the store: {}",
        objects_in(store_dir)
    );
    for rs in &mut cluster.range_servers {
        kill_and_check_gone(rs);
        rs.wipe();
        assert_eq!(wal_bytes(&rs.dir), 0);
    }
    for rs in &mut cluster.range_servers {
        rs.start();
    }
    let reading = bootstrap.clone();
    tokio::task::spawn_blocking(move || verify_all(&reading, records))
        .await
        .expect("reader after the wipe");

    // Producing goes on on the new disks.
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&producing, records, 400))
        .await
        .expect("producer after the wipe");
    let reading = bootstrap.clone();
    tokio::task::spawn_blocking(move || verify_all(&reading, records + 400))
        .await
        .expect("reader after producing again");
}

/// One cluster at a time: these tests load both cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A cluster under `root/cluster` whose object store is the directory `root/object-store`
/// (returned too, to count its objects).
fn with_file_store(root: &Path) -> (ClusterBuilder, PathBuf) {
    let store = root.join("object-store");
    let builder = Cluster::builder()
        .root(&root.join("cluster"))
        .object_store(&format!("file://{}", store.display()));
    (builder, store)
}

fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-")
        .tempdir()
        .expect("temp dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_in_s3_outlives_the_wal_and_the_disks() {
    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let s3 = S3Server::start(&root.path().join("s3"), "strata");
    let mut builder = Cluster::builder()
        .root(&root.path().join("cluster"))
        .object_store("s3://strata/cluster-1");
    for (k, v) in s3.env() {
        builder = builder.env(&k, &v);
    }
    let store = root.path().join("s3/strata/cluster-1");
    history_outlives_the_wal_budget_and_the_disks(builder, &store, 128 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_in_a_directory_outlives_the_wal_and_the_disks() {
    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let (builder, store) = with_file_store(root.path());
    history_outlives_the_wal_budget_and_the_disks(builder, &store, 256 << 20).await;
}

/// The data stream of partition 0 of `topic`.
async fn data_stream_of(pd: &PdClient, topic: &str) -> u64 {
    let topics = pd.call(ListTopics {}).await.expect("topics");
    let topic = topics.iter().find(|t| t.name == topic).expect("the topic");
    topic.partitions[0].data_stream
}

/// Waits until partition 0 of `topic` is in objects up to `end`; answers its data stream.
async fn wait_until_partition_offloaded(pd: &PdClient, topic: &str, end: u64) -> u64 {
    let data_stream = data_stream_of(pd, topic).await;
    wait_until("offload of the partition", || async {
        let info = pd
            .call(DescribeStream {
                stream_id: data_stream,
            })
            .await
            .map_err(|e| e.to_string())?;
        (info.offloaded_end() >= end)
            .then_some(())
            .ok_or(format!("offloaded to {}", info.offloaded_end()))
    })
    .await;
    data_stream
}

/// Objects PD counts as committed, and those waiting to be deleted.
async fn object_stats(cluster: &Cluster) -> protocol::pd::ObjectStatsResponse {
    PdClient::new(&[cluster.pd_addr()])
        .call(ObjectStats {})
        .await
        .expect("object stats")
}

/// Waits (60 s at most) until `check` holds, polling twice a second; fails with `what`.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Test 6: retention by size and by time move the start and delete the objects behind it,
/// and deleting the topic deletes the rest: the objects are counted in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_topic_deletion_delete_objects() {
    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let (builder, store) = with_file_store(root.path());
    let cluster = builder
        .range_server_arg("--offload-bytes", &(256u64 << 10).to_string())
        .range_server_arg("--offload-max-age-ms", "200")
        // No merging: each object holds about one batch, so retention frees them one by one.
        .range_server_arg("--compact-min-slices", "1000000000")
        .pd_arg("--object-gc-interval-ms", "200")
        .retention_check_ms(300)
        .start()
        .await;
    let bootstrap = cluster.bootstrap();
    let topic = "retained";
    kafka::create_topic(&bootstrap, topic, 1, &[])
        .await
        .expect("topic");
    let records = 800; // 8 MiB
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce_to(&producing, topic, 1, 0, records))
        .await
        .expect("producer");
    let pd = PdClient::new(&[cluster.pd_addr()]);
    let data_stream = wait_until_partition_offloaded(&pd, topic, records).await;
    let all = objects_in(&store);
    wait_until("PD's object gauge counts them", || async {
        let gauge = metric(&cluster.pd, "pd_objects");
        (gauge >= 1.0)
            .then_some(())
            .ok_or(format!("pd_objects {gauge}"))
    })
    .await;
    // Batches of up to 1 MB: an object per MB or so.
    assert!(all >= 6, "only {all} objects for 8 MiB in 256 KiB uploads");
    eprintln!(
        "objects after offload: {all}, at PD {:?}",
        object_stats(&cluster).await
    );

    // Retention by size: about 1 MiB is kept; the objects behind the new start go.
    let admin = kafka::admin(&bootstrap);
    fn set<'a>(topic: &'a str, k: &'a str, v: &'a str) -> rdkafka::admin::AlterConfig<'a> {
        rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic)).set(k, v)
    }
    let by_size = set(topic, "retention.bytes", "1048576");
    admin
        .alter_configs([&by_size], &kafka::admin_options())
        .await
        .expect("alter");
    wait_until("retention by size deletes objects", || async {
        let (low, _) = kafka::watermarks(&bootstrap, topic, 0)?;
        let left = objects_in(&store);
        let stats = object_stats(&cluster).await;
        (low > 0 && left <= all - 3 && stats.doomed == 0 && stats.committed as usize == left)
            .then_some(())
            .ok_or(format!("low {low}, {left} objects, PD {stats:?}"))
    })
    .await;
    let after_size = objects_in(&store);
    let (low, high) = kafka::watermarks(&bootstrap, topic, 0).expect("watermarks");
    eprintln!("after retention.bytes: {after_size} objects, log from {low} to {high}");
    let kept = kafka::read_partition(
        &bootstrap,
        topic,
        0,
        Offset::Offset(low),
        high,
        Duration::from_secs(60),
    )
    .expect("read what is kept");
    assert_eq!(kept.len() as i64, high - low);
    for r in &kept {
        let i = u64::from_be_bytes(r.key.as_deref().unwrap_or(&[]).try_into().expect("key"));
        assert_eq!(i as i64, r.offset);
        assert!(r.value.as_deref() == Some(&payload_for(SEED, i, RECORD_BYTES)[..]));
    }

    // Retention by time: every record is older than a millisecond. The data stream's slices
    // all go, and with them every object that held only its data; objects that also hold a
    // slice of the partition's meta stream stay until that is trimmed (at its next
    // snapshot) or the topic is deleted.
    let by_time = set(topic, "retention.ms", "1");
    admin
        .alter_configs([&by_time], &kafka::admin_options())
        .await
        .expect("alter");
    wait_until("retention by time drops every data slice", || {
        let (pd, bootstrap, store, cluster) =
            (pd.clone(), bootstrap.clone(), store.clone(), &cluster);
        async move {
            let (low, high) = kafka::watermarks(&bootstrap, topic, 0)?;
            let info = pd
                .call(DescribeStream {
                    stream_id: data_stream,
                })
                .await
                .map_err(|e| e.to_string())?;
            let left = objects_in(&store);
            let stats = object_stats(cluster).await;
            (low == high
                && info.objects.is_empty()
                && stats.doomed == 0
                && stats.committed as usize == left)
                .then_some(())
                .ok_or(format!(
                    "log from {low} to {high}, data slices {:?}, {left} objects, PD {stats:?}",
                    info.objects
                ))
        }
    })
    .await;
    eprintln!("after retention.ms: {} objects", objects_in(&store));

    // Deleting the topic deletes every object of it (there is no other topic).
    let deleted = admin
        .delete_topics(&[topic], &kafka::admin_options())
        .await
        .expect("delete topic");
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    wait_until("deleting the topic deletes its objects", || async {
        let left = objects_in(&store);
        let stats = object_stats(&cluster).await;
        (left == 0 && stats.committed == 0 && stats.doomed == 0)
            .then_some(())
            .ok_or(format!("{left} objects, PD {stats:?}"))
    })
    .await;
}

/// Test 5: the offload owner dies between its upload and its commit. The upload is an
/// orphan that PD sweeps; another replica offloads the data; nothing is lost or counted
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_owner_dies_before_the_commit_is_swept() {
    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let (builder, store) = with_file_store(root.path());
    let mut cluster = builder
        .range_server_arg("--offload-max-age-ms", "200")
        .pd_arg("--object-gc-interval-ms", "200")
        .pd_arg("--prepared-object-ttl-ms", "2000")
        .pd_arg("--orphan-sweep-interval-ms", "500")
        .start()
        .await;
    // Every range server holds its uploads uncommitted for a minute: the first to upload
    // is killed while it waits.
    for rs in &mut cluster.range_servers {
        rs.kill();
        rs.env
            .push(("STRATA_TEST_OFFLOAD_COMMIT_DELAY_MS".into(), "60000".into()));
        rs.start();
    }
    cluster.wait_for_range_servers(3).await;
    let bootstrap = cluster.bootstrap();
    kafka::create_topic(&bootstrap, TOPIC, PARTITIONS, &[])
        .await
        .expect("topic");
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&producing, 0, 200))
        .await
        .expect("producer");
    let mut holder = None;
    wait_until("an upload waiting for its commit", || {
        let found = cluster
            .range_servers
            .iter()
            .position(|rs| rs.log().contains("holding the commit"));
        holder = found;
        async move { found.map(|_| ()).ok_or("none yet".to_string()) }
    })
    .await;
    let holder = holder.expect("holder");
    let stats = object_stats(&cluster).await;
    assert!(
        objects_in(&store) >= 1 && stats.committed == 0 && stats.prepared >= 1,
        "an uploaded, uncommitted object: {} in the store, PD {stats:?}",
        objects_in(&store)
    );
    // Kill it, and let the others commit without delay from now on.
    kill_and_check_gone(&mut cluster.range_servers[holder]);
    for (i, rs) in cluster.range_servers.iter_mut().enumerate() {
        if i != holder {
            rs.kill();
            rs.env.clear();
            rs.start();
        }
    }
    // The orphan goes; every object left is committed; everything is offloaded once.
    wait_until(
        "the orphan is swept and the data offloaded by another replica",
        || async {
            let stats = object_stats(&cluster).await;
            let files = objects_in(&store);
            (stats.prepared == 0
                && stats.doomed == 0
                && stats.committed >= 1
                && files as u64 == stats.committed)
                .then_some(())
                .ok_or(format!("{files} objects, PD {stats:?}"))
        },
    )
    .await;
    let reading = bootstrap.clone();
    tokio::task::spawn_blocking(move || verify_all(&reading, 200))
        .await
        .expect("reader");
    let holder_log = cluster.range_servers[holder].log();
    assert!(holder_log.contains("holding the commit"));
}

/// Test 4: the object store goes away (s3s-fs killed) while a producer writes. Producing
/// goes on until the WALs reach their budget, then waits on retriable errors; once the
/// store is back, offload resumes and every acknowledged record is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producing_waits_out_an_object_store_outage() {
    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let mut s3 = S3Server::start(&root.path().join("s3"), "strata");
    let mut builder = Cluster::builder()
        .root(&root.path().join("cluster"))
        .object_store("s3://strata/outage")
        .range_server_arg("--wal-max-bytes", &WAL_BUDGET.to_string())
        .range_server_arg("--offload-bytes", &(4u64 << 20).to_string())
        .range_server_arg("--offload-max-age-ms", "300");
    for (k, v) in s3.env() {
        builder = builder.env(&k, &v);
    }
    let cluster = builder.start().await;
    let bootstrap = cluster.bootstrap();
    kafka::create_topic(&bootstrap, TOPIC, PARTITIONS, &[])
        .await
        .expect("topic");
    let store = root.path().join("s3/strata/outage");
    let records = (128u64 << 20) / RECORD_BYTES as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let dirs = cluster
        .range_servers
        .iter()
        .map(|rs| rs.dir.clone())
        .collect();
    let watcher = watch_wals(dirs, stop.clone());
    let producing = bootstrap.clone();
    let producer = tokio::task::spawn_blocking(move || produce(&producing, 0, records));

    wait_until("the first objects", || async {
        (objects_in(&store) >= 2)
            .then_some(())
            .ok_or("none yet".to_string())
    })
    .await;
    s3.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", s3.port)).is_err(),
        "the object store still answers"
    );
    let sum = |name: &str| -> f64 {
        cluster
            .range_servers
            .iter()
            .map(|rs| metric(rs, name))
            .sum()
    };
    let full_before = sum("strata_rs_storage_full_total");
    wait_until("uploads fail and a WAL fills up", || async {
        let failures = sum("strata_rs_offload_failures_total");
        let full = sum("strata_rs_storage_full_total");
        (failures > 0.0 && full > full_before)
            .then_some(())
            .ok_or(format!("{failures} failed uploads, {full} refused appends"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let objects_during = objects_in(&store);
    s3.resume();
    producer
        .await
        .expect("producer finishes once the store is back");
    stop.store(true, Ordering::Relaxed);
    let max_wal = watcher.join().expect("watcher");
    for (rs, max) in cluster.range_servers.iter().zip(&max_wal) {
        assert!(
            *max <= WAL_BUDGET + WAL_SLACK,
            "{}: WAL reached {max} bytes",
            rs.name
        );
    }
    eprintln!(
        "objects when the store went away: {objects_during}; largest WALs {:?} MiB; refused appends {}",
        max_wal.iter().map(|b| b >> 20).collect::<Vec<_>>(),
        sum("strata_rs_storage_full_total")
    );
    let reading = bootstrap.clone();
    tokio::task::spawn_blocking(move || verify_all(&reading, records))
        .await
        .expect("reader");
    wait_until_offloaded(&cluster, &bootstrap).await;
    assert!(objects_in(&store) > objects_during);
}

/// Test 7: hundreds of tiny objects (tiny upload thresholds) are merged once compaction is
/// on; the same records are read before and after, and the object count falls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_objects_and_reads_stay_the_same() {
    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let (builder, store) = with_file_store(root.path());
    let mut cluster = builder
        .range_server_arg("--offload-bytes", "2048")
        .range_server_arg("--offload-max-age-ms", "40")
        .range_server_arg("--compact-min-slices", "1000000000")
        .pd_arg("--object-gc-interval-ms", "200")
        .start()
        .await;
    let bootstrap = cluster.bootstrap();
    let topic = "small-objects";
    kafka::create_topic(&bootstrap, topic, 1, &[])
        .await
        .expect("topic");
    let records = 3000u64;
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let producer = kafka::producer(
            &producing,
            &[("linger.ms", "0"), ("acks", "all"), ("max.in.flight", "1")],
        );
        for i in 0..records {
            let value = payload_for(SEED, i, 1024);
            let key = key_of(i);
            kafka::send(
                &producer,
                BaseRecord::with_opaque_to(topic, Box::new(i as usize))
                    .partition(0)
                    .key(&key[..])
                    .payload(&value[..]),
            );
            if i % 4 == 3 {
                producer.flush(Duration::from_secs(30)).expect("flush");
            }
        }
        let deliveries = kafka::flush(&producer, Duration::from_secs(60));
        assert!(deliveries.iter().all(|d| d.error.is_none()));
    })
    .await
    .expect("producer");
    let pd = PdClient::new(&[cluster.pd_addr()]);
    wait_until_partition_offloaded(&pd, topic, records).await;
    let read_all = |bootstrap: String| async move {
        tokio::task::spawn_blocking(move || {
            kafka::read_partition(
                &bootstrap,
                topic,
                0,
                Offset::Beginning,
                records as i64,
                Duration::from_secs(120),
            )
        })
        .await
        .expect("reader")
        .expect("read")
    };
    let before = read_all(bootstrap.clone()).await;
    assert_eq!(before.len() as u64, records);
    for r in &before {
        let i = u64::from_be_bytes(r.key.as_deref().unwrap_or(&[]).try_into().expect("key"));
        assert_eq!(i as i64, r.offset);
        assert!(r.value.as_deref() == Some(&payload_for(SEED, i, 1024)[..]));
    }
    let small = objects_in(&store);
    let stats = object_stats(&cluster).await;
    eprintln!("before compaction: {small} objects, PD {stats:?}");
    assert!(small >= 100, "only {small} objects");

    for rs in &mut cluster.range_servers {
        rs.kill();
        rs.set_arg("--compact-min-slices", "8");
        rs.set_arg("--compact-min-age-ms", "0");
        rs.start();
    }
    wait_until("compaction merges the small objects", || async {
        let left = objects_in(&store);
        let stats = object_stats(&cluster).await;
        (left * 10 <= small && stats.doomed == 0 && stats.committed as usize == left)
            .then_some(())
            .ok_or(format!("{left} objects, PD {stats:?}"))
    })
    .await;
    let merged: f64 = cluster
        .range_servers
        .iter()
        .map(|rs| metric(rs, "strata_rs_objects_merged_total"))
        .sum();
    eprintln!(
        "after compaction: {} objects; {merged} merges",
        objects_in(&store)
    );
    assert!(merged > 0.0);
    let after = read_all(bootstrap.clone()).await;
    assert!(before == after, "reads differ after compaction");
}

/// Test 3: a consumer group catches up from offset 0 over history that is only in objects
/// (the WALs are far smaller) while a producer keeps writing the tail: both progress, and
/// the group reads every record in order. Prints the catch-up MB/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_catches_up_from_objects_while_the_tail_grows() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;

    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let (builder, _) = with_file_store(root.path());
    let cluster = builder
        .range_server_arg("--wal-max-bytes", &WAL_BUDGET.to_string())
        .range_server_arg("--offload-bytes", &(4u64 << 20).to_string())
        .range_server_arg("--offload-max-age-ms", "300")
        .start()
        .await;
    let bootstrap = cluster.bootstrap();
    kafka::create_topic(&bootstrap, TOPIC, PARTITIONS, &[])
        .await
        .expect("topic");
    let history = (96u64 << 20) / RECORD_BYTES as u64;
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce(&producing, 0, history))
        .await
        .expect("producer");
    wait_until_offloaded(&cluster, &bootstrap).await;
    // The history is in objects: the WALs together hold a fraction of it.
    let wal_total: u64 = cluster
        .range_servers
        .iter()
        .map(|rs| wal_bytes(&rs.dir))
        .sum();
    assert!(wal_total < (96 << 20), "WALs hold {wal_total} bytes");

    let tail = 2000u64;
    let producing = bootstrap.clone();
    let producer = tokio::task::spawn_blocking(move || produce(&producing, history, tail));
    let reading = bootstrap.clone();
    let (read, secs) = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka::config_with(
            &reading,
            &[
                ("group.id", "catch-up"),
                ("auto.offset.reset", "earliest"),
                ("enable.auto.commit", "true"),
                ("fetch.max.bytes", "52428800"),
            ],
            &[],
        )
        .create()
        .expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let mut next = vec![0u64; PARTITIONS as usize];
        let mut bytes = 0u64;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(300);
        let total = history + tail;
        let mut read = 0u64;
        while read < total {
            assert!(Instant::now() < deadline, "read {read} of {total}");
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    let p = m.partition() as usize;
                    assert_eq!(m.offset() as u64, next[p], "partition {p} in order");
                    next[p] += 1;
                    let key = m.key().unwrap_or(&[]);
                    let i = u64::from_be_bytes(key.try_into().expect("key"));
                    assert!(m.payload() == Some(&payload_for(SEED, i, RECORD_BYTES)[..]));
                    bytes += m.payload_len() as u64;
                    read += 1;
                }
                Some(Err(e)) => panic!("consumer error: {e}"),
                None => {}
            }
        }
        (bytes, started.elapsed().as_secs_f64())
    })
    .await
    .expect("group consumer");
    producer.await.expect("tail producer");
    eprintln!(
        "caught up {} MB in {secs:.1} s: {:.1} MB/s while the tail grew",
        read / 1_000_000,
        read as f64 / secs / 1e6
    );
}

/// A partition whose every record is in objects, and whose WAL records were all reclaimed
/// on every replica, goes idle; the range servers restart with their disks (they no longer
/// know its open range) and its broker dies. The next owner seals that range at what objects
/// hold, not at the range's start (which PD would refuse, leaving the partition unserved),
/// and the partition serves its history and takes new records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_reclaimed_from_every_wal_reopens_after_restarts() {
    let _serial = SERIAL.lock().await;
    let root = temp_root();
    let (builder, _) = with_file_store(root.path());
    let mut cluster = builder
        .range_server_arg("--wal-max-bytes", &WAL_BUDGET.to_string())
        .range_server_arg("--offload-bytes", &(1u64 << 20).to_string())
        .range_server_arg("--offload-max-age-ms", "200")
        .pd_arg("--object-gc-interval-ms", "500")
        .start()
        .await;
    let bootstrap = cluster.bootstrap();
    for topic in ["idle", "busy"] {
        kafka::create_topic(&bootstrap, topic, 1, &[])
            .await
            .expect("topic");
    }
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce_to(&producing, "idle", 1, 0, 200))
        .await
        .expect("producer");
    let pd = PdClient::new(&[cluster.pd_addr()]);
    let idle = wait_until_partition_offloaded(&pd, "idle", 200).await;

    // Another partition's traffic fills several WAL budgets, until on every replica the
    // segments that held the idle partition's records (the newest one then, and older) are
    // deleted.
    let idle_segments: Vec<u64> = cluster
        .range_servers
        .iter()
        .map(|rs| {
            wal_segments(&rs.dir)
                .last()
                .copied()
                .expect("a WAL segment")
        })
        .collect();
    let busy_records = 3 * WAL_BUDGET / RECORD_BYTES as u64;
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce_to(&producing, "busy", 1, 0, busy_records))
        .await
        .expect("producer");
    wait_until_partition_offloaded(&pd, "busy", busy_records).await;
    wait_until(
        "the idle records' WAL segments are deleted everywhere",
        || {
            let kept: Vec<(String, u64)> = cluster
                .range_servers
                .iter()
                .zip(&idle_segments)
                .filter_map(|(rs, last)| {
                    let oldest = wal_segments(&rs.dir).first().copied()?;
                    (oldest <= *last).then(|| (rs.name.clone(), oldest))
                })
                .collect();
            async move {
                kept.is_empty()
                    .then_some(())
                    .ok_or(format!("still kept: {kept:?}"))
            }
        },
    )
    .await;
    let info = pd
        .call(DescribeStream { stream_id: idle })
        .await
        .expect("describe");
    let open = info.last_range().expect("a range").clone();
    assert!(
        open.end.is_none() && open.start < 200,
        "the idle partition's range holding its records is still open: {open:?}"
    );

    // Restart the range servers with their disks, then lose the broker: the partition is
    // opened again by a new owner.
    for rs in &mut cluster.range_servers {
        kill_and_check_gone(rs);
    }
    for rs in &mut cluster.range_servers {
        rs.start();
    }
    cluster.wait_for_range_servers(3).await;
    kill_and_check_gone(cluster.broker(0));
    cluster.broker(0).start();
    cluster.wait_for_brokers().await;

    let reading = bootstrap.clone();
    tokio::task::spawn_blocking(move || verify_topic(&reading, "idle", 1, 200))
        .await
        .expect("reader after the restarts");
    let producing = bootstrap.clone();
    tokio::task::spawn_blocking(move || produce_to(&producing, "idle", 1, 200, 100))
        .await
        .expect("producer after the restarts");
    let reading = bootstrap.clone();
    tokio::task::spawn_blocking(move || verify_topic(&reading, "idle", 1, 300))
        .await
        .expect("reader after producing again");
    let info = pd
        .call(DescribeStream { stream_id: idle })
        .await
        .expect("describe");
    let sealed = info
        .ranges
        .iter()
        .find(|r| r.index == open.index)
        .and_then(|r| r.end);
    assert!(
        sealed.is_none_or(|end| end >= 200),
        "the idle range was sealed at {sealed:?}, below the 200 records in objects"
    );
}
