//! Messages between coordinators, acceptors and learners of a group.

use bytes::Bytes;

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
    /// `instance` decided `value`, accepted by a quorum at `ballot` (sent by the coordinator to
    /// every learner, and by any member answering [`PaxosMsg::CatchUp`]).
    Decision {
        group: GroupId,
        instance: Instance,
        ballot: Ballot,
        value: Batch,
    },
    /// A [`PaxosMsg::Decision`] without its value, sent by the coordinator to an acceptor that
    /// answered its Phase 2a for `instance` at `ballot`: that acceptor holds the value (a vote at
    /// `ballot`, or at a higher ballot, which carries the same value once it is chosen).
    Decided {
        group: GroupId,
        instance: Instance,
        ballot: Ballot,
    },
    /// Failure detection and leader discovery, sent by every member of a group to the others every
    /// heartbeat interval. `leading` is the sender's ballot while it coordinates the group.
    Heartbeat {
        group: GroupId,
        leading: Option<Ballot>,
        /// The sender delivered every instance below this one.
        delivered: Instance,
        /// The sender's replica checkpointed every instance below this one (acceptors trim below
        /// the lowest such mark of all members).
        checkpointed: Instance,
    },
    /// Commands a member hands to the group's coordinator for ordering.
    Forward {
        group: GroupId,
        commands: Vec<Bytes>,
    },
    /// A learner asks for the decisions of instances `from..` it has not learned.
    CatchUp { group: GroupId, from: Instance },
    /// The answer to a [`PaxosMsg::CatchUp`] for instances the sender's acceptor has trimmed:
    /// it keeps only `low..`, so the learner needs a checkpoint at `low - 1` or later.
    Trimmed { group: GroupId, low: Instance },
    /// A learner's merge waits for an instance of `group` stamped at `until_ms` or later: sent to
    /// the group's coordinator, which decides a skip if it has proposed nothing that late.
    SkipNeeded { group: GroupId, until_ms: u64 },
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
            | PaxosMsg::Decision { group, .. }
            | PaxosMsg::Decided { group, .. }
            | PaxosMsg::Heartbeat { group, .. }
            | PaxosMsg::Forward { group, .. }
            | PaxosMsg::CatchUp { group, .. }
            | PaxosMsg::Trimmed { group, .. }
            | PaxosMsg::SkipNeeded { group, .. } => *group,
        }
    }

    /// Phase 1 or Phase 2 traffic between a coordinator and an acceptor: both ends must be
    /// acceptors of the group.
    pub fn is_vote(&self) -> bool {
        matches!(
            self,
            PaxosMsg::Prepare { .. }
                | PaxosMsg::Promise { .. }
                | PaxosMsg::Accept { .. }
                | PaxosMsg::Accepted { .. }
        )
    }
}

/// A message and its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub to: NodeId,
    pub msg: PaxosMsg,
}
