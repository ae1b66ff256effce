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

use super::{ask, code, coordinator, s};
use crate::context::SharedBroker;
use crate::group::coordinator as coord;
use crate::group::records::OffsetValue;
use crate::group::state::{CommitRequest, FetchedOffset, OffsetToCommit, Outcome, TopicPartition};
use crate::handlers::str_bytes;

/// A partition named in an OffsetCommit or OffsetDelete, in request order, with its error if
/// it is answered without the coordinator (it does not exist).
struct PartitionAnswer {
    topic: TopicName,
    partition: i32,
    error: Option<E>,
}

/// Splits the partitions of a request (`parts` gives a topic's name and partitions, `index` a
/// partition's index): every one gets an answer, in order (UNKNOWN_TOPIC_OR_PARTITION for
/// those that do not exist); those that exist are returned for the coordinator.
fn check_partitions<'a, T, P>(
    broker: &SharedBroker,
    topics: &'a [T],
    parts: impl Fn(&'a T) -> (&'a TopicName, &'a [P]),
    index: impl Fn(&P) -> i32,
) -> (Vec<PartitionAnswer>, Vec<(TopicPartition, &'a P)>) {
    let snapshot = broker.snapshot();
    let mut answers = Vec::new();
    let mut known = Vec::new();
    for (topic, partitions) in topics.iter().map(parts) {
        let name = s(&topic.0);
        for p in partitions {
            let partition = index(p);
            let exists = snapshot.has_partition(&name, partition);
            if exists {
                known.push((TopicPartition::new(name.clone(), partition), p));
            }
            answers.push(PartitionAnswer {
                topic: topic.clone(),
                partition,
                error: (!exists).then_some(E::UnknownTopicOrPartition),
            });
        }
    }
    (answers, known)
}

/// Completes `answers` with the coordinator's `outcomes` (in order, for those it was asked
/// about) and groups consecutive partitions of a topic: each partition is
/// `partition(index, error code)`, each topic `topic(name, partitions)`.
fn by_topic_answers<P, T>(
    answers: Vec<PartitionAnswer>,
    outcomes: Vec<Outcome>,
    partition: impl Fn(i32, i16) -> P,
    topic: impl Fn(TopicName, Vec<P>) -> T,
) -> Vec<T> {
    let mut outcomes = outcomes.into_iter();
    let mut grouped: Vec<(TopicName, Vec<P>)> = Vec::new();
    for answer in answers {
        let error = answer
            .error
            .or_else(|| outcomes.next().and_then(Result::err));
        let p = partition(answer.partition, code(error));
        match grouped.last_mut() {
            Some((t, ps)) if *t == answer.topic => ps.push(p),
            _ => grouped.push((answer.topic, vec![p])),
        }
    }
    grouped.into_iter().map(|(t, ps)| topic(t, ps)).collect()
}

/// The partitions OffsetFetch asks about (None: all of the group's).
fn asked_partitions<T>(
    topics: Option<&Vec<T>>,
    parts: impl Fn(&T) -> (&TopicName, &[i32]),
) -> Option<Vec<TopicPartition>> {
    topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                let (name, indexes) = parts(t);
                let name = s(&name.0);
                indexes
                    .iter()
                    .map(move |p| TopicPartition::new(name.clone(), *p))
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
    let (answers, known) = check_partitions(
        broker,
        &request.topics,
        |t| (&t.name, &t.partitions),
        |p| p.partition_index,
    );
    let offsets: Vec<_> = known
        .into_iter()
        .map(|(key, p)| {
            let leader_epoch = if version >= 6 {
                p.committed_leader_epoch
            } else {
                -1
            };
            OffsetToCommit {
                partition: key,
                offset: p.committed_offset,
                leader_epoch,
                metadata: p.committed_metadata.as_ref().map(s),
            }
        })
        .collect();
    let n = offsets.len();
    let outcomes = if n == 0 {
        Vec::new()
    } else {
        let commit = CommitRequest {
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
        };
        let coordinator = coordinator(broker, &group_id);
        let result = ask(coordinator, |reply| coord::Commit {
            request: commit,
            reply,
        })
        .await;
        match result {
            Ok(outcomes) if outcomes.len() == n => outcomes,
            Ok(_) => vec![Err(E::UnknownServerError); n],
            Err(e) => vec![Err(e); n],
        }
    };
    let topics = by_topic_answers(
        answers,
        outcomes,
        |index, error| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(error)
        },
        |name, partitions| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        },
    );
    OffsetCommitResponse::default().with_topics(topics)
}

/// Asks the group's coordinator for its committed offsets: on a group-level error, that
/// error with the asked partitions, unknown.
async fn fetch_group(
    broker: &SharedBroker,
    group_id: &str,
    partitions: Option<Vec<TopicPartition>>,
) -> (Option<E>, Vec<FetchedOffset>) {
    let coordinator = coordinator(broker, group_id);
    let result = ask(coordinator, |reply| coord::FetchOffsets {
        group_id: group_id.to_string(),
        partitions: partitions.clone(),
        reply,
    })
    .await
    .and_then(|fetched| fetched);
    match result {
        Ok(offsets) => (None, offsets),
        Err(error) => {
            let unknown = |p: TopicPartition| FetchedOffset {
                topic: p.topic,
                partition: p.partition,
                value: None,
            };
            let offsets = partitions.unwrap_or_default().into_iter().map(unknown);
            (Some(error), offsets.collect())
        }
    }
}

/// Groups fetched offsets by topic, in order of first appearance, each partition made by
/// `partition(index, committed)`.
fn by_topic<P>(
    offsets: Vec<FetchedOffset>,
    partition: impl Fn(i32, Option<OffsetValue>) -> P,
) -> Vec<(TopicName, Vec<P>)> {
    let mut out: Vec<(String, Vec<P>)> = Vec::new();
    for o in offsets {
        let p = partition(o.partition, o.value);
        match out.iter_mut().find(|(t, _)| *t == o.topic) {
            Some((_, ps)) => ps.push(p),
            None => out.push((o.topic, vec![p])),
        }
    }
    out.into_iter()
        .map(|(topic, ps)| (TopicName(str_bytes(&topic)), ps))
        .collect()
}

/// What OffsetFetch answers for a partition without a committed offset.
const NO_OFFSET: OffsetValue = OffsetValue {
    offset: -1,
    leader_epoch: -1,
    metadata: String::new(),
    commit_timestamp: -1,
    expire_timestamp: None,
};

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
            let (error, offsets) = fetch_group(broker, &group_id, partitions).await;
            let topics = if error.is_some() {
                Vec::new()
            } else {
                let partition = |index, value: Option<OffsetValue>| {
                    let v = value.unwrap_or(NO_OFFSET);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(index)
                        .with_committed_offset(v.offset)
                        .with_committed_leader_epoch(v.leader_epoch)
                        .with_metadata(Some(str_bytes(&v.metadata)))
                };
                by_topic(offsets, partition)
                    .into_iter()
                    .map(|(name, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(ps)
                    })
                    .collect()
            };
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(code(error))
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let group_id = s(&request.group_id.0);
    let partitions = asked_partitions(request.topics.as_ref(), |t| (&t.name, &t.partition_indexes));
    let (error, offsets) = fetch_group(broker, &group_id, partitions).await;
    // v1 has no group-level error: each partition carries it.
    let partition_error = if version < 2 { code(error) } else { 0 };
    let topics = if error.is_some() && version >= 2 {
        Vec::new()
    } else {
        let partition = |index, value: Option<OffsetValue>| {
            let v = value.unwrap_or(NO_OFFSET);
            let mut entry = OffsetFetchResponsePartition::default()
                .with_partition_index(index)
                .with_committed_offset(v.offset)
                .with_metadata(Some(str_bytes(&v.metadata)))
                .with_error_code(partition_error);
            if version >= 5 {
                entry = entry.with_committed_leader_epoch(v.leader_epoch);
            }
            entry
        };
        by_topic(offsets, partition)
            .into_iter()
            .map(|(name, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(ps)
            })
            .collect()
    };
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response = response.with_error_code(code(error));
    }
    response
}

pub async fn offset_delete(
    broker: &SharedBroker,
    request: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let group_id = s(&request.group_id.0);
    let (answers, known) = check_partitions(
        broker,
        &request.topics,
        |t| (&t.name, &t.partitions),
        |p| p.partition_index,
    );
    let coordinator = coordinator(broker, &group_id);
    let outcomes = ask(coordinator, |reply| coord::DeleteOffsets {
        group_id: group_id.clone(),
        partitions: known.into_iter().map(|(key, _)| key).collect(),
        reply,
    })
    .await
    .and_then(|outcomes| outcomes);
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let topics = by_topic_answers(
        answers,
        outcomes,
        |index, error| {
            OffsetDeleteResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(error)
        },
        |name, partitions| {
            OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        },
    );
    OffsetDeleteResponse::default().with_topics(topics)
}
