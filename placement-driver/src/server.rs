//! Process wiring: opens storage, starts Raft, serves the RPC and HTTP endpoints, publishes the
//! bound addresses and runs until a shutdown signal.
//!
//! Owns: [`Config`], [`start`] and [`run`]; the Raft configuration; cluster initialization on
//! first start; the leadership watcher that restarts the liveness grace period and makes sure a
//! cluster id is fixed; starting the balancer task ([`crate::balancer::run`]); metrics.
//! Must not: implement request semantics (that is [`crate::service`]) or storage formats.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::SnapshotPolicy;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::pd::*;

use crate::fsutil::DiskError;
use crate::liveness::Liveness;
use crate::log_store::LogStore;
use crate::network::{handle_raft_message, Network};
use crate::service::PdService;
use crate::state_machine::StateMachineStore;
use crate::watch::{WatchHub, DEFAULT_CAPACITY};
use crate::{BasicNode, NodeId, Raft};

/// How long a dead node is kept by default before PD forgets it.
pub const DEFAULT_FORGET_NODES_AFTER: Duration = Duration::from_secs(3600);

/// How the placement driver runs. Every field has a default for one machine.
#[derive(Debug, Clone)]
pub struct Config {
    /// RPC listen address (port 0 picks a free port).
    pub listen: String,
    /// HTTP listen address for `/healthz` and `/metrics`.
    pub http_listen: String,
    /// Data directory: Raft log, vote, snapshot, address files.
    pub data: PathBuf,
    /// This voter's Raft id.
    pub node_id: NodeId,
    /// Other voters: id -> RPC address. Empty for a single voter.
    pub peers: BTreeMap<NodeId, String>,
    /// Node lease: a node silent for longer is dead.
    pub lease: Duration,
    pub max_frame: usize,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_logs: u64,
    /// How often the leader checks partition ownership.
    pub balance_interval: Duration,
    /// Most partitions moved between live brokers per balancer tick.
    pub balance_max_moves: usize,
    /// How the balancer weighs partition traffic.
    pub balance_load: crate::balancer::LoadPolicy,
    /// Links the status page shows: (name, URL) (dashboards, tracing UI).
    pub status_links: Vec<(String, String)>,
    /// A node silent this long, and named by no range or partition, is forgotten.
    pub forget_nodes_after: Duration,
    /// The cluster's object store; None: no object collector.
    pub object_store: Option<String>,
    pub collector: crate::collector::CollectorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7000".into(),
            http_listen: "127.0.0.1:8000".into(),
            data: PathBuf::from("./strata-data/pd"),
            node_id: 1,
            peers: BTreeMap::new(),
            lease: Duration::from_millis(2000),
            max_frame: protocol::frame::DEFAULT_MAX_FRAME,
            snapshot_logs: 5000,
            balance_interval: crate::balancer::DEFAULT_INTERVAL,
            balance_max_moves: crate::balancer::DEFAULT_MAX_MOVES,
            balance_load: crate::balancer::LoadPolicy::default(),
            status_links: Vec::new(),
            forget_nodes_after: DEFAULT_FORGET_NODES_AFTER,
            object_store: None,
            collector: crate::collector::CollectorConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PdError {
    #[error("storage: {0}")]
    Disk(#[from] DiskError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("configuration: {0}")]
    Config(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PdError {
    let context = context.into();
    move |source| PdError::Io { context, source }
}

/// A started placement driver.
pub struct Running {
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub service: PdService,
}

impl Running {
    pub fn raft(&self) -> &Raft {
        &self.service.raft
    }

    /// Stops Raft (the listeners end with the actix System).
    pub async fn shutdown(&self) {
        if let Err(e) = self.service.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

fn raft_config(snapshot_logs: u64) -> Result<Arc<openraft::Config>, PdError> {
    let config = openraft::Config {
        cluster_name: "strata-pd".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_logs.max(1)),
        max_in_snapshot_log_to_keep: 100,
        purge_batch_size: 256,
        ..Default::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|e| PdError::Raft(e.to_string()))
}

fn router(service: &PdService) -> actors::Router {
    let mut r = actors::Router::new();
    macro_rules! route {
        ($req:ty, $method:ident) => {{
            let s = service.clone();
            r.route::<$req, _, _>(move |req, _ctx| {
                let s = s.clone();
                async move { s.$method(req).await }
            });
        }};
    }
    route!(RegisterNode, register_node);
    route!(Heartbeat, heartbeat);
    route!(CreateStream, create_stream);
    route!(DescribeStream, describe_stream);
    route!(OpenStream, open_stream);
    route!(CreateRange, create_range);
    route!(SealRange, seal_range);
    route!(TrimStream, trim_stream);
    route!(DeleteStream, delete_stream);
    route!(ListNodes, list_nodes);
    route!(Watch, watch);
    route!(AllocateIds, allocate_ids);
    route!(ListStreams, list_streams);
    route!(PrepareObject, prepare_object);
    route!(CommitObject, commit_object);
    route!(CompactObjects, compact_objects);
    route!(ObjectStats, object_stats);
    route!(CreateTopic, create_topic);
    route!(DeleteTopic, delete_topic);
    route!(CreatePartitions, create_partitions);
    route!(AlterTopicConfigs, alter_topic_configs);
    route!(ListTopics, list_topics);
    route!(GetClusterInfo, get_cluster_info);
    route!(MovePartitions, move_partitions);
    route!(ListMoves, list_moves);
    route!(PartitionOpened, partition_opened);
    route!(DrainNode, drain_node);
    route!(ListLoads, list_loads);
    let raft = service.raft.clone();
    r.route::<RaftMessage, _, _>(move |msg, _ctx| {
        let raft = raft.clone();
        async move { handle_raft_message(&raft, msg).await }
    });
    r
}

struct Gauges {
    streams: Gauge,
    nodes_alive: Gauge,
    topics: Gauge,
    partitions: Gauge,
    partitions_leaderless: Gauge,
    term: Gauge,
    last_applied: Gauge,
    leader: Gauge,
    objects: Gauge,
    object_bytes: Gauge,
    objects_doomed: Gauge,
    log_entries: Gauge,
}

fn register_metrics(registry: &mut Registry) -> Gauges {
    let g = Gauges {
        streams: Gauge::default(),
        nodes_alive: Gauge::default(),
        topics: Gauge::default(),
        partitions: Gauge::default(),
        partitions_leaderless: Gauge::default(),
        term: Gauge::<i64, AtomicI64>::default(),
        last_applied: Gauge::default(),
        leader: Gauge::default(),
        objects: Gauge::default(),
        object_bytes: Gauge::default(),
        objects_doomed: Gauge::default(),
        log_entries: Gauge::default(),
    };
    let metrics = [
        ("pd_streams", "Streams not deleted", &g.streams),
        (
            "pd_nodes_alive",
            "Nodes holding a current lease",
            &g.nodes_alive,
        ),
        ("pd_topics", "Kafka topics", &g.topics),
        ("pd_partitions", "Kafka partitions", &g.partitions),
        (
            "pd_partitions_without_live_leader",
            "Partitions whose leader is missing or not alive",
            &g.partitions_leaderless,
        ),
        ("pd_raft_term", "Current Raft term", &g.term),
        (
            "pd_raft_last_applied",
            "Last applied Raft log index",
            &g.last_applied,
        ),
        (
            "pd_raft_is_leader",
            "1 when this voter is the Raft leader",
            &g.leader,
        ),
        (
            "pd_objects",
            "Objects committed in object storage",
            &g.objects,
        ),
        (
            "pd_object_bytes",
            "Bytes of the objects committed in object storage",
            &g.object_bytes,
        ),
        (
            "pd_objects_doomed",
            "Objects no stream needs, waiting to be deleted",
            &g.objects_doomed,
        ),
        (
            "pd_raft_log_entries",
            "Raft log entries kept (not yet purged after a snapshot)",
            &g.log_entries,
        ),
    ];
    for (name, help, gauge) in metrics {
        registry.register(name, help, gauge.clone());
    }
    g
}

/// Starts the placement driver on the current actix System and returns once it serves.
pub async fn start(config: Config) -> Result<Running, PdError> {
    let raft_dir = config.data.join("raft");
    std::fs::create_dir_all(&raft_dir).map_err(io(format!("create {}", raft_dir.display())))?;
    let watch = Arc::new(WatchHub::new(DEFAULT_CAPACITY));
    let log_store = LogStore::open(&raft_dir)?;
    let recovered_last = log_store.last_index();
    let state_machine = StateMachineStore::open(&raft_dir, watch.clone())?;
    let apply_metrics = state_machine.clone();
    let shared = state_machine.shared();
    let raft = Raft::new(
        config.node_id,
        raft_config(config.snapshot_logs)?,
        Network::new(config.max_frame),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| PdError::Raft(e.to_string()))?;

    let liveness = Arc::new(Liveness::new(config.lease));
    let service = PdService {
        node_id: config.node_id,
        raft: raft.clone(),
        shared,
        watch,
        liveness: liveness.clone(),
        holdings: Arc::default(),
        moves: Arc::default(),
        loads: Arc::default(),
        writes: Arc::default(),
    };
    tokio::spawn(service.clone().run_writes());

    let rpc_addr = actors::serve(
        &config.listen,
        router(&service),
        actors::ServerOptions {
            max_frame: config.max_frame,
        },
    )
    .await
    .map_err(io(format!("listen {}", config.listen)))?;

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| PdError::Raft(e.to_string()))?;
    let mut members: BTreeMap<NodeId, BasicNode> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    members.insert(config.node_id, BasicNode::new(rpc_addr.to_string()));
    if !initialized && members.keys().next() == Some(&config.node_id) {
        tracing::info!(?members, "initializing the placement-driver cluster");
        raft.initialize(members)
            .await
            .map_err(|e| PdError::Raft(e.to_string()))?;
    }

    // A voter that becomes leader starts a fresh liveness grace period and fixes the cluster
    // id if the state has none yet (first start).
    {
        let mut metrics = raft.metrics();
        let liveness = liveness.clone();
        let me = config.node_id;
        let service = service.clone();
        tokio::spawn(async move {
            let mut was_leader = false;
            loop {
                let is_leader = metrics.borrow_and_update().current_leader == Some(me);
                if is_leader && !was_leader {
                    tracing::info!("became placement-driver leader");
                    liveness.restart_grace();
                    let service = service.clone();
                    tokio::spawn(async move {
                        match service.get_cluster_info(GetClusterInfo {}).await {
                            Ok(c) => tracing::info!(cluster_id = %c.cluster_id, "cluster id"),
                            Err(e) => tracing::warn!("fixing the cluster id: {e}"),
                        }
                    });
                }
                if was_leader && !is_leader {
                    service.moves.clear();
                    service.loads.clear();
                }
                was_leader = is_leader;
                if metrics.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    let mut registry = Registry::default();
    let gauges = register_metrics(&mut registry);
    service.moves.register(&mut registry);
    service.writes.register(&mut registry);
    apply_metrics.register(&mut registry);
    let registry = Arc::new(Mutex::new(registry));
    {
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let c = service.counts();
                let m = service.raft.metrics().borrow().clone();
                gauges.streams.set(c.streams as i64);
                gauges.nodes_alive.set(c.nodes_alive as i64);
                gauges.topics.set(c.topics as i64);
                gauges.partitions.set(c.partitions as i64);
                gauges
                    .partitions_leaderless
                    .set(c.partitions_without_live_leader as i64);
                gauges.term.set(m.current_term as i64);
                gauges
                    .last_applied
                    .set(m.last_applied.map_or(0, |l| l.index) as i64);
                gauges.leader.set(i64::from(m.current_leader == Some(m.id)));
                let last_log = m.last_log_index.unwrap_or(0);
                let purged = m.purged.map_or(0, |l| l.index);
                gauges
                    .log_entries
                    .set(last_log.saturating_sub(purged) as i64);
                gauges.objects.set(c.objects as i64);
                gauges.object_bytes.set(c.object_bytes as i64);
                gauges.objects_doomed.set(c.objects_doomed as i64);
            }
        });
    }
    tokio::spawn(crate::balancer::run(
        service.clone(),
        config.balance_interval,
        config.balance_max_moves,
        config.forget_nodes_after,
        config.balance_load.clone(),
    ));
    if let Some(url) = &config.object_store {
        let objects = stream_client::Objects::open(url, 0)
            .map_err(|e| PdError::Config(format!("object store: {e}")))?;
        if let Ok(mut registry) = registry.lock() {
            objects.metrics().register(&mut registry);
        }
        tokio::spawn(crate::collector::run(
            service.clone(),
            objects,
            config.collector.clone(),
        ));
    }
    // Ready: a leader is known and this voter has applied what it recovered.
    let healthy = {
        let metrics = raft.metrics();
        Arc::new(move || {
            let m = metrics.borrow();
            let applied = m.last_applied.map(|l| l.index);
            m.current_leader.is_some() && applied >= recovered_last
        })
    };
    let probes = actors::http::Probes {
        healthy: Arc::new(|| true),
        ready: healthy,
    };
    let http_addr = actors::http::serve_http(
        &config.http_listen,
        registry,
        probes,
        Some(crate::status::pages(
            service.clone(),
            config.status_links.clone(),
        )),
    )
    .await
    .map_err(io(format!("listen {}", config.http_listen)))?;

    actors::process::publish_addresses(
        &config.data,
        &[
            ("rpc.addr", rpc_addr.to_string()),
            ("http.addr", http_addr.to_string()),
        ],
    )
    .map_err(io("write the address files"))?;
    tracing::info!(
        node_id = config.node_id,
        rpc = %rpc_addr,
        http = %http_addr,
        data = %config.data.display(),
        "strata-pd listening"
    );
    Ok(Running {
        rpc_addr,
        http_addr,
        service,
    })
}

/// Runs the placement driver until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), PdError> {
    let running = start(config).await?;
    actors::process::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}
