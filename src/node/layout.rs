//! Where every server of a cluster sits: its partition, and the Paxos groups of each partition
//! (DESIGN.md "Atomic multicast": one group `g_p` per partition, plus `g_all` when there are
//! several).
//!
//! Invariants: group `p` (for `p < k`) holds exactly the replicas of partition `p`, all of them
//! acceptors; with `k > 1` the global group `k` holds every server as a learner and
//! `global_acceptors` as its acceptors; with `k == 1` there is one group, 0, holding every server,
//! and no command is multi-partition.

use std::collections::BTreeMap;

use crate::multicast::{GroupId, GroupSpec, NodeId};
use crate::ssmr::PartitionId;

/// The cluster's partitions and this server's place in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// This server.
    pub me: NodeId,
    /// `k`, at least 1.
    pub partitions: u32,
    /// Every server's partition.
    pub servers: BTreeMap<NodeId, PartitionId>,
    /// The acceptors of the global group (when `k > 1`), in id order.
    pub global_acceptors: Vec<NodeId>,
}

impl Layout {
    /// One server, one partition (node 1, as the standalone group's only member).
    pub fn standalone() -> Layout {
        Layout {
            me: 1,
            partitions: 1,
            servers: BTreeMap::from([(1, 0)]),
            global_acceptors: vec![1],
        }
    }

    /// The servers `ids` split into `partitions` runs of consecutive ids (the configuration has
    /// checked that the count divides evenly), with the default global acceptors.
    pub fn new(me: NodeId, ids: &[NodeId], partitions: u32) -> Layout {
        let ids: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
        let servers = super::cluster::partition_layout(&ids, partitions)
            .into_iter()
            .map(|(id, p)| (id as NodeId, p))
            .collect();
        let mut layout = Layout {
            me,
            partitions: partitions.max(1),
            servers,
            global_acceptors: Vec::new(),
        };
        layout.global_acceptors = layout.default_global_acceptors();
        layout
    }

    /// This layout with `acceptors` (servers of it, checked by the configuration) as the global
    /// group's acceptors.
    pub fn with_global_acceptors(mut self, acceptors: &[NodeId]) -> Layout {
        self.global_acceptors = acceptors.to_vec();
        self.global_acceptors.sort_unstable();
        self
    }

    /// 2f+1 acceptors for the global group, where f is what a partition of r replicas tolerates
    /// but at least 1 (paper section 6: three acceptors per ring), capped at the server count.
    /// They are taken round-robin over the partitions (the first replica of each, then the
    /// second...), so the voting load is spread over the partitions.
    pub fn default_global_acceptors(&self) -> Vec<NodeId> {
        let k = self.partitions.max(1);
        let replicas: Vec<Vec<NodeId>> = (0..k).map(|p| self.replicas(p)).collect();
        let r = replicas.iter().map(Vec::len).max().unwrap_or(1);
        let f = (r.saturating_sub(1) / 2).max(1);
        let count = (2 * f + 1).min(self.servers.len());
        let mut acceptors: Vec<NodeId> = (0..r)
            .flat_map(|j| replicas.iter().filter_map(move |rs| rs.get(j).copied()))
            .take(count)
            .collect();
        acceptors.sort_unstable();
        acceptors
    }

    /// This server's partition.
    pub fn partition(&self) -> PartitionId {
        self.partition_of(self.me).unwrap_or(0)
    }

    /// The partition `server` replicates.
    pub fn partition_of(&self, server: NodeId) -> Option<PartitionId> {
        self.servers.get(&server).copied()
    }

    /// The replicas of partition `p`, in id order.
    pub fn replicas(&self, p: PartitionId) -> Vec<NodeId> {
        self.servers
            .iter()
            .filter(|(_, q)| **q == p)
            .map(|(s, _)| *s)
            .collect()
    }

    /// The group multi-partition commands are ordered in (`g_all`); group 0 when `k == 1`.
    pub fn global_group(&self) -> GroupId {
        if self.partitions > 1 {
            self.partitions
        } else {
            0
        }
    }

    /// The group a command with destination `dest` (sorted, non-empty) is ordered in.
    pub fn group_for(&self, dest: &[PartitionId]) -> GroupId {
        match dest {
            [p] => *p,
            _ => self.global_group(),
        }
    }

    /// The groups this server belongs to, in merge order: its partition's, then the global one.
    pub fn groups(&self) -> Vec<GroupSpec> {
        let p = self.partition();
        let mut groups = vec![GroupSpec::all_acceptors(p, self.replicas(p))];
        if self.partitions > 1 {
            groups.push(GroupSpec {
                group: self.global_group(),
                members: self.servers.keys().copied().collect(),
                acceptors: self.global_acceptors.clone(),
            });
        }
        groups
    }

    /// Whether this server orders commands of `group` itself (is one of its members).
    pub fn is_member(&self, group: GroupId) -> bool {
        group == self.partition() || group == self.global_group()
    }

    /// The members of `group`.
    pub fn members(&self, group: GroupId) -> Vec<NodeId> {
        if group == self.global_group() {
            self.servers.keys().copied().collect()
        } else {
            self.replicas(group)
        }
    }

    /// Every server except this one.
    pub fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.servers.keys().copied().filter(|s| *s != self.me)
    }

    /// True when `server` replicates this server's partition.
    pub fn same_partition(&self, server: NodeId) -> bool {
        self.partition_of(server) == Some(self.partition())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_three() {
        let l = Layout::new(4, &[6, 5, 4, 3, 2, 1], 2);
        assert_eq!(l.partition(), 1);
        assert_eq!(l.replicas(0), vec![1, 2, 3]);
        assert_eq!(l.global_group(), 2);
        assert_eq!(l.group_for(&[0]), 0);
        assert_eq!(l.group_for(&[0, 1]), 2);
        let g = l.groups();
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].group, g[0].members.clone()), (1, vec![4, 5, 6]));
        assert_eq!(g[0].acceptors, vec![4, 5, 6]);
        assert_eq!(g[1].members, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            g[1].acceptors,
            vec![1, 2, 4],
            "round-robin over the partitions"
        );
        let chosen = l.clone().with_global_acceptors(&[6, 3, 5]).groups();
        assert_eq!(chosen[1].acceptors, vec![3, 5, 6]);
        assert!(l.is_member(1) && l.is_member(2) && !l.is_member(0));
        assert!(l.same_partition(6) && !l.same_partition(3));
        let one = Layout::new(2, &[1, 2, 3], 1);
        assert_eq!(one.groups()[0].acceptors, vec![1, 2, 3]);
        assert_eq!(one.groups().len(), 1);
        assert_eq!(one.global_group(), 0);
        assert_eq!(one.group_for(&[0]), 0);
    }

    #[test]
    fn default_global_acceptors_are_2f_plus_1_spread_over_partitions() {
        let acceptors = |n: u32, k| {
            let ids: Vec<NodeId> = (1..=n).collect();
            Layout::new(1, &ids, k).global_acceptors
        };
        assert_eq!(acceptors(8, 8), vec![1, 2, 3], "one per partition, f = 1");
        assert_eq!(acceptors(4, 4), vec![1, 2, 3]);
        assert_eq!(acceptors(2, 2), vec![1, 2], "capped at the servers");
        assert_eq!(
            acceptors(4, 2),
            vec![1, 2, 3],
            "r = 2 tolerates no failure; f = 1"
        );
        assert_eq!(acceptors(10, 2), vec![1, 2, 3, 6, 7], "r = 5: f = 2");
        assert_eq!(
            acceptors(9, 3),
            vec![1, 4, 7],
            "r = 3: the first replica of each"
        );
    }
}
