//! Atomic multicast built from Paxos groups: the consensus core, with no I/O.
//!
//! Each group is a sequence of consensus instances; every decided instance holds a [`Batch`] of
//! opaque commands (an empty batch is a skip). The roles are pure state machines:
//!
//! - [`Acceptor`]: Phase 1b and 2b. Votes it casts come out as [`VoteWrite`]s to persist and the
//!   replies that reflect them come out in [`Outputs::send_after_persist`].
//! - [`Coordinator`]: the group's leader with a ballot `(round, node)`. It runs Phase 1 once for every
//!   open instance, then Phase 2 per batch, closing batches on size, on a tick timeout or when the
//!   pipeline is idle, with several instances in flight, and proposing skips when idle.
//! - [`Learner`]: collects decisions, delivers each group in instance order and merges several groups
//!   round-robin, `M` instances at a time.
//!
//! Inputs are messages (`step`), logical ticks (`tick`) and proposals (`propose`); the wall clock
//! reaches the coordinator only as a number passed in. Every call returns [`Outputs`], which the
//! driver handles in this order: persist `persist` with one synced write ([`VoteStore::write`]),
//! then send `send_after_persist`; `send` may go at once; `decided` goes to the local learner.
//! Durable state is read through the [`VoteStore`] trait; `src/node/` drives it with tokio and RocksDB.
//!
//! - [`Member`]: what one server runs in its groups: the three roles above plus heartbeats, leader
//!   election, forwarding to the leader, learner catch-up and trimming.

mod acceptor;
mod batch;
mod coordinator;
mod learner;
mod mem;
mod member;
mod msg;
#[cfg(test)]
mod sim_member;
#[cfg(test)]
mod sim_test;
mod wire;

use std::collections::BTreeMap;

pub use acceptor::Acceptor;
pub use batch::Batch;
pub use coordinator::{Coordinator, CoordinatorConfig, CoordinatorOptions};
pub use learner::{Delivery, Learner};
pub use mem::MemVoteStore;
pub use member::{GroupSpec, Member, MemberConfig, MemberOptions};
pub use msg::{Envelope, PaxosMsg};
pub use storage::StoreError;

/// Identifies a Paxos group (one per partition, plus the global group).
pub type GroupId = u32;
/// A consensus instance number within one group. Instances start at 1.
pub type Instance = u64;
/// Identifies a process that plays Paxos roles.
pub type NodeId = u32;

/// A Paxos ballot. Ballots are ordered by round, then by node id, so two coordinators never
/// share one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    /// Increases each time a coordinator (re)starts Phase 1.
    pub round: u64,
    /// The coordinator that owns the ballot.
    pub node: NodeId,
}

impl Ballot {
    /// Lower than every ballot a coordinator uses (coordinators start at round 1).
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };
    /// Bytes in [`Ballot::to_bytes`].
    pub const ENCODED_LEN: usize = 12;

    /// A ballot.
    pub fn new(round: u64, node: NodeId) -> Ballot {
        Ballot { round, node }
    }

    /// Fixed-size big-endian encoding (round, node).
    pub fn to_bytes(self) -> [u8; Ballot::ENCODED_LEN] {
        let mut b = [0u8; Ballot::ENCODED_LEN];
        b[..8].copy_from_slice(&self.round.to_be_bytes());
        b[8..].copy_from_slice(&self.node.to_be_bytes());
        b
    }

    /// Decodes [`Ballot::to_bytes`]; `None` unless `b` holds exactly 12 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Ballot> {
        if b.len() != Ballot::ENCODED_LEN {
            return None;
        }
        let round = u64::from_be_bytes(b[..8].try_into().ok()?);
        let node = u32::from_be_bytes(b[8..].try_into().ok()?);
        Some(Ballot { round, node })
    }
}

/// One durable change an acceptor needs before it may answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteWrite {
    /// The acceptor promised not to accept ballots below `ballot` in `group`.
    Promise { group: GroupId, ballot: Ballot },
    /// The acceptor accepted `value` at `ballot` in `instance`.
    Accept {
        group: GroupId,
        instance: Instance,
        ballot: Ballot,
        value: Batch,
    },
    /// Instances below `below` are forgotten (every replica has checkpointed them).
    Trim { group: GroupId, below: Instance },
}

/// An acceptor's durable state for one group, as [`VoteStore::load`] returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptorState {
    /// The highest ballot promised (or accepted) so far.
    pub promised: Ballot,
    /// Instances below `low` were trimmed.
    pub low: Instance,
    /// Accepted ballot and value per instance, for instances >= `low`.
    pub accepted: BTreeMap<Instance, (Ballot, Batch)>,
}

/// Durable storage for acceptor votes.
///
/// Errors mean the votes may not be durable: the acceptor must stop answering (fail-stop); the
/// driver ends the group and the process restarts from what the store holds.
pub trait VoteStore {
    /// The acceptor state of `group` (default state if nothing was stored).
    fn load(&self, group: GroupId) -> Result<AcceptorState, StoreError>;
    /// Persists every write in order with one synced write (one fsync); atomic.
    fn write(&mut self, votes: &[VoteWrite]) -> Result<(), StoreError>;
}

/// A decided instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub group: GroupId,
    pub instance: Instance,
    /// The ballot at which a quorum accepted `value`.
    pub ballot: Ballot,
    pub value: Batch,
}

/// What one input produced; handled by the driver in the order documented on the module.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Messages that reflect no new vote: send now.
    pub send: Vec<Envelope>,
    /// Votes to persist with one synced write before sending `send_after_persist`.
    pub persist: Vec<VoteWrite>,
    /// Messages that reflect votes in `persist` (or in an earlier, possibly unfinished write):
    /// send only after every vote produced so far is durable.
    pub send_after_persist: Vec<Envelope>,
    /// Instances this node learned as decided (for the local learner).
    pub decided: Vec<Decision>,
    /// Instances in merged delivery order ([`Member`] only): hand them to the replica once every
    /// vote produced so far is durable.
    pub delivered: Vec<Delivery>,
    /// True when some of `delivered` needed a vote in `persist` ([`Member`] only); otherwise
    /// they may be handed over before `persist` is durable.
    pub delivered_wait: bool,
    /// Changes of the believed leader of a group ([`Member`] only). Commands forwarded to the
    /// previous leader and not yet delivered may be lost.
    pub leader_changes: Vec<(GroupId, Option<NodeId>)>,
    /// Groups whose missing decisions other members have trimmed ([`Member`] only): the replica
    /// must install a checkpoint from the named member (state transfer).
    pub state_needed: Vec<(GroupId, NodeId)>,
}

impl Outputs {
    /// Appends `other` after `self`, keeping order within each field.
    pub fn extend(&mut self, other: Outputs) {
        self.send.extend(other.send);
        self.persist.extend(other.persist);
        self.send_after_persist.extend(other.send_after_persist);
        self.decided.extend(other.decided);
        self.delivered.extend(other.delivered);
        self.delivered_wait |= other.delivered_wait;
        self.leader_changes.extend(other.leader_changes);
        self.state_needed.extend(other.state_needed);
    }

    /// True when nothing needs doing.
    pub fn is_empty(&self) -> bool {
        self.send.is_empty()
            && self.persist.is_empty()
            && self.send_after_persist.is_empty()
            && self.decided.is_empty()
            && self.delivered.is_empty()
            && self.leader_changes.is_empty()
            && self.state_needed.is_empty()
    }
}

/// Errors of the multicast layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The vote store failed.
    #[error("vote store: {0}")]
    Store(#[from] StoreError),
    /// Bytes that should hold a batch do not.
    #[error("malformed batch: {0}")]
    MalformedBatch(&'static str),
    /// Bytes that should hold a [`PaxosMsg`] do not.
    #[error("malformed message: {0}")]
    MalformedMessage(&'static str),
    /// Options whose values contradict each other.
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),
    /// A learner position that no round-robin merge can reach.
    #[error("invalid learner position: {0}")]
    InvalidPosition(&'static str),
}
