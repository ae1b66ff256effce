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
    /// On SIGTERM/SIGINT, how long to spend handing this broker's partitions over to the
    /// others (drained at PD, streams closed) before exiting, in milliseconds; 0: exit at
    /// once (the others take over when the lease lapses).
    #[arg(long, default_value_t = 10_000)]
    handover_timeout_ms: u64,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_request_bytes: usize,
    /// Kafka client connections open at once; more are closed as they arrive (logged, and
    /// counted in connections_refused).
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Recent batches each partition keeps in memory, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    partition_cache_bytes: usize,
    /// Partitions of the internal __consumer_offsets topic when this broker creates it.
    #[arg(long, default_value_t = 50)]
    offsets_topic_partitions: u32,
    /// Committed offsets of groups without members expire after this many minutes.
    #[arg(long, default_value_t = 10080)]
    offsets_retention_minutes: u64,
    /// How often expired offsets and groups are removed, in milliseconds.
    #[arg(long, default_value_t = 600_000)]
    offsets_retention_check_ms: u64,
    /// How long the first rebalance of an empty group waits for more members (ms).
    #[arg(long, default_value_t = 3000)]
    group_initial_rebalance_delay_ms: i32,
    /// Smallest session timeout a group member may ask for (ms).
    #[arg(long, default_value_t = 6000)]
    group_min_session_timeout_ms: i32,
    /// Largest session timeout a group member may ask for (ms).
    #[arg(long, default_value_t = 1_800_000)]
    group_max_session_timeout_ms: i32,
    /// Group records a coordinator writes before it snapshots and trims its streams.
    #[arg(long, default_value_t = 1000)]
    offsets_snapshot_records: usize,
    /// Most consumer groups one __consumer_offsets partition's coordinator holds; a JoinGroup
    /// or OffsetCommit that would create one more gets GROUP_MAX_SIZE_REACHED (logged, and
    /// counted in groups_refused). Empty groups without offsets are removed at each
    /// retention check.
    #[arg(long, default_value_t = 10_000)]
    max_groups_per_coordinator: usize,
    /// An idempotent producer idle this long (ms) on a partition is forgotten there (Kafka's
    /// producer.id.expiration.ms; counted in producers_expired).
    #[arg(long, default_value_t = 86_400_000)]
    producer_id_expiration_ms: u64,
    /// The cluster's object store (file:///abs/dir or s3://bucket[/prefix], S3 settings from
    /// the AWS_* variables): offloaded history is read from it directly.
    #[arg(long)]
    object_store: Option<String>,
    /// Bytes of object blocks kept in memory for reads from objects.
    #[arg(long, default_value_t = stream_client::objects::DEFAULT_CACHE_BYTES)]
    object_cache_bytes: usize,
}

fn main() {
    let args = Args::parse();
    let _telemetry = actors::telemetry::init("strata-broker", &args.listen);
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
        max_connections: args.max_connections,
        partition_cache_bytes: args.partition_cache_bytes,
        producer_id_expiration: Duration::from_millis(args.producer_id_expiration_ms),
        object_store: args.object_store,
        object_cache_bytes: args.object_cache_bytes,
        groups: broker::group::GroupConfig {
            offsets_topic_partitions: args.offsets_topic_partitions.max(1),
            offsets_retention: Duration::from_secs(args.offsets_retention_minutes * 60),
            offsets_retention_check: Duration::from_millis(
                args.offsets_retention_check_ms.max(100),
            ),
            min_session_timeout_ms: args.group_min_session_timeout_ms,
            max_session_timeout_ms: args.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: args.group_initial_rebalance_delay_ms.max(0),
            snapshot_every_records: args.offsets_snapshot_records.max(1),
            max_groups_per_coordinator: args.max_groups_per_coordinator,
            ..broker::group::GroupConfig::default()
        },
    };
    let handover = Duration::from_millis(args.handover_timeout_ms);
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let running = broker::start(config).await?;
        actors::process::shutdown_signal().await;
        if !handover.is_zero() {
            tracing::info!(kafka = %running.kafka_addr, "handing partitions over before stopping");
            broker::membership::hand_over(&running.broker, handover).await;
        }
        tracing::info!(kafka = %running.kafka_addr, "shutting down");
        Ok::<_, broker::BrokerError>(())
    });
    if let Err(e) = result {
        tracing::error!("strata-broker failed: {e}");
        eprintln!("strata-broker failed: {e}");
        std::process::exit(1);
    }
}
