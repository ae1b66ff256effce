//! Partition reassignment: AlterPartitionReassignments and ListPartitionReassignments.
//!
//! A partition has one owner (durability lives in its streams, not in broker replicas), so a
//! target replica list names the broker that should lead it: its first id. A move is made at
//! PD (`MovePartitions`, which pins the partition there) and is in flight until the new
//! owner serves it, usually well under a second; ListPartitionReassignments shows the moves
//! PD has in flight, the balancer's included. Any broker answers both (each is the
//! "controller" for these requests). Must not: move anything itself; PD decides and the
//! brokers' reconcile loops follow.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::*;
use protocol::pd::{ListMoves, MovePartitions, PartitionMove};
use protocol::ErrorCode;

use super::str_bytes;
use crate::context::SharedBroker;

/// One partition's answer: its index, and an error with its reason.
type Outcome = (i32, Option<(ResponseError, String)>);

pub async fn alter_partition_reassignments(
    broker: &SharedBroker,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    // v0 cannot say; v1 can forbid a replica list whose length differs from the current one.
    let allow_rf_change = version < 1 || request.allow_replication_factor_change;
    let mut outcomes: Vec<(TopicName, Vec<Outcome>)> = Vec::new();
    let mut moves = Vec::new();
    // Where each move's answer goes: (topic slot, partition slot).
    let mut slots = Vec::new();
    let in_flight = if request
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.replicas.is_none())
    {
        broker
            .pd
            .call(ListMoves { recent: false })
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut results = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let refuse = |e: ResponseError, why: String| (p.partition_index, Some((e, why)));
            let outcome = match (&p.replicas, u32::try_from(p.partition_index)) {
                (_, Err(_)) => refuse(
                    ResponseError::UnknownTopicOrPartition,
                    "negative partition index".into(),
                ),
                (None, Ok(index)) => {
                    let moving = in_flight
                        .iter()
                        .any(|m| m.topic == name && m.partition == index);
                    if moving {
                        refuse(
                            ResponseError::InvalidRequest,
                            "a move in flight completes (usually within a second) and cannot be cancelled".into(),
                        )
                    } else {
                        refuse(
                            ResponseError::NoReassignmentInProgress,
                            "no reassignment is in progress for this partition".into(),
                        )
                    }
                }
                (Some(replicas), Ok(index)) => match target(replicas, allow_rf_change) {
                    Err((e, why)) => refuse(e, why),
                    Ok(to) => {
                        slots.push((outcomes.len(), results.len()));
                        moves.push(PartitionMove {
                            topic: name.clone(),
                            partition: index,
                            broker: to,
                        });
                        (p.partition_index, None)
                    }
                },
            };
            results.push(outcome);
        }
        outcomes.push((topic.name, results));
    }
    let mut response = AlterPartitionReassignmentsResponse::default();
    if !moves.is_empty() {
        match broker.pd.call(MovePartitions { moves }).await {
            Ok(answers) => {
                for ((t, p), answer) in slots.into_iter().zip(answers) {
                    if let Some(e) = answer {
                        let code = match e.code {
                            ErrorCode::NotFound => ResponseError::UnknownTopicOrPartition,
                            _ => ResponseError::InvalidReplicaAssignment,
                        };
                        outcomes[t].1[p].1 = Some((code, e.message));
                    }
                }
            }
            // A request PD refuses as a whole (too many moves) is the client's to fix; any
            // other failure is PD's, retriable.
            Err(e) if e.code == ErrorCode::InvalidArgument => {
                return response
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&e.message)));
            }
            Err(e) => {
                tracing::warn!("AlterPartitionReassignments: PD: {e}");
                return response
                    .with_error_code(ResponseError::NotController.code())
                    .with_error_message(Some(str_bytes("the placement driver is not reachable")));
            }
        }
    }
    if version >= 1 {
        response = response.with_allow_replication_factor_change(allow_rf_change);
    }
    response.with_responses(
        outcomes
            .into_iter()
            .map(|(name, partitions)| {
                ReassignableTopicResponse::default()
                    .with_name(name)
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, error)| {
                                let mut r = ReassignablePartitionResponse::default()
                                    .with_partition_index(index);
                                if let Some((e, why)) = error {
                                    r = r
                                        .with_error_code(e.code())
                                        .with_error_message(Some(str_bytes(&why)));
                                }
                                r
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The broker a replica list asks for: its first id. Refused when empty, with duplicates or
/// negative ids, or with more than one id unless the request allows a change of replication
/// factor: every partition has one replica as Kafka sees it.
fn target(replicas: &[BrokerId], allow_rf_change: bool) -> Result<u64, (ResponseError, String)> {
    let invalid = |why: &str| Err((ResponseError::InvalidReplicaAssignment, why.to_string()));
    let Some(first) = replicas.first() else {
        return invalid("the replica list is empty");
    };
    if replicas.iter().any(|r| r.0 < 0) {
        return invalid("negative broker id");
    }
    let mut seen = replicas.iter().map(|r| r.0).collect::<Vec<_>>();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != replicas.len() {
        return invalid("the replica list has duplicates");
    }
    if replicas.len() != 1 && !allow_rf_change {
        return Err((
            ResponseError::InvalidReplicationFactor,
            "each partition has one replica (its streams keep the copies); name one broker".into(),
        ));
    }
    Ok(first.0 as u64)
}

pub async fn list_partition_reassignments(
    broker: &SharedBroker,
    request: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let moves = match broker.pd.call(ListMoves { recent: false }).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("ListPartitionReassignments: PD: {e}");
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(ResponseError::NotController.code())
                .with_error_message(Some(str_bytes("the placement driver is not reachable")));
        }
    };
    let wanted = |topic: &str, index: u32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&(index as i32))),
    };
    let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for m in moves {
        if !wanted(&m.topic, m.partition) {
            continue;
        }
        let to = BrokerId(m.to as i32);
        let from: Vec<BrokerId> = m
            .from
            .filter(|f| *f != m.to)
            .map(|f| BrokerId(f as i32))
            .into_iter()
            .collect();
        by_topic.entry(m.topic).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(m.partition as i32)
                .with_replicas([vec![to], from.clone()].concat())
                .with_adding_replicas(vec![to])
                .with_removing_replicas(from),
        );
    }
    ListPartitionReassignmentsResponse::default().with_topics(
        by_topic
            .into_iter()
            .map(|(name, partitions)| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}
