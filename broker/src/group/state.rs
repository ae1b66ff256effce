//! The pure state of the groups of one `__consumer_offsets` partition: Kafka's classic group
//! protocol (generations, member ids, join/sync/heartbeat/leave, rebalance and session
//! timeouts, static membership), committed offsets and their expiry, and replay of the
//! persisted records.
//!
//! It follows Apache Kafka's `GroupCoordinator` rule for rule, with two differences of form:
//! time is passed in (`now`, wall-clock milliseconds) and timers are deadlines checked by
//! [`Groups::tick`]; and what must be persisted is queued as [`Write`]s that the owner (the
//! coordinator actor) appends to the data stream in order, calling each write's `done` once
//! the stream has confirmed it. Answers that depend on a write (offset commits, the leader's
//! assignment, deletions) are given from `done`. If a write fails the owner drops this whole
//! state (the next owner replays the stream), so there is no failure path here.
//!
//! No I/O, no actors, no panics on client input.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::records::{GroupValue, MemberValue, OffsetValue, Record};
use super::GroupConfig;

/// New members that never finish joining are dropped after this long (Kafka's
/// `NewMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

fn code(e: E) -> i16 {
    e.code()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(member_id: &str, error: i16) -> JoinResult {
        JoinResult {
            error,
            member_id: member_id.to_string(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: i16) -> SyncResult {
        SyncResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

pub type JoinCallback = Box<dyn FnOnce(JoinResult)>;
pub type SyncCallback = Box<dyn FnOnce(SyncResult)>;
/// Per-partition error codes of an offset commit, in request order.
pub type CommitCallback = Box<dyn FnOnce(Vec<i16>)>;
/// `(group, error)` per group, in request order.
pub type DeleteCallback = Box<dyn FnOnce(Vec<(String, i16)>)>;
/// `(group error, per-partition errors in request order)`.
pub type OffsetDeleteCallback = Box<dyn FnOnce(i16, Vec<i16>)>;

/// What runs once a write is confirmed: the state and the time.
pub type WriteDone = Box<dyn FnOnce(&mut Groups, i64)>;

/// Something to append to the data stream; `done` runs once it is confirmed.
pub struct Write {
    pub records: Vec<Record>,
    pub done: Option<WriteDone>,
}

pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ without an instance id: a new member must come back with its id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+.
    pub supports_skip_assignment: bool,
}

pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

pub struct CommitRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// OffsetCommit v2-4 retention time; -1: the broker's retention.
    pub retention_ms: i64,
    /// `(topic, partition, offset, leader epoch, metadata)`.
    pub offsets: Vec<(String, i32, i64, i32, Option<String>)>,
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    awaiting_join: Option<JoinCallback>,
    awaiting_sync: Option<SyncCallback>,
    is_new: bool,
    heartbeat_deadline: i64,
    /// Join order: the first member to join leads.
    seq: u64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    /// A member whose deadline passed has failed unless it is waiting in a rebalance
    /// (bounded by the rebalance timeout instead); new members always expire.
    fn expired(&self, now: i64) -> bool {
        if now < self.heartbeat_deadline {
            return false;
        }
        self.is_new || !(self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    fn value(&self, assignment: Option<&Bytes>) -> MemberValue {
        MemberValue {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            session_timeout_ms: self.session_timeout_ms,
            protocols: self.protocols.clone(),
            assignment: assignment
                .cloned()
                .unwrap_or_else(|| self.assignment.clone()),
        }
    }
}

/// What DescribeGroups shows of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

impl GroupSummary {
    pub fn dead() -> GroupSummary {
        GroupSummary {
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }
    }
}

/// The first, uncancellable part of the first rebalance of an empty group
/// (`group.initial.rebalance.delay.ms`): extended while new members keep arriving.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    delay_ms: i64,
    remaining_ms: i64,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub state_timestamp: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with when they stop being expected.
    pending_members: HashMap<String, i64>,
    /// Members of this generation that have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    sync_deadline: Option<i64>,
    join_deadline: Option<i64>,
    initial_delay: Option<InitialDelay>,
    new_member_added: bool,
    subscribed_topics: Option<HashSet<String>>,
    pub offsets: HashMap<(String, i32), OffsetValue>,
    /// The group metadata as last written to the stream (what a snapshot records).
    persisted: Option<GroupValue>,
    next_seq: u64,
}

impl Group {
    fn new(id: &str, now: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_timestamp: now,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            sync_deadline: None,
            join_deadline: None,
            initial_delay: None,
            new_member_added: false,
            subscribed_topics: None,
            offsets: HashMap::new(),
            persisted: None,
            next_seq: 0,
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn has_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp = now;
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as i64)
            .max()
            .unwrap_or(0)
    }

    fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join())
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty offer; otherwise the
    /// type must match and one offered protocol must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The protocol every member supports that most members prefer.
    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Vec<&str> = Vec::new();
        if let Some(first) = self.members.values().min_by_key(|m| m.seq) {
            for (name, _) in &first.protocols {
                if self
                    .members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
                {
                    candidates.push(name);
                }
            }
        }
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((vote, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n.as_str()))
            {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == vote) {
                    v.1 += 1;
                }
            }
        }
        // Most votes; ties go to the earliest in the first member's order.
        let mut best: Option<(&str, usize)> = None;
        for (c, n) in votes {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c.to_string())
    }

    fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_some_and(|t| t.contains(topic))
    }

    fn add_member(&mut self, mut member: Member, callback: Option<JoinCallback>) {
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        member.seq = self.next_seq;
        self.next_seq += 1;
        member.awaiting_join = callback;
        self.pending_members.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member; a callback it still holds gets UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.remove(member_id) {
            if let Some(instance) = &member.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(cb) = member.awaiting_join.take() {
                cb(JoinResult::error("", code(E::UnknownMemberId)));
            }
            if let Some(cb) = member.awaiting_sync.take() {
                cb(SyncResult::error(code(E::UnknownMemberId)));
            }
        }
        if self.is_leader(member_id) {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.seq)
                .map(|m| m.id.clone());
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
    }

    /// Kafka's `validateCurrentMember`: a static member must be the current holder of its
    /// instance id, a dynamic one must be a member.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        if let Some(instance) = instance_id {
            return match self.static_members.get(instance) {
                Some(current) if current != member_id => Some(code(E::FencedInstanceId)),
                Some(_) => None,
                None => Some(code(E::UnknownMemberId)),
            };
        }
        if !self.members.contains_key(member_id) {
            return Some(code(E::UnknownMemberId));
        }
        None
    }

    fn beat(&mut self, member_id: &str, now: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + m.session_timeout_ms.max(0) as i64;
        }
    }

    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        members
            .into_iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    fn join_result(
        &self,
        member_id: &str,
        with_members: bool,
        leader: Option<String>,
    ) -> JoinResult {
        JoinResult {
            error: 0,
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: leader.or_else(|| self.leader.clone()).unwrap_or_default(),
            skip_assignment: false,
            members: if with_members {
                self.current_member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    /// The group metadata record for the current generation, with `assignment` (or each
    /// member's current one).
    fn value(&self, assignment: Option<&HashMap<String, Bytes>>) -> GroupValue {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: members
                .into_iter()
                .map(|m| m.value(assignment.and_then(|a| a.get(&m.id))))
                .collect(),
        }
    }

    pub fn summary(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable {
            self.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: members
                .into_iter()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}

/// The topics of a consumer-protocol subscription (the version-0 prefix every version
/// shares: `i16 version, [string topics], ...`); None if it does not parse.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        if buf.len() < n {
            return None;
        }
        let (head, tail) = buf.split_at(n);
        buf = tail;
        Some(head)
    };
    let version = take(2)?;
    if i16::from_be_bytes([version[0], version[1]]) < 0 {
        return None;
    }
    let n = take(4)?;
    let n = i32::from_be_bytes([n[0], n[1], n[2], n[3]]);
    if n < 0 {
        return None;
    }
    let mut topics = Vec::new();
    for _ in 0..n {
        let len = take(2)?;
        let len = i16::from_be_bytes([len[0], len[1]]);
        if len < 0 {
            return None;
        }
        let name = take(len as usize)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(topics)
}

fn new_member_id(prefix: &str) -> String {
    let id = uuid::Uuid::from_u128(rand::random::<u128>());
    format!("{prefix}-{id}")
}

/// Every group of one `__consumer_offsets` partition.
pub struct Groups {
    pub config: GroupConfig,
    groups: HashMap<String, Group>,
    writes: Vec<Write>,
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        Groups {
            config,
            groups: HashMap::new(),
            writes: Vec::new(),
        }
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Writes queued since the last call, in the order they must be appended.
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    fn write(&mut self, records: Vec<Record>, done: Option<WriteDone>) {
        self.writes.push(Write { records, done });
    }

    /// Records the group metadata and queues its write.
    fn store_group(&mut self, group_id: &str, value: GroupValue, done: Option<WriteDone>) {
        if let Some(g) = self.groups.get_mut(group_id) {
            g.persisted = Some(value.clone());
        }
        self.write(
            vec![Record::Group {
                group: group_id.to_string(),
                value: Some(value),
            }],
            done,
        );
    }

    // ----- JoinGroup -----

    pub fn join(&mut self, now: i64, req: JoinRequest, callback: JoinCallback) {
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            callback(JoinResult::error(
                &req.member_id,
                code(E::InvalidSessionTimeout),
            ));
            return;
        }
        let unknown = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            if !unknown {
                callback(JoinResult::error(&req.member_id, code(E::UnknownMemberId)));
                return;
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now));
        }
        let group_id = req.group_id.clone();
        if unknown {
            self.join_new_member(now, req, callback);
        } else {
            self.join_current_member(now, req, callback);
        }
        if self
            .groups
            .get(&group_id)
            .is_some_and(|g| g.state == GroupState::PreparingRebalance)
        {
            self.try_complete_join(&group_id, now);
        }
    }

    fn join_new_member(&mut self, now: i64, req: JoinRequest, callback: JoinCallback) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        if group.state == GroupState::Dead {
            callback(JoinResult::error("", code(E::CoordinatorNotAvailable)));
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            callback(JoinResult::error("", code(E::InconsistentGroupProtocol)));
            return;
        }
        let prefix = req
            .instance_id
            .clone()
            .unwrap_or_else(|| req.client_id.clone());
        let new_id = new_member_id(&prefix);
        match req.instance_id.clone() {
            Some(instance) => match group.static_members.get(&instance).cloned() {
                Some(old_id) => {
                    self.replace_static_member(now, req, &instance, &old_id, &new_id, callback)
                }
                None => self.add_member_and_rebalance(now, req, new_id, callback),
            },
            None if req.require_known_member_id => {
                let deadline = now + req.session_timeout_ms.max(0) as i64;
                group.pending_members.insert(new_id.clone(), deadline);
                callback(JoinResult::error(&new_id, code(E::MemberIdRequired)));
            }
            None => self.add_member_and_rebalance(now, req, new_id, callback),
        }
    }

    fn join_current_member(&mut self, now: i64, req: JoinRequest, callback: JoinCallback) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let member_id = req.member_id.clone();
        if group.state == GroupState::Dead {
            callback(JoinResult::error(
                &member_id,
                code(E::CoordinatorNotAvailable),
            ));
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            callback(JoinResult::error(
                &member_id,
                code(E::InconsistentGroupProtocol),
            ));
            return;
        }
        if group.pending_members.contains_key(&member_id) {
            // A member coming back with the id MEMBER_ID_REQUIRED gave it.
            self.add_member_and_rebalance(now, req, member_id, callback);
            return;
        }
        if let Some(error) = group.validate_member(&member_id, req.instance_id.as_deref()) {
            callback(JoinResult::error(&member_id, error));
            return;
        }
        let state = group.state;
        let is_leader = group.is_leader(&member_id);
        let matches = group
            .members
            .get(&member_id)
            .is_some_and(|m| m.matches(&req.protocols));
        match state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(now, &req, callback);
            }
            GroupState::CompletingRebalance => {
                if matches {
                    // The member lost the JoinGroup answer: give it again.
                    callback(group.join_result(&member_id, is_leader, None));
                } else {
                    self.update_member_and_rebalance(now, &req, callback);
                }
            }
            GroupState::Stable => {
                if is_leader || !matches {
                    self.update_member_and_rebalance(now, &req, callback);
                } else {
                    callback(group.join_result(&member_id, false, None));
                }
            }
            GroupState::Empty | GroupState::Dead => {
                callback(JoinResult::error(&member_id, code(E::UnknownMemberId)));
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now: i64,
        req: JoinRequest,
        member_id: String,
        callback: JoinCallback,
    ) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let member = Member {
            id: member_id,
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline: now + NEW_MEMBER_JOIN_TIMEOUT_MS,
            seq: 0,
        };
        if group.state == GroupState::PreparingRebalance && group.generation == 0 {
            group.new_member_added = true;
        }
        group.add_member(member, Some(callback));
        self.maybe_prepare_rebalance(&req.group_id, now);
    }

    fn update_member_and_rebalance(&mut self, now: i64, req: &JoinRequest, callback: JoinCallback) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        if let Some(m) = group.members.get_mut(&req.member_id) {
            m.protocols = req.protocols.clone();
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            if let Some(old) = m.awaiting_join.replace(callback) {
                // A duplicate JoinGroup: the earlier one is superseded.
                old(JoinResult::error(
                    &req.member_id,
                    code(E::RebalanceInProgress),
                ));
            }
        }
        self.maybe_prepare_rebalance(&req.group_id, now);
    }

    /// A static member rejoined with an unknown member id: it takes over the old member (its
    /// assignment included) under a new id; the old id is fenced.
    fn replace_static_member(
        &mut self,
        now: i64,
        req: JoinRequest,
        instance: &str,
        old_id: &str,
        new_id: &str,
        callback: JoinCallback,
    ) {
        let group_id = req.group_id.clone();
        let Some(group) = self.groups.get_mut(&group_id) else {
            return;
        };
        let Some(mut member) = group.members.remove(old_id) else {
            return;
        };
        if let Some(cb) = member.awaiting_join.take() {
            cb(JoinResult::error(old_id, code(E::FencedInstanceId)));
        }
        if let Some(cb) = member.awaiting_sync.take() {
            cb(SyncResult::error(code(E::FencedInstanceId)));
        }
        let previous_leader = group.leader.clone();
        member.id = new_id.to_string();
        member.protocols = req.protocols.clone();
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.heartbeat_deadline = now + req.session_timeout_ms.max(0) as i64;
        group.members.insert(new_id.to_string(), member);
        if group.is_leader(old_id) {
            group.leader = Some(new_id.to_string());
        }
        if group.pending_sync.remove(old_id) {
            group.pending_sync.insert(new_id.to_string());
        }
        group
            .static_members
            .insert(instance.to_string(), new_id.to_string());
        match group.state {
            GroupState::Stable => {
                if group.select_protocol() == group.protocol_name {
                    // Same protocol: persist the new member id and hand back the current
                    // generation without disturbing anyone else.
                    let value = group.value(None);
                    let new_id = new_id.to_string();
                    let skip = req.supports_skip_assignment;
                    let id = group_id.clone();
                    self.store_group(
                        &id,
                        value,
                        Some(Box::new(move |groups: &mut Groups, _now| {
                            let Some(group) = groups.groups.get(&group_id) else {
                                callback(JoinResult::error(&new_id, code(E::UnknownMemberId)));
                                return;
                            };
                            if skip {
                                let is_leader = group.is_leader(&new_id);
                                let mut result = group.join_result(&new_id, is_leader, None);
                                result.skip_assignment = is_leader;
                                callback(result);
                            } else {
                                // The previous leader id, so a replaced leader does not run
                                // an assignment the stable group would ignore.
                                callback(group.join_result(&new_id, false, previous_leader));
                            }
                        })),
                    );
                } else {
                    if let Some(m) = group.members.get_mut(new_id) {
                        m.awaiting_join = Some(callback);
                    }
                    self.maybe_prepare_rebalance(&group_id, now);
                }
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(new_id) {
                    m.awaiting_join = Some(callback);
                }
                self.maybe_prepare_rebalance(&group_id, now);
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = group.members.get_mut(new_id) {
                    m.awaiting_join = Some(callback);
                }
            }
            GroupState::Empty | GroupState::Dead => {
                callback(JoinResult::error(new_id, code(E::UnknownMemberId)));
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, group_id: &str, now: i64) {
        if self.groups.get(group_id).is_some_and(|g| g.can_rebalance()) {
            self.prepare_rebalance(group_id, now);
        }
    }

    fn prepare_rebalance(&mut self, group_id: &str, now: i64) {
        let delay = self.config.initial_rebalance_delay_ms.max(0) as i64;
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state == GroupState::CompletingRebalance {
            // Members waiting in SyncGroup must rejoin.
            for m in group.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(cb) = m.awaiting_sync.take() {
                    cb(SyncResult::error(code(E::RebalanceInProgress)));
                }
            }
        }
        group.pending_sync.clear();
        group.sync_deadline = None;
        let rebalance_timeout = group.rebalance_timeout_ms();
        if group.state == GroupState::Empty && delay > 0 {
            group.initial_delay = Some(InitialDelay {
                delay_ms: delay,
                remaining_ms: (rebalance_timeout - delay).max(0),
            });
            group.join_deadline = Some(now + delay);
        } else {
            group.initial_delay = None;
            group.join_deadline = Some(now + rebalance_timeout);
        }
        group.transition(GroupState::PreparingRebalance, now);
        tracing::info!(group = %group_id, generation = group.generation, "preparing to rebalance");
        self.try_complete_join(group_id, now);
    }

    fn try_complete_join(&mut self, group_id: &str, now: i64) {
        let ready = self.groups.get(group_id).is_some_and(|g| {
            g.state == GroupState::PreparingRebalance
                && g.initial_delay.is_none()
                && g.has_all_members_joined()
        });
        if ready {
            self.complete_join(group_id, now);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin, start the next
    /// generation and answer every waiting JoinGroup.
    fn complete_join(&mut self, group_id: &str, now: i64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| !m.awaiting_join() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %group_id, member = %id, "member did not rejoin in time; removed");
            group.remove_member(&id);
        }
        if group.state == GroupState::Dead {
            return;
        }
        // The leader must be a member that rejoined.
        let has_leader = match group.leader.clone() {
            None => false,
            Some(leader)
                if group
                    .members
                    .get(&leader)
                    .is_some_and(|m| m.awaiting_join()) =>
            {
                true
            }
            Some(_) => match group
                .members
                .values()
                .filter(|m| m.awaiting_join())
                .min_by_key(|m| m.seq)
            {
                Some(m) => {
                    group.leader = Some(m.id.clone());
                    true
                }
                None => false,
            },
        };
        if !has_leader && !group.members.is_empty() {
            // Nobody rejoined: wait another rebalance timeout (session timeouts will clear
            // the members that are gone).
            group.join_deadline = Some(now + group.rebalance_timeout_ms());
            group.initial_delay = None;
            return;
        }
        group.join_deadline = None;
        group.initial_delay = None;
        group.new_member_added = false;
        group.generation += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            group.transition(GroupState::Empty, now);
            group.subscribed_topics = group.compute_subscribed_topics();
            tracing::info!(group = %group_id, generation = group.generation, "group is empty");
            let value = group.value(None);
            self.store_group(group_id, value, None);
            return;
        }
        group.protocol_name = group.select_protocol();
        group.subscribed_topics = group.compute_subscribed_topics();
        group.transition(GroupState::CompletingRebalance, now);
        tracing::info!(
            group = %group_id,
            generation = group.generation,
            members = group.members.len(),
            protocol = ?group.protocol_name,
            "rebalance: generation complete"
        );
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in &ids {
            let is_leader = group.is_leader(id);
            let result = group.join_result(id, is_leader, None);
            if let Some(m) = group.members.get_mut(id) {
                if let Some(cb) = m.awaiting_join.take() {
                    cb(result);
                }
                m.heartbeat_deadline = now + m.session_timeout_ms.max(0) as i64;
                m.is_new = false;
            }
        }
        group.pending_sync = ids.into_iter().collect();
        group.sync_deadline = Some(now + group.rebalance_timeout_ms());
    }

    // ----- SyncGroup -----

    pub fn sync(&mut self, now: i64, req: SyncRequest, callback: SyncCallback) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            callback(SyncResult::error(code(E::UnknownMemberId)));
            return;
        };
        if group.state == GroupState::Dead {
            callback(SyncResult::error(code(E::CoordinatorNotAvailable)));
            return;
        }
        if let Some(error) = group.validate_member(&req.member_id, req.instance_id.as_deref()) {
            callback(SyncResult::error(error));
            return;
        }
        if req.generation != group.generation {
            callback(SyncResult::error(code(E::IllegalGeneration)));
            return;
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| group.protocol_name.as_ref() != Some(n))
        {
            callback(SyncResult::error(code(E::InconsistentGroupProtocol)));
            return;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                callback(SyncResult::error(code(E::UnknownMemberId)))
            }
            GroupState::PreparingRebalance => {
                callback(SyncResult::error(code(E::RebalanceInProgress)))
            }
            GroupState::Stable => {
                group.pending_sync.remove(&req.member_id);
                let assignment = group
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                callback(SyncResult {
                    error: 0,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                });
                group.beat(&req.member_id, now);
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    if let Some(old) = m.awaiting_sync.replace(callback) {
                        old(SyncResult::error(code(E::RebalanceInProgress)));
                    }
                }
                group.pending_sync.remove(&req.member_id);
                if !group.is_leader(&req.member_id) {
                    return;
                }
                let mut assignment: HashMap<String, Bytes> = HashMap::new();
                for (member, bytes) in req.assignments {
                    if group.members.contains_key(&member) {
                        assignment.insert(member, bytes);
                    }
                }
                for id in group.members.keys() {
                    assignment.entry(id.clone()).or_default();
                }
                let generation = group.generation;
                tracing::info!(
                    group = %req.group_id,
                    generation,
                    members = group.members.len(),
                    "assignment received from the leader"
                );
                let value = group.value(Some(&assignment));
                let group_id = req.group_id.clone();
                self.store_group(
                    &req.group_id,
                    value,
                    Some(Box::new(move |groups: &mut Groups, now| {
                        let Some(group) = groups.groups.get_mut(&group_id) else {
                            return;
                        };
                        if group.state != GroupState::CompletingRebalance
                            || group.generation != generation
                        {
                            return;
                        }
                        let protocol_type = group.protocol_type.clone();
                        let protocol_name = group.protocol_name.clone();
                        for m in group.members.values_mut() {
                            m.assignment = assignment.get(&m.id).cloned().unwrap_or_default();
                            if let Some(cb) = m.awaiting_sync.take() {
                                cb(SyncResult {
                                    error: 0,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                });
                                m.heartbeat_deadline = now + m.session_timeout_ms.max(0) as i64;
                            }
                        }
                        group.transition(GroupState::Stable, now);
                    })),
                );
            }
        }
    }

    // ----- Heartbeat -----

    pub fn heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return code(E::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return code(E::CoordinatorNotAvailable);
        }
        if let Some(error) = group.validate_member(member_id, instance_id) {
            return error;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => code(E::UnknownMemberId),
            GroupState::CompletingRebalance => {
                group.beat(member_id, now);
                0
            }
            GroupState::PreparingRebalance => {
                group.beat(member_id, now);
                code(E::RebalanceInProgress)
            }
            GroupState::Stable => {
                if generation != group.generation {
                    code(E::IllegalGeneration)
                } else {
                    group.beat(member_id, now);
                    0
                }
            }
        }
    }

    // ----- LeaveGroup -----

    /// Removes members (`(member id, instance id)`; an empty member id with an instance id
    /// removes that static member). Answers `(group error, per-member errors)`.
    pub fn leave(
        &mut self,
        now: i64,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>) {
        let Some(group) = self.groups.get(group_id) else {
            return (0, vec![code(E::UnknownMemberId); members.len()]);
        };
        if group.state == GroupState::Dead {
            return (code(E::CoordinatorNotAvailable), Vec::new());
        }
        let mut errors = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let Some(group) = self.groups.get_mut(group_id) else {
                errors.push(code(E::UnknownMemberId));
                continue;
            };
            if member_id.is_empty() {
                match instance_id
                    .as_ref()
                    .and_then(|i| group.static_members.get(i).cloned())
                {
                    Some(current) => {
                        self.remove_member_and_update(group_id, &current, now);
                        errors.push(0);
                    }
                    None => errors.push(code(E::UnknownMemberId)),
                }
            } else if group.pending_members.contains_key(member_id) {
                group.remove_member(member_id);
                self.try_complete_join(group_id, now);
                errors.push(0);
            } else if let Some(error) = group.validate_member(member_id, instance_id.as_deref()) {
                errors.push(error);
            } else {
                tracing::info!(group = %group_id, member = %member_id, "member leaves the group");
                self.remove_member_and_update(group_id, member_id, now);
                errors.push(0);
            }
        }
        (0, errors)
    }

    fn remove_member_and_update(&mut self, group_id: &str, member_id: &str, now: i64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group.remove_member(member_id);
        match group.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(group_id, now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(group_id, now),
        }
    }

    // ----- OffsetCommit / OffsetFetch / OffsetDelete -----

    pub fn commit(&mut self, now: i64, req: CommitRequest, callback: CommitCallback) {
        let n = req.offsets.len();
        if !self.groups.contains_key(&req.group_id) {
            if req.generation < 0 {
                // Not using group management: the group exists only to hold offsets.
                self.groups
                    .insert(req.group_id.clone(), Group::new(&req.group_id, now));
            } else {
                callback(vec![code(E::IllegalGeneration); n]);
                return;
            }
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            callback(vec![code(E::UnknownMemberId); n]);
            return;
        };
        let error = if group.state == GroupState::Dead {
            Some(code(E::CoordinatorNotAvailable))
        } else if req.generation >= 0 || !req.member_id.is_empty() || req.instance_id.is_some() {
            group
                .validate_member(&req.member_id, req.instance_id.as_deref())
                .or_else(|| {
                    (req.generation != group.generation).then(|| code(E::IllegalGeneration))
                })
        } else if group.state != GroupState::Empty {
            // Only members may commit to a group that has members.
            Some(code(E::UnknownMemberId))
        } else {
            None
        };
        if let Some(error) = error {
            callback(vec![error; n]);
            return;
        }
        match group.state {
            GroupState::CompletingRebalance => {
                callback(vec![code(E::RebalanceInProgress); n]);
                return;
            }
            GroupState::Stable | GroupState::PreparingRebalance => group.beat(&req.member_id, now),
            _ => {}
        }
        let mut errors = Vec::with_capacity(n);
        let mut records = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in req.offsets {
            let metadata = metadata.unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                errors.push(code(E::OffsetMetadataTooLarge));
                continue;
            }
            let value = OffsetValue {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp: now,
                expire_timestamp: (req.retention_ms >= 0).then(|| now + req.retention_ms),
            };
            group
                .offsets
                .insert((topic.clone(), partition), value.clone());
            records.push(Record::Offset {
                group: req.group_id.clone(),
                topic,
                partition,
                value: Some(value),
            });
            errors.push(0);
        }
        self.write(records, Some(Box::new(move |_, _| callback(errors))));
    }

    /// Committed offsets: for each asked partition `(topic, partition, value)` (None: no
    /// commit); all of the group's when `partitions` is None.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<(String, i32, Option<OffsetValue>)> {
        let group = self
            .groups
            .get(group_id)
            .filter(|g| g.state != GroupState::Dead);
        match partitions {
            Some(partitions) => partitions
                .iter()
                .map(|(t, p)| {
                    let value = group.and_then(|g| g.offsets.get(&(t.clone(), *p)).cloned());
                    (t.clone(), *p, value)
                })
                .collect(),
            None => {
                let mut all: Vec<_> = group
                    .map(|g| {
                        g.offsets
                            .iter()
                            .map(|((t, p), v)| (t.clone(), *p, Some(v.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                all
            }
        }
    }

    /// OffsetDelete: removes committed offsets of topics the group does not consume.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
        callback: OffsetDeleteCallback,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            callback(code(E::GroupIdNotFound), Vec::new());
            return;
        };
        let consumer = group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
        let mut errors = Vec::with_capacity(partitions.len());
        match group.state {
            GroupState::Dead => {
                callback(code(E::GroupIdNotFound), Vec::new());
                return;
            }
            GroupState::Empty => errors.resize(partitions.len(), 0),
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable
                if consumer =>
            {
                for (topic, _) in &partitions {
                    errors.push(if group.is_subscribed_to(topic) {
                        code(E::GroupSubscribedToTopic)
                    } else {
                        0
                    });
                }
            }
            _ => {
                callback(code(E::NonEmptyGroup), Vec::new());
                return;
            }
        }
        let mut records = Vec::new();
        for ((topic, partition), error) in partitions.iter().zip(&errors) {
            if *error == 0 && group.offsets.remove(&(topic.clone(), *partition)).is_some() {
                records.push(Record::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                });
            }
        }
        self.write(records, Some(Box::new(move |_, _| callback(0, errors))));
    }

    // ----- DescribeGroups / ListGroups / DeleteGroups -----

    pub fn describe(&self, group_id: &str) -> GroupSummary {
        match self.groups.get(group_id) {
            Some(g) => g.summary(),
            None => GroupSummary::dead(),
        }
    }

    /// `(group id, protocol type, state)` of every live group, sorted by id.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut out: Vec<_> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        out.sort();
        out
    }

    pub fn delete_groups(&mut self, group_ids: &[String], callback: DeleteCallback) {
        let mut results = Vec::with_capacity(group_ids.len());
        let mut records = Vec::new();
        for id in group_ids {
            let error = match self.groups.get(id).map(|g| g.state) {
                None | Some(GroupState::Dead) => code(E::GroupIdNotFound),
                Some(GroupState::Empty) => {
                    if let Some(group) = self.groups.remove(id) {
                        records.extend(tombstones(&group));
                    }
                    tracing::info!(group = %id, "group deleted");
                    0
                }
                Some(_) => code(E::NonEmptyGroup),
            };
            results.push((id.clone(), error));
        }
        self.write(records, Some(Box::new(move |_, _| callback(results))));
    }

    // ----- timers -----

    /// Runs every deadline that has passed: pending and session expiry, the end of the join
    /// phase (initial delay, rebalance timeout), the sync timeout.
    pub fn tick(&mut self, now: i64) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.tick_group(&id, now);
        }
    }

    fn tick_group(&mut self, id: &str, now: i64) {
        let Some(group) = self.groups.get_mut(id) else {
            return;
        };
        if group.state == GroupState::Dead {
            return;
        }
        let expired_pending: Vec<String> = group
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(m, _)| m.clone())
            .collect();
        let any_pending_expired = !expired_pending.is_empty();
        for m in expired_pending {
            group.remove_member(&m);
        }
        if any_pending_expired {
            self.try_complete_join(id, now);
        }
        let Some(group) = self.groups.get_mut(id) else {
            return;
        };
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| m.expired(now))
            .map(|m| m.id.clone())
            .collect();
        for m in expired {
            tracing::info!(group = %id, member = %m, "member session expired; removed");
            self.remove_member_and_update(id, &m, now);
        }
        let Some(group) = self.groups.get_mut(id) else {
            return;
        };
        if group.state == GroupState::PreparingRebalance
            && group.join_deadline.is_some_and(|d| d <= now)
        {
            match group.initial_delay {
                Some(delay) if group.new_member_added && delay.remaining_ms > 0 => {
                    group.new_member_added = false;
                    let next = delay.delay_ms.min(delay.remaining_ms);
                    group.initial_delay = Some(InitialDelay {
                        delay_ms: delay.delay_ms,
                        remaining_ms: (delay.remaining_ms - next).max(0),
                    });
                    group.join_deadline = Some(now + next);
                }
                _ => self.complete_join(id, now),
            }
        }
        let Some(group) = self.groups.get_mut(id) else {
            return;
        };
        if matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && !group.pending_sync.is_empty()
            && group.sync_deadline.is_some_and(|d| d <= now)
        {
            let missing: Vec<String> = group.pending_sync.iter().cloned().collect();
            tracing::info!(group = %id, ?missing, "members did not sync in time; removed");
            for m in &missing {
                group.remove_member(m);
            }
            self.prepare_rebalance(id, now);
        }
    }

    /// Removes expired offsets (`offsets.retention.minutes`, Kafka's rules) and then groups
    /// that are empty and hold no offsets; queues their tombstones.
    pub fn expire(&mut self, now: i64) {
        let retention = self.config.offsets_retention.as_millis() as i64;
        let mut records = Vec::new();
        let mut dead = Vec::new();
        for group in self.groups.values_mut() {
            let base_from_state = match group.protocol_type.as_deref() {
                Some(_) if group.state == GroupState::Empty => Some(Some(group.state_timestamp)),
                Some(CONSUMER_PROTOCOL_TYPE)
                    if group.subscribed_topics.is_some() && group.state == GroupState::Stable =>
                {
                    Some(None)
                }
                None => Some(None),
                _ => None,
            };
            if let Some(state_base) = base_from_state {
                let subscribed = group.subscribed_topics.clone().unwrap_or_default();
                let expired: Vec<(String, i32)> = group
                    .offsets
                    .iter()
                    .filter(|((topic, _), v)| {
                        !(group.state == GroupState::Stable && subscribed.contains(topic))
                            && match v.expire_timestamp {
                                Some(t) => now >= t,
                                None => now - state_base.unwrap_or(v.commit_timestamp) >= retention,
                            }
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for (topic, partition) in expired {
                    group.offsets.remove(&(topic.clone(), partition));
                    records.push(Record::Offset {
                        group: group.id.clone(),
                        topic,
                        partition,
                        value: None,
                    });
                }
            }
            if group.state == GroupState::Empty && group.offsets.is_empty() {
                dead.push(group.id.clone());
            }
        }
        for id in dead {
            if let Some(mut group) = self.groups.remove(&id) {
                group.state = GroupState::Dead;
                tracing::info!(group = %id, "expired group removed");
                if group.persisted.is_some() {
                    records.push(Record::Group {
                        group: id,
                        value: None,
                    });
                }
            }
        }
        if !records.is_empty() {
            self.write(records, None);
        }
    }

    // ----- persistence -----

    /// Applies one replayed record (data stream or snapshot) while loading.
    pub fn replay(&mut self, record: Record, now: i64) {
        match record {
            Record::Offset {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(v) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now))
                        .offsets
                        .insert((topic, partition), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            },
            Record::Group { group, value } => match value {
                Some(v) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now))
                        .persisted = Some(v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.persisted = None;
                        // Kafka removes the group with its metadata tombstone; offsets written
                        // after it would recreate it.
                        if g.offsets.is_empty() {
                            self.groups.remove(&group);
                        }
                    }
                }
            },
        }
    }

    /// After replay: builds each group's live state from its persisted metadata (Stable with
    /// its members, or Empty), starting every member's session now.
    pub fn finish_load(&mut self, now: i64) {
        self.groups
            .retain(|_, g| g.persisted.is_some() || !g.offsets.is_empty());
        for group in self.groups.values_mut() {
            let Some(v) = group.persisted.clone() else {
                continue;
            };
            group.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
            group.generation = v.generation;
            group.protocol_name = v.protocol.clone();
            group.leader = v.leader.clone();
            group.state_timestamp = v.state_timestamp;
            group.members.clear();
            group.static_members.clear();
            for m in v.members {
                let member = Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: v.protocol_type.clone(),
                    protocols: m.protocols,
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    heartbeat_deadline: now + m.session_timeout_ms.max(0) as i64,
                    seq: group.next_seq,
                };
                group.next_seq += 1;
                if let Some(i) = &member.instance_id {
                    group.static_members.insert(i.clone(), member.id.clone());
                }
                group.members.insert(member.id.clone(), member);
            }
            if group
                .leader
                .as_ref()
                .is_some_and(|l| !group.members.contains_key(l))
            {
                group.leader = group
                    .members
                    .values()
                    .min_by_key(|m| m.seq)
                    .map(|m| m.id.clone());
            }
            group.state = if group.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
            group.subscribed_topics = group.compute_subscribed_topics();
        }
    }

    /// Every record a replay needs to rebuild the current persisted state.
    pub fn snapshot_records(&self) -> Vec<Record> {
        let mut ids: Vec<&String> = self.groups.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let Some(group) = self.groups.get(id) else {
                continue;
            };
            if let Some(v) = &group.persisted {
                out.push(Record::Group {
                    group: id.clone(),
                    value: Some(v.clone()),
                });
            }
            let mut offsets: Vec<_> = group.offsets.iter().collect();
            offsets.sort_by(|a, b| a.0.cmp(b.0));
            for ((topic, partition), v) in offsets {
                out.push(Record::Offset {
                    group: id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(v.clone()),
                });
            }
        }
        out
    }
}

/// The tombstones that delete a group: its metadata and every committed offset.
fn tombstones(group: &Group) -> Vec<Record> {
    let mut out: Vec<Record> = group
        .offsets
        .keys()
        .map(|(topic, partition)| Record::Offset {
            group: group.id.clone(),
            topic: topic.clone(),
            partition: *partition,
            value: None,
        })
        .collect();
    out.push(Record::Group {
        group: group.id.clone(),
        value: None,
    });
    out
}

#[cfg(test)]
mod tests;
