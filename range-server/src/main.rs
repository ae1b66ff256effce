//! `strata-range-server`: parses flags and runs the range server (see the library).

use std::path::PathBuf;

use clap::Parser;
use range_server::Config;

#[derive(Debug, Parser)]
#[command(name = "strata-range-server", about = "Strata range server")]
struct Args {
    /// Placement driver RPC address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pd: String,
    /// RPC listen address (port 0 picks a free port; see <data>/rpc.addr).
    #[arg(long, default_value = "127.0.0.1:7101")]
    listen: String,
    /// HTTP listen address for /healthz and /metrics (see <data>/http.addr).
    #[arg(long, default_value = "127.0.0.1:8101")]
    http_listen: String,
    /// Address announced to PD (default: the bound listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Data directory (WAL, node id, address files).
    #[arg(long, default_value = "./strata-data/range-server-1")]
    data: PathBuf,
    /// Tail cache budget in bytes.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    cache_bytes: usize,
    /// WAL segment size in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    segment_bytes: u64,
    /// Largest RPC frame accepted, in bytes.
    #[arg(long, default_value_t = protocol::frame::DEFAULT_MAX_FRAME)]
    max_frame_bytes: usize,
    /// Most ranges appends and seals may create here; more are refused (NoCapacity, counted
    /// in ranges_refused) and their writers pick other servers.
    #[arg(long, default_value_t = range_server::server::DEFAULT_MAX_RANGES)]
    max_ranges: usize,
    /// The cluster's object store: file:///abs/dir or s3://bucket[/prefix] (S3 settings from
    /// the AWS_* variables). Without it nothing is offloaded and the WAL keeps everything.
    #[arg(long)]
    object_store: Option<String>,
    /// Upload an object once this many confirmed bytes wait to be offloaded.
    #[arg(long, default_value_t = 16 << 20)]
    offload_bytes: u64,
    /// Upload an object once the oldest waiting data is this old (milliseconds).
    #[arg(long, default_value_t = 30_000)]
    offload_max_age_ms: u64,
    /// Objects of a stream smaller than this are merged once a run of them holds this much
    /// (and a merge stops at this size).
    #[arg(long, default_value_t = 64 << 20)]
    compact_target_bytes: u64,
    /// A run of this many consecutive small objects of a stream is merged even below the
    /// target size.
    #[arg(long, default_value_t = 64)]
    compact_min_slices: usize,
    /// Objects uploaded less than this long ago (milliseconds) are not merged yet: merging
    /// waits until a burst is over.
    #[arg(long, default_value_t = 600_000)]
    compact_min_age_ms: u64,
    /// Budget of the WAL on disk in bytes; at it, appends are refused (retriably) until
    /// offloaded segments are reclaimed. Segments are then at most an eighth of it.
    #[arg(long)]
    wal_max_bytes: Option<u64>,
}

fn main() {
    let args = Args::parse();
    let _telemetry = actors::telemetry::init("strata-range-server", &args.listen);
    let config = Config {
        pd: args.pd,
        listen: args.listen,
        http_listen: args.http_listen,
        advertise: args.advertise,
        data: args.data,
        cache_bytes: args.cache_bytes,
        segment_bytes: args.segment_bytes,
        max_frame_bytes: args.max_frame_bytes,
        max_ranges: args.max_ranges,
        object_store: args.object_store,
        offload: range_server::offload::OffloadConfig {
            object_bytes: args.offload_bytes.max(1),
            max_age: std::time::Duration::from_millis(args.offload_max_age_ms),
            compact: range_server::compact::CompactConfig {
                target_bytes: args.compact_target_bytes.max(1),
                min_slices: args.compact_min_slices.max(2),
                min_age: std::time::Duration::from_millis(args.compact_min_age_ms),
            },
        },
        wal_max_bytes: args.wal_max_bytes,
    };
    let result = actix::System::new().block_on(range_server::run(config));
    if let Err(e) = result {
        tracing::error!(error = %e, "range server failed");
        eprintln!("strata-range-server: {e}");
        std::process::exit(1);
    }
}
