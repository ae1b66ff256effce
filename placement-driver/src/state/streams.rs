//! The stream and range rules of [`PdState`]: creating, opening (fencing epochs), ranges
//! (continuity, seal idempotence), trimming, deleting, and the deterministic choice of range
//! servers for the next range. Pure like the rest of the state: no I/O, clocks or liveness
//! except the `alive` function the leader passes to [`PdState::choose_servers`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use protocol::pd::OffloadTask;

use super::{
    ApplyResult, Kind, PdState, RangeRecord, Response, StateError, StreamRecord, MAX_REPLICA,
};

/// The replication rule of a stream: `1 <= ack_count <= replica <= MAX_REPLICA`.
pub fn check_replication(replica: u8, ack_count: u8) -> Result<(), StateError> {
    if !(1..=MAX_REPLICA).contains(&replica) {
        return Err(StateError::InvalidArgument(format!(
            "replica {replica} not in 1..={MAX_REPLICA}"
        )));
    }
    if ack_count < 1 || ack_count > replica {
        return Err(StateError::InvalidArgument(format!(
            "ack_count {ack_count} not in 1..={replica}"
        )));
    }
    Ok(())
}

fn not_found(stream_id: u64) -> StateError {
    StateError::NotFound(format!("stream {stream_id}"))
}

/// A range request carries the writer's epoch; any other than the stream's is fenced.
fn check_epoch(stream_id: u64, s: &StreamRecord, epoch: u64) -> Result<(), StateError> {
    if epoch != s.epoch {
        return Err(StateError::Fenced(format!(
            "stream {stream_id} epoch is {}, request has {epoch}",
            s.epoch
        )));
    }
    Ok(())
}

impl PdState {
    /// A live (not deleted) stream.
    pub fn stream(&self, stream_id: u64) -> Result<&StreamRecord, StateError> {
        match self.streams.get(&stream_id) {
            Some(s) if !s.deleted => Ok(s),
            _ => Err(not_found(stream_id)),
        }
    }

    pub(super) fn stream_mut(&mut self, stream_id: u64) -> Result<&mut StreamRecord, StateError> {
        match self.streams.get_mut(&stream_id) {
            Some(s) if !s.deleted => Ok(s),
            _ => Err(not_found(stream_id)),
        }
    }

    /// Every live (not deleted) stream.
    pub fn live_streams(&self) -> impl Iterator<Item = &StreamRecord> {
        self.streams.values().filter(|s| !s.deleted)
    }

    /// How many ranges of live streams still need range server `node` (what
    /// `NodeInfo::still_needed` reports of a draining one): the open ranges it serves, and the
    /// sealed ones with data past what their stream keeps in objects of which no other server
    /// `o` holds all (`holds_through(o, (stream, index), end)`).
    pub fn ranges_needing(
        &self,
        node: u64,
        holds_through: impl Fn(u64, (u64, u32), u64) -> bool,
    ) -> u32 {
        let mut needed = 0;
        for s in self.live_streams() {
            let in_objects = self.offloaded_end(s);
            for r in s.ranges.iter().filter(|r| r.servers.contains(&node)) {
                let needs = match r.end {
                    None => true,
                    Some(end) => {
                        end > in_objects.max(r.start)
                            && !r
                                .servers
                                .iter()
                                .any(|&o| o != node && holds_through(o, (s.id, r.index), end))
                    }
                };
                needed += u32::from(needs);
            }
        }
        needed
    }

    /// Open ranges per range server (only the last range of a live stream can be open).
    pub fn open_ranges(&self) -> BTreeMap<u64, usize> {
        let mut counts = BTreeMap::new();
        for s in self.live_streams() {
            if let Some(last) = s.ranges.last().filter(|r| r.end.is_none()) {
                for id in &last.servers {
                    *counts.entry(*id).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// Picks up to `replica` servers for the next range of `stream_id`: live range servers not
    /// in `exclude`, preferring those not holding the previous range, then those with the fewest
    /// open ranges, then the lowest id. Deterministic for a given state and liveness.
    pub fn choose_servers(
        &self,
        stream_id: u64,
        exclude: &[u64],
        alive: impl Fn(u64) -> bool,
    ) -> Result<Vec<u64>, StateError> {
        let stream = self.stream(stream_id)?;
        let previous: HashSet<u64> = stream
            .ranges
            .last()
            .map(|r| r.servers.iter().copied().collect())
            .unwrap_or_default();
        let open = self.open_ranges();
        let mut candidates: Vec<(bool, usize, u64)> = self
            .nodes
            .values()
            .filter(|n| n.kind == Kind::RangeServer && !n.draining)
            .filter(|n| !exclude.contains(&n.id) && alive(n.id))
            .map(|n| {
                (
                    previous.contains(&n.id),
                    open.get(&n.id).copied().unwrap_or(0),
                    n.id,
                )
            })
            .collect();
        candidates.sort();
        Ok(candidates
            .into_iter()
            .take(usize::from(stream.replica))
            .map(|(_, _, id)| id)
            .collect())
    }

    pub(super) fn create_stream(&mut self, replica: u8, ack_count: u8) -> ApplyResult {
        check_replication(replica, ack_count)?;
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        let stream = StreamRecord {
            id,
            epoch: 0,
            replica,
            ack_count,
            start_offset: 0,
            ranges: Vec::new(),
            deleted: false,
        };
        self.streams.insert(id, stream.clone());
        Ok(Response::Stream(stream))
    }

    pub(super) fn open_stream(&mut self, stream_id: u64, min_epoch: u64) -> ApplyResult {
        let s = self.stream_mut(stream_id)?;
        let next = s
            .epoch
            .checked_add(1)
            .ok_or_else(|| StateError::InvalidArgument("epoch overflow".into()))?;
        s.epoch = next.max(min_epoch);
        Ok(Response::Stream(s.clone()))
    }

    pub(super) fn create_range(
        &mut self,
        stream_id: u64,
        epoch: u64,
        start: u64,
        servers: &[u64],
    ) -> ApplyResult {
        let s = self.stream(stream_id)?;
        check_epoch(stream_id, s, epoch)?;
        let (index, expected_start) = match s.ranges.last() {
            None => (0, s.start_offset),
            Some(last) => match last.end {
                Some(end) => (last.index + 1, end),
                None if last.epoch == epoch && last.start == start => {
                    // A retried identical create: the range already exists.
                    return Ok(Response::Range(last.clone()));
                }
                None => {
                    return Err(StateError::InvalidArgument(format!(
                        "stream {stream_id}: last range {} still open",
                        last.index
                    )))
                }
            },
        };
        if start != expected_start {
            return Err(StateError::InvalidArgument(format!(
                "stream {stream_id}: range start {start} != expected {expected_start}"
            )));
        }
        if servers.len() < usize::from(s.ack_count) {
            return Err(StateError::NoCapacity(format!(
                "stream {stream_id} needs at least {} live range servers, {} available",
                s.ack_count,
                servers.len()
            )));
        }
        if servers.len() > usize::from(s.replica) {
            return Err(StateError::InvalidArgument(format!(
                "{} servers for replica {}",
                servers.len(),
                s.replica
            )));
        }
        let distinct: BTreeSet<u64> = servers.iter().copied().collect();
        if distinct.len() != servers.len() {
            return Err(StateError::InvalidArgument("duplicate servers".into()));
        }
        for id in servers {
            match self.nodes.get(id) {
                Some(n) if n.kind == Kind::RangeServer => {}
                _ => {
                    return Err(StateError::InvalidArgument(format!(
                        "node {id} is not a range server"
                    )))
                }
            }
        }
        let range = RangeRecord {
            stream_id,
            index,
            epoch,
            start,
            end: None,
            servers: servers.to_vec(),
            offload_owner: servers[0],
        };
        self.stream_mut(stream_id)?.ranges.push(range.clone());
        Ok(Response::Range(range))
    }

    pub(super) fn seal_range(
        &mut self,
        stream_id: u64,
        epoch: u64,
        index: u32,
        end: u64,
    ) -> ApplyResult {
        let offloaded = self.offloaded_end(self.stream(stream_id)?);
        let s = self.stream_mut(stream_id)?;
        check_epoch(stream_id, s, epoch)?;
        let last_index = s.ranges.last().map(|r| r.index);
        let Some(range) = s.ranges.iter_mut().find(|r| r.index == index) else {
            return Err(StateError::NotFound(format!(
                "stream {stream_id} range {index}"
            )));
        };
        match range.end {
            Some(existing) if existing == end => return Ok(Response::Range(range.clone())),
            Some(existing) => {
                return Err(StateError::InvalidArgument(format!(
                    "stream {stream_id} range {index} already sealed at {existing}, not {end}"
                )))
            }
            None => {}
        }
        if Some(index) != last_index {
            return Err(StateError::InvalidArgument(format!(
                "stream {stream_id} range {index} is not the last range"
            )));
        }
        if end < range.start {
            return Err(StateError::InvalidArgument(format!(
                "stream {stream_id} range {index}: end {end} < start {}",
                range.start
            )));
        }
        if end < offloaded && offloaded > range.start {
            // Object storage holds the range up to `offloaded`: it cannot end before.
            return Err(StateError::InvalidArgument(format!(
                "stream {stream_id} range {index}: end {end} is below the offloaded end {offloaded}"
            )));
        }
        range.end = Some(end);
        Ok(Response::Range(range.clone()))
    }

    /// Moves the start forward and forgets the ranges wholly below it, except the last one,
    /// which fixes where the next range starts and what its index is.
    pub(super) fn trim(&mut self, stream_id: u64, start_offset: u64) -> ApplyResult {
        let s = self.stream_mut(stream_id)?;
        if let Some(last) = s.ranges.last() {
            if let Some(end) = last.end {
                if start_offset > end {
                    return Err(StateError::InvalidArgument(format!(
                        "stream {stream_id}: trim to {start_offset} beyond end {end}"
                    )));
                }
            }
        }
        s.start_offset = s.start_offset.max(start_offset);
        let start = s.start_offset;
        let keep_from = s
            .ranges
            .iter()
            .position(|r| r.end.is_none_or(|end| end > start))
            .unwrap_or(s.ranges.len().saturating_sub(1));
        s.ranges.drain(..keep_from);
        let trimmed = s.clone();
        self.drop_slices_below(stream_id);
        Ok(Response::Stream(trimmed))
    }

    /// Forgets a stream. Its id is never given out again (`next_stream_id` only grows), so
    /// an id below `next_stream_id` that is not in the map was deleted.
    pub(super) fn delete(&mut self, stream_id: u64) -> ApplyResult {
        match self.streams.remove(&stream_id) {
            Some(mut s) => {
                s.deleted = true;
                self.drop_slices_below(stream_id);
                Ok(Response::Stream(s))
            }
            None => Err(not_found(stream_id)),
        }
    }

    /// What a range server may do with a range it reports holding: drop it
    /// ([`RangeVerdict::Retire`]: the stream is gone, the range wholly trimmed or offloaded,
    /// or PD never had it), forget what lies below the stream's start or offloaded end
    /// ([`RangeVerdict::TrimTo`]), or keep it as it is. Open ranges of live streams are
    /// always kept.
    pub fn range_verdict(&self, stream_id: u64, index: u32) -> RangeVerdict {
        let Some(s) = self.streams.get(&stream_id).filter(|s| !s.deleted) else {
            return RangeVerdict::Retire;
        };
        let Some(range) = s.ranges.iter().find(|r| r.index == index) else {
            // Below the first kept range: trimmed away. Above the last: never created here.
            return RangeVerdict::Retire;
        };
        let covered = self.offloaded_end(s);
        match range.end {
            Some(end) if end <= covered => RangeVerdict::Retire,
            _ if range.start < covered => RangeVerdict::TrimTo(covered),
            _ => RangeVerdict::Keep,
        }
    }

    /// The offload work for `node` on range `(stream_id, index)`: from the stream's offloaded
    /// end (to the range's final end, if sealed) when the range holds it (ranges are offloaded in order) and `node` is the one to
    /// upload it. That is the first of the range's offload owner and then its servers that is
    /// `alive` and, for a sealed range, holds all of it (`local_end`: how far a node said it
    /// holds the range); when none is known to, the first alive one (it uploads what it has).
    pub fn offload_task(
        &self,
        node: u64,
        (stream_id, index): (u64, u32),
        alive: impl Fn(u64) -> bool,
        local_end: impl Fn(u64) -> Option<u64>,
    ) -> Option<OffloadTask> {
        let s = self.stream(stream_id).ok()?;
        let range = s.ranges.iter().find(|r| r.index == index)?;
        let frontier = self.offloaded_end(s);
        if frontier < range.start || range.end.is_some_and(|end| end <= frontier) {
            return None;
        }
        let candidates =
            || std::iter::once(range.offload_owner).chain(range.servers.iter().copied());
        let holds_all = |n: u64| {
            range
                .end
                .is_none_or(|end| local_end(n).is_some_and(|local| local >= end))
        };
        let owner = candidates()
            .find(|n| alive(*n) && holds_all(*n))
            .or_else(|| candidates().find(|n| alive(*n)))?;
        (owner == node).then_some(OffloadTask {
            stream_id,
            index,
            from: frontier,
            sealed_end: range.end,
        })
    }
}

/// See [`PdState::range_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeVerdict {
    Keep,
    TrimTo(u64),
    Retire,
}
