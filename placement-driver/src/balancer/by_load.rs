//! Balancing by traffic: the balancer's load step and what paces it.
//!
//! Owns: [`Spread`], the bytes per second (produced plus fetched, as brokers report them) each
//! live broker serves as planning changes leaders, and the rule of when a broker is out of
//! balance ([`Spread::out_of_band`]: its traffic differs from the mean by more than `band` of
//! the mean *and* by more than `min_gap` bytes/s, so a near-idle cluster is left alone);
//! [`Spread::even_out`], which moves partitions from the busiest to the idlest broker while
//! either is out of balance, each time the partition that best halves the gap between the two
//! and only if it narrows it (so every move strictly lowers the spread: the step cannot flap
//! on loads that hold still); and [`Pacer`], which caps load moves per minute and waits after
//! any ownership change until the moved partitions' new owners have reported (the hysteresis
//! against loads that do not hold still).
//!
//! Must not: move a partition pinned to a live broker, or one already changed in this plan,
//! or do I/O. The count step of [`super::decide`] asks [`Spread::keeps_band`] before it moves a
//! partition, so evening out counts never undoes this step.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::state::PdState;

/// Bytes per second (produced plus fetched) of each partition with traffic, by (topic, index).
pub type Rates = HashMap<(String, u32), u64>;

/// How the balancer weighs traffic (PD flags `--balance-load-*`).
#[derive(Debug, Clone)]
pub struct LoadPolicy {
    /// A broker whose traffic is off the mean by more than this fraction of the mean ...
    pub band: f64,
    /// ... and by more than this many bytes per second is out of balance.
    pub min_gap: u64,
    /// Most moves made for traffic in any minute.
    pub moves_per_minute: usize,
    /// After the balancer changes any leader, traffic is not judged again for this long: the
    /// new owners' reports must first cover whole intervals.
    pub settle: Duration,
}

impl Default for LoadPolicy {
    fn default() -> Self {
        LoadPolicy {
            band: 0.2,
            min_gap: 1 << 20,
            moves_per_minute: 30,
            settle: Duration::from_secs(6),
        }
    }
}

/// What the load step may do in one plan.
pub struct Traffic<'a> {
    pub rates: &'a Rates,
    pub policy: &'a LoadPolicy,
    /// Moves for traffic allowed now (see [`Pacer::budget`]); 0 still lets [`Spread`] guard
    /// the count step.
    pub budget: usize,
}

/// Each live broker's traffic, and the partitions the load step may move, as a plan goes.
pub struct Spread<'a> {
    band: f64,
    min_gap: u64,
    rates: &'a Rates,
    by_broker: BTreeMap<u64, u64>,
    /// (rate, topic, index) of the movable partitions with traffic, by leader.
    movable: BTreeMap<u64, Vec<(u64, &'a str, u32)>>,
}

impl<'a> Spread<'a> {
    /// The spread after `changed` (leaders already decided in this plan) over the `live`
    /// brokers. Partitions pinned to a live broker and those in `changed` are not movable.
    pub fn new(
        state: &'a PdState,
        traffic: &Traffic<'a>,
        live: &BTreeMap<u64, usize>,
        changed: &HashMap<(&str, u32), u64>,
    ) -> Spread<'a> {
        let mut by_broker: BTreeMap<u64, u64> = live.keys().map(|b| (*b, 0)).collect();
        let mut movable: BTreeMap<u64, Vec<(u64, &str, u32)>> = BTreeMap::new();
        for t in state.topics.values() {
            for p in &t.partitions {
                let Some(&rate) = traffic.rates.get(&(t.name.clone(), p.index)) else {
                    continue;
                };
                let now = changed.get(&(t.name.as_str(), p.index)).copied();
                let Some(leader) = now.or(p.leader).filter(|l| live.contains_key(l)) else {
                    continue;
                };
                if let Some(sum) = by_broker.get_mut(&leader) {
                    *sum = sum.saturating_add(rate);
                }
                let pinned = p.pinned.is_some_and(|b| live.contains_key(&b));
                if now.is_none() && !pinned && rate > 0 {
                    movable
                        .entry(leader)
                        .or_default()
                        .push((rate, t.name.as_str(), p.index));
                }
            }
        }
        Spread {
            band: traffic.policy.band,
            min_gap: traffic.policy.min_gap,
            rates: traffic.rates,
            by_broker,
            movable,
        }
    }

    fn mean(&self) -> f64 {
        let total: u64 = self.by_broker.values().sum();
        total as f64 / self.by_broker.len().max(1) as f64
    }

    /// Whether a broker serving `bytes_per_sec` is out of balance (see the module doc).
    pub fn out_of_band(&self, bytes_per_sec: u64) -> bool {
        let mean = self.mean();
        let off = (bytes_per_sec as f64 - mean).abs();
        off > self.band * mean && off > self.min_gap as f64
    }

    /// Whether moving `topic`/`index` from `from` to `to` leaves neither out of balance (or
    /// no worse off than it was).
    pub fn keeps_band(&self, topic: &str, index: u32, from: u64, to: u64) -> bool {
        let rate = self.rate(topic, index);
        if rate == 0 {
            return true;
        }
        let (lf, lt) = (self.load(from), self.load(to));
        let ok = |before: u64, after: u64| !self.out_of_band(after) || self.out_of_band(before);
        ok(lf, lf.saturating_sub(rate)) && ok(lt, lt.saturating_add(rate))
    }

    /// The traffic of a partition, 0 when none was reported.
    pub fn rate(&self, topic: &str, index: u32) -> u64 {
        self.rates
            .get(&(topic.to_string(), index))
            .copied()
            .unwrap_or(0)
    }

    fn load(&self, broker: u64) -> u64 {
        self.by_broker.get(&broker).copied().unwrap_or(0)
    }

    /// A partition of `rate` bytes/s changes leader (decided by another step).
    pub fn shift(&mut self, from: u64, to: u64, rate: u64) {
        if let Some(l) = self.by_broker.get_mut(&from) {
            *l = l.saturating_sub(rate);
        }
        if let Some(l) = self.by_broker.get_mut(&to) {
            *l = l.saturating_add(rate);
        }
    }

    /// The load step: up to `budget` moves (topic, index, from, to), busiest to idlest, as
    /// the module doc says.
    pub fn even_out(&mut self, budget: usize) -> Vec<(&'a str, u32, u64, u64)> {
        let mut moves = Vec::new();
        while moves.len() < budget {
            let busiest = self
                .by_broker
                .iter()
                .max_by_key(|(id, l)| (**l, u64::MAX - **id));
            let idlest = self.by_broker.iter().min_by_key(|(id, l)| (**l, **id));
            let (Some((&hot, &lh)), Some((&cold, &lc))) = (busiest, idlest) else {
                break;
            };
            if hot == cold || !(self.out_of_band(lh) || self.out_of_band(lc)) {
                break;
            }
            let gap = lh - lc;
            // The partition that best halves the gap; it must be smaller than the gap, so
            // that both brokers end up below the busier one's load.
            let Some(candidates) = self.movable.get_mut(&hot) else {
                break;
            };
            let best = candidates
                .iter()
                .enumerate()
                .filter(|(_, (rate, _, _))| *rate < gap)
                .min_by_key(|(_, (rate, name, index))| (gap.abs_diff(2 * rate), *name, *index))
                .map(|(i, _)| i);
            let Some(i) = best else {
                break;
            };
            let (rate, name, index) = candidates.swap_remove(i);
            self.shift(hot, cold, rate);
            moves.push((name, index, hot, cold));
        }
        moves
    }
}

/// Paces the load step: at most `moves_per_minute`, and nothing within `settle` of the last
/// ownership change the balancer made. Holds at most a minute of move times.
#[derive(Default)]
pub struct Pacer {
    recent: VecDeque<Instant>,
    last_change: Option<Instant>,
}

impl Pacer {
    /// Moves for traffic allowed at `now`.
    pub fn budget(&mut self, now: Instant, policy: &LoadPolicy) -> usize {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self
            .last_change
            .is_some_and(|t| now.duration_since(t) < policy.settle)
        {
            return 0;
        }
        policy.moves_per_minute.saturating_sub(self.recent.len())
    }

    /// The balancer changed leaders at `now`, `for_load` of them for traffic.
    pub fn changed(&mut self, now: Instant, for_load: usize) {
        self.last_change = Some(now);
        self.recent.extend(std::iter::repeat_n(now, for_load));
    }

    /// Leadership was lost: start afresh.
    pub fn reset(&mut self) {
        *self = Pacer::default();
    }
}

/// The partitions in `changes`, for [`Spread::new`].
pub fn changed_of(changes: &[(super::Change, super::Reason)]) -> HashMap<(&str, u32), u64> {
    changes
        .iter()
        .map(|((name, index, to), _)| ((name.as_str(), *index), *to))
        .collect()
}
