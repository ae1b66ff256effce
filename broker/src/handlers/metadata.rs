//! Metadata: live brokers, topics with ids, partitions with their leader and leader epoch.
//! Every partition has one replica (its leader): durability comes from the streams below, not
//! from Kafka replication. Unknown topics are auto-created when the request and the broker
//! allow it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::admin;
use super::str_bytes;
use crate::context::{ClusterSnapshot, SharedBroker};

/// ACL operations every client may perform on a topic (no authorization yet), as the bit set
/// Kafka reports when asked: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// The same for the cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS, IDEMPOTENT_WRITE.
pub const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// Splits `host:port` (the port after the last colon).
pub fn host_port(addr: &str) -> (String, i32) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(9092)),
        None => (addr.to_string(), 9092),
    }
}

pub fn brokers(snapshot: &ClusterSnapshot) -> Vec<MetadataResponseBroker> {
    snapshot
        .brokers
        .iter()
        .map(|b| {
            let (host, port) = host_port(&b.addr);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id as i32))
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect()
}

/// The leader a client should use for a partition, or -1 when it has none that is alive.
pub fn live_leader(snapshot: &ClusterSnapshot, leader: Option<u64>) -> i32 {
    match leader {
        Some(id) if snapshot.broker(id).is_some() => id as i32,
        _ => -1,
    }
}

fn topic_entry(snapshot: &ClusterSnapshot, name: &str, version: i16) -> MetadataResponseTopic {
    let Some(topic) = snapshot.topics.get(name) else {
        return MetadataResponseTopic::default()
            .with_name(Some(TopicName(str_bytes(name))))
            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let leader = live_leader(snapshot, p.leader);
            let error = if leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            let replicas = if leader < 0 {
                vec![]
            } else {
                vec![BrokerId(leader)]
            };
            let mut entry = MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.index as i32)
                .with_leader_id(BrokerId(leader))
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(replicas);
            if version >= 7 {
                entry = entry.with_leader_epoch(p.leader_epoch as i32);
            }
            entry
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_partitions(partitions);
    if version >= 1 {
        entry = entry.with_is_internal(topic.internal);
    }
    if version >= 10 {
        entry = entry.with_topic_id(Uuid::from_bytes(topic.id));
    }
    entry
}

pub async fn handle(
    broker: &SharedBroker,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // Which topics: None (or v0's empty list) means all.
    let all = match &request.topics {
        None => true,
        Some(topics) => version == 0 && topics.is_empty(),
    };
    let mut names: Vec<String> = Vec::new();
    let mut unknown_ids: Vec<Uuid> = Vec::new();
    if !all {
        let snapshot = broker.snapshot();
        for t in request.topics.iter().flatten() {
            match &t.name {
                Some(name) => names.push(name.0.to_string()),
                None => match snapshot.topic_names_by_id.get(t.topic_id.as_bytes()) {
                    Some(name) => names.push(name.clone()),
                    None => unknown_ids.push(t.topic_id),
                },
            }
        }
    }
    let auto_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    if auto_create {
        let missing: Vec<String> = {
            let snapshot = broker.snapshot();
            names
                .iter()
                .filter(|n| !snapshot.topics.contains_key(*n))
                .cloned()
                .collect()
        };
        for name in &missing {
            if name == crate::group::OFFSETS_TOPIC {
                // Created as Kafka does: internal, with the offsets-topic partition count.
                super::groups::ensure_offsets_topic(broker).await;
                continue;
            }
            if let Err(e) = admin::auto_create(broker, name).await {
                tracing::info!(topic = %name, "auto-create failed: {e}");
            }
        }
    }
    let snapshot = broker.snapshot();
    if all {
        names = snapshot.topics.keys().cloned().collect();
        names.sort();
    }
    let mut topics: Vec<MetadataResponseTopic> = names
        .iter()
        .map(|name| {
            let mut entry = topic_entry(&snapshot, name, version);
            if version >= 8 && request.include_topic_authorized_operations {
                entry = entry.with_topic_authorized_operations(TOPIC_OPERATIONS);
            }
            if admin::validate_topic_name(name).is_err() {
                entry = entry.with_error_code(ResponseError::InvalidTopicException.code());
            }
            entry
        })
        .collect();
    for id in unknown_ids {
        topics.push(
            MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code()),
        );
    }
    let mut response = MetadataResponse::default()
        .with_brokers(brokers(&snapshot))
        .with_topics(topics);
    if version >= 1 {
        let controller = snapshot.brokers.first().map(|b| b.id as i32).unwrap_or(-1);
        response = response.with_controller_id(BrokerId(controller));
    }
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes(&snapshot.cluster_id)));
    }
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        response = response.with_cluster_authorized_operations(CLUSTER_OPERATIONS);
    }
    response
}
