//! DescribeGroups, ListGroups and DeleteGroups: whole-group views and removal. Only Empty
//! groups may be deleted; nothing here changes membership.

use kafka_protocol::error::ResponseError as E;

use super::replay::tombstones;
use super::*;

impl Groups {
    // ----- DescribeGroups / ListGroups / DeleteGroups -----

    pub fn describe(&self, group_id: &str) -> GroupSummary {
        match self.groups.get(group_id) {
            Some(g) => g.summary(),
            None => GroupSummary::dead(),
        }
    }

    /// `(group id, protocol type, state)` of every live group, sorted by id.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut out: Vec<_> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        out.sort();
        out
    }

    pub fn delete_groups(&mut self, group_ids: &[String], callback: DeleteCallback) {
        let mut results = Vec::with_capacity(group_ids.len());
        let mut records = Vec::new();
        for id in group_ids {
            let error = match self.groups.get(id).map(|g| g.state) {
                None | Some(GroupState::Dead) => code(E::GroupIdNotFound),
                Some(GroupState::Empty) => {
                    if let Some(group) = self.groups.remove(id) {
                        records.extend(tombstones(&group));
                    }
                    tracing::info!(group = %id, "group deleted");
                    0
                }
                Some(_) => code(E::NonEmptyGroup),
            };
            results.push((id.clone(), error));
        }
        self.write(records, Some(Box::new(move |_, _| callback(results))));
    }
}
