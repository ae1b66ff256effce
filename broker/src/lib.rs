//! The Strata broker: a stateless Kafka front end over elastic streams.
//!
//! - [`server`]: start-up (listener, PD registration, metadata), [`membership`] heartbeats.
//! - [`connection`]: one actor per client connection; [`handlers`]: one module per Kafka API.
//! - [`owner`]: the lifecycle of an actor owning a partition's streams (open with fencing,
//!   replay, append, snapshot, stop) and the loop that starts and stops them.
//! - [`partition`]: one owner per partition, the single writer of its streams.
//! - [`group`]: consumer groups; one coordinator (an owner) per `__consumer_offsets` partition.
//! - [`read`]: the one way streams are read (tail cache, then range servers).
//! - [`metadata`]: the cluster view from PD and which partitions this broker runs.
//! - [`batch`]: record-batch header checks and rewrites; [`topic_config`]: topic configs.
//!
//! Nothing a broker keeps on its own disk is needed to recover: all partition state lives in
//! streams (data and meta) and at PD.

pub mod batch;
pub mod config;
pub mod connection;
pub mod context;
pub mod decompress;
pub mod group;
pub mod handlers;
pub mod loads;
pub mod membership;
pub mod metadata;
pub mod metrics;
pub mod owner;
pub mod partition;
pub mod read;
pub mod server;
pub mod topic_config;

pub use config::Config;
pub use server::{start, BrokerError, RunningBroker};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
