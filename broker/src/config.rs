//! Broker settings, filled from command-line flags by `main`.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Placement driver address(es).
    pub pd: Vec<String>,
    /// Kafka listener (port 0 allowed).
    pub listen: String,
    /// Address given to clients in Metadata; the bound listen address when None.
    pub advertise: Option<String>,
    pub http_listen: String,
    /// Only address files and logs live here: a broker keeps no partition data.
    pub data: PathBuf,
    /// Partitions of auto-created topics (Kafka's `num.partitions`).
    pub num_partitions: u32,
    pub default_replication: u8,
    pub default_ack: u8,
    pub auto_create_topics: bool,
    /// How often retention (`retention.ms`, `retention.bytes`) is enforced.
    pub retention_check: Duration,
    /// Largest Kafka request accepted (Kafka's `socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// Kafka client connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Recent batches each partition keeps in memory for tail reads.
    pub partition_cache_bytes: usize,
    /// An idempotent producer that has not written to a partition for this long is forgotten
    /// there (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiration: Duration,
    /// The cluster's object store (`file:///dir`, `s3://bucket/prefix`), where offloaded
    /// history is read from; None: read everything from range servers.
    pub object_store: Option<String>,
    /// Budget of the block cache for reads from objects.
    pub object_cache_bytes: usize,
    /// Consumer groups and committed offsets.
    pub groups: crate::group::GroupConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pd: vec!["127.0.0.1:7000".into()],
            listen: "127.0.0.1:9092".into(),
            advertise: None,
            http_listen: "127.0.0.1:10092".into(),
            data: PathBuf::from("./strata-data/broker-1"),
            num_partitions: 1,
            default_replication: 3,
            default_ack: 2,
            auto_create_topics: true,
            retention_check: Duration::from_secs(5),
            max_request_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            partition_cache_bytes: 8 * 1024 * 1024,
            producer_id_expiration: Duration::from_millis(
                crate::partition::state::DEFAULT_PRODUCER_EXPIRY_MS as u64,
            ),
            object_store: None,
            object_cache_bytes: stream_client::objects::DEFAULT_CACHE_BYTES,
            groups: crate::group::GroupConfig::default(),
        }
    }
}
