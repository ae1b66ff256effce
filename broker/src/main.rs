//! `strata-broker`: the Kafka-compatible front end. Thin: flags to [`broker::Config`], then
//! [`broker::start`] on an actix System until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "strata-broker",
    about = "Strata Kafka broker (stateless, over elastic streams)"
)]
struct Args {
    /// Placement driver address(es), comma separated.
    #[arg(long, default_value = "127.0.0.1:7000", value_delimiter = ',')]
    pd: Vec<String>,
    /// Kafka listener (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: String,
    /// Address clients are told to use (default: the bound listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// HTTP endpoint for /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:10092")]
    http_listen: String,
    /// Directory for address files and logs (no partition data is kept here).
    #[arg(long, default_value = "./strata-data/broker-1")]
    data: PathBuf,
    /// Partitions of auto-created topics (Kafka's num.partitions).
    #[arg(long, default_value_t = 1)]
    num_partitions: u32,
    /// Stream replicas of topics created without a replication factor.
    #[arg(long, default_value_t = 3)]
    default_replication: u8,
    /// Replicas that must confirm an append, for those topics.
    #[arg(long, default_value_t = 2)]
    default_ack: u8,
    /// Create unknown topics on Metadata and Produce.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auto_create_topics: bool,
    /// How often retention.ms / retention.bytes are enforced, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    retention_check_ms: u64,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_request_bytes: usize,
    /// Recent batches each partition keeps in memory, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    partition_cache_bytes: usize,
}

fn main() {
    let args = Args::parse();
    let _telemetry = actors::telemetry::init("strata-broker");
    let config = broker::Config {
        pd: args.pd,
        listen: args.listen,
        advertise: args.advertise,
        http_listen: args.http_listen,
        data: args.data,
        num_partitions: args.num_partitions.max(1),
        default_replication: args.default_replication.max(1),
        default_ack: args.default_ack.clamp(1, args.default_replication.max(1)),
        auto_create_topics: args.auto_create_topics,
        retention_check: Duration::from_millis(args.retention_check_ms.max(100)),
        max_request_bytes: args.max_request_bytes,
        partition_cache_bytes: args.partition_cache_bytes,
    };
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let running = broker::start(config).await?;
        actors::process::shutdown_signal().await;
        tracing::info!(kafka = %running.kafka_addr, "shutting down");
        Ok::<_, broker::BrokerError>(())
    });
    if let Err(e) = result {
        tracing::error!("strata-broker failed: {e}");
        eprintln!("strata-broker failed: {e}");
        std::process::exit(1);
    }
}
