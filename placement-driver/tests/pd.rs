//! End-to-end tests of an embedded placement driver over real RPC: the request rules, watch,
//! liveness, topics and broker ownership of partitions, and restart with every committed
//! change (including across snapshots).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::RpcClient;
use placement_driver::{start, Config};
use protocol::model::NodeKind;
use protocol::pd::*;
use protocol::{ErrorCode, RpcError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn config(dir: &Path, lease_ms: u64, snapshot_logs: u64) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data: dir.to_path_buf(),
        lease: Duration::from_millis(lease_ms),
        snapshot_logs,
        ..Config::default()
    }
}

/// Retries `f` while the PD is still electing itself.
async fn call<R: protocol::Rpc + Clone>(c: &RpcClient, req: R) -> Result<R::Response, RpcError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.call(req.clone()).await {
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

async fn register(c: &RpcClient, id: Option<u64>, n: u16) -> Result<u64, RpcError> {
    Ok(call(
        c,
        RegisterNode {
            kind: NodeKind::RangeServer,
            node_id: id,
            addr: format!("127.0.0.1:{}", 7100 + n),
            http_addr: format!("127.0.0.1:{}", 8100 + n),
        },
    )
    .await?
    .node_id)
}

fn code<T: std::fmt::Debug>(r: Result<T, RpcError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code,
    }
}

fn heartbeat(node_id: u64) -> Heartbeat {
    Heartbeat {
        node_id,
        ranges: vec![],
        loads: None,
        version: "test".into(),
    }
}

fn create_stream(replica: u8, ack_count: u8) -> CreateStream {
    CreateStream { replica, ack_count }
}

fn open_stream(stream_id: u64, min_epoch: u64) -> OpenStream {
    OpenStream {
        stream_id,
        min_epoch,
    }
}

fn create_range(stream_id: u64, epoch: u64, start: u64, exclude: Vec<u64>) -> CreateRange {
    CreateRange {
        stream_id,
        epoch,
        start,
        exclude,
    }
}

fn seal_range(stream_id: u64, epoch: u64, index: u32, end: u64) -> SealRange {
    SealRange {
        stream_id,
        epoch,
        index,
        end,
    }
}

fn watch(since: u64, timeout_ms: u64) -> Watch {
    Watch { since, timeout_ms }
}

fn allocate_ids(key: &str, count: u64) -> AllocateIds {
    AllocateIds {
        key: key.into(),
        count,
    }
}

fn create_partitions(name: &str, total: u32, validate_only: bool) -> CreatePartitions {
    CreatePartitions {
        name: name.into(),
        total,
        validate_only,
    }
}

#[test]
fn rules_watch_and_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("pd");
    let (stream_id, epoch, watch_rev) = actix_rt::System::new().block_on(async {
        // A lease far longer than this phase: no liveness flip may wake the watcher below.
        let running = start(config(&data, 30_000, 5)).await?;
        let c = RpcClient::new(running.rpc_addr.to_string());
        assert_eq!(
            std::fs::read_to_string(data.join("rpc.addr"))?,
            running.rpc_addr.to_string()
        );

        let s1 = register(&c, None, 1).await?;
        let s2 = register(&c, None, 2).await?;
        let s3 = register(&c, None, 3).await?;
        assert_eq!((s1, s2, s3), (1, 2, 3));
        assert_eq!(register(&c, Some(2), 2).await?, 2);
        for id in [s1, s2, s3] {
            call(&c, heartbeat(id)).await?;
        }
        assert_eq!(code(call(&c, heartbeat(99)).await), ErrorCode::NotFound);

        assert_eq!(
            code(call(&c, create_stream(3, 4)).await),
            ErrorCode::InvalidArgument
        );
        let w0 = call(&c, watch(0, 0)).await?;
        let s = call(&c, create_stream(3, 2)).await?;
        assert_eq!((s.epoch, s.ranges.len()), (0, 0));
        let opened = call(&c, open_stream(s.id, 0)).await?;
        assert_eq!(opened.epoch, 1);
        let r0 = call(&c, create_range(s.id, 1, 0, vec![])).await?;
        assert_eq!(r0.servers.len(), 3);
        assert_eq!(r0.offload_owner, r0.servers[0]);
        // A second writer fences the first.
        let opened = call(&c, open_stream(s.id, 5)).await?;
        assert_eq!(opened.epoch, 5);
        assert_eq!(
            code(call(&c, seal_range(s.id, 1, 0, 10)).await),
            ErrorCode::Fenced
        );
        let sealed = call(&c, seal_range(s.id, 5, 0, 10)).await?;
        assert_eq!(sealed.end, Some(10));
        assert_eq!(call(&c, seal_range(s.id, 5, 0, 10)).await?, sealed);
        assert_eq!(
            code(call(&c, seal_range(s.id, 5, 0, 11)).await),
            ErrorCode::InvalidArgument
        );
        // Exclusion: the new range avoids s1 and prefers servers not in the last range.
        let r1 = call(&c, create_range(s.id, 5, 10, vec![s1])).await?;
        assert_eq!(r1.index, 1);
        assert!(!r1.servers.contains(&s1));
        assert_eq!(r1.servers.len(), 2);

        // Watch sees the changes, and long-polls for the next one.
        let w = call(&c, watch(w0.revision, 0)).await?;
        assert!(!w.reset);
        assert!(w.events.contains(&Event::StreamChanged(s.id)));
        let c2 = c.clone();
        let rev = w.revision;
        let waiter = tokio::spawn(async move { call(&c2, watch(rev, 5000)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(
            &c,
            TrimStream {
                stream_id: s.id,
                start_offset: 5,
            },
        )
        .await?;
        let woke = waiter.await??;
        assert_eq!(woke.events, vec![Event::StreamChanged(s.id)]);

        assert_eq!(call(&c, allocate_ids("topic", 10)).await?, 1);
        assert_eq!(call(&c, allocate_ids("topic", 1)).await?, 11);
        let gone = call(&c, create_stream(1, 1)).await?;
        call(&c, DeleteStream { stream_id: gone.id }).await?;
        assert_eq!(
            code(call(&c, DescribeStream { stream_id: gone.id }).await),
            ErrorCode::NotFound
        );
        let nodes = call(&c, ListNodes {}).await?;
        assert_eq!(nodes.len(), 3);
        assert!(nodes.iter().all(|n| n.alive));
        // Many writes so that snapshots are taken and the log purged.
        for _ in 0..30 {
            call(&c, allocate_ids("bulk", 1)).await?;
        }
        running.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>((s.id, 5u64, woke.revision))
    })?;

    // Restart on the same data: everything committed is there.
    actix_rt::System::new().block_on(async {
        let running = start(config(&data, 300, 5)).await?;
        let c = RpcClient::new(running.rpc_addr.to_string());
        let s = call(&c, DescribeStream { stream_id }).await?;
        assert_eq!(s.epoch, epoch);
        assert_eq!(s.start_offset, 5);
        assert_eq!(s.ranges.len(), 2);
        assert_eq!(s.ranges[0].end, Some(10));
        assert_eq!(call(&c, allocate_ids("bulk", 1)).await?, 31);
        assert_eq!(call(&c, allocate_ids("topic", 1)).await?, 12);
        assert_eq!(call(&c, ListStreams {}).await?.len(), 1);
        // A revision this PD never issued (ahead of it) gets a reset, never an error.
        assert!(watch_rev > 0);
        let w = call(&c, watch(u64::MAX, 0)).await?;
        assert!(w.reset);
        // Known nodes are alive during the grace period, then die without heartbeats.
        assert!(call(&c, ListNodes {}).await?.iter().all(|n| n.alive));
        tokio::time::sleep(Duration::from_millis(400)).await;
        call(&c, heartbeat(3)).await?;
        let nodes = call(&c, ListNodes {}).await?;
        let alive: Vec<u64> = nodes.iter().filter(|n| n.alive).map(|n| n.id).collect();
        assert_eq!(alive, vec![3]);
        // Only one live server: a replica-3/ack-2 range cannot be placed.
        let st = call(&c, create_stream(3, 2)).await?;
        let st = call(&c, open_stream(st.id, 0)).await?;
        assert_eq!(
            code(call(&c, create_range(st.id, st.epoch, 0, vec![])).await),
            ErrorCode::NoCapacity
        );
        let snapshot = data.join("raft").join("snapshot");
        assert!(snapshot.exists());
        running.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

#[test]
fn garbage_does_not_stop_the_server() -> TestResult {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir()?;
    actix_rt::System::new().block_on(async {
        let running = start(config(dir.path(), 3000, 1000)).await?;
        let addr = running.rpc_addr;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(&[0xff; 64])?;
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            let mut s = std::net::TcpStream::connect(addr)?;
            s.write_all(&u32::MAX.to_be_bytes())?;
            Ok(())
        })
        .await??;
        let c = RpcClient::new(addr.to_string());
        let s = call(&c, create_stream(1, 1)).await?;
        assert_eq!(s.id, 1);
        running.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaks nothing.
struct Pd(std::process::Child);

impl Drop for Pd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary on free ports and waits for its address file.
fn spawn_pd(data: &Path) -> Result<(Pd, String), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_file(data.join("rpc.addr"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_strata-pd"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--snapshot-logs",
            "20",
        ])
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let child = Pd(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(addr) = std::fs::read_to_string(data.join("rpc.addr")) {
            return Ok((child, addr));
        }
        if Instant::now() > deadline {
            return Err("strata-pd did not write rpc.addr".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn survives_kill_9() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("pd");
    let (child, addr) = spawn_pd(&data)?;
    let written = actix_rt::System::new().block_on(async {
        let c = RpcClient::new(addr);
        let mut ids = Vec::new();
        for i in 0..50u64 {
            let s = call(&c, create_stream(1, 1)).await?;
            call(&c, open_stream(s.id, i)).await?;
            ids.push(s.id);
        }
        Ok::<_, RpcError>(ids)
    });
    drop(child); // SIGKILL
    let written = written?;
    let (child, addr) = spawn_pd(&data)?;
    let result = actix_rt::System::new().block_on(async {
        let c = RpcClient::new(addr);
        let streams = call(&c, ListStreams {}).await?;
        assert_eq!(streams.iter().map(|s| s.id).collect::<Vec<_>>(), written);
        for (i, s) in streams.iter().enumerate() {
            assert_eq!(s.epoch, (i as u64).max(1));
        }
        let next = call(&c, create_stream(1, 1)).await?;
        assert_eq!(next.id, 51);
        Ok::<_, RpcError>(())
    });
    drop(child);
    result?;
    Ok(())
}

async fn register_broker(c: &RpcClient, port: u16) -> Result<u64, RpcError> {
    Ok(call(
        c,
        RegisterNode {
            kind: NodeKind::Broker,
            node_id: None,
            addr: format!("127.0.0.1:{port}"),
            http_addr: format!("127.0.0.1:{}", port + 1000),
        },
    )
    .await?
    .node_id)
}

/// Heartbeats `id` every 100 ms until the returned flag is cleared.
fn heartbeat_every_100ms(c: &RpcClient, id: u64) -> Arc<AtomicBool> {
    let on = Arc::new(AtomicBool::new(true));
    let (c, flag) = (c.clone(), on.clone());
    tokio::spawn(async move {
        while flag.load(Ordering::SeqCst) {
            let _ = c.call(heartbeat(id)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    on
}

fn leaders(t: &protocol::model::TopicInfo) -> Vec<Option<u64>> {
    t.partitions.iter().map(|p| p.leader).collect()
}

/// Polls the named topic until `done` holds for it (or 10 s pass).
async fn wait_topic(
    c: &RpcClient,
    name: &str,
    done: impl Fn(&protocol::model::TopicInfo) -> bool,
) -> Result<protocol::model::TopicInfo, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let topics = call(c, ListTopics {}).await?;
        if let Some(t) = topics.into_iter().find(|t| t.name == name) {
            if done(&t) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(format!("topic {name} never reached the state: {t:?}").into());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn create_topic(name: &str, partitions: u32) -> CreateTopic {
    CreateTopic {
        name: name.into(),
        partitions,
        configs: vec![],
        replica: 3,
        ack_count: 2,
        internal: false,
        validate_only: false,
    }
}

#[test]
fn topics_partitions_and_broker_ownership() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("pd");
    let lease_ms = 600;
    let cluster_id = actix_rt::System::new().block_on(async {
        let running = start(config(&data, lease_ms, 1000)).await?;
        let c = RpcClient::new(running.rpc_addr.to_string());

        // Fixed at the first start, and stable.
        let cluster = call(&c, GetClusterInfo {}).await?;
        assert_eq!(cluster.cluster_id.len(), 22);
        assert_eq!(
            call(&c, GetClusterInfo {}).await?.cluster_id,
            cluster.cluster_id
        );

        for n in 1..=3 {
            let id = register(&c, None, n).await?;
            heartbeat_every_100ms(&c, id);
        }
        let a = register_broker(&c, 19092).await?;
        let a_beats = heartbeat_every_100ms(&c, a);

        // Rules.
        assert_eq!(
            code(call(&c, create_topic("bad/name", 1)).await),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(call(&c, create_topic("t", 0)).await),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(call(&c, create_topic("t", 10_001)).await),
            ErrorCode::InvalidArgument
        );
        let dry = call(
            &c,
            CreateTopic {
                validate_only: true,
                ..create_topic("orders", 4)
            },
        )
        .await?;
        assert_eq!(dry.partitions.len(), 4);
        assert!(call(&c, ListTopics {}).await?.is_empty());

        let w0 = call(&c, watch(0, 0)).await?;
        let orders = call(
            &c,
            CreateTopic {
                configs: vec![("retention.ms".into(), "60000".into())],
                ..create_topic("orders", 4)
            },
        )
        .await?;
        assert_eq!(orders.id[6] >> 4, 4, "UUID v4 layout");
        assert_eq!(orders.config("retention.ms"), Some("60000"));
        // Assigned at creation to the only live broker.
        assert_eq!(leaders(&orders), vec![Some(a); 4]);
        assert!(orders.partitions.iter().all(|p| p.leader_epoch == 0));
        assert_eq!(
            code(call(&c, create_topic("orders", 1)).await),
            ErrorCode::AlreadyExists
        );
        let w = call(&c, watch(w0.revision, 0)).await?;
        assert!(w.events.contains(&Event::TopicChanged("orders".into())));

        // The partitions' streams are real streams.
        for p in &orders.partitions {
            for id in [p.data_stream, p.meta_stream] {
                let s = call(&c, DescribeStream { stream_id: id }).await?;
                assert_eq!((s.replica, s.ack_count, s.deleted), (3, 2, false));
            }
        }
        let p0 = orders.partitions[0].data_stream;
        let opened = call(&c, open_stream(p0, 0)).await?;
        let range = call(&c, create_range(p0, opened.epoch, 0, vec![])).await?;
        assert_eq!(range.servers.len(), 3);

        // A second broker gets a fair share; moved partitions' epochs bump once.
        let b = register_broker(&c, 19093).await?;
        let b_beats = heartbeat_every_100ms(&c, b);
        let balanced = wait_topic(&c, "orders", |t| {
            leaders(t).iter().filter(|l| **l == Some(b)).count() == 2
        })
        .await?;
        for p in &balanced.partitions {
            let moved = p.leader == Some(b);
            assert_eq!(p.leader_epoch, u32::from(moved), "{p:?}");
            assert!(p.leader == Some(a) || moved);
        }

        // A stops heartbeating: its partitions move to B within a lease and a tick or so.
        let w1 = call(&c, watch(0, 0)).await?;
        a_beats.store(false, Ordering::SeqCst);
        let stopped = Instant::now();
        let moved = wait_topic(&c, "orders", |t| leaders(t) == vec![Some(b); 4]).await?;
        let took = stopped.elapsed();
        eprintln!("dead broker's partitions moved after {took:?} (lease {lease_ms} ms)");
        for (before, after) in balanced.partitions.iter().zip(&moved.partitions) {
            let expected = before.leader_epoch + u32::from(before.leader == Some(a));
            assert_eq!(after.leader_epoch, expected);
        }
        // Watchers heard about the topic and about A's liveness.
        let w = call(&c, watch(w1.revision, 0)).await?;
        assert!(w.events.contains(&Event::TopicChanged("orders".into())));
        assert!(w.events.contains(&Event::NodeChanged(a)), "{:?}", w.events);
        let nodes = call(&c, ListNodes {}).await?;
        assert!(nodes.iter().any(|n| n.id == a && !n.alive));

        // A comes back with an empty data dir: same address, same id.
        assert_eq!(register_broker(&c, 19092).await?, a);
        let a_beats = heartbeat_every_100ms(&c, a);
        let _ = wait_topic(&c, "orders", |t| {
            leaders(t).iter().filter(|l| **l == Some(a)).count() == 2
        })
        .await?;

        // More partitions: new streams, and owners at once.
        assert_eq!(
            code(call(&c, create_partitions("orders", 4, false)).await),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(call(&c, create_partitions("nope", 4, false)).await),
            ErrorCode::NotFound
        );
        let dry = call(&c, create_partitions("orders", 6, true)).await?;
        assert_eq!(dry.partitions.len(), 6);
        let grown = call(&c, create_partitions("orders", 6, false)).await?;
        assert_eq!(grown.partitions.len(), 6);
        assert!(grown.partitions[4..].iter().all(|p| p.leader.is_some()));
        for p in &grown.partitions[4..] {
            call(
                &c,
                DescribeStream {
                    stream_id: p.meta_stream,
                },
            )
            .await?;
        }

        // Configs, both ways: (set key, value, remove, replace_all, validate_only); each answer
        // shows just the one key set (a dry run answers what would be).
        let cases: [(&str, &str, &[&str], bool, bool); 3] = [
            ("cleanup.policy", "compact", &["retention.ms"], false, false),
            ("max.message.bytes", "1000", &[], true, true),
            ("segment.ms", "1", &[], true, false),
        ];
        for (key, value, remove, replace_all, validate_only) in cases {
            let t = call(
                &c,
                AlterTopicConfigs {
                    name: "orders".into(),
                    set: vec![(key.into(), value.into())],
                    remove: remove.iter().map(|r| r.to_string()).collect(),
                    replace_all,
                    validate_only,
                },
            )
            .await?;
            assert_eq!(t.configs, vec![(key.into(), value.into())]);
        }

        // Delete: the topic and its streams are gone.
        let tmp = call(&c, create_topic("tmp", 2)).await?;
        call(&c, DeleteTopic { name: "tmp".into() }).await?;
        assert_eq!(
            code(call(&c, DeleteTopic { name: "tmp".into() }).await),
            ErrorCode::NotFound
        );
        for p in &tmp.partitions {
            assert_eq!(
                code(
                    call(
                        &c,
                        DescribeStream {
                            stream_id: p.data_stream
                        }
                    )
                    .await
                ),
                ErrorCode::NotFound
            );
        }
        let names: Vec<String> = call(&c, ListTopics {})
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["orders".to_string()]);

        a_beats.store(false, Ordering::SeqCst);
        b_beats.store(false, Ordering::SeqCst);
        running.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(cluster.cluster_id)
    })?;

    // Restart: the same cluster id and topics.
    actix_rt::System::new().block_on(async {
        let running = start(config(&data, lease_ms, 1000)).await?;
        let c = RpcClient::new(running.rpc_addr.to_string());
        assert_eq!(call(&c, GetClusterInfo {}).await?.cluster_id, cluster_id);
        let topics = call(&c, ListTopics {}).await?;
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions.len(), 6);
        assert_eq!(topics[0].configs, vec![("segment.ms".into(), "1".into())]);
        running.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
