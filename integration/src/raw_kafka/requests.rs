//! Typed raw requests for topics and records (Metadata, Produce, Fetch, ListOffsets) at the
//! highest version both the broker and `kafka-protocol` handle. Group requests live in
//! [`super::groups`]; nothing here retries except [`raw_wait_topic`].

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest,
};
use uuid::Uuid;

use super::{code, topic_name, RawClient};

/// Raw Metadata for `topics` (all topics when `None`).
pub fn raw_metadata(
    c: &mut RawClient,
    topics: Option<&[&str]>,
    auto_create: bool,
) -> MetadataResponse {
    let v = c.version::<MetadataRequest>();
    let mut req = MetadataRequest::default().with_topics(topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
            .collect()
    }));
    if v >= 4 {
        req = req.with_allow_auto_topic_creation(auto_create);
    }
    c.call(&req, v)
        .unwrap_or_else(|e| panic!("Metadata v{v} to {}: {e}", c.addr))
}

/// A partition as raw Metadata shows it.
#[derive(Debug, Clone)]
pub struct RawPartition {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub leader_addr: String,
}

/// Topic id and partitions of `topic` per raw Metadata, or the topic's error code.
pub fn raw_topic(c: &mut RawClient, topic: &str) -> Result<(Uuid, Vec<RawPartition>), i16> {
    let md = raw_metadata(c, Some(&[topic]), false);
    let brokers: std::collections::HashMap<i32, String> = md
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)?;
    if t.error_code != 0 {
        return Err(t.error_code);
    }
    let mut parts: Vec<RawPartition> = t
        .partitions
        .iter()
        .map(|p| RawPartition {
            partition: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            leader_addr: brokers.get(&p.leader_id.0).cloned().unwrap_or_default(),
        })
        .collect();
    parts.sort_by_key(|p| p.partition);
    Ok((t.topic_id, parts))
}

/// Builds a Produce request for one partition at version `v` (topic id from v13 on).
pub fn produce_request(
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    batch: Bytes,
    acks: i16,
    v: i16,
) -> ProduceRequest {
    let mut td =
        TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch))]);
    if v >= 13 {
        td = td.with_topic_id(topic_id);
    } else {
        td = td.with_name(topic_name(topic));
    }
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![td])
}

/// Produces one batch to one partition and answers that partition's response.
pub fn raw_produce(
    c: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    batch: Bytes,
) -> Result<PartitionProduceResponse, String> {
    let v = c.version::<ProduceRequest>();
    let req = produce_request(topic, topic_id, partition, batch, -1, v);
    let resp = c.call(&req, v)?;
    the_partition(
        resp.responses
            .into_iter()
            .flat_map(|t| t.partition_responses),
        |p| p.index,
        partition,
        &format!("Produce v{v}"),
    )
}

/// Fetches one partition from `offset` and answers that partition's data.
pub fn raw_fetch(
    c: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> Result<PartitionData, String> {
    let v = c.version::<FetchRequest>();
    let mut ft = FetchTopic::default().with_partitions(vec![FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)]);
    if v >= 13 {
        ft = ft.with_topic_id(topic_id);
    } else {
        ft = ft.with_topic(topic_name(topic));
    }
    let mut req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(4 << 20)
        .with_topics(vec![ft]);
    if v >= 7 {
        req = req.with_session_epoch(-1);
    }
    if v >= 15 {
        req = req.with_replica_id(BrokerId(-1));
    }
    let resp = c.call(&req, v)?;
    if resp.error_code != 0 {
        return Err(format!("Fetch v{v} top-level error {}", resp.error_code));
    }
    the_partition(
        resp.responses.into_iter().flat_map(|t| t.partitions),
        |p| p.partition_index,
        partition,
        &format!("Fetch v{v}"),
    )
}

/// ListOffsets for one partition at `timestamp` (-1 latest, -2 earliest, -3 max timestamp).
pub fn raw_list_offsets(
    c: &mut RawClient,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<ListOffsetsPartitionResponse, String> {
    let v = c.version::<ListOffsetsRequest>();
    let mut req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    if v >= 10 {
        req = req.with_timeout_ms(30_000);
    }
    let resp = c.call(&req, v)?;
    the_partition(
        resp.topics.into_iter().flat_map(|t| t.partitions),
        |p| p.partition_index,
        partition,
        &format!("ListOffsets v{v}"),
    )
}

/// The answer for `partition` among a response's partitions (`index` names each one), or an
/// error naming `request` when the broker left it out.
fn the_partition<P>(
    mut partitions: impl Iterator<Item = P>,
    index: impl Fn(&P) -> i32,
    partition: i32,
    request: &str,
) -> Result<P, String> {
    partitions
        .find(|p| index(p) == partition)
        .ok_or_else(|| format!("{request} response has no partition {partition}"))
}

/// Waits until raw Metadata from `c` shows `topic` with every partition led.
pub fn raw_wait_topic(
    c: &mut RawClient,
    topic: &str,
    partitions: usize,
) -> (Uuid, Vec<RawPartition>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = raw_topic(c, topic);
        if let Ok((id, parts)) = &r {
            if parts.len() == partitions && parts.iter().all(|p| p.leader >= 0) {
                return (*id, parts.clone());
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} never had {partitions} led partitions in raw Metadata from {}: {r:?}",
            c.addr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
