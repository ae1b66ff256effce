//! `stream-bench`: append throughput and latency of replicated streams against a running
//! cluster (`scripts/cluster up`).
//!
//! With no arguments it runs about ten seconds of 64 KiB appends, 32 in flight, replica 3 /
//! ack 2, and prints last one line `append MB/s=… p50_ms=… p99_ms=…`. `--batch-bytes` and
//! `--in-flight` take lists and run every combination; `--kill-after-secs` with `--kill-cmd`
//! runs a command mid-run (for instance `scripts/cluster kill range-server-1`) and reports
//! the longest stall of confirmations after it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use stream_client::{AppendFuture, StreamClient};

#[derive(Parser, Debug)]
#[command(about = "Append benchmark for Strata streams")]
struct Args {
    /// Placement driver address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pd: String,
    /// Seconds per configuration.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Batch sizes in bytes (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "65536")]
    batch_bytes: Vec<usize>,
    /// Appends in flight (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "32")]
    in_flight: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    replica: u8,
    #[arg(long, default_value_t = 2)]
    ack: u8,
    /// Run `--kill-cmd` this many seconds into each configuration.
    #[arg(long)]
    kill_after_secs: Option<f64>,
    /// Shell command run at `--kill-after-secs`.
    #[arg(long)]
    kill_cmd: Option<String>,
}

struct Report {
    mb_per_s: f64,
    appends_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    stall_ms: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run_one(
    client: &StreamClient,
    args: &Args,
    batch: usize,
    depth: usize,
) -> Result<Report, String> {
    let stream = client
        .create_stream(args.replica, args.ack)
        .await
        .map_err(|e| e.to_string())?;
    let mut writer = client.open(stream.id).await.map_err(|e| e.to_string())?;
    let payload = Bytes::from(
        (0..batch)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let duration = Duration::from_secs_f64(args.duration_secs);
    let kill_at = args.kill_after_secs.map(Duration::from_secs_f64);
    let mut killed_at: Option<Instant> = None;
    let mut last_confirm = Instant::now();
    let mut stall = Duration::ZERO;
    let mut latencies = Vec::new();
    let mut in_flight: VecDeque<(Instant, AppendFuture)> = VecDeque::new();
    let start = Instant::now();
    let mut bytes = 0u64;
    loop {
        let elapsed = start.elapsed();
        if let (Some(at), Some(cmd), None) = (kill_at, &args.kill_cmd, killed_at) {
            if elapsed >= at {
                let status = std::process::Command::new("sh").arg("-c").arg(cmd).status();
                eprintln!("ran `{cmd}`: {status:?}");
                killed_at = Some(Instant::now());
            }
        }
        if elapsed < duration && in_flight.len() < depth {
            in_flight.push_back((Instant::now(), writer.append(payload.clone(), 1)));
            continue;
        }
        let Some((sent, fut)) = in_flight.pop_front() else {
            break;
        };
        fut.await.map_err(|e| format!("append failed: {e}"))?;
        let now = Instant::now();
        latencies.push(now.duration_since(sent).as_secs_f64() * 1000.0);
        bytes += batch as u64;
        if killed_at
            .is_some_and(|k| last_confirm >= k || now.duration_since(k) < Duration::from_secs(5))
        {
            stall =
                stall.max(now.duration_since(last_confirm.max(killed_at.unwrap_or(last_confirm))));
        }
        last_confirm = now;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = writer.close().await;
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(Report {
        mb_per_s: bytes as f64 / secs / 1e6,
        appends_per_s: latencies.len() as f64 / secs,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        stall_ms: killed_at.map(|_| stall.as_secs_f64() * 1000.0),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let client = StreamClient::new(std::slice::from_ref(&args.pd));
    let mut last = None;
    for &batch in &args.batch_bytes {
        for &depth in &args.in_flight {
            match run_one(&client, &args, batch, depth).await {
                Ok(r) => {
                    let stall = r
                        .stall_ms
                        .map(|s| format!(" stall_ms={s:.1}"))
                        .unwrap_or_default();
                    println!(
                        "replica={} ack={} batch_bytes={batch} in_flight={depth} MB/s={:.1} appends/s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}{stall}",
                        args.replica, args.ack, r.mb_per_s, r.appends_per_s, r.p50_ms, r.p99_ms, r.max_ms
                    );
                    last = Some(r);
                }
                Err(e) => {
                    eprintln!("batch_bytes={batch} in_flight={depth}: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    if let Some(r) = last {
        println!(
            "append MB/s={:.1} p50_ms={:.2} p99_ms={:.2}",
            r.mb_per_s, r.p50_ms, r.p99_ms
        );
    }
}
