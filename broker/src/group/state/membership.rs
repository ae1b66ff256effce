//! SyncGroup, Heartbeat and LeaveGroup of members of the current generation. Starting and
//! completing rebalances is [`super::rebalance`]'s; this module only asks for one.

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::*;

impl Groups {
    // ----- SyncGroup -----

    pub fn sync(&mut self, now: i64, req: SyncRequest, callback: SyncCallback) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            callback(SyncResult::error(E::UnknownMemberId));
            return;
        };
        if group.state == GroupState::Dead {
            callback(SyncResult::error(E::CoordinatorNotAvailable));
            return;
        }
        if let Some(error) = group.validate_member(&req.member_id, req.instance_id.as_deref()) {
            callback(SyncResult::error(error));
            return;
        }
        if req.generation != group.generation {
            callback(SyncResult::error(E::IllegalGeneration));
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
            callback(SyncResult::error(E::InconsistentGroupProtocol));
            return;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => callback(SyncResult::error(E::UnknownMemberId)),
            GroupState::PreparingRebalance => callback(SyncResult::error(E::RebalanceInProgress)),
            GroupState::Stable => {
                group.pending_sync.remove(&req.member_id);
                let assignment = group
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                callback(SyncResult {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                });
                group.beat(&req.member_id, now);
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    if let Some(old) = m.awaiting_sync.replace(callback) {
                        old(SyncResult::error(E::RebalanceInProgress));
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
                                    error: None,
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
    ) -> Outcome {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(E::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return Err(E::CoordinatorNotAvailable);
        }
        if let Some(error) = group.validate_member(member_id, instance_id) {
            return Err(error);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => Err(E::UnknownMemberId),
            GroupState::CompletingRebalance => {
                group.beat(member_id, now);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                group.beat(member_id, now);
                Err(E::RebalanceInProgress)
            }
            GroupState::Stable => {
                if generation != group.generation {
                    Err(E::IllegalGeneration)
                } else {
                    group.beat(member_id, now);
                    Ok(())
                }
            }
        }
    }

    // ----- LeaveGroup -----

    /// Removes members (an empty member id with an instance id removes that static member).
    /// Answers one outcome per member, or the group's error.
    pub fn leave(&mut self, now: i64, group_id: &str, members: &[LeavingMember]) -> GroupOutcomes {
        let Some(group) = self.groups.get(group_id) else {
            return Ok(vec![Err(E::UnknownMemberId); members.len()]);
        };
        if group.state == GroupState::Dead {
            return Err(E::CoordinatorNotAvailable);
        }
        let outcomes = members
            .iter()
            .map(|m| self.leave_one(now, group_id, m))
            .collect();
        Ok(outcomes)
    }

    fn leave_one(&mut self, now: i64, group_id: &str, member: &LeavingMember) -> Outcome {
        let LeavingMember {
            member_id,
            instance_id,
        } = member;
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(E::UnknownMemberId);
        };
        if member_id.is_empty() {
            let current = instance_id
                .as_ref()
                .and_then(|i| group.static_members.get(i).cloned())
                .ok_or(E::UnknownMemberId)?;
            self.remove_member_and_update(group_id, &current, now);
        } else if group.pending_members.contains_key(member_id) {
            group.remove_member(member_id);
            self.try_complete_join(group_id, now);
        } else if let Some(error) = group.validate_member(member_id, instance_id.as_deref()) {
            return Err(error);
        } else {
            tracing::info!(group = %group_id, member = %member_id, "member leaves the group");
            self.remove_member_and_update(group_id, member_id, now);
        }
        Ok(())
    }

    pub(super) fn remove_member_and_update(&mut self, group_id: &str, member_id: &str, now: i64) {
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
}
