//! Keeps the broker's view of the cluster current by watching PD, and reconciles the
//! partition actors with it: a partition PD assigns to this broker gets an actor, one it no
//! longer owns (moved, topic deleted) has its actor stopped. It decides nothing itself: PD
//! owns every assignment.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actix::Actor;
use protocol::model::NodeKind;
use protocol::pd::{GetClusterInfo, ListNodes, ListTopics, Watch};
use protocol::RpcError;

use crate::context::{ClusterSnapshot, PartitionHandle, SharedBroker};
use crate::partition::{PartitionActor, Stop};

/// How long one watch waits for changes before the broker refreshes anyway (liveness of
/// other brokers is not evented, so this bounds how stale it can be).
const WATCH_WAIT: Duration = Duration::from_millis(1000);

/// Loads cluster metadata from PD and installs it (also starting and stopping partitions).
pub async fn refresh(broker: &SharedBroker) -> Result<(), RpcError> {
    let cluster_id = {
        let current = broker.snapshot();
        if current.cluster_id.is_empty() {
            broker.pd.call(GetClusterInfo {}).await?.cluster_id
        } else {
            current.cluster_id.clone()
        }
    };
    let topics = broker.pd.call(ListTopics {}).await?;
    let nodes = broker.pd.call(ListNodes {}).await?;
    let mut brokers: Vec<_> = nodes
        .into_iter()
        .filter(|n| n.kind == NodeKind::Broker && n.alive)
        .collect();
    brokers.sort_by_key(|n| n.id);
    let mut snapshot = ClusterSnapshot {
        cluster_id,
        brokers,
        topics: HashMap::new(),
        topic_names_by_id: HashMap::new(),
    };
    for topic in topics {
        snapshot
            .topic_names_by_id
            .insert(topic.id, topic.name.clone());
        snapshot.topics.insert(topic.name.clone(), topic);
    }
    *broker.metadata.borrow_mut() = Rc::new(snapshot);
    reconcile(broker);
    broker.metadata_changed.notify_waiters();
    Ok(())
}

/// Starts actors for partitions this broker now owns and stops the others.
fn reconcile(broker: &SharedBroker) {
    let snapshot = broker.snapshot();
    let mut wanted: HashMap<(String, u32), (u32, u64, u64)> = HashMap::new();
    for topic in snapshot.topics.values() {
        if topic.name == crate::group::OFFSETS_TOPIC {
            continue; // served by group coordinators (crate::group::reconcile)
        }
        for p in &topic.partitions {
            if p.leader == Some(broker.node_id) {
                wanted.insert(
                    (topic.name.clone(), p.index),
                    (p.leader_epoch, p.data_stream, p.meta_stream),
                );
            }
        }
    }
    let mut partitions = broker.partitions.borrow_mut();
    partitions.retain(|key, handle| {
        let keep = wanted.get(key).is_some_and(|(epoch, data, _)| {
            *epoch == handle.leader_epoch && *data == handle.data_stream
        }) && handle.addr.connected();
        if !keep {
            tracing::info!(topic = %key.0, partition = key.1, "no longer serving partition");
            handle.addr.do_send(Stop);
        }
        keep
    });
    for (key, (epoch, data, meta)) in wanted {
        if partitions.contains_key(&key) {
            continue;
        }
        tracing::info!(topic = %key.0, partition = key.1, leader_epoch = epoch, "serving partition");
        let addr =
            PartitionActor::new(broker.clone(), key.0.clone(), key.1, epoch, data, meta).start();
        partitions.insert(
            key,
            PartitionHandle {
                addr,
                leader_epoch: epoch,
                data_stream: data,
            },
        );
    }
    broker.metrics.partitions.set(partitions.len() as i64);
    drop(partitions);
    crate::group::reconcile(broker);
}

/// Runs forever: long-polls PD for changes and refreshes after each answer (or each
/// `WATCH_WAIT`), retrying with a pause when PD is unreachable.
pub async fn watch_loop(broker: SharedBroker) {
    let mut since = 0;
    loop {
        let watched = broker
            .pd
            .call(Watch {
                since,
                timeout_ms: WATCH_WAIT.as_millis() as u64,
            })
            .await;
        match watched {
            Ok(answer) => since = answer.revision,
            Err(e) => {
                tracing::warn!("watching PD failed: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if let Err(e) = refresh(&broker).await {
            tracing::warn!("refreshing metadata failed: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
