//! The openraft state-machine adaptor: applies committed entries to [`PdState`], publishes
//! their events, and builds, stores and installs snapshots.
//!
//! Owns: the `snapshot` file in `<data>/raft/` (written atomically: temp file, fsync, rename,
//! directory fsync) and the [`Shared`] view that request handlers read. Must not: validate
//! commands itself (that is [`PdState::apply`]) or talk to the network.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, DiskError};
use crate::state::{ApplyResult, PdState, Response};
use crate::watch::WatchHub;
use crate::{BasicNode, Entry, LogId, NodeId, TypeConfig};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

const SNAPSHOT_FILE: &str = "snapshot";

/// What handlers read: the applied state and how far it got.
#[derive(Debug, Default)]
pub struct Shared {
    pub state: PdState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, BasicNode>,
}

pub type SharedState = Arc<RwLock<Shared>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// serde-bincode of [`PdState`].
    data: Vec<u8>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

#[derive(Debug, Clone)]
pub struct StateMachineStore {
    dir: PathBuf,
    shared: SharedState,
    watch: Arc<WatchHub>,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    /// Seconds per applied batch of entries (lock, apply, publish).
    apply_seconds: Histogram,
    /// Entries applied.
    applied_entries: Counter,
}

impl StateMachineStore {
    /// Registers the apply metrics (`pd_raft_apply_seconds`, `pd_raft_applied_entries`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pd_raft_apply_seconds",
            "Seconds to apply one batch of committed Raft entries to PD's state",
            self.apply_seconds.clone(),
        );
        registry.register(
            "pd_raft_applied_entries",
            "Raft entries applied to PD's state",
            self.applied_entries.clone(),
        );
    }

    /// Opens the state machine in `dir`, loading the last snapshot if there is one.
    pub fn open(dir: &Path, watch: Arc<WatchHub>) -> Result<Self, DiskError> {
        std::fs::create_dir_all(dir).map_err(DiskError::io(format!("create {}", dir.display())))?;
        let mut shared = Shared::default();
        let mut current = None;
        if let Some(bytes) = fsutil::read_atomic(dir, SNAPSHOT_FILE)? {
            let snap: StoredSnapshot = protocol::codec::decode_serde(&bytes)
                .map_err(|e| DiskError::Corrupt(format!("snapshot: {}", e.message)))?;
            shared.state = PdState::decode(&snap.data)
                .map_err(|e| DiskError::Corrupt(format!("snapshot state: {}", e.message)))?;
            shared.last_applied = snap.meta.last_log_id;
            shared.membership = snap.meta.last_membership.clone();
            current = Some(snap);
        }
        watch.reset_to(shared.last_applied.map_or(0, |l| l.index));
        Ok(StateMachineStore {
            dir: dir.to_path_buf(),
            shared: Arc::new(RwLock::new(shared)),
            watch,
            current: Arc::new(Mutex::new(current)),
            apply_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            applied_entries: Counter::default(),
        })
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    fn write_snapshot(&self, snap: StoredSnapshot) -> Result<(), DiskError> {
        let bytes =
            protocol::codec::encode_serde(&snap).map_err(|e| DiskError::Corrupt(e.message))?;
        fsutil::write_atomic(&self.dir, SNAPSHOT_FILE, &bytes, true)?;
        if let Ok(mut c) = self.current.lock() {
            *c = Some(snap);
        }
        Ok(())
    }

    async fn persist_snapshot(&self, snap: StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let this = self.clone();
        let sig = snap.meta.signature();
        match tokio::task::spawn_blocking(move || this.write_snapshot(snap)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageIOError::write_snapshot(Some(sig), AnyError::new(&e)).into()),
            Err(e) => Err(StorageIOError::write_snapshot(Some(sig), AnyError::new(&e)).into()),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, last_applied, membership) = {
            let g = self
                .shared
                .read()
                .map_err(|_| sm_err("state lock poisoned"))?;
            let data = protocol::codec::encode_serde(&g.state).map_err(|e| sm_err(e.message))?;
            (data, g.last_applied, g.membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.persist_snapshot(snap).await?;
        tracing::info!(last_applied = ?last_applied.map(|l| l.index), bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let g = self
            .shared
            .read()
            .map_err(|_| sm_err("state lock poisoned"))?;
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut results = Vec::new();
        let mut g = self
            .shared
            .write()
            .map_err(|_| sm_err("state lock poisoned"))?;
        for entry in entries {
            let index = entry.log_id.index;
            g.last_applied = Some(entry.log_id);
            let (result, events) = match entry.payload {
                EntryPayload::Blank => (Ok(Response::Empty), Vec::new()),
                EntryPayload::Normal(cmd) => g.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(entry.log_id), m);
                    (Ok(Response::Empty), Vec::new())
                }
            };
            self.watch.publish(index, events);
            results.push(result);
        }
        drop(g);
        self.applied_entries.inc_by(results.len() as u64);
        self.apply_seconds.observe(started.elapsed().as_secs_f64());
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state = PdState::decode(&data).map_err(|e| snap_err(e.message))?;
        self.persist_snapshot(StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        {
            let mut g = self
                .shared
                .write()
                .map_err(|_| sm_err("state lock poisoned"))?;
            g.state = state;
            g.last_applied = meta.last_log_id;
            g.membership = meta.last_membership.clone();
        }
        self.watch.reset_to(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let snap = self
            .current
            .lock()
            .map_err(|_| snap_err("snapshot lock poisoned"))?
            .clone();
        Ok(snap.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
