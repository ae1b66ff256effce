//! Broker metrics, served on `/metrics`: Kafka requests by API, traffic in total and per
//! partition this broker owns, connections, and the committed offsets of the groups it
//! coordinates (lag is the partition's high watermark minus the committed offset, computed in
//! PromQL: see docs/observability.md).
//!
//! Per-partition and per-group series are bounded: a partition's series exist while this
//! broker owns it (the partition actor removes them when it goes), a coordinator exports at
//! most [`MAX_GROUP_OFFSET_SERIES`] committed offsets and removes them when it stops.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A histogram per label set, each made with the same buckets.
pub type Histograms = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

/// The most committed-offset series one group coordinator exports.
pub const MAX_GROUP_OFFSET_SERIES: usize = 10_000;

/// One topic-partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: u32,
}

/// One group's committed offset of one topic-partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupOffsetLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// The series of the partitions this broker owns.
#[derive(Clone, Default)]
pub struct PartitionMetrics {
    pub produced_bytes: Family<PartitionLabels, Counter>,
    pub produced_records: Family<PartitionLabels, Counter>,
    pub fetched_bytes: Family<PartitionLabels, Counter>,
    pub fetched_records: Family<PartitionLabels, Counter>,
    pub high_watermark: Family<PartitionLabels, Gauge>,
    pub log_start_offset: Family<PartitionLabels, Gauge>,
}

impl PartitionMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "partition_produced_bytes",
            "Record batch bytes appended, per partition this broker owns",
            self.produced_bytes.clone(),
        );
        registry.register(
            "partition_produced_records",
            "Records appended, per partition this broker owns",
            self.produced_records.clone(),
        );
        registry.register(
            "partition_fetched_bytes",
            "Record batch bytes served to fetches, per partition this broker owns",
            self.fetched_bytes.clone(),
        );
        registry.register(
            "partition_fetched_records",
            "Records served to fetches, per partition this broker owns",
            self.fetched_records.clone(),
        );
        registry.register(
            "partition_high_watermark",
            "The next offset a produce gets (everything below is confirmed), per partition this broker owns",
            self.high_watermark.clone(),
        );
        registry.register(
            "partition_log_start_offset",
            "The first offset still readable, per partition this broker owns",
            self.log_start_offset.clone(),
        );
    }

    /// A produce stored `bytes` in `records` records in the partition of `labels`.
    pub fn produced(&self, labels: &PartitionLabels, bytes: u64, records: u64) {
        self.produced_bytes.get_or_create(labels).inc_by(bytes);
        self.produced_records.get_or_create(labels).inc_by(records);
    }

    /// A fetch response carried `bytes` in `records` records of the partition of `labels`.
    pub fn fetched(&self, labels: &PartitionLabels, bytes: u64, records: u64) {
        self.fetched_bytes.get_or_create(labels).inc_by(bytes);
        self.fetched_records.get_or_create(labels).inc_by(records);
    }

    /// Drops every series of `labels` (the partition left this broker).
    pub fn forget(&self, labels: &PartitionLabels) {
        self.produced_bytes.remove(labels);
        self.produced_records.remove(labels);
        self.fetched_bytes.remove(labels);
        self.fetched_records.remove(labels);
        self.high_watermark.remove(labels);
        self.log_start_offset.remove(labels);
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Mutex<Registry>>,
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Seconds from a request's decode to its response, by API.
    pub request_seconds: Histograms,
    pub produced_bytes: Counter,
    pub produced_batches: Counter,
    pub fetched_bytes: Counter,
    pub partitions: Gauge,
    pub connections: Gauge,
    pub connections_refused: Counter,
    pub groups_refused: Counter,
    pub producers_expired: Counter,
    pub partition: PartitionMetrics,
    /// Committed offsets of the groups this broker coordinates.
    pub group_committed_offset: Family<GroupOffsetLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        // 100 µs .. ~52 s.
        let request_seconds: Histograms =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 20)));
        let produced_bytes = Counter::default();
        let produced_batches = Counter::default();
        let fetched_bytes = Counter::default();
        let partitions = Gauge::default();
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        let groups_refused = Counter::default();
        let producers_expired = Counter::default();
        registry.register("kafka_requests", "Kafka requests by API", requests.clone());
        registry.register(
            "kafka_request_seconds",
            "Kafka requests from decode to response, by API (a produce waits for its replicas)",
            request_seconds.clone(),
        );
        registry.register(
            "produced_bytes",
            "Record batch bytes appended",
            produced_bytes.clone(),
        );
        registry.register(
            "produced_batches",
            "Record batches appended",
            produced_batches.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Record batch bytes served",
            fetched_bytes.clone(),
        );
        registry.register(
            "partitions_owned",
            "Partitions this broker serves",
            partitions.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed at once because --max-connections were open",
            connections_refused.clone(),
        );
        registry.register(
            "groups_refused",
            "New consumer groups refused because their coordinator held --max-groups-per-coordinator",
            groups_refused.clone(),
        );
        registry.register(
            "producers_expired",
            "Idempotent producers forgotten by a partition after --producer-id-expiration-ms idle",
            producers_expired.clone(),
        );
        let partition = PartitionMetrics::default();
        partition.register(&mut registry);
        let group_committed_offset = Family::<GroupOffsetLabels, Gauge>::default();
        registry.register(
            "consumer_group_committed_offset",
            "Committed offset of each group this broker coordinates, per topic-partition",
            group_committed_offset.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            request_seconds,
            produced_bytes,
            produced_batches,
            fetched_bytes,
            partitions,
            connections,
            connections_refused,
            groups_refused,
            producers_expired,
            partition,
            group_committed_offset,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
