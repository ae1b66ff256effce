//! What every Kafka test file shares besides the clients: the lock that runs one file's
//! tests one at a time (each starts a whole cluster; the machine has two cores), failing
//! with the cluster's logs attached, and deterministic test values. It starts nothing itself.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Cluster;

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

/// Fails the test with `msg`, the problems in the broker logs and the tail of every log.
pub fn fail(cluster: &Cluster, msg: String) -> ! {
    panic!(
        "{msg}\n{}{}",
        cluster.broker_log_problems(30),
        cluster.logs_tail(40)
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
