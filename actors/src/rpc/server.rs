//! The RPC server: an acceptor actor and one actor per connection.
//!
//! A connection actor owns its socket: it decodes frames, hands each request to the
//! [`Router`] in arrival order, and writes responses as their futures complete. A frame that
//! cannot be cut from the byte stream (oversized, malformed) gets one error frame and the
//! connection is closed; a request whose body or opcode is bad gets an error response and the
//! connection goes on. Nothing here panics on peer input.

use std::net::SocketAddr;
use std::rc::Rc;

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use bytes::Bytes;
use protocol::frame::{FrameError, PROTOCOL_VERSION};
use protocol::{ErrorCode, Frame, FrameCodec, Header, Opcode, RpcError};
use tokio::io::WriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tracing::Instrument;

use super::router::{RequestContext, Router};
use crate::closing::{close_writer, Wake};

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest frame accepted, checked before the body is buffered.
    pub max_frame: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_frame: protocol::frame::DEFAULT_MAX_FRAME,
        }
    }
}

/// Binds `addr` (port 0 allowed) and starts accepting on the current actix System.
/// Returns the bound address.
pub async fn serve(addr: &str, router: Router, opts: ServerOptions) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let router = Rc::new(router);
    Acceptor::create(move |ctx| {
        ctx.add_stream(crate::listener::incoming(listener));
        Acceptor { router, opts }
    });
    Ok(local)
}

struct Acceptor {
    router: Rc<Router>,
    opts: ServerOptions,
}

impl Actor for Acceptor {
    type Context = Context<Self>;
}

impl StreamHandler<std::io::Result<(TcpStream, SocketAddr)>> for Acceptor {
    fn handle(&mut self, item: std::io::Result<(TcpStream, SocketAddr)>, _ctx: &mut Context<Self>) {
        let (stream, peer) = match item {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE or a connection reset before accept; keep listening.
                tracing::warn!("accept failed: {e}");
                return;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "set_nodelay: {e}");
        }
        let router = self.router.clone();
        let codec = FrameCodec::new(self.opts.max_frame);
        Connection::create(move |ctx| {
            let (read, write) = tokio::io::split(stream);
            ctx.add_stream(FramedRead::new(read, codec.clone()));
            Connection {
                router,
                peer,
                writer: FramedWrite::new(write, codec.clone(), ctx),
                codec,
                closing: false,
            }
        });
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("listener closed");
    }
}

/// One client connection.
pub struct Connection {
    router: Rc<Router>,
    peer: SocketAddr,
    writer: FramedWrite<Frame, WriteHalf<TcpStream>, FrameCodec>,
    /// The codec's limits, to check a response before it is queued.
    codec: FrameCodec,
    /// Set once the connection is being closed after a framing error: the last error frame is
    /// flushed, then the write side's `finished` stops the actor.
    closing: bool,
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        tracing::debug!(peer = %self.peer, "connection opened");
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        tracing::debug!(peer = %self.peer, "connection closed");
    }
}

impl Handler<Wake> for Connection {
    type Result = ();

    fn handle(&mut self, _: Wake, _ctx: &mut Context<Self>) {}
}

impl WriteHandler<FrameError> for Connection {
    fn error(&mut self, err: FrameError, _ctx: &mut Context<Self>) -> Running {
        tracing::warn!(peer = %self.peer, "write failed: {err}");
        Running::Stop
    }
}

impl Connection {
    fn respond(&mut self, header: &Header, result: Result<Vec<u8>, RpcError>) {
        let mut frame = match result {
            Ok(body) => Frame {
                header: header.response_to(false),
                body: Bytes::from(body),
            },
            Err(error) => Frame::error_response(header, &error),
        };
        // A response too large for a frame is answered as that error: sent as it is, it would
        // end the connection and every other call on it.
        if let Err(e) = self.codec.check(&frame) {
            tracing::warn!(peer = %self.peer, opcode = header.opcode.0, "response not sent: {e}");
            frame = Frame::error_response(header, &e.to_rpc_error());
        }
        if !self.closing {
            self.writer.write(frame);
        }
    }

    /// Flushes what is queued, then closes (see [`close_writer`]).
    fn close(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        close_writer(&mut self.writer, ctx);
    }
}

impl StreamHandler<Result<Frame, FrameError>> for Connection {
    fn handle(&mut self, item: Result<Frame, FrameError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                // The byte stream is out of step: answer once (request id 0) and close.
                tracing::warn!(peer = %self.peer, "closing connection: {e}");
                let header = Header::request(Opcode(0), 0, String::new());
                self.respond(&header, Err(e.to_rpc_error()));
                self.close(ctx);
                return;
            }
        };
        let header = frame.header.clone();
        if header.version != PROTOCOL_VERSION {
            tracing::warn!(peer = %self.peer, version = header.version, "unsupported protocol version");
            let err = RpcError::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported (want {PROTOCOL_VERSION})",
                    header.version
                ),
            );
            self.respond(&header, Err(err));
            return;
        }
        if header.is_response() {
            tracing::warn!(peer = %self.peer, "closing connection: peer sent a response frame");
            let err = RpcError::new(
                ErrorCode::MalformedFrame,
                "a server takes requests, not responses",
            );
            self.respond(&header, Err(err));
            self.close(ctx);
            return;
        }
        // Named after the request (`otel.name`), with OpenTelemetry's RPC attributes. A
        // request that is part of a trace (a Kafka request's appends, PD calls) is a debug
        // span, exported by default; one that is not (heartbeats, watches) only at trace
        // level, so that periodic chatter does not bury the requests in the tracing UI.
        let method = self.router.name(header.opcode.0).unwrap_or("unknown");
        macro_rules! rpc_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "rpc.server",
                    otel.name = method,
                    otel.kind = "server",
                    rpc.system = "strata",
                    rpc.method = method,
                    opcode = header.opcode.0,
                    peer = %self.peer
                )
            };
        }
        let span = if header.trace_context.is_empty() {
            rpc_span!(tracing::Level::TRACE)
        } else {
            rpc_span!(tracing::Level::DEBUG)
        };
        crate::telemetry::set_parent(&span, &header.trace_context);
        let request_ctx = RequestContext {
            peer: self.peer,
            header: header.clone(),
        };
        let fut = {
            let _entered = span.enter();
            self.router.dispatch(frame.body, request_ctx)
        };
        let peer = self.peer;
        ctx.spawn(
            fut.instrument(span)
                .into_actor(self)
                .map(move |result, act, _ctx| {
                    if let Err(e) = &result {
                        if matches!(e.code, ErrorCode::MalformedFrame | ErrorCode::UnknownOpcode) {
                            tracing::warn!(%peer, opcode = header.opcode.0, "bad request: {e}");
                        }
                    }
                    act.respond(&header, result);
                }),
        );
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.closing {
            ctx.stop();
        }
    }
}
