//! The group state machine, rule by rule, with time passed in and writes confirmed by hand.
//! Shared helpers here; offsets, admin, expiry and replay tests in [`persistence`].

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;

mod persistence;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 1000,
        max_session_timeout_ms: 600_000,
        offsets_retention: Duration::from_secs(3600),
        ..GroupConfig::default()
    }
}

/// Consumer-protocol subscription metadata (v0) for `topics`, as clients encode it: the
/// version, then kafka-protocol's `ConsumerProtocolSubscription` at that version.
fn subscription(topics: &[&str]) -> Bytes {
    let topics = topics.iter().map(|t| StrBytes::from_string(t.to_string()));
    let subscription = ConsumerProtocolSubscription::default().with_topics(topics.collect());
    let mut b = BytesMut::new();
    b.put_i16(0);
    subscription
        .encode(&mut b, 0)
        .expect("a v0 subscription encodes");
    b.freeze()
}

fn protocols(topics: &[&str]) -> Vec<(String, Bytes)> {
    vec![
        ("range".to_string(), subscription(topics)),
        ("roundrobin".to_string(), subscription(topics)),
    ]
}

fn leaving(member_id: &str, instance_id: Option<&str>) -> LeavingMember {
    LeavingMember {
        member_id: member_id.into(),
        instance_id: instance_id.map(String::from),
    }
}

type Slot<T> = Rc<RefCell<Option<T>>>;

fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

fn join_req(group: &str, member: &str, instance: Option<&str>, v4: bool) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member.into(),
        instance_id: instance.map(String::from),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols(&["t"]),
        require_known_member_id: v4 && instance.is_none(),
        supports_skip_assignment: false,
    }
}

fn join(g: &mut Groups, now: i64, req: JoinRequest) -> Slot<JoinResult> {
    let out = slot();
    let o = out.clone();
    g.join(now, req, Box::new(move |r| *o.borrow_mut() = Some(r)));
    out
}

fn sync(
    g: &mut Groups,
    now: i64,
    group: &str,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> Slot<SyncResult> {
    let out = slot();
    let o = out.clone();
    g.sync(
        now,
        SyncRequest {
            group_id: group.into(),
            generation,
            member_id: member.into(),
            instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments,
        },
        Box::new(move |r| *o.borrow_mut() = Some(r)),
    );
    out
}

fn commit(
    g: &mut Groups,
    now: i64,
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> Slot<Vec<Outcome>> {
    let out = slot();
    let o = out.clone();
    g.commit(
        now,
        CommitRequest {
            group_id: group.into(),
            generation,
            member_id: member.into(),
            instance_id: None,
            retention_ms: -1,
            offsets: offsets
                .iter()
                .map(|(t, p, o)| OffsetToCommit {
                    partition: TopicPartition::new(*t, *p),
                    offset: *o,
                    leader_epoch: -1,
                    metadata: Some(format!("m{o}")),
                })
                .collect(),
        },
        Box::new(move |r| *o.borrow_mut() = Some(r)),
    );
    out
}

/// Confirms every queued write (running its `done`), returning the records written.
fn confirm(g: &mut Groups, now: i64) -> Vec<Record> {
    let mut records = Vec::new();
    loop {
        let writes = g.take_writes();
        if writes.is_empty() {
            return records;
        }
        for w in writes {
            records.extend(w.records);
            if let Some(done) = w.done {
                done(g, now);
            }
        }
    }
}

fn take<T>(s: &Slot<T>) -> T {
    s.borrow_mut().take().expect("answer expected")
}

/// A member joined with v4 semantics (MEMBER_ID_REQUIRED first); returns its id and the
/// pending answer of its second join.
fn join_v4(g: &mut Groups, now: i64, group: &str) -> (String, Slot<JoinResult>) {
    let first = take(&join(g, now, join_req(group, "", None, true)));
    assert_eq!(first.error, Some(E::MemberIdRequired));
    assert!(first.member_id.starts_with("client-"));
    let id = first.member_id;
    let second = join(g, now, join_req(group, &id, None, true));
    (id, second)
}

/// One member, generation 1, Stable with `assignment`.
/// A static member (instance `instance`) that joins group "g" alone at 0 and syncs
/// assignment "A"; its member id and the records written.
fn stable_static(g: &mut Groups, instance: &str) -> (String, Vec<Record>) {
    let joined = take(&join(g, 0, join_req("g", "", Some(instance), true)));
    let a = joined.member_id;
    sync(
        g,
        0,
        "g",
        &a,
        1,
        vec![(a.clone(), Bytes::from_static(b"A"))],
    );
    let written = confirm(g, 0);
    (a, written)
}

fn stable_single(g: &mut Groups, now: i64, group: &str) -> String {
    let (id, answer) = join_v4(g, now, group);
    let r = take(&answer);
    assert_eq!(r.error, None);
    assert_eq!(r.generation, 1);
    assert_eq!(r.leader, id);
    assert_eq!(r.members.len(), 1);
    let s = sync(
        g,
        now,
        group,
        &id,
        1,
        vec![(id.clone(), Bytes::from_static(b"A"))],
    );
    assert!(
        s.borrow().is_none(),
        "answered before the write is confirmed"
    );
    confirm(g, now);
    assert_eq!(take(&s).assignment, Bytes::from_static(b"A"));
    assert_eq!(g.group(group).unwrap().state, GroupState::Stable);
    id
}

#[test]
fn member_id_required_round_trip_then_stable() {
    let mut g = Groups::new(config());
    let id = stable_single(&mut g, 0, "g");
    let group = g.group("g").unwrap();
    assert_eq!(group.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.heartbeat(1, "g", &id, None, 1), Ok(()));
    // A pending member that never comes back is dropped after the session timeout.
    let first = take(&join(&mut g, 10, join_req("g", "", None, true)));
    assert_eq!(first.error, Some(E::MemberIdRequired));
    g.tick(10 + SESSION as i64 + 1);
    assert_eq!(
        take(&join(
            &mut g,
            20_000,
            join_req("g", &first.member_id, None, true)
        ))
        .error,
        Some(E::UnknownMemberId)
    );
}

#[test]
fn invalid_session_timeout_and_inconsistent_protocols_are_refused() {
    let mut g = Groups::new(config());
    let mut req = join_req("g", "", None, false);
    req.session_timeout_ms = 10;
    assert_eq!(
        take(&join(&mut g, 0, req)).error,
        Some(E::InvalidSessionTimeout)
    );
    let _ = stable_single(&mut g, 0, "g");
    let mut req = join_req("g", "", None, false);
    req.protocols = vec![("other".into(), Bytes::new())];
    assert_eq!(
        take(&join(&mut g, 0, req)).error,
        Some(E::InconsistentGroupProtocol)
    );
    let mut req = join_req("g", "", None, false);
    req.protocol_type = "connect".into();
    assert_eq!(
        take(&join(&mut g, 0, req)).error,
        Some(E::InconsistentGroupProtocol)
    );
}

#[test]
fn second_member_triggers_rebalance_and_leader_assigns_both() {
    let mut g = Groups::new(config());
    let a = stable_single(&mut g, 0, "g");
    let (b, b_join) = join_v4(&mut g, 100, "g");
    assert!(b_join.borrow().is_none(), "waits for the others to rejoin");
    assert_eq!(g.group("g").unwrap().state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(200, "g", &a, None, 1),
        Err(E::RebalanceInProgress)
    );
    // A commit during PreparingRebalance with the current generation is accepted.
    let c = commit(&mut g, 200, "g", &a, 1, &[("t", 0, 5)]);
    confirm(&mut g, 200);
    assert_eq!(take(&c), vec![Ok(())]);
    let a_join = join(&mut g, 300, join_req("g", &a, None, true));
    let ra = take(&a_join);
    let rb = take(&b_join);
    assert_eq!((ra.generation, rb.generation), (2, 2));
    assert_eq!(ra.leader, a);
    assert_eq!(rb.leader, a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    assert_eq!(g.group("g").unwrap().state, GroupState::CompletingRebalance);
    // Commit during CompletingRebalance: REBALANCE_IN_PROGRESS; stale generation: ILLEGAL.
    assert_eq!(
        take(&commit(&mut g, 310, "g", &a, 2, &[("t", 0, 6)])),
        vec![Err(E::RebalanceInProgress)]
    );
    assert_eq!(
        take(&commit(&mut g, 310, "g", &a, 1, &[("t", 0, 6)])),
        vec![Err(E::IllegalGeneration)]
    );
    assert_eq!(
        take(&commit(&mut g, 310, "g", "nobody", 2, &[("t", 0, 6)])),
        vec![Err(E::UnknownMemberId)]
    );
    // The follower syncs first and waits for the leader.
    let sb = sync(&mut g, 400, "g", &b, 2, vec![]);
    assert!(sb.borrow().is_none());
    assert_eq!(
        take(&sync(&mut g, 400, "g", &b, 1, vec![])).error,
        Some(E::IllegalGeneration)
    );
    let sa = sync(
        &mut g,
        500,
        "g",
        &a,
        2,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
    );
    let written = confirm(&mut g, 500);
    assert!(
        matches!(&written[0], Record::Group { value: Some(v), .. } if v.members.len() == 2 && v.generation == 2)
    );
    assert_eq!(take(&sa).assignment, Bytes::from_static(b"A"));
    assert_eq!(take(&sb).assignment, Bytes::from_static(b"B"));
    assert_eq!(g.group("g").unwrap().state, GroupState::Stable);
    assert_eq!(g.heartbeat(600, "g", &b, None, 2), Ok(()));
    assert_eq!(
        g.heartbeat(600, "g", &b, None, 1),
        Err(E::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat(600, "g", "ghost", None, 2),
        Err(E::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(600, "nogroup", "ghost", None, 2),
        Err(E::UnknownMemberId)
    );
}

#[test]
fn session_expiry_removes_member_and_rebalances() {
    let mut g = Groups::new(config());
    let a = stable_single(&mut g, 0, "g");
    let (b, b_join) = join_v4(&mut g, 0, "g");
    let a_join = join(&mut g, 0, join_req("g", &a, None, true));
    let _ = (take(&a_join), take(&b_join));
    sync(&mut g, 0, "g", &b, 2, vec![]);
    sync(&mut g, 0, "g", &a, 2, vec![]);
    confirm(&mut g, 0);
    assert_eq!(g.group("g").unwrap().state, GroupState::Stable);
    // a keeps heartbeating, b goes silent.
    for t in (1000..SESSION as i64).step_by(1000) {
        assert_eq!(g.heartbeat(t, "g", &a, None, 2), Ok(()));
        g.tick(t);
    }
    g.tick(SESSION as i64 + 1);
    assert_eq!(
        g.heartbeat(SESSION as i64 + 1, "g", &a, None, 2),
        Err(E::RebalanceInProgress)
    );
    let group = g.group("g").unwrap();
    assert!(!group.has_member(&b));
    assert_eq!(group.state, GroupState::PreparingRebalance);
    let t = SESSION as i64 + 2000;
    let r = take(&join(&mut g, t, join_req("g", &a, None, true)));
    assert_eq!((r.error, r.generation), (None, 3));
}

#[test]
fn members_that_do_not_rejoin_in_the_rebalance_timeout_are_removed() {
    let mut g = Groups::new(config());
    let a = stable_single(&mut g, 0, "g");
    let (_b, b_join) = join_v4(&mut g, 0, "g");
    // a never rejoins (but keeps its session alive through heartbeats).
    for t in (1000..REBALANCE as i64).step_by(1000) {
        assert_eq!(
            g.heartbeat(t, "g", &a, None, 1),
            Err(E::RebalanceInProgress)
        );
        g.tick(t);
    }
    assert!(b_join.borrow().is_none());
    g.tick(REBALANCE as i64 + 1);
    let rb = take(&b_join);
    assert_eq!((rb.error, rb.generation), (None, 2));
    assert_eq!(rb.members.len(), 1, "b leads alone");
    assert!(!g.group("g").unwrap().has_member(&a));
    assert_eq!(
        g.heartbeat(REBALANCE as i64 + 2, "g", &a, None, 1),
        Err(E::UnknownMemberId)
    );
}

#[test]
fn members_that_do_not_sync_in_time_are_removed() {
    let mut g = Groups::new(config());
    let a = stable_single(&mut g, 0, "g");
    let (b, b_join) = join_v4(&mut g, 0, "g");
    let _ = take(&join(&mut g, 0, join_req("g", &a, None, true)));
    let _ = take(&b_join);
    // Only the leader syncs; both keep their sessions alive.
    sync(&mut g, 0, "g", &a, 2, vec![]);
    confirm(&mut g, 0);
    for t in (5000..REBALANCE as i64).step_by(5000) {
        assert_eq!(g.heartbeat(t, "g", &a, None, 2), Ok(()));
        assert_eq!(g.heartbeat(t, "g", &b, None, 2), Ok(()));
        g.tick(t);
    }
    assert!(g.group("g").unwrap().has_member(&b));
    g.tick(REBALANCE as i64 + 1);
    let group = g.group("g").unwrap();
    assert!(!group.has_member(&b));
    assert_eq!(group.state, GroupState::PreparingRebalance);
}

#[test]
fn leave_group_rebalances_and_last_leave_empties() {
    let mut g = Groups::new(config());
    let a = stable_single(&mut g, 0, "g");
    assert_eq!(
        g.leave(1, "g", &[leaving("ghost", None)]),
        Ok(vec![Err(E::UnknownMemberId)])
    );
    assert_eq!(g.leave(1, "g", &[leaving(&a, None)]), Ok(vec![Ok(())]));
    let group = g.group("g").unwrap();
    assert_eq!(group.state, GroupState::Empty);
    assert_eq!(group.generation, 2);
    let written = confirm(&mut g, 1);
    assert!(matches!(&written[..], [Record::Group { value: Some(v), .. }] if v.members.is_empty()));
    assert_eq!(
        g.leave(2, "none", &[leaving("x", None)]),
        Ok(vec![Err(E::UnknownMemberId)])
    );
}
#[test]
fn static_member_rejoining_gets_its_assignment_without_rebalance() {
    let mut g = Groups::new(config());
    let a_req = || join_req("g", "", Some("inst-a"), true);
    let ra = take(&join(&mut g, 0, a_req()));
    assert_eq!(ra.error, None, "static members skip MEMBER_ID_REQUIRED");
    let a = ra.member_id.clone();
    assert!(a.starts_with("inst-a-"));
    let (b, b_join) = join_v4(&mut g, 0, "g");
    // a rejoins for the new generation, as a static member.
    let mut a_rejoin = a_req();
    a_rejoin.member_id = a.clone();
    let ra = take(&join(&mut g, 0, a_rejoin));
    let rb = take(&b_join);
    assert_eq!((ra.generation, rb.generation), (2, 2));
    let leader = ra.leader.clone();
    assert_eq!(leader, a);
    sync(&mut g, 0, "g", &b, 2, vec![]);
    sync(
        &mut g,
        0,
        "g",
        &a,
        2,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
    );
    confirm(&mut g, 0);
    assert_eq!(g.group("g").unwrap().state, GroupState::Stable);

    // a restarts: unknown member id, same instance id.
    let again = join(&mut g, 1000, a_req());
    assert!(
        again.borrow().is_none(),
        "answered once the new member id is stored"
    );
    let written = confirm(&mut g, 1000);
    assert!(matches!(&written[..], [Record::Group { value: Some(v), .. }] if v.generation == 2));
    let r = take(&again);
    assert_eq!(r.error, None);
    assert_eq!(r.generation, 2, "no new generation");
    assert_ne!(r.member_id, a);
    assert_eq!(
        r.leader, a,
        "old leader id: the new member does not run an assignment"
    );
    let a2 = r.member_id.clone();
    let group = g.group("g").unwrap();
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(group.generation, 2);
    // It gets its old assignment back; b is undisturbed.
    let s = sync(&mut g, 1001, "g", &a2, 2, vec![]);
    assert_eq!(take(&s).assignment, Bytes::from_static(b"A"));
    assert_eq!(g.heartbeat(1002, "g", &b, None, 2), Ok(()));
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(1002, "g", &a, Some("inst-a"), 2),
        Err(E::FencedInstanceId)
    );
    assert_eq!(g.heartbeat(1002, "g", &a2, Some("inst-a"), 2), Ok(()));
    // Removing a static member by instance id (admin LeaveGroup) rebalances.
    assert_eq!(
        g.leave(1003, "g", &[leaving("", Some("inst-a"))]),
        Ok(vec![Ok(())])
    );
    assert_eq!(g.group("g").unwrap().state, GroupState::PreparingRebalance);
}

#[test]
fn static_member_that_does_not_rejoin_stays_until_its_session_expires() {
    let mut g = Groups::new(config());
    let (a, _) = stable_static(&mut g, "i");
    let (b, b_join) = join_v4(&mut g, 100, "g");
    // a is alive (heartbeats) but does not rejoin.
    for t in (5000..100 + REBALANCE as i64).step_by(5000) {
        let _ = g.heartbeat(t, "g", &a, Some("i"), 1);
        g.tick(t);
    }
    g.tick(100 + REBALANCE as i64 + 1);
    let rb = take(&b_join);
    assert_eq!(rb.generation, 2);
    let group = g.group("g").unwrap();
    assert!(
        group.has_member(&a),
        "static members survive the join phase"
    );
    assert_eq!(rb.leader, b, "leadership moves to a member that rejoined");
    // Its session then expires.
    g.tick(100 + REBALANCE as i64 + 1 + SESSION as i64);
    assert!(!g.group("g").unwrap().has_member(&a));
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let mut g = Groups::new(GroupConfig {
        initial_rebalance_delay_ms: 3000,
        ..config()
    });
    let a = join(&mut g, 0, join_req("g", "", None, false));
    let b = join(&mut g, 1000, join_req("g", "", None, false));
    g.tick(2999);
    assert!(a.borrow().is_none());
    g.tick(3000);
    // b arrived during the delay: extended once.
    assert!(a.borrow().is_none());
    g.tick(6000);
    let (ra, rb) = (take(&a), take(&b));
    assert_eq!((ra.generation, rb.generation), (1, 1));
    assert_eq!(ra.members.len(), 2);
}

#[test]
fn protocol_is_the_common_one_most_members_prefer() {
    let mut g = Groups::new(config());
    let mut a = join_req("g", "", None, false);
    a.protocols = vec![
        ("cooperative-sticky".into(), subscription(&["t"])),
        ("range".into(), subscription(&["t"])),
    ];
    let mut b = join_req("g", "", None, false);
    b.protocols = vec![("range".into(), subscription(&["t"]))];
    let ra = join(&mut g, 0, a);
    let rb = join(&mut g, 0, b);
    // a's first join completed a generation of one; b's join started the next one.
    let first = take(&ra);
    assert_eq!(first.protocol_name.as_deref(), Some("cooperative-sticky"));
    let mut a2 = join_req("g", &first.member_id, None, false);
    a2.protocols = vec![
        ("cooperative-sticky".into(), subscription(&["t"])),
        ("range".into(), subscription(&["t"])),
    ];
    let r = take(&join(&mut g, 0, a2));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(take(&rb).protocol_name.as_deref(), Some("range"));
}

/// A group's record must fit one stream append: a join whose metadata would make it too
/// large, or a leader's assignments that would, are found before anything changes (the
/// coordinator refuses them), while ordinary requests fit.
#[test]
fn joins_and_assignments_that_would_not_fit_one_append_are_found() {
    let mut g = Groups::new(config());
    let id = stable_single(&mut g, 0, "g");
    assert!(g.join_fits(&join_req("g", "", None, true)));
    let mut huge = join_req("g", "", None, true);
    huge.protocols = vec![("range".into(), Bytes::from(vec![0; MAX_GROUP_RECORD_BYTES]))];
    assert!(!g.join_fits(&huge));
    // Half the limit fits in a group of its own.
    let mut half = join_req("h", "", None, true);
    half.protocols = vec![(
        "range".into(),
        Bytes::from(vec![0; MAX_GROUP_RECORD_BYTES / 2]),
    )];
    assert!(g.join_fits(&half));
    let sync_req = |assignment: usize| SyncRequest {
        group_id: "g".into(),
        generation: 1,
        member_id: id.clone(),
        instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![(id.clone(), Bytes::from(vec![0; assignment]))],
    };
    assert!(g.sync_fits(&sync_req(1 << 20)));
    assert!(!g.sync_fits(&sync_req(MAX_GROUP_RECORD_BYTES)));
    // A rejoining member replaces its own earlier metadata.
    let mut rejoin = join_req("g", &id, None, true);
    rejoin.protocols = vec![(
        "range".into(),
        Bytes::from(vec![0; MAX_GROUP_RECORD_BYTES - 200]),
    )];
    assert!(g.join_fits(&rejoin));
}
