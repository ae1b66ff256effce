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

/// `(error, node id, host, port)` of the coordinator of `key`.
fn locate(broker: &SharedBroker, key: &str) -> (i16, i32, String, i32) {
    let snapshot = broker.snapshot();
    let leader = snapshot.topics.get(OFFSETS_TOPIC).and_then(|topic| {
        let index = offsets_partition(&snapshot, key)?;
        topic.partitions.iter().find(|p| p.index == index)
    });
    let Some(partition) = leader else {
        return (E::CoordinatorNotAvailable.code(), -1, String::new(), -1);
    };
    let id = live_leader(&snapshot, partition.leader);
    match snapshot.broker(id.max(0) as u64).filter(|_| id >= 0) {
        Some(node) => {
            let (host, port) = host_port(&node.addr);
            (0, id, host, port)
        }
        None => (E::CoordinatorNotAvailable.code(), -1, String::new(), -1),
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
    let located: Vec<(i16, i32, String, i32, Option<String>)> = if request.key_type != 0 {
        let why = "only group coordinators exist here (no transactions)".to_string();
        keys.iter()
            .map(|_| {
                (
                    E::InvalidRequest.code(),
                    -1,
                    String::new(),
                    -1,
                    Some(why.clone()),
                )
            })
            .collect()
    } else {
        ensure_offsets_topic(broker).await;
        keys.iter()
            .map(|k| {
                let (e, id, host, port) = locate(broker, k);
                (e, id, host, port, None)
            })
            .collect()
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .iter()
            .zip(located)
            .map(|(key, (error, id, host, port, message))| {
                Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(&host))
                    .with_port(port)
                    .with_error_code(error)
                    .with_error_message(message.map(|m| str_bytes(&m)))
            })
            .collect();
    } else if let Some((error, id, host, port, message)) = located.into_iter().next() {
        response = response
            .with_error_code(error)
            .with_node_id(BrokerId(id))
            .with_host(str_bytes(&host))
            .with_port(port);
        if version >= 1 {
            response = response.with_error_message(message.map(|m| str_bytes(&m)));
        }
    }
    response
}
