//! JoinGroup: new, known and static members joining a group (Kafka's `doJoinGroup`).
//! Completing the join phase lives in [`super::rebalance`].

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::*;

impl Groups {
    pub fn join(&mut self, now: i64, req: JoinRequest, callback: JoinCallback) {
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            callback(JoinResult::error(&req.member_id, E::InvalidSessionTimeout));
            return;
        }
        let unknown = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            if !unknown {
                callback(JoinResult::error(&req.member_id, E::UnknownMemberId));
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
            callback(JoinResult::error("", E::CoordinatorNotAvailable));
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            callback(JoinResult::error("", E::InconsistentGroupProtocol));
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
                callback(JoinResult::error(&new_id, E::MemberIdRequired));
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
            callback(JoinResult::error(&member_id, E::CoordinatorNotAvailable));
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            callback(JoinResult::error(&member_id, E::InconsistentGroupProtocol));
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
                callback(JoinResult::error(&member_id, E::UnknownMemberId));
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
                old(JoinResult::error(&req.member_id, E::RebalanceInProgress));
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
            cb(JoinResult::error(old_id, E::FencedInstanceId));
        }
        if let Some(cb) = member.awaiting_sync.take() {
            cb(SyncResult::error(E::FencedInstanceId));
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
                                callback(JoinResult::error(&new_id, E::UnknownMemberId));
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
                callback(JoinResult::error(new_id, E::UnknownMemberId));
            }
        }
    }
}
