//! Where every server of a cluster sits: its partition, and the Paxos groups of each partition
//! (DESIGN.md "Atomic multicast": one group `g_p` per partition, plus `g_all` when there are
//! several).
//!
//! Invariants: group `p` (for `p < k`) holds exactly the replicas of partition `p`; with `k > 1`
//! the global group `k` holds every server; with `k == 1` there is one group, 0, holding every
//! server, and no command is multi-partition.

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
}

impl Layout {
    /// One server, one partition (node 1, as the standalone group's only member).
    pub fn standalone() -> Layout {
        Layout {
            me: 1,
            partitions: 1,
            servers: BTreeMap::from([(1, 0)]),
        }
    }

    /// The servers `ids` split into `partitions` runs of consecutive ids (the configuration has
    /// checked that the count divides evenly).
    pub fn new(me: NodeId, ids: &[NodeId], partitions: u32) -> Layout {
        let ids: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
        let servers = super::cluster::partition_layout(&ids, partitions)
            .into_iter()
            .map(|(id, p)| (id as NodeId, p))
            .collect();
        Layout {
            me,
            partitions: partitions.max(1),
            servers,
        }
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
        let mut groups = vec![GroupSpec {
            group: p,
            members: self.replicas(p),
        }];
        if self.partitions > 1 {
            groups.push(GroupSpec {
                group: self.global_group(),
                members: self.servers.keys().copied().collect(),
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
        assert_eq!(g[1].members, vec![1, 2, 3, 4, 5, 6]);
        assert!(l.is_member(1) && l.is_member(2) && !l.is_member(0));
        assert!(l.same_partition(6) && !l.same_partition(3));
        let one = Layout::new(2, &[1, 2, 3], 1);
        assert_eq!(one.groups().len(), 1);
        assert_eq!(one.global_group(), 0);
        assert_eq!(one.group_for(&[0]), 0);
    }
}
