//! FindCoordinator: where a group's coordinator is (the leader of its `__consumer_offsets`
//! partition), creating `__consumer_offsets` when it does not exist yet. It does not talk to
//! coordinator actors.

use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::*;
use protocol::pd::CreateTopic;
use protocol::ErrorCode;

use super::s;
use crate::context::SharedBroker;
use crate::group::{offsets_partition, OFFSETS_TOPIC};
use crate::handlers::admin::wait_for_leaders;
use crate::handlers::metadata::{host_port, live_leader};
use crate::handlers::str_bytes;
use crate::topic_config::CLEANUP_POLICY;

/// Longest FindCoordinator waits for a new `__consumer_offsets` to get leaders.
const CREATE_WAIT: Duration = Duration::from_secs(5);

/// Creates `__consumer_offsets` (internal, compacted) if it does not exist yet; any broker
/// may race to do it, AlreadyExists is fine.
pub(crate) async fn ensure_offsets_topic(broker: &SharedBroker) {
    if broker.snapshot().topics.contains_key(OFFSETS_TOPIC) {
        return;
    }
    let created = broker
        .pd
        .call(CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: broker.config.groups.offsets_topic_partitions.max(1),
            configs: vec![(CLEANUP_POLICY.to_string(), "compact".to_string())],
            replica: broker.config.default_replication,
            ack_count: broker.config.default_ack,
            internal: true,
            validate_only: false,
        })
        .await;
    match created {
        Ok(_) => tracing::info!(
            partitions = broker.config.groups.offsets_topic_partitions,
            "created {OFFSETS_TOPIC}"
        ),
        Err(e) if e.code == ErrorCode::AlreadyExists => {}
        Err(e) => {
            tracing::warn!("creating {OFFSETS_TOPIC} failed: {e}");
            return;
        }
    }
    wait_for_leaders(broker, OFFSETS_TOPIC, CREATE_WAIT).await;
}

/// Where the coordinator of one key is, or why it is not known.
struct Located {
    error: Option<E>,
    node_id: i32,
    host: String,
    port: i32,
    message: Option<String>,
}

impl Located {
    fn failed(error: E, message: Option<String>) -> Located {
        Located {
            error: Some(error),
            node_id: -1,
            host: String::new(),
            port: -1,
            message,
        }
    }

    /// The error code to encode.
    fn code(&self) -> i16 {
        crate::handlers::error_code(self.error)
    }
}

/// The coordinator of `key`: the live leader of its `__consumer_offsets` partition.
fn locate(broker: &SharedBroker, key: &str) -> Located {
    let snapshot = broker.snapshot();
    let leader = snapshot.topics.get(OFFSETS_TOPIC).and_then(|topic| {
        let index = offsets_partition(&snapshot, key)?;
        topic.partitions.iter().find(|p| p.index == index)
    });
    let Some(partition) = leader else {
        return Located::failed(E::CoordinatorNotAvailable, None);
    };
    let id = live_leader(&snapshot, partition.leader);
    match snapshot.broker(id.max(0) as u64).filter(|_| id >= 0) {
        Some(node) => {
            let (host, port) = host_port(&node.addr);
            Located {
                error: None,
                node_id: id,
                host,
                port,
                message: None,
            }
        }
        None => Located::failed(E::CoordinatorNotAvailable, None),
    }
}

pub async fn find_coordinator(
    broker: &SharedBroker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(s).collect()
    } else {
        vec![s(&request.key)]
    };
    let located: Vec<Located> = if request.key_type != 0 {
        let why = "only group coordinators exist here (no transactions)".to_string();
        keys.iter()
            .map(|_| Located::failed(E::InvalidRequest, Some(why.clone())))
            .collect()
    } else {
        ensure_offsets_topic(broker).await;
        keys.iter().map(|k| locate(broker, k)).collect()
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .iter()
            .zip(located)
            .map(|(key, at)| {
                Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(BrokerId(at.node_id))
                    .with_host(str_bytes(&at.host))
                    .with_port(at.port)
                    .with_error_code(at.code())
                    .with_error_message(at.message.map(|m| str_bytes(&m)))
            })
            .collect();
    } else if let Some(at) = located.into_iter().next() {
        response = response
            .with_error_code(at.code())
            .with_node_id(BrokerId(at.node_id))
            .with_host(str_bytes(&at.host))
            .with_port(at.port);
        if version >= 1 {
            response = response.with_error_message(at.message.map(|m| str_bytes(&m)));
        }
    }
    response
}
