//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and retention expiry. It
//! does not change membership.

use kafka_protocol::error::ResponseError as E;

use super::*;
use crate::group::records::{OffsetValue, Record};

impl Groups {
    // ----- OffsetCommit / OffsetFetch / OffsetDelete -----

    pub fn commit(&mut self, now: i64, req: CommitRequest, callback: CommitCallback) {
        let n = req.offsets.len();
        if !self.groups.contains_key(&req.group_id) {
            if req.generation < 0 {
                // Not using group management: the group exists only to hold offsets.
                self.groups
                    .insert(req.group_id.clone(), Group::new(&req.group_id, now));
            } else {
                callback(vec![Err(E::IllegalGeneration); n]);
                return;
            }
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            callback(vec![Err(E::UnknownMemberId); n]);
            return;
        };
        let error = if group.state == GroupState::Dead {
            Some(E::CoordinatorNotAvailable)
        } else if req.generation >= 0 || !req.member_id.is_empty() || req.instance_id.is_some() {
            group
                .validate_member(&req.member_id, req.instance_id.as_deref())
                .or_else(|| (req.generation != group.generation).then_some(E::IllegalGeneration))
        } else if group.state != GroupState::Empty {
            // Only members may commit to a group that has members.
            Some(E::UnknownMemberId)
        } else {
            None
        };
        if let Some(error) = error {
            callback(vec![Err(error); n]);
            return;
        }
        match group.state {
            GroupState::CompletingRebalance => {
                callback(vec![Err(E::RebalanceInProgress); n]);
                return;
            }
            GroupState::Stable | GroupState::PreparingRebalance => group.beat(&req.member_id, now),
            _ => {}
        }
        let mut outcomes = Vec::with_capacity(n);
        let mut records = Vec::new();
        let mut committed = Vec::new();
        for commit in req.offsets {
            let metadata = commit.metadata.unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                outcomes.push(Err(E::OffsetMetadataTooLarge));
                continue;
            }
            let value = OffsetValue {
                offset: commit.offset,
                leader_epoch: commit.leader_epoch,
                metadata,
                commit_timestamp: now,
                expire_timestamp: (req.retention_ms >= 0).then(|| now + req.retention_ms),
            };
            let key = commit.partition;
            records.push(offset_record(&req.group_id, &key, Some(value.clone())));
            // Visible to OffsetFetch only once its record is confirmed.
            group
                .pending_offsets
                .entry(key.clone())
                .or_default()
                .push_back(value);
            committed.push(key);
            outcomes.push(Ok(()));
        }
        let group_id = req.group_id;
        let done = move |groups: &mut Groups, _now: i64| {
            if let Some(group) = groups.groups.get_mut(&group_id) {
                for key in &committed {
                    group.confirm_offset(key);
                }
            }
            callback(outcomes)
        };
        self.write(records, Some(Box::new(done)));
    }

    /// Committed offsets: for each asked partition its value (None: no commit); all of the
    /// group's, by topic and partition, when `partitions` is None.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Vec<FetchedOffset> {
        let group = self
            .groups
            .get(group_id)
            .filter(|g| g.state != GroupState::Dead);
        let fetched = |key: &TopicPartition, value: Option<&OffsetValue>| FetchedOffset {
            topic: key.topic.clone(),
            partition: key.partition,
            value: value.cloned(),
        };
        match partitions {
            Some(partitions) => partitions
                .iter()
                .map(|key| fetched(key, group.and_then(|g| g.offsets.get(key))))
                .collect(),
            None => {
                let mut all: Vec<_> = group
                    .map(|g| g.offsets.iter().collect())
                    .unwrap_or_default();
                all.sort_by(|a, b| a.0.cmp(b.0));
                all.into_iter().map(|(k, v)| fetched(k, Some(v))).collect()
            }
        }
    }

    /// OffsetDelete: removes committed offsets of topics the group does not consume.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
        callback: OffsetDeleteCallback,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            callback(Err(E::GroupIdNotFound));
            return;
        };
        let consumer = group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
        let outcomes: Vec<Outcome> = match group.state {
            GroupState::Dead => {
                callback(Err(E::GroupIdNotFound));
                return;
            }
            GroupState::Empty => vec![Ok(()); partitions.len()],
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable
                if consumer =>
            {
                partitions
                    .iter()
                    .map(|p| match group.is_subscribed_to(&p.topic) {
                        true => Err(E::GroupSubscribedToTopic),
                        false => Ok(()),
                    })
                    .collect()
            }
            _ => {
                callback(Err(E::NonEmptyGroup));
                return;
            }
        };
        let mut records = Vec::new();
        for (key, outcome) in partitions.iter().zip(&outcomes) {
            let pending = group.pending_offsets.remove(key).is_some();
            if outcome.is_ok() && (group.offsets.remove(key).is_some() || pending) {
                records.push(offset_record(group_id, key, None));
            }
        }
        self.write(records, Some(Box::new(move |_, _| callback(Ok(outcomes)))));
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
                let expired: Vec<TopicPartition> = group
                    .offsets
                    .iter()
                    .filter(|(key, v)| {
                        // A newer commit on its way means the offset is not idle.
                        let in_use = group.pending_offsets.contains_key(*key)
                            || (group.state == GroupState::Stable
                                && subscribed.contains(&key.topic));
                        !in_use
                            && match v.expire_timestamp {
                                Some(t) => now >= t,
                                None => now - state_base.unwrap_or(v.commit_timestamp) >= retention,
                            }
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in expired {
                    group.offsets.remove(&key);
                    records.push(offset_record(&group.id, &key, None));
                }
            }
            if group.state == GroupState::Empty
                && group.offsets.is_empty()
                && group.pending_offsets.is_empty()
            {
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
}
