//! Closing a connection actor's framed writer: flush what is queued, then stop.
//!
//! Owns the [`Wake`] message and [`close_writer`], shared by every actor that writes frames
//! through actix's `FramedWrite` (the RPC server's connections, the broker's Kafka
//! connections). Must not know what protocol the frames carry.

use std::time::Duration;

use actix::io::FramedWrite;
use actix::prelude::*;
use tokio::io::AsyncWrite;
use tokio_util::codec::Encoder;

/// How long a closing connection may take to flush before the actor stops regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Sent by an actor to itself so its context polls the writer again after [`close_writer`];
/// its handler does nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Flushes what `writer` has queued, then closes it; the actor's `WriteHandler::finished`
/// stops the actor. actix's `FramedWrite` does not wake itself on close: a [`Wake`] to self
/// wakes the context, and a timer stops the actor if the peer never reads what is left.
pub fn close_writer<A, I, W, C>(writer: &mut FramedWrite<I, W, C>, ctx: &mut Context<A>)
where
    A: Actor<Context = Context<A>> + Handler<Wake>,
    W: AsyncWrite + Unpin + 'static,
    C: Encoder<I> + 'static,
{
    writer.close();
    ctx.notify(Wake);
    ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
}
