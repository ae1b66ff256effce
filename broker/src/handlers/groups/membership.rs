//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: translated to the coordinator actor's
//! messages and back. The group rules themselves live in [`crate::group::state`].

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::*;

use super::{ask, code, member_coordinator, s};
use crate::context::SharedBroker;
use crate::group::coordinator as coord;
use crate::group::state::{JoinRequest, JoinResult, LeavingMember, SyncRequest, SyncResult};
use crate::handlers::str_bytes;

pub async fn join_group(
    broker: &SharedBroker,
    request: JoinGroupRequest,
    version: i16,
    header: &RequestHeader,
) -> JoinGroupResponse {
    let client_id = header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let group_id = s(&request.group_id.0);
    let member_id = s(&request.member_id);
    let instance_id = request.group_instance_id.as_ref().map(s);
    let join = JoinRequest {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        require_known_member_id: version >= 4 && instance_id.is_none(),
        instance_id,
        client_id,
        client_host: String::new(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: s(&request.protocol_type),
        protocols: request
            .protocols
            .iter()
            .map(|p| (s(&p.name), p.metadata.clone()))
            .collect(),
        supports_skip_assignment: version >= 9,
    };
    let coordinator = member_coordinator(broker, &group_id);
    let result = ask(coordinator, |reply| coord::Join {
        request: join,
        reply,
    })
    .await
    .unwrap_or_else(|error| JoinResult::error(&member_id, error));
    let mut response = JoinGroupResponse::default()
        .with_error_code(code(result.error))
        .with_generation_id(result.generation)
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(
            result
                .members
                .iter()
                .map(|m| {
                    let mut member = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_metadata(m.metadata.clone());
                    if version >= 5 {
                        member =
                            member.with_group_instance_id(m.instance_id.as_deref().map(str_bytes));
                    }
                    member
                })
                .collect(),
        );
    if version >= 7 {
        response = response
            .with_protocol_type(result.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(result.protocol_name.as_deref().map(str_bytes));
    } else {
        response = response.with_protocol_name(Some(str_bytes(
            result.protocol_name.as_deref().unwrap_or(""),
        )));
    }
    if version >= 9 {
        response = response.with_skip_assignment(result.skip_assignment);
    }
    response
}

pub async fn sync_group(
    broker: &SharedBroker,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = s(&request.group_id.0);
    let sync = SyncRequest {
        group_id: group_id.clone(),
        generation: request.generation_id,
        member_id: s(&request.member_id),
        instance_id: request.group_instance_id.as_ref().map(s),
        protocol_type: request.protocol_type.as_ref().map(s),
        protocol_name: request.protocol_name.as_ref().map(s),
        assignments: request
            .assignments
            .iter()
            .map(|a| (s(&a.member_id), a.assignment.clone()))
            .collect(),
    };
    let coordinator = member_coordinator(broker, &group_id);
    let result = ask(coordinator, |reply| coord::Sync {
        request: sync,
        reply,
    })
    .await
    .unwrap_or_else(SyncResult::error);
    let mut response = SyncGroupResponse::default()
        .with_error_code(code(result.error))
        .with_assignment(result.assignment);
    if version >= 5 {
        response = response
            .with_protocol_type(result.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(result.protocol_name.as_deref().map(str_bytes));
    }
    response
}

pub async fn heartbeat(
    broker: &SharedBroker,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    let group_id = s(&request.group_id.0);
    let coordinator = member_coordinator(broker, &group_id);
    let outcome = ask(coordinator, |reply| coord::Heartbeat {
        group_id: group_id.clone(),
        member_id: s(&request.member_id),
        instance_id: request.group_instance_id.as_ref().map(s),
        generation: request.generation_id,
        reply,
    })
    .await
    .and_then(|outcome| outcome);
    HeartbeatResponse::default().with_error_code(code(outcome.err()))
}

pub async fn leave_group(
    broker: &SharedBroker,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = s(&request.group_id.0);
    let members: Vec<LeavingMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: s(&m.member_id),
                instance_id: m.group_instance_id.as_ref().map(s),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: s(&request.member_id),
            instance_id: None,
        }]
    };
    let coordinator = member_coordinator(broker, &group_id);
    let outcomes = ask(coordinator, |reply| coord::Leave {
        group_id: group_id.clone(),
        members: members.clone(),
        reply,
    })
    .await
    .and_then(|outcomes| outcomes);
    match outcomes {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(outcomes) if version >= 3 => LeaveGroupResponse::default().with_members(
            members
                .iter()
                .zip(outcomes)
                .map(|(m, outcome)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                        .with_error_code(code(outcome.err()))
                })
                .collect(),
        ),
        // v0-2 have one member: its error is the answer.
        Ok(outcomes) => LeaveGroupResponse::default()
            .with_error_code(code(outcomes.first().and_then(|o| o.err()))),
    }
}
