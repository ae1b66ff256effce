//! The object-storage bookkeeping of [`PdState`]: which objects exist, which part of which
//! stream each holds, and which may be deleted.
//!
//! An object's life: `PrepareObject` reserves an id (with the leader's clock), the uploader
//! PUTs the object, `CommitObject` records it as slices of its streams. A reservation not
//! committed in time is expired (`ExpirePrepared`) and its upload becomes an orphan that
//! the sweeper deletes; a commit after the expiry is refused, so a committed object always
//! exists. Trims, deletions and compaction drop slices; an object no slice names is
//! `doomed`, deleted from the store by the leader, then forgotten (`ForgetObjects`).
//!
//! Pure rules like the rest of the state: no I/O, no clocks (times come in commands).

use std::collections::{BTreeMap, BTreeSet};

use protocol::model::{ObjectSlice, StreamInfo};
use serde::{Deserialize, Serialize};

use super::{ApplyResult, PdState, Response, StateError, StreamRecord};

/// Most reservations kept at once; more are refused until some commit or expire.
pub const MAX_PREPARED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub node_id: u64,
    /// The leader's clock when it reserved the id.
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size: u64,
    /// Slices of streams that name the object.
    pub refs: u32,
    /// When its newest data was uploaded (the leader's clock when the upload's id was
    /// reserved; for a merged object, that of the newest object it replaced).
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceRecord {
    pub object_id: u64,
    pub start: u64,
    pub end: u64,
    pub bytes: u64,
}

/// One stream's part of an object, as an uploader claims it (the stored form of
/// [`protocol::pd::SliceSpec`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceSpec {
    pub stream_id: u64,
    pub start: u64,
    pub end: u64,
    pub bytes: u64,
}

impl From<protocol::pd::SliceSpec> for SliceSpec {
    fn from(s: protocol::pd::SliceSpec) -> Self {
        SliceSpec {
            stream_id: s.stream_id,
            start: s.start,
            end: s.end,
            bytes: s.bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectState {
    /// The next object id to hand out (ids start at 1 and only grow).
    pub next_id: u64,
    pub prepared: BTreeMap<u64, Prepared>,
    pub committed: BTreeMap<u64, ObjectRecord>,
    /// Committed objects no stream names any more: to be deleted from the store.
    pub doomed: BTreeSet<u64>,
    /// Each stream's offloaded part, in offset order without gaps.
    pub slices: BTreeMap<u64, Vec<SliceRecord>>,
}

impl Default for ObjectState {
    fn default() -> Self {
        ObjectState {
            next_id: 1,
            prepared: BTreeMap::new(),
            committed: BTreeMap::new(),
            doomed: BTreeSet::new(),
            slices: BTreeMap::new(),
        }
    }
}

impl ObjectState {
    /// One slice fewer names `object_id`; doomed when none is left.
    fn unref(&mut self, object_id: u64) {
        if let Some(o) = self.committed.get_mut(&object_id) {
            o.refs = o.refs.saturating_sub(1);
            if o.refs == 0 {
                self.committed.remove(&object_id);
                self.doomed.insert(object_id);
            }
        }
    }

    fn add_ref(&mut self, object_id: u64, size: u64, created_ms: u64) {
        self.committed
            .entry(object_id)
            .or_insert(ObjectRecord {
                size,
                refs: 0,
                created_ms,
            })
            .refs += 1;
    }

    /// Whether an object id is known in any state (reserved, committed or doomed).
    pub fn knows(&self, object_id: u64) -> bool {
        self.prepared.contains_key(&object_id)
            || self.committed.contains_key(&object_id)
            || self.doomed.contains(&object_id)
    }
}

impl PdState {
    /// Where the stream's offloaded part ends: offsets below are in objects or trimmed.
    pub fn offloaded_end(&self, s: &StreamRecord) -> u64 {
        self.objects
            .slices
            .get(&s.id)
            .and_then(|v| v.last())
            .map_or(s.start_offset, |last| last.end.max(s.start_offset))
    }

    /// The stream as clients see it, with its object slices.
    pub fn stream_info(&self, s: &StreamRecord) -> StreamInfo {
        let mut info = s.to_info();
        info.objects = self
            .objects
            .slices
            .get(&s.id)
            .map(|v| {
                v.iter()
                    .map(|sl| {
                        let object = self.objects.committed.get(&sl.object_id);
                        ObjectSlice {
                            object_id: sl.object_id,
                            object_size: object.map_or(0, |o| o.size),
                            start: sl.start,
                            end: sl.end,
                            bytes: sl.bytes,
                            created_ms: object.map_or(0, |o| o.created_ms),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        info
    }

    pub(super) fn prepare_object(&mut self, node_id: u64, at_ms: u64) -> ApplyResult {
        if self.objects.prepared.len() >= MAX_PREPARED {
            return Err(StateError::NoCapacity(format!(
                "{MAX_PREPARED} objects are being uploaded already"
            )));
        }
        let id = self.objects.next_id;
        self.objects.next_id += 1;
        self.objects
            .prepared
            .insert(id, Prepared { node_id, at_ms });
        Ok(Response::FirstId(id))
    }

    pub(super) fn commit_object(
        &mut self,
        object_id: u64,
        size: u64,
        slices: &[SliceSpec],
    ) -> ApplyResult {
        let streams: BTreeSet<u64> = slices.iter().map(|s| s.stream_id).collect();
        if self.objects.committed.contains_key(&object_id)
            || self.objects.doomed.contains(&object_id)
        {
            // A retried commit that was applied already: answer as it stands now.
            return Ok(Response::Offloaded(self.offloaded_ends(&streams)));
        }
        let Some(prepared) = self.objects.prepared.remove(&object_id) else {
            return Err(StateError::NotFound(format!(
                "object {object_id} is not reserved (never, or its reservation expired)"
            )));
        };
        let mut taken = 0;
        for spec in slices {
            if spec.end <= spec.start {
                continue;
            }
            let Ok(s) = self.stream(spec.stream_id) else {
                continue;
            };
            let frontier = self.offloaded_end(s);
            if spec.start > frontier || spec.end <= frontier {
                continue;
            }
            self.objects
                .slices
                .entry(spec.stream_id)
                .or_default()
                .push(SliceRecord {
                    object_id,
                    start: frontier,
                    end: spec.end,
                    bytes: spec.bytes,
                });
            self.objects.add_ref(object_id, size, prepared.at_ms);
            taken += 1;
        }
        if taken == 0 {
            self.objects.doomed.insert(object_id);
        }
        Ok(Response::Offloaded(self.offloaded_ends(&streams)))
    }

    fn offloaded_ends(&self, streams: &BTreeSet<u64>) -> Vec<(u64, u64)> {
        streams
            .iter()
            .filter_map(|id| self.stream(*id).ok().map(|s| (*id, self.offloaded_end(s))))
            .collect()
    }

    pub(super) fn compact_objects(
        &mut self,
        object_id: u64,
        size: u64,
        stream_id: u64,
        replaces: &[u64],
        (start, end, bytes): (u64, u64, u64),
    ) -> ApplyResult {
        let refused = |why: String| Err(StateError::InvalidArgument(why));
        let start_offset = self.stream(stream_id)?.start_offset;
        if !self.objects.prepared.contains_key(&object_id) {
            return Err(StateError::NotFound(format!(
                "object {object_id} is not reserved (never, or its reservation expired)"
            )));
        }
        let list = self
            .objects
            .slices
            .get(&stream_id)
            .cloned()
            .unwrap_or_default();
        let Some(first) = list
            .iter()
            .position(|s| Some(&s.object_id) == replaces.first())
        else {
            return refused(format!("stream {stream_id} has no slice in {replaces:?}"));
        };
        let run = list.get(first..first + replaces.len()).unwrap_or(&[]);
        if run.len() != replaces.len() || run.iter().zip(replaces).any(|(s, id)| s.object_id != *id)
        {
            return refused(format!(
                "stream {stream_id}: {replaces:?} is not a run of its slices"
            ));
        }
        let (run_start, run_end, run_len) = (run[0].start, run[run.len() - 1].end, run.len());
        if end != run_end || start < run_start || start > run_start.max(start_offset) {
            return refused(format!(
                "stream {stream_id}: [{start}, {end}) does not cover the run [{run_start}, {run_end})"
            ));
        }
        self.objects.prepared.remove(&object_id);
        let created_ms = run
            .iter()
            .filter_map(|s| self.objects.committed.get(&s.object_id))
            .map(|o| o.created_ms)
            .max()
            .unwrap_or(0);
        let mut list = list;
        let replaced: Vec<SliceRecord> = list
            .splice(
                first..first + run_len,
                [SliceRecord {
                    object_id,
                    start,
                    end,
                    bytes,
                }],
            )
            .collect();
        self.objects.slices.insert(stream_id, list);
        self.objects.add_ref(object_id, size, created_ms);
        for old in replaced {
            self.objects.unref(old.object_id);
        }
        let s = self.stream(stream_id)?;
        Ok(Response::Stream(s.clone()))
    }

    pub(super) fn expire_prepared(&mut self, before_ms: u64) -> ApplyResult {
        let expired: Vec<u64> = self
            .objects
            .prepared
            .iter()
            .filter(|(_, p)| p.at_ms < before_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.objects.prepared.remove(id);
        }
        Ok(Response::Objects(expired))
    }

    pub(super) fn forget_objects(&mut self, ids: &[u64]) -> ApplyResult {
        let forgotten: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.objects.doomed.remove(id))
            .collect();
        Ok(Response::Objects(forgotten))
    }

    /// Drops the stream's slices wholly below its start (all of them when it is gone).
    pub(crate) fn drop_slices_below(&mut self, stream_id: u64) {
        let start = match self.streams.get(&stream_id) {
            Some(s) if !s.deleted => s.start_offset,
            _ => u64::MAX,
        };
        let Some(list) = self.objects.slices.get_mut(&stream_id) else {
            return;
        };
        let keep_from = list.partition_point(|s| s.end <= start);
        let dropped: Vec<SliceRecord> = list.drain(..keep_from).collect();
        if list.is_empty() && start == u64::MAX {
            self.objects.slices.remove(&stream_id);
        }
        for old in dropped {
            self.objects.unref(old.object_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn spec(stream_id: u64, start: u64, end: u64) -> SliceSpec {
        SliceSpec {
            stream_id,
            start,
            end,
            bytes: end - start,
        }
    }

    fn prepare(state: &mut PdState, at_ms: u64) -> u64 {
        match state.apply(&Command::PrepareObject { node_id: 1, at_ms }).0 {
            Ok(Response::FirstId(id)) => id,
            other => panic!("prepare: {other:?}"),
        }
    }

    fn commit(state: &mut PdState, id: u64, slices: Vec<SliceSpec>) -> ApplyResult {
        state
            .apply(&Command::CommitObject {
                object_id: id,
                size: 100,
                slices,
            })
            .0
    }

    fn two_streams() -> PdState {
        let mut state = PdState::default();
        for _ in 0..2 {
            state
                .apply(&Command::CreateStream {
                    replica: 1,
                    ack_count: 1,
                })
                .0
                .unwrap();
        }
        state
    }

    /// A commit takes the slices that continue their streams, trims a slice's front to the
    /// frontier, ignores the rest; a retried commit answers the same; an expired reservation
    /// is refused; an object nothing takes is doomed.
    #[test]
    fn commits_continue_each_stream_and_only_reserved_ids_commit() {
        let mut state = two_streams();
        let a = prepare(&mut state, 10);
        let r = commit(&mut state, a, vec![spec(1, 0, 10), spec(2, 5, 9)]);
        assert_eq!(r, Ok(Response::Offloaded(vec![(1, 10), (2, 0)])));
        assert_eq!(state.objects.committed[&a].refs, 1);
        // Retried after it was applied: same answer, no second reference.
        let again = commit(&mut state, a, vec![spec(1, 0, 10), spec(2, 5, 9)]);
        assert_eq!(again, Ok(Response::Offloaded(vec![(1, 10), (2, 0)])));
        assert_eq!(state.objects.committed[&a].refs, 1);

        let b = prepare(&mut state, 20);
        let r = commit(&mut state, b, vec![spec(1, 8, 15), spec(2, 0, 4)]);
        assert_eq!(r, Ok(Response::Offloaded(vec![(1, 15), (2, 4)])));
        let info = state.stream_info(state.stream(1).unwrap());
        assert_eq!(
            info.objects
                .iter()
                .map(|o| (o.object_id, o.start, o.end))
                .collect::<Vec<_>>(),
            vec![(a, 0, 10), (b, 10, 15)]
        );
        assert_eq!(info.offloaded_end(), 15);
        assert_eq!(info.object_at(12).map(|o| o.object_id), Some(b));
        assert_eq!(info.object_at(15), None);

        // Everything in it is behind the frontiers already: doomed at once.
        let c = prepare(&mut state, 30);
        commit(&mut state, c, vec![spec(1, 0, 15)]).unwrap();
        assert!(state.objects.doomed.contains(&c));

        // Expired before it commits: refused, so the sweeper may delete the upload.
        let d = prepare(&mut state, 40);
        let expired = state.apply(&Command::ExpirePrepared { before_ms: 41 }).0;
        assert_eq!(expired, Ok(Response::Objects(vec![d])));
        assert!(matches!(
            commit(&mut state, d, vec![spec(1, 15, 20)]),
            Err(StateError::NotFound(_))
        ));
    }

    /// Trims drop the slices wholly below the start, deletes drop them all; objects no slice
    /// names are doomed and forgotten once deleted.
    #[test]
    fn trims_and_deletes_doom_objects_no_stream_needs() {
        let mut state = two_streams();
        let a = prepare(&mut state, 1);
        commit(&mut state, a, vec![spec(1, 0, 10), spec(2, 0, 10)]).unwrap();
        let b = prepare(&mut state, 1);
        commit(&mut state, b, vec![spec(1, 10, 20)]).unwrap();
        state
            .apply(&Command::TrimStream {
                stream_id: 1,
                start_offset: 12,
            })
            .0
            .unwrap();
        // a is still named by stream 2; b straddles the start and stays.
        assert!(state.objects.doomed.is_empty());
        assert_eq!(state.objects.committed[&a].refs, 1);
        state
            .apply(&Command::DeleteStream { stream_id: 2 })
            .0
            .unwrap();
        assert_eq!(state.objects.doomed, BTreeSet::from([a]));
        assert!(!state.objects.slices.contains_key(&2));
        let forgotten = state.apply(&Command::ForgetObjects { ids: vec![a, b] }).0;
        assert_eq!(forgotten, Ok(Response::Objects(vec![a])));
        assert!(!state.objects.knows(a));
        assert!(state.objects.knows(b));
    }

    /// Compaction swaps a run of slices for one object, dropping what is below the start;
    /// a run that changed meanwhile is refused.
    #[test]
    fn compaction_replaces_a_run_of_slices() {
        let mut state = two_streams();
        let mut ids = Vec::new();
        for i in 0..3 {
            let id = prepare(&mut state, 1 + i);
            commit(&mut state, id, vec![spec(1, i * 10, i * 10 + 10)]).unwrap();
            ids.push(id);
        }
        state
            .apply(&Command::TrimStream {
                stream_id: 1,
                start_offset: 5,
            })
            .0
            .unwrap();
        let new = prepare(&mut state, 100);
        let compact = |state: &mut PdState, replaces: Vec<u64>, start: u64, end: u64| {
            state
                .apply(&Command::CompactObjects {
                    object_id: new,
                    size: 50,
                    stream_id: 1,
                    replaces,
                    start,
                    end,
                    bytes: end - start,
                })
                .0
        };
        assert!(compact(&mut state, vec![ids[0], ids[2]], 5, 30).is_err());
        assert!(compact(&mut state, vec![ids[0], ids[1]], 6, 20).is_err());
        compact(&mut state, vec![ids[0], ids[1]], 5, 20).unwrap();
        let slices = &state.objects.slices[&1];
        assert_eq!(
            slices
                .iter()
                .map(|s| (s.object_id, s.start, s.end))
                .collect::<Vec<_>>(),
            vec![(new, 5, 20), (ids[2], 20, 30)]
        );
        assert_eq!(state.objects.doomed, BTreeSet::from([ids[0], ids[1]]));
        assert!(!state.objects.prepared.contains_key(&new));
        // The merged object is as old as the newest data in it (compaction waits for an
        // age, and a merge must not make old data young again); uploads are as old as
        // their reservations.
        let info = state.stream_info(state.stream(1).unwrap());
        assert_eq!(
            info.objects
                .iter()
                .map(|o| (o.object_id, o.created_ms))
                .collect::<Vec<_>>(),
            vec![(new, 2), (ids[2], 3)]
        );
    }
}
