//! The typed RPC client: one multiplexed TCP connection per peer, requests matched to
//! responses by request id, a timeout on every call, and reconnects with exponential backoff.
//!
//! A call that was in flight when its connection broke fails with `Unavailable` and is not
//! retried here: only the caller knows whether its request is safe to repeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use protocol::{ErrorCode, Frame, FrameCodec, Header, Rpc, RpcError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Encoder, FramedRead};

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_frame: usize,
    /// First wait after a failed connect; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_frame: protocol::frame::DEFAULT_MAX_FRAME,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Frame>>>>;

struct Connection {
    outbox: mpsc::UnboundedSender<Frame>,
    pending: Pending,
    closed: Arc<AtomicBool>,
}

struct ConnectState {
    current: Option<Arc<Connection>>,
    backoff: Duration,
    next_attempt: Option<Instant>,
}

struct Inner {
    addr: String,
    opts: ClientOptions,
    next_request_id: AtomicU64,
    state: tokio::sync::Mutex<ConnectState>,
}

/// A cheap-to-clone handle to one peer.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl RpcClient {
    pub fn new(addr: impl Into<String>) -> Self {
        RpcClient::with_options(addr, ClientOptions::default())
    }

    pub fn with_options(addr: impl Into<String>, opts: ClientOptions) -> Self {
        let backoff = opts.min_backoff;
        RpcClient {
            inner: Arc::new(Inner {
                addr: addr.into(),
                opts,
                next_request_id: AtomicU64::new(1),
                state: tokio::sync::Mutex::new(ConnectState {
                    current: None,
                    backoff,
                    next_attempt: None,
                }),
            }),
        }
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Sends `request` and waits for its response, at most the call timeout.
    pub async fn call<R: Rpc>(&self, request: R) -> Result<R::Response, RpcError> {
        self.call_with_timeout(request, self.inner.opts.call_timeout)
            .await
    }

    pub async fn call_with_timeout<R: Rpc>(
        &self,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response, RpcError> {
        let deadline = Instant::now() + timeout;
        let sent = tokio::time::timeout(timeout, self.send_with_deadline(request, deadline)).await;
        match sent {
            Ok(response) => response?.await,
            Err(_) => Err(self.timeout(timeout)),
        }
    }

    /// Queues `request` on the connection and returns once it is queued, with a future for
    /// its response (bounded by the call timeout, counted from now). Requests queued by
    /// successive `send` calls on one client reach the peer in that order, which lets a caller
    /// pipeline ordered requests (appends) without waiting for each answer.
    pub async fn send<R: Rpc>(&self, request: R) -> Result<PendingCall<R::Response>, RpcError> {
        let deadline = Instant::now() + self.inner.opts.call_timeout;
        self.send_with_deadline(request, deadline).await
    }

    async fn send_with_deadline<R: Rpc>(
        &self,
        request: R,
        deadline: Instant,
    ) -> Result<PendingCall<R::Response>, RpcError> {
        let body = protocol::encode(&request)?;
        // Too large to send: fail this call now rather than queue a frame the connection's
        // writer would have to drop (leaving the call to time out).
        let header = Header::request(R::OPCODE, 0, crate::telemetry::current_trace_context());
        let mut frame = Frame {
            header,
            body: Bytes::from(body),
        };
        if let Err(e) = FrameCodec::new(self.inner.opts.max_frame).check(&frame) {
            return Err(e.to_rpc_error());
        }
        let conn = self.connection(deadline).await?;
        let request_id = self.inner.next_request_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(request_id, tx);
        // Removes the pending entry however the call ends, so a timed-out call leaks nothing.
        let guard = PendingGuard {
            pending: conn.pending.clone(),
            request_id,
        };
        if conn.closed.load(Ordering::Acquire) {
            return Err(self.unavailable("connection closed"));
        }
        frame.header.request_id = request_id;
        if conn.outbox.send(frame).is_err() {
            return Err(self.unavailable("connection closed"));
        }
        Ok(PendingCall {
            rx,
            _guard: guard,
            deadline,
            addr: self.inner.addr.clone(),
            _response: std::marker::PhantomData,
        })
    }

    fn timeout(&self, timeout: Duration) -> RpcError {
        RpcError::new(
            ErrorCode::Timeout,
            format!("no answer from {} within {timeout:?}", self.inner.addr),
        )
    }

    fn unavailable(&self, what: &str) -> RpcError {
        RpcError::new(
            ErrorCode::Unavailable,
            format!("{}: {what}", self.inner.addr),
        )
    }

    async fn connection(&self, deadline: Instant) -> Result<Arc<Connection>, RpcError> {
        let mut state = self.inner.state.lock().await;
        loop {
            if let Some(conn) = &state.current {
                if !conn.closed.load(Ordering::Acquire) {
                    return Ok(conn.clone());
                }
                state.current = None;
            }
            if let Some(at) = state.next_attempt {
                let now = Instant::now();
                if at > now {
                    if at >= deadline {
                        return Err(self.unavailable("not reconnecting yet (backoff)"));
                    }
                    tokio::time::sleep(at - now).await;
                }
            }
            match self.connect().await {
                Ok(conn) => {
                    state.backoff = self.inner.opts.min_backoff;
                    state.next_attempt = None;
                    state.current = Some(conn);
                }
                Err(e) => {
                    state.next_attempt = Some(Instant::now() + state.backoff);
                    state.backoff = (state.backoff * 2).min(self.inner.opts.max_backoff);
                    return Err(e);
                }
            }
        }
    }

    async fn connect(&self) -> Result<Arc<Connection>, RpcError> {
        let opts = &self.inner.opts;
        let stream =
            match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(&self.inner.addr))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(self.unavailable(&format!("connect: {e}"))),
                Err(_) => return Err(self.unavailable("connect timed out")),
            };
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let (outbox, mut inbox) = mpsc::unbounded_channel::<Frame>();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let codec = FrameCodec::new(opts.max_frame);
        let addr = self.inner.addr.clone();

        // Writer: batches every queued frame into one write.
        let writer_closed = closed.clone();
        let mut encoder = codec.clone();
        let writer_addr = addr.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            while let Some(frame) = inbox.recv().await {
                let mut next = Some(frame);
                while let Some(frame) = next {
                    if let Err(e) = encoder.encode(frame, &mut buf) {
                        tracing::warn!(addr = %writer_addr, "cannot send frame: {e}");
                    }
                    if buf.len() >= 1 << 20 {
                        break;
                    }
                    next = inbox.try_recv().ok();
                }
                if let Err(e) = write.write_all(&buf).await {
                    tracing::debug!(addr = %writer_addr, "write failed: {e}");
                    break;
                }
                buf.clear();
            }
            writer_closed.store(true, Ordering::Release);
            let _ = write.shutdown().await;
        });

        // Reader: routes each response to its waiting call; fails all calls when the socket ends.
        let reader_pending = pending.clone();
        let reader_closed = closed.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(read, codec);
            while let Some(item) = frames.next().await {
                match item {
                    Ok(frame) => {
                        let waiter = lock(&reader_pending).remove(&frame.header.request_id);
                        match waiter {
                            Some(tx) => {
                                let _ = tx.send(frame);
                            }
                            None if frame.header.request_id == 0 && frame.header.is_error() => {
                                let msg = protocol::decode::<RpcError>(&frame.body)
                                    .map(|e| e.to_string())
                                    .unwrap_or_default();
                                tracing::warn!(%addr, "peer closed the connection: {msg}");
                            }
                            None => {} // the call timed out and went away
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%addr, "bad frame from peer: {e}");
                        break;
                    }
                }
            }
            reader_closed.store(true, Ordering::Release);
            // Dropping the senders fails every waiting call with Unavailable.
            lock(&reader_pending).clear();
        });

        Ok(Arc::new(Connection {
            outbox,
            pending,
            closed,
        }))
    }
}

/// A request on the wire, waiting for its response.
pub struct PendingCall<T> {
    rx: oneshot::Receiver<Frame>,
    _guard: PendingGuard,
    deadline: Instant,
    addr: String,
    _response: std::marker::PhantomData<fn() -> T>,
}

impl<T: protocol::Message> std::future::IntoFuture for PendingCall<T> {
    type Output = Result<T, RpcError>;
    type IntoFuture = futures::future::BoxFuture<'static, Result<T, RpcError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let PendingCall {
                rx,
                _guard,
                deadline,
                addr,
                ..
            } = self;
            let frame = match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(_)) => {
                    return Err(RpcError::new(
                        ErrorCode::Unavailable,
                        format!("{addr}: connection lost before the answer"),
                    ))
                }
                Err(_) => {
                    return Err(RpcError::new(
                        ErrorCode::Timeout,
                        format!("no answer from {addr} in time"),
                    ))
                }
            };
            if frame.header.is_error() {
                return Err(protocol::decode::<RpcError>(&frame.body)?);
            }
            protocol::decode::<T>(&frame.body)
        })
    }
}

struct PendingGuard {
    pending: Pending,
    request_id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.request_id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means another task panicked mid-insert; the map itself is intact.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
