//! Broker metrics, served on `/metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A histogram per label set, each made with the same buckets.
pub type Histograms = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

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
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
