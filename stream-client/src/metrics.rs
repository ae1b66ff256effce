//! What a stream client counts, for the process that embeds it to export on `/metrics`:
//! appends (count, bytes, latency from `append` to quorum confirmation, failures), range seals
//! by reason and range switches ([`StreamMetrics`]); and every object-store request by
//! operation and outcome with its latency and bytes ([`ObjectMetrics`], which processes that
//! use the object store without a stream client register alone).
//!
//! Cheap handles (each an `Arc` inside), cloned into writers and the object tier. Labels are
//! fixed small sets (operations, outcomes, reasons), never stream ids. Holds no other state
//! and does no I/O.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a range was sealed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SealReason {
    /// A replica failed or is being drained: the writer moved to a new range.
    Switch,
    /// The writer closed (a graceful handover or shutdown).
    Close,
    /// A new writer sealed its predecessor's open range (a takeover after a failure).
    Takeover,
}

impl SealReason {
    fn as_str(self) -> &'static str {
        match self {
            SealReason::Switch => "switch",
            SealReason::Close => "close",
            SealReason::Takeover => "takeover",
        }
    }
}

/// An object-store operation.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ObjectOp {
    Put,
    Get,
    GetRange,
    Delete,
    List,
}

impl ObjectOp {
    fn as_str(self) -> &'static str {
        match self {
            ObjectOp::Put => "put",
            ObjectOp::Get => "get",
            ObjectOp::GetRange => "get_range",
            ObjectOp::Delete => "delete",
            ObjectOp::List => "list",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpOutcomeLabels {
    op: &'static str,
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The stream client's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StreamMetrics {
    appends: Counter,
    append_bytes: Counter,
    append_errors: Counter,
    append_seconds: Histogram,
    seals: Family<ReasonLabel, Counter>,
    range_switches: Counter,
    /// The requests of the client's object store.
    pub objects: ObjectMetrics,
}

impl Default for StreamMetrics {
    fn default() -> Self {
        StreamMetrics {
            appends: Counter::default(),
            append_bytes: Counter::default(),
            append_errors: Counter::default(),
            // 100 µs .. ~52 s.
            append_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 20)),
            seals: Family::default(),
            range_switches: Counter::default(),
            objects: ObjectMetrics::default(),
        }
    }
}

/// Object-store requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ObjectMetrics {
    requests: Family<OpOutcomeLabels, Counter>,
    seconds: Histograms<OpLabel>,
    bytes: Family<OpLabel, Counter>,
}

impl Default for ObjectMetrics {
    fn default() -> Self {
        ObjectMetrics {
            requests: Family::default(),
            // 500 µs .. ~65 s.
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 18))
            }),
            bytes: Family::default(),
        }
    }
}

impl ObjectMetrics {
    /// Registers `object_store_requests`, `object_store_request_seconds` and
    /// `object_store_bytes`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "object_store_requests",
            "Object-store requests by operation and outcome (ok, error)",
            self.requests.clone(),
        );
        registry.register(
            "object_store_request_seconds",
            "Object-store request latency by operation",
            self.seconds.clone(),
        );
        registry.register(
            "object_store_bytes",
            "Bytes uploaded (put) and downloaded (get, get_range) by operation",
            self.bytes.clone(),
        );
    }

    /// One object-store request: its outcome, latency and the bytes it moved.
    pub(crate) fn request(&self, op: ObjectOp, ok: bool, seconds: f64, bytes: usize) {
        let op = op.as_str();
        let outcome = if ok { "ok" } else { "error" };
        self.requests
            .get_or_create(&OpOutcomeLabels { op, outcome })
            .inc();
        self.seconds.get_or_create(&OpLabel { op }).observe(seconds);
        if bytes > 0 {
            self.bytes
                .get_or_create(&OpLabel { op })
                .inc_by(bytes as u64);
        }
    }
}

impl StreamMetrics {
    /// Registers every metric under its exported name (`stream_*`, and `object_store_*` of
    /// [`ObjectMetrics`]).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stream_appends",
            "Stream appends confirmed by a quorum of replicas",
            self.appends.clone(),
        );
        registry.register(
            "stream_append_bytes",
            "Payload bytes of confirmed stream appends",
            self.append_bytes.clone(),
        );
        registry.register(
            "stream_append_errors",
            "Stream appends that failed (the writer stopped)",
            self.append_errors.clone(),
        );
        registry.register(
            "stream_append_seconds",
            "Stream appends from the call to quorum confirmation",
            self.append_seconds.clone(),
        );
        registry.register(
            "stream_seals",
            "Ranges sealed by this process, by reason (switch, close, takeover)",
            self.seals.clone(),
        );
        registry.register(
            "stream_range_switches",
            "Writers that moved to a new range because a replica failed or was drained",
            self.range_switches.clone(),
        );
        self.objects.register(registry);
    }

    pub(crate) fn appended(&self, bytes: usize, seconds: f64) {
        self.appends.inc();
        self.append_bytes.inc_by(bytes as u64);
        self.append_seconds.observe(seconds);
    }

    pub(crate) fn append_failed(&self) {
        self.append_errors.inc();
    }

    pub(crate) fn sealed(&self, reason: SealReason) {
        self.seals
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn switched_range(&self) {
        self.range_switches.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_with_its_labels() {
        let metrics = StreamMetrics::default();
        metrics.appended(10, 0.001);
        metrics.sealed(SealReason::Takeover);
        metrics.switched_range();
        metrics.objects.request(ObjectOp::Put, true, 0.01, 100);
        metrics.objects.request(ObjectOp::Get, false, 0.01, 0);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "stream_appends_total 1",
            "stream_append_bytes_total 10",
            "stream_seals_total{reason=\"takeover\"} 1",
            "stream_range_switches_total 1",
            "object_store_requests_total{op=\"put\",outcome=\"ok\"} 1",
            "object_store_requests_total{op=\"get\",outcome=\"error\"} 1",
            "object_store_bytes_total{op=\"put\"} 100",
            "object_store_request_seconds_count{op=\"put\"} 1",
            "stream_append_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
