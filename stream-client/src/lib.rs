//! The stream client: what brokers and tools use to keep data in streams.
//!
//! [`StreamClient`] creates, describes, trims and deletes streams at the placement driver and
//! opens a stream for writing ([`StreamWriter`]: epoch bump, quorum seal of the last range,
//! a new range, pipelined replicated appends). Reading lives in `reader.rs`, the writer in
//! `writer.rs`, the PD client ([`PdClient`]) in `pd.rs` and range-server addresses
//! ([`Nodes`]) in `nodes.rs`. The client caches stream descriptors and range-server
//! addresses; it keeps no data and runs no server.

pub mod metrics;
mod nodes;
pub mod objects;
mod pd;
mod reader;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::model::{NodeId, RangeInfo, StreamId, StreamInfo};
use protocol::pd::{
    CreateRange, CreateStream, DeleteStream, DescribeStream, OpenStream, SealRange, TrimStream,
};
use protocol::range_rpc::Seal;
use protocol::{ErrorCode, Rpc, RpcError};

use metrics::SealReason;
pub use metrics::{ObjectMetrics, StreamMetrics};
pub use nodes::Nodes;
pub use objects::Objects;
pub use pd::PdClient;
pub use reader::ReadResult;
pub use writer::{AppendFuture, StreamWriter};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Longest wait for one replica's answer to an append before it counts as failed.
    pub append_timeout: Duration,
    /// How long PD calls and seals keep retrying transient failures.
    pub retry_for: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            append_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct StreamClient {
    pd: PdClient,
    nodes: Nodes,
    streams: Arc<Mutex<HashMap<StreamId, StreamInfo>>>,
    config: ClientConfig,
    /// Where offloaded data is read from; without it, only range servers are asked.
    objects: Option<Objects>,
    metrics: StreamMetrics,
}

impl StreamClient {
    /// `pd_addrs`: the placement driver's address(es).
    pub fn new(pd_addrs: &[String]) -> Self {
        StreamClient::with_config(pd_addrs, ClientConfig::default())
    }

    pub fn with_config(pd_addrs: &[String], config: ClientConfig) -> Self {
        let pd = PdClient::new(pd_addrs).with_retry_for(config.retry_for);
        let nodes = Nodes::new(pd.clone(), config.append_timeout);
        StreamClient {
            pd,
            nodes,
            streams: Arc::new(Mutex::new(HashMap::new())),
            config,
            objects: None,
            metrics: StreamMetrics::default(),
        }
    }

    /// Reads offloaded offsets from `objects` (the cluster's object store), counting its
    /// requests in this client's metrics.
    pub fn with_objects(mut self, objects: Objects) -> Self {
        self.objects = Some(objects.with_metrics(self.metrics.objects.clone()));
        self
    }

    /// This client's metrics (and its object store's), for the process to register.
    pub fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }

    pub fn objects(&self) -> Option<&Objects> {
        self.objects.as_ref()
    }

    pub fn pd(&self) -> &PdClient {
        &self.pd
    }

    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    pub async fn create_stream(&self, replica: u8, ack_count: u8) -> Result<StreamInfo, RpcError> {
        self.call_and_remember(CreateStream { replica, ack_count })
            .await
    }

    /// The stream as PD knows it now (also refreshes the cache).
    pub async fn describe(&self, stream_id: StreamId) -> Result<StreamInfo, RpcError> {
        self.call_and_remember(DescribeStream { stream_id }).await
    }

    /// Opens the stream for writing; fences every earlier writer.
    pub async fn open(&self, stream_id: StreamId) -> Result<StreamWriter, RpcError> {
        self.open_with_epoch(stream_id, 0).await
    }

    /// Opens for writing with an epoch of at least `min_epoch` (a Kafka leader epoch).
    pub async fn open_with_epoch(
        &self,
        stream_id: StreamId,
        min_epoch: u64,
    ) -> Result<StreamWriter, RpcError> {
        let info = self
            .pd
            .call(OpenStream {
                stream_id,
                min_epoch,
            })
            .await?;
        let epoch = info.epoch;
        let start = match info.last_range() {
            Some(range) if range.end.is_none() => {
                let (end, answered) = writer::seal_with_quorum(
                    self,
                    range,
                    epoch,
                    info.ack_count,
                    info.offloaded_end(),
                )
                .await?;
                self.seal_range(range, epoch, end, &[]).await?;
                self.metrics.sealed(SealReason::Takeover);
                writer::repair_sealed_tail(self, range, epoch, end, &answered).await;
                tracing::info!(
                    stream = stream_id,
                    range = range.index,
                    end,
                    epoch,
                    "sealed the previous writer's range"
                );
                end
            }
            Some(_) => info.sealed_end(),
            None => info.start_offset,
        };
        let range = self.create_range(stream_id, epoch, start, &[]).await?;
        let writer = writer::start(self.clone(), stream_id, epoch, info.ack_count, range).await?;
        self.invalidate(stream_id);
        Ok(writer)
    }

    /// Moves the stream's start offset forward.
    pub async fn trim(
        &self,
        stream_id: StreamId,
        start_offset: u64,
    ) -> Result<StreamInfo, RpcError> {
        self.call_and_remember(TrimStream {
            stream_id,
            start_offset,
        })
        .await
    }

    pub async fn delete(&self, stream_id: StreamId) -> Result<(), RpcError> {
        self.pd.call(DeleteStream { stream_id }).await?;
        self.invalidate(stream_id);
        Ok(())
    }

    pub(crate) async fn create_range(
        &self,
        stream_id: StreamId,
        epoch: u64,
        start: u64,
        exclude: &[NodeId],
    ) -> Result<RangeInfo, RpcError> {
        let deadline = Instant::now() + self.config.retry_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let result = self
                .pd
                .call(CreateRange {
                    stream_id,
                    epoch,
                    start,
                    exclude: exclude.to_vec(),
                })
                .await;
            match result {
                Err(e)
                    if e.code == ErrorCode::NoCapacity && Instant::now() + backoff < deadline =>
                {
                    tracing::info!(stream = stream_id, "no capacity for a new range yet: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// Seals `range` at `end` at PD, then tells its replicas (except `skip`) the final end.
    pub(crate) async fn seal_range(
        &self,
        range: &RangeInfo,
        epoch: u64,
        end: u64,
        skip: &[NodeId],
    ) -> Result<(), RpcError> {
        self.pd
            .call(SealRange {
                stream_id: range.stream_id,
                epoch,
                index: range.index,
                end,
            })
            .await?;
        self.tell_replicas_sealed(range, epoch, end, skip);
        Ok(())
    }

    /// Best effort: tells the replicas of `range` its final end so they serve no more than
    /// that and fence stale appends. PD already holds the end; this only helps direct readers.
    fn tell_replicas_sealed(&self, range: &RangeInfo, epoch: u64, end: u64, skip: &[NodeId]) {
        for &node in range.servers.iter().filter(|n| !skip.contains(n)) {
            let client = self.clone();
            let request = Seal {
                stream_id: range.stream_id,
                index: range.index,
                epoch,
                range_start: range.start,
                end: Some(end),
                node,
            };
            tokio::spawn(async move {
                if let Ok(rpc) = client.nodes.client(node).await {
                    let _ = rpc.call_with_timeout(request, Duration::from_secs(2)).await;
                }
            });
        }
    }

    async fn cached(&self, stream_id: StreamId) -> Result<StreamInfo, RpcError> {
        if let Some(info) = self.lock().get(&stream_id) {
            return Ok(info.clone());
        }
        self.describe(stream_id).await
    }

    /// Asks PD for a stream descriptor and keeps it in the cache.
    async fn call_and_remember<R>(&self, request: R) -> Result<StreamInfo, RpcError>
    where
        R: Rpc<Response = StreamInfo> + Clone,
    {
        let info = self.pd.call(request).await?;
        self.lock().insert(info.id, info.clone());
        Ok(info)
    }

    pub(crate) fn invalidate(&self, stream_id: StreamId) {
        self.lock().remove(&stream_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, StreamInfo>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}
