//! Fetch: reads each partition from the partition actor's tail cache or from its data stream,
//! and long-polls (`max_wait_ms`, `min_bytes`) by parking on the partitions until data
//! arrives. Returned bytes are the stored batches, never re-encoded; a fetch from inside a
//! batch gets the whole batch (the client skips what it already has).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::str_bytes;
use crate::context::SharedBroker;
use crate::partition::{Read, ReadOutcome, WaitForData};

/// Longest a fetch may park, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Wanted {
    topic: Option<String>,
    topic_id: Uuid,
    partitions: Vec<(i32, i64, i32)>,
}

pub async fn handle(broker: &SharedBroker, request: FetchRequest, version: i16) -> FetchResponse {
    let snapshot = broker.snapshot();
    let wanted: Vec<Wanted> = request
        .topics
        .iter()
        .map(|t| {
            let topic = if version >= 13 {
                snapshot
                    .topic_names_by_id
                    .get(t.topic_id.as_bytes())
                    .cloned()
            } else {
                Some(t.topic.0.to_string())
            };
            Wanted {
                topic,
                topic_id: t.topic_id,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes))
                    .collect(),
            }
        })
        .collect();
    drop(snapshot);
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    loop {
        let (topics, total, any_error, seen) = read_all(broker, &wanted, max_bytes, version).await;
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline {
            broker.metrics.fetched_bytes.inc_by(total as u64);
            let mut response = FetchResponse::default().with_responses(topics);
            if version >= 7 {
                response = response.with_session_id(0);
            }
            return response;
        }
        // Park on every partition until one has data past what this fetch has already seen
        // (its high watermark then), so a fetch short of min_bytes waits instead of re-reading.
        let mut waits = Vec::new();
        let mut seen = seen.into_iter();
        for w in &wanted {
            for (partition, offset, _) in &w.partitions {
                let high_watermark = seen.next().unwrap_or(-1);
                let Some(topic) = &w.topic else { continue };
                if let Some(handle) = broker.partition(topic, *partition as u32) {
                    let (tx, rx) = oneshot::channel();
                    handle.addr.do_send(WaitForData {
                        offset: (*offset).max(high_watermark),
                        reply: tx,
                    });
                    waits.push(Box::pin(rx));
                }
            }
        }
        if waits.is_empty() {
            tokio::time::sleep_until(deadline.into()).await;
        } else {
            let _ =
                tokio::time::timeout_at(deadline.into(), futures::future::select_all(waits)).await;
        }
    }
}

async fn read_all(
    broker: &SharedBroker,
    wanted: &[Wanted],
    max_bytes: usize,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool, Vec<i64>) {
    let snapshot = broker.snapshot();
    let mut total = 0usize;
    let mut any_error = false;
    // Each partition's high watermark as read, in request order (-1 when unknown).
    let mut seen = Vec::new();
    let mut topics = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for &(index, offset, partition_max) in &w.partitions {
            let budget = max_bytes
                .saturating_sub(total)
                .min(partition_max.max(0) as usize);
            let mut data = PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1));
            let topic = w.topic.as_ref().and_then(|t| snapshot.topics.get(t));
            let error = match (w.topic.as_ref(), topic) {
                (_, None) if version >= 13 => ResponseError::UnknownTopicId.code(),
                (_, None) => ResponseError::UnknownTopicOrPartition.code(),
                (Some(name), Some(topic)) => {
                    if index < 0 || index as usize >= topic.partitions.len() {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if budget == 0 && total > 0 {
                        0 // response full: this partition waits for the next fetch
                    } else {
                        match read_partition(broker, name, index as u32, offset, budget.max(1))
                            .await
                        {
                            Ok((outcome, mut records)) => {
                                data = data
                                    .with_high_watermark(outcome.high_watermark)
                                    .with_last_stable_offset(outcome.high_watermark)
                                    .with_log_start_offset(outcome.log_start);
                                // Only the first partition with data may exceed the limits
                                // (so one large batch can always make progress).
                                if total > 0 && records.len() > budget {
                                    records = Bytes::new();
                                }
                                total += records.len();
                                if !records.is_empty() {
                                    data = data.with_records(Some(records));
                                }
                                outcome.error
                            }
                            Err(code) => code,
                        }
                    }
                }
                (None, Some(_)) => ResponseError::UnknownTopicId.code(),
            };
            if error != 0 {
                any_error = true;
            }
            seen.push(data.high_watermark);
            if version >= 4 {
                data = data.with_aborted_transactions(Some(Vec::new()));
            }
            if data.records.is_none() {
                data = data.with_records(Some(Bytes::new()));
            }
            partitions.push(data.with_error_code(error));
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            topic = topic.with_topic_id(w.topic_id);
        } else {
            topic = topic.with_topic(TopicName(str_bytes(w.topic.as_deref().unwrap_or(""))));
        }
        topics.push(topic);
    }
    (topics, total, any_error, seen)
}

/// Reads one partition: from the actor's cache, or from the data stream where it says.
async fn read_partition(
    broker: &SharedBroker,
    topic: &str,
    index: u32,
    offset: i64,
    max_bytes: usize,
) -> Result<(ReadOutcome, Bytes), i16> {
    let Some(handle) = broker.partition(topic, index) else {
        return Err(ResponseError::NotLeaderOrFollower.code());
    };
    let (tx, rx) = oneshot::channel();
    handle.addr.do_send(Read {
        offset,
        max_bytes,
        reply: tx,
    });
    let outcome = rx
        .await
        .map_err(|_| ResponseError::NotLeaderOrFollower.code())?;
    if outcome.error != 0 {
        return Ok((outcome, Bytes::new()));
    }
    let mut parts = outcome.batches.clone();
    if let Some((stream, start, end)) = outcome.from_stream {
        let mut at = start;
        let mut size = 0usize;
        while at < end && (parts.is_empty() || size < max_bytes) {
            let read = match broker
                .streams
                .read(stream, at, max_bytes.min(u32::MAX as usize) as u32)
                .await
            {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(
                        topic,
                        partition = index,
                        offset = at,
                        "stream read failed: {e}"
                    );
                    if parts.is_empty() {
                        return Err(ResponseError::KafkaStorageError.code());
                    }
                    break;
                }
            };
            if read.batches.is_empty() {
                break;
            }
            for b in read.batches {
                if b.offset >= end || (!parts.is_empty() && size + b.payload.len() > max_bytes) {
                    at = end;
                    break;
                }
                size += b.payload.len();
                at = b.offset + b.count as u64;
                parts.push(b.payload);
            }
        }
    }
    let records = match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
            for p in parts {
                buf.extend_from_slice(&p);
            }
            buf.freeze()
        }
    };
    Ok((outcome, records))
}
