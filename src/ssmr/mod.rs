//! The S-SMR engine: executes atomically multicast commands on one partition of a partitioned
//! service, with execution atomicity, Lamport zxids and state prefetching (paper section 4).
//!
//! The service state is split into partitions; each replica of a partition runs one
//! [`Executor`], a pure state machine with no I/O. The layer below (atomic multicast) hands it
//! the commands whose destination set holds its partition, in an order every replica of every
//! partition agrees on; the layer around it ships [`Signal`]s between partitions and delivers
//! replies:
//!
//! - A command for one partition executes at once, in delivery order.
//! - A command for several partitions (a *multi-partition* command) sends a [`Signal`] to the
//!   other partitions of its destination set: the partition's clock as it will be when the command
//!   executes, and the state the others need from it ([`Service::facts`], the state exchange of
//!   Algorithm 1). It executes only once a signal from at least one replica of every other
//!   partition in its destination set has arrived, which makes it *execution atomic*, and so the
//!   whole execution linearizable (paper Theorem 1).
//! - zxids are Lamport clocks: a single-partition write takes the partition's clock + 1; a
//!   multi-partition write takes `max(every destination partition's signalled clock) + 1`, the same
//!   at every replica of every partition, and every destination partition moves its clock there.
//! - State prefetching (4.3.2): the signal leaves as soon as the command is delivered when its
//!   facts and clock cannot change before it executes, otherwise when it reaches the head.
//!
//! The engine is generic over a [`Service`] (the oracle, the keys a command reads and writes,
//! deterministic execution), so services other than ZooKeeper can run on it.

mod executor;
mod signal;
#[cfg(test)]
mod sim_cluster;
#[cfg(test)]
mod sim_test;
pub mod zk_service;
#[cfg(test)]
mod zk_sim_test;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use executor::{
    Executed, Executor, Metrics, SignalOut, Step, MAX_CLOCK, PREFETCH_SCAN_LIMIT, RESEND_MEMORY,
};
pub use signal::Signal;
pub use zk_service::{dest_of, partition_of, ZkKey, ZkService};

use crate::multicast::{GroupId, Instance};

/// Identifies a partition of the service state (and its replicas' Paxos group `g_p`).
pub type PartitionId = u32;

/// Identifies a command across partitions by where it was decided: the group, the consensus
/// instance and its index within the decided batch.
///
/// Invariant: ordered by (group, instance, index); within the global group this is the order in
/// which every partition delivers the group's commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CmdId {
    pub group: GroupId,
    pub instance: Instance,
    pub index: u32,
}

impl CmdId {
    /// A command id.
    pub fn new(group: GroupId, instance: Instance, index: u32) -> CmdId {
        CmdId {
            group,
            instance,
            index,
        }
    }
}

impl std::fmt::Display for CmdId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}.{}", self.group, self.instance, self.index)
    }
}

/// A partitioned, deterministic service: what one partition's replica executes.
///
/// One value of the implementing type is the state of one partition at one replica.
///
/// Invariants the engine relies on (a service that breaks them makes replicas diverge):
/// - `dest`, `is_write` are pure functions of the command: every partition computes the same.
/// - `facts(cmd)` depends only on the values of the keys in `reads(cmd)`, and a command changes
///   the value of a key only if that key is in its `writes`. (Prefetched facts stay valid while
///   no queued command writes what they read.)
/// - `execute` is deterministic; for a multi-partition command, given the same `zxid` and the same
///   facts, every partition in `dest` returns the same output.
pub trait Service {
    /// A command, as delivered by atomic multicast.
    type Command;
    /// What executing a command returns (the reply and anything else the driver needs).
    type Output;
    /// A unit of state whose reads and writes the engine tracks for prefetching.
    type Key: Ord + Clone;

    /// The oracle: every partition the command touches (a superset is fine), non-empty. The
    /// engine sorts and deduplicates it.
    fn dest(&self, cmd: &Self::Command) -> Vec<PartitionId>;
    /// The keys of this partition that `facts(cmd)` depends on. Empty means no facts to send
    /// (a bare signal).
    fn reads(&self, cmd: &Self::Command) -> Vec<Self::Key>;
    /// The keys of this partition that executing `cmd` may change. A function of the command
    /// alone: it is asked for while the command waits in the queue, when a prefetch needs it.
    fn writes(&self, cmd: &Self::Command) -> Vec<Self::Key>;
    /// True when executing the command advances the clock (ZooKeeper: writes take a new zxid,
    /// reads return the last one).
    fn is_write(&self, cmd: &Self::Command) -> bool;
    /// The state this partition contributes to a multi-partition command: the values it owns
    /// that the command reads (state exchange).
    fn facts(&self, cmd: &Self::Command) -> Bytes;
    /// Executes `cmd` at `zxid`. For a multi-partition command `facts` holds the facts of every
    /// partition in `dest`, this one's included; for a single-partition command it is empty.
    /// Other partitions' facts arrive from peers: malformed facts must not panic.
    fn execute(
        &mut self,
        cmd: &Self::Command,
        zxid: i64,
        facts: &BTreeMap<PartitionId, Bytes>,
    ) -> Self::Output;
}

/// Errors of the S-SMR engine. Each one is a broken contract of the layer below (the multicast)
/// or a malformed message from a peer; the executor's state is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The oracle gave a command no destination.
    #[error("command {id} has no destination partition")]
    EmptyDest { id: CmdId },
    /// A command delivered to a partition outside its destination set.
    #[error("command {id} delivered to partition {partition}, which is not in its destination")]
    NotInDest { id: CmdId, partition: PartitionId },
    /// A multi-partition command that did not come through the global group.
    #[error("multi-partition command {id} not decided in the global group {global}")]
    MultiOutsideGlobalGroup { id: CmdId, global: GroupId },
    /// A multi-partition command delivered after one with a larger or equal id.
    #[error("multi-partition command {id} delivered after {last}")]
    OutOfOrder { id: CmdId, last: CmdId },
    /// Bytes that should hold a [`Signal`] do not.
    #[error("malformed signal: {0}")]
    MalformedSignal(&'static str),
}
