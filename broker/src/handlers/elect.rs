//! ElectLeaders: Kafka's preferred and unclean leader elections, as they apply to Strata.
//!
//! A partition has one owner, and any live broker can own it without losing a record (the
//! data lives in streams), so no election is unclean and there is no in-sync set to respect.
//! - **Preferred** (v0, or type 0): the preferred leader is the broker the partition is
//!   pinned to (an operator's reassignment), else its current leader. If it leads already:
//!   ELECTION_NOT_NEEDED. If it is live (and not draining) but does not lead: PD moves the
//!   partition there (`MovePartitions`, keeping the pin) and the answer is NONE. Otherwise:
//!   PREFERRED_LEADER_NOT_AVAILABLE.
//! - **Unclean** (type 1): a partition with a live leader needs none: ELECTION_NOT_NEEDED.
//!   One without waits, at most the request's timeout (capped at [`MAX_WAIT`]), for PD's
//!   balancer, which gives every leaderless partition a live broker within a tick: NONE once
//!   it has, ELIGIBLE_LEADERS_NOT_AVAILABLE if no broker took it.
//!
//! No partitions named (null): every partition of every topic. Must not: choose leaders
//! itself; PD decides and the brokers' reconcile loops follow.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::*;
use protocol::model::{NodeKind, TopicInfo};
use protocol::pd::{ListNodes, ListTopics, MovePartitions, PartitionMove};

use super::str_bytes;
use crate::context::SharedBroker;

/// Longest an unclean election waits for PD to give a leaderless partition a broker.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// One partition's answer: an error (None: NONE) with its reason.
type Answer = Option<(ResponseError, String)>;

pub async fn elect_leaders(
    broker: &SharedBroker,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let unclean = match (version, request.election_type) {
        (0, _) | (_, 0) => false,
        (_, 1) => true,
        (_, other) => {
            tracing::info!(election_type = other, "ElectLeaders: unknown election type");
            return ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code());
        }
    };
    let unreachable =
        || ElectLeadersResponse::default().with_error_code(ResponseError::NotController.code());
    let (Ok(topics), Ok(nodes)) = (
        broker.pd.call(ListTopics {}).await,
        broker.pd.call(ListNodes {}).await,
    ) else {
        return unreachable();
    };
    let live: BTreeSet<u64> = nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Broker && n.alive && !n.draining)
        .map(|n| n.id)
        .collect();
    let by_name: BTreeMap<&str, &TopicInfo> = topics.iter().map(|t| (t.name.as_str(), t)).collect();
    // The partitions asked about, in request order (all of them when none are named).
    let asked: Vec<(TopicName, Vec<i32>)> = match request.topic_partitions {
        Some(named) => named.into_iter().map(|t| (t.topic, t.partitions)).collect(),
        None => topics
            .iter()
            .map(|t| {
                let all = (0..t.partitions.len() as i32).collect();
                (TopicName(str_bytes(&t.name)), all)
            })
            .collect(),
    };
    let mut answers: Vec<(TopicName, Vec<(i32, Answer)>)> = Vec::with_capacity(asked.len());
    let mut moves = Vec::new();
    let mut waiting = Vec::new();
    for (name, indexes) in asked {
        let topic = by_name.get(name.0.as_str());
        let mut results = Vec::with_capacity(indexes.len());
        for index in indexes {
            let partition = topic.and_then(|t| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            });
            let Some(p) = partition else {
                let why = "no such topic or partition".to_string();
                results.push((index, Some((ResponseError::UnknownTopicOrPartition, why))));
                continue;
            };
            let led = p.leader.filter(|l| live.contains(l));
            let answer = if unclean {
                match led {
                    Some(_) => not_needed(),
                    None => {
                        waiting.push((answers.len(), results.len(), p.index));
                        None
                    }
                }
            } else {
                match p.pinned.or(p.leader) {
                    Some(preferred) if led == Some(preferred) => not_needed(),
                    Some(preferred) if live.contains(&preferred) => {
                        moves.push(PartitionMove {
                            topic: name.0.to_string(),
                            partition: p.index,
                            broker: preferred,
                        });
                        None
                    }
                    _ => Some((
                        ResponseError::PreferredLeaderNotAvailable,
                        "the preferred leader is not a live broker".into(),
                    )),
                }
            };
            results.push((index, answer));
        }
        answers.push((name, results));
    }
    if !moves.is_empty() {
        match broker
            .pd
            .call(MovePartitions {
                moves: moves.clone(),
            })
            .await
        {
            Ok(refusals) => {
                for (m, refusal) in moves.iter().zip(refusals) {
                    let Some(e) = refusal else { continue };
                    let slot = answers
                        .iter_mut()
                        .filter(|(n, _)| n.0.as_str() == m.topic)
                        .flat_map(|(_, r)| r.iter_mut())
                        .find(|(i, a)| *i == m.partition as i32 && a.is_none());
                    if let Some((_, a)) = slot {
                        *a = Some((ResponseError::PreferredLeaderNotAvailable, e.message));
                    }
                }
            }
            Err(_) => return unreachable(),
        }
    }
    if !waiting.is_empty() {
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64).min(MAX_WAIT);
        let leaderless = wait_for_leaders(broker, &answers, &waiting, timeout).await;
        for (t, p, _) in waiting {
            let (name, results) = &mut answers[t];
            if leaderless.contains(&(name.0.to_string(), results[p].0)) {
                results[p].1 = Some((
                    ResponseError::EligibleLeadersNotAvailable,
                    "no live broker took the partition".into(),
                ));
            }
        }
    }
    let results = answers
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(
                    partitions
                        .into_iter()
                        .map(|(index, answer)| {
                            let r = PartitionResult::default().with_partition_id(index);
                            match answer {
                                Some((e, why)) => r
                                    .with_error_code(e.code())
                                    .with_error_message(Some(str_bytes(&why))),
                                None => r,
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn not_needed() -> Answer {
    Some((
        ResponseError::ElectionNotNeeded,
        "the partition is led by its preferred (or a live) broker".into(),
    ))
}

/// Polls PD until every `waiting` partition ((topic slot, partition slot, index) into
/// `answers`) has a live leader or `timeout` passed; answers those still without one, as
/// (topic, partition index).
async fn wait_for_leaders(
    broker: &SharedBroker,
    answers: &[(TopicName, Vec<(i32, Answer)>)],
    waiting: &[(usize, usize, u32)],
    timeout: Duration,
) -> BTreeSet<(String, i32)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut left: BTreeSet<(String, i32)> = waiting
        .iter()
        .map(|(t, _, index)| (answers[*t].0 .0.to_string(), *index as i32))
        .collect();
    loop {
        if let (Ok(topics), Ok(nodes)) = (
            broker.pd.call(ListTopics {}).await,
            broker.pd.call(ListNodes {}).await,
        ) {
            let live: BTreeSet<u64> = nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Broker && n.alive)
                .map(|n| n.id)
                .collect();
            left.retain(|(name, index)| {
                let p = topics
                    .iter()
                    .find(|t| &t.name == name)
                    .and_then(|t| t.partitions.get(*index as usize));
                !p.is_some_and(|p| p.leader.is_some_and(|l| live.contains(&l)))
            });
        }
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
