//! Request handlers of the placement driver, and the leader-side knowledge that is not
//! replicated (liveness).
//!
//! Owns: turning each PD request into a Raft command (writes) or a read of the leader's applied
//! state, the placement choice for new ranges (made here with liveness, then validated by the
//! state machine), and mapping failures to [`protocol::ErrorCode`]s (`NotLeader` carries the
//! leader's address). Must not: change [`crate::state::PdState`] except through Raft, or do
//! disk I/O.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use protocol::model::{NodeInfo, RangeInfo, StreamInfo};
use protocol::pd::*;
use protocol::{ErrorCode, RpcError};

use crate::liveness::Liveness;
use crate::state::{Command, Kind, Response};
use crate::state_machine::{Shared, SharedState};
use crate::watch::WatchHub;
use crate::{NodeId, Raft};

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub struct PdService {
    pub node_id: NodeId,
    pub raft: Raft,
    pub shared: SharedState,
    pub watch: Arc<WatchHub>,
    pub liveness: Arc<Liveness>,
}

fn unexpected(r: Response) -> RpcError {
    RpcError::new(
        ErrorCode::Internal,
        format!("unexpected apply result {r:?}"),
    )
}

impl PdService {
    fn lease_ms(&self) -> u64 {
        self.liveness.lease().as_millis() as u64
    }

    fn read<T>(&self, f: impl FnOnce(&Shared) -> T) -> Result<T, RpcError> {
        let g = self
            .shared
            .read()
            .map_err(|_| RpcError::new(ErrorCode::Internal, "state lock poisoned"))?;
        Ok(f(&g))
    }

    /// The `NotLeader` error, naming the leader's address when known.
    fn not_leader(&self, leader: Option<NodeId>) -> RpcError {
        let addr = leader.and_then(|id| {
            self.read(|s| {
                s.membership
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            })
            .ok()
            .flatten()
        });
        match (leader, addr) {
            (Some(id), Some(addr)) => {
                RpcError::new(ErrorCode::NotLeader, format!("leader is {id} at {addr}"))
            }
            _ => RpcError::new(ErrorCode::NotLeader, "no leader known"),
        }
    }

    /// Ok when this node is the leader and its applied state is current (linearizable read).
    async fn ensure_leader(&self) -> Result<(), RpcError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(self.not_leader(f.leader_id))
            }
            Err(RaftError::APIError(e)) => {
                Err(RpcError::new(ErrorCode::Unavailable, e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(RpcError::new(ErrorCode::NotReady, e.to_string())),
        }
    }

    /// Cheap leadership check without a read barrier (for heartbeats).
    fn is_leader(&self) -> Result<(), RpcError> {
        let leader = self.raft.metrics().borrow().current_leader;
        if leader == Some(self.node_id) {
            Ok(())
        } else {
            Err(self.not_leader(leader))
        }
    }

    /// Proposes `cmd` through Raft and returns what applying it produced.
    pub async fn write(&self, cmd: Command) -> Result<Response, RpcError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => resp.data.map_err(RpcError::from),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(match f.leader_node {
                    Some(n) => RpcError::new(
                        ErrorCode::NotLeader,
                        format!(
                            "leader is {} at {}",
                            f.leader_id.unwrap_or_default(),
                            n.addr
                        ),
                    ),
                    None => self.not_leader(f.leader_id),
                })
            }
            Err(RaftError::APIError(e)) => Err(RpcError::new(ErrorCode::Internal, e.to_string())),
            Err(RaftError::Fatal(e)) => Err(RpcError::new(ErrorCode::NotReady, e.to_string())),
        }
    }

    async fn write_stream(&self, cmd: Command) -> Result<StreamInfo, RpcError> {
        match self.write(cmd).await? {
            Response::Stream(s) => Ok(s.to_info()),
            other => Err(unexpected(other)),
        }
    }

    async fn write_range(&self, cmd: Command) -> Result<RangeInfo, RpcError> {
        match self.write(cmd).await? {
            Response::Range(r) => Ok(r.to_info()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn register_node(&self, req: RegisterNode) -> Result<RegisterNodeResponse, RpcError> {
        let cmd = Command::RegisterNode {
            kind: req.kind.into(),
            node_id: req.node_id,
            addr: req.addr,
            http_addr: req.http_addr,
        };
        match self.write(cmd).await? {
            Response::Node(n) => {
                self.liveness.heartbeat(n.id);
                tracing::info!(node = n.id, kind = ?n.kind, addr = %n.addr, "node registered");
                Ok(RegisterNodeResponse {
                    node_id: n.id,
                    lease_ms: self.lease_ms(),
                })
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn heartbeat(&self, req: Heartbeat) -> Result<HeartbeatResponse, RpcError> {
        self.is_leader()?;
        let known = self.read(|s| s.state.nodes.contains_key(&req.node_id))?;
        if !known {
            return Err(RpcError::new(
                ErrorCode::NotFound,
                format!("node {} is not registered", req.node_id),
            ));
        }
        self.liveness.heartbeat(req.node_id);
        if !req.ranges.is_empty() {
            tracing::debug!(
                node = req.node_id,
                ranges = req.ranges.len(),
                "range inventory"
            );
        }
        Ok(HeartbeatResponse {
            lease_ms: self.lease_ms(),
        })
    }

    pub async fn create_stream(&self, req: CreateStream) -> Result<StreamInfo, RpcError> {
        self.write_stream(Command::CreateStream {
            replica: req.replica,
            ack_count: req.ack_count,
        })
        .await
    }

    pub async fn describe_stream(&self, req: DescribeStream) -> Result<StreamInfo, RpcError> {
        self.ensure_leader().await?;
        self.read(|s| s.state.stream(req.stream_id).map(|s| s.to_info()))?
            .map_err(RpcError::from)
    }

    pub async fn open_stream(&self, req: OpenStream) -> Result<StreamInfo, RpcError> {
        self.write_stream(Command::OpenStream {
            stream_id: req.stream_id,
            min_epoch: req.min_epoch,
        })
        .await
    }

    pub async fn create_range(&self, req: CreateRange) -> Result<RangeInfo, RpcError> {
        self.ensure_leader().await?;
        let servers = self.read(|s| {
            s.state
                .choose_servers(req.stream_id, &req.exclude, |id| self.liveness.alive(id))
        })??;
        self.write_range(Command::CreateRange {
            stream_id: req.stream_id,
            epoch: req.epoch,
            start: req.start,
            servers,
        })
        .await
    }

    pub async fn seal_range(&self, req: SealRange) -> Result<RangeInfo, RpcError> {
        self.write_range(Command::SealRange {
            stream_id: req.stream_id,
            epoch: req.epoch,
            index: req.index,
            end: req.end,
        })
        .await
    }

    pub async fn trim_stream(&self, req: TrimStream) -> Result<StreamInfo, RpcError> {
        self.write_stream(Command::TrimStream {
            stream_id: req.stream_id,
            start_offset: req.start_offset,
        })
        .await
    }

    pub async fn delete_stream(&self, req: DeleteStream) -> Result<StreamInfo, RpcError> {
        self.write_stream(Command::DeleteStream {
            stream_id: req.stream_id,
        })
        .await
    }

    pub async fn list_nodes(&self, _req: ListNodes) -> Result<Vec<NodeInfo>, RpcError> {
        self.ensure_leader().await?;
        self.read(|s| {
            s.state
                .nodes
                .values()
                .map(|n| n.to_info(self.liveness.alive(n.id)))
                .collect()
        })
    }

    pub async fn list_streams(&self, _req: ListStreams) -> Result<Vec<StreamInfo>, RpcError> {
        self.ensure_leader().await?;
        self.read(|s| {
            s.state
                .streams
                .values()
                .filter(|s| !s.deleted)
                .map(|s| s.to_info())
                .collect()
        })
    }

    pub async fn allocate_ids(&self, req: AllocateIds) -> Result<u64, RpcError> {
        match self
            .write(Command::AllocateIds {
                key: req.key,
                count: req.count,
            })
            .await?
        {
            Response::FirstId(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn watch(&self, req: Watch) -> Result<WatchResponse, RpcError> {
        self.ensure_leader().await?;
        Ok(self
            .watch
            .wait(req.since, Duration::from_millis(req.timeout_ms))
            .await)
    }

    /// Live range servers and nodes, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        self.read(|s| {
            let streams = s.state.streams.values().filter(|s| !s.deleted).count();
            let alive = s
                .state
                .nodes
                .values()
                .filter(|n| self.liveness.alive(n.id))
                .count();
            (streams, alive)
        })
        .unwrap_or_default()
    }

    /// Range servers known to the state, for tests and tools.
    pub fn range_servers(&self) -> Vec<NodeId> {
        self.read(|s| {
            s.state
                .nodes
                .values()
                .filter(|n| n.kind == Kind::RangeServer)
                .map(|n| n.id)
                .collect()
        })
        .unwrap_or_default()
    }
}

/// The leader's RPC address named by a `NotLeader` error from this service
/// (`"leader is <id> at <addr>"`), if any.
pub fn leader_addr(err: &RpcError) -> Option<&str> {
    if err.code != ErrorCode::NotLeader {
        return None;
    }
    err.message
        .rsplit_once(" at ")
        .map(|(_, addr)| addr.trim())
        .filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_addr_parses_not_leader_errors() {
        let e = RpcError::new(ErrorCode::NotLeader, "leader is 2 at 127.0.0.1:7001");
        assert_eq!(leader_addr(&e), Some("127.0.0.1:7001"));
        assert_eq!(
            leader_addr(&RpcError::new(ErrorCode::NotLeader, "no leader known")),
            None
        );
        assert_eq!(
            leader_addr(&RpcError::new(ErrorCode::Internal, "x at y")),
            None
        );
    }
}
