//! Accepting TCP connections, for every listener of every process: one stream of accepted
//! sockets. After an accept error (typically out of file descriptors) it waits a moment
//! before accepting again instead of spinning on the error; the error is still passed on so
//! the acceptor can log it. It decides nothing about whom to accept.

use std::net::SocketAddr;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};

/// How long to wait after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connections `listener` accepts, for as long as it lives.
pub fn incoming(
    listener: TcpListener,
) -> impl Stream<Item = std::io::Result<(TcpStream, SocketAddr)>> {
    futures::stream::unfold((listener, false), |(listener, failed)| async move {
        if failed {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
        let accepted = listener.accept().await;
        let failed = accepted.is_err();
        Some((accepted, (listener, failed)))
    })
}
