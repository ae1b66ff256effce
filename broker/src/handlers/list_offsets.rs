//! ListOffsets (earliest, latest, max timestamp, by timestamp) and OffsetForLeaderEpoch:
//! both answered by the partition actor that owns the partition.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use tokio::sync::oneshot;

use crate::context::SharedBroker;
use crate::partition::{EpochEnd, ListOffset, OffsetOutcome};

fn failed(code: i16) -> OffsetOutcome {
    OffsetOutcome {
        error: code,
        offset: -1,
        timestamp: -1,
        leader_epoch: -1,
    }
}

pub async fn handle(
    broker: &SharedBroker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let snapshot = broker.snapshot();
    let mut pending = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let known = snapshot.topics.get(&name).map(|t| t.partitions.len());
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let rx = match known {
                Some(n) if p.partition_index >= 0 && (p.partition_index as usize) < n => {
                    match broker.partition(&name, p.partition_index as u32) {
                        Some(handle) => {
                            let (tx, rx) = oneshot::channel();
                            handle.addr.do_send(ListOffset {
                                timestamp: p.timestamp,
                                reply: tx,
                            });
                            Ok(rx)
                        }
                        None => Err(ResponseError::NotLeaderOrFollower.code()),
                    }
                }
                _ => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            partitions.push((p.partition_index, rx));
        }
        pending.push((topic.name.clone(), partitions));
    }
    drop(snapshot);
    let mut topics = Vec::new();
    for (name, partitions) in pending {
        let mut responses = Vec::new();
        for (index, rx) in partitions {
            let outcome = match rx {
                Ok(rx) => rx
                    .await
                    .unwrap_or(failed(ResponseError::NotLeaderOrFollower.code())),
                Err(code) => failed(code),
            };
            let mut response = ListOffsetsPartitionResponse::default()
                .with_partition_index(index)
                .with_error_code(outcome.error)
                .with_timestamp(outcome.timestamp)
                .with_offset(outcome.offset);
            if version >= 4 {
                response = response.with_leader_epoch(outcome.leader_epoch);
            }
            responses.push(response);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(responses),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

pub async fn offset_for_leader_epoch(
    broker: &SharedBroker,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::new();
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let mut results = Vec::new();
        for p in topic.partitions {
            let (error, epoch, end) = match broker.partition(&name, p.partition.max(0) as u32) {
                Some(handle) if p.partition >= 0 => {
                    let (tx, rx) = oneshot::channel();
                    handle.addr.do_send(EpochEnd {
                        leader_epoch: p.leader_epoch,
                        reply: tx,
                    });
                    rx.await
                        .unwrap_or((ResponseError::NotLeaderOrFollower.code(), -1, -1))
                }
                _ => {
                    let known = broker.snapshot().topics.contains_key(&name);
                    let code = if known {
                        ResponseError::NotLeaderOrFollower.code()
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    (code, -1, -1)
                }
            };
            results.push(
                EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(error)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
            );
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(results),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
