//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.
//!
//! These handlers only translate: they validate what Kafka validates before a coordinator
//! sees a request (group id, unknown topics), route each group to the coordinator actor of
//! its `__consumer_offsets` partition on this broker (NOT_COORDINATOR when this broker does
//! not own it, or the coordinator stopped while the request waited), and build the response
//! for the request's version (setting only fields that version has). Group state lives in
//! [`crate::group`]. FindCoordinator creates `__consumer_offsets` when it does not exist yet.
//!
//! Shared here: routing a group to its coordinator and waiting for its answer. Each API
//! family has its own file; none of them holds group state.

mod admin;
mod find_coordinator;
mod membership;
mod offsets;

use actix::{Addr, Handler, Message};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use crate::context::SharedBroker;
use crate::group::coordinator::GroupCoordinator;
use crate::group::offsets_partition;
use crate::handlers::error_code as code;

pub use admin::{delete_groups, describe_groups, list_groups};
pub(super) use find_coordinator::ensure_offsets_topic;
pub use find_coordinator::find_coordinator;
pub use membership::{heartbeat, join_group, leave_group, sync_group};
pub use offsets::{offset_commit, offset_delete, offset_fetch};

fn s(v: &StrBytes) -> String {
    v.to_string()
}

/// The coordinator actor of `group_id` on this broker, or the error to answer.
fn coordinator(broker: &SharedBroker, group_id: &str) -> Result<Addr<GroupCoordinator>, E> {
    let snapshot = broker.snapshot();
    let partition = offsets_partition(&snapshot, group_id).ok_or(E::NotCoordinator)?;
    broker
        .coordinators
        .borrow()
        .get(&partition)
        .filter(|h| h.addr.connected())
        .map(|h| h.addr.clone())
        .ok_or(E::NotCoordinator)
}

/// The coordinator of `group_id` for a membership request (Join, Sync, Heartbeat, Leave),
/// which Kafka refuses up front when the group id is empty.
fn member_coordinator(broker: &SharedBroker, group_id: &str) -> Result<Addr<GroupCoordinator>, E> {
    if group_id.is_empty() {
        return Err(E::InvalidGroupId);
    }
    coordinator(broker, group_id)
}

/// Sends a request to a coordinator (or passes on the error finding it gave) and waits for
/// its answer; a dropped answer means it stopped serving the group (NOT_COORDINATOR).
async fn ask<T, M>(
    coordinator: Result<Addr<GroupCoordinator>, E>,
    request: impl FnOnce(oneshot::Sender<T>) -> M,
) -> Result<T, E>
where
    M: Message<Result = ()> + Send + 'static,
    GroupCoordinator: Handler<M>,
{
    let addr = coordinator?;
    let (reply, rx) = oneshot::channel();
    addr.do_send(request(reply));
    rx.await.map_err(|_| E::NotCoordinator)
}
