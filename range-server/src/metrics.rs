//! The range server's Prometheus metrics: one struct of cheap atomic handles, cloned into
//! whoever updates them (WAL thread, range actors, cache) and registered once. Each metric is
//! declared once, in the table below, with its field, exported name, help and initial value.
//! Holds no other state and does no I/O.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Declares [`Metrics`], its `Default` and [`Metrics::register`] from one table:
/// `field: Type = initial value, "exported name" (under the `strata_rs` prefix), "help"`.
macro_rules! metrics {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $init:expr, $name:literal, $help:literal;)*) => {
        #[derive(Clone, Debug)]
        pub struct Metrics {
            $($(#[$doc])* pub $field: $ty,)*
        }

        impl Default for Metrics {
            fn default() -> Self {
                Metrics { $($field: $init,)* }
            }
        }

        impl Metrics {
            pub fn register(&self, registry: &mut Registry) {
                let r = registry.sub_registry_with_prefix("strata_rs");
                $(r.register($name, $help, self.$field.clone());)*
            }
        }
    };
}

metrics! {
    /// Appends acknowledged (durable).
    appends: Counter = Counter::default(), "appends", "Appends acknowledged";
    /// Payload bytes of acknowledged appends.
    append_bytes: Counter = Counter::default(),
        "append_bytes", "Payload bytes of acknowledged appends";
    /// Appends refused (any error code).
    append_errors: Counter = Counter::default(), "append_errors", "Appends refused";
    /// Fetch requests answered with data.
    fetches: Counter = Counter::default(), "fetches", "Fetch requests answered";
    /// Fetched batches served from the tail cache / read from the WAL.
    fetch_cache_hits: Counter = Counter::default(),
        "fetch_cache_hits", "Fetched batches served from the tail cache";
    fetch_disk_reads: Counter = Counter::default(),
        "fetch_disk_reads", "Fetched batches read from the WAL";
    /// fdatasync calls of the WAL writer.
    fsyncs: Counter = Counter::default(), "wal_fsyncs", "WAL fdatasync calls";
    /// Records per group commit.
    group_size: Histogram = Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        "wal_group_size", "Records per WAL group commit";
    /// Seconds per fdatasync.
    fsync_seconds: Histogram = Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        "wal_fsync_seconds", "WAL fdatasync latency";
    /// Bytes written to the WAL (framed records).
    wal_bytes: Counter = Counter::default(), "wal_bytes", "Bytes written to the WAL";
    /// 1 when the WAL refused writes after a disk error.
    wal_failed: Gauge = Gauge::default(),
        "wal_failed", "1 when the WAL refuses writes after a disk error";
    cache_bytes: Gauge = Gauge::default(), "cache_bytes", "Bytes in the tail cache";
    ranges: Gauge = Gauge::default(), "ranges", "Ranges held by this server";
    /// Batches in the ranges' indexes (dropped when trimmed or retired).
    indexed_batches: Gauge = Gauge::default(),
        "indexed_batches", "Batches indexed by the ranges held";
    /// New ranges refused at `--max-ranges`.
    ranges_refused: Counter = Counter::default(),
        "ranges_refused", "New ranges refused at --max-ranges";
    /// Ranges dropped because PD said they hold nothing readable.
    ranges_retired: Counter = Counter::default(),
        "ranges_retired", "Ranges retired (deleted or trimmed away at PD)";
    /// Bytes of WAL segments on disk.
    wal_disk_bytes: Gauge = Gauge::default(), "wal_disk_bytes", "Bytes of WAL segments on disk";
    /// WAL segments deleted because everything in them is offloaded or trimmed.
    wal_segments_reclaimed: Counter = Counter::default(),
        "wal_segments_reclaimed", "WAL segments deleted once offloaded or trimmed";
    /// Appends refused because the WAL was at --wal-max-bytes.
    storage_full: Counter = Counter::default(),
        "storage_full", "Appends refused because the WAL is at --wal-max-bytes";
    /// Objects uploaded and committed at PD by this server's offloader.
    objects_uploaded: Counter = Counter::default(),
        "objects_uploaded", "Objects uploaded and committed at PD";
    /// Bytes of those objects.
    object_bytes_uploaded: Counter = Counter::default(),
        "object_bytes_uploaded", "Bytes of objects uploaded and committed";
    /// Uploads or commits that failed (retried later).
    offload_failures: Counter = Counter::default(),
        "offload_failures", "Object uploads or commits that failed";
    /// Runs of small objects merged into one by this server's compactor.
    objects_merged: Counter = Counter::default(),
        "objects_merged", "Runs of small objects merged into one object";
    /// Confirmed bytes of the ranges this server offloads that are not in objects yet.
    offload_lag_bytes: Gauge = Gauge::default(),
        "offload_lag_bytes", "Confirmed bytes waiting to be offloaded by this server";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_under_its_name() {
        let mut registry = Registry::default();
        Metrics::default().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "appends_total",
            "append_bytes_total",
            "append_errors_total",
            "fetches_total",
            "fetch_cache_hits_total",
            "fetch_disk_reads_total",
            "wal_fsyncs_total",
            "wal_group_size_bucket",
            "wal_fsync_seconds_bucket",
            "wal_bytes_total",
            "wal_failed",
            "cache_bytes",
            "ranges",
            "indexed_batches",
            "ranges_refused_total",
            "ranges_retired_total",
            "wal_disk_bytes",
            "wal_segments_reclaimed_total",
            "storage_full_total",
            "objects_uploaded_total",
            "object_bytes_uploaded_total",
            "offload_failures_total",
            "offload_lag_bytes",
            "objects_merged_total",
        ] {
            assert!(
                text.contains(&format!("\nstrata_rs_{name}")),
                "{name} missing from {text}"
            );
        }
    }
}
