//! The broker's membership at PD: registration (the Kafka broker id is the PD node id, kept
//! across restarts because PD recognises the advertised address) and heartbeats that keep the
//! broker's lease, and so its partitions.

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

/// Heartbeats every quarter lease, re-registering if PD forgot the node.
pub async fn heartbeat_loop(
    pd: PdClient,
    node_id: NodeId,
    lease_ms: u64,
    addr: String,
    http_addr: String,
) {
    let every = Duration::from_millis((lease_ms / 4).clamp(100, 500));
    loop {
        tokio::time::sleep(every).await;
        match pd
            .call(Heartbeat {
                node_id,
                ranges: Vec::new(),
            })
            .await
        {
            Ok(_) => {}
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
