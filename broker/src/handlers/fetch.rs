//! Fetch: reads its partitions concurrently, each through its partition actor's scan (tail
//! cache, then the data stream), and long-polls (`max_wait_ms`, `min_bytes`) by parking on the partitions until data
//! arrives. Returned bytes are the stored batches, never re-encoded; a fetch from inside a
//! batch gets the whole batch (the client skips what it already has).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::str_bytes;
use crate::context::SharedBroker;
use crate::partition::{self, Read, WaitForData};
use crate::read::concat;

/// Longest a fetch may park, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Partitions of one fetch read at the same time.
const READS_IN_FLIGHT: usize = 8;

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
            count_served(broker, &wanted, &topics);
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

/// One partition's answer, before the response's size limit is applied.
struct PartitionRead {
    error: i16,
    high_watermark: i64,
    log_start: i64,
    batches: Vec<Bytes>,
}

impl PartitionRead {
    fn failed(error: ResponseError) -> Self {
        PartitionRead {
            error: error.code(),
            high_watermark: -1,
            log_start: -1,
            batches: Vec::new(),
        }
    }
}

/// Counts what a response returns per partition (`topics` follows `wanted`): the load
/// reported to PD, and the per-partition series of partitions owned here (they go when the
/// partition leaves).
fn count_served(broker: &SharedBroker, wanted: &[Wanted], topics: &[FetchableTopicResponse]) {
    for (w, t) in wanted.iter().zip(topics) {
        let Some(name) = w.topic.as_deref() else {
            continue;
        };
        for p in &t.partitions {
            let Ok(index) = u32::try_from(p.partition_index) else {
                continue;
            };
            let records = p.records.as_deref().unwrap_or_default();
            let bytes = records.len() as u64;
            broker.loads.fetched(name, index, bytes);
            if bytes > 0 && broker.partition(name, index).is_some() {
                let labels = crate::metrics::PartitionLabels {
                    topic: name.to_string(),
                    partition: index,
                };
                let count = crate::batch::record_count(records);
                broker.metrics.partition.fetched(&labels, bytes, count);
            }
        }
    }
}

/// Reads the wanted partitions concurrently (eight at a time), then fits them into
/// `max_bytes` in request order (the first partition with data may exceed it, so one large batch always makes
/// progress; a partition that no longer fits gets no data this time).
async fn read_all(
    broker: &SharedBroker,
    wanted: &[Wanted],
    max_bytes: usize,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool, Vec<i64>) {
    let snapshot = broker.snapshot();
    let reads = wanted.iter().flat_map(|w| {
        let topic = w.topic.as_ref().and_then(|t| snapshot.topics.get(t));
        w.partitions
            .iter()
            .map(move |&(index, offset, partition_max)| async move {
                let Some(topic) = topic else {
                    return PartitionRead::failed(if version >= 13 || w.topic.is_none() {
                        ResponseError::UnknownTopicId
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    });
                };
                if index < 0 || index as usize >= topic.partitions.len() {
                    return PartitionRead::failed(ResponseError::UnknownTopicOrPartition);
                }
                let budget = max_bytes.min(partition_max.max(0) as usize).max(1);
                read_partition(broker, &topic.name, index as u32, offset, budget).await
            })
    });
    // A few at a time, in order: each read holds up to its budget in memory, so a fetch of
    // many partitions must not hold them all at once.
    let reads: Vec<PartitionRead> = futures::stream::iter(reads)
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    let mut reads = reads.into_iter();
    drop(snapshot);
    let mut total = 0usize;
    let mut any_error = false;
    // Each partition's high watermark as read, in request order (-1 when unknown).
    let mut seen = Vec::new();
    let mut topics = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for &(index, _, _) in &w.partitions {
            let read = reads
                .next()
                .unwrap_or_else(|| PartitionRead::failed(ResponseError::UnknownServerError));
            let mut fitted = Vec::new();
            for batch in read.batches {
                if total > 0 && total + batch.len() > max_bytes {
                    break;
                }
                total += batch.len();
                fitted.push(batch);
            }
            any_error |= read.error != 0;
            seen.push(read.high_watermark);
            let mut data = PartitionData::default()
                .with_partition_index(index)
                .with_error_code(read.error)
                .with_high_watermark(read.high_watermark)
                .with_last_stable_offset(read.high_watermark)
                .with_log_start_offset(read.log_start)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(concat(fitted)));
            if version >= 4 {
                data = data.with_aborted_transactions(Some(Vec::new()));
            }
            partitions.push(data);
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

/// Reads one partition through its actor's scan (tail cache, then the data stream).
async fn read_partition(
    broker: &SharedBroker,
    topic: &str,
    index: u32,
    offset: i64,
    max_bytes: usize,
) -> PartitionRead {
    let read = partition::ask(broker, topic, index, |reply| Read {
        offset,
        max_bytes,
        reply,
    })
    .await;
    let outcome = match read.and_then(|r| r) {
        Ok(outcome) => outcome,
        Err(error) => return PartitionRead::failed(error),
    };
    let mut read = PartitionRead {
        error: 0,
        high_watermark: outcome.high_watermark as i64,
        log_start: outcome.log_start as i64,
        batches: Vec::new(),
    };
    let read_batches = match outcome.scan {
        Ok(mut scan) => scan.take_bytes(max_bytes).await.map_err(|e| {
            tracing::warn!(topic, partition = index, offset, "stream read failed: {e}");
            ResponseError::KafkaStorageError
        }),
        Err(error) => Err(error),
    };
    match read_batches {
        Ok(batches) => read.batches = batches,
        Err(error) => read.error = error.code(),
    }
    read
}
