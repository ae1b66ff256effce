//! The range server's Prometheus metrics: one struct of cheap atomic handles, cloned into
//! whoever updates them (WAL thread, range actors, cache) and registered once. Holds no other
//! state and does no I/O.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug)]
pub struct Metrics {
    /// Appends acknowledged (durable).
    pub appends: Counter,
    /// Payload bytes of acknowledged appends.
    pub append_bytes: Counter,
    /// Appends refused (any error code).
    pub append_errors: Counter,
    /// Fetch requests answered with data.
    pub fetches: Counter,
    /// Fetched batches served from the tail cache / read from the WAL.
    pub fetch_cache_hits: Counter,
    pub fetch_disk_reads: Counter,
    /// fdatasync calls of the WAL writer.
    pub fsyncs: Counter,
    /// Records per group commit.
    pub group_size: Histogram,
    /// Seconds per fdatasync.
    pub fsync_seconds: Histogram,
    /// Bytes written to the WAL (framed records).
    pub wal_bytes: Counter,
    /// 1 when the WAL refused writes after a disk error.
    pub wal_failed: Gauge,
    pub cache_bytes: Gauge,
    pub ranges: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            appends: Counter::default(),
            append_bytes: Counter::default(),
            append_errors: Counter::default(),
            fetches: Counter::default(),
            fetch_cache_hits: Counter::default(),
            fetch_disk_reads: Counter::default(),
            fsyncs: Counter::default(),
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            wal_bytes: Counter::default(),
            wal_failed: Gauge::default(),
            cache_bytes: Gauge::default(),
            ranges: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strata_rs");
        r.register("appends", "Appends acknowledged", self.appends.clone());
        r.register(
            "append_bytes",
            "Payload bytes of acknowledged appends",
            self.append_bytes.clone(),
        );
        r.register(
            "append_errors",
            "Appends refused",
            self.append_errors.clone(),
        );
        r.register("fetches", "Fetch requests answered", self.fetches.clone());
        r.register(
            "fetch_cache_hits",
            "Fetched batches served from the tail cache",
            self.fetch_cache_hits.clone(),
        );
        r.register(
            "fetch_disk_reads",
            "Fetched batches read from the WAL",
            self.fetch_disk_reads.clone(),
        );
        r.register("wal_fsyncs", "WAL fdatasync calls", self.fsyncs.clone());
        r.register(
            "wal_group_size",
            "Records per WAL group commit",
            self.group_size.clone(),
        );
        r.register(
            "wal_fsync_seconds",
            "WAL fdatasync latency",
            self.fsync_seconds.clone(),
        );
        r.register(
            "wal_bytes",
            "Bytes written to the WAL",
            self.wal_bytes.clone(),
        );
        r.register(
            "wal_failed",
            "1 when the WAL refuses writes after a disk error",
            self.wal_failed.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes in the tail cache",
            self.cache_bytes.clone(),
        );
        r.register("ranges", "Ranges held by this server", self.ranges.clone());
    }
}
