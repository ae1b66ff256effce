//! Raw partition-reassignment requests: AlterPartitionReassignments,
//! ListPartitionReassignments and ElectLeaders, for the elasticity tests and `elastic-bench`.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest,
};

use super::{topic_name, RawClient};

/// AlterPartitionReassignments of one partition at `version` (`replicas` None: cancel).
/// Answers (top-level error code, the partition's error code, its error message).
pub fn raw_reassign(
    c: &mut RawClient,
    version: i16,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<(i16, i16, String), String> {
    let mut req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    replicas.map(|r| r.into_iter().map(BrokerId).collect()),
                )])]);
    if version >= 1 {
        req = req.with_allow_replication_factor_change(allow_rf_change);
    }
    let resp = c.call(&req, version)?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("AlterPartitionReassignments: no partition in the answer")?;
    Ok((
        resp.error_code,
        p.error_code,
        p.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    ))
}

/// A reassignment in flight as ListPartitionReassignments shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// ListPartitionReassignments (v0): every move in flight, or only that of `only`.
pub fn raw_list_reassignments(
    c: &mut RawClient,
    only: Option<(&str, i32)>,
) -> Result<Vec<InFlight>, String> {
    let mut req = ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000);
    if let Some((topic, p)) = only {
        req = req.with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![p])]));
    }
    let resp = c.call(&req, 0)?;
    if resp.error_code != 0 {
        return Err(format!(
            "ListPartitionReassignments: error {}",
            resp.error_code
        ));
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| InFlight {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                replicas: ids(&p.replicas),
                adding: ids(&p.adding_replicas),
                removing: ids(&p.removing_replicas),
            })
        })
        .collect())
}

/// One ElectLeaders result: (topic, partition, error code).
pub type Election = (String, i32, i16);

/// ElectLeaders at `version` of `election_type` (0 preferred, 1 unclean) for `partitions`
/// (None: all). Answers the top-level error code (0 before v1) and (topic, partition, error
/// code) of each result.
pub fn raw_elect_leaders(
    c: &mut RawClient,
    version: i16,
    election_type: i8,
    partitions: Option<&[(&str, Vec<i32>)]>,
) -> Result<(i16, Vec<Election>), String> {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::ElectLeadersRequest;
    let req = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(10_000)
        .with_topic_partitions(partitions.map(|ps| {
            ps.iter()
                .map(|(t, p)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(p.clone())
                })
                .collect()
        }));
    let resp = c.call(&req, version)?;
    let results = resp
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(move |p| (t.topic.0.to_string(), p.partition_id, p.error_code))
        })
        .collect();
    Ok((resp.error_code, results))
}
