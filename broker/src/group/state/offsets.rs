//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and retention expiry. It
//! does not change membership.

use kafka_protocol::error::ResponseError as E;

use crate::group::records::Record;

use crate::group::records::OffsetValue;

use super::*;

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
}
