//! The range server's RPC handlers: decode is done by the router; these look up (or create)
//! the range actor and forward the request with `do_send` in the handler's synchronous part,
//! so requests of one connection reach the actor in arrival order. No range rules here
//! beyond what decides whether an unknown range may be created.

use std::sync::Arc;

use actors::Router;
use protocol::range_rpc::{
    Append, AppendResponse, Commit, Fetch, FetchResponse, Seal, SealResponse,
};
use protocol::{ErrorCode, RpcError};
use tokio::sync::oneshot;

use crate::range::{forward, RangeState};
use crate::registry::RangeRegistry;

/// Awaits an answer. The request was already handed to the actor when `rx` was made.
async fn wait<T>(rx: oneshot::Receiver<Result<T, RpcError>>) -> Result<T, RpcError> {
    rx.await.unwrap_or_else(|_| {
        Err(RpcError::new(
            ErrorCode::Internal,
            "range actor dropped the request",
        ))
    })
}

fn ready<T>(r: Result<T, RpcError>) -> oneshot::Receiver<Result<T, RpcError>> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(r);
    rx
}

fn not_found(stream_id: u64, index: u32) -> RpcError {
    RpcError::new(
        ErrorCode::NotFound,
        format!("range {stream_id}/{index} is not on this server"),
    )
}

/// Hands an append to its range actor (creating the range on its first append).
pub fn append(
    ranges: &RangeRegistry,
    req: Append,
) -> oneshot::Receiver<Result<AppendResponse, RpcError>> {
    let key = (req.stream_id, req.index);
    let addr = match ranges.get(key) {
        Some(addr) => addr,
        None => {
            if protocol::checksum(&req.payload) != req.crc {
                return ready(Err(RpcError::new(
                    ErrorCode::BadChecksum,
                    format!(
                        "range {}/{}: payload CRC mismatch",
                        req.stream_id, req.index
                    ),
                )));
            }
            if req.offset != req.range_start {
                return ready(Err(RpcError::new(
                    ErrorCode::Overtaking,
                    format!(
                        "range {}/{} is not on this server; its first append must be at the range start {}, not {}",
                        req.stream_id, req.index, req.range_start, req.offset
                    ),
                )));
            }
            let created = ranges.get_or_create_for_request(key, || {
                RangeState::new(req.stream_id, req.index, req.epoch, req.range_start)
            });
            match created {
                Ok(addr) => addr,
                Err(e) => return ready(Err(e)),
            }
        }
    };
    forward(&addr, req)
}

pub fn fetch(
    ranges: &RangeRegistry,
    req: Fetch,
) -> oneshot::Receiver<Result<FetchResponse, RpcError>> {
    let Some(addr) = ranges.get((req.stream_id, req.index)) else {
        return ready(Err(not_found(req.stream_id, req.index)));
    };
    forward(&addr, req)
}

/// Seals a range; a range never seen here gets a sealed placeholder, so a stale writer's
/// later first append is refused.
pub fn seal(
    ranges: &RangeRegistry,
    req: Seal,
) -> oneshot::Receiver<Result<SealResponse, RpcError>> {
    // Only the node the sender means may answer: a server that came back with an empty disk
    // (and so a new id) at a replica's address holds nothing of its ranges, and its "nothing
    // here" must not count towards where the range ends.
    let me = ranges.node_id();
    if req.node != 0 && me != req.node {
        let error = if me == 0 {
            RpcError::new(ErrorCode::NotReady, "not registered with PD yet")
        } else {
            RpcError::new(
                ErrorCode::WrongNode,
                format!("this is node {me}, not node {}", req.node),
            )
        };
        return ready(Err(error));
    }
    // A replica that lost part of its WAL must not offer its short end for a range it held.
    if req.end.is_none() && !ranges.can_vouch_for((req.stream_id, req.index)) {
        return ready(Err(RpcError::new(
            ErrorCode::StorageError,
            format!(
                "range {}/{}: this replica discarded WAL segments at recovery and cannot say how far it held it",
                req.stream_id, req.index
            ),
        )));
    }
    let created = ranges.get_or_create_for_request((req.stream_id, req.index), || {
        RangeState::new(req.stream_id, req.index, req.epoch, req.range_start)
    });
    match created {
        Ok(addr) => forward(&addr, req),
        Err(e) => ready(Err(e)),
    }
}

pub fn commit(ranges: &RangeRegistry, req: Commit) -> oneshot::Receiver<Result<(), RpcError>> {
    let Some(addr) = ranges.get((req.stream_id, req.index)) else {
        return ready(Err(not_found(req.stream_id, req.index)));
    };
    forward(&addr, req)
}

/// Routes Append, Fetch, Seal and Commit to the ranges in `ranges`.
pub fn routes(router: &mut Router, ranges: Arc<RangeRegistry>) {
    let r = ranges.clone();
    router.route::<Append, _, _>(move |req, _ctx| wait(append(&r, req)));
    let r = ranges.clone();
    router.route::<Fetch, _, _>(move |req, _ctx| wait(fetch(&r, req)));
    let r = ranges.clone();
    router.route::<Seal, _, _>(move |req, _ctx| wait(seal(&r, req)));
    let r = ranges;
    router.route::<Commit, _, _>(move |req, _ctx| wait(commit(&r, req)));
}

/// Awaits an answer from one of the functions above (for tests and embedders).
pub async fn answer<T>(rx: oneshot::Receiver<Result<T, RpcError>>) -> Result<T, RpcError> {
    wait(rx).await
}
