//! The broker's membership at PD: registration (the Kafka broker id is the PD node id, kept
//! in `<data>/node_id` across restarts; a broker with an empty data dir gets the id of a dead
//! broker at its advertised address back) and heartbeats that keep the broker's lease, and so
//! its partitions; every few heartbeats carry the partitions' load ([`crate::loads`]).
//! Registration waits for PD for as long as it takes, saying so in the log.
//! At a planned shutdown, [`hand_over`] drains the broker at PD and waits until its
//! partitions have moved away and its stream owners have closed their streams.

use std::path::Path;
use std::time::Duration;

use protocol::model::{NodeId, NodeKind};
use protocol::pd::{Heartbeat, RegisterNode};
use protocol::{ErrorCode, RpcError};
use stream_client::PdClient;

pub async fn register(
    pd: &PdClient,
    node_id: Option<NodeId>,
    addr: &str,
    http_addr: &str,
) -> Result<(u64, u64), RpcError> {
    let answer = pd
        .call(RegisterNode {
            kind: NodeKind::Broker,
            node_id,
            addr: addr.to_string(),
            http_addr: http_addr.to_string(),
        })
        .await?;
    Ok((answer.node_id, answer.lease_ms))
}

/// Registers with PD, retrying with backoff until PD accepts (while PD is down or has no
/// leader, or while another live broker holds the advertised address); keeps the id for the
/// next run. Answers `(node id, lease ms)`.
pub async fn join(pd: &PdClient, data: &Path, addr: &str, http_addr: &str) -> (u64, u64) {
    let kept = actors::process::load_node_id(data);
    let mut backoff = Duration::from_millis(100);
    let (node_id, lease_ms) = loop {
        match register(pd, kept, addr, http_addr).await {
            Ok(joined) => break joined,
            Err(e) if e.code == ErrorCode::AlreadyExists => {
                tracing::error!("not registered, retrying in {backoff:?}: {e}")
            }
            Err(e) => {
                tracing::warn!("waiting for the placement driver, retrying in {backoff:?}: {e}")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    if kept != Some(node_id) {
        if let Err(e) = actors::process::store_node_id(data, node_id) {
            tracing::error!("could not keep the node id {node_id}: {e}");
        }
    }
    (node_id, lease_ms)
}

/// Heartbeats every quarter lease, re-registering if PD forgot the node. Hands the range
/// servers PD says are draining to `nodes` (the stream writers move off them).
pub async fn heartbeat_loop(
    pd: PdClient,
    node_id: NodeId,
    lease_ms: u64,
    addr: String,
    http_addr: String,
    loads: std::sync::Arc<crate::loads::Loads>,
    nodes: stream_client::Nodes,
) {
    let every = Duration::from_millis((lease_ms / 4).clamp(100, 500));
    let mut reported = std::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let report = (reported.elapsed() >= crate::loads::REPORT_EVERY).then(|| {
            reported = std::time::Instant::now();
            loads.take_rates()
        });
        match pd
            .call(Heartbeat {
                version: env!("CARGO_PKG_VERSION").to_string(),
                node_id,
                ranges: Vec::new(),
                loads: report,
            })
            .await
        {
            Ok(answer) => nodes.set_draining(answer.draining),
            Err(e) if e.code == ErrorCode::NotFound => {
                tracing::warn!("PD does not know this broker; registering again");
                if let Err(e) = register(&pd, Some(node_id), &addr, &http_addr).await {
                    tracing::warn!("re-registering failed: {e}");
                }
            }
            Err(e) => tracing::warn!("heartbeat failed: {e}"),
        }
    }
}

/// Hands this broker's partitions over before it stops: drains it at PD (which moves them to
/// the other brokers at once, while this one still answers), then waits until PD names it
/// leader of nothing and every stream owner here has closed its streams (so the new owners
/// open at once, and every produce in flight was answered with its real outcome). Gives up
/// after `within` (then the new owners fence whatever is left, as after a crash). Registering
/// again ends the drain.
pub async fn hand_over(broker: &crate::context::SharedBroker, within: Duration) {
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    let drained = tokio::time::timeout_at(
        deadline,
        broker.pd.call(protocol::pd::DrainNode {
            node_id: broker.node_id,
            draining: true,
        }),
    )
    .await;
    match drained {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!("handing partitions over: PD refused the drain: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(
                ?within,
                "handing partitions over: PD did not answer in time"
            );
            return;
        }
    }
    loop {
        let led = tokio::time::timeout_at(deadline, broker.pd.call(protocol::pd::ListTopics {}))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|topics| {
                topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.leader == Some(broker.node_id))
                    .count()
            });
        let owners = broker.owners_running.get();
        // When every broker is stopping (a whole cluster going down) nobody can take over.
        let others = tokio::time::timeout_at(deadline, broker.pd.call(protocol::pd::ListNodes {}))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|nodes| {
                nodes
                    .iter()
                    .filter(|n| n.kind == NodeKind::Broker && n.id != broker.node_id)
                    .filter(|n| n.alive && !n.draining)
                    .count()
            });
        if others == Some(0) {
            tracing::info!("no other broker can take partitions over; stopping");
            return;
        }
        if led == Some(0) && owners == 0 {
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "partitions handed over"
            );
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ?within, still_led = ?led, owners_running = owners,
                "handing partitions over took too long; stopping anyway"
            );
            return;
        }
        // Each look lists every topic and node at PD: not too often.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
