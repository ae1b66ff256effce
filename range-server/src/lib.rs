//! The Strata range server and the stream client.
//!
//! Server side: a WAL shared by all ranges ([`wal`]), one actix actor per stream range
//! ([`range`]) found through the [`registry`], a bounded tail cache ([`cache`]), the RPC
//! handlers ([`service`]), registration and heartbeats to the placement driver
//! ([`heartbeat`]) and the process wiring ([`server`]). Client side: [`client`], the stream
//! client brokers and tools use.

pub mod cache;
pub mod client;
pub mod heartbeat;
pub mod metrics;
pub mod range;
pub mod registry;
pub mod server;
pub mod service;
pub mod wal;

pub use server::{run, start, Config, RunningServer, ServerError};
