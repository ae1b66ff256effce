//! Topic administration and cluster-level requests: CreateTopics, DeleteTopics,
//! CreatePartitions, DeleteRecords, DescribeCluster, InitProducerId, and topic auto-creation.
//! Topics live at PD; a broker validates Kafka semantics, asks PD, and waits until the new
//! partitions have leaders so the client can use them at once.

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::*;
use protocol::model::TopicInfo;
use protocol::pd::{AllocateIds, CreatePartitions as PdCreatePartitions, CreateTopic, DeleteTopic};
use protocol::{ErrorCode, RpcError};
use uuid::Uuid;

use super::metadata::{host_port, live_leader};
use super::{code_or, str_bytes};
use crate::context::SharedBroker;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::refresh;
use crate::partition::{self, DeleteRecords as DeleteRecordsMsg};
use crate::topic_config;

/// The topic results of CreateTopics and CreatePartitions, which carry an error and message.
trait TopicResult: Sized {
    /// This result refused with `error` and its reason.
    fn failed(self, error: ResponseError, message: &str) -> Self;
}

macro_rules! topic_result {
    ($($result:ty),*) => {$(
        impl TopicResult for $result {
            fn failed(self, error: ResponseError, message: &str) -> Self {
                self.with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message)))
            }
        }
    )*};
}
topic_result!(CreatableTopicResult, CreatePartitionsTopicResult);

/// Longest a request waits for new partitions to get leaders.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 characters, not {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "topic name {name:?} has characters other than [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

/// How a topic's streams are replicated.
struct Replication {
    replica: u8,
    ack_count: u8,
}

/// Stream replication for a Kafka replication factor: -1 takes the broker defaults.
fn replication(broker: &SharedBroker, replication_factor: i16) -> Replication {
    if replication_factor <= 0 {
        Replication {
            replica: broker.config.default_replication,
            ack_count: broker.config.default_ack,
        }
    } else {
        let replica = replication_factor.clamp(1, 5) as u8;
        Replication {
            replica,
            ack_count: replica / 2 + 1,
        }
    }
}

/// Refreshes metadata until every partition of `topic` has a live leader (or time is up).
pub async fn wait_for_leaders(broker: &SharedBroker, topic: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Err(e) = refresh(broker).await {
            tracing::debug!("metadata refresh: {e}");
        }
        let ready = {
            let snapshot = broker.snapshot();
            match snapshot.topics.get(topic) {
                Some(t) => t
                    .partitions
                    .iter()
                    .all(|p| live_leader(&snapshot, p.leader) >= 0),
                None => false,
            }
        };
        if ready || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `topic` with the broker's defaults (Kafka's auto.create.topics.enable).
pub async fn auto_create(broker: &SharedBroker, topic: &str) -> Result<(), RpcError> {
    validate_topic_name(topic).map_err(|e| RpcError::new(ErrorCode::InvalidArgument, e))?;
    let Replication { replica, ack_count } = replication(broker, -1);
    let created = broker
        .pd
        .call(CreateTopic {
            name: topic.to_string(),
            partitions: broker.config.num_partitions.max(1),
            configs: Vec::new(),
            replica,
            ack_count,
            internal: false,
            validate_only: false,
        })
        .await;
    match created {
        Ok(_) => tracing::info!(topic, "auto-created topic"),
        Err(e) if e.code == ErrorCode::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    wait_for_leaders(broker, topic, LEADER_WAIT).await;
    Ok(())
}

/// The Kafka error for a PD refusal; `invalid` is the one for a bad argument.
fn pd_error(e: &RpcError, invalid: ResponseError) -> ResponseError {
    match e.code {
        ErrorCode::AlreadyExists => ResponseError::TopicAlreadyExists,
        ErrorCode::NotFound => ResponseError::UnknownTopicOrPartition,
        ErrorCode::InvalidArgument => invalid,
        ErrorCode::NoCapacity => ResponseError::InvalidReplicationFactor,
        _ => ResponseError::RequestTimedOut,
    }
}

fn topic_configs_result(topic: &TopicInfo) -> Vec<CreatableTopicConfigs> {
    topic_config::KNOWN
        .iter()
        .map(|c| {
            let set = topic.config(c.key);
            CreatableTopicConfigs::default()
                .with_name(str_bytes(c.key))
                .with_value(Some(str_bytes(set.unwrap_or(c.default))))
                .with_config_source(if set.is_some() { 1 } else { 5 })
        })
        .collect()
}

pub async fn create_topics(
    broker: &SharedBroker,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::new();
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64).min(LEADER_WAIT);
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let mut error: Option<(ResponseError, String)> = None;
        if let Err(why) = validate_topic_name(&name) {
            error = Some((ResponseError::InvalidTopicException, why));
        } else if name == OFFSETS_TOPIC {
            error = Some((
                ResponseError::InvalidRequest,
                format!("{OFFSETS_TOPIC} is internal: brokers create it for consumer groups"),
            ));
        } else if !topic.assignments.is_empty() {
            error = Some((
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignment is not supported: PD places partitions".into(),
            ));
        } else if topic.num_partitions == 0 || topic.num_partitions < -1 {
            error = Some((
                ResponseError::InvalidPartitions,
                format!("invalid partition count {}", topic.num_partitions),
            ));
        } else if topic.replication_factor == 0 || topic.replication_factor < -1 {
            error = Some((
                ResponseError::InvalidReplicationFactor,
                format!("invalid replication factor {}", topic.replication_factor),
            ));
        }
        let mut configs = Vec::new();
        for c in &topic.configs {
            let key = c.name.to_string();
            let Some(value) = c.value.as_ref().map(|v| v.to_string()) else {
                continue;
            };
            if let Err(why) = topic_config::validate(&key, &value) {
                error.get_or_insert((ResponseError::InvalidConfig, why));
            }
            configs.push((key, value));
        }
        if let Some((error, message)) = error {
            results.push(result.failed(error, &message));
            continue;
        }
        let partitions = if topic.num_partitions == -1 {
            broker.config.num_partitions.max(1)
        } else {
            topic.num_partitions as u32
        };
        let Replication { replica, ack_count } = replication(broker, topic.replication_factor);
        let created = broker
            .pd
            .call(CreateTopic {
                name: name.clone(),
                partitions,
                configs,
                replica,
                ack_count,
                internal: false,
                validate_only: request.validate_only,
            })
            .await;
        match created {
            Ok(info) => {
                if !request.validate_only {
                    tracing::info!(topic = %name, partitions, replica, ack_count, "created topic");
                    wait_for_leaders(broker, &name, timeout).await;
                }
                if version >= 5 {
                    result = result
                        .with_num_partitions(info.partitions.len() as i32)
                        .with_replication_factor(1)
                        .with_configs(Some(topic_configs_result(&info)));
                }
                if version >= 7 {
                    result = result.with_topic_id(Uuid::from_bytes(info.id));
                }
                results.push(result);
            }
            Err(e) => {
                results.push(result.failed(pd_error(&e, ResponseError::InvalidRequest), &e.message))
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    broker: &SharedBroker,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics by name or id; earlier versions by name only.
    let mut wanted: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    wanted.extend(
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::new();
    for (name, id) in wanted {
        let name = name.or_else(|| {
            broker
                .snapshot()
                .topic_names_by_id
                .get(id.as_bytes())
                .cloned()
        });
        let mut result = DeletableTopicResult::default();
        if version >= 6 {
            result = result.with_topic_id(id);
        }
        let Some(name) = name else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        result = result.with_name(Some(TopicName(str_bytes(&name))));
        if name == OFFSETS_TOPIC {
            let mut r = result.with_error_code(ResponseError::InvalidRequest.code());
            if version >= 5 {
                r = r.with_error_message(Some(str_bytes("cannot delete an internal topic")));
            }
            responses.push(r);
            continue;
        }
        match broker.pd.call(DeleteTopic { name: name.clone() }).await {
            Ok(info) => {
                tracing::info!(topic = %name, "deleted topic");
                if version >= 6 {
                    result = result.with_topic_id(Uuid::from_bytes(info.id));
                }
                responses.push(result);
            }
            Err(e) => {
                let mut r =
                    result.with_error_code(pd_error(&e, ResponseError::InvalidRequest).code());
                if version >= 5 {
                    r = r.with_error_message(Some(str_bytes(&e.message)));
                }
                responses.push(r);
            }
        }
    }
    if let Err(e) = refresh(broker).await {
        tracing::debug!("metadata refresh after delete: {e}");
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    broker: &SharedBroker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64).min(LEADER_WAIT);
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if name == OFFSETS_TOPIC {
            // More partitions would move groups to other coordinators and lose their state.
            let message = "cannot add partitions to an internal topic";
            results.push(result.failed(ResponseError::InvalidRequest, message));
            continue;
        }
        if topic.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            let message = "manual replica assignment is not supported";
            results.push(result.failed(ResponseError::InvalidReplicaAssignment, message));
            continue;
        }
        if topic.count <= 0 {
            results.push(result.with_error_code(ResponseError::InvalidPartitions.code()));
            continue;
        }
        let grown = broker
            .pd
            .call(PdCreatePartitions {
                name: name.clone(),
                total: topic.count as u32,
                validate_only: request.validate_only,
            })
            .await;
        match grown {
            Ok(_) => {
                if !request.validate_only {
                    tracing::info!(topic = %name, total = topic.count, "added partitions");
                    wait_for_leaders(broker, &name, timeout).await;
                }
                results.push(result);
            }
            Err(e) => {
                let error = pd_error(&e, ResponseError::InvalidPartitions);
                results.push(result.failed(error, &e.message))
            }
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub async fn delete_records(
    broker: &SharedBroker,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::new();
        for p in topic.partitions {
            let request = |reply| DeleteRecordsMsg {
                offset: p.offset,
                reply,
            };
            let low = match partition::owned_index(broker, &name, p.partition_index) {
                Ok(index) => partition::ask(broker, &name, index, request).await,
                Err(error) => Err(error),
            };
            let low = low.and_then(|low| low);
            let (error, low) = code_or(low.map(|low| low as i64), -1);
            partitions.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error)
                    .with_low_watermark(low),
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

pub async fn describe_cluster(
    broker: &SharedBroker,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let snapshot = broker.snapshot();
    let brokers = snapshot
        .brokers
        .iter()
        .map(|b| {
            let (host, port) = host_port(&b.addr);
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id as i32))
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect();
    let controller = snapshot.brokers.first().map(|b| b.id as i32).unwrap_or(-1);
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&snapshot.cluster_id))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers);
    if version >= 1 {
        response = response.with_endpoint_type(1);
    }
    if request.include_cluster_authorized_operations {
        response = response.with_cluster_authorized_operations(super::metadata::CLUSTER_OPERATIONS);
    }
    response
}

pub async fn init_producer_id(
    broker: &SharedBroker,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        tracing::info!("refusing InitProducerId for a transactional producer: transactions are not supported yet");
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // A producer asking to bump its own epoch keeps its id while the epoch has room.
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return InitProducerIdResponse::default()
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match broker
        .pd
        .call(AllocateIds {
            key: "producer_id".into(),
            count: 1,
        })
        .await
    {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id as i64))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!("allocating a producer id failed: {e}");
            InitProducerIdResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
