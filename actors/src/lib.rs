//! The actix building blocks every Strata process shares.
//!
//! - [`rpc`]: the RPC server (an acceptor actor and one actor per connection, pipelined
//!   requests, typed routing) and the typed, multiplexed RPC client.
//! - [`telemetry`]: `tracing` setup, exported through OpenTelemetry OTLP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace-context propagation through frames.
//! - [`http`]: the small per-process HTTP endpoint (`/healthz`, Prometheus `/metrics`);
//!   [`process_metrics`]: the process's memory, threads, descriptors and CPU in `/metrics`.
//! - [`closing`]: flushing and closing a connection actor's framed writer.
//! - [`listener`]: the stream of accepted connections every listener uses.
//! - [`process`]: process chores (address files, shutdown signals).
//! - [`throttle`]: at most one log line a second for a repeated warning.
//!
//! Nothing here knows about streams, ranges or Kafka.

pub mod closing;
pub mod http;
pub mod listener;
pub mod process;
pub mod process_metrics;
pub mod rpc;
pub mod telemetry;
pub mod throttle;

pub use rpc::{serve, ClientOptions, RequestContext, Router, RpcClient, ServerOptions};
