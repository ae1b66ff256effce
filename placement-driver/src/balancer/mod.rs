//! Broker ownership of partitions: which live broker leads each partition.
//!
//! Owns: the deterministic choices — [`plan`] / [`decide`] (a draining broker counts as not
//! live: it gets nothing and its partitions are orphans; every partition without a live
//! leader goes to its pinned broker if that one lives, else to the live broker with the fewest
//! partitions, ties to the lowest id; a partition away from its live pinned broker goes back;
//! then, while live brokers' counts differ by more than one, unpinned partitions move from the
//! most to the least loaded, each time of the topic the most loaded holds the most more of,
//! so each topic stays spread; at most `max_moves` moves per tick besides orphans) and
//! [`pick_leaders`] (leaders for partitions being created) — and the leader-only task [`run`]
//! that, every tick, publishes liveness flips as `Event::NodeChanged` watch events and
//! proposes its plan as one `Command::AssignPartitions`, logging each move with its reason
//! and handing it to [`crate::moves`] to be timed; now and then the same task forgets nodes
//! dead for long that nothing names any more.
//!
//! Must not: change the state except through that Raft command (apply re-validates every
//! change), act while this voter is not the leader, or do I/O. Planning is one pass over the
//! partitions (cheap for 10,000) under the state's read lock.

mod by_load;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use protocol::pd::Event;
use tracing::Instrument;

use crate::service::{leaders_of, PdService};
use crate::state::{Command, Kind, PdState, Response};

pub use by_load::{LoadPolicy, Pacer, Rates, Spread, Traffic};

/// How often the balancer looks at ownership.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// Most partitions moved between live brokers per tick (orphans are always all reassigned).
pub const DEFAULT_MAX_MOVES: usize = 32;

/// One decision: (topic, partition index, new leader).
pub type Change = (String, u32, u64);

/// Live brokers that may lead partitions (not draining) and how many partitions each leads.
/// The partitions of a draining broker are thus orphans: they move to the others.
pub fn live_counts(state: &PdState, alive: impl Fn(u64) -> bool) -> BTreeMap<u64, usize> {
    let mut load: BTreeMap<u64, usize> = state
        .nodes
        .values()
        .filter(|n| n.kind == Kind::Broker && alive(n.id) && !n.draining)
        .map(|n| (n.id, 0))
        .collect();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        if let Some(c) = p.leader.and_then(|l| load.get_mut(&l)) {
            *c += 1;
        }
    }
    load
}

/// Leaders for `count` new partitions: each to the live broker with the fewest partitions at
/// that point (ties: lowest id). All `None` when no broker is live.
pub fn pick_leaders(state: &PdState, alive: impl Fn(u64) -> bool, count: u32) -> Vec<Option<u64>> {
    let mut queue: BTreeSet<(usize, u64)> = live_counts(state, alive)
        .into_iter()
        .map(|(id, c)| (c, id))
        .collect();
    (0..count)
        .map(|_| {
            let (c, id) = queue.pop_first()?;
            queue.insert((c + 1, id));
            Some(id)
        })
        .collect()
}

/// Why the balancer moves a partition (logged with each move and counted in metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// An operator or a client asked for it (MovePartitions).
    Requested,
    /// It had no live leader.
    Orphan,
    /// Its leader is being drained.
    Drain,
    /// Its pinned broker lives again and it is elsewhere.
    Pinned,
    /// Its broker led more partitions than another by two or more.
    Count,
    /// Its broker served more traffic than the band around the mean allows (or another
    /// served less).
    Load,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::Orphan => "orphan",
            Reason::Drain => "drain",
            Reason::Pinned => "pinned",
            Reason::Count => "count",
            Reason::Load => "load",
        }
    }
}

/// The ownership changes to make now (see the module doc). Empty when every partition has a
/// live leader and counts are within one of each other, or when no broker is live.
pub fn plan(
    state: &PdState,
    alive: impl Fn(u64) -> bool,
    max_moves: usize,
    traffic: Option<&Traffic>,
) -> Vec<Change> {
    decide(state, alive, max_moves, traffic)
        .into_iter()
        .map(|(change, _)| change)
        .collect()
}

/// [`plan`] with the reason of each change. A partition pinned to a live broker is not the
/// balancer's to move, except back to that broker: an orphan goes to its live pin first,
/// then one away from its live pin goes back (within `max_moves`). With `traffic`, the load
/// step ([`Spread::even_out`], within its budget) comes next; only then do unpinned
/// partitions even out the counts, each the coldest of its topic that keeps every broker's
/// traffic in its band.
pub fn decide(
    state: &PdState,
    alive: impl Fn(u64) -> bool,
    max_moves: usize,
    traffic: Option<&Traffic>,
) -> Vec<(Change, Reason)> {
    let load = live_counts(state, &alive);
    let mut counts = Counts::new(&load);
    let mut changes = Vec::new();
    if load.is_empty() {
        return changes;
    }
    let live = |b: &u64| load.contains_key(b);
    for t in state.topics.values() {
        for p in &t.partitions {
            if p.leader.is_some_and(|l| live(&l)) {
                continue;
            }
            let to = match p.pinned.filter(live) {
                Some(pin) => pin,
                None => match counts.least() {
                    Some(id) => id,
                    None => continue,
                },
            };
            counts.shift(None, to);
            let draining = p
                .leader
                .is_some_and(|l| alive(l) && state.nodes.get(&l).is_some_and(|n| n.draining));
            let reason = if draining {
                Reason::Drain
            } else {
                Reason::Orphan
            };
            changes.push(((t.name.clone(), p.index, to), reason));
        }
    }
    let mut moves = 0;
    for t in state.topics.values() {
        for p in &t.partitions {
            let (Some(leader), Some(pin)) = (p.leader.filter(live), p.pinned.filter(live)) else {
                continue;
            };
            if leader != pin && moves < max_moves {
                moves += 1;
                counts.shift(Some(leader), pin);
                changes.push(((t.name.clone(), p.index, pin), Reason::Pinned));
            }
        }
    }
    let mut spread = traffic.map(|t| Spread::new(state, t, &load, &by_load::changed_of(&changes)));
    if let (Some(spread), Some(t)) = (spread.as_mut(), traffic) {
        for (name, index, from, to) in spread.even_out(t.budget) {
            counts.shift(Some(from), to);
            changes.push(((name.to_string(), index, to), Reason::Load));
        }
    }
    // Even out counts: move partitions from the most to the least loaded broker, each time
    // one of the topic the first holds the most more of than the second, so every topic ends
    // up spread too (a broker that comes back must not get all of one topic).
    let mut owned: Option<Owned> = None;
    while moves < max_moves {
        let (Some((min_c, min_id)), Some((max_c, max_id))) = (counts.first(), counts.last()) else {
            break;
        };
        if max_c <= min_c + 1 {
            break;
        }
        let owned =
            owned.get_or_insert_with(|| Owned::of(state, &load, &by_load::changed_of(&changes)));
        let Some((name, index)) = owned.take_for(max_id, min_id, spread.as_ref()) else {
            break;
        };
        moves += 1;
        counts.shift(Some(max_id), min_id);
        if let Some(spread) = spread.as_mut() {
            spread.shift(max_id, min_id, spread.rate(name, index));
        }
        changes.push(((name.to_string(), index, min_id), Reason::Count));
    }
    changes
}

/// Live brokers' partition counts as planning changes them, ordered by count (ties: id).
struct Counts {
    of: BTreeMap<u64, usize>,
    queue: BTreeSet<(usize, u64)>,
}

impl Counts {
    fn new(load: &BTreeMap<u64, usize>) -> Counts {
        Counts {
            of: load.clone(),
            queue: load.iter().map(|(id, c)| (*c, *id)).collect(),
        }
    }

    fn first(&self) -> Option<(usize, u64)> {
        self.queue.first().copied()
    }

    fn last(&self) -> Option<(usize, u64)> {
        self.queue.last().copied()
    }

    fn least(&self) -> Option<u64> {
        self.first().map(|(_, id)| id)
    }

    /// One partition moves from `from` (None: it had no live leader) to `to`.
    fn shift(&mut self, from: Option<u64>, to: u64) {
        for (id, up) in from.map(|f| (f, false)).into_iter().chain([(to, true)]) {
            let Some(c) = self.of.get_mut(&id) else {
                continue;
            };
            self.queue.remove(&(*c, id));
            *c = if up { *c + 1 } else { c.saturating_sub(1) };
            self.queue.insert((*c, id));
        }
    }
}

/// The partitions each live broker leads, by topic, for the count step of [`decide`].
struct Owned<'a> {
    by_broker: BTreeMap<u64, BTreeMap<&'a str, Vec<u32>>>,
}

impl<'a> Owned<'a> {
    /// Leaves out partitions pinned to a live broker and those already `changed`.
    fn of(
        state: &'a PdState,
        load: &BTreeMap<u64, usize>,
        changed: &HashMap<(&str, u32), u64>,
    ) -> Owned<'a> {
        let mut by_broker: BTreeMap<u64, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
        for t in state.topics.values() {
            for p in &t.partitions {
                if p.pinned.is_some_and(|b| load.contains_key(&b))
                    || changed.contains_key(&(t.name.as_str(), p.index))
                {
                    continue;
                }
                if let Some(l) = p.leader.filter(|l| load.contains_key(l)) {
                    let topics = by_broker.entry(l).or_default();
                    topics.entry(t.name.as_str()).or_default().push(p.index);
                }
            }
        }
        Owned { by_broker }
    }

    /// Takes a partition from `from` to give to `to`, recording the move: of the topic whose
    /// count on `from` exceeds its count on `to` the most (ties: the first topic by name), the
    /// coldest (ties: the highest index) that `spread` lets move; failing that, of the next
    /// topic. `None` when there is none.
    fn take_for(&mut self, from: u64, to: u64, spread: Option<&Spread>) -> Option<(&'a str, u32)> {
        let on_to = |name: &str| {
            self.by_broker
                .get(&to)
                .and_then(|ts| ts.get(name))
                .map_or(0, Vec::len)
        };
        let mut topics: Vec<(usize, &'a str)> = self
            .by_broker
            .get(&from)?
            .iter()
            .filter(|(_, indexes)| !indexes.is_empty())
            .map(|(&name, indexes)| (indexes.len().saturating_sub(on_to(name)), name))
            .collect();
        // Most excess first; among equals, the first by name.
        topics.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let rate = |name: &str, index: u32| spread.map_or(0, |s| s.rate(name, index));
        let allowed =
            |name: &str, index: u32| spread.is_none_or(|s| s.keeps_band(name, index, from, to));
        let (name, at) = topics.iter().find_map(|&(_, name)| {
            let indexes = self.by_broker.get(&from)?.get(name)?;
            let at = (0..indexes.len())
                .rev()
                .filter(|&i| allowed(name, indexes[i]))
                .min_by_key(|&i| rate(name, indexes[i]))?;
            Some((name, at))
        })?;
        let index = self.by_broker.get_mut(&from)?.get_mut(name)?.remove(at);
        let to_topics = self.by_broker.entry(to).or_default();
        to_topics.entry(name).or_default().push(index);
        Some((name, index))
    }
}

/// Nodes whose liveness differs from `seen` (unknown nodes count as alive before), updating it.
fn liveness_flips(
    state: &PdState,
    alive: impl Fn(u64) -> bool,
    seen: &mut BTreeMap<u64, bool>,
) -> Vec<Event> {
    seen.retain(|id, _| state.nodes.contains_key(id));
    state
        .nodes
        .keys()
        .filter_map(|&id| {
            let now = alive(id);
            let before = seen.insert(id, now).unwrap_or(true);
            (before != now).then_some(Event::NodeChanged(id))
        })
        .collect()
}

/// How often (in ticks) the leader looks for nodes to forget.
const FORGET_EVERY_TICKS: u32 = 40;

/// Forgets every node silent for `after` that no range or partition names (so PD's node list
/// does not grow with every replaced machine). A forgotten node that comes back registers
/// again under its kept id.
async fn forget_dead_nodes(service: &PdService, after: Duration) {
    let dead = |id| service.liveness.silent_for(id, after);
    let Ok(nodes) = service.read(|s| s.state.forgettable_nodes(dead)) else {
        return;
    };
    for node_id in nodes {
        match service.write(Command::ForgetNode { node_id }).await {
            Ok(_) => {
                service.liveness.forget(node_id);
                tracing::info!(node = node_id, silent_for = ?after, "forgot a long-dead node");
            }
            Err(e) => tracing::warn!(node = node_id, "forgetting a dead node: {e}"),
        }
    }
}

/// The balancer task: runs until Raft stops. Does nothing on a voter that is not the leader.
/// Also forgets nodes dead for `forget_after` (see [`forget_dead_nodes`]). Traffic comes
/// from the brokers' latest reports ([`crate::loads`]), paced by a [`Pacer`].
pub async fn run(
    service: PdService,
    interval: Duration,
    max_moves: usize,
    forget_after: Duration,
    policy: LoadPolicy,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = BTreeMap::new();
    let mut leader_ticks = 0u32;
    let mut pacer = Pacer::default();
    loop {
        tick.tick().await;
        if service.raft.metrics().borrow().running_state.is_err() {
            break;
        }
        if service.is_leader().is_err() {
            seen.clear();
            leader_ticks = 0;
            pacer.reset();
            continue;
        }
        // Sit out the first tick as leader: the leadership watcher (crate::server) restarts the
        // liveness grace period then, and until it has, nodes would look dead.
        leader_ticks = leader_ticks.saturating_add(1);
        if leader_ticks < 2 {
            continue;
        }
        let alive = |id| service.liveness.alive(id);
        let rates = service.loads.rates();
        let traffic = Traffic {
            rates: &rates,
            policy: &policy,
            budget: pacer.budget(Instant::now(), &policy),
        };
        let Ok((flips, first)) = service.read(|s| {
            (
                liveness_flips(&s.state, alive, &mut seen),
                plan(&s.state, alive, max_moves, Some(&traffic)),
            )
        }) else {
            continue;
        };
        if !flips.is_empty() {
            tracing::info!(?flips, "node liveness changed");
            service.watch.publish_local(flips);
        }
        if leader_ticks.is_multiple_of(FORGET_EVERY_TICKS) {
            forget_dead_nodes(&service, forget_after).await;
        }
        if first.is_empty() {
            continue;
        }
        // Something to do: plan again on state that is certainly current.
        if service.ensure_leader().await.is_err() {
            continue;
        }
        let Ok((decisions, before)) = service.read(|s| {
            let decisions = decide(&s.state, alive, max_moves, Some(&traffic));
            let changes: Vec<Change> = decisions.iter().map(|(c, _)| c.clone()).collect();
            let before = leaders_of(&s.state, &changes);
            (decisions, before)
        }) else {
            continue;
        };
        if decisions.is_empty() {
            continue;
        }
        let changes: Vec<Change> = decisions.iter().map(|(c, _)| c.clone()).collect();
        let count = changes.len();
        let for_load = decisions.iter().filter(|(_, r)| *r == Reason::Load).count();
        // A trace of its own in the tracing UI: the balancer's decision, committed.
        let span = tracing::info_span!(
            "balancer.assign",
            changes = count,
            for_load,
            moves = ?decisions
                .iter()
                .map(|((t, p, to), r)| format!("{t}-{p} to {to} ({})", r.as_str()))
                .collect::<Vec<_>>()
        );
        let written = service
            .write(Command::AssignPartitions { changes })
            .instrument(span)
            .await;
        match written {
            Ok(Response::Assigned(topics)) => {
                tracing::info!(changes = count, for_load, ?topics, "partitions assigned");
                pacer.changed(Instant::now(), for_load);
                service.record_moves(&decisions, &before);
            }
            Ok(other) => tracing::warn!(?other, "unexpected result of AssignPartitions"),
            Err(e) => tracing::warn!("assigning partitions: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::TopicSpec;

    fn broker(st: &mut PdState, n: u16) -> u64 {
        match st
            .apply(&Command::RegisterNode {
                kind: Kind::Broker,
                node_id: None,
                addr: format!("127.0.0.1:{}", 9092 + n),
                http_addr: String::new(),
            })
            .0
        {
            Ok(Response::Node(n)) => n.id,
            other => panic!("{other:?}"),
        }
    }

    fn topic(st: &mut PdState, name: &str, partitions: u32, leaders: Vec<Option<u64>>) {
        let mut id = [0u8; 16];
        id[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
        id[15] = 1;
        let r = st
            .apply(&Command::CreateTopic(TopicSpec {
                name: name.into(),
                id,
                partitions,
                configs: vec![],
                replica: 1,
                ack_count: 1,
                internal: false,
                leaders,
            }))
            .0;
        assert!(r.is_ok(), "{r:?}");
    }

    fn leaders(st: &PdState) -> Vec<(String, u32, Option<u64>, u32)> {
        st.topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.clone(), p.index, p.leader, p.leader_epoch))
            })
            .collect()
    }

    fn counts(st: &PdState) -> BTreeMap<u64, usize> {
        live_counts(st, |_| true)
    }

    /// Runs the balancer to a fixed point; answers the number of ticks that changed something.
    fn settle(st: &mut PdState, alive: impl Fn(u64) -> bool + Copy, max_moves: usize) -> usize {
        for ticks in 0..1000 {
            let changes = plan(st, alive, max_moves, None);
            if changes.is_empty() {
                return ticks;
            }
            let (r, ev) = st.apply(&Command::AssignPartitions { changes });
            assert!(matches!(r, Ok(Response::Assigned(_))));
            assert!(!ev.is_empty());
        }
        panic!("balancer did not converge");
    }

    #[test]
    fn new_partitions_spread_over_live_brokers() {
        let mut st = PdState::default();
        assert_eq!(pick_leaders(&st, |_| true, 2), vec![None, None]);
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        let b3 = broker(&mut st, 3);
        let picked = pick_leaders(&st, |id| id != b3, 5);
        assert_eq!(
            picked,
            vec![Some(b1), Some(b2), Some(b1), Some(b2), Some(b1)]
        );
        topic(&mut st, "a", 5, picked);
        // The next topic goes first to the least loaded.
        assert_eq!(
            pick_leaders(&st, |_| true, 3),
            vec![Some(b3), Some(b3), Some(b2)]
        );
    }

    #[test]
    fn orphans_go_to_live_brokers_and_epochs_bump_only_on_change() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        // Created while no broker was live: all leaderless.
        topic(&mut st, "t", 4, vec![]);
        assert!(leaders(&st)
            .iter()
            .all(|(_, _, l, e)| l.is_none() && *e == 0));
        let b2 = broker(&mut st, 2);
        assert_eq!(settle(&mut st, |_| true, 8), 1);
        assert_eq!(
            leaders(&st),
            vec![
                ("t".into(), 0, Some(b1), 1),
                ("t".into(), 1, Some(b2), 1),
                ("t".into(), 2, Some(b1), 1),
                ("t".into(), 3, Some(b2), 1),
            ]
        );
        // Balanced: no work, and a no-op assignment changes nothing.
        assert!(plan(&st, |_| true, 8, None).is_empty());
        let before = st.clone();
        let (r, ev) = st.apply(&Command::AssignPartitions {
            changes: vec![
                ("t".into(), 0, b1),
                ("gone".into(), 0, b2),
                ("t".into(), 9, b2),
            ],
        });
        assert_eq!(r, Ok(Response::Assigned(vec![])));
        assert!(ev.is_empty());
        assert_eq!(st, before);
        // Not a registered broker: refused.
        let (r, _) = st.apply(&Command::AssignPartitions {
            changes: vec![("t".into(), 0, 999)],
        });
        assert_eq!(r, Ok(Response::Assigned(vec![])));
        assert_eq!(st, before);
    }

    #[test]
    fn dead_brokers_partitions_move_to_live_ones() {
        let mut st = PdState::default();
        let b: Vec<u64> = (1..=3).map(|n| broker(&mut st, n)).collect();
        let picked = pick_leaders(&st, |_| true, 9);
        topic(&mut st, "t", 9, picked);
        assert_eq!(
            counts(&st).values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3]
        );
        let dead = b[1];
        let alive = move |id| id != dead;
        // All three orphans move in one tick, however small max_moves is.
        assert_eq!(settle(&mut st, alive, 1), 1);
        let live = live_counts(&st, alive);
        assert_eq!(live, BTreeMap::from([(b[0], 5), (b[2], 4)]));
        for (_, _, l, e) in leaders(&st) {
            assert_ne!(l, Some(dead));
            assert!(e <= 1);
        }
        // Nobody live: nothing to do.
        assert!(plan(&st, |_| false, 8, None).is_empty());
    }

    #[test]
    fn a_new_broker_gets_a_fair_share_a_few_moves_per_tick() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        topic(&mut st, "a", 10, vec![Some(b1); 10]);
        topic(&mut st, "b", 10, vec![Some(b1); 10]);
        let b2 = broker(&mut st, 2);
        let b3 = broker(&mut st, 3);
        let first = plan(&st, |_| true, 4, None);
        assert_eq!(first.len(), 4);
        // Ticks: 20 -> 7/7/6 needs 13 moves: 4 per tick is 4 ticks.
        assert_eq!(settle(&mut st, |_| true, 4), 4);
        let c = counts(&st);
        assert_eq!(c, BTreeMap::from([(b1, 7), (b2, 7), (b3, 6)]));
        // Every moved partition's epoch bumped exactly once; the others stayed at 0.
        for (_, _, l, e) in leaders(&st) {
            assert_eq!(e, u32::from(l != Some(b1)));
        }
    }

    /// Per-topic leader counts of the live brokers, by topic name.
    fn topic_counts(st: &PdState, brokers: &[u64]) -> BTreeMap<String, Vec<usize>> {
        st.topics
            .values()
            .map(|t| {
                let per = brokers
                    .iter()
                    .map(|b| t.partitions.iter().filter(|p| p.leader == Some(*b)).count())
                    .collect();
                (t.name.clone(), per)
            })
            .collect()
    }

    /// A broker that lost its lease and came back gets its share of every topic back, not
    /// all of the topic that sorts last (which left its clients with one broker to talk to).
    #[test]
    fn a_returning_broker_gets_a_share_of_every_topic() {
        let mut st = PdState::default();
        let b: Vec<u64> = (1..=3).map(|n| broker(&mut st, n)).collect();
        let picked = pick_leaders(&st, |_| true, 50);
        topic(&mut st, "__consumer_offsets", 50, picked);
        let picked = pick_leaders(&st, |_| true, 6);
        topic(&mut st, "stall", 6, picked);
        assert_eq!(
            topic_counts(&st, &b)["stall"],
            vec![2, 2, 2],
            "created spread"
        );
        let dead = b[0];
        settle(&mut st, move |id| id != dead, 8);
        settle(&mut st, |_| true, 8);
        let total: Vec<usize> = counts(&st).values().copied().collect();
        assert!(total.iter().max() <= total.iter().min().map(|m| m + 1).as_ref());
        for (name, per) in topic_counts(&st, &b) {
            let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
            assert!(hi - lo <= 1, "{name} is spread {per:?}");
        }
    }

    #[test]
    fn planning_ten_thousand_partitions_is_deterministic() {
        let mut st = PdState::default();
        let b: Vec<u64> = (1..=5).map(|n| broker(&mut st, n)).collect();
        topic(&mut st, "big", 10_000, vec![]);
        let p1 = plan(&st, |id| id != b[4], 8, None);
        let p2 = plan(&st, |id| id != b[4], 8, None);
        assert_eq!(p1, p2);
        assert_eq!(p1.len(), 10_000);
        assert!(st
            .apply(&Command::AssignPartitions { changes: p1 })
            .0
            .is_ok());
        assert_eq!(
            live_counts(&st, |id| id != b[4])
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![2500; 4]
        );
        assert!(plan(&st, |id| id != b[4], 8, None).is_empty());
        // The fifth comes alive: moves start, 8 per tick.
        assert_eq!(plan(&st, |_| true, 8, None).len(), 8);
    }

    #[test]
    fn liveness_flips_are_reported_once() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        let mut seen = BTreeMap::new();
        assert!(liveness_flips(&st, |_| true, &mut seen).is_empty());
        assert_eq!(
            liveness_flips(&st, |id| id != b2, &mut seen),
            vec![Event::NodeChanged(b2)]
        );
        assert!(liveness_flips(&st, |id| id != b2, &mut seen).is_empty());
        assert_eq!(
            liveness_flips(&st, |_| true, &mut seen),
            vec![Event::NodeChanged(b2)]
        );
        let _ = b1;
    }

    fn pin(st: &mut PdState, name: &str, index: u32, broker: u64) {
        let (r, ev) = st.apply(&Command::MovePartitions {
            moves: vec![(name.into(), index, broker)],
        });
        assert!(matches!(r, Ok(Response::Assigned(_))), "{r:?}");
        assert!(!ev.is_empty());
    }

    fn leader(st: &PdState, name: &str, index: u32) -> Option<u64> {
        st.topics[name].partitions[index as usize].leader
    }

    /// A partition an operator moved stays on its broker while it lives (evening out moves
    /// other partitions), goes elsewhere while it is dead, and comes back when it returns.
    #[test]
    fn a_pinned_partition_stays_and_comes_back_to_its_broker() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        topic(
            &mut st,
            "t",
            4,
            vec![Some(b1), Some(b1), Some(b2), Some(b2)],
        );
        // Pin two more onto b1: 4 against 0 is evened out, but only with the unpinned ones:
        // the two pinned stay on b1.
        pin(&mut st, "t", 2, b1);
        pin(&mut st, "t", 3, b1);
        assert_eq!(st.topics["t"].partitions[2].pinned, Some(b1));
        assert_eq!(leader(&st, "t", 2), Some(b1));
        settle(&mut st, |_| true, 8);
        assert_eq!(leader(&st, "t", 2), Some(b1));
        assert_eq!(leader(&st, "t", 3), Some(b1));
        assert_eq!(counts(&st), BTreeMap::from([(b1, 2), (b2, 2)]));
        assert_eq!(leader(&st, "t", 0), Some(b2));
        // b1 dies: every partition goes to b2, pinned or not.
        settle(&mut st, |id| id != b1, 8);
        assert_eq!(live_counts(&st, |id| id != b1), BTreeMap::from([(b2, 4)]));
        // b1 returns: its pinned partitions come back (reason: pinned), which evens the
        // counts too.
        let decided = decide(&st, |_| true, 8, None);
        let back: Vec<_> = decided
            .iter()
            .filter(|(_, r)| *r == Reason::Pinned)
            .map(|((_, i, to), _)| (*i, *to))
            .collect();
        assert_eq!(back, vec![(2, b1), (3, b1)]);
        settle(&mut st, |_| true, 8);
        assert_eq!(leader(&st, "t", 2), Some(b1));
        assert_eq!(leader(&st, "t", 3), Some(b1));
        assert_eq!(counts(&st), BTreeMap::from([(b1, 2), (b2, 2)]));
    }

    /// An orphan goes to its pinned broker when that one lives, whatever the counts.
    #[test]
    fn an_orphan_goes_to_its_live_pin() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        let b3 = broker(&mut st, 3);
        topic(&mut st, "t", 3, vec![Some(b1), Some(b2), Some(b3)]);
        pin(&mut st, "t", 0, b2);
        assert_eq!(leader(&st, "t", 0), Some(b2));
        // b2 dies and partition 0 goes elsewhere; then that broker dies with b2 back.
        settle(&mut st, |id| id != b2, 8);
        let interim = leader(&st, "t", 0);
        assert_ne!(interim, Some(b2));
        let decided = decide(&st, |id| Some(id) != interim, 8, None);
        assert!(
            decided.contains(&(("t".into(), 0, b2), Reason::Orphan)),
            "{decided:?}"
        );
    }

    /// A forgotten broker's pins are dropped with it.
    #[test]
    fn forgetting_a_broker_drops_its_pins() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        topic(&mut st, "t", 1, vec![Some(b1)]);
        pin(&mut st, "t", 0, b2);
        settle(&mut st, |id| id != b2, 8);
        assert_eq!(leader(&st, "t", 0), Some(b1));
        assert!(st.apply(&Command::ForgetNode { node_id: b2 }).0.is_ok());
        assert_eq!(st.topics["t"].partitions[0].pinned, None);
    }

    fn drain(st: &mut PdState, node_id: u64, draining: bool) {
        let (r, ev) = st.apply(&Command::SetDraining { node_id, draining });
        assert!(
            matches!(r, Ok(Response::Node(ref n)) if n.draining == draining),
            "{r:?}"
        );
        assert!(!ev.is_empty());
    }

    /// A draining broker gets no partitions and gives its own to the others (pinned ones
    /// too); undrained it gets its share, and its pinned partitions, back. Registering again
    /// ends draining.
    #[test]
    fn a_draining_broker_gives_its_partitions_away() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        topic(
            &mut st,
            "t",
            4,
            vec![Some(b1), Some(b1), Some(b2), Some(b2)],
        );
        pin(&mut st, "t", 0, b1);
        drain(&mut st, b1, true);
        let decided = decide(&st, |_| true, 8, None);
        assert_eq!(
            decided,
            vec![
                (("t".into(), 0, b2), Reason::Drain),
                (("t".into(), 1, b2), Reason::Drain)
            ]
        );
        settle(&mut st, |_| true, 8);
        assert_eq!(live_counts(&st, |_| true), BTreeMap::from([(b2, 4)]));
        assert_eq!(pick_leaders(&st, |_| true, 2), vec![Some(b2), Some(b2)]);
        drain(&mut st, b1, false);
        settle(&mut st, |_| true, 8);
        assert_eq!(counts(&st), BTreeMap::from([(b1, 2), (b2, 2)]));
        assert_eq!(leader(&st, "t", 0), Some(b1));
        drain(&mut st, b1, true);
        let again = st.apply(&Command::RegisterNode {
            kind: Kind::Broker,
            node_id: Some(b1),
            addr: "127.0.0.1:9093".into(),
            http_addr: String::new(),
        });
        assert!(
            matches!(again.0, Ok(Response::Node(ref n)) if !n.draining),
            "{again:?}"
        );
    }

    fn policy(min_gap: u64) -> LoadPolicy {
        LoadPolicy {
            band: 0.2,
            min_gap,
            moves_per_minute: 30,
            settle: Duration::ZERO,
        }
    }

    /// Each live broker's traffic under `rates` as PD now assigns leaders.
    fn traffic_of(st: &PdState, rates: &Rates) -> BTreeMap<u64, u64> {
        let mut by: BTreeMap<u64, u64> = counts(st).keys().map(|b| (*b, 0)).collect();
        for t in st.topics.values() {
            for p in &t.partitions {
                if let (Some(l), Some(r)) = (p.leader, rates.get(&(t.name.clone(), p.index))) {
                    *by.entry(l).or_default() += r;
                }
            }
        }
        by
    }

    /// Plans and applies with traffic until nothing changes; answers every decision made.
    fn settle_traffic(
        st: &mut PdState,
        rates: &Rates,
        policy: &LoadPolicy,
    ) -> Vec<(Change, Reason)> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let traffic = Traffic {
                rates,
                policy,
                budget: policy.moves_per_minute,
            };
            let decided = decide(st, |_| true, 8, Some(&traffic));
            if decided.is_empty() {
                return all;
            }
            let changes = decided.iter().map(|(c, _)| c.clone()).collect();
            assert!(st.apply(&Command::AssignPartitions { changes }).0.is_ok());
            all.extend(decided);
        }
        panic!("balancing by traffic did not converge: {all:?}");
    }

    const MB: u64 = 1_000_000;

    /// Three hot partitions that all landed on one broker are spread one per broker, cold
    /// partitions move back so counts stay even, and then nothing moves any more.
    #[test]
    fn hot_partitions_on_one_broker_are_spread_out() {
        let mut st = PdState::default();
        let b: Vec<u64> = (1..=3).map(|n| broker(&mut st, n)).collect();
        let picked = pick_leaders(&st, |_| true, 9);
        topic(&mut st, "t", 9, picked);
        let rates: Rates = (0..9)
            .filter(|i| leader(&st, "t", *i) == Some(b[0]))
            .map(|i| (("t".to_string(), i), 3 * MB))
            .collect();
        assert_eq!(rates.len(), 3);
        let decided = settle_traffic(&mut st, &rates, &policy(MB));
        let load_moves = decided.iter().filter(|(_, r)| *r == Reason::Load).count();
        assert_eq!(load_moves, 2, "{decided:?}");
        assert_eq!(decided.len(), 4, "two hot out, two cold back: {decided:?}");
        assert_eq!(
            traffic_of(&st, &rates)
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![3 * MB; 3]
        );
        assert_eq!(
            counts(&st).values().copied().collect::<Vec<_>>(),
            vec![3; 3]
        );
        // Without the load step (the old balancer) nothing would have moved: counts were even.
        assert!(plan(&st, |_| true, 8, None).is_empty());
    }

    /// Traffic within the band, or skewed by less than the minimum gap, moves nothing; nor
    /// does a skew no move can narrow (one partition hotter than all the rest).
    #[test]
    fn balanced_idle_or_unfixable_traffic_moves_nothing() {
        let mut st = PdState::default();
        let b: Vec<u64> = (1..=3).map(|n| broker(&mut st, n)).collect();
        topic(&mut st, "t", 3, vec![Some(b[0]), Some(b[1]), Some(b[2])]);
        let rates = |r: [u64; 3]| -> Rates {
            (0..3u32)
                .map(|i| (("t".to_string(), i), r[i as usize]))
                .collect()
        };
        let in_band = rates([11 * MB, 10 * MB, 9 * MB]);
        assert!(settle_traffic(&mut st, &in_band, &policy(0)).is_empty());
        let idle = rates([900_000, 0, 0]);
        assert!(settle_traffic(&mut st, &idle, &policy(MB)).is_empty());
        let one_hot = rates([50 * MB, 0, 0]);
        assert!(settle_traffic(&mut st, &one_hot, &policy(MB)).is_empty());
        // The same skew with a minimum gap of 0: still nothing, as no move narrows it.
        assert!(settle_traffic(&mut st, &idle, &policy(0)).is_empty());
    }

    /// Two equally hot partitions on one of three brokers: one moves, and then the balancer
    /// stops (the third broker stays idle, as no move can even it out), with no flapping.
    #[test]
    fn lumpy_traffic_settles_without_flapping() {
        let mut st = PdState::default();
        let b: Vec<u64> = (1..=3).map(|n| broker(&mut st, n)).collect();
        topic(&mut st, "t", 2, vec![Some(b[0]), Some(b[0])]);
        topic(
            &mut st,
            "cold",
            4,
            vec![Some(b[1]), Some(b[1]), Some(b[2]), Some(b[2])],
        );
        let rates: Rates = (0..2u32).map(|i| (("t".to_string(), i), 5 * MB)).collect();
        let decided = settle_traffic(&mut st, &rates, &policy(MB));
        let load_moves = decided.iter().filter(|(_, r)| *r == Reason::Load).count();
        assert_eq!(load_moves, 1, "{decided:?}");
        let traffic = traffic_of(&st, &rates);
        assert_eq!(
            traffic.values().filter(|r| **r == 5 * MB).count(),
            2,
            "{traffic:?}"
        );
        let total: Vec<usize> = counts(&st).values().copied().collect();
        assert!(total.iter().max() <= total.iter().min().map(|m| m + 1).as_ref());
    }

    /// Pinned partitions are not moved for traffic, and the count step does not move a hot
    /// partition where it would put a broker out of the band.
    #[test]
    fn traffic_respects_pins_and_counts_respect_traffic() {
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        topic(&mut st, "t", 2, vec![Some(b1), Some(b1)]);
        pin(&mut st, "t", 0, b1);
        pin(&mut st, "t", 1, b1);
        let rates: Rates = (0..2u32).map(|i| (("t".to_string(), i), 5 * MB)).collect();
        assert!(settle_traffic(&mut st, &rates, &policy(MB)).is_empty());
        assert_eq!(counts(&st), BTreeMap::from([(b1, 2), (b2, 0)]));
        // Counts 3 against 1 but traffic even (three 2 MB/s partitions against one of
        // 6 MB/s): evening out counts would put b2 out of the band, so nothing moves (moving
        // one anyway would have the load step move it back: flapping).
        let mut st = PdState::default();
        let b1 = broker(&mut st, 1);
        let b2 = broker(&mut st, 2);
        topic(
            &mut st,
            "u",
            4,
            vec![Some(b1), Some(b1), Some(b1), Some(b2)],
        );
        let rates: Rates = (0..4u32)
            .map(|i| (("u".to_string(), i), if i < 3 { 2 * MB } else { 6 * MB }))
            .collect();
        assert!(
            plan(&st, |_| true, 8, None).len() == 1,
            "counts alone move one"
        );
        assert!(settle_traffic(&mut st, &rates, &policy(MB)).is_empty());
        assert_eq!(counts(&st), BTreeMap::from([(b1, 3), (b2, 1)]));
    }

    /// The pacer allows nothing within `settle` of a change and at most `moves_per_minute`
    /// load moves in any minute.
    #[test]
    fn the_pacer_caps_and_settles() {
        let policy = LoadPolicy {
            band: 0.2,
            min_gap: 0,
            moves_per_minute: 5,
            settle: Duration::from_secs(6),
        };
        let mut pacer = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(pacer.budget(t0, &policy), 5);
        pacer.changed(t0, 3);
        assert_eq!(pacer.budget(t0 + Duration::from_secs(5), &policy), 0);
        assert_eq!(pacer.budget(t0 + Duration::from_secs(7), &policy), 2);
        pacer.changed(t0 + Duration::from_secs(7), 2);
        assert_eq!(pacer.budget(t0 + Duration::from_secs(20), &policy), 0);
        assert_eq!(pacer.budget(t0 + Duration::from_secs(61), &policy), 3);
        assert_eq!(pacer.budget(t0 + Duration::from_secs(68), &policy), 5);
        pacer.reset();
        assert_eq!(pacer.budget(t0, &policy), 5);
    }
}
