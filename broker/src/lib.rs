//! The Strata broker: a stateless Kafka front end over elastic streams.
//!
//! - [`server`]: start-up (listener, PD registration, metadata), [`membership`] heartbeats.
//! - [`connection`]: one actor per client connection; [`handlers`]: one module per Kafka API.
//! - [`partition`]: one actor per owned partition, the single writer of its streams.
//! - [`group`]: consumer groups; one coordinator actor per owned `__consumer_offsets` partition.
//! - [`metadata`]: the cluster view from PD and which partitions this broker runs.
//! - [`batch`]: record-batch header checks and rewrites; [`topic_config`]: topic configs.
//!
//! Nothing a broker keeps on its own disk is needed to recover: all partition state lives in
//! streams (data and meta) and at PD.

pub mod batch;
pub mod config;
pub mod connection;
pub mod context;
pub mod group;
pub mod handlers;
pub mod membership;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod server;
pub mod topic_config;

pub use config::Config;
pub use server::{start, BrokerError, RunningBroker};
