//! ListOffsets (earliest, latest, max timestamp, by timestamp) and OffsetForLeaderEpoch:
//! both answered by the partition actor that owns the partition.

use crate::context::SharedBroker;
use crate::handlers::code_or;
use crate::partition::{self, EpochEnd, EpochEndOffset, ListOffset, OffsetFound};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset as EpochEndOffsetResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

pub async fn handle(
    broker: &SharedBroker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let lookups = request.topics.iter().map(|topic| async move {
        let name = topic.name.0.to_string();
        let lookups = topic.partitions.iter().map(|p| {
            let name = name.as_str();
            async move {
                if !broker.snapshot().has_partition(name, p.partition_index) {
                    return Err(ResponseError::UnknownTopicOrPartition);
                }
                let request = |reply| ListOffset {
                    timestamp: p.timestamp,
                    reply,
                };
                partition::ask(broker, name, p.partition_index as u32, request)
                    .await
                    .and_then(|found| found)
            }
        });
        let found = futures::future::join_all(lookups).await;
        let responses = topic
            .partitions
            .iter()
            .zip(found)
            .map(|(p, found)| {
                let none = OffsetFound {
                    offset: -1,
                    timestamp: -1,
                    leader_epoch: -1,
                };
                let (error, found) = code_or(found, none);
                let mut response = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error)
                    .with_timestamp(found.timestamp)
                    .with_offset(found.offset);
                if version >= 4 {
                    response = response.with_leader_epoch(found.leader_epoch);
                }
                response
            })
            .collect();
        ListOffsetsTopicResponse::default()
            .with_name(topic.name.clone())
            .with_partitions(responses)
    });
    ListOffsetsResponse::default().with_topics(futures::future::join_all(lookups).await)
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
            let asked = match p.partition {
                index if index >= 0 => {
                    let request = |reply| EpochEnd {
                        leader_epoch: p.leader_epoch,
                        reply,
                    };
                    partition::ask(broker, &name, index as u32, request)
                        .await
                        .and_then(|end| end)
                }
                _ => Err(ResponseError::NotLeaderOrFollower),
            };
            let answer = asked.map_err(|error| {
                // No actor here: tell a topic we do not know from one led elsewhere.
                if error == ResponseError::NotLeaderOrFollower
                    && !broker.snapshot().topics.contains_key(&name)
                {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    error
                }
            });
            let unknown = EpochEndOffset {
                leader_epoch: -1,
                end_offset: -1,
            };
            let (error, end) = code_or(answer, unknown);
            results.push(
                EpochEndOffsetResponse::default()
                    .with_partition(p.partition)
                    .with_error_code(error)
                    .with_leader_epoch(end.leader_epoch)
                    .with_end_offset(end.end_offset),
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
