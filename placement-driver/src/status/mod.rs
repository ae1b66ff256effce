//! PD's live status page on its HTTP port: `GET /` is a page (HTML and a small script, all
//! served from this binary: nothing from the internet) that polls `GET /api/status` every
//! second and shows the cluster: health, every node (role, addresses, liveness, draining,
//! load, version), topics and partitions (leader, epoch, pin, traffic, size, what is in
//! objects, where the open range lives), recent moves, and links to dashboards and traces.
//! `/api/status` is the same data as JSON for scripts (`docs/architecture.md`, "Status page").
//!
//! Owns: the JSON's shape. Must not: change anything, or block: one read of the applied state
//! and of the leader's memory (liveness, loads, moves, holdings) per request. Bounded: at most
//! [`MAX_PARTITIONS_SHOWN`] partitions (the rest are counted), the moves table's 256.

use std::collections::HashMap;

use protocol::model::RangeInfo;
use serde::Serialize;

use crate::service::PdService;
use crate::state::Kind;

/// Most partitions one status answer lists.
pub const MAX_PARTITIONS_SHOWN: usize = 5000;

const PAGE: &str = include_str!("page.html");

#[derive(Serialize)]
pub struct Status {
    pub cluster_id: Option<String>,
    pub pd: PdView,
    pub health: Health,
    pub links: Vec<Link>,
    pub nodes: Vec<NodeView>,
    pub topics: Vec<TopicView>,
    /// Partitions left out past [`MAX_PARTITIONS_SHOWN`].
    pub partitions_not_shown: usize,
    pub moves: Vec<MoveView>,
}

#[derive(Serialize)]
pub struct PdView {
    pub node_id: u64,
    /// Whether this PD is the Raft leader (liveness, loads and moves are the leader's memory:
    /// a follower shows none).
    pub leader: bool,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub last_applied: u64,
}

#[derive(Serialize)]
pub struct Health {
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Serialize)]
pub struct Link {
    pub name: String,
    pub url: String,
}

#[derive(Serialize)]
pub struct NodeView {
    pub id: u64,
    /// "broker" or "range-server".
    pub kind: &'static str,
    pub addr: String,
    pub http_addr: String,
    pub alive: bool,
    pub draining: bool,
    /// A draining range server: ranges that still need it.
    pub still_needed: Option<u32>,
    /// A broker: partitions it leads.
    pub leads: usize,
    /// A broker: bytes/s produced and fetched, as it last reported.
    pub bytes_per_sec: u64,
    pub version: Option<String>,
}

#[derive(Serialize)]
pub struct TopicView {
    pub name: String,
    pub partitions: Vec<PartitionView>,
}

#[derive(Serialize)]
pub struct PartitionView {
    pub index: u32,
    pub leader: Option<u64>,
    pub leader_epoch: u32,
    pub pinned: Option<u64>,
    pub produce_bytes_per_sec: u64,
    pub fetch_bytes_per_sec: u64,
    /// Records between the log start and the end the range servers last reported.
    pub records: u64,
    /// Of those, how many are in objects.
    pub in_objects: u64,
    /// Range servers of the data stream's open range.
    pub open_range_servers: Vec<u64>,
    pub data_stream: u64,
    /// The data stream's last [`RANGES_SHOWN`] ranges, oldest first.
    pub ranges: Vec<RangeView>,
    /// Objects holding part of the data stream.
    pub objects: usize,
}

/// Most ranges of a stream the status lists (the newest).
pub const RANGES_SHOWN: usize = 3;

#[derive(Serialize)]
pub struct RangeView {
    pub index: u32,
    pub start: u64,
    /// None while open.
    pub end: Option<u64>,
    pub servers: Vec<u64>,
}

#[derive(Serialize)]
pub struct MoveView {
    pub topic: String,
    pub partition: u32,
    pub from: Option<u64>,
    pub to: u64,
    pub reason: String,
    pub elapsed_ms: u64,
    /// None while in flight.
    pub took_ms: Option<u64>,
}

/// The status now, as this PD sees it.
pub fn status(service: &PdService, links: &[(String, String)]) -> Status {
    let leader = service.is_leader().is_ok();
    let metrics = service.raft.metrics().borrow().clone();
    let alive = |id| leader && service.liveness.alive(id);
    let mut traffic: HashMap<(String, u32), (u64, u64)> = HashMap::new();
    let mut by_broker: HashMap<u64, u64> = HashMap::new();
    for l in service.loads.list() {
        let (p, f) = (l.load.produce_bytes_per_sec, l.load.fetch_bytes_per_sec);
        *by_broker.entry(l.broker).or_default() += p + f;
        traffic.insert((l.load.topic.clone(), l.load.partition), (p, f));
    }
    let mut moves = service.moves.list(true);
    // Newest first: in flight, then the most recently decided.
    moves.sort_by_key(|m| (m.took_ms.is_some(), m.elapsed_ms));
    let moves = moves
        .into_iter()
        .map(|m| MoveView {
            topic: m.topic,
            partition: m.partition,
            from: m.from,
            to: m.to,
            reason: m.reason,
            elapsed_ms: m.elapsed_ms,
            took_ms: m.took_ms,
        })
        .collect();
    let read = service.read(|s| {
        let st = &s.state;
        let mut leads: HashMap<u64, usize> = HashMap::new();
        let mut shown = 0;
        let mut not_shown = 0;
        let mut leaderless = 0;
        let mut topics = Vec::new();
        // Users' topics first, internal ones (__consumer_offsets) after.
        let mut ordered: Vec<_> = st.topics.values().collect();
        ordered.sort_by_key(|t| (t.internal, t.name.as_str()));
        for t in ordered {
            let mut partitions = Vec::new();
            for p in &t.partitions {
                match p.leader.filter(|l| alive(*l)) {
                    Some(l) => *leads.entry(l).or_default() += 1,
                    None => leaderless += 1,
                }
                if shown >= MAX_PARTITIONS_SHOWN {
                    not_shown += 1;
                    continue;
                }
                shown += 1;
                let (mut ranges, mut objects) = (Vec::new(), 0);
                let (records, in_objects, open) = match st.stream(p.data_stream) {
                    Ok(s) => {
                        let skip = s.ranges.len().saturating_sub(RANGES_SHOWN);
                        ranges = s.ranges[skip..]
                            .iter()
                            .map(|r| RangeView {
                                index: r.index,
                                start: r.start,
                                end: r.end,
                                servers: r.servers.clone(),
                            })
                            .collect();
                        objects = st.objects.slices.get(&s.id).map_or(0, Vec::len);
                        let end = stream_end(s.ranges.last().map(|r| r.to_info()), service);
                        let start = s.start_offset;
                        let offloaded = st.offloaded_end(s).saturating_sub(start);
                        let open = s
                            .ranges
                            .last()
                            .filter(|r| r.end.is_none())
                            .map(|r| r.servers.clone())
                            .unwrap_or_default();
                        (end.saturating_sub(start), offloaded, open)
                    }
                    Err(_) => (0, 0, Vec::new()),
                };
                let (produce, fetch) = traffic
                    .get(&(t.name.clone(), p.index))
                    .copied()
                    .unwrap_or_default();
                partitions.push(PartitionView {
                    index: p.index,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    pinned: p.pinned,
                    produce_bytes_per_sec: produce,
                    fetch_bytes_per_sec: fetch,
                    records,
                    in_objects: in_objects.min(records),
                    open_range_servers: open,
                    data_stream: p.data_stream,
                    ranges,
                    objects,
                });
            }
            topics.push(TopicView {
                name: t.name.clone(),
                partitions,
            });
        }
        let nodes: Vec<NodeView> = st
            .nodes
            .values()
            .map(|n| NodeView {
                id: n.id,
                kind: match n.kind {
                    Kind::Broker => "broker",
                    Kind::RangeServer => "range-server",
                },
                addr: n.addr.clone(),
                http_addr: n.http_addr.clone(),
                alive: alive(n.id),
                draining: n.draining,
                still_needed: (n.kind == Kind::RangeServer && n.draining)
                    .then(|| service.ranges_needing(st, n.id)),
                leads: leads.get(&n.id).copied().unwrap_or(0),
                // A dead broker's last report lingers for a while: it serves nothing now.
                bytes_per_sec: if alive(n.id) {
                    by_broker.get(&n.id).copied().unwrap_or(0)
                } else {
                    0
                },
                version: service.liveness.version(n.id),
            })
            .collect();
        (st.cluster_id.clone(), nodes, topics, not_shown, leaderless)
    });
    let (cluster_id, nodes, topics, partitions_not_shown, leaderless) =
        read.unwrap_or_else(|_| (None, Vec::new(), Vec::new(), 0, 0));
    let mut problems = Vec::new();
    if !leader {
        problems.push(format!(
            "this PD is not the leader (the leader is {}): liveness, loads and moves are the leader's",
            metrics
                .current_leader
                .map_or("unknown".to_string(), |l| l.to_string())
        ));
    }
    for n in nodes.iter().filter(|n| !n.alive) {
        problems.push(format!("{} {} is down", n.kind, n.id));
    }
    if leaderless > 0 {
        problems.push(format!("{leaderless} partitions have no live leader"));
    }
    Status {
        cluster_id,
        pd: PdView {
            node_id: service.node_id,
            leader,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            last_applied: metrics.last_applied.map_or(0, |l| l.index),
        },
        health: Health {
            ok: problems.is_empty(),
            problems,
        },
        links: links
            .iter()
            .map(|(name, url)| Link {
                name: name.clone(),
                url: url.clone(),
            })
            .collect(),
        nodes,
        topics,
        partitions_not_shown,
        moves,
    }
}

/// Where a stream's last range ends: its sealed end, or for an open range the furthest any
/// of its servers last reported holding (its start when none did).
fn stream_end(last: Option<RangeInfo>, service: &PdService) -> u64 {
    match last {
        None => 0,
        Some(r) => r.end.unwrap_or_else(|| {
            r.servers
                .iter()
                .filter_map(|&n| service.holdings.local_end((r.stream_id, r.index), n))
                .max()
                .unwrap_or(r.start)
                .max(r.start)
        }),
    }
}

/// The HTTP pages: `/` (and `/index.html`) and `/api/status`.
pub fn pages(service: PdService, links: Vec<(String, String)>) -> actors::http::Pages {
    std::sync::Arc::new(move |path: &str| match path {
        "/" | "/index.html" => Some(actors::http::Page {
            content_type: "text/html; charset=utf-8",
            body: PAGE.to_string(),
        }),
        "/api/status" => {
            let body = serde_json::to_string(&status(&service, &links)).unwrap_or_else(|e| {
                tracing::warn!("status page: encoding failed: {e}");
                "{}".to_string()
            });
            Some(actors::http::Page {
                content_type: "application/json",
                body,
            })
        }
        _ => None,
    })
}
