//! Produce: validate each partition's batches (framing, magic, CRC, `max.message.bytes`),
//! hand them to the partition actor, and answer when the stream has confirmed them.
//! Batches reach the actor in request order: [`start`] sends them before anything awaits.

use std::future::Future;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use tokio::sync::oneshot;

use super::admin;
use crate::batch::{self, BatchError};
use crate::context::SharedBroker;
use crate::partition::{Produce, ProduceOutcome};
use crate::topic_config::TopicConfig;

enum Pending {
    Done(ResponseError),
    Waiting(oneshot::Receiver<ProduceOutcome>),
    /// Topic unknown when the request came: auto-create, then answer this (retriable) error.
    AutoCreate(String),
}

fn batch_error(e: &BatchError) -> ResponseError {
    match e {
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        BatchError::Corrupt(_) => ResponseError::CorruptMessage,
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::OverBudget(_) => ResponseError::PolicyViolation,
    }
}

/// Validates and sends every partition's batches now; the future collects the answers.
pub fn start(
    broker: &SharedBroker,
    request: ProduceRequest,
    version: i16,
) -> impl Future<Output = ProduceResponse> {
    let snapshot = broker.snapshot();
    let record_bytes: usize = request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    let mut budget = batch::DecompressionBudget::for_request(record_bytes);
    let mut plan: Vec<(TopicName, Vec<(i32, Pending)>)> = Vec::new();
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = snapshot.topics.get(&name);
        let config = topic.map(TopicConfig::of);
        let mut partitions = Vec::new();
        for p in topic_data.partition_data {
            let pending = match (topic, &config) {
                (None, _) if admin::validate_topic_name(&name).is_err() => {
                    Pending::Done(ResponseError::InvalidTopicException)
                }
                (None, _) if name == crate::group::OFFSETS_TOPIC => {
                    Pending::Done(ResponseError::InvalidTopicException)
                }
                (None, _) => Pending::AutoCreate(name.clone()),
                // Only group coordinators write to internal topics (Kafka refuses the same).
                (Some(topic), _) if topic.internal => {
                    Pending::Done(ResponseError::InvalidTopicException)
                }
                (Some(topic), Some(config)) => {
                    if p.index < 0 || p.index as usize >= topic.partitions.len() {
                        Pending::Done(ResponseError::UnknownTopicOrPartition)
                    } else if let Some(handle) = broker.partition(&name, p.index as u32) {
                        let records = p.records.unwrap_or_else(Bytes::new);
                        let validated = batch::split_and_validate_within(
                            &records,
                            config.max_message_bytes,
                            &mut budget,
                        );
                        match validated {
                            Ok(batches) => {
                                let (reply, rx) = oneshot::channel();
                                handle.addr.do_send(Produce {
                                    batches,
                                    reply,
                                    span: tracing::Span::current(),
                                });
                                Pending::Waiting(rx)
                            }
                            Err(e) => {
                                tracing::info!(topic = %name, partition = p.index, "refusing produce: {e}");
                                Pending::Done(batch_error(&e))
                            }
                        }
                    } else {
                        Pending::Done(ResponseError::NotLeaderOrFollower)
                    }
                }
                (Some(_), None) => Pending::Done(ResponseError::UnknownTopicOrPartition),
            };
            partitions.push((p.index, pending));
        }
        plan.push((topic_data.name, partitions));
    }
    let broker = broker.clone();
    async move {
        let mut responses = Vec::with_capacity(plan.len());
        for (name, partitions) in plan {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for (index, pending) in partitions {
                let outcome = match pending {
                    Pending::Done(error) => Err(error),
                    Pending::Waiting(rx) => {
                        rx.await.unwrap_or(Err(ResponseError::NotLeaderOrFollower))
                    }
                    Pending::AutoCreate(topic) => Err(if !broker.config.auto_create_topics {
                        ResponseError::UnknownTopicOrPartition
                    } else {
                        match admin::auto_create(&broker, &topic).await {
                            // Created: the client refreshes metadata and retries.
                            Ok(_) => ResponseError::NotLeaderOrFollower,
                            Err(_) => ResponseError::UnknownTopicOrPartition,
                        }
                    }),
                };
                let (error, base_offset, log_append_time, log_start) = match outcome {
                    Ok(p) => (
                        0,
                        p.base_offset as i64,
                        p.log_append_time.unwrap_or(-1),
                        p.log_start as i64,
                    ),
                    Err(error) => (error.code(), -1, -1, -1),
                };
                let mut response = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_error_code(error)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(log_append_time);
                if version >= 5 {
                    response = response.with_log_start_offset(log_start);
                }
                partition_responses.push(response);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partition_responses),
            );
        }
        ProduceResponse::default().with_responses(responses)
    }
}
