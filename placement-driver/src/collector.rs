//! The object collector: the leader's task that keeps object storage and PD's record of it
//! in step.
//!
//! Each tick it expires upload reservations older than the TTL (their uploads are orphans
//! from then on: a late commit is refused), deletes doomed objects (no stream names them
//! any more) from the store and then forgets them, and every `sweep_every` lists the store
//! and deletes every object PD does not know: an upload whose reservation expired, or one
//! whose delete was interrupted. An id PD knows in any state is never deleted by the sweep,
//! and an id it has forgotten can never be committed again, so the sweep cannot remove a
//! committed object. Does nothing on a voter that is not the leader.

use std::time::{Duration, Instant};

use stream_client::Objects;

use crate::service::PdService;
use crate::state::{Command, Response};

/// Most doomed objects deleted per tick.
const DELETES_PER_TICK: usize = 1000;

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub interval: Duration,
    /// A reservation not committed within this long expires.
    pub prepared_ttl: Duration,
    /// How often the store is listed for orphans.
    pub sweep_every: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            interval: Duration::from_secs(5),
            prepared_ttl: Duration::from_secs(600),
            sweep_every: Duration::from_secs(600),
        }
    }
}

pub async fn run(service: PdService, objects: Objects, config: CollectorConfig) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep: Option<Instant> = None;
    loop {
        tick.tick().await;
        if service.raft.metrics().borrow().running_state.is_err() {
            break;
        }
        if service.is_leader().is_err() {
            continue;
        }
        expire(&service, &objects, config.prepared_ttl).await;
        delete_doomed(&service, &objects).await;
        if last_sweep.is_none_or(|t| t.elapsed() >= config.sweep_every) {
            last_sweep = Some(Instant::now());
            sweep(&service, &objects).await;
        }
    }
}

async fn expire(service: &PdService, objects: &Objects, ttl: Duration) {
    let before_ms = crate::now_ms().saturating_sub(ttl.as_millis() as u64);
    let stale = service
        .read(|s| {
            s.state
                .objects
                .prepared
                .values()
                .any(|p| p.at_ms < before_ms)
        })
        .unwrap_or(false);
    if !stale {
        return;
    }
    match service.write(Command::ExpirePrepared { before_ms }).await {
        Ok(Response::Objects(ids)) => {
            tracing::info!(?ids, "upload reservations expired; deleting their uploads");
            for id in ids {
                if let Err(e) = objects.delete(id).await {
                    tracing::warn!(object = id, "deleting an expired upload: {e}");
                }
            }
        }
        Ok(other) => tracing::warn!(?other, "unexpected result of ExpirePrepared"),
        Err(e) => tracing::warn!("expiring upload reservations: {e}"),
    }
}

async fn delete_doomed(service: &PdService, objects: &Objects) {
    let doomed: Vec<u64> = service
        .read(|s| {
            s.state
                .objects
                .doomed
                .iter()
                .take(DELETES_PER_TICK)
                .copied()
                .collect()
        })
        .unwrap_or_default();
    if doomed.is_empty() {
        return;
    }
    let mut deleted = Vec::with_capacity(doomed.len());
    for id in doomed {
        match objects.delete(id).await {
            Ok(()) => deleted.push(id),
            Err(e) => {
                tracing::warn!(object = id, "deleting an object no stream needs: {e}");
                break;
            }
        }
    }
    if deleted.is_empty() {
        return;
    }
    let count = deleted.len();
    match service.write(Command::ForgetObjects { ids: deleted }).await {
        Ok(_) => tracing::info!(objects = count, "deleted objects no stream needs"),
        Err(e) => tracing::warn!("forgetting deleted objects: {e}"),
    }
}

async fn sweep(service: &PdService, objects: &Objects) {
    let listed = match objects.list().await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!("listing the object store for orphans: {e}");
            return;
        }
    };
    // Read after the listing, on current state: an id unknown now is unknown for good.
    if service.ensure_leader().await.is_err() {
        return;
    }
    let orphans: Vec<u64> = service
        .read(|s| {
            let o = &s.state.objects;
            listed
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| *id < o.next_id && !o.knows(*id))
                .collect()
        })
        .unwrap_or_default();
    for id in orphans {
        match objects.delete(id).await {
            Ok(()) => tracing::info!(object = id, "swept an orphaned upload"),
            Err(e) => tracing::warn!(object = id, "sweeping an orphaned upload: {e}"),
        }
    }
}
