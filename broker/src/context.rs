//! What every actor of a broker shares: its identity, the clients of PD and of streams, the
//! cluster metadata snapshot and the table of partition actors it runs. Single-threaded
//! (actix System thread): shared through `Rc`, never across threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use protocol::model::{NodeId, NodeInfo, TopicInfo};
use stream_client::{PdClient, StreamClient};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::owner::OwnerHandle;
use crate::partition::Partition;

/// A consistent view of the cluster as PD last told it.
#[derive(Debug, Default)]
pub struct ClusterSnapshot {
    pub cluster_id: String,
    /// Live brokers, sorted by id.
    pub brokers: Vec<NodeInfo>,
    pub topics: HashMap<String, TopicInfo>,
    pub topic_names_by_id: HashMap<[u8; 16], String>,
}

impl ClusterSnapshot {
    pub fn broker(&self, id: NodeId) -> Option<&NodeInfo> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// Whether `topic` exists with a partition `index`.
    pub fn has_partition(&self, topic: &str, index: i32) -> bool {
        index >= 0
            && self
                .topics
                .get(topic)
                .is_some_and(|t| (index as usize) < t.partitions.len())
    }
}

pub struct Broker {
    pub node_id: NodeId,
    pub config: Config,
    pub advertised: String,
    pub pd: PdClient,
    pub streams: StreamClient,
    pub metadata: RefCell<Rc<ClusterSnapshot>>,
    /// Partition actors this broker runs, by (topic, partition).
    pub partitions: RefCell<HashMap<(String, u32), OwnerHandle<Partition>>>,
    pub metrics: Metrics,
    /// Woken whenever a new metadata snapshot is installed.
    pub metadata_changed: tokio::sync::Notify,
    /// Group coordinators this broker runs, by `__consumer_offsets` partition.
    pub coordinators: RefCell<crate::group::Coordinators>,
    /// Stream owner actors (partitions and coordinators) not yet stopped, including those
    /// still closing their streams after leaving the tables: a handover waits for zero.
    pub owners_running: Cell<usize>,
    /// Per-partition traffic since the last load report (shared with the heartbeat thread).
    pub loads: std::sync::Arc<crate::loads::Loads>,
}

impl Broker {
    pub fn snapshot(&self) -> Rc<ClusterSnapshot> {
        self.metadata.borrow().clone()
    }

    pub fn partition(&self, topic: &str, index: u32) -> Option<OwnerHandle<Partition>> {
        self.partitions
            .borrow()
            .get(&(topic.to_string(), index))
            .cloned()
    }

    /// Kafka broker id of this broker.
    pub fn broker_id(&self) -> i32 {
        self.node_id as i32
    }
}

pub type SharedBroker = Rc<Broker>;
