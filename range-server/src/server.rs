//! Process wiring: configuration, WAL recovery, the RPC and HTTP listeners, address files and
//! the PD heartbeat task. Holds no range logic. [`start`] must run inside an actix System;
//! the binary's `main` only parses flags and calls [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::TailCache;
use crate::heartbeat::{self, HeartbeatConfig};
use crate::metrics::Metrics;
use crate::offload::{self, OffloadConfig, OffloadTasks};
use crate::reclaim;
use crate::registry::RangeRegistry;
use crate::service;
use crate::wal::{Wal, WalError, WalOptions};

#[derive(Debug, Clone)]
pub struct Config {
    /// Placement driver RPC address.
    pub pd: String,
    pub listen: String,
    pub http_listen: String,
    /// Address announced to PD; the bound listen address when None.
    pub advertise: Option<String>,
    pub data: PathBuf,
    pub cache_bytes: usize,
    pub segment_bytes: u64,
    pub max_frame_bytes: usize,
    /// Most ranges that appends and seals may create on this server.
    pub max_ranges: usize,
    /// The cluster's object store (`file:///dir`, `s3://bucket/prefix`); None: no offload.
    pub object_store: Option<String>,
    pub offload: OffloadConfig,
    /// WAL disk budget; None: unbounded.
    pub wal_max_bytes: Option<u64>,
}

/// Default of [`Config::max_ranges`].
pub const DEFAULT_MAX_RANGES: usize = 100_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            pd: "127.0.0.1:7000".into(),
            listen: "127.0.0.1:7101".into(),
            http_listen: "127.0.0.1:8101".into(),
            advertise: None,
            data: PathBuf::from("./strata-data/range-server-1"),
            cache_bytes: 256 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            max_frame_bytes: protocol::frame::DEFAULT_MAX_FRAME,
            max_ranges: DEFAULT_MAX_RANGES,
            object_store: None,
            offload: OffloadConfig::default(),
            wal_max_bytes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("WAL: {0}")]
    Wal(#[from] WalError),
    #[error("cannot bind the {what} listener at {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    ObjectStore(protocol::RpcError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// A started server. Dropping it does not stop it; the actix System owns its tasks.
pub struct RunningServer {
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub advertise: String,
    pub wal: Wal,
    pub ranges: Arc<RangeRegistry>,
    pub metrics: Metrics,
    /// The id PD gave this node (0 until registered).
    pub node_id: Arc<AtomicU64>,
}

/// Recovers the WAL, starts serving RPC and HTTP, writes `rpc.addr` / `http.addr` in the data
/// directory and starts registration and heartbeats. Call inside an actix System.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ServerError::Io { what, source }
    };
    let bind = |what: &'static str, addr: &str| {
        let addr = addr.to_string();
        move |source| ServerError::Bind { what, addr, source }
    };
    std::fs::create_dir_all(&config.data).map_err(io("create the data directory"))?;
    let metrics = Metrics::default();
    let started = Instant::now();
    let objects = config
        .object_store
        .as_deref()
        .map(|url| stream_client::Objects::open(url, 0))
        .transpose()
        .map_err(ServerError::ObjectStore)?;
    let wal_dir = config.data.join("wal");
    let opts = WalOptions {
        segment_bytes: segment_bytes(&config),
        max_record_bytes: config.max_frame_bytes,
        max_bytes: config.wal_max_bytes,
        ..WalOptions::default()
    };
    let wal_metrics = metrics.clone();
    let (wal, mut recovered) =
        tokio::task::spawn_blocking(move || Wal::open(&wal_dir, opts, wal_metrics))
            .await
            .map_err(|e| WalError::Io(format!("recovery task: {e}")))??;
    let recovery_ms = started.elapsed().as_millis();

    let cache = Arc::new(TailCache::new(
        config.cache_bytes,
        metrics.cache_bytes.clone(),
    ));
    // Set once registered at PD: seals name the node they are meant for, and /readyz
    // answers 200 from then on.
    let node_id = Arc::new(AtomicU64::new(0));
    let ranges = Arc::new(RangeRegistry::new(
        wal.clone(),
        cache,
        metrics.clone(),
        node_id.clone(),
        config.max_ranges,
    ));
    let (records, segments, wal_bytes) = (recovered.records, recovered.segments, recovered.bytes);
    let truncated = recovered.truncated.clone();
    let discarded = recovered.discarded.len();
    ranges.recover(&mut recovered);

    let mut router = actors::Router::new();
    service::routes(&mut router, ranges.clone());
    let rpc_addr = actors::serve(
        &config.listen,
        router,
        actors::ServerOptions {
            max_frame: config.max_frame_bytes,
        },
    )
    .await
    .map_err(bind("RPC", &config.listen))?;

    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    if let Some(objects) = &objects {
        objects.metrics().register(&mut registry);
    }
    let health_wal = wal.clone();
    let registered = node_id.clone();
    let http_addr = actors::http::serve_http(
        &config.http_listen,
        Arc::new(Mutex::new(registry)),
        actors::http::Probes {
            healthy: Arc::new(move || health_wal.is_healthy()),
            ready: Arc::new(move || registered.load(std::sync::atomic::Ordering::Acquire) != 0),
        },
        None,
    )
    .await
    .map_err(bind("HTTP", &config.http_listen))?;

    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| rpc_addr.to_string());
    actors::process::publish_addresses(
        &config.data,
        &[
            ("rpc.addr", format!("{rpc_addr}\n")),
            ("http.addr", format!("{http_addr}\n")),
        ],
    )
    .map_err(io("write the address files"))?;

    tracing::info!(
        rpc = %rpc_addr, http = %http_addr, advertise = %advertise, data = %config.data.display(),
        records, wal_bytes, segments, ranges = ranges.len(), recovery_ms, discarded_segments = discarded,
        truncated_at = ?truncated.as_ref().map(|(loc, why)| format!("segment {} @{}: {why}", loc.segment, loc.position)),
        "range server started"
    );

    // Heartbeats run on their own thread: a busy actor thread must not cost the lease.
    let heartbeat_config = HeartbeatConfig {
        pd: config.pd.clone(),
        addr: advertise.clone(),
        http_addr: http_addr.to_string(),
        data_dir: config.data.clone(),
    };
    let (heartbeat_ranges, heartbeat_node) = (ranges.clone(), node_id.clone());
    let offload_tasks = Arc::new(OffloadTasks::default());
    let assignments = offload_tasks.clone();
    actors::process::spawn_dedicated("pd-heartbeat", move || {
        heartbeat::run(
            heartbeat_config,
            heartbeat_ranges,
            heartbeat_node,
            assignments,
        )
    })
    .map_err(io("start the heartbeat thread"))?;

    // Offload and reclamation run beside the actors, on a thread of their own.
    let (reclaim_wal, pins) = (wal.clone(), ranges.pins().clone());
    let offloader = objects.map(|objects| {
        let pd = stream_client::PdClient::new(std::slice::from_ref(&config.pd));
        let (ranges, node, metrics) = (ranges.clone(), node_id.clone(), metrics.clone());
        let offload = config.offload.clone();
        move || offload::run(offload, objects, pd, ranges, offload_tasks, node, metrics)
    });
    actors::process::spawn_dedicated("offload", move || async move {
        let reclaim = reclaim::run(reclaim_wal, pins, RECLAIM_INTERVAL);
        match offloader {
            Some(offloader) => {
                tokio::join!(reclaim, offloader());
            }
            None => reclaim.await,
        }
    })
    .map_err(io("start the offload thread"))?;

    Ok(RunningServer {
        rpc_addr,
        http_addr,
        advertise,
        wal,
        ranges,
        metrics,
        node_id,
    })
}

/// How often WAL segments nothing needs are looked for.
const RECLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// The WAL segment size: with a WAL budget, at most an eighth of it (at least 1 MiB), so
/// that reclaiming whole segments can keep the WAL within the budget.
fn segment_bytes(config: &Config) -> u64 {
    match config.wal_max_bytes {
        Some(max) => config.segment_bytes.min((max / 8).max(1 << 20)),
        None => config.segment_bytes,
    }
}

/// Starts the server and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let server = start(config).await?;
    actors::process::shutdown_signal().await;
    tracing::info!(rpc = %server.rpc_addr, "range server shutting down");
    Ok(())
}
