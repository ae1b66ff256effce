//! Unit tests of the state rules: node registration, old snapshots, stream replication,
//! fencing, range continuity and sealing, placement, trimming and id allocation.

use super::*;

/// Registers a new node at a fresh address.
fn reg(st: &mut PdState, kind: Kind) -> u64 {
    let addr = format!("127.0.0.1:{}", 9000 + st.next_node_id);
    match st
        .apply(&Command::RegisterNode {
            kind,
            node_id: None,
            addr,
            http_addr: "h".into(),
        })
        .0
    {
        Ok(Response::Node(n)) => n.id,
        other => panic!("{other:?}"),
    }
}

fn stream(st: &mut PdState, replica: u8, ack: u8) -> u64 {
    match st
        .apply(&Command::CreateStream {
            replica,
            ack_count: ack,
        })
        .0
    {
        Ok(Response::Stream(s)) => s.id,
        other => panic!("{other:?}"),
    }
}

fn open(st: &mut PdState, id: u64, min_epoch: u64) -> u64 {
    match st
        .apply(&Command::OpenStream {
            stream_id: id,
            min_epoch,
        })
        .0
    {
        Ok(Response::Stream(s)) => s.epoch,
        other => panic!("{other:?}"),
    }
}

fn create_range(st: &mut PdState, id: u64, epoch: u64, start: u64, servers: &[u64]) -> ApplyResult {
    st.apply(&Command::CreateRange {
        stream_id: id,
        epoch,
        start,
        servers: servers.to_vec(),
    })
    .0
}

fn seal(st: &mut PdState, id: u64, epoch: u64, index: u32, end: u64) -> ApplyResult {
    st.apply(&Command::SealRange {
        stream_id: id,
        epoch,
        index,
        end,
    })
    .0
}

fn setup(servers: usize) -> (PdState, Vec<u64>) {
    let mut st = PdState::default();
    let ids = (0..servers)
        .map(|_| reg(&mut st, Kind::RangeServer))
        .collect();
    (st, ids)
}

/// Three range servers and a replica-3/ack-2 stream opened at epoch `e` with its first
/// range (from offset 0) open: `(state, servers, stream id, e)`.
fn writing_first_range() -> (PdState, Vec<u64>, u64, u64) {
    let (mut st, servers) = setup(3);
    let id = stream(&mut st, 3, 2);
    let e = open(&mut st, id, 0);
    create_range(&mut st, id, e, 0, &servers).ok();
    (st, servers, id, e)
}

#[test]
fn register_allocates_and_keeps_ids() {
    let mut st = PdState::default();
    assert_eq!(reg(&mut st, Kind::RangeServer), 1);
    assert_eq!(reg(&mut st, Kind::Broker), 2);
    // Re-register with a known id updates the address.
    let (r, ev) = st.apply(&Command::RegisterNode {
        kind: Kind::RangeServer,
        node_id: Some(1),
        addr: "new".into(),
        http_addr: "h2".into(),
    });
    assert!(matches!(r, Ok(Response::Node(ref n)) if n.id == 1 && n.addr == "new"));
    assert_eq!(ev, vec![Event::NodeChanged(1)]);
    // An unknown but provided id is kept and the allocator moves past it.
    let (r, _) = st.apply(&Command::RegisterNode {
        kind: Kind::RangeServer,
        node_id: Some(10),
        addr: "x".into(),
        http_addr: "y".into(),
    });
    assert!(matches!(r, Ok(Response::Node(ref n)) if n.id == 10));
    assert_eq!(reg(&mut st, Kind::Broker), 11);
}

#[test]
fn register_without_id_reuses_a_brokers_id_by_address_only() {
    let mut st = PdState::default();
    let register = |st: &mut PdState, kind, addr: &str, http: &str| match st
        .apply(&Command::RegisterNode {
            kind,
            node_id: None,
            addr: addr.into(),
            http_addr: http.into(),
        })
        .0
    {
        Ok(Response::Node(n)) => n,
        other => panic!("{other:?}"),
    };
    let b1 = register(&mut st, Kind::Broker, "127.0.0.1:9092", "h1");
    let b2 = register(&mut st, Kind::Broker, "127.0.0.1:9093", "h2");
    let rs = register(&mut st, Kind::RangeServer, "127.0.0.1:9092", "h3");
    assert_eq!((b1.id, b2.id, rs.id), (1, 2, 3));
    // Restarted with an empty data dir: same address, same id; http address updated.
    let again = register(&mut st, Kind::Broker, "127.0.0.1:9092", "h9");
    assert_eq!((again.id, again.http_addr.as_str()), (1, "h9"));
    // A range server with an empty disk is a new node: its old id's data is gone.
    assert_eq!(
        register(&mut st, Kind::RangeServer, "127.0.0.1:9092", "h").id,
        4
    );
    // A new address gets a new id.
    assert_eq!(register(&mut st, Kind::Broker, "127.0.0.1:9094", "h").id, 5);
    assert_eq!(st.nodes.len(), 5);
}

#[test]
fn snapshots_from_before_topics_still_decode() {
    #[derive(Serialize)]
    struct Old<'a> {
        nodes: &'a BTreeMap<u64, NodeRecord>,
        streams: &'a BTreeMap<u64, StreamRecord>,
        allocators: &'a BTreeMap<String, u64>,
        next_node_id: u64,
        next_stream_id: u64,
    }
    let (mut st, _) = setup(2);
    stream(&mut st, 1, 1);
    let old = protocol::codec::encode_serde(&Old {
        nodes: &st.nodes,
        streams: &st.streams,
        allocators: &st.allocators,
        next_node_id: st.next_node_id,
        next_stream_id: st.next_stream_id,
    })
    .map_err(|e| e.message);
    assert_eq!(
        old.and_then(|b| PdState::decode(&b).map_err(|e| e.message)),
        Ok(st.clone())
    );
    st.cluster_id = Some("c".into());
    let new = protocol::codec::encode_serde(&st).map_err(|e| e.message);
    assert_eq!(
        new.and_then(|b| PdState::decode(&b).map_err(|e| e.message)),
        Ok(st)
    );
    assert!(PdState::decode(b"garbage").is_err());
}

#[test]
fn snapshots_drop_the_deleted_streams_older_versions_kept() {
    let (mut st, _) = setup(1);
    let gone = stream(&mut st, 1, 1);
    let kept = stream(&mut st, 1, 1);
    // What an older version stored for a deleted stream: a tombstone.
    let mut old = st.clone();
    if let Some(s) = old.streams.get_mut(&gone) {
        s.deleted = true;
    }
    let bytes = protocol::codec::encode_serde(&old).map_err(|e| e.message);
    let decoded = bytes.and_then(|b| PdState::decode(&b).map_err(|e| e.message));
    let ids = decoded.map(|d| d.streams.keys().copied().collect::<Vec<_>>());
    assert_eq!(ids, Ok(vec![kept]));
}

#[test]
fn create_stream_validates_replica_and_ack() {
    let mut st = PdState::default();
    for (r, a) in [(0, 0), (6, 1), (3, 0), (3, 4)] {
        let (res, ev) = st.apply(&Command::CreateStream {
            replica: r,
            ack_count: a,
        });
        assert!(
            matches!(res, Err(StateError::InvalidArgument(_))),
            "{r} {a}"
        );
        assert!(ev.is_empty());
    }
    assert_eq!(stream(&mut st, 3, 2), 1);
    assert_eq!(stream(&mut st, 1, 1), 2);
    assert_eq!(stream(&mut st, 5, 5), 3);
}

#[test]
fn open_bumps_epoch_and_fences() {
    let (mut st, servers) = setup(3);
    let id = stream(&mut st, 3, 2);
    assert_eq!(open(&mut st, id, 0), 1);
    assert_eq!(open(&mut st, id, 7), 7);
    assert_eq!(open(&mut st, id, 3), 8);
    // The old writer (epoch 7) is fenced for create and seal.
    assert!(matches!(
        create_range(&mut st, id, 7, 0, &servers),
        Err(StateError::Fenced(_))
    ));
    assert!(create_range(&mut st, id, 8, 0, &servers).is_ok());
    assert!(matches!(
        seal(&mut st, id, 7, 0, 5),
        Err(StateError::Fenced(_))
    ));
    assert!(seal(&mut st, id, 8, 0, 5).is_ok());
}

#[test]
fn range_continuity_rules() {
    let (mut st, servers) = setup(3);
    let id = stream(&mut st, 3, 2);
    let e = open(&mut st, id, 0);
    // First range must start at start_offset.
    assert!(matches!(
        create_range(&mut st, id, e, 5, &servers),
        Err(StateError::InvalidArgument(_))
    ));
    let r0 = create_range(&mut st, id, e, 0, &servers);
    assert!(
        matches!(r0, Ok(Response::Range(ref r)) if r.index == 0 && r.offload_owner == servers[0])
    );
    // Identical retry is idempotent.
    assert_eq!(create_range(&mut st, id, e, 0, &servers), r0);
    // Last range still open.
    assert!(matches!(
        create_range(&mut st, id, e, 10, &servers),
        Err(StateError::InvalidArgument(ref m)) if m.contains("still open")
    ));
    // An empty range (end == start) is allowed.
    assert!(matches!(
        seal(&mut st, id, e, 0, 0),
        Ok(Response::Range(ref r)) if r.end == Some(0)
    ));
    let r1 = create_range(&mut st, id, e, 0, &servers);
    assert!(matches!(r1, Ok(Response::Range(ref r)) if r.index == 1 && r.start == 0));
    assert!(seal(&mut st, id, e, 1, 100).is_ok());
    // Next start must equal previous end.
    assert!(matches!(
        create_range(&mut st, id, e, 99, &servers),
        Err(StateError::InvalidArgument(_))
    ));
    let r2 = create_range(&mut st, id, e, 100, &servers);
    assert!(matches!(r2, Ok(Response::Range(ref r)) if r.index == 2 && r.start == 100));
    assert!(matches!(
        seal(&mut st, id, e, 2, 50),
        Err(StateError::InvalidArgument(ref m)) if m.contains("end 50 < start 100")
    ));
}

#[test]
fn seal_is_idempotent_with_same_end_only() {
    let (mut st, servers, id, e) = writing_first_range();
    let first = seal(&mut st, id, e, 0, 42);
    assert!(first.is_ok());
    assert_eq!(seal(&mut st, id, e, 0, 42), first);
    assert!(matches!(
        seal(&mut st, id, e, 0, 43),
        Err(StateError::InvalidArgument(_))
    ));
    assert!(matches!(
        seal(&mut st, id, e, 5, 43),
        Err(StateError::NotFound(_))
    ));
    // Not the last range.
    create_range(&mut st, id, e, 42, &servers).ok();
    seal(&mut st, id, e, 1, 50).ok();
    create_range(&mut st, id, e, 50, &servers).ok();
    assert_eq!(seal(&mut st, id, e, 1, 50).map(|_| ()), Ok(()));
}

#[test]
fn create_range_validates_servers() {
    let (mut st, servers) = setup(3);
    let broker = reg(&mut st, Kind::Broker);
    let id = stream(&mut st, 3, 2);
    let e = open(&mut st, id, 0);
    assert!(matches!(
        create_range(&mut st, id, e, 0, &servers[..1]),
        Err(StateError::NoCapacity(_))
    ));
    assert!(matches!(
        create_range(&mut st, id, e, 0, &[servers[0], broker]),
        Err(StateError::InvalidArgument(_))
    ));
    assert!(matches!(
        create_range(&mut st, id, e, 0, &[servers[0], servers[0]]),
        Err(StateError::InvalidArgument(_))
    ));
    assert!(matches!(
        create_range(&mut st, id, e, 0, &[servers[0], 99]),
        Err(StateError::InvalidArgument(_))
    ));
    // Degraded: 2 of 3 is allowed with ack_count 2.
    assert!(matches!(
        create_range(&mut st, id, e, 0, &servers[..2]),
        Ok(Response::Range(ref r)) if r.servers.len() == 2
    ));
}

#[test]
fn placement_prefers_new_and_less_loaded_servers() {
    let (mut st, s) = setup(5);
    let all = |_: u64| true;
    let a = stream(&mut st, 3, 2);
    let ea = open(&mut st, a, 0);
    let chosen = st.choose_servers(a, &[], all).unwrap_or_default();
    assert_eq!(chosen, vec![s[0], s[1], s[2]]);
    create_range(&mut st, a, ea, 0, &chosen).ok();
    // A second stream goes to the least loaded servers first.
    let b = stream(&mut st, 3, 2);
    let chosen_b = st.choose_servers(b, &[], all).unwrap_or_default();
    assert_eq!(chosen_b, vec![s[3], s[4], s[0]]);
    // Exclusion and liveness.
    seal(&mut st, a, ea, 0, 10).ok();
    let dead = s[4];
    let next = st
        .choose_servers(a, &[s[3]], |id| id != dead)
        .unwrap_or_default();
    // Not in previous range preferred: only s[3], s[4] qualify and both are out; then
    // previous-range servers fill up.
    assert_eq!(next, vec![s[0], s[1], s[2]]);
    let next = st.choose_servers(a, &[s[0]], all).unwrap_or_default();
    assert_eq!(next, vec![s[3], s[4], s[1]]);
    // Degradation: only two live.
    let two = st
        .choose_servers(a, &[], |id| id == s[0] || id == s[1])
        .unwrap_or_default();
    assert_eq!(two.len(), 2);
    assert!(create_range(&mut st, a, ea, 10, &two).is_ok());
}

#[test]
fn trim_forgets_the_ranges_wholly_below_the_start_but_the_last() {
    let (mut st, servers, id, e) = writing_first_range();
    seal(&mut st, id, e, 0, 100).ok();
    create_range(&mut st, id, e, 100, &servers).ok();
    seal(&mut st, id, e, 1, 200).ok();
    create_range(&mut st, id, e, 200, &servers).ok();
    let indexes =
        |st: &PdState| -> Vec<u32> { st.streams[&id].ranges.iter().map(|r| r.index).collect() };
    let trim = |st: &mut PdState, o| {
        st.apply(&Command::TrimStream {
            stream_id: id,
            start_offset: o,
        })
        .0
    };
    assert!(trim(&mut st, 99).is_ok());
    assert_eq!(indexes(&st), vec![0, 1, 2]);
    assert_eq!(st.range_verdict(id, 0), RangeVerdict::TrimTo(99));
    assert!(trim(&mut st, 100).is_ok());
    assert_eq!(indexes(&st), vec![1, 2]);
    assert_eq!(st.range_verdict(id, 0), RangeVerdict::Retire);
    assert_eq!(st.range_verdict(id, 1), RangeVerdict::Keep);
    assert!(trim(&mut st, 250).is_ok());
    assert_eq!(indexes(&st), vec![2]);
    assert_eq!(st.range_verdict(id, 1), RangeVerdict::Retire);
    assert_eq!(st.range_verdict(id, 2), RangeVerdict::TrimTo(250));
    // The open range is never retired, and the next range continues the numbering.
    seal(&mut st, id, e, 2, 300).ok();
    assert!(trim(&mut st, 300).is_ok());
    assert_eq!(indexes(&st), vec![2]);
    assert_eq!(st.range_verdict(id, 2), RangeVerdict::Retire);
    assert!(matches!(
        create_range(&mut st, id, e, 300, &servers),
        Ok(Response::Range(ref r)) if r.index == 3
    ));
    // Ranges PD never had, of streams it never had, are retired too.
    assert_eq!(st.range_verdict(id, 9), RangeVerdict::Retire);
    assert_eq!(st.range_verdict(12345, 0), RangeVerdict::Retire);
}

#[test]
fn dead_nodes_are_forgotten_only_when_nothing_names_them() {
    let (mut st, servers, id, _) = writing_first_range();
    let broker = reg(&mut st, Kind::Broker);
    let spare = reg(&mut st, Kind::RangeServer);
    let all_dead = |_| true;
    // The range names every server but the spare; no partition names the broker.
    assert_eq!(st.forgettable_nodes(all_dead), vec![broker, spare]);
    assert!(matches!(
        st.apply(&Command::ForgetNode {
            node_id: servers[0]
        })
        .0,
        Err(StateError::InvalidArgument(_))
    ));
    let (r, ev) = st.apply(&Command::ForgetNode { node_id: spare });
    assert!(matches!(r, Ok(Response::Node(ref n)) if n.id == spare));
    assert_eq!(ev, vec![Event::NodeChanged(spare)]);
    assert!(!st.nodes.contains_key(&spare));
    assert!(matches!(
        st.apply(&Command::ForgetNode { node_id: spare }).0,
        Err(StateError::NotFound(_))
    ));
    // Once its stream is gone, a server is free to forget; a forgotten node that comes back
    // registers again under its old id.
    assert!(st.apply(&Command::DeleteStream { stream_id: id }).0.is_ok());
    assert_eq!(st.forgettable_nodes(|n| n == servers[0]), vec![servers[0]]);
    let (r, _) = st.apply(&Command::RegisterNode {
        kind: Kind::RangeServer,
        node_id: Some(spare),
        addr: "back".into(),
        http_addr: "h".into(),
    });
    assert!(matches!(r, Ok(Response::Node(ref n)) if n.id == spare));
}

#[test]
fn trim_moves_forward_and_delete_forgets() {
    let (mut st, servers, id, e) = writing_first_range();
    seal(&mut st, id, e, 0, 100).ok();
    let t = |st: &mut PdState, o| {
        st.apply(&Command::TrimStream {
            stream_id: id,
            start_offset: o,
        })
        .0
    };
    assert!(matches!(t(&mut st, 50), Ok(Response::Stream(ref s)) if s.start_offset == 50));
    assert!(matches!(t(&mut st, 10), Ok(Response::Stream(ref s)) if s.start_offset == 50));
    assert!(matches!(
        t(&mut st, 101),
        Err(StateError::InvalidArgument(_))
    ));
    let (r, ev) = st.apply(&Command::DeleteStream { stream_id: id });
    assert!(matches!(r, Ok(Response::Stream(ref s)) if s.deleted));
    assert_eq!(ev, vec![Event::StreamChanged(id)]);
    assert!(matches!(st.stream(id), Err(StateError::NotFound(_))));
    assert!(!st.streams.contains_key(&id));
    assert_eq!(st.range_verdict(id, 0), RangeVerdict::Retire);
    assert!(matches!(
        st.apply(&Command::OpenStream {
            stream_id: id,
            min_epoch: 0
        })
        .0,
        Err(StateError::NotFound(_))
    ));
    assert!(matches!(
        create_range(&mut st, id, e, 100, &servers),
        Err(StateError::NotFound(_))
    ));
    assert!(matches!(
        st.apply(&Command::DeleteStream { stream_id: 999 }).0,
        Err(StateError::NotFound(_))
    ));
}

#[test]
fn allocator_hands_out_disjoint_blocks() {
    let mut st = PdState::default();
    let alloc = |st: &mut PdState, key: &str, count| {
        st.apply(&Command::AllocateIds {
            key: key.into(),
            count,
        })
        .0
    };
    assert_eq!(alloc(&mut st, "a", 10), Ok(Response::FirstId(1)));
    assert_eq!(alloc(&mut st, "a", 5), Ok(Response::FirstId(11)));
    assert_eq!(alloc(&mut st, "b", 1), Ok(Response::FirstId(1)));
    assert!(alloc(&mut st, "a", 0).is_err());
    assert!(alloc(&mut st, "a", u64::MAX).is_err());
    assert_eq!(alloc(&mut st, "a", 1), Ok(Response::FirstId(16)));
}

/// Offload goes, range by range, to the range's owner while it is alive and holds what is
/// to be uploaded; a sealed range to a replica that holds all of it; else the first alive.
#[test]
fn offload_is_assigned_to_a_live_replica_that_holds_the_range() {
    let mut st = PdState::default();
    for _ in 0..3 {
        reg(&mut st, Kind::RangeServer);
    }
    st.apply(&Command::CreateStream {
        replica: 3,
        ack_count: 2,
    })
    .0
    .unwrap();
    st.apply(&Command::OpenStream {
        stream_id: 1,
        min_epoch: 0,
    })
    .0
    .unwrap();
    st.apply(&Command::CreateRange {
        stream_id: 1,
        epoch: 1,
        start: 0,
        servers: vec![1, 2, 3],
    })
    .0
    .unwrap();
    let all_alive = |_| true;
    let task = |st: &PdState, node, index, alive: &dyn Fn(u64) -> bool, ends: [u64; 3]| {
        st.offload_task(node, (1, index), alive, |n| {
            ends.get(n as usize - 1).copied()
        })
        .map(|t| t.from)
    };
    // Open: the owner (node 1) offloads from the stream start, whatever it holds.
    assert_eq!(task(&st, 1, 0, &all_alive, [0, 5, 5]), Some(0));
    assert_eq!(task(&st, 2, 0, &all_alive, [0, 5, 5]), None);
    // Owner dead: the first live server.
    assert_eq!(task(&st, 2, 0, &|n| n != 1, [0, 5, 5]), Some(0));
    // Sealed at 10: the owner missed the tail (holds 7), node 2 holds it all.
    st.apply(&Command::SealRange {
        stream_id: 1,
        epoch: 1,
        index: 0,
        end: 10,
    })
    .0
    .unwrap();
    assert_eq!(task(&st, 1, 0, &all_alive, [7, 10, 10]), None);
    assert_eq!(task(&st, 2, 0, &all_alive, [7, 10, 10]), Some(0));
    // The task names the final end: the uploader reads up to it even if it never heard the
    // seal (its own readable end would stop at the confirmed offset it last heard).
    let sealed = st.offload_task(2, (1, 0), all_alive, |n| {
        [7, 10, 10].get(n as usize - 1).copied()
    });
    assert_eq!(sealed.and_then(|t| t.sealed_end), Some(10));
    // Nobody is known to hold it all: the first alive uploads what it has.
    assert_eq!(task(&st, 1, 0, &all_alive, [7, 8, 9]), Some(0));
    // Once the stream is offloaded past the range, nothing is left to do there.
    let id = match st
        .apply(&Command::PrepareObject {
            node_id: 2,
            at_ms: 0,
        })
        .0
    {
        Ok(Response::FirstId(id)) => id,
        other => panic!("{other:?}"),
    };
    st.apply(&Command::CommitObject {
        object_id: id,
        size: 1,
        slices: vec![crate::state::SliceSpec {
            stream_id: 1,
            start: 0,
            end: 10,
            bytes: 1,
        }],
    })
    .0
    .unwrap();
    assert_eq!(task(&st, 2, 0, &all_alive, [7, 10, 10]), None);
    assert_eq!(st.range_verdict(1, 0), RangeVerdict::Retire);
}

/// A range cannot be sealed below what object storage holds of it: replicas that dropped
/// offloaded data (or forgot an idle range) must not shorten the stream.
#[test]
fn a_range_is_not_sealed_below_its_offloaded_end() {
    let mut st = PdState::default();
    reg(&mut st, Kind::RangeServer);
    let id = stream(&mut st, 1, 1);
    st.apply(&Command::OpenStream {
        stream_id: id,
        min_epoch: 0,
    })
    .0
    .unwrap();
    st.apply(&Command::CreateRange {
        stream_id: id,
        epoch: 1,
        start: 0,
        servers: vec![1],
    })
    .0
    .unwrap();
    let object = match st
        .apply(&Command::PrepareObject {
            node_id: 1,
            at_ms: 0,
        })
        .0
    {
        Ok(Response::FirstId(object)) => object,
        other => panic!("{other:?}"),
    };
    st.apply(&Command::CommitObject {
        object_id: object,
        size: 1,
        slices: vec![crate::state::SliceSpec {
            stream_id: id,
            start: 0,
            end: 5,
            bytes: 1,
        }],
    })
    .0
    .unwrap();
    let seal = |st: &mut PdState, end| {
        st.apply(&Command::SealRange {
            stream_id: id,
            epoch: 1,
            index: 0,
            end,
        })
        .0
    };
    assert!(matches!(
        seal(&mut st, 0),
        Err(StateError::InvalidArgument(_))
    ));
    assert!(matches!(
        seal(&mut st, 4),
        Err(StateError::InvalidArgument(_))
    ));
    assert!(seal(&mut st, 5).is_ok());
}

/// A draining range server gets no new ranges, and it is still needed by its open ranges and
/// by sealed ones that no other server holds through their end and no object covers.
#[test]
fn a_draining_range_server_gets_no_ranges_and_says_what_still_needs_it() {
    let (mut st, s) = setup(4);
    let all = |_: u64| true;
    let a = stream(&mut st, 3, 2);
    let ea = open(&mut st, a, 0);
    create_range(&mut st, a, ea, 0, &[s[0], s[1], s[2]]).ok();
    let drain = |st: &mut PdState, node_id, draining| {
        let r = st.apply(&Command::SetDraining { node_id, draining }).0;
        assert!(
            matches!(r, Ok(Response::Node(ref n)) if n.draining == draining),
            "{r:?}"
        );
    };
    drain(&mut st, s[0], true);
    let nobody = |_: u64, _: (u64, u32), _: u64| false;
    let everybody = |_: u64, _: (u64, u32), _: u64| true;
    // Its open range needs it, whoever else holds what.
    assert_eq!(st.ranges_needing(s[0], everybody), 1);
    assert_eq!(st.ranges_needing(s[3], nobody), 0);
    // The next range goes elsewhere.
    seal(&mut st, a, ea, 0, 10).ok();
    let next = st.choose_servers(a, &[], all).unwrap_or_default();
    assert!(!next.contains(&s[0]), "{next:?}");
    assert_eq!(next.len(), 3);
    create_range(&mut st, a, ea, 10, &next).ok();
    // Sealed: needed until another server holds all of it (or an object does).
    assert_eq!(st.ranges_needing(s[0], nobody), 1);
    let s1_holds = |o: u64, r: (u64, u32), end: u64| o == s[1] && r == (a, 0) && end == 10;
    assert_eq!(st.ranges_needing(s[0], s1_holds), 0);
    let object = match st
        .apply(&Command::PrepareObject {
            node_id: s[1],
            at_ms: 0,
        })
        .0
    {
        Ok(Response::FirstId(object)) => object,
        other => panic!("{other:?}"),
    };
    let committed = st.apply(&Command::CommitObject {
        object_id: object,
        size: 1,
        slices: vec![crate::state::SliceSpec {
            stream_id: a,
            start: 0,
            end: 10,
            bytes: 1,
        }],
    });
    assert!(committed.0.is_ok(), "{committed:?}");
    assert_eq!(st.ranges_needing(s[0], nobody), 0);
    // Undrained, it takes ranges again.
    drain(&mut st, s[0], false);
    let b = stream(&mut st, 3, 2);
    assert!(st
        .choose_servers(b, &[], all)
        .unwrap_or_default()
        .contains(&s[0]));
}

/// A batch applies its commands in order, each with its own result: a refused one changes
/// nothing and does not stop the rest; a batch inside a batch is refused.
#[test]
fn a_batch_applies_each_command_on_its_own() {
    let mut st = PdState::default();
    let (r, events) = st.apply(&Command::Batch(vec![
        Command::RegisterNode {
            kind: Kind::RangeServer,
            node_id: None,
            addr: "127.0.0.1:7101".into(),
            http_addr: "h".into(),
        },
        Command::SetDraining {
            node_id: 99,
            draining: true,
        },
        Command::Batch(vec![]),
        Command::CreateStream {
            replica: 1,
            ack_count: 1,
        },
    ]));
    let Ok(Response::Batch(results)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(results.len(), 4);
    assert!(matches!(results[0], Ok(Response::Node(ref n)) if n.id == 1));
    assert!(matches!(results[1], Err(StateError::NotFound(_))));
    assert!(matches!(results[2], Err(StateError::InvalidArgument(_))));
    assert!(matches!(results[3], Ok(Response::Stream(_))));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(st.nodes.len(), 1);
    assert_eq!(st.streams.len(), 1);
}
