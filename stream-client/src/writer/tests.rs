//! Unit tests of one replica's loop against a fake range server over real TCP: appends reach
//! the replica in order, every answer comes back as an ack (as it arrives), failed sends are
//! acked as errors, and answers on the wire when the writer lets go still arrive.

use std::cell::RefCell;
use std::rc::Rc;

use actors::{serve, Router, ServerOptions};
use protocol::range_rpc::AppendResponse;

use super::*;

fn append(offset: u64) -> Append {
    Append {
        stream_id: 1,
        index: 0,
        epoch: 1,
        range_start: 0,
        offset,
        count: 2,
        confirmed: 0,
        crc: protocol::checksum(b"x"),
        payload: Bytes::from_static(b"x"),
    }
}

/// A range server that records the offsets it receives and answers odd appends slowly, so
/// later answers overtake earlier ones. It answers `Commit` and counts those.
async fn fake_replica(seen: Rc<RefCell<Vec<u64>>>, commits: Rc<RefCell<u32>>) -> String {
    let mut router = Router::new();
    router.route(move |req: Append, _ctx| {
        seen.borrow_mut().push(req.offset);
        async move {
            if (req.offset / 2) % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Ok(AppendResponse {
                durable: req.offset + req.count as u64,
            })
        }
    });
    router.route(move |_req: Commit, _ctx| {
        *commits.borrow_mut() += 1;
        async { Ok(()) }
    });
    serve("127.0.0.1:0", router, ServerOptions::default())
        .await
        .unwrap()
        .to_string()
}

fn ack_results(acks: &mut mpsc::UnboundedReceiver<Ack>) -> Vec<(u64, NodeId, u64, u64)> {
    let mut out = Vec::new();
    while let Ok(ack) = acks.try_recv() {
        out.push((ack.generation, ack.node, ack.end, ack.result.unwrap()));
    }
    out
}

#[actix_rt::test]
async fn appends_go_in_order_and_every_answer_is_acked() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let commits = Rc::new(RefCell::new(0));
    let addr = fake_replica(seen.clone(), commits.clone()).await;
    let (ops, ops_rx) = mpsc::unbounded_channel();
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let task = tokio::spawn(replica_loop(RpcClient::new(addr), 7, 3, ops_rx, acks_tx));
    let n = 40u64;
    for i in 0..n {
        ops.send(ReplicaOp::Append(append(i * 2), tracing::Span::none(), 0))
            .unwrap();
    }
    ops.send(ReplicaOp::Commit(Commit {
        stream_id: 1,
        index: 0,
        epoch: 1,
        confirmed: n * 2,
    }))
    .unwrap();
    let mut got = Vec::new();
    while got.len() < n as usize {
        let ack = acks.recv().await.unwrap();
        got.push((ack.generation, ack.node, ack.end, ack.result.unwrap()));
    }
    // Answers come as they arrive: the slow ones after quicker later ones.
    let ends: Vec<u64> = got.iter().map(|a| a.2).collect();
    let mut sorted = ends.clone();
    sorted.sort_unstable();
    assert_ne!(ends, sorted, "answers should overtake each other");
    assert_eq!(sorted, (1..=n).map(|i| i * 2).collect::<Vec<_>>());
    assert!(got
        .iter()
        .all(|&(g, node, end, durable)| g == 3 && node == 7 && durable == end));
    assert_eq!(*seen.borrow(), (0..n).map(|i| i * 2).collect::<Vec<_>>());
    // The loop ends when the writer drops the queue; a commit gets no ack.
    drop(ops);
    task.await.unwrap();
    assert_eq!(*commits.borrow(), 1);
    assert!(ack_results(&mut acks).is_empty());
}

#[actix_rt::test]
async fn answers_on_the_wire_still_arrive_after_the_writer_lets_go() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let addr = fake_replica(seen.clone(), Rc::new(RefCell::new(0))).await;
    let (ops, ops_rx) = mpsc::unbounded_channel();
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let task = tokio::spawn(replica_loop(RpcClient::new(addr), 1, 0, ops_rx, acks_tx));
    for i in 0..4u64 {
        ops.send(ReplicaOp::Append(append(i * 2), tracing::Span::none(), 0))
            .unwrap();
    }
    drop(ops);
    task.await.unwrap();
    let mut ends: Vec<u64> = ack_results(&mut acks).iter().map(|a| a.2).collect();
    ends.sort_unstable();
    assert_eq!(ends, vec![2, 4, 6, 8]);
}

#[actix_rt::test]
async fn a_failed_send_is_acked_as_an_error() {
    // Nothing listens on this port once the listener is dropped.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let (ops, ops_rx) = mpsc::unbounded_channel();
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let task = tokio::spawn(replica_loop(RpcClient::new(addr), 2, 5, ops_rx, acks_tx));
    ops.send(ReplicaOp::Append(append(0), tracing::Span::none(), 0))
        .unwrap();
    let ack = acks.recv().await.unwrap();
    assert_eq!((ack.generation, ack.node, ack.end), (5, 2, 2));
    assert_eq!(ack.result.unwrap_err().code, ErrorCode::Unavailable);
    drop(ops);
    task.await.unwrap();
}
