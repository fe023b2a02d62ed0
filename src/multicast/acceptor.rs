//! The acceptor: Phase 1b and Phase 2b.

use std::collections::BTreeMap;

use super::{
    AcceptorState, Ballot, Batch, Envelope, GroupId, Instance, NodeId, Outputs, PaxosMsg, VoteWrite,
};

/// One acceptor of one group.
///
/// Invariant: `promised` >= every accepted ballot; no accepted instance is below `low`.
/// Every reply that reflects a vote leaves through [`Outputs::send_after_persist`], after the
/// [`VoteWrite`] recording that vote.
#[derive(Debug)]
pub struct Acceptor {
    id: NodeId,
    group: GroupId,
    promised: Ballot,
    low: Instance,
    accepted: BTreeMap<Instance, (Ballot, Batch)>,
}

impl Acceptor {
    /// An acceptor resuming from durable `state` (`AcceptorState::default()` when new).
    pub fn new(id: NodeId, group: GroupId, state: AcceptorState) -> Acceptor {
        let mut acc = Acceptor {
            id,
            group,
            promised: state.promised,
            low: state.low,
            accepted: state.accepted,
        };
        // Instances below the low mark are gone; a store may still list some if a trim raced a crash.
        acc.accepted = acc.accepted.split_off(&acc.low);
        if let Some(max) = acc.accepted.values().map(|(b, _)| *b).max() {
            // Accepting implies promising; an old store may lack the promise record.
            acc.promised = acc.promised.max(max);
        }
        acc.check_invariant();
        acc
    }

    /// This acceptor's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// Instances below `low` were trimmed.
    pub fn low(&self) -> Instance {
        self.low
    }

    /// The highest instance with a vote.
    pub fn highest_accepted(&self) -> Option<Instance> {
        self.accepted.keys().next_back().copied()
    }

    /// The vote in `instance`, if any.
    pub fn accepted(&self, instance: Instance) -> Option<&(Ballot, Batch)> {
        self.accepted.get(&instance)
    }

    /// Handles one message from `from`. Messages of other groups and coordinator/learner messages
    /// are ignored.
    pub fn step(&mut self, from: NodeId, msg: PaxosMsg) -> Outputs {
        let mut out = Outputs::default();
        if msg.group() != self.group {
            return out;
        }
        match msg {
            PaxosMsg::Prepare {
                ballot,
                from: first,
                ..
            } => {
                if ballot < self.promised {
                    out.send.push(self.nack(from, ballot));
                    return out;
                }
                if ballot > self.promised {
                    self.promised = ballot;
                    out.persist.push(VoteWrite::Promise {
                        group: self.group,
                        ballot,
                    });
                }
                let accepted = self
                    .accepted
                    .range(first.max(self.low)..)
                    .map(|(i, (b, v))| (*i, *b, v.clone()))
                    .collect();
                out.send_after_persist.push(Envelope {
                    to: from,
                    msg: PaxosMsg::Promise {
                        group: self.group,
                        ballot,
                        low: self.low,
                        accepted,
                    },
                });
            }
            PaxosMsg::Accept {
                ballot,
                instance,
                value,
                ..
            } => {
                if ballot < self.promised {
                    out.send.push(self.nack(from, ballot));
                    return out;
                }
                if instance < self.low {
                    tracing::debug!(instance, low = self.low, "accept for a trimmed instance");
                    return out;
                }
                if ballot > self.promised {
                    self.promised = ballot;
                    out.persist.push(VoteWrite::Promise {
                        group: self.group,
                        ballot,
                    });
                }
                let already = matches!(self.accepted.get(&instance), Some((b, _)) if *b == ballot);
                if !already {
                    self.accepted.insert(instance, (ballot, value.clone()));
                    out.persist.push(VoteWrite::Accept {
                        group: self.group,
                        instance,
                        ballot,
                        value,
                    });
                }
                // A duplicate still waits for persistence: its first copy may not be durable yet.
                out.send_after_persist.push(Envelope {
                    to: from,
                    msg: PaxosMsg::Accepted {
                        group: self.group,
                        ballot,
                        instance,
                    },
                });
                debug_assert!(self.promised >= ballot);
            }
            PaxosMsg::Promise { .. }
            | PaxosMsg::Accepted { .. }
            | PaxosMsg::Nack { .. }
            | PaxosMsg::Decision { .. }
            | PaxosMsg::Decided { .. }
            | PaxosMsg::Heartbeat { .. }
            | PaxosMsg::Forward { .. }
            | PaxosMsg::CatchUp { .. }
            | PaxosMsg::Trimmed { .. }
            | PaxosMsg::SkipNeeded { .. } => {}
        }
        out
    }

    /// Records that `instance` decided `value` at `ballot`, so that this acceptor can later serve
    /// the decision to a learner that missed it. Safe for Paxos: every proposal at a ballot >= the
    /// deciding one carries the decided value, so a vote at a higher ballot is left as it is.
    pub fn learn(&mut self, instance: Instance, ballot: Ballot, value: &Batch) -> Outputs {
        let mut out = Outputs::default();
        if instance < self.low
            || matches!(self.accepted.get(&instance), Some((b, _)) if *b >= ballot)
        {
            return out;
        }
        if ballot > self.promised {
            self.promised = ballot;
            out.persist.push(VoteWrite::Promise {
                group: self.group,
                ballot,
            });
        }
        self.accepted.insert(instance, (ballot, value.clone()));
        out.persist.push(VoteWrite::Accept {
            group: self.group,
            instance,
            ballot,
            value: value.clone(),
        });
        out
    }

    /// Forgets every instance below `below` (every replica has checkpointed them).
    pub fn trim(&mut self, below: Instance) -> Outputs {
        let mut out = Outputs::default();
        if below <= self.low {
            return out;
        }
        self.low = below;
        self.accepted = self.accepted.split_off(&below);
        out.persist.push(VoteWrite::Trim {
            group: self.group,
            below,
        });
        out
    }

    fn nack(&self, to: NodeId, ballot: Ballot) -> Envelope {
        Envelope {
            to,
            msg: PaxosMsg::Nack {
                group: self.group,
                ballot,
                promised: self.promised,
            },
        }
    }

    fn check_invariant(&self) {
        assert!(self.accepted.values().all(|(b, _)| *b <= self.promised));
        assert!(self.accepted.keys().all(|i| *i >= self.low));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const G: GroupId = 4;

    fn batch(s: &'static str) -> Batch {
        Batch::new(1, vec![Bytes::from_static(s.as_bytes())])
    }

    fn accept(ballot: Ballot, instance: Instance, value: Batch) -> PaxosMsg {
        PaxosMsg::Accept {
            group: G,
            ballot,
            instance,
            value,
        }
    }

    #[test]
    fn promise_is_persisted_before_reply_and_reports_votes() {
        let mut a = Acceptor::new(1, G, AcceptorState::default());
        let b1 = Ballot::new(1, 9);
        let out = a.step(9, accept(b1, 3, batch("x")));
        assert_eq!(out.persist.len(), 2, "promise and vote");
        assert!(out.send.is_empty());
        let b2 = Ballot::new(2, 8);
        let out = a.step(
            8,
            PaxosMsg::Prepare {
                group: G,
                ballot: b2,
                from: 1,
            },
        );
        assert_eq!(
            out.persist,
            vec![VoteWrite::Promise {
                group: G,
                ballot: b2
            }]
        );
        assert_eq!(
            out.send_after_persist,
            vec![Envelope {
                to: 8,
                msg: PaxosMsg::Promise {
                    group: G,
                    ballot: b2,
                    low: 0,
                    accepted: vec![(3, b1, batch("x"))]
                }
            }]
        );
        assert_eq!(a.promised(), b2);
    }

    #[test]
    fn lower_ballots_are_refused() {
        let mut a = Acceptor::new(1, G, AcceptorState::default());
        a.step(
            9,
            PaxosMsg::Prepare {
                group: G,
                ballot: Ballot::new(5, 9),
                from: 1,
            },
        );
        let out = a.step(8, accept(Ballot::new(5, 8), 1, batch("y")));
        assert!(out.persist.is_empty());
        assert_eq!(
            out.send,
            vec![Envelope {
                to: 8,
                msg: PaxosMsg::Nack {
                    group: G,
                    ballot: Ballot::new(5, 8),
                    promised: Ballot::new(5, 9)
                }
            }]
        );
        assert_eq!(a.accepted(1), None);
    }

    #[test]
    fn duplicate_accept_persists_once_but_answers_again() {
        let mut a = Acceptor::new(1, G, AcceptorState::default());
        let b = Ballot::new(1, 9);
        let first = a.step(9, accept(b, 1, batch("x")));
        let second = a.step(9, accept(b, 1, batch("x")));
        assert_eq!(first.persist.len(), 2);
        assert!(second.persist.is_empty());
        assert_eq!(second.send_after_persist.len(), 1);
    }

    #[test]
    fn trim_forgets_and_prepare_reports_low() {
        let mut a = Acceptor::new(1, G, AcceptorState::default());
        let b = Ballot::new(1, 9);
        for i in 1..=5 {
            a.step(9, accept(b, i, batch("x")));
        }
        let out = a.trim(4);
        assert_eq!(out.persist, vec![VoteWrite::Trim { group: G, below: 4 }]);
        assert!(a.trim(3).persist.is_empty(), "trim never moves back");
        assert_eq!(a.accepted(3), None);
        let out = a.step(
            9,
            PaxosMsg::Prepare {
                group: G,
                ballot: b,
                from: 1,
            },
        );
        match &out.send_after_persist[0].msg {
            PaxosMsg::Promise { low, accepted, .. } => {
                assert_eq!(*low, 4);
                assert_eq!(accepted.iter().map(|v| v.0).collect::<Vec<_>>(), vec![4, 5]);
            }
            m => panic!("unexpected {m:?}"),
        }
        assert!(a.step(9, accept(b, 2, batch("late"))).is_empty());
    }

    #[test]
    fn other_groups_are_ignored() {
        let mut a = Acceptor::new(1, G, AcceptorState::default());
        let out = a.step(
            9,
            PaxosMsg::Prepare {
                group: G + 1,
                ballot: Ballot::new(1, 9),
                from: 1,
            },
        );
        assert!(out.is_empty());
        assert_eq!(a.promised(), Ballot::ZERO);
    }
}
