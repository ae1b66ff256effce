//! Raft traffic between placement-driver voters, carried by the Strata RPC.
//!
//! Owns: the client side ([`Network`], one [`PeerClient`] per target voter) and the server side
//! ([`handle_raft_message`]): an openraft request travels as the serde-bincode payload of a
//! [`RaftMessage`], the answer as the serde-bincode of `Result<response, RaftError>`.
//! Must not: interpret Raft messages or touch storage; it only moves bytes.

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use protocol::pd::{RaftMessage, RaftMessageKind};
use protocol::{ErrorCode, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{BasicNode, NodeId, Raft, TypeConfig};

/// Creates clients to the other voters; their addresses come from the Raft membership.
#[derive(Debug, Clone, Default)]
pub struct Network {
    opts: actors::ClientOptions,
}

impl Network {
    pub fn new(max_frame: usize) -> Self {
        Network {
            opts: actors::ClientOptions {
                max_frame,
                ..Default::default()
            },
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            client: actors::RpcClient::with_options(node.addr.clone(), self.opts.clone()),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    client: actors::RpcClient,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn send<Req, Resp, E>(
        &self,
        kind: RaftMessageKind,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = protocol::codec::encode_serde(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let bytes = self
            .client
            .call_with_timeout(RaftMessage { kind, payload }, option.hard_ttl())
            .await
            .map_err(|e| {
                if e.is_transient() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let answer: Result<Resp, RaftError<NodeId, E>> = protocol::codec::decode_serde(&bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.send(RaftMessageKind::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(RaftMessageKind::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.send(RaftMessageKind::Vote, &rpc, &option).await
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, RpcError> {
    protocol::codec::decode_serde(payload)
}

/// Serves one [`RaftMessage`] from another voter with the local Raft.
pub async fn handle_raft_message(raft: &Raft, msg: RaftMessage) -> Result<Vec<u8>, RpcError> {
    match msg.kind {
        RaftMessageKind::AppendEntries => {
            let req: AppendEntriesRequest<TypeConfig> = decode(&msg.payload)?;
            protocol::codec::encode_serde(&raft.append_entries(req).await)
        }
        RaftMessageKind::Vote => {
            let req: VoteRequest<NodeId> = decode(&msg.payload)?;
            protocol::codec::encode_serde(&raft.vote(req).await)
        }
        RaftMessageKind::InstallSnapshot => {
            let req: InstallSnapshotRequest<TypeConfig> = decode(&msg.payload)?;
            protocol::codec::encode_serde(&raft.install_snapshot(req).await)
        }
    }
    .map_err(|e| RpcError::new(ErrorCode::Internal, e.message))
}
