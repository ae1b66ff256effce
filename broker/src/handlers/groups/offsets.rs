//! OffsetCommit, OffsetFetch and OffsetDelete: partitions unknown to the cluster are
//! answered here, the rest go to the group's coordinator actor. No offset state is kept here.

use kafka_protocol::error::ResponseError as E;
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
use tokio::sync::oneshot;

use super::{answer, code, coordinator, s};
use crate::context::SharedBroker;
use crate::group::coordinator::{self as coord, FetchedOffsets};
use crate::group::records::OffsetValue;
use crate::group::state::CommitRequest;
use crate::handlers::str_bytes;

/// Whether `topic` has partition `partition` in the cluster metadata.
fn partition_exists(broker: &SharedBroker, topic: &str, partition: i32) -> bool {
    partition >= 0
        && broker
            .snapshot()
            .topics
            .get(topic)
            .is_some_and(|t| (partition as usize) < t.partitions.len())
}

/// A partition named in an OffsetCommit or OffsetDelete, in request order, with its error if
/// it is answered without the coordinator (it does not exist).
struct PartitionAnswer {
    topic: TopicName,
    partition: i32,
    error: Option<E>,
}

/// Splits the partitions of a request: those that exist are passed to `keep` (for the
/// coordinator), the others are answered UNKNOWN_TOPIC_OR_PARTITION.
fn check_partitions<'a, P: 'a>(
    broker: &SharedBroker,
    topics: impl Iterator<Item = (&'a TopicName, &'a [P])>,
    index: impl Fn(&P) -> i32,
    mut keep: impl FnMut(&str, &P),
) -> Vec<PartitionAnswer> {
    let mut answers = Vec::new();
    for (topic, partitions) in topics {
        let name = s(&topic.0);
        for p in partitions {
            let partition = index(p);
            let exists = partition_exists(broker, &name, partition);
            if exists {
                keep(&name, p);
            }
            answers.push(PartitionAnswer {
                topic: topic.clone(),
                partition,
                error: (!exists).then_some(E::UnknownTopicOrPartition),
            });
        }
    }
    answers
}

/// Completes `answers` with the coordinator's `errors` (in order, for those it was asked
/// about) and groups consecutive partitions of a topic: `make(topic, [(partition, error)])`.
fn by_topic_answers<T>(
    answers: Vec<PartitionAnswer>,
    errors: Vec<i16>,
    make: impl Fn(TopicName, Vec<(i32, i16)>) -> T,
) -> Vec<T> {
    let mut errors = errors.into_iter();
    let mut grouped: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
    for answer in answers {
        let error = answer
            .error
            .map_or_else(|| errors.next().unwrap_or(0), code);
        match grouped.last_mut() {
            Some((t, ps)) if *t == answer.topic => ps.push((answer.partition, error)),
            _ => grouped.push((answer.topic, vec![(answer.partition, error)])),
        }
    }
    grouped.into_iter().map(|(t, ps)| make(t, ps)).collect()
}

/// The partitions OffsetFetch asks about (None: all of the group's).
fn asked_partitions<T>(
    topics: Option<&Vec<T>>,
    parts: impl Fn(&T) -> (&TopicName, &[i32]),
) -> Option<Vec<(String, i32)>> {
    topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                let (name, indexes) = parts(t);
                let name = s(&name.0);
                indexes.iter().map(move |p| (name.clone(), *p))
            })
            .collect()
    })
}

pub async fn offset_commit(
    broker: &SharedBroker,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = s(&request.group_id.0);
    let mut offsets = Vec::new();
    let answers = check_partitions(
        broker,
        request
            .topics
            .iter()
            .map(|t| (&t.name, t.partitions.as_slice())),
        |p| p.partition_index,
        |name, p| {
            offsets.push((
                name.to_string(),
                p.partition_index,
                p.committed_offset,
                if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                p.committed_metadata.as_ref().map(s),
            ))
        },
    );
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
            Err(e) => vec![e.code(); n],
        }
    };
    let topics = by_topic_answers(answers, errors, |name, partitions| {
        OffsetCommitResponseTopic::default()
            .with_name(name)
            .with_partitions(
                partitions
                    .into_iter()
                    .map(|(index, error)| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(error)
                    })
                    .collect(),
            )
    });
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets as OffsetFetch asks.
struct GroupOffsets {
    /// 0 or the group-level error code (then `offsets` holds the asked partitions, unknown).
    error: i16,
    offsets: FetchedOffsets,
}

/// Asks the group's coordinator for its committed offsets.
async fn fetch_group(
    broker: &SharedBroker,
    group_id: &str,
    partitions: Option<Vec<(String, i32)>>,
) -> GroupOffsets {
    let result = async {
        let addr = coordinator(broker, group_id).map_err(code)?;
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::FetchOffsets {
            group_id: group_id.to_string(),
            partitions: partitions.clone(),
            reply,
        });
        answer(rx).await.map_err(code)?
    }
    .await;
    match result {
        Ok(offsets) => GroupOffsets { error: 0, offsets },
        Err(error) => GroupOffsets {
            error,
            offsets: partitions
                .unwrap_or_default()
                .into_iter()
                .map(|(t, p)| (t, p, None))
                .collect(),
        },
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
            let partitions =
                asked_partitions(g.topics.as_ref(), |t| (&t.name, &t.partition_indexes));
            let GroupOffsets { error, offsets } = fetch_group(broker, &group_id, partitions).await;
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
    let partitions = asked_partitions(request.topics.as_ref(), |t| (&t.name, &t.partition_indexes));
    let GroupOffsets { error, offsets } = fetch_group(broker, &group_id, partitions).await;
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
    let mut partitions = Vec::new();
    let answers = check_partitions(
        broker,
        request
            .topics
            .iter()
            .map(|t| (&t.name, t.partitions.as_slice())),
        |p| p.partition_index,
        |name, p| partitions.push((name.to_string(), p.partition_index)),
    );
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
    let (error, errors) = result.unwrap_or_else(|e| (e.code(), Vec::new()));
    if error != 0 {
        return OffsetDeleteResponse::default().with_error_code(error);
    }
    let topics = by_topic_answers(answers, errors, |name, partitions| {
        OffsetDeleteResponseTopic::default()
            .with_name(name)
            .with_partitions(
                partitions
                    .into_iter()
                    .map(|(index, error)| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(error)
                    })
                    .collect(),
            )
    });
    OffsetDeleteResponse::default().with_topics(topics)
}
