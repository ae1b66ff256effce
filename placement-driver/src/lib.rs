//! Strata placement driver (PD): metadata, placement, fencing epochs and liveness, replicated
//! with openraft.
//!
//! Module map:
//! - [`state`]: the replicated data and the rules (pure, deterministic); [`topics`]: the topic
//!   and partition part of it.
//! - [`balancer`]: which live broker owns each partition (pure plan + leader-only task).
//! - [`collector`]: the leader's upkeep of object storage (expired uploads, unneeded
//!   objects, orphans).
//! - [`log_store`]: the durable Raft log and vote.
//! - [`state_machine`]: the openraft adaptor for [`state`], snapshots.
//! - [`watch`]: recent change events and long-poll.
//! - [`liveness`]: heartbeat leases (leader memory only).
//! - [`holdings`]: how far each range server holds each range (leader memory only).
//! - [`moves`]: partition moves in flight and their timing (leader memory only).
//! - [`loads`]: per-partition load as brokers report it (leader memory only).
//! - [`service`]: request handlers; [`writes`]: their Raft writes, gathered into batches.
//! - [`network`]: Raft traffic between voters over the Strata RPC.
//! - [`status`]: the status page and its JSON, on the HTTP port.
//! - [`server`]: process wiring ([`run`]).

use std::io::Cursor;

pub mod balancer;
pub mod collector;
pub mod fsutil;
pub mod holdings;
pub mod liveness;
pub mod loads;
pub mod log_store;
pub mod moves;
pub mod network;
pub mod server;
pub mod service;
pub mod state;
pub mod state_machine;
pub mod status;
pub mod topics;
pub mod watch;
pub mod writes;

pub use openraft::BasicNode;

pub use server::{run, start, Config, PdError, Running};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of the placement driver.
    pub TypeConfig:
        D = state::Command,
        R = state::ApplyResult,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;

/// Milliseconds since the Unix epoch by this machine's clock (0 if the clock is before it).
/// Only the leader reads it, to put times into commands.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
