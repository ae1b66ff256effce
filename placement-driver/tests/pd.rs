//! End-to-end tests of an embedded placement driver over real RPC: the request rules, watch,
//! liveness, and restart with every committed change (including across snapshots).

use std::path::Path;
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

#[test]
fn rules_watch_and_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("pd");
    let (stream_id, epoch, watch_rev) = actix_rt::System::new().block_on(async {
        let running = start(config(&data, 3000, 5)).await?;
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
            call(
                &c,
                Heartbeat {
                    node_id: id,
                    ranges: vec![],
                },
            )
            .await?;
        }
        assert_eq!(
            code(
                call(
                    &c,
                    Heartbeat {
                        node_id: 99,
                        ranges: vec![]
                    }
                )
                .await
            ),
            ErrorCode::NotFound
        );

        assert_eq!(
            code(
                call(
                    &c,
                    CreateStream {
                        replica: 3,
                        ack_count: 4
                    }
                )
                .await
            ),
            ErrorCode::InvalidArgument
        );
        let w0 = call(
            &c,
            Watch {
                since: 0,
                timeout_ms: 0,
            },
        )
        .await?;
        let s = call(
            &c,
            CreateStream {
                replica: 3,
                ack_count: 2,
            },
        )
        .await?;
        assert_eq!((s.epoch, s.ranges.len()), (0, 0));
        let opened = call(
            &c,
            OpenStream {
                stream_id: s.id,
                min_epoch: 0,
            },
        )
        .await?;
        assert_eq!(opened.epoch, 1);
        let r0 = call(
            &c,
            CreateRange {
                stream_id: s.id,
                epoch: 1,
                start: 0,
                exclude: vec![],
            },
        )
        .await?;
        assert_eq!(r0.servers.len(), 3);
        assert_eq!(r0.offload_owner, r0.servers[0]);
        // A second writer fences the first.
        let opened = call(
            &c,
            OpenStream {
                stream_id: s.id,
                min_epoch: 5,
            },
        )
        .await?;
        assert_eq!(opened.epoch, 5);
        assert_eq!(
            code(
                call(
                    &c,
                    SealRange {
                        stream_id: s.id,
                        epoch: 1,
                        index: 0,
                        end: 10
                    }
                )
                .await
            ),
            ErrorCode::Fenced
        );
        let sealed = call(
            &c,
            SealRange {
                stream_id: s.id,
                epoch: 5,
                index: 0,
                end: 10,
            },
        )
        .await?;
        assert_eq!(sealed.end, Some(10));
        assert_eq!(
            call(
                &c,
                SealRange {
                    stream_id: s.id,
                    epoch: 5,
                    index: 0,
                    end: 10
                }
            )
            .await?,
            sealed
        );
        assert_eq!(
            code(
                call(
                    &c,
                    SealRange {
                        stream_id: s.id,
                        epoch: 5,
                        index: 0,
                        end: 11
                    }
                )
                .await
            ),
            ErrorCode::InvalidArgument
        );
        // Exclusion: the new range avoids s1 and prefers servers not in the last range.
        let r1 = call(
            &c,
            CreateRange {
                stream_id: s.id,
                epoch: 5,
                start: 10,
                exclude: vec![s1],
            },
        )
        .await?;
        assert_eq!(r1.index, 1);
        assert!(!r1.servers.contains(&s1));
        assert_eq!(r1.servers.len(), 2);

        // Watch sees the changes, and long-polls for the next one.
        let w = call(
            &c,
            Watch {
                since: w0.revision,
                timeout_ms: 0,
            },
        )
        .await?;
        assert!(!w.reset);
        assert!(w.events.contains(&Event::StreamChanged(s.id)));
        let c2 = c.clone();
        let rev = w.revision;
        let waiter = tokio::spawn(async move {
            call(
                &c2,
                Watch {
                    since: rev,
                    timeout_ms: 5000,
                },
            )
            .await
        });
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

        assert_eq!(
            call(
                &c,
                AllocateIds {
                    key: "topic".into(),
                    count: 10
                }
            )
            .await?,
            1
        );
        assert_eq!(
            call(
                &c,
                AllocateIds {
                    key: "topic".into(),
                    count: 1
                }
            )
            .await?,
            11
        );
        let gone = call(
            &c,
            CreateStream {
                replica: 1,
                ack_count: 1,
            },
        )
        .await?;
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
            call(
                &c,
                AllocateIds {
                    key: "bulk".into(),
                    count: 1,
                },
            )
            .await?;
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
        assert_eq!(
            call(
                &c,
                AllocateIds {
                    key: "bulk".into(),
                    count: 1
                }
            )
            .await?,
            31
        );
        assert_eq!(
            call(
                &c,
                AllocateIds {
                    key: "topic".into(),
                    count: 1
                }
            )
            .await?,
            12
        );
        assert_eq!(call(&c, ListStreams {}).await?.len(), 1);
        // A since from before the restart's snapshot gets a reset (or events, never an error).
        let w = call(
            &c,
            Watch {
                since: watch_rev + 1000,
                timeout_ms: 0,
            },
        )
        .await?;
        assert!(w.reset);
        // Known nodes are alive during the grace period, then die without heartbeats.
        assert!(call(&c, ListNodes {}).await?.iter().all(|n| n.alive));
        tokio::time::sleep(Duration::from_millis(400)).await;
        call(
            &c,
            Heartbeat {
                node_id: 3,
                ranges: vec![],
            },
        )
        .await?;
        let nodes = call(&c, ListNodes {}).await?;
        let alive: Vec<u64> = nodes.iter().filter(|n| n.alive).map(|n| n.id).collect();
        assert_eq!(alive, vec![3]);
        // Only one live server: a replica-3/ack-2 range cannot be placed.
        let st = call(
            &c,
            CreateStream {
                replica: 3,
                ack_count: 2,
            },
        )
        .await?;
        let st = call(
            &c,
            OpenStream {
                stream_id: st.id,
                min_epoch: 0,
            },
        )
        .await?;
        assert_eq!(
            code(
                call(
                    &c,
                    CreateRange {
                        stream_id: st.id,
                        epoch: st.epoch,
                        start: 0,
                        exclude: vec![]
                    }
                )
                .await
            ),
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
        let s = call(
            &c,
            CreateStream {
                replica: 1,
                ack_count: 1,
            },
        )
        .await?;
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
            let s = call(
                &c,
                CreateStream {
                    replica: 1,
                    ack_count: 1,
                },
            )
            .await?;
            call(
                &c,
                OpenStream {
                    stream_id: s.id,
                    min_epoch: i,
                },
            )
            .await?;
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
        let next = call(
            &c,
            CreateStream {
                replica: 1,
                ack_count: 1,
            },
        )
        .await?;
        assert_eq!(next.id, 51);
        Ok::<_, RpcError>(())
    });
    drop(child);
    result?;
    Ok(())
}
