//! A placement-driver client that retries what is safe to retry: connection trouble,
//! timeouts and `NotLeader` (it then tries the next PD address). It holds no metadata.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::{ClientOptions, RpcClient};
use protocol::{ErrorCode, Rpc, RpcError};

#[derive(Clone)]
pub struct PdClient {
    clients: Arc<Vec<RpcClient>>,
    current: Arc<AtomicUsize>,
    /// How long one call keeps retrying transient failures before giving up.
    retry_for: Duration,
}

impl PdClient {
    /// `addrs`: one or more PD addresses, comma separated or as a list.
    pub fn new(addrs: &[String]) -> Self {
        let opts = ClientOptions {
            call_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let clients = addrs
            .iter()
            .flat_map(|a| a.split(','))
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(|a| RpcClient::with_options(a.to_string(), opts.clone()))
            .collect::<Vec<_>>();
        PdClient {
            clients: Arc::new(clients),
            current: Arc::new(AtomicUsize::new(0)),
            retry_for: Duration::from_secs(30),
        }
    }

    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// Calls the PD, retrying transient failures with backoff for up to `retry_for`.
    pub async fn call<R: Rpc + Clone>(&self, request: R) -> Result<R::Response, RpcError> {
        if self.clients.is_empty() {
            return Err(RpcError::new(
                ErrorCode::InvalidArgument,
                "no PD address given",
            ));
        }
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(20);
        loop {
            let index = self.current.load(Ordering::Relaxed) % self.clients.len();
            let result = self.clients[index].call(request.clone()).await;
            match result {
                Err(e) if e.is_transient() && Instant::now() + backoff < deadline => {
                    if e.code == ErrorCode::NotLeader || e.code == ErrorCode::Unavailable {
                        self.current.store(index + 1, Ordering::Relaxed);
                    }
                    tracing::debug!("PD call {} failed, retrying: {e}", R::OPCODE.0);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }
}
