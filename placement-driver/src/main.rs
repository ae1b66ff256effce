//! `strata-pd`: the placement-driver process. Parses flags, sets up telemetry and runs
//! [`placement_driver::run`] inside an actix System until SIGINT/SIGTERM. Holds no logic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "strata-pd", about = "Strata placement driver")]
struct Args {
    /// RPC listen address (port 0 picks a free port; see <data>/rpc.addr).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: String,
    /// HTTP listen address for /healthz and /metrics (see <data>/http.addr).
    #[arg(long, default_value = "127.0.0.1:8000")]
    http_listen: String,
    /// Data directory (Raft log, vote, snapshot).
    #[arg(long, default_value = "./strata-data/pd")]
    data: PathBuf,
    /// This voter's Raft node id.
    #[arg(long, default_value_t = 1)]
    node_id: u64,
    /// Other voters, e.g. `2=127.0.0.1:7001,3=127.0.0.1:7002` (empty: single voter).
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<(u64, String)>,
    /// Node lease in milliseconds: a node silent for longer is dead (and a dead broker's
    /// partitions move to live brokers).
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    /// How often the leader checks which broker owns each partition, in milliseconds.
    #[arg(long, default_value_t = placement_driver::balancer::DEFAULT_INTERVAL.as_millis() as u64)]
    balance_interval_ms: u64,
    /// Most partitions moved between live brokers per balancer check (partitions of dead
    /// brokers always move at once).
    #[arg(long, default_value_t = placement_driver::balancer::DEFAULT_MAX_MOVES)]
    balance_max_moves: usize,
    /// A broker whose traffic (bytes/s produced and fetched, as brokers report it) is off
    /// the mean by more than this fraction of it, and by more than
    /// --balance-load-min-gap-bytes, is out of balance: partitions move to even it out.
    #[arg(long, default_value_t = 0.2)]
    balance_load_band: f64,
    /// See --balance-load-band (a cluster this close to even, or this idle, is left alone).
    #[arg(long, default_value_t = 1 << 20)]
    balance_load_min_gap_bytes: u64,
    /// Most partitions moved for traffic in any minute (0: never balance by traffic).
    #[arg(long, default_value_t = 30)]
    balance_load_moves_per_minute: usize,
    /// After the balancer moves partitions, judge traffic again only after this long (ms):
    /// the new owners' reports must first cover whole intervals.
    #[arg(long, default_value_t = 6000)]
    balance_load_settle_ms: u64,
    /// A link for the status page (`/` on the HTTP port), as NAME=URL; repeatable
    /// (`scripts/cluster up --observability` names Prometheus, its dashboards and traces).
    #[arg(long = "status-link", value_parser = parse_link)]
    status_links: Vec<(String, String)>,
    /// Largest RPC frame accepted, in bytes.
    #[arg(long, default_value_t = protocol::frame::DEFAULT_MAX_FRAME)]
    max_frame_bytes: usize,
    /// Build a snapshot and purge the Raft log after this many entries.
    #[arg(long, default_value_t = 5000)]
    snapshot_logs: u64,
    /// Forget a node silent for this many seconds once no range or partition names it.
    #[arg(long, default_value_t = placement_driver::server::DEFAULT_FORGET_NODES_AFTER.as_secs())]
    forget_nodes_after_secs: u64,
    /// The cluster's object store (file:///abs/dir or s3://bucket[/prefix], S3 settings from
    /// the AWS_* variables): the leader deletes objects no stream needs and sweeps orphaned
    /// uploads there.
    #[arg(long)]
    object_store: Option<String>,
    /// An upload reserved this long ago (ms) and not committed is an orphan: its commit is
    /// refused and the upload deleted.
    #[arg(long, default_value_t = 600_000)]
    prepared_object_ttl_ms: u64,
    /// How often the leader deletes unneeded objects and expires reservations (ms).
    #[arg(long, default_value_t = 5_000)]
    object_gc_interval_ms: u64,
    /// How often the leader lists the object store for orphaned uploads (ms).
    #[arg(long, default_value_t = 600_000)]
    orphan_sweep_interval_ms: u64,
}

fn parse_link(s: &str) -> Result<(String, String), String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("link `{s}` is not NAME=URL"))?;
    Ok((name.trim().to_string(), url.trim().to_string()))
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("peer `{s}` is not ID=HOST:PORT"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|e| format!("peer id `{id}`: {e}"))?;
    Ok((id, addr.trim().to_string()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let telemetry = actors::telemetry::init("strata-pd", &args.listen);
    let config = placement_driver::Config {
        listen: args.listen,
        http_listen: args.http_listen,
        data: args.data,
        node_id: args.node_id,
        peers: args.peers.into_iter().collect::<BTreeMap<_, _>>(),
        lease: Duration::from_millis(args.lease_ms),
        max_frame: args.max_frame_bytes,
        snapshot_logs: args.snapshot_logs,
        balance_interval: Duration::from_millis(args.balance_interval_ms.max(10)),
        balance_max_moves: args.balance_max_moves,
        balance_load: placement_driver::balancer::LoadPolicy {
            band: args.balance_load_band.max(0.0),
            min_gap: args.balance_load_min_gap_bytes,
            moves_per_minute: args.balance_load_moves_per_minute,
            settle: Duration::from_millis(args.balance_load_settle_ms),
        },
        forget_nodes_after: Duration::from_secs(args.forget_nodes_after_secs),
        status_links: args.status_links,
        object_store: args.object_store,
        collector: placement_driver::collector::CollectorConfig {
            interval: Duration::from_millis(args.object_gc_interval_ms.max(10)),
            prepared_ttl: Duration::from_millis(args.prepared_object_ttl_ms),
            sweep_every: Duration::from_millis(args.orphan_sweep_interval_ms),
        },
    };
    let result = actix_rt::System::new().block_on(placement_driver::run(config));
    drop(telemetry);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-pd: {e}");
            tracing::error!("strata-pd failed: {e}");
            ExitCode::FAILURE
        }
    }
}
