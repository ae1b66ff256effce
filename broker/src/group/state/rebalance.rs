//! Rebalances: preparing one, completing the join phase (`onCompleteJoin`) and the timers
//! that drive them ([`Groups::tick`]: session, join and sync deadlines).

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::*;

impl Groups {
    pub(super) fn maybe_prepare_rebalance(&mut self, group_id: &str, now: i64) {
        if self.groups.get(group_id).is_some_and(|g| g.can_rebalance()) {
            self.prepare_rebalance(group_id, now);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, group_id: &str, now: i64) {
        let delay = self.config.initial_rebalance_delay_ms.max(0) as i64;
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state == GroupState::CompletingRebalance {
            // Members waiting in SyncGroup must rejoin.
            for m in group.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(cb) = m.awaiting_sync.take() {
                    cb(SyncResult::error(E::RebalanceInProgress));
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

    pub(super) fn try_complete_join(&mut self, group_id: &str, now: i64) {
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
    pub(super) fn complete_join(&mut self, group_id: &str, now: i64) {
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

    // ----- timers -----

    /// Runs every deadline that has passed: pending and session expiry, the end of the join
    /// phase (initial delay, rebalance timeout), the sync timeout.
    pub fn tick(&mut self, now: i64) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.tick_group(&id, now);
        }
    }

    pub(super) fn tick_group(&mut self, id: &str, now: i64) {
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
}
