//! Storage foundation, end to end: a real placement driver and real range servers (separate
//! processes on ports they pick, data in temp dirs) driven through the stream client and raw
//! TCP. Each test asserts what a user of streams would observe.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use integration::{payload_for, Cluster};
use protocol::model::{NodeKind, StreamId, StreamInfo};
use protocol::pd::ListNodes;
use protocol::range_rpc::Fetch;
use protocol::ErrorCode;
use stream_client::{AppendFuture, StreamClient, StreamWriter};

/// One append the test made: where it landed and what it held.
#[derive(Debug, Clone, Copy)]
struct Written {
    offset: u64,
    count: u32,
    len: usize,
}

fn size_of(i: u64) -> usize {
    [16, 100, 512, 1024, 4096, 300][(i % 6) as usize]
}

fn count_of(i: u64) -> u32 {
    (i % 5 + 1) as u32
}

/// Appends `n` batches with up to `depth` in flight; returns every confirmed one, in order.
async fn append_many(
    writer: &mut StreamWriter,
    seed: u64,
    first: u64,
    n: u64,
    depth: usize,
) -> Vec<Written> {
    let mut in_flight: VecDeque<(Written, AppendFuture)> = VecDeque::new();
    let mut done = Vec::with_capacity(n as usize);
    for i in first..first + n {
        let offset = writer.next_offset();
        let written = Written {
            offset,
            count: count_of(i),
            len: size_of(i),
        };
        let fut = writer.append(
            Bytes::from(payload_for(seed, offset, written.len)),
            written.count,
        );
        in_flight.push_back((written, fut));
        if in_flight.len() >= depth {
            let (w, fut) = in_flight.pop_front().unwrap();
            assert_eq!(fut.await.expect("append confirmed"), w.offset);
            done.push(w);
        }
    }
    for (w, fut) in in_flight {
        assert_eq!(fut.await.expect("append confirmed"), w.offset);
        done.push(w);
    }
    done
}

/// Reads the stream from `start` through the client and checks it is exactly `expected`.
async fn verify_through_client(
    client: &StreamClient,
    stream: StreamId,
    seed: u64,
    expected: &[Written],
) {
    let mut offset = expected.first().map(|w| w.offset).unwrap_or(0);
    let mut i = 0;
    while i < expected.len() {
        // Replicas serve up to the confirmed offset the writer last told them; after the
        // last append that notice (`Commit`) travels on its own, so the tail may take a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let result = loop {
            let result = client.read(stream, offset, 1 << 20).await.expect("read");
            if !result.batches.is_empty() || std::time::Instant::now() > deadline {
                break result;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            !result.batches.is_empty(),
            "no data at offset {offset} (batch {i} of {}) within 5 s",
            expected.len()
        );
        for batch in result.batches {
            let w = expected[i];
            assert_eq!(
                (batch.offset, batch.count),
                (w.offset, w.count),
                "batch {i}"
            );
            assert_eq!(
                batch.payload,
                payload_for(seed, w.offset, w.len),
                "payload of batch {i}"
            );
            i += 1;
            offset = batch.offset + batch.count as u64;
            if i == expected.len() {
                break;
            }
        }
    }
}

/// `servers` range servers, a client, and a new stream on every one of them, confirmed by
/// `ack_count`.
async fn cluster_with_stream(servers: usize, ack_count: u8) -> (Cluster, StreamClient, StreamInfo) {
    let cluster = Cluster::start(servers).await;
    let client = StreamClient::new(&[cluster.pd_addr()]);
    let replica = u8::try_from(servers).expect("a replica count");
    let stream = client
        .create_stream(replica, ack_count)
        .await
        .expect("create");
    (cluster, client, stream)
}

/// Three range servers, a client, and a new stream replicated to all three (acks from two).
async fn three_replica_stream() -> (Cluster, StreamClient, StreamInfo) {
    cluster_with_stream(3, 2).await
}

async fn range_server_addr(client: &StreamClient, node: u64) -> String {
    let nodes = client.pd().call(ListNodes {}).await.expect("list nodes");
    nodes
        .into_iter()
        .find(|n| n.id == node)
        .expect("node known")
        .addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_appends_read_back_from_client_and_every_replica() {
    let (_cluster, client, stream) = three_replica_stream().await;
    let mut writer = client.open(stream.id).await.expect("open");
    let written = append_many(&mut writer, 1, 0, 100_000, 256).await;
    // Offsets are contiguous: each batch starts where the previous ended.
    for pair in written.windows(2) {
        assert_eq!(pair[0].offset + pair[0].count as u64, pair[1].offset);
    }
    assert_eq!(
        writer.unconfirmed_bytes(),
        0,
        "every confirmed append left the backlog"
    );
    let end = writer.close().await.expect("close");
    assert_eq!(
        end,
        written.last().map(|w| w.offset + w.count as u64).unwrap()
    );
    verify_through_client(&client, stream.id, 1, &written).await;

    // Every replica of every range holds every batch of that range.
    let info = client.describe(stream.id).await.expect("describe");
    for range in &info.ranges {
        let range_end = range.end.expect("sealed after close");
        let expected: Vec<Written> = written
            .iter()
            .copied()
            .filter(|w| w.offset >= range.start && w.offset < range_end)
            .collect();
        for &node in &range.servers {
            let rpc = actors::RpcClient::new(range_server_addr(&client, node).await);
            let mut offset = range.start;
            let mut i = 0;
            let mut attempts = 0;
            while offset < range_end {
                let fetch = Fetch {
                    stream_id: stream.id,
                    index: range.index,
                    offset,
                    end: range_end,
                    max_bytes: 1 << 20,
                };
                match rpc.call(fetch).await {
                    Ok(response) => {
                        for batch in response.batches {
                            let w = expected[i];
                            assert_eq!((batch.offset, batch.count), (w.offset, w.count));
                            assert_eq!(batch.payload, payload_for(1, w.offset, w.len));
                            assert_eq!(batch.crc, protocol::checksum(&batch.payload));
                            offset = batch.offset + batch.count as u64;
                            i += 1;
                        }
                    }
                    // The replica learns the final end asynchronously; give it a moment.
                    Err(e) if e.code == ErrorCode::OffsetOutOfRange && attempts < 100 => {
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("replica {node} range {}: {e}", range.index),
                }
            }
            assert_eq!(i, expected.len(), "replica {node} range {}", range.index);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_range_server_mid_append_loses_nothing_confirmed() {
    let (mut cluster, client, stream) = three_replica_stream().await;
    let mut writer = client.open(stream.id).await.expect("open");
    let first = writer.confirmed();
    let before = append_many(&mut writer, 2, 0, 5_000, 128).await;

    // Kill one replica of the open range while appends are in flight.
    let info = client.describe(stream.id).await.expect("describe");
    let open = info.ranges.last().expect("a range").clone();
    let victim_node = open.servers[0];
    let victim_addr = range_server_addr(&client, victim_node).await;
    let victim = cluster
        .range_servers
        .iter()
        .position(|p| p.rpc_addr == victim_addr)
        .expect("victim is ours");
    let mut in_flight = VecDeque::new();
    for i in 5_000..5_200u64 {
        let offset = writer.next_offset();
        let w = Written {
            offset,
            count: count_of(i),
            len: size_of(i),
        };
        in_flight.push_back((
            w,
            writer.append(Bytes::from(payload_for(2, offset, w.len)), w.count),
        ));
    }
    cluster.range_server(victim).kill();
    let mut after = Vec::new();
    for (w, fut) in in_flight {
        assert_eq!(
            fut.await.expect("append survives the loss of one replica"),
            w.offset
        );
        after.push(w);
    }
    after.extend(append_many(&mut writer, 2, 5_200, 5_000, 128).await);

    let mut all = before;
    all.extend(after);
    assert_eq!(all[0].offset, first);
    for pair in all.windows(2) {
        assert_eq!(
            pair[0].offset + pair[0].count as u64,
            pair[1].offset,
            "no offset reused or skipped"
        );
    }
    // The writer went on in a new range without the dead server.
    let info = client.describe(stream.id).await.expect("describe");
    let last = info.ranges.last().expect("a range");
    assert!(last.index > open.index, "a new range was opened");
    assert!(
        !last.servers.contains(&victim_node),
        "new range avoids the dead server"
    );
    verify_through_client(&client, stream.id, 2, &all).await;
    writer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_process_keeps_every_confirmed_append() {
    let (mut cluster, client, stream) = three_replica_stream().await;
    let mut writer = client.open(stream.id).await.expect("open");
    let written = append_many(&mut writer, 3, 0, 20_000, 256).await;
    // Leave appends in flight: they may or may not survive, but nothing confirmed may be lost.
    let mut unconfirmed = Vec::new();
    for i in 20_000..20_100u64 {
        let offset = writer.next_offset();
        unconfirmed
            .push(writer.append(Bytes::from(payload_for(3, offset, size_of(i))), count_of(i)));
    }
    cluster.kill_all();
    drop(unconfirmed);
    drop(writer);
    cluster.restart_all().await;

    let client = StreamClient::new(&[cluster.pd_addr()]);
    // Opening seals the dead writer's range at the quorum end, as a new owner would.
    let mut writer = client.open(stream.id).await.expect("reopen after restart");
    assert!(writer.next_offset() >= written.last().map(|w| w.offset + w.count as u64).unwrap());
    verify_through_client(&client, stream.id, 3, &written).await;
    // And the stream takes appends again, after the recovered end.
    let start = writer.next_offset();
    let more = append_many(&mut writer, 3, 30_000, 100, 16).await;
    assert_eq!(more[0].offset, start);
    verify_through_client(&client, stream.id, 3, &more).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_fences_the_first() {
    let (cluster, client, stream) = three_replica_stream().await;
    let mut first = client.open(stream.id).await.expect("open first");
    let from_first = append_many(&mut first, 10, 0, 500, 32).await;

    let other = StreamClient::new(&[cluster.pd_addr()]);
    let mut second = other.open(stream.id).await.expect("open second");
    assert!(second.epoch() > first.epoch());
    let offset = first.next_offset();
    let err = first
        .append(Bytes::from(payload_for(10, offset, 100)), 1)
        .await
        .expect_err("the fenced writer's append fails");
    assert_eq!(err.code, ErrorCode::Fenced, "{err}");
    // Later appends of the fenced writer fail too.
    let offset = first.next_offset();
    assert!(first
        .append(Bytes::from(payload_for(10, offset, 100)), 1)
        .await
        .is_err());
    assert_eq!(
        first.unconfirmed_bytes(),
        0,
        "failed appends left the backlog"
    );

    let from_second = append_many(&mut second, 20, 0, 500, 32).await;
    assert_eq!(
        from_second[0].offset,
        from_first
            .last()
            .map(|w| w.offset + w.count as u64)
            .unwrap()
    );
    verify_through_client(&client, stream.id, 10, &from_first).await;
    verify_through_client(&client, stream.id, 20, &from_second).await;
}

/// An append larger than a frame can carry fails at once with `FrameTooLarge`, takes no
/// offset, and the writer goes on: before, the RPC client dropped the frame, the writer timed
/// out on every replica, sealed, and failed with no capacity left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_too_large_for_a_frame_fails_alone() {
    let (_cluster, client, stream) = three_replica_stream().await;
    let mut writer = client.open(stream.id).await.expect("open");
    let before = append_many(&mut writer, 30, 0, 10, 1000).await;
    let offset = writer.next_offset();
    let huge = Bytes::from(vec![7u8; 17 << 20]);
    let err = writer
        .append(huge, 1)
        .await
        .expect_err("the oversized append fails");
    assert_eq!(err.code, ErrorCode::FrameTooLarge, "{err}");
    assert_eq!(
        writer.next_offset(),
        offset,
        "the refused append took an offset"
    );
    assert_eq!(writer.unconfirmed_bytes(), 0);
    // The largest append that fits still goes through, and so does the next small one.
    let max = protocol::range_rpc::MAX_APPEND_BYTES;
    let got = writer
        .append(Bytes::from(payload_for(30, offset, max)), 1)
        .await
        .expect("an append of MAX_APPEND_BYTES");
    assert_eq!(got, offset);
    let after = append_many(&mut writer, 30, offset + 1, 10, 1000).await;
    verify_through_client(&client, stream.id, 30, &before).await;
    verify_through_client(&client, stream.id, 30, &after).await;
}

/// With range-server-1 (which holds the data) down, opening the stream must not seal its
/// open range below `end` (a 5 s attempt either fails or ends at or past it); once
/// range-server-1 is back, the open seals it exactly at `end`.
async fn seal_waits_for_the_replica_with_the_data(
    cluster: &mut Cluster,
    client: &StreamClient,
    stream: StreamId,
    end: u64,
) {
    assert!(!cluster.range_server(0).is_running());
    let impatient = StreamClient::with_config(
        &[cluster.pd_addr()],
        stream_client::ClientConfig {
            retry_for: Duration::from_secs(5),
            ..Default::default()
        },
    );
    match impatient.open(stream).await {
        Err(e) => eprintln!("open without the replica holding the data: {e}"),
        Ok(w) => assert!(
            w.next_offset() >= end,
            "sealed at {} below the acknowledged end {end}: acknowledged appends lost",
            w.next_offset()
        ),
    }
    cluster.range_server(0).start();
    let writer = client
        .open(stream)
        .await
        .expect("open once the replica is back");
    assert_eq!(
        writer.next_offset(),
        end,
        "the range ends where the appends did"
    );
}

/// A sealed tail held by one replica is copied to the others: a writer that died after one
/// replica took its last append (never acknowledged, since a second copy was missing) leaves
/// a range whose quorum seal keeps that append (the silent third replica might have had it
/// too). The next opener seals there and copies the tail to the replica that missed it, so
/// the range's end does not rest on a single copy. Before, the tail stayed on one replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_tail_on_one_replica_is_copied_to_the_others() {
    let (mut cluster, client, stream) = three_replica_stream().await;
    let mut writer = client.open(stream.id).await.expect("open");
    let written = append_many(&mut writer, 41, 0, 30, 8).await;
    let end = writer.next_offset();
    drop(writer); // a crashed writer: the range stays open
    let info = client.describe(stream.id).await.expect("describe");
    let range = info.ranges.last().cloned().expect("a range");
    let [a, b, c] = range.servers[..] else {
        panic!("three replicas expected: {range:?}");
    };
    // The dead writer's last append reached replica a only.
    let payload = Bytes::from(payload_for(41, end, 700));
    let a_client = actors::RpcClient::new(range_server_addr(&client, a).await);
    a_client
        .call(protocol::range_rpc::Append {
            stream_id: stream.id,
            index: range.index,
            epoch: range.epoch,
            range_start: range.start,
            offset: end,
            count: 3,
            confirmed: end,
            crc: protocol::checksum(&payload),
            payload: payload.clone(),
        })
        .await
        .expect("append to replica a");
    // Replica c is down: the seal cannot rule the tail out.
    let c_addr = range_server_addr(&client, c).await;
    let c_index = cluster
        .range_servers
        .iter()
        .position(|rs| rs.rpc_addr == c_addr)
        .expect("replica c is a range server of the cluster");
    cluster.range_server(c_index).kill();
    assert!(!cluster.range_servers[c_index].is_running());

    let writer = client.open(stream.id).await.expect("open again");
    assert_eq!(writer.next_offset(), end + 3, "the seal keeps the tail");
    // Replica b, which missed the tail, now serves it.
    let b_client = actors::RpcClient::new(range_server_addr(&client, b).await);
    let fetched = b_client
        .call(Fetch {
            stream_id: stream.id,
            index: range.index,
            offset: end,
            end: end + 3,
            max_bytes: 1 << 20,
        })
        .await;
    let batches = fetched.map(|f| f.batches).unwrap_or_default();
    assert_eq!(
        batches
            .iter()
            .map(|b| (b.offset, b.payload.clone()))
            .collect::<Vec<_>>(),
        vec![(end, payload)],
        "replica b does not hold the sealed tail"
    );
    verify_through_client(&client, stream.id, 41, &written).await;
}

/// A replica that lost its disk and came back at the same address (as a new node) must not
/// decide where a range ends: with the other replica down, its "I hold nothing" once sealed a
/// range of a replica-2/ack-2 stream at its start, below appends both replicas had
/// acknowledged, and they were lost. Now it answers `WrongNode` to a seal meant for the old
/// node, the open waits for the replica that holds the data, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_back_with_an_empty_disk_does_not_decide_a_seal() {
    let (mut cluster, client, stream) = cluster_with_stream(2, 2).await;
    let mut writer = client.open(stream.id).await.expect("open");
    let written = append_many(&mut writer, 40, 0, 110, 16).await;
    let end = writer.next_offset();
    drop(writer); // a crashed writer: the range stays open

    // range-server-2 loses its disk and comes back at the same address as a new node.
    cluster.range_server(1).kill();
    cluster.range_server(1).wipe();
    cluster.range_server(1).start();
    // range-server-1, which holds the data, is down.
    cluster.range_server(0).kill();
    assert!(!cluster.range_server(0).is_running());

    seal_waits_for_the_replica_with_the_data(&mut cluster, &client, stream.id, end).await;
    verify_through_client(&client, stream.id, 40, &written).await;
}

/// A replica whose recovery found its WAL corrupt in an early segment (and so moved the later
/// ones aside) holds only a prefix of what it acknowledged. With the other replica down, its
/// short end once sealed a replica-2/ack-2 range below acknowledged appends; now it refuses
/// to answer such a seal, the open waits for the other replica, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_discarded_wal_segments_does_not_decide_a_seal() {
    let (mut cluster, client, stream) = cluster_with_stream(2, 2).await;
    let mut writer = client.open(stream.id).await.expect("open");
    // About 80 MB: more than one 64 MiB WAL segment on each replica.
    let mut pending = VecDeque::new();
    for _ in 0..320u64 {
        let offset = writer.next_offset();
        let payload = Bytes::from(payload_for(50, offset, 256 * 1024));
        pending.push_back((offset, writer.append(payload, 1)));
        if pending.len() >= 16 {
            let (o, f) = pending.pop_front().unwrap();
            assert_eq!(f.await.expect("append"), o);
        }
    }
    for (o, f) in pending {
        assert_eq!(f.await.expect("append"), o);
    }
    let end = writer.next_offset();
    drop(writer);

    // range-server-2 finds a flipped byte early in its first segment when it restarts.
    cluster.range_server(1).kill();
    let wal = cluster.range_servers[1].dir.join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .expect("wal dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "want several segments: {segments:?}");
    let mut first = std::fs::read(&segments[0]).expect("read segment");
    first[1_000_000] ^= 0x01;
    std::fs::write(&segments[0], &first).expect("write segment");
    cluster.range_server(1).start();
    let moved_aside = std::fs::read_dir(&wal)
        .expect("wal dir")
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "discarded"));
    assert!(
        moved_aside,
        "recovery did not discard segments:\n{}",
        cluster.range_servers[1].log_tail()
    );
    cluster.range_server(0).kill();

    seal_waits_for_the_replica_with_the_data(&mut cluster, &client, stream.id, end).await;
    let read = client
        .read(stream.id, end - 1, 1 << 20)
        .await
        .expect("read the last append");
    assert_eq!(read.batches.first().map(|b| b.offset), Some(end - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_wal_tail_recovers_to_the_last_good_record() {
    for flip_bit in [false, true] {
        let (mut cluster, client, stream) = cluster_with_stream(1, 1).await;
        let mut writer = client.open(stream.id).await.expect("open");
        let written = append_many(&mut writer, 5, 0, 200, 1).await;
        cluster.range_server(0).kill();
        drop(writer);

        // Damage the last record of the newest WAL segment.
        let wal = cluster.range_servers[0].dir.join("wal");
        let mut segments: Vec<_> = std::fs::read_dir(&wal)
            .expect("wal dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.metadata().map(|m| m.len() > 0).unwrap_or(false))
            .collect();
        segments.sort();
        let newest = segments.last().expect("a WAL segment").clone();
        let mut bytes = std::fs::read(&newest).expect("read segment");
        if flip_bit {
            let at = bytes.len() - 5;
            bytes[at] ^= 0x10;
        } else {
            bytes.truncate(bytes.len() - 7);
        }
        std::fs::write(&newest, &bytes).expect("write segment");

        cluster.range_server(0).start();
        cluster.wait_for_range_servers(1).await;
        let client = StreamClient::new(&[cluster.pd_addr()]);
        let mut writer = client.open(stream.id).await.expect("reopen");
        let good = &written[..written.len() - 1];
        let last_good_end = good.last().map(|w| w.offset + w.count as u64).unwrap();
        assert_eq!(
            writer.next_offset(),
            last_good_end,
            "recovered to the last good record (flip={flip_bit})"
        );
        verify_through_client(&client, stream.id, 5, good).await;
        let more = append_many(&mut writer, 5, 1_000, 50, 8).await;
        assert_eq!(more[0].offset, last_good_end);
        verify_through_client(&client, stream.id, 5, &more).await;
    }
}

/// Sends raw bytes and returns what came back before the peer closed (or 2 s passed).
async fn raw_exchange(addr: &str, bytes: &[u8]) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (got, closed)
}

fn frame(opcode: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = 1 + 1 + 2 + 8 + 2 + body.len();
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(1);
    out.push(0);
    out.extend_from_slice(&opcode.to_be_bytes());
    out.extend_from_slice(&7u64.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn error_code_of(answer: &[u8]) -> ErrorCode {
    assert!(answer.len() >= 18, "an error frame: {answer:?}");
    let flags = answer[5];
    assert_eq!(flags & 0b10, 0b10, "error flag set");
    let trace_len = u16::from_be_bytes([answer[16], answer[17]]) as usize;
    let error: protocol::RpcError =
        protocol::decode(&answer[18 + trace_len..]).expect("error body");
    error.code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_everyone_else_is_served() {
    let (cluster, client, stream) = cluster_with_stream(1, 1).await;
    let mut writer = client.open(stream.id).await.expect("open");
    let before = append_many(&mut writer, 6, 0, 10, 4).await;
    let targets = [cluster.pd_addr(), cluster.range_servers[0].rpc_addr.clone()];
    for addr in &targets {
        // Garbage that is not a frame at all: an error or a close.
        let (_, closed) = raw_exchange(addr, b"\x00\x00\x00\x05hello, is this kafka?").await;
        assert!(closed, "{addr}: connection closed after garbage");
        // An oversized length: refused before allocating, then closed.
        let (answer, closed) = raw_exchange(addr, &[0x7f, 0xff, 0xff, 0xff, 1, 0]).await;
        assert!(closed);
        assert_eq!(error_code_of(&answer), ErrorCode::FrameTooLarge);
        // A well-formed frame with an unknown opcode: an error answer, the connection stays.
        let (answer, closed) = raw_exchange(addr, &frame(999, b"")).await;
        assert!(!closed, "{addr}: connection kept after an unknown opcode");
        assert_eq!(error_code_of(&answer), ErrorCode::UnknownOpcode);
        // A known opcode with a body that does not decode.
        let (answer, _) = raw_exchange(
            addr,
            &frame(if addr == &targets[0] { 4 } else { 101 }, b"\xff"),
        )
        .await;
        assert_eq!(error_code_of(&answer), ErrorCode::MalformedFrame);
    }
    // Both still serve: the writer goes on and everything reads back.
    let after = append_many(&mut writer, 6, 10, 10, 4).await;
    let mut all = before;
    all.extend(after);
    verify_through_client(&client, stream.id, 6, &all).await;
    let nodes = client.pd().call(ListNodes {}).await.expect("PD serves");
    assert!(nodes
        .iter()
        .any(|n| n.kind == NodeKind::RangeServer && n.alive));
}
