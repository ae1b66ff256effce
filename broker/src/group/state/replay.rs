//! Loading a partition's groups from replayed records and writing snapshots of them.
//! It never queues writes.

use crate::group::records::Record;

use super::*;

impl Groups {
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
                    self.replayed_group(&group, now)
                        .offsets
                        .insert(TopicPartition { topic, partition }, v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&TopicPartition { topic, partition });
                    }
                }
            },
            Record::Group { group, value } => match value {
                Some(v) => {
                    self.replayed_group(&group, now).persisted = Some(v);
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

    /// The group a replayed record belongs to, created (Empty) by its first record.
    fn replayed_group(&mut self, group: &str, now: i64) -> &mut Group {
        self.groups
            .entry(group.to_string())
            .or_insert_with(|| Group::new(group, now))
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
            // The snapshot covers every record appended so far, so it holds pending commits.
            out.extend(
                group
                    .written_offsets()
                    .into_iter()
                    .map(|(key, v)| offset_record(id, key, Some(v.clone()))),
            );
        }
        out
    }
}

/// The tombstones that delete a group: its metadata and every committed offset.
pub(super) fn tombstones(group: &Group) -> Vec<Record> {
    let mut keys: Vec<&TopicPartition> = group.offset_keys().into_iter().collect();
    keys.sort();
    let mut out: Vec<Record> = keys
        .into_iter()
        .map(|key| offset_record(&group.id, key, None))
        .collect();
    out.push(Record::Group {
        group: group.id.clone(),
        value: None,
    });
    out
}
