//! strata-ctl: the operator's view of a Strata cluster and hand on it, through the placement
//! driver's RPCs: nodes and their liveness, topics and partitions with their leaders, moving
//! partitions, draining brokers and range servers, and the moves in flight or recently done (the balancer's
//! decisions with their reasons and how long each took). Tables for people, `--json` for
//! scripts.
//!
//! Must not: keep state, or talk to brokers or range servers (PD knows all it shows).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use protocol::model::NodeKind;
use protocol::pd::{
    DrainNode, ListLoads, ListMoves, ListNodes, ListTopics, MovePartitions, PartitionMove,
};
use serde::Serialize;
use stream_client::PdClient;

#[derive(Parser)]
#[command(name = "strata-ctl", about = "Look at and steer a Strata cluster")]
struct Args {
    /// Placement-driver address(es), comma separated.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pd: String,
    /// Print JSON (one document) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every node: kind, addresses, whether its lease is current, whether it is draining
    /// (and, for a draining range server, how many ranges still need it), partitions a
    /// broker leads and the bytes/s it serves.
    Status,
    /// Topics' partitions: leader, leader epoch, pinned broker, load (bytes/s produced and
    /// fetched, as the leader last reported it), streams.
    Topics {
        /// Only this topic.
        topic: Option<String>,
    },
    /// Move a partition to a broker (and pin it there).
    Move {
        topic: String,
        partition: u32,
        broker: u64,
    },
    /// Partition moves in flight, and with --recent the last ones done.
    Moves {
        #[arg(long)]
        recent: bool,
    },
    /// Drain a node. A broker gets no partitions and hands its own to the others; a range
    /// server gets no new ranges and its open ranges move to others.
    Drain {
        node: u64,
        /// Wait (at most this many seconds) until the node is drained (a broker leads no
        /// partition; no range still needs a range server, so it may stop); fail if it is
        /// not by then.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// End draining a node: it gets partitions (or ranges) again.
    Undrain { node: u64 },
}

#[derive(Serialize)]
struct NodeRow {
    id: u64,
    kind: &'static str,
    addr: String,
    http_addr: String,
    alive: bool,
    draining: bool,
    /// A draining range server: ranges that still need it (0: it may stop).
    still_needed: Option<u32>,
    leads: usize,
    /// A broker: bytes/s produced and fetched, as it last reported.
    traffic_bytes_per_sec: u64,
}

#[derive(Serialize)]
struct PartitionRow {
    topic: String,
    partition: u32,
    leader: Option<u64>,
    leader_epoch: u32,
    pinned: Option<u64>,
    produce_bytes_per_sec: u64,
    fetch_bytes_per_sec: u64,
    data_stream: u64,
    meta_stream: u64,
}

#[derive(Serialize)]
struct MoveRow {
    topic: String,
    partition: u32,
    from: Option<u64>,
    to: u64,
    leader_epoch: u32,
    reason: String,
    state: &'static str,
    /// In flight: since the decision; done: how long it took.
    ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let pd = PdClient::new(std::slice::from_ref(&args.pd)).with_retry_for(Duration::from_secs(5));
    match run(&pd, &args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(pd: &PdClient, args: &Args) -> Result<ExitCode, String> {
    let pd_err = |e: protocol::RpcError| format!("placement driver {}: {e}", args.pd);
    match &args.command {
        Command::Status => {
            let nodes = pd.call(ListNodes {}).await.map_err(pd_err)?;
            let topics = pd.call(ListTopics {}).await.map_err(pd_err)?;
            let loads = pd.call(ListLoads {}).await.map_err(pd_err)?;
            let rows: Vec<NodeRow> = nodes
                .into_iter()
                .map(|n| NodeRow {
                    traffic_bytes_per_sec: loads
                        .iter()
                        .filter(|l| l.broker == n.id)
                        .map(|l| l.load.produce_bytes_per_sec + l.load.fetch_bytes_per_sec)
                        .sum(),
                    still_needed: n.still_needed,
                    leads: topics
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .filter(|p| p.leader == Some(n.id))
                        .count(),
                    id: n.id,
                    kind: match n.kind {
                        NodeKind::Broker => "broker",
                        NodeKind::RangeServer => "range-server",
                    },
                    addr: n.addr,
                    http_addr: n.http_addr,
                    alive: n.alive,
                    draining: n.draining,
                })
                .collect();
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            print(
                args.json,
                &rows,
                &[
                    "ID", "KIND", "ADDRESS", "HTTP", "ALIVE", "DRAINING", "LEADS", "B/S",
                ],
                |r| {
                    let draining = match r.still_needed {
                        Some(n) if r.draining => format!("yes ({n} ranges need it)"),
                        _ => yes(r.draining),
                    };
                    vec![
                        r.id.to_string(),
                        r.kind.to_string(),
                        r.addr.clone(),
                        r.http_addr.clone(),
                        yes(r.alive),
                        draining,
                        r.leads.to_string(),
                        r.traffic_bytes_per_sec.to_string(),
                    ]
                },
            )
        }
        Command::Topics { topic } => {
            let topics = pd.call(ListTopics {}).await.map_err(pd_err)?;
            let loads = pd.call(ListLoads {}).await.map_err(pd_err)?;
            // (topic, partition, broker) -> (produce, fetch) bytes/s.
            let load: HashMap<(&str, u32, u64), (u64, u64)> = loads
                .iter()
                .map(|l| {
                    (
                        (l.load.topic.as_str(), l.load.partition, l.broker),
                        (l.load.produce_bytes_per_sec, l.load.fetch_bytes_per_sec),
                    )
                })
                .collect();
            let rows: Vec<PartitionRow> = topics
                .iter()
                .filter(|t| topic.as_ref().is_none_or(|name| &t.name == name))
                .flat_map(|t| {
                    let load = &load;
                    t.partitions.iter().map(move |p| {
                        let (produce, fetch) = p
                            .leader
                            .and_then(|l| load.get(&(t.name.as_str(), p.index, l)))
                            .copied()
                            .unwrap_or_default();
                        PartitionRow {
                            topic: t.name.clone(),
                            partition: p.index,
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            pinned: p.pinned,
                            produce_bytes_per_sec: produce,
                            fetch_bytes_per_sec: fetch,
                            data_stream: p.data_stream,
                            meta_stream: p.meta_stream,
                        }
                    })
                })
                .collect();
            if rows.is_empty() {
                if let Some(name) = topic {
                    return Err(format!("no topic {name}"));
                }
            }
            print(
                args.json,
                &rows,
                &[
                    "TOPIC",
                    "PARTITION",
                    "LEADER",
                    "EPOCH",
                    "PINNED",
                    "IN_B/S",
                    "OUT_B/S",
                    "DATA",
                    "META",
                ],
                |r| {
                    vec![
                        r.topic.clone(),
                        r.partition.to_string(),
                        opt(r.leader),
                        r.leader_epoch.to_string(),
                        opt(r.pinned),
                        r.produce_bytes_per_sec.to_string(),
                        r.fetch_bytes_per_sec.to_string(),
                        r.data_stream.to_string(),
                        r.meta_stream.to_string(),
                    ]
                },
            )
        }
        Command::Move {
            topic,
            partition,
            broker,
        } => {
            let answers = pd
                .call(MovePartitions {
                    moves: vec![PartitionMove {
                        topic: topic.clone(),
                        partition: *partition,
                        broker: *broker,
                    }],
                })
                .await
                .map_err(pd_err)?;
            match answers.into_iter().next().flatten() {
                None => {
                    if args.json {
                        println!("{}", serde_json::json!({"moved": true}));
                    } else {
                        println!("{topic}/{partition} moves to broker {broker}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(e) => Err(format!("{topic}/{partition} cannot move: {e}")),
            }
        }
        Command::Drain { node, wait } => {
            let info = pd
                .call(DrainNode {
                    node_id: *node,
                    draining: true,
                })
                .await
                .map_err(pd_err)?;
            let what = match info.kind {
                NodeKind::Broker => "broker",
                NodeKind::RangeServer => "range server",
            };
            let Some(secs) = wait else {
                println!("{what} {node} is draining");
                return Ok(ExitCode::SUCCESS);
            };
            let deadline = Instant::now() + Duration::from_secs(*secs);
            loop {
                let left = match info.kind {
                    NodeKind::Broker => {
                        let topics = pd.call(ListTopics {}).await.map_err(pd_err)?;
                        let leads = topics
                            .iter()
                            .flat_map(|t| &t.partitions)
                            .filter(|p| p.leader == Some(*node))
                            .count();
                        (leads > 0).then(|| format!("still leads {leads} partitions"))
                    }
                    NodeKind::RangeServer => {
                        let nodes = pd.call(ListNodes {}).await.map_err(pd_err)?;
                        match nodes.iter().find(|n| n.id == *node).map(|n| n.still_needed) {
                            Some(Some(0)) => None,
                            Some(Some(n)) => Some(format!("is still needed by {n} ranges")),
                            _ => Some("is not draining any more".to_string()),
                        }
                    }
                };
                let Some(left) = left else {
                    println!("{what} {node} is drained");
                    return Ok(ExitCode::SUCCESS);
                };
                if Instant::now() > deadline {
                    return Err(format!("{what} {node} {left} after {secs} s"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Command::Undrain { node } => {
            pd.call(DrainNode {
                node_id: *node,
                draining: false,
            })
            .await
            .map_err(pd_err)?;
            println!("node {node} is no longer draining");
            Ok(ExitCode::SUCCESS)
        }
        Command::Moves { recent } => {
            let moves = pd
                .call(ListMoves { recent: *recent })
                .await
                .map_err(pd_err)?;
            let rows: Vec<MoveRow> = moves
                .into_iter()
                .map(|m| MoveRow {
                    state: if m.took_ms.is_some() {
                        "done"
                    } else {
                        "in flight"
                    },
                    ms: m.took_ms.unwrap_or(m.elapsed_ms),
                    topic: m.topic,
                    partition: m.partition,
                    from: m.from,
                    to: m.to,
                    leader_epoch: m.leader_epoch,
                    reason: m.reason,
                })
                .collect();
            print(
                args.json,
                &rows,
                &[
                    "TOPIC",
                    "PARTITION",
                    "FROM",
                    "TO",
                    "EPOCH",
                    "REASON",
                    "STATE",
                    "MS",
                ],
                |r| {
                    vec![
                        r.topic.clone(),
                        r.partition.to_string(),
                        opt(r.from),
                        r.to.to_string(),
                        r.leader_epoch.to_string(),
                        r.reason.clone(),
                        r.state.to_string(),
                        r.ms.to_string(),
                    ]
                },
            )
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

/// Prints `rows` as JSON or as a table with `header`, columns padded to their widest cell.
fn print<T: Serialize>(
    json: bool,
    rows: &[T],
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<ExitCode, String> {
    if json {
        let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    table.extend(rows.iter().map(cells));
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
