//! Typed routing of request frames to handlers. Owns the decode of request bodies and the
//! encode of responses; knows nothing of sockets.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use protocol::{ErrorCode, Header, Rpc, RpcError};

/// What a handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub peer: SocketAddr,
    pub header: Header,
}

type Handler =
    Box<dyn Fn(Bytes, RequestContext) -> LocalBoxFuture<'static, Result<Vec<u8>, RpcError>>>;

/// Opcode → handler table of one server.
///
/// A handler is called synchronously, in arrival order, for each request on a connection; only
/// the future it returns runs concurrently with later requests. So work that must keep the
/// order of requests (say, handing appends to a range actor with `do_send`) belongs in the
/// handler's synchronous part, before the `async` block.
#[derive(Default)]
pub struct Router {
    /// By opcode: the request's name and its handler.
    routes: HashMap<u16, (&'static str, Handler)>,
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    pub fn route<R, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        R: Rpc,
        F: Fn(R, RequestContext) -> Fut + 'static,
        Fut: Future<Output = Result<R::Response, RpcError>> + 'static,
    {
        let boxed: Handler = Box::new(
            move |body: Bytes, ctx: RequestContext| match protocol::decode::<R>(&body) {
                Ok(request) => {
                    let fut = handler(request, ctx);
                    async move { protocol::encode(&fut.await?) }.boxed_local()
                }
                Err(e) => async move { Err(e) }.boxed_local(),
            },
        );
        self.routes.insert(R::OPCODE.0, (R::NAME, boxed));
        self
    }

    /// The name of the request `opcode` routes to, if any.
    pub fn name(&self, opcode: u16) -> Option<&'static str> {
        self.routes.get(&opcode).map(|(name, _)| *name)
    }

    /// Runs the handler for `opcode`, giving an `UnknownOpcode` error when there is none.
    pub fn dispatch(
        &self,
        body: Bytes,
        ctx: RequestContext,
    ) -> LocalBoxFuture<'static, Result<Vec<u8>, RpcError>> {
        let opcode = ctx.header.opcode.0;
        match self.routes.get(&opcode) {
            Some((_, handler)) => handler(body, ctx),
            None => async move {
                Err(RpcError::new(
                    ErrorCode::UnknownOpcode,
                    format!("opcode {opcode} is not served here"),
                ))
            }
            .boxed_local(),
        }
    }
}
