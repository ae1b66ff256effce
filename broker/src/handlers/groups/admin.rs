//! DescribeGroups, ListGroups and DeleteGroups: whole-group views and removal, asked of the
//! coordinator actors on this broker. No group state is kept here.

use actix::Addr;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use tokio::sync::oneshot;

use super::{ask, code, coordinator, s};
use crate::context::SharedBroker;
use crate::group::coordinator::{self as coord, GroupCoordinator};
use crate::handlers::str_bytes;

/// What a group's authorized operations are when a client asks: READ, DELETE, DESCRIBE.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub async fn describe_groups(
    broker: &SharedBroker,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut groups = Vec::new();
    for id in &request.groups {
        let group_id = s(&id.0);
        let coordinator = coordinator(broker, &group_id);
        let result = ask(coordinator, |reply| coord::Describe {
            group_id: group_id.clone(),
            reply,
        })
        .await
        .and_then(|summary| summary);
        let mut described = DescribedGroup::default().with_group_id(id.clone());
        match result {
            Err(error) => described = described.with_error_code(error.code()),
            Ok(summary) => {
                described = described
                    .with_group_state(str_bytes(summary.state.name()))
                    .with_protocol_type(str_bytes(&summary.protocol_type))
                    .with_protocol_data(str_bytes(&summary.protocol))
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|m| {
                                let mut member = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if version >= 4 {
                                    member = member.with_group_instance_id(
                                        m.instance_id.as_deref().map(str_bytes),
                                    );
                                }
                                member
                            })
                            .collect(),
                    );
                if version >= 3 && request.include_authorized_operations {
                    described = described.with_authorized_operations(GROUP_OPERATIONS);
                }
            }
        }
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn list_groups(
    broker: &SharedBroker,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let addrs: Vec<Addr<GroupCoordinator>> = broker
        .coordinators
        .borrow()
        .values()
        .map(|h| h.addr.clone())
        .collect();
    let mut error = None;
    let mut listed = Vec::new();
    for addr in addrs {
        let (reply, rx) = oneshot::channel();
        addr.do_send(coord::List { reply });
        match rx.await {
            Ok(Ok(groups)) => listed.extend(groups),
            Ok(Err(E::CoordinatorLoadInProgress)) => error = Some(E::CoordinatorLoadInProgress),
            // A coordinator that stopped meanwhile: its groups are another broker's now.
            Ok(Err(_)) | Err(_) => {}
        }
    }
    let states: Vec<String> = if version >= 4 {
        request.states_filter.iter().map(s).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        request.types_filter.iter().map(s).collect()
    } else {
        Vec::new()
    };
    let classic_wanted =
        types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("classic"));
    listed.sort();
    let groups = listed
        .into_iter()
        .filter(|g| {
            classic_wanted
                && (states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name())))
        })
        .map(|listed| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&listed.group_id)))
                .with_protocol_type(str_bytes(&listed.protocol_type));
            if version >= 4 {
                g = g.with_group_state(str_bytes(listed.state.name()));
            }
            if version >= 5 {
                g = g.with_group_type(str_bytes("classic"));
            }
            g
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(code(error))
        .with_groups(groups)
}

pub async fn delete_groups(
    broker: &SharedBroker,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in &request.groups_names {
        let group_id = s(&id.0);
        let coordinator = coordinator(broker, &group_id);
        let deleted = ask(coordinator, |reply| coord::DeleteGroups {
            group_ids: vec![group_id.clone()],
            reply,
        })
        .await;
        let error = match deleted {
            Ok(deleted) => deleted.first().and_then(|d| d.result.err()),
            Err(e) => Some(e),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(code(error)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
