//! Raw consumer-group requests (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! OffsetCommit/Fetch/Delete, Describe/List/DeleteGroups) for the group tests' error paths.
//! Each helper sends one request and answers what the broker said; the tests decide what is
//! right, so nothing here asserts on error codes except where a step cannot go on without
//! success.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, ListGroupsRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};

use super::{code, str_bytes, topic_name, RawClient};

pub fn gid(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

/// `(node id, host:port)` of the coordinator of `group`, asked of `addr` (FindCoordinator
/// at the highest common version; retried while it is not available yet).
pub fn find_coordinator(addr: &str, group: &str) -> (i32, String) {
    let mut c = RawClient::negotiated(addr);
    let v = c.version::<FindCoordinatorRequest>();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut req = FindCoordinatorRequest::default();
        if v >= 4 {
            req = req.with_coordinator_keys(vec![str_bytes(group)]);
        } else {
            req = req.with_key(str_bytes(group));
        }
        let resp = c.call(&req, v).expect("FindCoordinator");
        let (error, node, host, port) = if v >= 4 {
            let co = &resp.coordinators[0];
            assert_eq!(co.key.as_str(), group);
            (co.error_code, co.node_id.0, co.host.to_string(), co.port)
        } else {
            (
                resp.error_code,
                resp.node_id.0,
                resp.host.to_string(),
                resp.port,
            )
        };
        if error == 0 {
            return (node, format!("{host}:{port}"));
        }
        assert!(
            Instant::now() < deadline,
            "FindCoordinator {group}: error {error}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A raw connection to the coordinator of `group`.
pub fn coordinator_client(bootstrap: &str, group: &str) -> RawClient {
    let first = bootstrap.split(',').next().expect("bootstrap");
    let (_, addr) = find_coordinator(first, group);
    let mut c = RawClient::negotiated(&addr);
    // FindCoordinator names the coordinator as soon as it is assigned; until it has loaded
    // its groups it answers COORDINATOR_LOAD_IN_PROGRESS (retriable, as in Kafka). Wait for
    // that to pass, so tests see the coordinator's answers rather than the load's timing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(Some(Vec::new()));
        let error = c.call(&req, 7).expect("OffsetFetch").error_code;
        if error != code::COORDINATOR_LOAD_IN_PROGRESS {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "coordinator of {group} still loading"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Consumer-protocol subscription metadata (v0) for `topics`.
pub fn subscription(topics: &[&str]) -> bytes::Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    bytes::Bytes::from(b)
}

pub fn join_request(
    group: &str,
    member: &str,
    instance: Option<&str>,
    topic: &str,
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(str_bytes(member))
        .with_group_instance_id(instance.map(str_bytes))
        .with_protocol_type(str_bytes("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(str_bytes("range"))
            .with_metadata(subscription(&[topic]))])
}

pub fn join(c: &mut RawClient, req: &JoinGroupRequest) -> JoinGroupResponse {
    let v = c.version::<JoinGroupRequest>();
    c.call(req, v).expect("JoinGroup")
}

/// A new dynamic member: the MEMBER_ID_REQUIRED round trip, then the join that waits for
/// the generation. Answers the member id and the correlation id of the pending join.
pub fn start_join(c: &mut RawClient, group: &str, topic: &str) -> (String, i32) {
    // A coordinator that moved (a lease lapsed on a loaded machine) loads again: retriable,
    // as a client treats it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let answer = join(c, &join_request(group, "", None, topic));
        if answer.error_code != code::COORDINATOR_LOAD_IN_PROGRESS || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        first.error_code,
        code::MEMBER_ID_REQUIRED,
        "first join of a new member"
    );
    let id = first.member_id.to_string();
    assert!(!id.is_empty());
    let v = c.version::<JoinGroupRequest>();
    let cid = c.send(&join_request(group, &id, None, topic), v);
    (id, cid)
}

pub fn finish_join(c: &mut RawClient, cid: i32) -> JoinGroupResponse {
    let v = c.version::<JoinGroupRequest>();
    c.recv::<JoinGroupRequest>(cid, v)
        .expect("JoinGroup answer")
}

pub fn sync_request(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(str_bytes(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(str_bytes(m))
                        .with_assignment(bytes::Bytes::copy_from_slice(a))
                })
                .collect(),
        )
}

pub fn heartbeat(
    c: &mut RawClient,
    group: &str,
    member: &str,
    instance: Option<&str>,
    generation: i32,
) -> i16 {
    let v = c.version::<HeartbeatRequest>();
    let req = HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(str_bytes(member))
        .with_group_instance_id(instance.map(str_bytes))
        .with_generation_id(generation);
    c.call(&req, v).expect("Heartbeat").error_code
}

/// OffsetCommit of `(topic, partition, offset)`s; answers each partition's error.
pub fn commit(
    c: &mut RawClient,
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> Vec<i16> {
    let v = c.version::<OffsetCommitRequest>();
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o) in offsets {
        let part = OffsetCommitRequestPartition::default()
            .with_partition_index(*p)
            .with_committed_offset(*o)
            .with_committed_metadata(Some(str_bytes(&format!("meta-{o}"))));
        match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(vec![part]),
            ),
        }
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(str_bytes(member))
        .with_topics(topics);
    let resp = c.call(&req, v).expect("OffsetCommit");
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// OffsetFetch (single-group form, v7) of `(topic, partition)`s: `(offset, metadata)` each.
pub fn fetch_offsets(
    c: &mut RawClient,
    group: &str,
    partitions: &[(&str, i32)],
) -> Vec<(i64, String)> {
    let mut topics: Vec<OffsetFetchRequestTopic> = Vec::new();
    for (t, p) in partitions {
        match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
            Some(x) => x.partition_indexes.push(*p),
            None => topics.push(
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partition_indexes(vec![*p]),
            ),
        }
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(Some(topics));
    let resp = c.call(&req, 7).expect("OffsetFetch");
    assert_eq!(resp.error_code, 0, "OffsetFetch error");
    let mut out = Vec::new();
    for (t, p) in partitions {
        let part = resp
            .topics
            .iter()
            .find(|x| x.name.0.as_str() == *t)
            .and_then(|x| x.partitions.iter().find(|y| y.partition_index == *p))
            .expect("partition in OffsetFetch answer");
        assert_eq!(part.error_code, 0);
        out.push((
            part.committed_offset,
            part.metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ));
    }
    out
}

pub fn describe(c: &mut RawClient, group: &str) -> DescribedGroup {
    let v = c.version::<DescribeGroupsRequest>();
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    let mut resp = c.call(&req, v).expect("DescribeGroups");
    assert_eq!(resp.groups.len(), 1);
    resp.groups.remove(0)
}

/// Every group every broker lists: `(group, protocol type, state)`.
pub fn list_groups(bootstrap: &str, states: &[&str]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for addr in bootstrap.split(',') {
        let mut c = RawClient::negotiated(addr);
        let v = c.version::<ListGroupsRequest>();
        assert!(v >= 4, "ListGroups with states needs v4+");
        let req = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|s| str_bytes(s)).collect());
        let resp = c.call(&req, v).expect("ListGroups");
        assert_eq!(resp.error_code, 0);
        for g in resp.groups {
            out.insert((
                g.group_id.0.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
            ));
        }
    }
    out
}

pub fn delete_group(c: &mut RawClient, group: &str) -> i16 {
    let v = c.version::<DeleteGroupsRequest>();
    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
    let resp = c.call(&req, v).expect("DeleteGroups");
    resp.results[0].error_code
}

/// OffsetDelete: `(group error, per-partition errors)`.
pub fn delete_offsets(
    c: &mut RawClient,
    group: &str,
    partitions: &[(&str, i32)],
) -> (i16, Vec<i16>) {
    let topics = partitions
        .iter()
        .map(|(t, p)| {
            OffsetDeleteRequestTopic::default()
                .with_name(topic_name(t))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(*p)
                ])
        })
        .collect();
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics);
    let resp = c.call(&req, 0).expect("OffsetDelete");
    (
        resp.error_code,
        resp.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
    )
}
