//! [`VoteStore`] on RocksDB: the multicast core's votes in `storage`'s [`VoteDb`].
//!
//! Record layouts (big-endian): the promise record is a ballot (round u64, node u32); an instance
//! record is the accepted ballot followed by the [`Batch`] encoding.

use bytes::Bytes;
use storage::{StoreError, VoteBatch, VoteDb};

use crate::multicast::{AcceptorState, Ballot, Batch, GroupId, NodeId, VoteStore, VoteWrite};

/// The acceptor votes of every group in one RocksDB instance.
#[derive(Clone)]
pub struct RocksVoteStore {
    db: VoteDb,
}

impl RocksVoteStore {
    /// Wraps the vote store of an opened [`storage::Storage`].
    pub fn new(db: VoteDb) -> RocksVoteStore {
        RocksVoteStore { db }
    }

    /// The acceptor set recorded for `group`, if any (ids as big-endian u32s).
    pub fn acceptors(&self, group: GroupId) -> Result<Option<Vec<NodeId>>, StoreError> {
        let Some(rec) = self.db.acceptors(group)? else {
            return Ok(None);
        };
        if rec.len() % 4 != 0 {
            return Err(StoreError::Corrupt(format!(
                "acceptor set of group {group}"
            )));
        }
        Ok(Some(
            rec.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }

    /// Records `acceptors` as `group`'s acceptor set (one synced write).
    pub fn record_acceptors(&self, group: GroupId, acceptors: &[NodeId]) -> Result<(), StoreError> {
        let mut batch = VoteBatch::new();
        batch.put_acceptors(
            group,
            acceptors.iter().flat_map(|a| a.to_be_bytes()).collect(),
        );
        self.db.write(batch)
    }
}

impl VoteStore for RocksVoteStore {
    fn load(&self, group: GroupId) -> Result<AcceptorState, StoreError> {
        let promised = match self.db.promise(group)? {
            None => Ballot::ZERO,
            Some(rec) => Ballot::from_bytes(&rec)
                .ok_or_else(|| StoreError::Corrupt(format!("promise record of group {group}")))?,
        };
        let low = self.db.low(group)?;
        let mut state = AcceptorState {
            promised,
            low,
            accepted: Default::default(),
        };
        for (instance, rec) in self.db.instances_from(group, low, usize::MAX)? {
            let corrupt = || StoreError::Corrupt(format!("group {group} instance {instance}"));
            if rec.len() < Ballot::ENCODED_LEN {
                return Err(corrupt());
            }
            let ballot = Ballot::from_bytes(&rec[..Ballot::ENCODED_LEN]).ok_or_else(corrupt)?;
            let value = Batch::decode(Bytes::from(rec).split_off(Ballot::ENCODED_LEN))
                .map_err(|_| corrupt())?;
            state.accepted.insert(instance, (ballot, value));
        }
        Ok(state)
    }

    fn write(&mut self, votes: &[VoteWrite]) -> Result<(), StoreError> {
        let mut batch = VoteBatch::new();
        for v in votes {
            match v {
                VoteWrite::Promise { group, ballot } => {
                    batch.put_promise(*group, ballot.to_bytes().to_vec());
                }
                VoteWrite::Accept {
                    group,
                    instance,
                    ballot,
                    value,
                } => {
                    let mut rec = Vec::with_capacity(Ballot::ENCODED_LEN + value.encoded_len());
                    rec.extend_from_slice(&ballot.to_bytes());
                    value.encode_into(&mut rec);
                    batch.put_instance(*group, *instance, rec);
                }
                VoteWrite::Trim { group, below } => batch.trim_below(*group, *below),
            }
        }
        self.db.write(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::Storage;

    #[test]
    fn votes_round_trip_through_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let b1 = Ballot::new(3, 1);
        let v = |t: u64| Batch::new(t, vec![Bytes::from(format!("cmd{t}")), Bytes::new()]);
        {
            let storage = Storage::open(dir.path()).unwrap();
            let mut s = RocksVoteStore::new(storage.votes());
            assert_eq!(s.load(0).unwrap(), AcceptorState::default());
            let mut votes = vec![VoteWrite::Promise {
                group: 0,
                ballot: b1,
            }];
            for i in 1..=5 {
                votes.push(VoteWrite::Accept {
                    group: 0,
                    instance: i,
                    ballot: b1,
                    value: v(i),
                });
            }
            s.write(&votes).unwrap();
            s.write(&[VoteWrite::Trim { group: 0, below: 3 }]).unwrap();
        }
        let storage = Storage::open(dir.path()).unwrap();
        let s = RocksVoteStore::new(storage.votes());
        let state = s.load(0).unwrap();
        assert_eq!(state.promised, b1);
        assert_eq!(state.low, 3);
        let expected: Vec<_> = (3..=5).map(|i| (i, (b1, v(i)))).collect();
        assert_eq!(state.accepted.into_iter().collect::<Vec<_>>(), expected);
        assert_eq!(s.load(1).unwrap(), AcceptorState::default());
    }
}
