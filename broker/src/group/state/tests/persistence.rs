//! Tests of committed offsets, whole-group admin, expiry and replay; the helpers live in
//! [`super`]. No membership rules are tested here.

use super::*;

fn deleted(group_id: &str, result: Outcome) -> DeletedGroup {
    DeletedGroup {
        group_id: group_id.into(),
        result,
    }
}

/// A commit is not visible until its record is confirmed: a coordinator failure in between
/// would otherwise have shown a client an offset that then disappears. A snapshot written
/// meanwhile (it covers the record) still holds it, and an OffsetDelete meanwhile wins.
#[test]
fn commits_are_visible_only_once_confirmed() {
    let mut g = Groups::new(config());
    let t0 = TopicPartition::new("t", 0);
    let c = commit(&mut g, 5, "simple", "", -1, &[("t", 0, 10)]);
    assert!(
        g.fetch_offsets("simple", Some(std::slice::from_ref(&t0)))[0]
            .value
            .is_none()
    );
    assert!(g.fetch_offsets("simple", None).is_empty());
    let snapshot = g.snapshot_records();
    assert!(
        snapshot
            .iter()
            .any(|r| matches!(r, Record::Offset { value: Some(v), .. } if v.offset == 10)),
        "the snapshot lost a pending commit: {snapshot:?}"
    );
    // Expiry does not remove the group that only holds a pending commit.
    g.expire(i64::MAX / 2);
    confirm(&mut g, 5);
    assert_eq!(take(&c), vec![Ok(())]);
    let fetched = g.fetch_offsets("simple", Some(std::slice::from_ref(&t0)));
    assert_eq!(fetched[0].value.as_ref().map(|v| v.offset), Some(10));

    // Commit 20, then delete the offset before 20 is confirmed: it stays deleted.
    let c = commit(&mut g, 6, "simple", "", -1, &[("t", 0, 20)]);
    let deleted = slot();
    let d = deleted.clone();
    g.delete_offsets(
        "simple",
        vec![t0.clone()],
        Box::new(move |r| *d.borrow_mut() = Some(r)),
    );
    confirm(&mut g, 6);
    assert_eq!(take(&c), vec![Ok(())]);
    assert_eq!(take(&deleted), Ok(vec![Ok(())]));
    assert!(g.fetch_offsets("simple", Some(&[t0]))[0].value.is_none());
}

#[test]
fn simple_consumer_commits_and_fetches() {
    let mut g = Groups::new(config());
    let c = commit(&mut g, 5, "simple", "", -1, &[("t", 0, 10), ("t", 1, 20)]);
    assert!(c.borrow().is_none(), "answered only once persisted");
    let written = confirm(&mut g, 5);
    assert_eq!(written.len(), 2);
    assert_eq!(take(&c), vec![Ok(()), Ok(())]);
    let fetched = g.fetch_offsets(
        "simple",
        Some(&[TopicPartition::new("t", 1), TopicPartition::new("t", 2)]),
    );
    assert_eq!(fetched[0].value.as_ref().unwrap().offset, 20);
    assert_eq!(fetched[0].value.as_ref().unwrap().metadata, "m20");
    assert!(fetched[1].value.is_none());
    assert_eq!(g.fetch_offsets("simple", None).len(), 2);
    assert_eq!(g.fetch_offsets("nothing", None).len(), 0);
    // A generation without a group: refused.
    assert_eq!(
        take(&commit(&mut g, 5, "other", "m", 3, &[("t", 0, 1)])),
        vec![Err(E::IllegalGeneration)]
    );
    // Simple commits to a group with members: UNKNOWN_MEMBER_ID.
    stable_single(&mut g, 0, "managed");
    assert_eq!(
        take(&commit(&mut g, 5, "managed", "", -1, &[("t", 0, 1)])),
        vec![Err(E::UnknownMemberId)]
    );
    // Metadata over the limit is refused per partition.
    let req = CommitRequest {
        group_id: "simple".into(),
        generation: -1,
        member_id: String::new(),
        instance_id: None,
        retention_ms: -1,
        offsets: vec![
            OffsetToCommit {
                partition: TopicPartition::new("t", 0),
                offset: 1,
                leader_epoch: -1,
                metadata: Some("x".repeat(5000)),
            },
            OffsetToCommit {
                partition: TopicPartition::new("t", 1),
                offset: 2,
                leader_epoch: 7,
                metadata: None,
            },
        ],
    };
    let out = slot();
    let o = out.clone();
    g.commit(6, req, Box::new(move |r| *o.borrow_mut() = Some(r)));
    confirm(&mut g, 6);
    assert_eq!(take(&out), vec![Err(E::OffsetMetadataTooLarge), Ok(())]);
    let v = g.fetch_offsets("simple", Some(&[TopicPartition::new("t", 1)]))[0]
        .value
        .clone()
        .unwrap();
    assert_eq!((v.offset, v.leader_epoch, v.metadata.as_str()), (2, 7, ""));
}

#[test]
fn describe_list_delete_and_offset_delete() {
    let mut g = Groups::new(config());
    let a = stable_single(&mut g, 0, "g");
    commit(&mut g, 1, "g", &a, 1, &[("t", 0, 1), ("other", 0, 2)]);
    commit(&mut g, 1, "simple", "", -1, &[("t", 0, 3)]);
    confirm(&mut g, 1);
    let d = g.describe("g");
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.protocol, "range");
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"A"));
    assert_eq!(g.describe("missing").state, GroupState::Dead);
    let listed = g.list();
    assert_eq!(
        listed,
        vec![
            ListedGroup {
                group_id: "g".into(),
                protocol_type: "consumer".into(),
                state: GroupState::Stable
            },
            ListedGroup {
                group_id: "simple".into(),
                protocol_type: "".into(),
                state: GroupState::Empty
            }
        ]
    );
    // OffsetDelete on a group subscribed to the topic.
    let out: Slot<GroupOutcomes> = slot();
    let o = out.clone();
    g.delete_offsets(
        "g",
        vec![TopicPartition::new("t", 0), TopicPartition::new("other", 0)],
        Box::new(move |r| *o.borrow_mut() = Some(r)),
    );
    let written = confirm(&mut g, 2);
    assert_eq!(take(&out), Ok(vec![Err(E::GroupSubscribedToTopic), Ok(())]));
    assert_eq!(written.len(), 1);
    assert!(
        g.fetch_offsets("g", Some(&[TopicPartition::new("other", 0)]))[0]
            .value
            .is_none()
    );
    // DeleteGroups: non-empty refused, empty deleted with tombstones, missing not found.
    let out: Slot<Vec<DeletedGroup>> = slot();
    let o = out.clone();
    g.delete_groups(
        &["g".into(), "simple".into(), "missing".into()],
        Box::new(move |r| *o.borrow_mut() = Some(r)),
    );
    let written = confirm(&mut g, 3);
    assert_eq!(
        take(&out),
        vec![
            deleted("g", Err(E::NonEmptyGroup)),
            deleted("simple", Ok(())),
            deleted("missing", Err(E::GroupIdNotFound))
        ]
    );
    assert_eq!(written.len(), 2, "offset and group tombstones");
    assert!(g.group("simple").is_none());
    let out: Slot<GroupOutcomes> = slot();
    let o = out.clone();
    g.delete_offsets(
        "simple",
        vec![TopicPartition::new("t", 0)],
        Box::new(move |r| *o.borrow_mut() = Some(r)),
    );
    assert_eq!(take(&out), Err(E::GroupIdNotFound));
}

#[test]
fn expiry_removes_old_offsets_and_empty_groups() {
    let mut g = Groups::new(config());
    let hour = 3_600_000;
    commit(&mut g, 0, "simple", "", -1, &[("t", 0, 1)]);
    commit(&mut g, hour / 2, "simple", "", -1, &[("t", 1, 1)]);
    let a = stable_single(&mut g, 0, "busy");
    commit(
        &mut g,
        0,
        "busy",
        &a,
        1,
        &[("t", 0, 1), ("unsubscribed", 0, 1)],
    );
    confirm(&mut g, 0);
    let _ = g.heartbeat(hour, "busy", &a, None, 1);
    g.expire(hour);
    let written = confirm(&mut g, hour);
    // simple/t-0 and busy/unsubscribed-0 expired; busy/t-0 is consumed, simple/t-1 is young.
    assert_eq!(written.len(), 2);
    assert!(
        g.fetch_offsets("simple", Some(&[TopicPartition::new("t", 0)]))[0]
            .value
            .is_none()
    );
    assert!(
        g.fetch_offsets("simple", Some(&[TopicPartition::new("t", 1)]))[0]
            .value
            .is_some()
    );
    assert!(
        g.fetch_offsets("busy", Some(&[TopicPartition::new("t", 0)]))[0]
            .value
            .is_some()
    );
    g.expire(hour + hour / 2);
    let written = confirm(&mut g, hour + hour / 2);
    assert!(
        g.group("simple").is_none(),
        "empty and offset-less: removed"
    );
    assert_eq!(
        written.len(),
        1,
        "only the offset: a simple group has no metadata"
    );
    // An empty consumer group expires from when it became empty.
    let _ = g.leave(2 * hour, "busy", &[leaving(&a, None)]);
    confirm(&mut g, 2 * hour);
    g.expire(3 * hour - 1);
    assert!(g.group("busy").is_some());
    g.expire(3 * hour);
    let written = confirm(&mut g, 3 * hour);
    assert!(g.group("busy").is_none());
    assert!(written
        .iter()
        .any(|r| matches!(r, Record::Group { value: None, .. })));
}

#[test]
fn replay_of_written_records_rebuilds_the_state() {
    let mut g = Groups::new(config());
    let mut log = Vec::new();
    let (a, written) = stable_static(&mut g, "i");
    log.extend(written);
    commit(&mut g, 1, "g", &a, 1, &[("t", 0, 42)]);
    commit(&mut g, 1, "s", "", -1, &[("t", 0, 7)]);
    commit(&mut g, 1, "gone", "", -1, &[("t", 0, 7)]);
    log.extend(confirm(&mut g, 1));
    g.delete_groups(&["gone".into()], Box::new(|_| {}));
    log.extend(confirm(&mut g, 2));

    let check = |h: &Groups| {
        let group = h.group("g").unwrap();
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.generation, 1);
        assert_eq!(group.leader.as_deref(), Some(a.as_str()));
        assert!(group.has_member(&a));
        assert_eq!(
            h.describe("g").members[0].assignment,
            Bytes::from_static(b"A")
        );
        assert_eq!(
            h.fetch_offsets("g", Some(&[TopicPartition::new("t", 0)]))[0]
                .value
                .as_ref()
                .unwrap()
                .offset,
            42
        );
        assert_eq!(h.group("s").unwrap().state, GroupState::Empty);
        assert!(h.group("gone").is_none());
    };
    let mut h = Groups::new(config());
    for r in log.clone() {
        h.replay(r, 10);
    }
    h.finish_load(10);
    check(&h);
    // The static member can come back under its instance id after the move.
    assert_eq!(h.heartbeat(11, "g", &a, Some("i"), 1), Ok(()));
    // A snapshot of it replays to the same state.
    let mut s = Groups::new(config());
    for r in h.snapshot_records() {
        s.replay(r, 20);
    }
    s.finish_load(20);
    check(&s);
    // Loaded members expire like any other after their session: the group empties.
    s.tick(20 + SESSION as i64 + 1);
    let group = s.group("g").unwrap();
    assert_eq!((group.state, group.generation), (GroupState::Empty, 2));
}

#[test]
fn subscription_parsing_is_total() {
    assert_eq!(
        subscription_topics(&subscription(&["a", "bb"])),
        Some(vec!["a".to_string(), "bb".to_string()])
    );
    assert_eq!(subscription_topics(&[]), None);
    assert_eq!(subscription_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
    assert_eq!(subscription_topics(&[0, 0, 0, 0, 0, 1, 0, 9, b'x']), None);
}
