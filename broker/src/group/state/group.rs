//! One group and its members: the per-group bookkeeping the rules of the other modules rely
//! on (membership, protocol selection, subscriptions, summaries). It knows nothing of
//! writes or of the other groups.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::*;
use crate::group::records::{GroupValue, MemberValue, OffsetValue};

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
    pub(super) awaiting_join: Option<JoinCallback>,
    pub(super) awaiting_sync: Option<SyncCallback>,
    pub(super) is_new: bool,
    pub(super) heartbeat_deadline: i64,
    /// Join order: the first member to join leads.
    pub(super) seq: u64,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub(super) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub(super) fn awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    /// A member whose deadline passed has failed unless it is waiting in a rebalance
    /// (bounded by the rebalance timeout instead); new members always expire.
    pub(super) fn expired(&self, now: i64) -> bool {
        if now < self.heartbeat_deadline {
            return false;
        }
        self.is_new || !(self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    pub(super) fn value(&self, assignment: Option<&Bytes>) -> MemberValue {
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
pub(super) struct InitialDelay {
    pub(super) delay_ms: i64,
    pub(super) remaining_ms: i64,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub state_timestamp: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) static_members: HashMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with when they stop being expected.
    pub(super) pending_members: HashMap<String, i64>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub(super) pending_sync: HashSet<String>,
    pub(super) sync_deadline: Option<i64>,
    pub(super) join_deadline: Option<i64>,
    pub(super) initial_delay: Option<InitialDelay>,
    pub(super) new_member_added: bool,
    pub(super) subscribed_topics: Option<HashSet<String>>,
    /// Committed offsets whose records are confirmed: what OffsetFetch sees.
    pub offsets: HashMap<TopicPartition, OffsetValue>,
    /// Commits appended but not yet confirmed, oldest first per partition; each moves to
    /// `offsets` when its record is confirmed. A snapshot records them (it covers their
    /// records), OffsetFetch does not see them.
    pub(super) pending_offsets: HashMap<TopicPartition, VecDeque<OffsetValue>>,
    /// The group metadata as last written to the stream (what a snapshot records).
    pub(super) persisted: Option<GroupValue>,
    pub(super) next_seq: u64,
}

impl Group {
    /// Moves the oldest pending commit of `key` to the committed offsets (its record is
    /// confirmed). Nothing when none is pending: an OffsetDelete or expiry cleared it.
    pub(super) fn confirm_offset(&mut self, key: &TopicPartition) {
        let Some(queue) = self.pending_offsets.get_mut(key) else {
            return;
        };
        if let Some(value) = queue.pop_front() {
            self.offsets.insert(key.clone(), value);
        }
        if queue.is_empty() {
            self.pending_offsets.remove(key);
        }
    }

    /// Every partition with a committed or pending offset.
    pub(super) fn offset_keys(&self) -> HashSet<&TopicPartition> {
        self.offsets
            .keys()
            .chain(self.pending_offsets.keys())
            .collect()
    }

    /// The offset a replay of everything written so far would end with, per partition: the
    /// newest pending commit, else the committed one.
    pub(super) fn written_offsets(&self) -> Vec<(&TopicPartition, &OffsetValue)> {
        let mut out: Vec<_> = self
            .offset_keys()
            .into_iter()
            .filter_map(|key| {
                let newest = self.pending_offsets.get(key).and_then(|q| q.back());
                newest.or_else(|| self.offsets.get(key)).map(|v| (key, v))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    pub(super) fn new(id: &str, now: i64) -> Group {
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
            pending_offsets: HashMap::new(),
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

    pub(super) fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp = now;
    }

    pub(super) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    pub(super) fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    pub(super) fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as i64)
            .max()
            .unwrap_or(0)
    }

    pub(super) fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join())
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty offer; otherwise the
    /// type must match and one offered protocol must be supported by every member.
    pub(super) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
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
    pub(super) fn select_protocol(&self) -> Option<String> {
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

    pub(super) fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
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

    pub(super) fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_some_and(|t| t.contains(topic))
    }

    pub(super) fn add_member(&mut self, mut member: Member, callback: Option<JoinCallback>) {
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
    pub(super) fn remove_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.remove(member_id) {
            if let Some(instance) = &member.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(cb) = member.awaiting_join.take() {
                cb(JoinResult::error("", E::UnknownMemberId));
            }
            if let Some(cb) = member.awaiting_sync.take() {
                cb(SyncResult::error(E::UnknownMemberId));
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
    pub(super) fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<E> {
        if let Some(instance) = instance_id {
            return match self.static_members.get(instance) {
                Some(current) if current != member_id => Some(E::FencedInstanceId),
                Some(_) => None,
                None => Some(E::UnknownMemberId),
            };
        }
        if !self.members.contains_key(member_id) {
            return Some(E::UnknownMemberId);
        }
        None
    }

    pub(super) fn beat(&mut self, member_id: &str, now: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = now + m.session_timeout_ms.max(0) as i64;
        }
    }

    pub(super) fn current_member_metadata(&self) -> Vec<JoinedMember> {
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

    pub(super) fn join_result(
        &self,
        member_id: &str,
        with_members: bool,
        leader: Option<String>,
    ) -> JoinResult {
        JoinResult {
            error: None,
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
    pub(super) fn value(&self, assignment: Option<&HashMap<String, Bytes>>) -> GroupValue {
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

pub(super) fn new_member_id(prefix: &str) -> String {
    let id = uuid::Uuid::from_u128(rand::random::<u128>());
    format!("{prefix}-{id}")
}

/// Largest group record a coordinator writes (the group and all its members): one stream
/// append, less room for the encoding around the fields counted by [`stored_size`].
pub const MAX_GROUP_RECORD_BYTES: usize = protocol::range_rpc::MAX_APPEND_BYTES - (1 << 20);

/// About the bytes one member takes in its group's record: its ids, its largest protocol
/// metadata (the record keeps one) and its assignment, plus fixed fields.
fn stored_size(
    member_id: usize,
    instance_id: Option<&String>,
    client_id: &str,
    client_host: &str,
    protocols: &[(String, Bytes)],
    assignment: usize,
) -> usize {
    let metadata = protocols.iter().map(|(_, m)| m.len()).max().unwrap_or(0);
    member_id
        + instance_id.map_or(0, |i| i.len())
        + client_id.len()
        + client_host.len()
        + metadata
        + assignment
        + 64
}

impl Member {
    fn stored_size(&self) -> usize {
        stored_size(
            self.id.len(),
            self.instance_id.as_ref(),
            &self.client_id,
            &self.client_host,
            &self.protocols,
            self.assignment.len(),
        )
    }
}

impl Groups {
    /// Whether the group's record still fits one append once `req` joined (a new member's
    /// id is its client id or instance id and a UUID). A request that would not fit is
    /// refused before anything changes, so a group can always be written.
    pub fn join_fits(&self, req: &JoinRequest) -> bool {
        let prefix = req
            .instance_id
            .as_ref()
            .map_or(req.client_id.len(), |i| i.len());
        let id = if req.member_id.is_empty() {
            prefix + 37
        } else {
            req.member_id.len()
        };
        let joining = stored_size(
            id,
            req.instance_id.as_ref(),
            &req.client_id,
            &req.client_host,
            &req.protocols,
            0,
        );
        let others: usize = self.group(&req.group_id).map_or(0, |g| {
            g.members
                .values()
                .filter(|m| m.id != req.member_id)
                .map(Member::stored_size)
                .sum()
        });
        others + joining <= MAX_GROUP_RECORD_BYTES
    }

    /// Whether the group's record still fits one append with the leader's `assignments`.
    pub fn sync_fits(&self, req: &SyncRequest) -> bool {
        let Some(group) = self.group(&req.group_id) else {
            return true;
        };
        let assigned: usize = req.assignments.iter().map(|(_, a)| a.len()).sum();
        let members: usize = group
            .members
            .values()
            .map(|m| m.stored_size() - m.assignment.len())
            .sum();
        members + assigned <= MAX_GROUP_RECORD_BYTES
    }
}
