//! The Strata range server.
//!
//! A WAL shared by all ranges ([`wal`]), one actix actor per stream range
//! ([`range`]) found through the [`registry`], a bounded tail cache ([`cache`]), the RPC
//! handlers ([`service`]), registration and heartbeats to the placement driver
//! ([`heartbeat`]), the upload of confirmed data to object storage ([`offload`]) and the
//! merging of small objects ([`compact`]), the
//! deletion of WAL segments nothing needs any more ([`reclaim`]) and the process wiring
//! ([`server`]). The stream client that brokers and
//! tools use is the `stream-client` crate; this crate holds no client code.

pub mod cache;
pub mod compact;
pub mod heartbeat;
pub mod metrics;
pub mod offload;
pub mod range;
pub mod reclaim;
pub mod registry;
pub mod server;
pub mod service;
pub mod wal;

pub use server::{run, start, Config, RunningServer, ServerError};
