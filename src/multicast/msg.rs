//! Messages between coordinators, acceptors and learners of a group.

use super::{Ballot, Batch, GroupId, Instance, NodeId};

/// A Paxos message. Every message names its group; a role ignores messages of other groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaxosMsg {
    /// Phase 1a, for every instance >= `from` at once.
    Prepare {
        group: GroupId,
        ballot: Ballot,
        from: Instance,
    },
    /// Phase 1b: the acceptor promised `ballot`; `accepted` lists its votes for instances >= the
    /// Prepare's `from` (and >= `low`), in instance order.
    Promise {
        group: GroupId,
        ballot: Ballot,
        low: Instance,
        accepted: Vec<(Instance, Ballot, Batch)>,
    },
    /// Phase 2a.
    Accept {
        group: GroupId,
        ballot: Ballot,
        instance: Instance,
        value: Batch,
    },
    /// Phase 2b.
    Accepted {
        group: GroupId,
        ballot: Ballot,
        instance: Instance,
    },
    /// The acceptor refused `ballot` because it promised the higher `promised`.
    Nack {
        group: GroupId,
        ballot: Ballot,
        promised: Ballot,
    },
    /// The coordinator learned that `instance` decided `value`.
    Decision {
        group: GroupId,
        instance: Instance,
        value: Batch,
    },
}

impl PaxosMsg {
    /// The group the message belongs to.
    pub fn group(&self) -> GroupId {
        match self {
            PaxosMsg::Prepare { group, .. }
            | PaxosMsg::Promise { group, .. }
            | PaxosMsg::Accept { group, .. }
            | PaxosMsg::Accepted { group, .. }
            | PaxosMsg::Nack { group, .. }
            | PaxosMsg::Decision { group, .. } => *group,
        }
    }
}

/// A message and its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub to: NodeId,
    pub msg: PaxosMsg,
}
