//! One actor per Kafka client connection.
//!
//! Reads size-prefixed requests, decodes each header and body with `kafka-protocol` at the
//! version the client chose, hands it to [`crate::handlers`], and writes the responses in
//! request order (Kafka clients expect that) even though requests are served concurrently.
//! A Produce with acks=0 gets no response. A request it cannot parse, an unknown API or an
//! unsupported version (other than ApiVersions, which gets Kafka's v0 fallback) is logged
//! and the connection is closed: the byte stream can no longer be trusted and Kafka does the
//! same. Other connections are untouched.
//!
//! Backpressure: at most [`MAX_IN_FLIGHT`] requests of a connection are being served at once;
//! the next one is not read from the socket until one is answered, so an overloaded broker
//! slows its clients down (TCP pushes back) instead of queueing without bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::context::SharedBroker;
use crate::handlers;

/// Requests of one connection served at once; further ones wait in the socket.
pub const MAX_IN_FLIGHT: usize = 32;

pub fn codec(max_request_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(max_request_bytes)
        .new_codec()
}

pub struct KafkaConnection {
    broker: SharedBroker,
    peer: SocketAddr,
    writer: FramedWrite<Bytes, WriteHalf<TcpStream>, LengthDelimitedCodec>,
    /// Sequence number of the next request read.
    next_seq: u64,
    /// Sequence number of the next response to write.
    next_write: u64,
    /// Responses finished before an earlier one (None: no response, acks=0).
    finished: BTreeMap<u64, Option<Bytes>>,
    closing: bool,
    /// Dropped with the actor: ends the read loop, which releases the socket's read half.
    _stop_reading: tokio::sync::oneshot::Sender<()>,
}

impl KafkaConnection {
    pub fn start(broker: SharedBroker, stream: TcpStream, peer: SocketAddr) {
        let max = broker.config.max_request_bytes;
        KafkaConnection::create(move |ctx| {
            let (read, write) = tokio::io::split(stream);
            let frames = FramedRead::new(read, codec(max));
            let (stop_reading, stopped) = tokio::sync::oneshot::channel();
            actix_rt::spawn(read_loop(frames, ctx.address(), stopped));
            KafkaConnection {
                broker,
                peer,
                writer: FramedWrite::new(write, codec(max), ctx),
                next_seq: 0,
                next_write: 0,
                finished: BTreeMap::new(),
                closing: false,
                _stop_reading: stop_reading,
            }
        });
    }

    fn finish(&mut self, seq: u64, response: Option<Bytes>) {
        self.finished.insert(seq, response);
        while let Some(response) = self.finished.remove(&self.next_write) {
            if let Some(bytes) = response {
                if !self.closing {
                    self.writer.write(bytes);
                }
            }
            self.next_write += 1;
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>, why: &str) {
        tracing::warn!(peer = %self.peer, "closing Kafka connection: {why}");
        self.closing = true;
        // Flush what is queued, then shut the socket; the writer's `finished` stops the actor.
        ::actors::closing::close_writer(&mut self.writer, ctx);
    }
}

impl Actor for KafkaConnection {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.broker.metrics.connections.inc();
        tracing::debug!(peer = %self.peer, "Kafka connection opened");
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.broker.metrics.connections.dec();
        tracing::debug!(peer = %self.peer, "Kafka connection closed");
    }
}

impl WriteHandler<std::io::Error> for KafkaConnection {
    fn error(&mut self, err: std::io::Error, _ctx: &mut Context<Self>) -> Running {
        tracing::debug!(peer = %self.peer, "write failed: {err}");
        Running::Stop
    }
}

/// Reads requests while fewer than [`MAX_IN_FLIGHT`] are being served.
async fn read_loop(
    mut frames: FramedRead<ReadHalf<TcpStream>, LengthDelimitedCodec>,
    connection: Addr<KafkaConnection>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let permit = tokio::select! {
            _ = &mut stopped => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let item = tokio::select! {
            _ = &mut stopped => break,
            item = frames.next() => item,
        };
        match item {
            Some(item) => connection.do_send(Incoming { item, permit }),
            None => {
                connection.do_send(ReadClosed);
                break;
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Incoming {
    item: Result<BytesMut, std::io::Error>,
    /// Released when the request is answered (or dropped).
    permit: OwnedSemaphorePermit,
}

#[derive(Message)]
#[rtype(result = "()")]
struct ReadClosed;

impl Handler<::actors::closing::Wake> for KafkaConnection {
    type Result = ();

    fn handle(&mut self, _: ::actors::closing::Wake, _ctx: &mut Context<Self>) {}
}

impl Handler<ReadClosed> for KafkaConnection {
    type Result = ();

    fn handle(&mut self, _: ReadClosed, ctx: &mut Context<Self>) {
        if !self.closing {
            ctx.stop();
        }
    }
}

impl Handler<Incoming> for KafkaConnection {
    type Result = ();

    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        let Incoming { item, permit } = msg;
        if self.closing {
            return;
        }
        let frame = match item {
            Ok(frame) => frame.freeze(),
            Err(e) => {
                // Oversized length or a broken socket: the stream is out of step.
                self.close(ctx, &format!("bad frame: {e}"));
                return;
            }
        };
        let request = match handlers::parse(frame) {
            Ok(request) => request,
            Err(handlers::ParseError::Answer(bytes, why)) => {
                // ApiVersions at a version we do not speak: answered, then carry on.
                tracing::info!(peer = %self.peer, "{why}");
                let seq = self.next_seq;
                self.next_seq += 1;
                self.finish(seq, Some(bytes));
                return;
            }
            Err(handlers::ParseError::Close(why)) => {
                self.close(ctx, &why);
                return;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let fut = handlers::handle(self.broker.clone(), request);
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            drop(permit);
            match result {
                Ok(response) => act.finish(seq, response),
                Err(why) => act.close(ctx, &why),
            }
        }));
    }
}
