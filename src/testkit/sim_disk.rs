//! The simulated disk of a member in the deterministic simulations: a [`MemVoteStore`] behind an
//! unsynced list and one fsync at a time, and the outputs that wait for their votes.
//!
//! Invariant: an output held behind `needed` votes leaves only once the first `needed` votes
//! produced since the last crash are in the store, and held outputs leave in the order they were
//! held. A crash loses every unsynced vote (the running fsync reaches the disk or not, as the
//! caller draws) and every held output.

use std::collections::VecDeque;

use crate::multicast::{MemVoteStore, VoteStore, VoteWrite};

pub struct SimDisk<H> {
    pub store: MemVoteStore,
    unsynced: Vec<VoteWrite>,
    /// Votes produced and votes durable since the last crash.
    produced: u64,
    durable: u64,
    /// A running fsync: (completes at, durable count once complete).
    fsync: Option<(u64, u64)>,
    held: VecDeque<(u64, H)>,
}

impl<H> Default for SimDisk<H> {
    fn default() -> SimDisk<H> {
        SimDisk {
            store: MemVoteStore::new(),
            unsynced: Vec::new(),
            produced: 0,
            durable: 0,
            fsync: None,
            held: VecDeque::new(),
        }
    }
}

impl<H> SimDisk<H> {
    /// Votes to persist, durable once an fsync started after this completes.
    pub fn write(&mut self, votes: Vec<VoteWrite>) {
        self.produced += votes.len() as u64;
        self.unsynced.extend(votes);
    }

    /// Outputs that wait for every vote written so far: those free to leave at once (nothing
    /// unsynced and nothing held before them) are returned, the others held.
    pub fn after_votes(&mut self, outputs: impl Iterator<Item = H>) -> Vec<H> {
        let needed = self.produced;
        if self.durable >= needed && self.held.is_empty() {
            outputs.collect()
        } else {
            self.held.extend(outputs.map(|h| (needed, h)));
            Vec::new()
        }
    }

    /// Starts an fsync of everything unsynced, completing at `at`, unless one runs or nothing is
    /// unsynced.
    pub fn start_fsync(&mut self, at: u64) {
        if self.fsync.is_none() && self.produced > self.durable {
            self.fsync = Some((at, self.produced));
        }
    }

    /// Completes the running fsync if it is due at `now`; true if one completed. Its outputs then
    /// leave through [`SimDisk::next_released`].
    pub fn complete_fsync(&mut self, now: u64) -> bool {
        let Some((at, upto)) = self.fsync else {
            return false;
        };
        if at > now {
            return false;
        }
        self.fsync = None;
        let count = (upto - self.durable) as usize;
        let votes: Vec<VoteWrite> = self.unsynced.drain(..count).collect();
        self.store.write(&votes).expect("memory store");
        self.durable = upto;
        true
    }

    /// The oldest held output whose votes are durable. Taken one at a time, so outputs held while
    /// releasing queue behind the ones still held.
    pub fn next_released(&mut self) -> Option<H> {
        if self
            .held
            .front()
            .is_some_and(|(needed, _)| *needed <= self.durable)
        {
            self.held.pop_front().map(|(_, h)| h)
        } else {
            None
        }
    }

    /// A crash: the running fsync reaches the disk if `fsync_completes`; everything else unsynced,
    /// and every held output, is lost.
    pub fn crash(&mut self, fsync_completes: bool) {
        if let Some((_, upto)) = self.fsync.take() {
            if fsync_completes {
                let count = (upto - self.durable) as usize;
                self.store
                    .write(&self.unsynced[..count])
                    .expect("memory store");
            }
        }
        self.unsynced.clear();
        self.held.clear();
        self.produced = 0;
        self.durable = 0;
    }

    /// (running fsync, held outputs, votes produced, votes durable), for stall reports.
    pub fn state(&self) -> (Option<(u64, u64)>, usize, u64, u64) {
        (self.fsync, self.held.len(), self.produced, self.durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multicast::Ballot;

    fn promise(round: u64) -> VoteWrite {
        VoteWrite::Promise {
            group: 0,
            ballot: Ballot { round, node: 1 },
        }
    }

    fn promised(disk: &SimDisk<u32>) -> u64 {
        disk.store.load(0).expect("memory store").promised.round
    }

    #[test]
    fn outputs_leave_in_order_once_their_votes_are_durable() {
        let mut disk = SimDisk::default();
        assert_eq!(disk.after_votes([1, 2].into_iter()), vec![1, 2]);
        disk.write(vec![promise(1)]);
        assert!(disk.after_votes([3].into_iter()).is_empty());
        disk.start_fsync(10);
        disk.write(vec![promise(2)]);
        // Nothing new is unsynced-free, and 4 queues behind 3.
        assert!(disk.after_votes([4].into_iter()).is_empty());
        assert!(!disk.complete_fsync(9));
        assert!(disk.complete_fsync(10));
        assert_eq!(promised(&disk), 1);
        assert_eq!(disk.next_released(), Some(3));
        assert_eq!(disk.next_released(), None);
        disk.start_fsync(20);
        assert!(disk.complete_fsync(20));
        assert_eq!((disk.next_released(), promised(&disk)), (Some(4), 2));
    }

    #[test]
    fn a_crash_loses_what_is_unsynced_and_held() {
        for completes in [false, true] {
            let mut disk = SimDisk::default();
            disk.write(vec![promise(1)]);
            disk.start_fsync(10);
            disk.write(vec![promise(2)]);
            assert!(disk.after_votes([1].into_iter()).is_empty());
            disk.crash(completes);
            assert_eq!(promised(&disk), if completes { 1 } else { 0 });
            assert_eq!(disk.state(), (None, 0, 0, 0));
            assert_eq!(disk.after_votes([2].into_iter()), vec![2]);
        }
    }
}
