//! Request handlers of the placement driver, and the leader-side knowledge that is not
//! replicated (liveness).
//!
//! Owns: turning each PD request into a Raft command (writes) or a read of the leader's applied
//! state; the leader-side inputs of commands — the placement choice for new ranges, the leaders
//! of new partitions (both made here with liveness, then validated by the state machine), random
//! topic ids and the cluster id; `validate_only` answers (computed from the applied state,
//! nothing proposed); and mapping failures to [`protocol::ErrorCode`]s (`NotLeader` carries the
//! leader's address). Must not: change [`crate::state::PdState`] except through Raft, or do
//! disk I/O.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use protocol::model::{NodeInfo, RangeInfo, RangeReport, StreamInfo, TopicInfo};
use protocol::pd::*;
use protocol::{ErrorCode, RpcError};

use crate::balancer;
use crate::holdings::Holdings;
use crate::liveness::Liveness;
use crate::loads::Loads;
use crate::moves::Moves;
use crate::state::{Command, Kind, PdState, RangeVerdict, Response, StateError};
use crate::state_machine::{Shared, SharedState};
use crate::topics::{TopicRecord, TopicSpec};
use crate::watch::WatchHub;
use crate::writes::Writes;
use crate::{NodeId, Raft};

/// Handlers whose whole work is one Raft command carrying the request's fields as they are:
/// `handler(Request) -> Answer via write_fn: Command { fields }`.
macro_rules! command_handlers {
    ($($handler:ident($req:ident) -> $answer:ident via $write:ident: $command:ident { $($field:ident),* };)*) => {
        $(
            pub async fn $handler(&self, req: $req) -> Result<$answer, RpcError> {
                self.$write(Command::$command { $($field: req.$field),* }).await
            }
        )*
    };
}

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub struct PdService {
    pub node_id: NodeId,
    pub raft: Raft,
    pub shared: SharedState,
    pub watch: Arc<WatchHub>,
    pub liveness: Arc<Liveness>,
    pub holdings: Arc<Holdings>,
    pub moves: Arc<Moves>,
    pub loads: Arc<Loads>,
    /// Writes waiting to be proposed (see [`crate::writes`] and [`PdService::run_writes`]).
    pub writes: Arc<Writes>,
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

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Shared) -> T) -> Result<T, RpcError> {
        let g = self
            .shared
            .read()
            .map_err(|_| RpcError::new(ErrorCode::Internal, "state lock poisoned"))?;
        Ok(f(&g))
    }

    /// [`Self::read`] after [`Self::ensure_leader`]: the applied state, current as of now.
    async fn linearizable_read<T>(&self, f: impl FnOnce(&Shared) -> T) -> Result<T, RpcError> {
        self.ensure_leader().await?;
        self.read(f)
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
    pub(crate) async fn ensure_leader(&self) -> Result<(), RpcError> {
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
    pub(crate) fn is_leader(&self) -> Result<(), RpcError> {
        let leader = self.raft.metrics().borrow().current_leader;
        if leader == Some(self.node_id) {
            Ok(())
        } else {
            Err(self.not_leader(leader))
        }
    }

    /// Proposes `cmd` through Raft and returns what applying it produced.
    /// Proposes `cmd` through Raft (gathered with concurrent writes into one log entry) and
    /// answers its result once applied.
    pub async fn write(&self, cmd: Command) -> Result<Response, RpcError> {
        let queued = std::time::Instant::now();
        let answer = self.writes.push(cmd).await.unwrap_or_else(|_| {
            Err(RpcError::new(
                ErrorCode::NotReady,
                "the placement driver is stopping",
            ))
        });
        self.writes.observe_write(queued);
        answer
    }

    /// The writer task: proposes queued writes, one log entry at a time (a lone command as
    /// itself, several as a `Command::Batch`), and answers each. Runs until Raft stops.
    pub async fn run_writes(self) {
        loop {
            let batch = self.writes.next_batch().await;
            let proposed = std::time::Instant::now();
            if batch.len() == 1 {
                if let Some((cmd, reply)) = batch.into_iter().next() {
                    let answer = self.propose(cmd).await;
                    self.writes.observe_proposal(proposed, 1);
                    let _ = reply.send(answer);
                }
                continue;
            }
            let (cmds, replies): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
            let answer = self.propose(Command::Batch(cmds)).await;
            self.writes.observe_proposal(proposed, replies.len());
            match answer {
                Ok(Response::Batch(results)) if results.len() == replies.len() => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result.map_err(RpcError::from));
                    }
                }
                Ok(other) => {
                    let e = unexpected(other);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            if self.raft.metrics().borrow().running_state.is_err() {
                return;
            }
        }
    }

    async fn propose(&self, cmd: Command) -> Result<Response, RpcError> {
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
            // With its object slices as they stand after the command (a deleted stream has
            // none left).
            Response::Stream(record) => Ok(self
                .read(|s| {
                    s.state
                        .stream(record.id)
                        .ok()
                        .map(|live| s.state.stream_info(live))
                })?
                .unwrap_or_else(|| record.to_info())),
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
        // One address, one live node: a second process advertising the address of a live one
        // would get (or fight over) its id and fence it forever.
        let kind: Kind = req.kind.into();
        let holder = self.read(|s| {
            s.state
                .nodes
                .values()
                .find(|n| n.kind == kind && n.addr == req.addr && Some(n.id) != req.node_id)
                .map(|n| n.id)
        })?;
        if let Some(holder) = holder.filter(|&id| self.liveness.alive(id)) {
            tracing::warn!(addr = %req.addr, holder, "refused a registration: the address belongs to a live node");
            return Err(RpcError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "{} is the address of node {holder}, which holds a live lease: is another \
                     process advertising the same address?",
                    req.addr
                ),
            ));
        }
        let cmd = Command::RegisterNode {
            kind,
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
        self.liveness.reported_version(req.node_id, &req.version);
        if let Some(loads) = req.loads {
            self.loads.report(req.node_id, loads);
        }
        let reports = &req.ranges[..req.ranges.len().min(MAX_REPORTS_PER_HEARTBEAT)];
        self.holdings.record(req.node_id, reports);
        let (retired, stream_starts) = self.range_verdicts(reports).await;
        self.holdings.forget(&retired);
        let offload = self.offload_tasks(req.node_id, reports);
        if !retired.is_empty() {
            tracing::info!(
                node = req.node_id,
                ranges = ?retired,
                "ranges retired on their range server"
            );
        }
        let draining = self
            .read(|s| {
                s.state
                    .nodes
                    .values()
                    .filter(|n| n.kind == Kind::RangeServer && n.draining)
                    .map(|n| n.id)
                    .collect()
            })
            .unwrap_or_default();
        Ok(HeartbeatResponse {
            lease_ms: self.lease_ms(),
            retired,
            stream_starts,
            offload,
            draining,
        })
    }

    /// The reported ranges that `node` is to offload now (see [`PdState::offload_task`]).
    fn offload_tasks(&self, node: u64, reports: &[RangeReport]) -> Vec<OffloadTask> {
        self.read(|s| {
            reports
                .iter()
                .filter_map(|r| {
                    let key = (r.stream_id, r.index);
                    s.state.offload_task(
                        node,
                        key,
                        |id| self.liveness.alive(id),
                        |id| self.holdings.local_end(key, id),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }

    pub async fn prepare_object(&self, req: PrepareObject) -> Result<u64, RpcError> {
        match self
            .write(Command::PrepareObject {
                node_id: req.node_id,
                at_ms: crate::now_ms(),
            })
            .await?
        {
            Response::FirstId(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn commit_object(&self, req: CommitObject) -> Result<CommitObjectResponse, RpcError> {
        let cmd = Command::CommitObject {
            object_id: req.object_id,
            size: req.size,
            slices: req.slices.into_iter().map(Into::into).collect(),
        };
        match self.write(cmd).await? {
            Response::Offloaded(offloaded) => Ok(CommitObjectResponse { offloaded }),
            other => Err(unexpected(other)),
        }
    }

    pub async fn compact_objects(&self, req: CompactObjects) -> Result<StreamInfo, RpcError> {
        self.write_stream(Command::CompactObjects {
            object_id: req.object_id,
            size: req.size,
            stream_id: req.stream_id,
            replaces: req.replaces,
            start: req.start,
            end: req.end,
            bytes: req.bytes,
        })
        .await
    }

    pub async fn object_stats(&self, _req: ObjectStats) -> Result<ObjectStatsResponse, RpcError> {
        self.linearizable_read(|s| {
            let o = &s.state.objects;
            ObjectStatsResponse {
                committed: o.committed.len() as u64,
                committed_bytes: o.committed.values().map(|r| r.size).sum(),
                prepared: o.prepared.len() as u64,
                doomed: o.doomed.len() as u64,
                next_object_id: o.next_id,
            }
        })
        .await
    }

    /// What a range server may drop of the ranges it reported (see
    /// [`PdState::range_verdict`]). Retiring is final, so a retirement is only answered when a
    /// linearizable read agrees (a new leader's applied state may lag the log: a range it
    /// does not know yet may exist); a trim is safe on any applied state, since stream starts
    /// only grow.
    async fn range_verdicts(&self, reports: &[RangeReport]) -> (Vec<(u64, u32)>, Vec<(u64, u64)>) {
        let verdicts = |state: &PdState| {
            let mut retired = Vec::new();
            let mut starts = Vec::new();
            for r in reports {
                match state.range_verdict(r.stream_id, r.index) {
                    RangeVerdict::Retire => retired.push((r.stream_id, r.index)),
                    RangeVerdict::TrimTo(start) => starts.push((r.stream_id, start)),
                    RangeVerdict::Keep => {}
                }
            }
            starts.dedup();
            (retired, starts)
        };
        let Ok((retired, starts)) = self.read(|s| verdicts(&s.state)) else {
            return (Vec::new(), Vec::new());
        };
        if retired.is_empty() {
            return (retired, starts);
        }
        match self.linearizable_read(|s| verdicts(&s.state)).await {
            Ok(confirmed) => confirmed,
            Err(_) => (Vec::new(), starts),
        }
    }

    command_handlers! {
        create_stream(CreateStream) -> StreamInfo via write_stream: CreateStream { replica, ack_count };
        open_stream(OpenStream) -> StreamInfo via write_stream: OpenStream { stream_id, min_epoch };
        seal_range(SealRange) -> RangeInfo via write_range: SealRange { stream_id, epoch, index, end };
        trim_stream(TrimStream) -> StreamInfo via write_stream: TrimStream { stream_id, start_offset };
        delete_stream(DeleteStream) -> StreamInfo via write_stream: DeleteStream { stream_id };
    }

    pub async fn describe_stream(&self, req: DescribeStream) -> Result<StreamInfo, RpcError> {
        self.linearizable_read(|s| {
            s.state
                .stream(req.stream_id)
                .map(|stream| s.state.stream_info(stream))
        })
        .await?
        .map_err(RpcError::from)
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

    pub async fn list_nodes(&self, _req: ListNodes) -> Result<Vec<NodeInfo>, RpcError> {
        self.linearizable_read(|s| {
            s.state
                .nodes
                .values()
                .map(|n| {
                    let mut info = n.to_info(self.liveness.alive(n.id));
                    if n.kind == Kind::RangeServer && n.draining {
                        info.still_needed = Some(self.ranges_needing(&s.state, n.id));
                    }
                    info
                })
                .collect()
        })
        .await
    }

    /// See [`PdState::ranges_needing`]: another holder counts if it is live, not draining,
    /// and last reported holding the range through its end.
    pub(crate) fn ranges_needing(&self, state: &PdState, node: u64) -> u32 {
        state.ranges_needing(node, |other, range, end| {
            self.liveness.alive(other)
                && !state.nodes.get(&other).is_some_and(|n| n.draining)
                && self
                    .holdings
                    .local_end(range, other)
                    .is_some_and(|e| e >= end)
        })
    }

    pub async fn list_streams(&self, _req: ListStreams) -> Result<Vec<StreamInfo>, RpcError> {
        self.linearizable_read(|s| {
            s.state
                .live_streams()
                .map(|stream| s.state.stream_info(stream))
                .collect()
        })
        .await
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

    async fn write_topic(&self, cmd: Command) -> Result<TopicInfo, RpcError> {
        match self.write(cmd).await? {
            Response::Topic(t) => Ok(t.to_info()),
            other => Err(unexpected(other)),
        }
    }

    /// A `validate_only` answer: the topic as `plan` finds it would be after the change, with
    /// nothing proposed.
    fn planned_topic(
        &self,
        plan: impl FnOnce(&PdState) -> Result<TopicRecord, StateError>,
    ) -> Result<TopicInfo, RpcError> {
        self.read(|s| plan(&s.state))?
            .map(|t| t.to_info())
            .map_err(RpcError::from)
    }

    /// Leaders for `count` new partitions, chosen among live brokers.
    fn pick_leaders(&self, count: u32) -> Result<Vec<Option<u64>>, RpcError> {
        self.read(|s| balancer::pick_leaders(&s.state, |id| self.liveness.alive(id), count))
    }

    pub async fn create_topic(&self, req: CreateTopic) -> Result<TopicInfo, RpcError> {
        self.ensure_leader().await?;
        let count = req.partitions.min(crate::topics::MAX_PARTITIONS);
        let spec = TopicSpec {
            id: self.read(|s| {
                // Redraw in the (astronomically unlikely) case of a collision.
                let mut id = random_uuid();
                while s.state.topics.values().any(|t| t.id == id) {
                    id = random_uuid();
                }
                id
            })?,
            leaders: self.pick_leaders(count)?,
            name: req.name,
            partitions: req.partitions,
            configs: req.configs,
            replica: req.replica,
            ack_count: req.ack_count,
            internal: req.internal,
        };
        if req.validate_only {
            return self.planned_topic(|s| s.plan_create_topic(&spec));
        }
        let name = spec.name.clone();
        let topic = self.write_topic(Command::CreateTopic(spec)).await?;
        tracing::info!(topic = %name, partitions = topic.partitions.len(), "topic created");
        Ok(topic)
    }

    pub async fn delete_topic(&self, req: DeleteTopic) -> Result<TopicInfo, RpcError> {
        let topic = self
            .write_topic(Command::DeleteTopic { name: req.name })
            .await?;
        tracing::info!(topic = %topic.name, "topic deleted");
        Ok(topic)
    }

    pub async fn create_partitions(&self, req: CreatePartitions) -> Result<TopicInfo, RpcError> {
        self.ensure_leader().await?;
        let current =
            self.read(|s| s.state.topic(&req.name).map(|t| t.partitions.len() as u32))??;
        let new = req
            .total
            .min(crate::topics::MAX_PARTITIONS)
            .saturating_sub(current);
        let leaders = self.pick_leaders(new)?;
        if req.validate_only {
            return self
                .planned_topic(|s| s.plan_create_partitions(&req.name, req.total, &leaders));
        }
        self.write_topic(Command::CreatePartitions {
            name: req.name,
            total: req.total,
            leaders,
        })
        .await
    }

    pub async fn alter_topic_configs(&self, req: AlterTopicConfigs) -> Result<TopicInfo, RpcError> {
        if req.validate_only {
            self.ensure_leader().await?;
            return self.planned_topic(|s| {
                s.plan_alter_configs(&req.name, &req.set, &req.remove, req.replace_all)
            });
        }
        self.write_topic(Command::AlterTopicConfigs {
            name: req.name,
            set: req.set,
            remove: req.remove,
            replace_all: req.replace_all,
        })
        .await
    }

    pub async fn list_topics(&self, _req: ListTopics) -> Result<Vec<TopicInfo>, RpcError> {
        self.linearizable_read(|s| s.state.topics.values().map(|t| t.to_info()).collect())
            .await
    }

    /// An operator's moves (see [`MovePartitions`]): each checked on its own (the partition
    /// exists, the target is a live broker), the good ones made in one Raft command and
    /// handed to [`Moves`] to be timed.
    pub async fn move_partitions(
        &self,
        req: MovePartitions,
    ) -> Result<Vec<Option<RpcError>>, RpcError> {
        if req.moves.len() > MAX_MOVES_PER_REQUEST {
            return Err(RpcError::new(
                ErrorCode::InvalidArgument,
                format!("at most {MAX_MOVES_PER_REQUEST} moves per request"),
            ));
        }
        self.ensure_leader().await?;
        let (answers, decisions, before) = self.read(|s| {
            let mut answers = Vec::with_capacity(req.moves.len());
            let mut decisions = Vec::new();
            for m in &req.moves {
                let answer = self.check_move(&s.state, m);
                if answer.is_none() {
                    let change = (m.topic.clone(), m.partition, m.broker);
                    decisions.push((change, balancer::Reason::Requested));
                }
                answers.push(answer);
            }
            let changes: Vec<_> = decisions.iter().map(|(c, _)| c.clone()).collect();
            let before = leaders_of(&s.state, &changes);
            (answers, decisions, before)
        })?;
        if decisions.is_empty() {
            return Ok(answers);
        }
        let moves = decisions.iter().map(|(c, _)| c.clone()).collect();
        self.write(Command::MovePartitions { moves }).await?;
        self.record_moves(&decisions, &before);
        Ok(answers)
    }

    /// Logs each applied ownership change with its reason and hands it to [`Moves`] to be
    /// timed: those whose partition now has the new leader and had another before (`before`:
    /// leader and epoch of each, read before the change). The balancer's orphans and drains
    /// come many at once: their lines are debug (the count is in the metric).
    pub(crate) fn record_moves(
        &self,
        decisions: &[(balancer::Change, balancer::Reason)],
        before: &[(Option<u64>, u32)],
    ) {
        use balancer::Reason;
        let changes: Vec<_> = decisions.iter().map(|(c, _)| c.clone()).collect();
        let Ok(after) = self.read(|s| leaders_of(&s.state, &changes)) else {
            return;
        };
        for ((((topic, index, to), reason), (from, _)), (leader, epoch)) in
            decisions.iter().zip(before).zip(after)
        {
            if leader != Some(*to) || *from == Some(*to) {
                continue;
            }
            let reason = *reason;
            if matches!(reason, Reason::Orphan | Reason::Drain) {
                tracing::debug!(
                    topic,
                    partition = index,
                    ?from,
                    to,
                    leader_epoch = epoch,
                    reason = reason.as_str(),
                    "moving a partition"
                );
            } else {
                tracing::info!(
                    topic,
                    partition = index,
                    ?from,
                    to,
                    leader_epoch = epoch,
                    reason = reason.as_str(),
                    "moving a partition"
                );
            }
            self.moves
                .decided(topic, *index, *from, *to, epoch, reason.as_str());
        }
    }

    /// Why `m` cannot be made, if it cannot.
    fn check_move(&self, state: &PdState, m: &PartitionMove) -> Option<RpcError> {
        let topic = match state.topic(&m.topic) {
            Ok(t) => t,
            Err(e) => return Some(e.into()),
        };
        if topic.partitions.get(m.partition as usize).is_none() {
            return Some(RpcError::new(
                ErrorCode::NotFound,
                format!("topic {} has no partition {}", m.topic, m.partition),
            ));
        }
        match state.nodes.get(&m.broker) {
            Some(n) if n.kind == Kind::Broker && n.draining => {
                return Some(RpcError::new(
                    ErrorCode::Unavailable,
                    format!("broker {} is being drained", m.broker),
                ))
            }
            Some(n) if n.kind == Kind::Broker => {}
            _ => {
                return Some(RpcError::new(
                    ErrorCode::InvalidArgument,
                    format!("{} is not a registered broker", m.broker),
                ))
            }
        }
        if !self.liveness.alive(m.broker) {
            return Some(RpcError::new(
                ErrorCode::Unavailable,
                format!("broker {} is not alive", m.broker),
            ));
        }
        None
    }

    /// Starts or ends draining a node (see [`DrainNode`]). Draining a range server is refused
    /// when too few others would be left for the streams' replicas.
    pub async fn drain_node(&self, req: DrainNode) -> Result<NodeInfo, RpcError> {
        if req.draining {
            self.ensure_leader().await?;
            let short = self.read(|s| {
                let st = &s.state;
                if !st
                    .nodes
                    .get(&req.node_id)
                    .is_some_and(|n| n.kind == Kind::RangeServer)
                {
                    return None;
                }
                let left = st
                    .nodes
                    .values()
                    .filter(|n| n.kind == Kind::RangeServer && n.id != req.node_id)
                    .filter(|n| !n.draining && self.liveness.alive(n.id))
                    .count();
                let needed = st.live_streams().map(|s| usize::from(s.replica)).max();
                needed.filter(|&n| left < n).map(|n| (left, n))
            })?;
            if let Some((left, needed)) = short {
                return Err(RpcError::new(
                    ErrorCode::NoCapacity,
                    format!(
                        "draining range server {} would leave {left} live range servers; \
                         streams need {needed}",
                        req.node_id
                    ),
                ));
            }
        }
        let node = match self
            .write(Command::SetDraining {
                node_id: req.node_id,
                draining: req.draining,
            })
            .await?
        {
            Response::Node(n) => n,
            other => return Err(unexpected(other)),
        };
        tracing::info!(node = node.id, draining = node.draining, "drain set");
        let mut info = node.to_info(self.liveness.alive(node.id));
        if node.kind == Kind::RangeServer && node.draining {
            info.still_needed = self.read(|s| self.ranges_needing(&s.state, node.id)).ok();
        }
        Ok(info)
    }

    /// Every partition's load as its broker last reported it (leader memory; see [`Loads`]).
    pub async fn list_loads(&self, _req: ListLoads) -> Result<Vec<LoadInfo>, RpcError> {
        self.ensure_leader().await?;
        Ok(self.loads.list())
    }

    /// The moves in flight (leader memory; see [`Moves`]).
    pub async fn list_moves(&self, req: ListMoves) -> Result<Vec<MoveInfo>, RpcError> {
        self.ensure_leader().await?;
        Ok(self.moves.list(req.recent))
    }

    /// A broker serves a partition at an epoch: ends its move, if one is in flight.
    pub async fn partition_opened(&self, req: PartitionOpened) -> Result<(), RpcError> {
        self.is_leader()?;
        self.moves
            .opened(&req.topic, req.partition, req.broker, req.leader_epoch);
        Ok(())
    }

    /// The cluster id; fixes one through Raft if none is set yet (normally done by the leader at
    /// its first start, see [`crate::server`]).
    pub async fn get_cluster_info(&self, _req: GetClusterInfo) -> Result<ClusterInfo, RpcError> {
        self.ensure_leader().await?;
        if let Some(id) = self.read(|s| s.state.cluster_id.clone())? {
            return Ok(ClusterInfo { cluster_id: id });
        }
        match self
            .write(Command::SetClusterId {
                cluster_id: new_cluster_id(),
            })
            .await?
        {
            Response::ClusterId(cluster_id) => Ok(ClusterInfo { cluster_id }),
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

    /// Figures for metrics.
    pub fn counts(&self) -> Counts {
        self.read(|s| {
            let alive = |id| self.liveness.alive(id);
            let live_brokers: std::collections::BTreeSet<u64> =
                balancer::live_counts(&s.state, alive).into_keys().collect();
            let partitions = s.state.topics.values().flat_map(|t| &t.partitions);
            Counts {
                streams: s.state.live_streams().count(),
                nodes_alive: s.state.nodes.values().filter(|n| alive(n.id)).count(),
                topics: s.state.topics.len(),
                partitions: partitions.clone().count(),
                partitions_without_live_leader: partitions
                    .filter(|p| !p.leader.is_some_and(|l| live_brokers.contains(&l)))
                    .count(),
                objects: s.state.objects.committed.len(),
                object_bytes: s.state.objects.committed.values().map(|o| o.size).sum(),
                objects_doomed: s.state.objects.doomed.len(),
            }
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

/// Figures reported as metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub streams: usize,
    pub nodes_alive: usize,
    pub topics: usize,
    pub partitions: usize,
    pub partitions_without_live_leader: usize,
    /// Committed objects, their bytes, and objects waiting to be deleted.
    pub objects: usize,
    pub object_bytes: u64,
    pub objects_doomed: usize,
}

/// 16 random bytes in UUID version 4 layout whose base64url form does not start with `-`
/// (Kafka's rule for generated ids, so they are safe on command lines).
pub fn random_uuid() -> [u8; 16] {
    loop {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        if b[0] >> 2 != 62 {
            return b;
        }
    }
}

/// Unpadded base64url (RFC 4648 §5), the form Kafka prints ids in.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A new cluster id: 22 characters of base64url over a random UUID, like Kafka's.
pub fn new_cluster_id() -> String {
    base64url(&random_uuid())
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

/// Most moves one `MovePartitions` may ask for.
pub const MAX_MOVES_PER_REQUEST: usize = 10_000;

/// The leader and leader epoch of each (topic, partition) named (None, 0 when gone).
pub fn leaders_of(state: &PdState, which: &[(String, u32, u64)]) -> Vec<(Option<u64>, u32)> {
    which
        .iter()
        .map(|(topic, index, _)| {
            state
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(*index as usize))
                .map_or((None, 0), |p| (p.leader, p.leader_epoch))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_kafka_form() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        for _ in 0..1000 {
            let u = random_uuid();
            assert_eq!(u[6] >> 4, 4);
            assert_eq!(u[8] >> 6, 2);
            let id = base64url(&u);
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
        }
        assert_ne!(new_cluster_id(), new_cluster_id());
    }

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
