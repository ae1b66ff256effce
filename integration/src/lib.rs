//! Test and benchmark harness: starts real Strata processes (`strata-pd`,
//! `strata-range-server`, `strata-broker`) from the workspace's target directory, each in its
//! own directory with its own log, on ports the processes pick themselves (port 0, read back
//! from the `rpc.addr`/`http.addr` files they write), and kills or restarts them for fault
//! drills. It never stands in for a process: everything it starts is the real binary.
//!
//! [`kafka`] holds the librdkafka helpers the Kafka tests and `kafka-bench` share,
//! [`raw_kafka`] a raw `kafka-protocol` client for the requests no client library sends, and
//! [`testing`] what every Kafka test file shares (the serial lock, failing with the logs),
//! and [`s3`] a real S3 server (s3s-fs) for the object-storage tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::model::NodeKind;
use protocol::pd::ListNodes;
use stream_client::PdClient;

pub mod kafka;
pub mod raw_kafka;
pub mod s3;
pub mod testing;

/// Where the binaries are: `$STRATA_BIN_DIR`, else the directory of the running test or
/// benchmark executable (or its parent, for `target/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STRATA_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// One real process of the cluster.
pub struct Proc {
    pub name: String,
    pub dir: PathBuf,
    binary: String,
    /// Arguments other than the listen addresses and the data dir.
    args: Vec<String>,
    /// Environment variables set for the process (beside this one's).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    pub rpc_addr: String,
    pub http_addr: String,
}

impl Proc {
    fn new(name: &str, root: &Path, binary: &str, args: Vec<String>) -> Proc {
        Proc {
            name: name.to_string(),
            dir: root.join(name),
            binary: binary.to_string(),
            args,
            env: Vec::new(),
            child: None,
            rpc_addr: "127.0.0.1:0".to_string(),
            http_addr: "127.0.0.1:0".to_string(),
        }
    }

    /// Sets `flag` to `value` for the next start (replacing an earlier value of it).
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_string(),
            _ => self.args.extend([flag.to_string(), value.to_string()]),
        }
    }

    /// Starts the process (again, with the same data and addresses after the first start)
    /// and waits until its `/readyz` answers 200: it serves.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_for("/readyz");
    }

    /// Starts the process without waiting for anything.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        std::fs::create_dir_all(&self.dir).expect("create process dir");
        let _ = std::fs::remove_file(self.dir.join("rpc.addr"));
        let _ = std::fs::remove_file(self.dir.join("http.addr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("process.log"))
            .expect("open log");
        let binary = bin_dir().join(&self.binary);
        let child = Command::new(&binary)
            .arg("--listen")
            .arg(&self.rpc_addr)
            .arg("--http-listen")
            .arg(&self.http_addr)
            .arg("--data")
            .arg(&self.dir)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build the binaries first: cargo build --release)",
                    binary.display()
                )
            });
        self.child = Some(child);
    }

    /// Waits (60 s at most) until the process's HTTP `probe` (`/healthz`: alive, `/readyz`:
    /// serving) answers 200; then its published addresses are known. Fails if it exits.
    pub fn wait_for(&mut self, probe: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let http = std::fs::read_to_string(self.dir.join("http.addr"));
            if let Ok(http) = http {
                if http_status(http.trim(), probe) == Some(200) {
                    self.http_addr = http.trim().to_string();
                    if let Ok(rpc) = std::fs::read_to_string(self.dir.join("rpc.addr")) {
                        self.rpc_addr = rpc.trim().to_string();
                    }
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited at start with {status}; log:\n{}",
                        self.name,
                        self.log_tail()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: {probe} did not answer 200; log:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `within` for the process to exit; answers whether it did
    /// (if not, it is left running).
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_tail(&self) -> String {
        self.log_tail_lines(40)
    }

    /// The last `n` lines of the process log.
    pub fn log_tail_lines(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("process.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole process log (this run's and, after wipes, the earlier ones are in
    /// `<root>/<name>.wiped-<n>.log`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("process.log")).unwrap_or_default()
    }

    /// Deletes the process's data dir, leaving it empty (the process must be stopped). The
    /// log is kept beside the dir as `<name>.wiped-<n>.log` so that a failure can still be
    /// traced through earlier runs.
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "wipe {} while it runs", self.name);
        let parent = self.dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let log = self.dir.join("process.log");
        if log.exists() {
            let mut n = 1;
            while parent.join(format!("{}.wiped-{n}.log", self.name)).exists() {
                n += 1;
            }
            let _ = std::fs::rename(&log, parent.join(format!("{}.wiped-{n}.log", self.name)));
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).expect("wipe process dir");
        }
        std::fs::create_dir_all(&self.dir).expect("create process dir");
    }

    /// Every file under the data dir with its size, paths relative to the dir.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    walk(root, &path, out);
                } else {
                    let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                    out.push((rel, meta.len()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &self.dir, &mut out);
        out.sort();
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A placement driver, range servers and Kafka brokers, all real processes in a temporary
/// directory.
pub struct Cluster {
    pub pd: Proc,
    pub range_servers: Vec<Proc>,
    /// `broker-1` ... `broker-N` (`strata-broker`); their `rpc_addr` is the Kafka listener.
    pub brokers: Vec<Proc>,
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// How to start a [`Cluster`]: `Cluster::builder().range_servers(3).brokers(3).start().await`.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    range_servers: usize,
    brokers: usize,
    broker_args: Vec<String>,
    pd_args: Vec<String>,
    range_server_args: Vec<String>,
    env: Vec<(String, String)>,
    root: Option<PathBuf>,
}

impl ClusterBuilder {
    /// Range servers to start (default 3, what the brokers' default replication needs).
    pub fn range_servers(mut self, n: usize) -> Self {
        self.range_servers = n;
        self
    }

    /// Brokers to start (default 1).
    pub fn brokers(mut self, n: usize) -> Self {
        self.brokers = n;
        self
    }

    /// Partition count of auto-created topics (`--num-partitions`).
    pub fn num_partitions(self, n: u32) -> Self {
        self.broker_arg("--num-partitions", &n.to_string())
    }

    /// `--auto-create-topics true|false`.
    pub fn auto_create_topics(self, on: bool) -> Self {
        self.broker_arg("--auto-create-topics", if on { "true" } else { "false" })
    }

    /// How often brokers enforce retention (`--retention-check-ms`).
    pub fn retention_check_ms(self, ms: u64) -> Self {
        self.broker_arg("--retention-check-ms", &ms.to_string())
    }

    /// Any other broker flag, passed to every broker.
    pub fn broker_arg(mut self, flag: &str, value: &str) -> Self {
        self.broker_args.push(flag.to_string());
        self.broker_args.push(value.to_string());
        self
    }

    /// Any PD flag.
    pub fn pd_arg(mut self, flag: &str, value: &str) -> Self {
        self.pd_args.push(flag.to_string());
        self.pd_args.push(value.to_string());
        self
    }

    /// Any range-server flag, passed to every range server.
    pub fn range_server_arg(mut self, flag: &str, value: &str) -> Self {
        self.range_server_args.push(flag.to_string());
        self.range_server_args.push(value.to_string());
        self
    }

    /// An environment variable for every process (PD, range servers, brokers).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The cluster's object store (`--object-store` of PD, range servers and brokers).
    pub fn object_store(self, url: &str) -> Self {
        self.pd_arg("--object-store", url)
            .range_server_arg("--object-store", url)
            .broker_arg("--object-store", url)
    }

    /// Start in `root` instead of a fresh temporary directory (which is deleted on drop).
    pub fn root(mut self, root: &Path) -> Self {
        self.root = Some(root.to_path_buf());
        self
    }

    /// Starts PD, the range servers and the brokers; returns once every range server is
    /// alive at PD and every broker is healthy and listed in the Metadata of each broker.
    pub async fn start(self) -> Cluster {
        let (root, temp) = match &self.root {
            Some(root) => (root.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("strata-test-")
                    .tempdir()
                    .expect("temp dir");
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut cluster = Cluster::start_with(
            &root,
            self.range_servers,
            &self.pd_args,
            &self.range_server_args,
            &self.env,
        )
        .await;
        cluster._temp = keep_if_asked(temp);
        for i in 1..=self.brokers {
            let mut args = vec!["--pd".to_string(), cluster.pd_addr()];
            args.extend(self.broker_args.iter().cloned());
            let mut broker = Proc::new(&format!("broker-{i}"), &root, "strata-broker", args);
            broker.env = self.env.clone();
            broker.start();
            cluster.brokers.push(broker);
        }
        if self.brokers > 0 {
            cluster.wait_for_brokers().await;
        }
        cluster
    }
}

impl Cluster {
    /// A builder for a cluster with brokers (3 range servers and 1 broker unless told).
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            range_servers: 3,
            brokers: 1,
            broker_args: Vec::new(),
            pd_args: Vec::new(),
            range_server_args: Vec::new(),
            env: Vec::new(),
            root: None,
        }
    }

    /// Starts PD and `range_servers` range servers in a fresh temporary directory and waits
    /// until every range server is registered and alive at PD.
    pub async fn start(range_servers: usize) -> Cluster {
        let temp = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir()
            .expect("temp dir");
        let root = temp.path().to_path_buf();
        let mut cluster = Cluster::start_in(&root, range_servers).await;
        cluster._temp = keep_if_asked(Some(temp));
        cluster
    }

    pub async fn start_in(root: &Path, range_servers: usize) -> Cluster {
        Cluster::start_with(root, range_servers, &[], &[], &[]).await
    }

    async fn start_with(
        root: &Path,
        range_servers: usize,
        pd_args: &[String],
        range_server_args: &[String],
        env: &[(String, String)],
    ) -> Cluster {
        let mut args = vec!["--lease-ms".to_string(), "3000".to_string()];
        args.extend(pd_args.iter().cloned());
        let mut pd = Proc::new("pd", root, "strata-pd", args);
        pd.env = env.to_vec();
        pd.start();
        let mut servers = Vec::new();
        for i in 1..=range_servers {
            let mut args = vec!["--pd".to_string(), pd.rpc_addr.clone()];
            args.extend(range_server_args.iter().cloned());
            let mut rs = Proc::new(
                &format!("range-server-{i}"),
                root,
                "strata-range-server",
                args,
            );
            rs.env = env.to_vec();
            rs.start();
            servers.push(rs);
        }
        let cluster = Cluster {
            pd,
            range_servers: servers,
            brokers: Vec::new(),
            root: root.to_path_buf(),
            _temp: None,
        };
        cluster.wait_for_range_servers(range_servers).await;
        cluster
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn pd_addr(&self) -> String {
        self.pd.rpc_addr.clone()
    }

    /// Waits until PD sees `n` live range servers.
    pub async fn wait_for_range_servers(&self, n: usize) {
        let pd = PdClient::new(&[self.pd_addr()]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(nodes) = pd.call(ListNodes {}).await {
                let alive = nodes
                    .iter()
                    .filter(|n| n.kind == NodeKind::RangeServer && n.alive)
                    .count();
                if alive >= n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "range servers did not register with PD"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn range_server(&mut self, i: usize) -> &mut Proc {
        &mut self.range_servers[i]
    }

    /// Broker `i` (0-based: `broker(0)` is `broker-1`).
    pub fn broker(&mut self, i: usize) -> &mut Proc {
        &mut self.brokers[i]
    }

    /// The Kafka listener addresses of the brokers, comma-separated (a bootstrap list).
    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.rpc_addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The Kafka listener address of broker `i` (0-based).
    pub fn kafka_addr(&self, i: usize) -> String {
        self.brokers[i].rpc_addr.clone()
    }

    /// Waits until every running broker lists every broker of the cluster in its Metadata
    /// (by address), so clients can reach all of them.
    pub async fn wait_for_brokers(&self) {
        let expected: Vec<String> = self.brokers.iter().map(|b| b.rpc_addr.clone()).collect();
        for broker in self.brokers.iter().filter(|b| b.is_running()) {
            let addr = broker.rpc_addr.clone();
            let expected = expected.clone();
            let name = broker.name.clone();
            let result = tokio::task::spawn_blocking(move || {
                kafka::wait_for_broker_list(&addr, &expected, Duration::from_secs(60))
            })
            .await
            .expect("metadata task");
            if let Err(e) = result {
                panic!(
                    "{name} does not list every broker in Metadata: {e}\n{}",
                    self.logs_tail(30)
                );
            }
        }
    }

    /// A broker process `name` of this cluster (its `--pd`, and `args`), not started and not
    /// in [`Cluster::brokers`]: for tests that start brokers in odd ways.
    pub fn extra_broker(&self, name: &str, args: &[&str]) -> Proc {
        let mut all = vec!["--pd".to_string(), self.pd_addr()];
        all.extend(args.iter().map(|a| a.to_string()));
        Proc::new(name, &self.root, "strata-broker", all)
    }

    /// Starts one more range server (`range-server-N`, added to [`Cluster::range_servers`])
    /// and waits until PD counts it alive; returns its index.
    pub async fn add_range_server(&mut self) -> usize {
        let n = self.range_servers.len() + 1;
        let mut rs = Proc::new(
            &format!("range-server-{n}"),
            &self.root,
            "strata-range-server",
            vec!["--pd".into(), self.pd_addr()],
        );
        rs.start();
        self.range_servers.push(rs);
        self.wait_for_range_servers(n).await;
        n - 1
    }

    /// Starts one more broker (`broker-N`, added to [`Cluster::brokers`]) with the arguments
    /// and environment of the first one; returns its index once it serves.
    pub fn add_broker(&mut self) -> usize {
        let n = self.brokers.len() + 1;
        let first = self.brokers.first();
        let args = first.map_or_else(|| vec!["--pd".into(), self.pd_addr()], |b| b.args.clone());
        let env = first.map(|b| b.env.clone()).unwrap_or_default();
        let mut broker = Proc::new(&format!("broker-{n}"), &self.root, "strata-broker", args);
        broker.env = env;
        broker.start();
        self.brokers.push(broker);
        n - 1
    }

    /// Broker `i`'s node id (its Kafka broker id), from the file it keeps in its data dir.
    pub fn broker_id(&self, i: usize) -> Option<u64> {
        actors::process::load_node_id(&self.brokers[i].dir)
    }

    /// Range server `i`'s node id, once it has registered.
    pub fn range_server_id(&self, i: usize) -> Option<u64> {
        actors::process::load_node_id(&self.range_servers[i].dir)
    }

    /// Kills broker `i` (SIGKILL), deletes its data dir and starts it again on the same Kafka
    /// and HTTP addresses: a broker that lost its disk.
    pub async fn restart_broker_wiped(&mut self, i: usize) {
        self.brokers[i].kill();
        self.brokers[i].wipe();
        self.brokers[i].start();
        self.wait_for_brokers().await;
    }

    /// Kills every broker, deletes every broker's data dir, then starts them all again on
    /// the same addresses.
    pub async fn restart_all_brokers_wiped(&mut self) {
        for b in &mut self.brokers {
            b.kill();
        }
        for b in &mut self.brokers {
            b.wipe();
        }
        for b in &mut self.brokers {
            b.start();
        }
        self.wait_for_brokers().await;
    }

    /// Kills every process with SIGKILL.
    pub fn kill_all(&mut self) {
        for b in &mut self.brokers {
            b.kill();
        }
        for rs in &mut self.range_servers {
            rs.kill();
        }
        self.pd.kill();
    }

    /// Starts every stopped process again with its data and addresses.
    pub async fn restart_all(&mut self) {
        if !self.pd.is_running() {
            self.pd.start();
        }
        for rs in &mut self.range_servers {
            if !rs.is_running() {
                rs.start();
            }
        }
        self.wait_for_range_servers(self.range_servers.len()).await;
        let mut any = false;
        for b in &mut self.brokers {
            if !b.is_running() {
                b.start();
                any = true;
            }
        }
        if any {
            self.wait_for_brokers().await;
        }
    }

    /// The last `n` lines of every broker's log, each under its name: for failure messages.
    pub fn logs_tail(&self, n: usize) -> String {
        let mut out = String::new();
        for b in &self.brokers {
            out.push_str(&format!(
                "----- {} ({}) log tail -----\n{}\n",
                b.name,
                b.dir.join("process.log").display(),
                b.log_tail_lines(n)
            ));
        }
        out
    }

    /// Lines of every process's log (PD, range servers, brokers) that look like errors or
    /// warnings, at most the last `n` per process, each under the process's name; and the
    /// free disk space under the cluster's directory (a full disk fails every WAL write).
    pub fn log_problems(&self, n: usize) -> String {
        let mut out = match disk_free(&self.root) {
            Some(free) => format!(
                "----- disk free under {}: {} MiB\n",
                self.root.display(),
                free >> 20
            ),
            None => String::new(),
        };
        let procs = std::iter::once(&self.pd)
            .chain(&self.range_servers)
            .chain(&self.brokers);
        for p in procs {
            let log = p.log();
            let bad: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
                .collect();
            if !bad.is_empty() {
                out.push_str(&format!(
                    "----- {}: last {} of {} errors/warnings -----\n",
                    p.name,
                    bad.len().min(n),
                    bad.len()
                ));
                out.push_str(&bad[bad.len().saturating_sub(n)..].join("\n"));
                out.push('\n');
            }
        }
        out
    }
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs the call fills in.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// With `STRATA_KEEP_TEST_DIRS` set, a test's cluster directory (data and logs) is kept
/// after the test for inspection; its path is printed.
fn keep_if_asked(temp: Option<tempfile::TempDir>) -> Option<tempfile::TempDir> {
    match temp {
        Some(temp) if std::env::var_os("STRATA_KEEP_TEST_DIRS").is_some() => {
            let path = temp.keep();
            eprintln!("keeping cluster dir {}", path.display());
            None
        }
        other => other,
    }
}

/// A minimal HTTP/1.0 GET for health checks; answers the status code.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(status, _)| status)
}

/// A minimal HTTP/1.0 GET; answers the status code and body.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Deterministic payload for (stream, offset): tests regenerate it to check what they read.
pub fn payload_for(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&offset.to_be_bytes());
    while out.len() < len.max(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len.max(8));
    out
}
