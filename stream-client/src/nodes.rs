//! Range-server addresses as the placement driver knows them, one RPC client per range
//! server, and which range servers are being drained (as the owner's PD heartbeat last said:
//! stream writers watch it and move their open ranges off those). Addresses are refreshed from
//! PD when a node is unknown or its address stops answering. It knows nothing of streams and
//! sends no range-server request itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::{ClientOptions, RpcClient};
use protocol::model::NodeId;
use protocol::pd::ListNodes;
use protocol::{ErrorCode, RpcError};

use crate::pd::PdClient;

#[derive(Clone)]
pub struct Nodes {
    pd: PdClient,
    opts: ClientOptions,
    clients: Arc<Mutex<HashMap<NodeId, RpcClient>>>,
    draining: Arc<tokio::sync::watch::Sender<BTreeSet<NodeId>>>,
}

impl Nodes {
    pub fn new(pd: PdClient, call_timeout: Duration) -> Self {
        Nodes {
            pd,
            opts: ClientOptions {
                call_timeout,
                connect_timeout: Duration::from_secs(1),
                ..Default::default()
            },
            clients: Arc::new(Mutex::new(HashMap::new())),
            draining: Arc::new(tokio::sync::watch::Sender::new(BTreeSet::new())),
        }
    }

    /// The range servers being drained now (replaces the previous set; watchers wake only
    /// when it changed).
    pub fn set_draining(&self, nodes: impl IntoIterator<Item = NodeId>) {
        let now: BTreeSet<NodeId> = nodes.into_iter().collect();
        self.draining.send_if_modified(|set| {
            let changed = *set != now;
            *set = now;
            changed
        });
    }

    /// Watches the set of draining range servers.
    pub fn draining(&self) -> tokio::sync::watch::Receiver<BTreeSet<NodeId>> {
        self.draining.subscribe()
    }

    /// The client for `node`, asking PD for its address when it is not known yet.
    pub async fn client(&self, node: NodeId) -> Result<RpcClient, RpcError> {
        if let Some(client) = self.lock().get(&node) {
            return Ok(client.clone());
        }
        self.refresh().await?;
        self.lock().get(&node).cloned().ok_or_else(|| {
            RpcError::new(
                ErrorCode::NotFound,
                format!("range server {node} is not registered"),
            )
        })
    }

    /// Reloads addresses from PD; keeps clients whose address did not change.
    pub async fn refresh(&self) -> Result<(), RpcError> {
        let nodes = self.pd.call(ListNodes {}).await?;
        let mut clients = self.lock();
        for node in nodes {
            let keep = clients.get(&node.id).is_some_and(|c| c.addr() == node.addr);
            if !keep {
                clients.insert(
                    node.id,
                    RpcClient::with_options(node.addr, self.opts.clone()),
                );
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, RpcClient>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}
