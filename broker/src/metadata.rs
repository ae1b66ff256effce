//! Keeps the broker's view of the cluster current by watching PD, and after each change tells
//! the owners' reconcile loop which partitions (and which `__consumer_offsets` partitions, for
//! group coordination) PD assigns here. It decides nothing itself: PD owns every assignment.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use protocol::model::NodeKind;
use protocol::pd::{GetClusterInfo, ListNodes, ListTopics, Watch};
use protocol::RpcError;

use crate::context::{ClusterSnapshot, SharedBroker};
use crate::group::Coordinator;
use crate::owner::reconcile::{start_and_stop, Assignment};
use crate::partition::Partition;

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

/// Starts owners (partition actors, group coordinators) for the partitions this broker now
/// owns and stops the others.
fn reconcile(broker: &SharedBroker) {
    let snapshot = broker.snapshot();
    let mut partitions = HashMap::new();
    let mut coordinators = HashMap::new();
    for topic in snapshot.topics.values() {
        for p in topic
            .partitions
            .iter()
            .filter(|p| p.leader == Some(broker.node_id))
        {
            let assignment = Assignment {
                leader_epoch: p.leader_epoch,
                data_stream: p.data_stream,
                meta_stream: p.meta_stream,
            };
            if topic.name == crate::group::OFFSETS_TOPIC {
                coordinators.insert(p.index, assignment);
            } else {
                partitions.insert((topic.name.clone(), p.index), assignment);
            }
        }
    }
    let running = start_and_stop::<Partition>(broker, partitions);
    broker.metrics.partitions.set(running as i64);
    start_and_stop::<Coordinator>(broker, coordinators);
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
