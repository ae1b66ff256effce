//! Test and benchmark harness: starts real Strata processes (`strata-pd`,
//! `strata-range-server`) from the workspace's target directory, each in its own directory
//! with its own log, on ports the processes pick themselves (port 0, read back from the
//! `rpc.addr`/`http.addr` files they write), and kills or restarts them for fault drills.
//! It never stands in for a process: everything it starts is the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::model::NodeKind;
use protocol::pd::ListNodes;
use range_server::client::PdClient;

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
            child: None,
            rpc_addr: "127.0.0.1:0".to_string(),
            http_addr: "127.0.0.1:0".to_string(),
        }
    }

    /// Starts the process (again, with the same data and addresses after the first start)
    /// and waits until its `/healthz` answers 200.
    pub fn start(&mut self) {
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
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rpc = std::fs::read_to_string(self.dir.join("rpc.addr"));
            let http = std::fs::read_to_string(self.dir.join("http.addr"));
            if let (Ok(rpc), Ok(http)) = (rpc, http) {
                if http_status(http.trim(), "/healthz") == Some(200) {
                    self.rpc_addr = rpc.trim().to_string();
                    self.http_addr = http.trim().to_string();
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
                "{} did not become healthy; log:\n{}",
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

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("process.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A placement driver and `n` range servers, all real processes in a temporary directory.
pub struct Cluster {
    pub pd: Proc,
    pub range_servers: Vec<Proc>,
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts PD and `range_servers` range servers in a fresh temporary directory and waits
    /// until every range server is registered and alive at PD.
    pub async fn start(range_servers: usize) -> Cluster {
        let temp = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir()
            .expect("temp dir");
        let root = temp.path().to_path_buf();
        let mut cluster = Cluster::start_in(&root, range_servers).await;
        cluster._temp = Some(temp);
        cluster
    }

    pub async fn start_in(root: &Path, range_servers: usize) -> Cluster {
        let mut pd = Proc::new(
            "pd",
            root,
            "strata-pd",
            vec!["--lease-ms".into(), "3000".into()],
        );
        pd.start();
        let mut servers = Vec::new();
        for i in 1..=range_servers {
            let mut rs = Proc::new(
                &format!("range-server-{i}"),
                root,
                "strata-range-server",
                vec!["--pd".into(), pd.rpc_addr.clone()],
            );
            rs.start();
            servers.push(rs);
        }
        let cluster = Cluster {
            pd,
            range_servers: servers,
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

    /// Kills every process with SIGKILL.
    pub fn kill_all(&mut self) {
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
