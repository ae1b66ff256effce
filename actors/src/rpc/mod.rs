//! RPC over TCP with the `protocol` frame codec.
//!
//! - [`Router`] maps opcodes to typed handlers.
//! - [`serve`] starts an acceptor actor; each accepted connection gets its own
//!   [`server::Connection`] actor that reads pipelined requests, dispatches them in arrival
//!   order and writes each response as soon as it is ready (responses are matched by request
//!   id, so they may overtake each other).
//! - [`RpcClient`] is the typed client: one multiplexed connection per peer address,
//!   per-call timeouts, reconnect with backoff.

mod client;
mod router;
mod server;

pub use client::{ClientOptions, PendingCall, RpcClient};
pub use router::{RequestContext, Router};
pub use server::{serve, ServerOptions};
