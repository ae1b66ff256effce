//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.
//!
//! These handlers only translate: they validate what Kafka validates before a coordinator
//! sees a request (group id, unknown topics), route each group to the coordinator actor of
//! its `__consumer_offsets` partition on this broker (NOT_COORDINATOR when this broker does
//! not own it, or the coordinator stopped while the request waited), and build the response
//! for the request's version (setting only fields that version has). Group state lives in
//! [`crate::group`]. FindCoordinator creates `__consumer_offsets` when it does not exist yet.

use std::time::Duration;

use actix::Addr;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use protocol::pd::CreateTopic;
use protocol::ErrorCode;
use tokio::sync::oneshot;

use super::admin::wait_for_leaders;
use super::metadata::{host_port, live_leader};
use super::str_bytes;
use crate::context::SharedBroker;
use crate::group::coordinator::{self as coord, FetchedOffsets, GroupCoordinator};
use crate::group::records::OffsetValue;
use crate::group::state::{CommitRequest, JoinRequest, SyncRequest};
use crate::group::{offsets_partition, OFFSETS_TOPIC};

/// Longest FindCoordinator waits for a new `__consumer_offsets` to get leaders.
const CREATE_WAIT: Duration = Duration::from_secs(5);
/// What a group's authorized operations are when a client asks: READ, DELETE, DESCRIBE.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

fn s(v: &StrBytes) -> String {
    v.to_string()
}

/// The coordinator actor of `group_id` on this broker, or the error to answer.
fn coordinator(broker: &SharedBroker, group_id: &str) -> Result<Addr<GroupCoordinator>, i16> {
    let snapshot = broker.snapshot();
    let partition = offsets_partition(&snapshot, group_id).ok_or(E::NotCoordinator.code())?;
    broker
        .coordinators
        .borrow()
        .get(&partition)
        .filter(|h| h.addr.connected())
        .map(|h| h.addr.clone())
        .ok_or(E::NotCoordinator.code())
}

/// Waits for a coordinator's answer; a dropped answer means it stopped serving the group.
async fn answer<T>(rx: oneshot::Receiver<T>) -> Result<T, i16> {
    rx.await.map_err(|_| E::NotCoordinator.code())
}

// ----- FindCoordinator -----

/// Creates `__consumer_offsets` (internal, compacted) if it does not exist yet; any broker
/// may race to do it, AlreadyExists is fine.
pub(super) async fn ensure_offsets_topic(broker: &SharedBroker) {
    if broker.snapshot().topics.contains_key(OFFSETS_TOPIC) {
        return;
    }
    let created = broker
        .pd
        .call(CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: broker.config.groups.offsets_topic_partitions.max(1),
            configs: vec![("cleanup.policy".to_string(), "compact".to_string())],
            replica: broker.config.default_replication,
            ack_count: broker.config.default_ack,
            internal: true,
            validate_only: false,
        })
        .await;
    match created {
        Ok(_) => tracing::info!(
            partitions = broker.config.groups.offsets_topic_partitions,
            "created {OFFSETS_TOPIC}"
        ),
        Err(e) if e.code == ErrorCode::AlreadyExists => {}
        Err(e) => {
            tracing::warn!("creating {OFFSETS_TOPIC} failed: {e}");
            return;
        }
    }
    wait_for_leaders(broker, OFFSETS_TOPIC, CREATE_WAIT).await;
}

/// `(error, node id, host, port)` of the coordinator of `key`.
fn locate(broker: &SharedBroker, key: &str) -> (i16, i32, String, i32) {
    let snapshot = broker.snapshot();
    let leader = snapshot.topics.get(OFFSETS_TOPIC).and_then(|topic| {
        let index = offsets_partition(&snapshot, key)?;
        topic.partitions.iter().find(|p| p.index == index)
    });
    let Some(partition) = leader else {
        return (E::CoordinatorNotAvailable.code(), -1, String::new(), -1);
    };
    let id = live_leader(&snapshot, partition.leader);
    match snapshot.broker(id.max(0) as u64).filter(|_| id >= 0) {
        Some(node) => {
            let (host, port) = host_port(&node.addr);
            (0, id, host, port)
        }
        None => (E::CoordinatorNotAvailable.code(), -1, String::new(), -1),
    }
}

pub async fn find_coordinator(
    broker: &SharedBroker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(s).collect()
    } else {
        vec![s(&request.key)]
    };
    let located: Vec<(i16, i32, String, i32, Option<String>)> = if request.key_type != 0 {
        let why = "only group coordinators exist here (no transactions)".to_string();
        keys.iter()
            .map(|_| {
                (
                    E::InvalidRequest.code(),
                    -1,
                    String::new(),
                    -1,
                    Some(why.clone()),
                )
            })
            .collect()
    } else {
        ensure_offsets_topic(broker).await;
        keys.iter()
            .map(|k| {
                let (e, id, host, port) = locate(broker, k);
                (e, id, host, port, None)
            })
            .collect()
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .iter()
            .zip(located)
            .map(|(key, (error, id, host, port, message))| {
                Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(&host))
                    .with_port(port)
                    .with_error_code(error)
                    .with_error_message(message.map(|m| str_bytes(&m)))
            })
            .collect();
    } else if let Some((error, id, host, port, message)) = located.into_iter().next() {
        response = response
            .with_error_code(error)
            .with_node_id(BrokerId(id))
            .with_host(str_bytes(&host))
            .with_port(port);
        if version >= 1 {
            response = response.with_error_message(message.map(|m| str_bytes(&m)));
        }
    }
    response
}

// ----- JoinGroup / SyncGroup / Heartbeat / LeaveGroup -----

pub async fn join_group(
    broker: &SharedBroker,
    request: JoinGroupRequest,
    version: i16,
    header: &RequestHeader,
) -> JoinGroupResponse {
    let client_id = header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let group_id = s(&request.group_id.0);
    let member_id = s(&request.member_id);
    let result = async {
        if group_id.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        let addr = coordinator(broker, &group_id)?;
        let instance_id = request.group_instance_id.as_ref().map(s);
        let join = JoinRequest {
            group_id: group_id.clone(),
            member_id: member_id.clone(),
            require_known_member_id: version >= 4 && instance_id.is_none(),
            instance_id,
            client_id,
            client_host: String::new(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                request.rebalance_timeout_ms
            } else {
                request.session_timeout_ms
            },
            protocol_type: s(&request.protocol_type),
            protocols: request
                .protocols
                .iter()
                .map(|p| (s(&p.name), p.metadata.clone()))
                .collect(),
            supports_skip_assignment: version >= 9,
        };
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::Join {
            request: join,
            reply,
        });
        answer(rx).await
    }
    .await;
    let result = match result {
        Ok(r) => r,
        Err(error) => crate::group::state::JoinResult::error(&member_id, error),
    };
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(
            result
                .members
                .iter()
                .map(|m| {
                    let mut member = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_metadata(m.metadata.clone());
                    if version >= 5 {
                        member =
                            member.with_group_instance_id(m.instance_id.as_deref().map(str_bytes));
                    }
                    member
                })
                .collect(),
        );
    if version >= 7 {
        response = response
            .with_protocol_type(result.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(result.protocol_name.as_deref().map(str_bytes));
    } else {
        response = response.with_protocol_name(Some(str_bytes(
            result.protocol_name.as_deref().unwrap_or(""),
        )));
    }
    if version >= 9 {
        response = response.with_skip_assignment(result.skip_assignment);
    }
    response
}

pub async fn sync_group(
    broker: &SharedBroker,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = s(&request.group_id.0);
    let result = async {
        if group_id.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        let addr = coordinator(broker, &group_id)?;
        let sync = SyncRequest {
            group_id: group_id.clone(),
            generation: request.generation_id,
            member_id: s(&request.member_id),
            instance_id: request.group_instance_id.as_ref().map(s),
            protocol_type: request.protocol_type.as_ref().map(s),
            protocol_name: request.protocol_name.as_ref().map(s),
            assignments: request
                .assignments
                .iter()
                .map(|a| (s(&a.member_id), a.assignment.clone()))
                .collect(),
        };
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::Sync {
            request: sync,
            reply,
        });
        answer(rx).await
    }
    .await;
    let result = result.unwrap_or_else(crate::group::state::SyncResult::error);
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_assignment(result.assignment);
    if version >= 5 {
        response = response
            .with_protocol_type(result.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(result.protocol_name.as_deref().map(str_bytes));
    }
    response
}

pub async fn heartbeat(
    broker: &SharedBroker,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    let group_id = s(&request.group_id.0);
    let error = async {
        if group_id.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        let addr = coordinator(broker, &group_id)?;
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::Heartbeat {
            group_id: group_id.clone(),
            member_id: s(&request.member_id),
            instance_id: request.group_instance_id.as_ref().map(s),
            generation: request.generation_id,
            reply,
        });
        answer(rx).await
    }
    .await;
    HeartbeatResponse::default().with_error_code(error.unwrap_or_else(|e| e))
}

pub async fn leave_group(
    broker: &SharedBroker,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = s(&request.group_id.0);
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (s(&m.member_id), m.group_instance_id.as_ref().map(s)))
            .collect()
    } else {
        vec![(s(&request.member_id), None)]
    };
    let result = async {
        if group_id.is_empty() {
            return Err(E::InvalidGroupId.code());
        }
        let addr = coordinator(broker, &group_id)?;
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::Leave {
            group_id: group_id.clone(),
            members: members.clone(),
            reply,
        });
        answer(rx).await
    }
    .await;
    let (error, member_errors) = result.unwrap_or_else(|e| (e, Vec::new()));
    if version >= 3 {
        LeaveGroupResponse::default()
            .with_error_code(error)
            .with_members(if error != 0 {
                Vec::new()
            } else {
                members
                    .iter()
                    .zip(member_errors)
                    .map(|((member_id, instance_id), e)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(member_id))
                            .with_group_instance_id(instance_id.as_deref().map(str_bytes))
                            .with_error_code(e)
                    })
                    .collect()
            })
    } else {
        // v0-2 have one member: its error is the answer.
        let error = if error != 0 {
            error
        } else {
            member_errors.first().copied().unwrap_or(0)
        };
        LeaveGroupResponse::default().with_error_code(error)
    }
}

// ----- OffsetCommit / OffsetFetch / OffsetDelete -----

/// Whether `topic` has partition `partition` in the cluster metadata.
fn partition_exists(broker: &SharedBroker, topic: &str, partition: i32) -> bool {
    partition >= 0
        && broker
            .snapshot()
            .topics
            .get(topic)
            .is_some_and(|t| (partition as usize) < t.partitions.len())
}

pub async fn offset_commit(
    broker: &SharedBroker,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = s(&request.group_id.0);
    // (topic, partition, error or pending) in request order.
    let mut answers: Vec<(TopicName, i32, Option<i16>)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = s(&topic.name.0);
        for p in &topic.partitions {
            if partition_exists(broker, &name, p.partition_index) {
                answers.push((topic.name.clone(), p.partition_index, None));
                offsets.push((
                    name.clone(),
                    p.partition_index,
                    p.committed_offset,
                    if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    p.committed_metadata.as_ref().map(s),
                ));
            } else {
                answers.push((
                    topic.name.clone(),
                    p.partition_index,
                    Some(E::UnknownTopicOrPartition.code()),
                ));
            }
        }
    }
    let n = offsets.len();
    let errors: Vec<i16> = if n == 0 {
        Vec::new()
    } else {
        let result = async {
            let addr = coordinator(broker, &group_id)?;
            let (reply, rx) = oneshot::channel();
            addr.do_send(coord::Commit {
                request: CommitRequest {
                    group_id: group_id.clone(),
                    generation: request.generation_id_or_member_epoch,
                    member_id: s(&request.member_id),
                    instance_id: if version >= 7 {
                        request.group_instance_id.as_ref().map(s)
                    } else {
                        None
                    },
                    retention_ms: if (2..=4).contains(&version) {
                        request.retention_time_ms
                    } else {
                        -1
                    },
                    offsets,
                },
                reply,
            });
            answer(rx).await
        }
        .await;
        match result {
            Ok(errors) if errors.len() == n => errors,
            Ok(_) => vec![E::UnknownServerError.code(); n],
            Err(e) => vec![e; n],
        }
    };
    let mut errors = errors.into_iter();
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (name, partition, error) in answers {
        let error = error.unwrap_or_else(|| errors.next().unwrap_or(0));
        let entry = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(error);
        match topics.last_mut() {
            Some(t) if t.name == name => t.partitions.push(entry),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(vec![entry]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets as OffsetFetch asks: `(group error, offsets)`.
async fn fetch_group(
    broker: &SharedBroker,
    group_id: &str,
    partitions: Option<Vec<(String, i32)>>,
) -> (i16, FetchedOffsets) {
    let result = async {
        let addr = coordinator(broker, group_id)?;
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::FetchOffsets {
            group_id: group_id.to_string(),
            partitions: partitions.clone(),
            reply,
        });
        answer(rx).await?
    }
    .await;
    match result {
        Ok(offsets) => (0, offsets),
        Err(error) => (
            error,
            partitions
                .unwrap_or_default()
                .into_iter()
                .map(|(t, p)| (t, p, None))
                .collect(),
        ),
    }
}

/// One topic's fetched offsets: `(topic, [(partition, committed)])`.
type TopicOffsets = (String, Vec<(i32, Option<OffsetValue>)>);

/// Groups fetched offsets by topic, in order of first appearance.
fn by_topic(offsets: FetchedOffsets) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (topic, partition, value) in offsets {
        match out.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, ps)) => ps.push((partition, value)),
            None => out.push((topic, vec![(partition, value)])),
        }
    }
    out
}

pub async fn offset_fetch(
    broker: &SharedBroker,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::new();
        for g in &request.groups {
            let group_id = s(&g.group_id.0);
            let partitions = g.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .flat_map(|t| {
                        let name = s(&t.name.0);
                        t.partition_indexes.iter().map(move |p| (name.clone(), *p))
                    })
                    .collect::<Vec<_>>()
            });
            let (error, offsets) = fetch_group(broker, &group_id, partitions).await;
            let topics = if error != 0 {
                Vec::new()
            } else {
                by_topic(offsets)
                    .into_iter()
                    .map(|(topic, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&topic)))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, v)| {
                                        let v = v.unwrap_or(OffsetValue {
                                            offset: -1,
                                            leader_epoch: -1,
                                            metadata: String::new(),
                                            commit_timestamp: -1,
                                            expire_timestamp: None,
                                        });
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(v.offset)
                                            .with_committed_leader_epoch(v.leader_epoch)
                                            .with_metadata(Some(str_bytes(&v.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect()
            };
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(error)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let group_id = s(&request.group_id.0);
    let partitions = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                let name = s(&t.name.0);
                t.partition_indexes.iter().map(move |p| (name.clone(), *p))
            })
            .collect::<Vec<_>>()
    });
    let (error, offsets) = fetch_group(broker, &group_id, partitions).await;
    // v1 has no group-level error: each partition carries it.
    let partition_error = if version < 2 { error } else { 0 };
    let topics = if error != 0 && version >= 2 {
        Vec::new()
    } else {
        by_topic(offsets)
            .into_iter()
            .map(|(topic, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(&topic)))
                    .with_partitions(
                        ps.into_iter()
                            .map(|(p, v)| {
                                let (offset, epoch, metadata) = match v {
                                    Some(v) => (v.offset, v.leader_epoch, v.metadata),
                                    None => (-1, -1, String::new()),
                                };
                                let mut entry = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_metadata(Some(str_bytes(&metadata)))
                                    .with_error_code(partition_error);
                                if version >= 5 {
                                    entry = entry.with_committed_leader_epoch(epoch);
                                }
                                entry
                            })
                            .collect(),
                    )
            })
            .collect()
    };
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response = response.with_error_code(error);
    }
    response
}

pub async fn offset_delete(
    broker: &SharedBroker,
    request: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let group_id = s(&request.group_id.0);
    let mut answers: Vec<(TopicName, i32, Option<i16>)> = Vec::new();
    let mut partitions = Vec::new();
    for topic in &request.topics {
        let name = s(&topic.name.0);
        for p in &topic.partitions {
            if partition_exists(broker, &name, p.partition_index) {
                answers.push((topic.name.clone(), p.partition_index, None));
                partitions.push((name.clone(), p.partition_index));
            } else {
                answers.push((
                    topic.name.clone(),
                    p.partition_index,
                    Some(E::UnknownTopicOrPartition.code()),
                ));
            }
        }
    }
    let result = async {
        let addr = coordinator(broker, &group_id)?;
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::DeleteOffsets {
            group_id: group_id.clone(),
            partitions: partitions.clone(),
            reply,
        });
        answer(rx).await
    }
    .await;
    let (error, errors) = result.unwrap_or_else(|e| (e, Vec::new()));
    if error != 0 {
        return OffsetDeleteResponse::default().with_error_code(error);
    }
    let mut errors = errors.into_iter();
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (name, partition, pre) in answers {
        let error = pre.unwrap_or_else(|| errors.next().unwrap_or(0));
        let entry = OffsetDeleteResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(error);
        match topics.last_mut() {
            Some(t) if t.name == name => t.partitions.push(entry),
            _ => topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(vec![entry]),
            ),
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}

// ----- DescribeGroups / ListGroups / DeleteGroups -----

pub async fn describe_groups(
    broker: &SharedBroker,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut groups = Vec::new();
    for id in &request.groups {
        let group_id = s(&id.0);
        let result = async {
            let addr = coordinator(broker, &group_id)?;
            let (reply, rx) = oneshot::channel();
            addr.do_send(coord::Describe {
                group_id: group_id.clone(),
                reply,
            });
            answer(rx).await?
        }
        .await;
        let mut described = DescribedGroup::default().with_group_id(id.clone());
        match result {
            Err(error) => described = described.with_error_code(error),
            Ok(summary) => {
                described = described
                    .with_group_state(str_bytes(summary.state.name()))
                    .with_protocol_type(str_bytes(&summary.protocol_type))
                    .with_protocol_data(str_bytes(&summary.protocol))
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|m| {
                                let mut member = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if version >= 4 {
                                    member = member.with_group_instance_id(
                                        m.instance_id.as_deref().map(str_bytes),
                                    );
                                }
                                member
                            })
                            .collect(),
                    );
                if version >= 3 && request.include_authorized_operations {
                    described = described.with_authorized_operations(GROUP_OPERATIONS);
                }
            }
        }
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn list_groups(
    broker: &SharedBroker,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let addrs: Vec<Addr<GroupCoordinator>> = broker
        .coordinators
        .borrow()
        .values()
        .map(|h| h.addr.clone())
        .collect();
    let mut error = 0;
    let mut listed = Vec::new();
    for addr in addrs {
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::List { reply });
        match rx.await {
            Ok(Ok(groups)) => listed.extend(groups),
            Ok(Err(e)) if e == E::CoordinatorLoadInProgress.code() => error = e,
            // A coordinator that stopped meanwhile: its groups are another broker's now.
            Ok(Err(_)) | Err(_) => {}
        }
    }
    let states: Vec<String> = if version >= 4 {
        request.states_filter.iter().map(s).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        request.types_filter.iter().map(s).collect()
    } else {
        Vec::new()
    };
    let classic_wanted =
        types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("classic"));
    listed.sort();
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| {
            classic_wanted
                && (states.is_empty()
                    || states.iter().any(|s| s.eq_ignore_ascii_case(state.name())))
        })
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(&protocol_type));
            if version >= 4 {
                g = g.with_group_state(str_bytes(state.name()));
            }
            if version >= 5 {
                g = g.with_group_type(str_bytes("classic"));
            }
            g
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(error)
        .with_groups(groups)
}

pub async fn delete_groups(
    broker: &SharedBroker,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in &request.groups_names {
        let group_id = s(&id.0);
        let result = async {
            let addr = coordinator(broker, &group_id)?;
            let (reply, rx) = oneshot::channel();
            addr.do_send(coord::DeleteGroups {
                group_ids: vec![group_id.clone()],
                reply,
            });
            answer(rx).await
        }
        .await;
        let error = match result {
            Ok(answers) => answers.first().map(|(_, e)| *e).unwrap_or(0),
            Err(e) => e,
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
