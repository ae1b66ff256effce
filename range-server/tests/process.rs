//! The `strata-range-server` binary as a real process with a real placement driver: pipelined
//! appends over RPC, fetches, metrics, kill -9 and restart with the same node id and data.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actors::RpcClient;
use protocol::model::NodeKind;
use protocol::pd::ListNodes;
use protocol::range_rpc::{Append, Commit, Fetch, Seal};
use protocol::ErrorCode;
use stream_client::PdClient;

/// The real placement driver, from the same target directory (`cargo build --release --bins`
/// builds it; `scripts/test` does that first).
fn pd_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let pd = dir.join("strata-pd");
    assert!(
        pd.exists(),
        "{} is missing: build the binaries first (cargo build --release --bins)",
        pd.display()
    );
    pd
}

async fn start_pd(data: &Path) -> (Server, String) {
    let mut pd = Command::new(pd_binary());
    pd.args([
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--lease-ms",
        "2000",
    ]);
    let child = start_quiet(pd, data);
    let addr = wait_file(&data.join("rpc.addr")).await;
    (child, addr)
}

/// Range servers PD knows: `(id, alive)`.
async fn range_servers(pd: &PdClient) -> Vec<(u64, bool)> {
    pd.call(ListNodes {})
        .await
        .map(|nodes| {
            nodes
                .into_iter()
                .filter(|n| n.kind == NodeKind::RangeServer)
                .map(|n| (n.id, n.alive))
                .collect()
        })
        .unwrap_or_default()
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(data: &Path, pd: &str) -> Server {
    let _ = std::fs::remove_file(data.join("rpc.addr"));
    let _ = std::fs::remove_file(data.join("http.addr"));
    let mut server = Command::new(env!("CARGO_BIN_EXE_strata-range-server"));
    server
        .args([
            "--pd",
            pd,
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--segment-bytes", "100000", "--cache-bytes", "50000"]);
    start_quiet(server, data)
}

/// Starts `command` on the data directory `data`, its output discarded.
fn start_quiet(mut command: Command, data: &Path) -> Server {
    command
        .arg("--data")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Server)
        .unwrap()
}

async fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn payload(i: u64) -> Vec<u8> {
    let len = 100 + (i * 37 % 3000) as usize;
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

fn append(i: u64) -> Append {
    let p = payload(i);
    Append {
        stream_id: 9,
        index: 0,
        epoch: 1,
        range_start: 0,
        offset: i * 3,
        count: 3,
        confirmed: i * 3,
        crc: protocol::checksum(&p),
        payload: p.into(),
    }
}

async fn fetch_all(client: &RpcClient, end: u64) -> Vec<protocol::range_rpc::Batch> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < end {
        let resp = client
            .call(Fetch {
                stream_id: 9,
                index: 0,
                offset,
                end,
                max_bytes: 20_000,
            })
            .await
            .unwrap();
        let last = resp.batches.last().unwrap();
        offset = last.offset + last.count as u64;
        out.extend(resp.batches);
    }
    out
}

/// Waits (up to 20 s) until PD lists exactly one range server, `node_id`, alive; else fails
/// with `why`.
async fn wait_until_only_alive(pd: &PdClient, node_id: u64, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while range_servers(pd).await != vec![(node_id, true)] {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes PD know streams 1 to 10, with range 0 of streams 9 and 10 (epoch 1, start 0) on the
/// one range server: PD retires the ranges it does not know on a range server.
async fn create_streams_9_and_10(pd: &PdClient) {
    use protocol::pd::{CreateRange, CreateStream, OpenStream};
    for _ in 1..=10 {
        pd.call(CreateStream {
            replica: 1,
            ack_count: 1,
        })
        .await
        .unwrap();
    }
    for stream_id in [9, 10] {
        let s = pd
            .call(OpenStream {
                stream_id,
                min_epoch: 0,
            })
            .await
            .unwrap();
        assert_eq!(s.epoch, 1);
        pd.call(CreateRange {
            stream_id,
            epoch: 1,
            start: 0,
            exclude: Vec::new(),
        })
        .await
        .unwrap();
    }
}

#[actix::test]
async fn serves_survives_kill_9_and_keeps_its_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rs");
    let (_pd_process, pd) = start_pd(&dir.path().join("pd")).await;
    let pd_client = PdClient::new(std::slice::from_ref(&pd));
    let child = spawn(&data, &pd);
    let rpc = wait_file(&data.join("rpc.addr")).await;
    let http = wait_file(&data.join("http.addr")).await;
    let client = RpcClient::new(rpc.clone());
    let node_id: u64 = wait_file(&data.join("node_id")).await.parse().unwrap();
    wait_until_only_alive(&pd_client, node_id, "PD never saw the range server alive").await;
    create_streams_9_and_10(&pd_client).await;

    // 300 pipelined appends of mixed sizes over several WAL segments.
    let n = 300u64;
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(client.send(append(i)).await.unwrap());
    }
    for (i, p) in pending.into_iter().enumerate() {
        let durable = p.await.unwrap().durable;
        assert!(durable >= (i as u64 + 1) * 3);
    }
    let e = client.call(append(5)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AlreadyCommitted);
    let e = client.call(append(n + 1)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Overtaking);
    let e = client
        .call(Fetch {
            stream_id: 1234,
            index: 0,
            offset: 0,
            end: 10,
            max_bytes: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    // Readable up to the last piggybacked confirmed offset.
    let got = fetch_all(&client, (n - 1) * 3).await;
    assert_eq!(got.len() as u64, n - 1);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(b.payload, payload(i as u64));
    }

    // Registered, ranges reported, metrics and health served.
    let metrics = http_get(&http, "/metrics");
    assert!(metrics.contains("strata_rs_appends_total 300"), "{metrics}");
    assert!(metrics.contains("strata_rs_wal_fsyncs_total"));
    assert!(
        http_get(&http, "/healthz").starts_with("HTTP/1.0 200")
            || http_get(&http, "/healthz").contains(" 200 ")
    );

    // kill -9 and restart on the same data.
    drop(child);
    let child = spawn(&data, &pd);
    let rpc = wait_file(&data.join("rpc.addr")).await;
    let client = RpcClient::new(rpc);
    // It comes back under the same node id: after a few heartbeat intervals PD still lists
    // exactly one range server, the same one, alive.
    assert_eq!(wait_file(&data.join("node_id")).await, node_id.to_string());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_until_only_alive(
        &pd_client,
        node_id,
        "PD lost track of the restarted range server",
    )
    .await;

    // Everything appended is back, byte for byte, once the writer says it is confirmed.
    client
        .call(Commit {
            stream_id: 9,
            index: 0,
            epoch: 1,
            confirmed: n * 3,
        })
        .await
        .unwrap();
    let got = fetch_all(&client, n * 3).await;
    assert_eq!(got.len() as u64, n);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(b.offset, i as u64 * 3);
        assert_eq!(b.payload, payload(i as u64));
        assert_eq!(b.crc, protocol::checksum(&b.payload));
    }
    // Appends continue after the recovered end; a newer writer's seal fences the old one.
    client.call(append(n)).await.unwrap();
    let sealed = client
        .call(Seal {
            stream_id: 9,
            index: 0,
            epoch: 2,
            range_start: 0,
            end: None,
            node: 0,
        })
        .await
        .unwrap();
    assert_eq!(sealed.local_end, (n + 1) * 3);
    let e = client.call(append(n + 1)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Fenced);
    // A seal of a range never seen here fences that range's stale first append.
    client
        .call(Seal {
            stream_id: 10,
            index: 0,
            epoch: 5,
            range_start: 0,
            end: Some(0),
            node: 0,
        })
        .await
        .unwrap();
    let mut stale = append(0);
    stale.stream_id = 10;
    stale.epoch = 4;
    assert_eq!(
        client.call(stale).await.unwrap_err().code,
        ErrorCode::Fenced
    );

    drop(child);
}
