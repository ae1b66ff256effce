//! What every Kafka test file shares besides the clients: the lock that runs one file's
//! tests one at a time (each starts a whole cluster; the machine has two cores), failing
//! with the cluster's logs attached, deterministic test values, and the exactly-once check of
//! what an idempotent producer sent ([`stored_once`]). It starts nothing itself.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::topic_partition_list::Offset;

use crate::{kafka, Cluster, ClusterBuilder};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole of a test that starts a cluster.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Takes the serial lock, starts `builder`'s cluster and creates `topics` (name, partition
/// count, default configs) in order, failing the test with the logs if one cannot be created.
/// Keep the guard for the whole test.
pub async fn start_with_topics(
    builder: ClusterBuilder,
    topics: &[(&str, i32)],
) -> (tokio::sync::MutexGuard<'static, ()>, Cluster) {
    let guard = serial().await;
    let cluster = builder.start().await;
    for (topic, partitions) in topics {
        create_topic(&cluster, topic, *partitions, &[]).await;
    }
    (guard, cluster)
}

/// Creates `topic` with `partitions` and the config overrides `configs`, failing the test with
/// the logs if it cannot be created.
pub async fn create_topic(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    ok(
        cluster,
        kafka::create_topic(&cluster.bootstrap(), topic, partitions, configs).await,
    );
}

/// Fails the test with `msg`, the tail of every broker log and, last (CI shows the end of a
/// failure first), the errors and warnings of every process.
pub fn fail(cluster: &Cluster, msg: String) -> ! {
    panic!(
        "{msg}\n{}{}----- the failure: {msg}",
        cluster.logs_tail(40),
        cluster.log_problems(12),
    )
}

/// Unwraps, or fails the test with the error and the cluster's logs (see [`fail`]).
pub fn ok<T>(cluster: &Cluster, r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| fail(cluster, e))
}

/// Deterministic value bytes for message `i` of a test (`len` long, compressible when
/// `compressible`).
pub fn value_for(seed: u64, i: u64, len: usize, compressible: bool) -> Vec<u8> {
    if compressible {
        let text =
            format!("message {i} of seed {seed}: the quick brown fox jumps over the lazy dog. ");
        text.bytes().cycle().take(len).collect()
    } else {
        crate::payload_for(seed, i, len)
    }
}

/// Makes sure `cmd` is installed, else fails the test saying how to install it.
pub fn require_command(cmd: &str, install: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{cmd}` is not installed here ({install}; .ci/run installs it)"
    );
}

/// Reads `partition` of `topic` from its first record up to offset `end` (30 s at most) with
/// librdkafka; fails the test with the cluster's logs when it cannot.
pub fn read_from_start(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    end: i64,
) -> Vec<kafka::Record> {
    ok(
        cluster,
        kafka::read_partition(
            &cluster.bootstrap(),
            topic,
            partition,
            rdkafka::Offset::Beginning,
            end,
            Duration::from_secs(30),
        ),
    )
}

/// Runs blocking client code (librdkafka, the raw client) on a blocking thread and answers
/// what it returns; a panic in it fails the test with the panic's own message.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A script in `integration/python/`.
pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Makes sure `python3 -c "import <modules>"` works, else fails the test naming `what` is
/// missing and how to install it.
pub fn require_python_modules(modules: &str, what: &str) {
    let reqs = python_script("requirements.txt");
    let import = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .expect("run python3");
    assert!(
        import.status.success(),
        "{what} not installed (pip install -r {}; .ci/run does): {}",
        reqs.display(),
        String::from_utf8_lossy(&import.stderr)
    );
}

/// Runs `integration/python/<name> --bootstrap <cluster>` (five minutes at most) and fails the
/// test with its output and the cluster's logs unless it succeeds.
pub fn run_python_test(cluster: &Cluster, name: &str) {
    run_python_script(cluster, name, &["--bootstrap", &cluster.bootstrap()]);
}

/// Runs `integration/python/<name> ARGS...` (five minutes at most) and fails the test with
/// its output and the cluster's logs unless it succeeds; answers its standard output.
pub fn run_python_script(cluster: &Cluster, name: &str, args: &[&str]) -> String {
    let script = python_script(name);
    let out = std::process::Command::new("timeout")
        .arg("300")
        .arg("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    if !out.status.success() {
        fail(
            cluster,
            format!(
                "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Every one of the `n` sends was acknowledged, and every record is stored exactly once, at
/// contiguous offsets from 0, where it was acknowledged (read through the running brokers).
pub fn stored_once(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    n: usize,
    deliveries: &[kafka::Delivery],
) {
    let bs = (0..cluster.brokers.len())
        .filter(|i| cluster.brokers[*i].is_running())
        .map(|i| cluster.kafka_addr(i))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(deliveries.len(), n, "delivery reports");
    if let Some(d) = deliveries.iter().find(|d| d.error.is_some()) {
        fail(cluster, format!("an idempotent send failed: {d:?}"));
    }
    let acked: HashMap<usize, (i32, i64)> = deliveries
        .iter()
        .map(|d| (d.id, (d.partition, d.offset)))
        .collect();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = ok(cluster, kafka::watermarks(&bs, topic, p));
        assert_eq!(low, 0);
        ends.insert(p, high);
    }
    let consumer = kafka::consumer(&bs, &[]);
    let from: BTreeMap<i32, Offset> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
    let read = ok(
        cluster,
        kafka::read_partitions(&consumer, topic, &from, &ends, Duration::from_secs(300)),
    );
    let mut seen: HashMap<usize, (i32, i64)> = HashMap::new();
    for (p, records) in &read {
        for (expected, r) in records.iter().enumerate() {
            if r.offset != expected as i64 {
                fail(
                    cluster,
                    format!("{topic}/{p}: offset {} at position {expected}", r.offset),
                );
            }
            let text = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
            let Some(id) = text
                .strip_prefix("record ")
                .and_then(|s| s.parse::<usize>().ok())
            else {
                fail(
                    cluster,
                    format!("unexpected value {text:?} at {p}/{}", r.offset),
                );
            };
            if let Some(first) = seen.insert(id, (*p, r.offset)) {
                fail(
                    cluster,
                    format!(
                        "record {id} stored twice: at {first:?} and {p}/{}",
                        r.offset
                    ),
                );
            }
        }
    }
    assert_eq!(seen.len(), n, "records stored");
    for (id, where_) in &acked {
        assert_eq!(
            seen.get(id),
            Some(where_),
            "record {id} is not where it was acknowledged"
        );
    }
}
