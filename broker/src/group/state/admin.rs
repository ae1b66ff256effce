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

    /// Every live group, sorted by id.
    pub fn list(&self) -> Vec<ListedGroup> {
        let mut out: Vec<_> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        out.sort();
        out
    }

    pub fn delete_groups(&mut self, group_ids: &[String], callback: DeleteCallback) {
        let mut results = Vec::with_capacity(group_ids.len());
        let mut records = Vec::new();
        for id in group_ids {
            let result = match self.groups.get(id).map(|g| g.state) {
                None | Some(GroupState::Dead) => Err(E::GroupIdNotFound),
                Some(GroupState::Empty) => {
                    if let Some(group) = self.groups.remove(id) {
                        records.extend(tombstones(&group));
                    }
                    tracing::info!(group = %id, "group deleted");
                    Ok(())
                }
                Some(_) => Err(E::NonEmptyGroup),
            };
            results.push(DeletedGroup {
                group_id: id.clone(),
                result,
            });
        }
        self.write(records, Some(Box::new(move |_, _| callback(results))));
    }
}
