//! An in-memory [`VoteStore`] for tests and simulations.

use std::collections::BTreeMap;

use super::{AcceptorState, GroupId, StoreError, VoteStore, VoteWrite};

/// Votes kept in memory; `write` is atomic and "durable" for as long as the value lives.
#[derive(Debug, Default, Clone)]
pub struct MemVoteStore {
    groups: BTreeMap<GroupId, AcceptorState>,
    writes: u64,
}

impl MemVoteStore {
    /// An empty store.
    pub fn new() -> MemVoteStore {
        MemVoteStore::default()
    }

    /// Number of `write` calls (each stands for one fsync).
    pub fn writes(&self) -> u64 {
        self.writes
    }
}

impl VoteStore for MemVoteStore {
    fn load(&self, group: GroupId) -> Result<AcceptorState, StoreError> {
        Ok(self.groups.get(&group).cloned().unwrap_or_default())
    }

    fn write(&mut self, votes: &[VoteWrite]) -> Result<(), StoreError> {
        self.writes += 1;
        for v in votes {
            match v {
                VoteWrite::Promise { group, ballot } => {
                    self.groups.entry(*group).or_default().promised = *ballot;
                }
                VoteWrite::Accept {
                    group,
                    instance,
                    ballot,
                    value,
                } => {
                    self.groups
                        .entry(*group)
                        .or_default()
                        .accepted
                        .insert(*instance, (*ballot, value.clone()));
                }
                VoteWrite::Trim { group, below } => {
                    let s = self.groups.entry(*group).or_default();
                    s.low = s.low.max(*below);
                    s.accepted = s.accepted.split_off(below);
                }
            }
        }
        Ok(())
    }
}
