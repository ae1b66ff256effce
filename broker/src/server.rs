//! Starting a broker: bind the Kafka listener, register at PD, load the cluster metadata,
//! then accept client connections (one [`KafkaConnection`] actor each) and serve
//! `/healthz` and `/metrics`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use stream_client::{PdClient, StreamClient};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::connection::KafkaConnection;
use crate::context::{Broker, ClusterSnapshot, SharedBroker};
use crate::metrics::Metrics;
use crate::{membership, metadata};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("placement driver: {0}")]
    Pd(#[from] protocol::RpcError),
}

pub struct RunningBroker {
    pub broker: SharedBroker,
    pub kafka_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

pub async fn start(config: Config) -> Result<RunningBroker, BrokerError> {
    std::fs::create_dir_all(&config.data)?;
    let listener = TcpListener::bind(&config.listen).await?;
    let kafka_addr = listener.local_addr()?;
    let advertised = config
        .advertise
        .clone()
        .unwrap_or_else(|| kafka_addr.to_string());

    let metrics = Metrics::new();
    // Alive from here on; ready once registered, loaded and accepting Kafka connections.
    let ready = Arc::new(AtomicBool::new(false));
    let serving = ready.clone();
    let http_addr = ::actors::http::serve_http(
        &config.http_listen,
        metrics.registry.clone(),
        ::actors::http::Probes {
            healthy: Arc::new(|| true),
            ready: Arc::new(move || serving.load(Ordering::Acquire)),
        },
        None,
    )
    .await?;
    // Published now so that scripts and tests find a broker that is waiting for PD.
    ::actors::process::publish_addresses(&config.data, &[("http.addr", http_addr.to_string())])?;

    let pd = PdClient::new(&config.pd).with_retry_for(Duration::from_secs(5));
    let (node_id, lease_ms) =
        membership::join(&pd, &config.data, &advertised, &http_addr.to_string()).await;
    let mut streams = StreamClient::new(&config.pd);
    if let Some(url) = &config.object_store {
        streams = streams.with_objects(stream_client::Objects::open(
            url,
            config.object_cache_bytes,
        )?);
    }
    if let Ok(mut registry) = metrics.registry.lock() {
        streams.metrics().register(&mut registry);
    }
    let loads = std::sync::Arc::new(crate::loads::Loads::default());
    let broker: SharedBroker = Rc::new(Broker {
        node_id,
        config: config.clone(),
        advertised: advertised.clone(),
        pd: pd.clone(),
        streams,
        metadata: RefCell::new(Rc::new(ClusterSnapshot::default())),
        partitions: RefCell::new(HashMap::new()),
        metrics,
        metadata_changed: tokio::sync::Notify::new(),
        coordinators: RefCell::new(HashMap::new()),
        owners_running: Cell::new(0),
        loads: loads.clone(),
    });
    // Heartbeats run on their own thread with their own PD connection: a busy actor thread
    // must not cost the broker its lease (and its partitions).
    let (pd_addrs, hb_addr, hb_http, hb_nodes) = (
        config.pd.clone(),
        advertised.clone(),
        http_addr.to_string(),
        broker.streams.nodes().clone(),
    );
    ::actors::process::spawn_dedicated("pd-heartbeat", move || {
        membership::heartbeat_loop(
            PdClient::new(&pd_addrs),
            node_id,
            lease_ms,
            hb_addr,
            hb_http,
            loads,
            hb_nodes,
        )
    })?;
    while let Err(e) = metadata::refresh(&broker).await {
        tracing::warn!("waiting for the placement driver's metadata: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    actix_rt::spawn(metadata::watch_loop(broker.clone()));

    let acceptor_broker = broker.clone();
    Acceptor::create(move |ctx| {
        ctx.add_stream(::actors::listener::incoming(listener));
        Acceptor {
            broker: acceptor_broker,
            refusals: ::actors::throttle::LogThrottle::new(),
        }
    });

    // http.addr went out at start (so a broker waiting for PD can be probed).
    ::actors::process::publish_addresses(
        &config.data,
        &[
            ("rpc.addr", kafka_addr.to_string()),
            ("kafka.addr", kafka_addr.to_string()),
        ],
    )?;
    ready.store(true, Ordering::Release);
    tracing::info!(node_id, %kafka_addr, %advertised, %http_addr, "strata-broker serving Kafka");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        http_addr,
    })
}

struct Acceptor {
    broker: SharedBroker,
    /// Connections refused over `max_connections`, for the log line.
    refusals: ::actors::throttle::LogThrottle,
}

impl Actor for Acceptor {
    type Context = Context<Self>;
}

impl StreamHandler<std::io::Result<(TcpStream, SocketAddr)>> for Acceptor {
    fn handle(&mut self, item: std::io::Result<(TcpStream, SocketAddr)>, _ctx: &mut Context<Self>) {
        match item {
            Ok((stream, peer)) => {
                let max = self.broker.config.max_connections;
                if self.broker.metrics.connections.get() >= max as i64 {
                    // Closed at once (dropped); logged at most once a second.
                    self.broker.metrics.connections_refused.inc();
                    if let Some(refused) = self.refusals.hit() {
                        tracing::warn!(%peer, refused, max, "refusing Kafka connections: at --max-connections");
                    }
                    return;
                }
                let _ = stream.set_nodelay(true);
                KafkaConnection::start(self.broker.clone(), stream, peer);
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
}
