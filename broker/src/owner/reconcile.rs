//! Starts and stops stream owners to match what PD assigns to this broker: an owner whose
//! partition is assigned here gets an actor; one no longer assigned (moved away, new leader
//! epoch, topic deleted) or whose actor died is stopped and forgotten. One loop for every kind
//! of owner; it decides nothing itself (PD owns every assignment).

use std::collections::HashMap;

use actix::{Actor, Addr};
use protocol::model::StreamId;

use super::{OwnedState, Stop, StreamOwner};
use crate::context::SharedBroker;

/// What PD assigns to this broker for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub leader_epoch: u32,
    pub data_stream: StreamId,
    pub meta_stream: StreamId,
}

/// A running owner, as the broker's table knows it.
pub struct OwnerHandle<S: OwnedState> {
    pub addr: Addr<StreamOwner<S>>,
    pub assignment: Assignment,
}

impl<S: OwnedState> Clone for OwnerHandle<S> {
    fn clone(&self) -> Self {
        OwnerHandle {
            addr: self.addr.clone(),
            assignment: self.assignment,
        }
    }
}

/// Makes the table of owners of kind `S` match `wanted`; returns how many run.
pub fn start_and_stop<S: OwnedState>(
    broker: &SharedBroker,
    wanted: HashMap<S::Key, Assignment>,
) -> usize {
    let mut table = S::table(broker).borrow_mut();
    table.retain(|key, handle| {
        let keep = wanted.get(key) == Some(&handle.assignment) && handle.addr.connected();
        if !keep {
            tracing::info!(kind = S::KIND, ?key, "no longer owned here");
            handle.addr.do_send(Stop);
        }
        keep
    });
    for (key, assignment) in wanted {
        if table.contains_key(&key) {
            continue;
        }
        tracing::info!(
            kind = S::KIND,
            ?key,
            leader_epoch = assignment.leader_epoch,
            "taking over"
        );
        let addr = StreamOwner::<S>::new(broker.clone(), key.clone(), assignment).start();
        table.insert(key, OwnerHandle { addr, assignment });
    }
    table.len()
}
