//! Registration with the placement driver and heartbeats. Keeps the node id in
//! `<data>/node_id` so a restart re-joins as the same node, and re-registers when PD no longer
//! knows the node. Every heartbeat carries the next page of range reports (cycling through
//! all ranges), and what PD answers about them is applied here: retired ranges are dropped,
//! ranges of trimmed or offloaded streams forget what lies below the start or the offloaded
//! end, and offload assignments go to the offloader. PD being down never stops the
//! server: this task only logs and retries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::RpcClient;
use protocol::model::NodeKind;
use protocol::pd::{Heartbeat, HeartbeatResponse, RegisterNode, MAX_REPORTS_PER_HEARTBEAT};
use protocol::ErrorCode;

use crate::offload::OffloadTasks;
use crate::registry::{RangeKey, RangeRegistry};

const MAX_INTERVAL: Duration = Duration::from_millis(500);
const MIN_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub pd: String,
    /// The RPC address others reach this server at.
    pub addr: String,
    pub http_addr: String,
    pub data_dir: PathBuf,
}

fn interval(lease_ms: u64) -> Duration {
    Duration::from_millis(lease_ms / 4).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Registers and heartbeats forever. `node_id` is set once registered (0 until then).
/// PD's offload assignments go to `offload`.
pub async fn run(
    cfg: HeartbeatConfig,
    ranges: Arc<RangeRegistry>,
    node_id: Arc<AtomicU64>,
    offload: Arc<OffloadTasks>,
) {
    let client = RpcClient::new(cfg.pd.clone());
    let mut kept = actors::process::load_node_id(&cfg.data_dir);
    let mut backoff = Duration::from_millis(100);
    loop {
        let registered = client
            .call(RegisterNode {
                kind: NodeKind::RangeServer,
                node_id: kept,
                addr: cfg.addr.clone(),
                http_addr: cfg.http_addr.clone(),
            })
            .await;
        let resp = match registered {
            Ok(resp) => resp,
            Err(e) if e.code == ErrorCode::NotFound && kept.is_some() => {
                tracing::warn!(error = %e, "PD does not know the kept node id; registering as a new node");
                kept = None;
                continue;
            }
            Err(e) => {
                tracing::warn!(pd = %cfg.pd, error = %e, "registration with PD failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if kept != Some(resp.node_id) {
            let (dir, id) = (cfg.data_dir.clone(), resp.node_id);
            let written =
                tokio::task::spawn_blocking(move || actors::process::store_node_id(&dir, id)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "could not persist the node id"),
                Err(e) => tracing::error!(error = %e, "could not persist the node id"),
            }
            kept = Some(resp.node_id);
        }
        node_id.store(resp.node_id, Ordering::SeqCst);
        tracing::info!(
            node_id = resp.node_id,
            lease_ms = resp.lease_ms,
            "registered with PD"
        );

        let mut lease_ms = resp.lease_ms;
        // The last range of the page sent last; None: start from the first.
        let mut cursor = None;
        let mut cycled = false;
        loop {
            let page = ranges.report_page(cursor, MAX_REPORTS_PER_HEARTBEAT).await;
            let keys: Vec<RangeKey> = page.iter().map(|r| (r.stream_id, r.index)).collect();
            match client
                .call(Heartbeat {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    node_id: resp.node_id,
                    ranges: page,
                    loads: None,
                })
                .await
            {
                Ok(hb) => {
                    lease_ms = hb.lease_ms;
                    apply_verdicts(&ranges, &keys, &hb);
                    offload.assign(&hb.offload);
                    cursor = keys
                        .last()
                        .copied()
                        .filter(|_| keys.len() == MAX_REPORTS_PER_HEARTBEAT);
                    if cursor.is_none() && !cycled {
                        cycled = true;
                        tracing::info!(ranges = ranges.len(), "reported every range to PD");
                    }
                }
                Err(e) if e.code == ErrorCode::NotFound => {
                    tracing::warn!(error = %e, "PD does not know this node; registering again");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat to PD failed; retrying");
                }
            }
            tokio::time::sleep(interval(lease_ms)).await;
        }
    }
}

/// Applies PD's answer about the ranges in `keys` (the page just reported).
fn apply_verdicts(ranges: &RangeRegistry, keys: &[RangeKey], hb: &HeartbeatResponse) {
    let reported: std::collections::HashSet<&RangeKey> = keys.iter().collect();
    for key in hb.retired.iter().filter(|k| reported.contains(k)) {
        ranges.retire(*key);
    }
    for (stream_id, start) in &hb.stream_starts {
        for key in keys.iter().filter(|k| k.0 == *stream_id) {
            ranges.trim(*key, *start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_a_quarter_lease_at_most_half_a_second() {
        assert_eq!(interval(10_000), Duration::from_millis(500));
        assert_eq!(interval(1_000), Duration::from_millis(250));
        assert_eq!(interval(0), MIN_INTERVAL);
    }
}
