//! Unit tests of the topic rules: Kafka names, counts and configs, leaders from the command,
//! plans that change nothing, deletion, growing partitions, config changes and the cluster id.

use protocol::pd::Event;

use super::*;
use crate::state::Command;

fn spec(name: &str, partitions: u32) -> TopicSpec {
    let mut id = [7u8; 16];
    id[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
    TopicSpec {
        name: name.into(),
        id,
        partitions,
        configs: vec![],
        replica: 3,
        ack_count: 2,
        internal: false,
        leaders: vec![],
    }
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

fn create(st: &mut PdState, spec: TopicSpec) -> Result<TopicRecord, StateError> {
    match st.apply(&Command::CreateTopic(spec)).0? {
        Response::Topic(t) => Ok(t),
        other => panic!("{other:?}"),
    }
}

fn invalid<T: std::fmt::Debug>(r: Result<T, StateError>) -> bool {
    matches!(r, Err(StateError::InvalidArgument(_)))
}

#[test]
fn topic_names_follow_kafka_rules() {
    for ok in ["a", "A-b_c.9", "..a", "...", &"x".repeat(249)] {
        assert!(validate_topic_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        ".",
        "..",
        "a b",
        "a/b",
        "é",
        "a\0",
        "a:b",
        &"x".repeat(250),
    ] {
        assert!(invalid(validate_topic_name(bad)), "{bad:?}");
    }
    let mut st = PdState::default();
    assert!(invalid(create(&mut st, spec("bad name", 1))));
    assert!(st.topics.is_empty() && st.streams.is_empty());
}

#[test]
fn create_checks_counts_replication_configs_and_duplicates() {
    let mut st = PdState::default();
    assert!(invalid(create(&mut st, spec("t", 0))));
    assert!(invalid(create(&mut st, spec("t", MAX_PARTITIONS + 1))));
    assert!(invalid(create(
        &mut st,
        TopicSpec {
            ack_count: 4,
            ..spec("t", 1)
        }
    )));
    assert!(invalid(create(
        &mut st,
        TopicSpec {
            replica: 0,
            ..spec("t", 1)
        }
    )));
    assert!(invalid(create(
        &mut st,
        TopicSpec {
            configs: vec![kv("a", "1"), kv("a", "2")],
            ..spec("t", 1)
        }
    )));
    assert!(invalid(create(
        &mut st,
        TopicSpec {
            configs: vec![kv("", "1")],
            ..spec("t", 1)
        }
    )));
    assert_eq!(st, PdState::default());

    let t = create(
        &mut st,
        TopicSpec {
            configs: vec![kv("retention.ms", "1000"), kv("cleanup.policy", "compact")],
            ..spec("t", 3)
        },
    )
    .expect("created");
    // Configs sorted by key; streams two per partition, in order, with the topic's replication.
    assert_eq!(
        t.configs,
        vec![kv("cleanup.policy", "compact"), kv("retention.ms", "1000")]
    );
    let ids: Vec<(u64, u64)> = t
        .partitions
        .iter()
        .map(|p| (p.data_stream, p.meta_stream))
        .collect();
    assert_eq!(ids, vec![(1, 2), (3, 4), (5, 6)]);
    for id in 1..=6 {
        let s = st.stream(id).expect("stream");
        assert_eq!((s.replica, s.ack_count, s.epoch), (3, 2, 0));
    }
    assert_eq!(st.next_stream_id, 7);
    assert!(t
        .partitions
        .iter()
        .all(|p| p.leader.is_none() && p.leader_epoch == 0));

    // Name taken; id taken.
    assert!(matches!(
        create(&mut st, spec("t", 1)),
        Err(StateError::AlreadyExists(_))
    ));
    assert!(matches!(
        create(
            &mut st,
            TopicSpec {
                id: t.id,
                ..spec("u", 1)
            }
        ),
        Err(StateError::AlreadyExists(_))
    ));
    // Event.
    let (_, ev) = st.apply(&Command::CreateTopic(spec("v", 1)));
    assert_eq!(ev, vec![Event::TopicChanged("v".into())]);
    // Max partition count is accepted.
    assert_eq!(
        create(&mut st, spec("big", MAX_PARTITIONS))
            .map(|t| t.partitions.len())
            .ok(),
        Some(MAX_PARTITIONS as usize)
    );
}

#[test]
fn leaders_in_the_command_are_kept_only_for_registered_brokers() {
    let mut st = PdState::default();
    let reg = |st: &mut PdState, kind, addr: &str| match st
        .apply(&Command::RegisterNode {
            kind,
            node_id: None,
            addr: addr.into(),
            http_addr: String::new(),
        })
        .0
    {
        Ok(Response::Node(n)) => n.id,
        other => panic!("{other:?}"),
    };
    let b = reg(&mut st, Kind::Broker, "b");
    let rs = reg(&mut st, Kind::RangeServer, "r");
    let t = create(
        &mut st,
        TopicSpec {
            leaders: vec![Some(b), Some(rs), Some(99)],
            ..spec("t", 4)
        },
    )
    .expect("created");
    let leaders: Vec<Option<u64>> = t.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders, vec![Some(b), None, None, None]);
}

#[test]
fn plans_change_nothing() {
    let mut st = PdState::default();
    create(&mut st, spec("t", 2)).expect("created");
    let before = st.clone();
    let planned = st.plan_create_topic(&spec("u", 2)).expect("valid");
    assert_eq!(planned.partitions[0].data_stream, 5);
    assert!(matches!(
        st.plan_create_topic(&spec("t", 2)),
        Err(StateError::AlreadyExists(_))
    ));
    assert!(invalid(st.plan_create_topic(&spec("u", 0))));
    assert_eq!(
        st.plan_create_partitions("t", 5, &[])
            .map(|t| t.partitions.len())
            .ok(),
        Some(5)
    );
    assert!(st
        .plan_alter_configs("t", &[kv("a", "b")], &[], false)
        .is_ok());
    assert_eq!(st, before);
}

#[test]
fn delete_removes_the_topic_and_forgets_its_streams() {
    let mut st = PdState::default();
    create(&mut st, spec("t", 2)).expect("created");
    create(&mut st, spec("keep", 1)).expect("created");
    let (r, ev) = st.apply(&Command::DeleteTopic { name: "t".into() });
    assert!(matches!(r, Ok(Response::Topic(ref t)) if t.name == "t"));
    assert_eq!(
        ev,
        vec![
            Event::TopicChanged("t".into()),
            Event::StreamChanged(1),
            Event::StreamChanged(2),
            Event::StreamChanged(3),
            Event::StreamChanged(4),
        ]
    );
    for id in 1..=4 {
        assert!(matches!(st.stream(id), Err(StateError::NotFound(_))));
        assert!(!st.streams.contains_key(&id));
    }
    assert!(st.stream(5).is_ok());
    assert!(matches!(st.topic("t"), Err(StateError::NotFound(_))));
    assert!(matches!(
        st.apply(&Command::DeleteTopic { name: "t".into() }).0,
        Err(StateError::NotFound(_))
    ));
    // The name can be used again, with new streams.
    let t = create(&mut st, spec("t", 1)).expect("re-created");
    assert_eq!(t.partitions[0].data_stream, 7);
}

#[test]
fn create_partitions_grows_only() {
    let mut st = PdState::default();
    create(&mut st, spec("t", 2)).expect("created");
    let grow = |st: &mut PdState, total| {
        st.apply(&Command::CreatePartitions {
            name: "t".into(),
            total,
            leaders: vec![],
        })
    };
    assert!(invalid(grow(&mut st, 2).0));
    assert!(invalid(grow(&mut st, 1).0));
    assert!(invalid(grow(&mut st, MAX_PARTITIONS + 1).0));
    assert!(matches!(
        st.apply(&Command::CreatePartitions {
            name: "nope".into(),
            total: 3,
            leaders: vec![]
        })
        .0,
        Err(StateError::NotFound(_))
    ));
    let (r, ev) = grow(&mut st, 4);
    let Ok(Response::Topic(t)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(ev, vec![Event::TopicChanged("t".into())]);
    let parts: Vec<(u32, u64, u64)> = t
        .partitions
        .iter()
        .map(|p| (p.index, p.data_stream, p.meta_stream))
        .collect();
    assert_eq!(parts, vec![(0, 1, 2), (1, 3, 4), (2, 5, 6), (3, 7, 8)]);
    assert!(st
        .stream(8)
        .is_ok_and(|s| s.replica == 3 && s.ack_count == 2));
    assert_eq!(st.topic("t").map(|t| t.partitions.len()).ok(), Some(4));
}

#[test]
fn alter_configs_merge_and_replace() {
    let mut st = PdState::default();
    create(
        &mut st,
        TopicSpec {
            configs: vec![kv("a", "1"), kv("b", "2")],
            ..spec("t", 1)
        },
    )
    .expect("created");
    let alter = |st: &mut PdState, set: Vec<(String, String)>, remove: Vec<&str>, all| match st
        .apply(&Command::AlterTopicConfigs {
            name: "t".into(),
            set,
            remove: remove.into_iter().map(String::from).collect(),
            replace_all: all,
        })
        .0
    {
        Ok(Response::Topic(t)) => Ok(t.configs),
        Err(e) => Err(e),
        Ok(other) => panic!("{other:?}"),
    };
    // Incremental: set merges, remove deletes (also a key just set), unknown removes ignored.
    assert_eq!(
        alter(
            &mut st,
            vec![kv("c", "3"), kv("a", "9")],
            vec!["b", "zz"],
            false
        ),
        Ok(vec![kv("a", "9"), kv("c", "3")])
    );
    assert_eq!(
        alter(&mut st, vec![kv("d", "4")], vec!["d"], false),
        Ok(vec![kv("a", "9"), kv("c", "3")])
    );
    // Replace all: set is the whole config.
    assert_eq!(
        alter(&mut st, vec![kv("z", "1"), kv("x", "2")], vec![], true),
        Ok(vec![kv("x", "2"), kv("z", "1")])
    );
    assert_eq!(alter(&mut st, vec![], vec![], true), Ok(vec![]));
    assert!(invalid(alter(
        &mut st,
        vec![kv("a", "1"), kv("a", "1")],
        vec![],
        false
    )));
    assert!(matches!(
        st.apply(&Command::AlterTopicConfigs {
            name: "nope".into(),
            set: vec![],
            remove: vec![],
            replace_all: true
        })
        .0,
        Err(StateError::NotFound(_))
    ));
}

#[test]
fn cluster_id_is_fixed_once() {
    let mut st = PdState::default();
    let set = |st: &mut PdState, id: &str| {
        st.apply(&Command::SetClusterId {
            cluster_id: id.into(),
        })
        .0
    };
    assert!(invalid(set(&mut st, "")));
    assert_eq!(
        set(&mut st, "first"),
        Ok(Response::ClusterId("first".into()))
    );
    assert_eq!(
        set(&mut st, "second"),
        Ok(Response::ClusterId("first".into()))
    );
    assert_eq!(st.cluster_id.as_deref(), Some("first"));
}
