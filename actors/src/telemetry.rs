//! Tracing setup and trace-context propagation.
//!
//! [`init`] installs a `tracing` subscriber that logs to stderr (filter from `RUST_LOG`,
//! default `info`) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, exports spans through
//! OpenTelemetry OTLP (HTTP/protobuf; filter from `STRATA_TRACE_FILTER`, default
//! [`DEFAULT_TRACE_FILTER`], which includes the per-request spans of every process). [`current_trace_context`] and [`set_parent`] carry the
//! W3C `traceparent` through RPC frame headers so one request is one trace across processes.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What is exported when `STRATA_TRACE_FILTER` is not set: info everywhere plus the
/// per-request spans (RPC server, Kafka request), which are debug-level so that they cost
/// nothing when no exporter is configured.
pub const DEFAULT_TRACE_FILTER: &str =
    "info,actors::rpc::server=debug,broker=debug,range_server::range=debug,stream_client=debug";

/// Keeps the exporter alive; flushes buffered spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry shutdown: {e}");
            }
        }
    }
}

/// Installs the global subscriber. Call once, first thing in `main`; keep the guard.
/// `instance` names this process among those of its service (`service.instance.id`: its
/// listen address, or the pid when it listens on port 0), so a trace shows which range
/// server or broker did what.
pub fn init(service_name: &str, instance: &str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_filter(filter);
    let registry = tracing_subscriber::registry().with(fmt);

    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    if endpoint.is_empty() {
        if let Err(e) = registry.try_init() {
            eprintln!("tracing already initialised: {e}");
        }
        return TelemetryGuard { provider: None };
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!(
                "OTLP exporter for {endpoint} could not be built ({e}); tracing locally only"
            );
            let _ = registry.try_init();
            return TelemetryGuard { provider: None };
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    instance_id(instance),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer(service_name.to_string());
    // Per-request spans are at debug level so that, without export, nothing pays for them.
    let trace_filter =
        std::env::var("STRATA_TRACE_FILTER").unwrap_or_else(|_| DEFAULT_TRACE_FILTER.to_string());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(EnvFilter::new(trace_filter));
    if let Err(e) = registry.with(otel).try_init() {
        eprintln!("tracing already initialised: {e}");
    }
    tracing::info!(endpoint, "exporting traces through OTLP");
    TelemetryGuard {
        provider: Some(provider),
    }
}

/// `instance`, unless it ends in port 0 (not known yet): then `pid-N`.
fn instance_id(instance: &str) -> String {
    if instance.is_empty() || instance.ends_with(":0") {
        format!("pid-{}", std::process::id())
    } else {
        instance.to_string()
    }
}

/// The W3C `traceparent` of the current span, or an empty string when there is none.
pub fn current_trace_context() -> String {
    let context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent").unwrap_or_default()
}

/// Makes `span` a child of the remote span named by `traceparent` (no-op when empty).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    let context = TraceContextPropagator::new().extract(&carrier);
    if let Err(e) = span.set_parent(context) {
        tracing::debug!("cannot attach the remote trace context: {e:?}");
    }
}
