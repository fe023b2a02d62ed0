//! The coordinator: the group's Multi-Paxos leader.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{
    Ballot, Batch, Decision, Envelope, Error, GroupId, Instance, NodeId, Outputs, PaxosMsg,
};

/// Batching, pipelining and timing bounds of a coordinator. Durations are in ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorOptions {
    /// A batch closes as soon as it holds this many commands.
    pub max_batch_commands: usize,
    /// A batch closes as soon as its commands hold this many bytes (a larger single command still
    /// forms a batch of its own).
    pub max_batch_bytes: usize,
    /// A batch that is not full closes after waiting this many ticks while instances are in flight;
    /// with nothing in flight it closes at once.
    pub batch_delay_ticks: u64,
    /// Most instances proposed in Phase 2 and not yet decided.
    pub max_in_flight: usize,
    /// Commands the coordinator holds before [`Coordinator::has_room`] turns false.
    pub max_pending_commands: usize,
    /// Prepare and Accept messages without a quorum of answers are sent again after this many ticks.
    pub retry_ticks: u64,
    /// An idle coordinator decides a skip after this many ticks without proposing; `None` disables.
    pub skip_after_ticks: Option<u64>,
    /// A skip decided because a learner waits ([`Coordinator::skip_until`]) is stamped this far
    /// ahead of the wall clock, so a group that stays idle while another is busy needs one skip
    /// per this many milliseconds, not one per batch of the busy group.
    pub skip_lookahead_ms: u64,
}

impl Default for CoordinatorOptions {
    fn default() -> CoordinatorOptions {
        CoordinatorOptions {
            max_batch_commands: 2048,
            max_batch_bytes: 1 << 20,
            batch_delay_ticks: 1,
            max_in_flight: 8,
            max_pending_commands: 16384,
            retry_ticks: 50,
            skip_after_ticks: Some(5),
            skip_lookahead_ms: 20,
        }
    }
}

impl CoordinatorOptions {
    /// Checks the options against each other.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_batch_commands == 0 || self.max_batch_bytes == 0 {
            return Err(Error::InvalidOptions("batch bounds must be positive"));
        }
        if self.max_in_flight == 0 {
            return Err(Error::InvalidOptions("max_in_flight must be positive"));
        }
        if self.max_pending_commands < self.max_batch_commands {
            return Err(Error::InvalidOptions(
                "max_pending_commands must hold at least one full batch",
            ));
        }
        if self.retry_ticks == 0 {
            return Err(Error::InvalidOptions("retry_ticks must be positive"));
        }
        if self.skip_after_ticks == Some(0) {
            return Err(Error::InvalidOptions("skip_after_ticks must be positive"));
        }
        Ok(())
    }
}

/// Where a coordinator starts.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// This coordinator's node id (the second half of its ballots).
    pub id: NodeId,
    pub group: GroupId,
    /// The group's acceptors; a quorum is a majority of them.
    pub acceptors: Vec<NodeId>,
    /// Nodes told of every decided instance (remote learners): [`PaxosMsg::Decided`] when they
    /// voted for it, [`PaxosMsg::Decision`] otherwise.
    pub learners: Vec<NodeId>,
    /// The first instance not known to be decided; Phase 1 covers it and everything after.
    pub first_instance: Instance,
    /// The first ballot round to try (above any ballot known to be promised).
    pub min_round: u64,
    /// Batch timestamps are above this (the newest timestamp known from before a restart).
    pub time_floor_ms: u64,
    pub options: CoordinatorOptions,
}

#[derive(Debug)]
struct InFlight {
    value: Batch,
    /// True when this coordinator closed the batch from its own queue; false when Phase 1 adopted
    /// it. Only own batches go back to the queue if another value wins their instance, so a
    /// command is never in two live proposals.
    own: bool,
    /// Acceptors that answered Accepted for the current ballot.
    acks: Vec<NodeId>,
    sent_at: u64,
}

/// A Phase 1b report: (acceptor's low mark, its votes).
type Report = (Instance, Vec<(Instance, Ballot, Batch)>);

#[derive(Debug)]
enum Phase {
    /// Phase 1 running for `ballot`, collecting promises.
    Preparing {
        promises: BTreeMap<NodeId, Report>,
        sent_at: Option<u64>,
    },
    /// Phase 1 done: Phase 2 per batch.
    Leading,
}

/// A group's coordinator.
///
/// Invariant: while leading, every instance >= `next_instance` is free at `ballot` (Phase 1 found
/// no vote there), so it may be proposed any value; every instance in `in_flight` was proposed at
/// `ballot` with the value a correct Phase 1 allows. Timestamps of the batches it closes strictly
/// increase. A proposed command sits in exactly one own batch (in flight or displaced) or in
/// `pending`, and returns to `pending` only once the instance of its batch decided another value,
/// so each command is decided at most once. A command is lost (never decided) only if this
/// coordinator never learns the fate of its displaced batch; submitters must time out as
/// ZooKeeper clients do on connection loss.
#[derive(Debug)]
pub struct Coordinator {
    id: NodeId,
    group: GroupId,
    acceptors: Vec<NodeId>,
    learners: Vec<NodeId>,
    opts: CoordinatorOptions,
    quorum: usize,
    ballot: Ballot,
    phase: Phase,
    /// Logical time: number of ticks seen.
    now: u64,
    /// Phase 1 covers instances >= this.
    phase1_from: Instance,
    next_instance: Instance,
    in_flight: BTreeMap<Instance, InFlight>,
    /// Own batches that another value displaced in Phase 1, by instance, until it is decided.
    displaced: BTreeMap<Instance, Batch>,
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    /// Tick at which the oldest pending command arrived.
    pending_since: u64,
    last_time_ms: u64,
    /// Tick of the last proposal (for skips).
    last_proposal: u64,
    /// The latest time a learner asked an instance of this group to reach.
    skip_wanted_ms: u64,
}

impl Coordinator {
    /// A coordinator that has not started Phase 1; call [`Coordinator::start`].
    pub fn new(config: CoordinatorConfig) -> Result<Coordinator, Error> {
        config.options.validate()?;
        if config.acceptors.is_empty() {
            return Err(Error::InvalidOptions("a group needs at least one acceptor"));
        }
        let quorum = config.acceptors.len() / 2 + 1;
        Ok(Coordinator {
            id: config.id,
            group: config.group,
            acceptors: config.acceptors,
            learners: config.learners,
            opts: config.options,
            quorum,
            ballot: Ballot::new(config.min_round.max(1), config.id),
            phase: Phase::Preparing {
                promises: BTreeMap::new(),
                sent_at: None,
            },
            now: 0,
            phase1_from: config.first_instance,
            next_instance: config.first_instance,
            in_flight: BTreeMap::new(),
            displaced: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            pending_since: 0,
            last_time_ms: config.time_floor_ms,
            last_proposal: 0,
            skip_wanted_ms: 0,
        })
    }

    /// Sends Phase 1a for every instance from the first undecided one.
    pub fn start(&mut self) -> Outputs {
        let mut out = Outputs::default();
        self.send_prepare(&mut out);
        out
    }

    /// This coordinator's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current ballot.
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// True once Phase 1 succeeded for the current ballot.
    pub fn is_leading(&self) -> bool {
        matches!(self.phase, Phase::Leading)
    }

    /// The next instance a new batch would take.
    pub fn next_instance(&self) -> Instance {
        self.next_instance
    }

    /// Commands waiting for a batch.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Instances proposed and not yet decided.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// True while more proposals are welcome (fewer than `max_pending_commands` wait).
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.opts.max_pending_commands
    }

    /// True when nothing is pending or in flight.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty()
    }

    /// True while the next tick may do something besides the idle skip: a batch to close, an
    /// Accept or Prepare to resend, a requested skip not yet proposed. Otherwise ticks may come
    /// seldom (the idle skip then waits longer, which only the fallback notices).
    pub fn needs_ticks(&self) -> bool {
        !self.is_idle() || !self.is_leading() || self.last_time_ms < self.skip_wanted_ms
    }

    /// Queues a command for the next batch; `wall_ms` is the wall clock (ms since the epoch).
    pub fn propose(&mut self, cmd: Bytes, wall_ms: u64) -> Outputs {
        self.propose_all([cmd], wall_ms)
    }

    /// Queues several commands, in order, before deciding whether a batch closes (so commands
    /// that arrive together share a batch even when the pipeline is idle).
    pub fn propose_all(&mut self, cmds: impl IntoIterator<Item = Bytes>, wall_ms: u64) -> Outputs {
        for cmd in cmds {
            if self.pending.is_empty() {
                self.pending_since = self.now;
            }
            self.pending_bytes += cmd.len();
            self.pending.push_back(cmd);
        }
        let mut out = Outputs::default();
        self.close_batches(wall_ms, &mut out);
        out
    }

    /// Advances logical time by one tick: closes batches that waited long enough, resends
    /// unanswered Prepare/Accept messages, and proposes a skip when idle.
    pub fn tick(&mut self, wall_ms: u64) -> Outputs {
        self.now += 1;
        let mut out = Outputs::default();
        match self.phase {
            Phase::Preparing { sent_at, .. } => {
                if sent_at.is_none_or(|t| self.now - t >= self.opts.retry_ticks) {
                    self.send_prepare(&mut out);
                }
            }
            Phase::Leading => {
                for (instance, f) in self.in_flight.iter_mut() {
                    if self.now - f.sent_at >= self.opts.retry_ticks {
                        f.sent_at = self.now;
                        for &a in &self.acceptors {
                            if !f.acks.contains(&a) {
                                out.send.push(Envelope {
                                    to: a,
                                    msg: PaxosMsg::Accept {
                                        group: self.group,
                                        ballot: self.ballot,
                                        instance: *instance,
                                        value: f.value.clone(),
                                    },
                                });
                            }
                        }
                    }
                }
                self.close_batches(wall_ms, &mut out);
                self.serve_skip_wanted(wall_ms, &mut out);
                if let Some(after) = self.opts.skip_after_ticks {
                    if self.is_idle() && self.now - self.last_proposal >= after {
                        let value = Batch::skip(self.next_time(wall_ms));
                        self.propose_next(value, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Demand-driven skip: a learner merging this group waits for an instance stamped at
    /// `until_ms` or later. See [`Coordinator::serve_skip_wanted`].
    pub fn skip_until(&mut self, until_ms: u64, wall_ms: u64) -> Outputs {
        let mut out = Outputs::default();
        self.skip_wanted_ms = self.skip_wanted_ms.max(until_ms);
        self.serve_skip_wanted(wall_ms, &mut out);
        out
    }

    /// Answers the latest [`Coordinator::skip_until`] (here and at every tick) unless an instance
    /// that late is proposed. An idle coordinator proposes a skip stamped
    /// `max(wanted, wall_ms + skip_lookahead_ms)`. A busy one lets its next batches, stamped by
    /// the wall clock, reach a time still in the future, and proposes a skip only once it is due:
    /// jumping its clock ahead would leave the groups that wait on it with skips that cover
    /// nothing (their skips are stamped ahead of the wall clock, not of this group).
    fn serve_skip_wanted(&mut self, wall_ms: u64, out: &mut Outputs) {
        let wanted = self.skip_wanted_ms;
        if !self.is_leading()
            || self.last_time_ms >= wanted
            || self.in_flight.len() >= self.opts.max_in_flight
        {
            return;
        }
        let time = if self.is_idle() {
            self.next_time(wall_ms.saturating_add(self.opts.skip_lookahead_ms))
        } else if wanted > wall_ms || !self.pending.is_empty() {
            // Due later, or the pending batch (closing within a tick) will be stamped late enough.
            return;
        } else {
            self.next_time(wall_ms)
        };
        let time = time.max(wanted);
        self.last_time_ms = time;
        self.propose_next(Batch::skip(time), out);
    }

    /// Handles a message from an acceptor. Messages of other groups or for other ballots are
    /// ignored.
    pub fn step(&mut self, from: NodeId, msg: PaxosMsg, wall_ms: u64) -> Outputs {
        let mut out = Outputs::default();
        if msg.group() != self.group || !self.acceptors.contains(&from) {
            return out;
        }
        match msg {
            PaxosMsg::Promise {
                ballot,
                low,
                accepted,
                ..
            } if ballot == self.ballot => {
                if let Phase::Preparing { promises, .. } = &mut self.phase {
                    promises.insert(from, (low, accepted));
                    if promises.len() >= self.quorum {
                        self.finish_phase1(wall_ms, &mut out);
                    }
                }
            }
            PaxosMsg::Accepted {
                ballot, instance, ..
            } if ballot == self.ballot => {
                let Some(f) = self.in_flight.get_mut(&instance) else {
                    return out;
                };
                if !f.acks.contains(&from) {
                    f.acks.push(from);
                }
                if f.acks.len() >= self.quorum {
                    let f = self.in_flight.remove(&instance).expect("present above");
                    self.decide(instance, self.ballot, f.value, &f.acks, &mut out);
                    self.close_batches(wall_ms, &mut out);
                }
            }
            PaxosMsg::Nack {
                ballot, promised, ..
            } if ballot == self.ballot && promised > self.ballot => {
                tracing::info!(
                    group = self.group,
                    ?promised,
                    "preempted, restarting phase 1"
                );
                self.ballot = Ballot::new(promised.round + 1, self.id);
                self.phase1_from = [
                    self.in_flight.keys().next(),
                    self.displaced.keys().next(),
                    Some(&self.next_instance),
                ]
                .into_iter()
                .flatten()
                .min()
                .copied()
                .unwrap_or(self.next_instance);
                // Prepare again after the retry timeout, so duelling coordinators settle.
                self.phase = Phase::Preparing {
                    promises: BTreeMap::new(),
                    sent_at: Some(self.now),
                };
            }
            _ => {}
        }
        out
    }

    /// Records that `instance` decided `value`, learned by other means than this coordinator's
    /// own Phase 2 (a catch-up, a Decision from another coordinator). The instance stops being
    /// proposed: acceptors that trimmed it never answer, and waiting for them would hold the
    /// pipeline and the skips forever. An own batch that lost the instance goes back to the queue.
    pub fn learned(&mut self, instance: Instance, value: &Batch) {
        if let Some(f) = self.in_flight.remove(&instance) {
            if f.own && f.value != *value {
                self.displaced.insert(instance, f.value);
            }
        }
        if let Some(ours) = self.displaced.remove(&instance) {
            if ours != *value {
                for cmd in ours.commands.iter().rev() {
                    self.pending_bytes += cmd.len();
                    self.pending.push_front(cmd.clone());
                }
                self.pending_since = self.now;
            }
        }
    }

    /// Every instance below `next` is decided and the caller learned it: stops proposing them.
    /// Phase 1 re-proposes such an instance when a promise sent before the acceptors trimmed it
    /// arrives after the caller learned it; trimmed acceptors would never answer.
    pub fn learned_below(&mut self, next: Instance) {
        self.in_flight = self.in_flight.split_off(&next);
        self.displaced = self.displaced.split_off(&next);
    }

    fn send_prepare(&mut self, out: &mut Outputs) {
        if let Phase::Preparing { promises, sent_at } = &mut self.phase {
            promises.clear();
            *sent_at = Some(self.now);
        }
        for &a in &self.acceptors {
            out.send.push(Envelope {
                to: a,
                msg: PaxosMsg::Prepare {
                    group: self.group,
                    ballot: self.ballot,
                    from: self.phase1_from,
                },
            });
        }
    }

    /// Phase 1 reached a quorum: settle every instance any promise mentioned, then lead.
    fn finish_phase1(&mut self, wall_ms: u64, out: &mut Outputs) {
        let Phase::Preparing { promises, .. } = std::mem::replace(&mut self.phase, Phase::Leading)
        else {
            return;
        };
        let start = promises
            .values()
            .map(|(low, _)| *low)
            .max()
            .unwrap_or(0)
            .max(self.phase1_from);
        // Per instance: per ballot, (votes, value). One ballot proposes one value per instance.
        let floor_ms = self.last_time_ms;
        let mut reports: BTreeMap<Instance, BTreeMap<Ballot, (usize, Batch)>> = BTreeMap::new();
        for (_, votes) in promises.into_values() {
            for (instance, ballot, value) in votes {
                if instance < start {
                    continue;
                }
                self.last_time_ms = self.last_time_ms.max(value.time_ms);
                reports
                    .entry(instance)
                    .or_default()
                    .entry(ballot)
                    .or_insert((0, value))
                    .0 += 1;
            }
        }
        let orphans = std::mem::take(&mut self.in_flight);
        let end = [
            reports.keys().next_back().map(|i| i + 1),
            orphans.keys().next_back().map(|i| i + 1),
            Some(self.next_instance),
            Some(start),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(start);
        let mut prev_time = floor_ms;
        for instance in start..end {
            let orphan = orphans.get(&instance);
            // Our own batch, displaced by another value, waits for its instance's decision: it
            // may still win there (another coordinator may have adopted it).
            if let Some(o) = orphan.filter(|o| o.own) {
                self.displaced.insert(instance, o.value.clone());
            }
            let votes = reports.remove(&instance);
            let chosen = votes.as_ref().and_then(|v| {
                v.iter()
                    .find(|(_, (n, _))| *n >= self.quorum)
                    .map(|(b, (_, value))| (*b, value.clone()))
            });
            let highest = votes
                .as_ref()
                .and_then(|v| v.values().next_back().map(|(_, value)| value.clone()));
            let value = match (chosen, highest) {
                (Some((ballot, value)), _) => {
                    // A quorum accepted it at one ballot: it is decided, no Phase 2 needed.
                    prev_time = value.time_ms;
                    self.decide(instance, ballot, value, &[], out);
                    continue;
                }
                (None, Some(value)) => {
                    // Still ours if the recovered value is our own batch.
                    let own = orphan.is_some_and(|o| o.own && o.value == value);
                    (value, own)
                }
                (None, None) => match orphan {
                    Some(o) => (o.value.clone(), o.own),
                    None => (Batch::skip(prev_time), true),
                },
            };
            let (value, own) = value;
            if own {
                self.displaced.remove(&instance);
            }
            prev_time = value.time_ms;
            self.propose_at(instance, value, own, out);
        }
        self.next_instance = end;
        if !self.pending.is_empty() {
            self.pending_since = self.now;
        }
        tracing::debug!(group = self.group, ballot = ?self.ballot, next = end, "phase 1 done");
        self.close_batches(wall_ms, out);
    }

    /// Closes and proposes batches while the pipeline has room and a batch is due.
    fn close_batches(&mut self, wall_ms: u64, out: &mut Outputs) {
        if !self.is_leading() {
            return;
        }
        while !self.pending.is_empty() && self.in_flight.len() < self.opts.max_in_flight {
            let full = self.pending.len() >= self.opts.max_batch_commands
                || self.pending_bytes >= self.opts.max_batch_bytes;
            let waited = self.now - self.pending_since >= self.opts.batch_delay_ticks;
            if !(full || waited || self.in_flight.is_empty()) {
                break;
            }
            let mut commands = Vec::new();
            let mut bytes = 0usize;
            while let Some(c) = self.pending.front() {
                if commands.len() == self.opts.max_batch_commands
                    || (!commands.is_empty() && bytes + c.len() > self.opts.max_batch_bytes)
                {
                    break;
                }
                bytes += c.len();
                commands.push(self.pending.pop_front().expect("front exists"));
            }
            self.pending_bytes -= bytes;
            self.pending_since = self.now;
            let value = Batch::new(self.next_time(wall_ms), commands);
            self.propose_next(value, out);
        }
    }

    fn next_time(&mut self, wall_ms: u64) -> u64 {
        self.last_time_ms = wall_ms.max(self.last_time_ms + 1);
        self.last_time_ms
    }

    /// Proposes an own batch (or skip) in the next free instance.
    fn propose_next(&mut self, value: Batch, out: &mut Outputs) {
        self.propose_at(self.next_instance, value, true, out);
        self.next_instance += 1;
    }

    fn propose_at(&mut self, instance: Instance, value: Batch, own: bool, out: &mut Outputs) {
        self.last_proposal = self.now;
        for &a in &self.acceptors {
            out.send.push(Envelope {
                to: a,
                msg: PaxosMsg::Accept {
                    group: self.group,
                    ballot: self.ballot,
                    instance,
                    value: value.clone(),
                },
            });
        }
        self.in_flight.insert(
            instance,
            InFlight {
                value,
                own,
                acks: Vec::new(),
                sent_at: self.now,
            },
        );
    }

    /// Announces `instance` decided: in full to learners, as [`PaxosMsg::Decided`] to the acceptors
    /// in `voted` (which answered its Phase 2a at `ballot`, so hold the value).
    fn decide(
        &mut self,
        instance: Instance,
        ballot: Ballot,
        value: Batch,
        voted: &[NodeId],
        out: &mut Outputs,
    ) {
        if let Some(ours) = self.displaced.remove(&instance) {
            if ours != value {
                // Our batch lost its instance for good: its commands go back to the queue.
                for cmd in ours.commands.iter().rev() {
                    self.pending_bytes += cmd.len();
                    self.pending.push_front(cmd.clone());
                }
                self.pending_since = self.now;
            }
        }
        // Equal messages in a row: the transport encodes each once.
        let (short, full): (Vec<NodeId>, Vec<NodeId>) =
            self.learners.iter().partition(|l| voted.contains(l));
        for to in short {
            out.send.push(Envelope {
                to,
                msg: PaxosMsg::Decided {
                    group: self.group,
                    instance,
                    ballot,
                },
            });
        }
        for to in full {
            out.send.push(Envelope {
                to,
                msg: PaxosMsg::Decision {
                    group: self.group,
                    instance,
                    ballot,
                    value: value.clone(),
                },
            });
        }
        out.decided.push(Decision {
            group: self.group,
            instance,
            ballot,
            value,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multicast::{Acceptor, AcceptorState};

    const G: GroupId = 0;
    const C: NodeId = 100;

    fn config(acceptors: Vec<NodeId>, options: CoordinatorOptions) -> CoordinatorConfig {
        CoordinatorConfig {
            id: C,
            group: G,
            acceptors,
            learners: vec![],
            first_instance: 1,
            min_round: 1,
            time_floor_ms: 0,
            options,
        }
    }

    fn cmd(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Delivers every message between the coordinator and the acceptors (votes count as persisted
    /// at once); returns all decisions, in the order they were made.
    fn settle(
        c: &mut Coordinator,
        accs: &mut [Acceptor],
        out: Outputs,
        wall: u64,
    ) -> Vec<Decision> {
        let mut decided = out.decided;
        let mut queue: VecDeque<Envelope> = out.send.into();
        while let Some(env) = queue.pop_front() {
            let Some(a) = accs.iter_mut().find(|a| a.id() == env.to) else {
                continue;
            };
            let o = a.step(C, env.msg);
            let from = a.id();
            for r in o.send.into_iter().chain(o.send_after_persist) {
                let o = c.step(from, r.msg, wall);
                decided.extend(o.decided);
                queue.extend(o.send);
            }
        }
        decided
    }

    #[test]
    fn options_are_validated() {
        let bad = CoordinatorOptions {
            max_pending_commands: 1,
            ..CoordinatorOptions::default()
        };
        assert!(bad.validate().is_err());
        assert!(Coordinator::new(config(vec![], CoordinatorOptions::default())).is_err());
        assert!(CoordinatorOptions::default().validate().is_ok());
    }

    #[test]
    fn first_command_goes_at_once_and_later_ones_batch_while_in_flight() {
        let mut c = Coordinator::new(config(vec![1], CoordinatorOptions::default())).unwrap();
        let mut accs = [Acceptor::new(1, G, AcceptorState::default())];
        let out = c.start();
        assert!(settle(&mut c, &mut accs, out, 10).is_empty());
        assert!(c.is_leading());
        // Idle pipeline: the batch closes at once.
        let first = c.propose(cmd("a"), 10);
        assert_eq!(c.in_flight_len(), 1);
        // While it is in flight, commands wait for the delay.
        assert!(c.propose(cmd("b"), 10).is_empty());
        assert!(c.propose(cmd("c"), 10).is_empty());
        assert_eq!(c.pending_len(), 2);
        let d = settle(&mut c, &mut accs, first, 10);
        // Deciding instance 1 empties the pipeline, so b and c close together as instance 2.
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].value.commands.len(), 1);
        assert_eq!(d[1].value.commands[..], [cmd("b"), cmd("c")]);
        assert_eq!(c.pending_len(), 0);
        assert_eq!(c.in_flight_len(), 0);
        assert_eq!(c.next_instance(), 3);
    }

    #[test]
    fn acceptors_that_voted_learn_the_decision_without_its_value() {
        // Acceptors 1, 2, 3; learners 2, 3 and 9 (9 never votes). A quorum of 1 and 2 decides.
        let mut cfg = config(vec![1, 2, 3], CoordinatorOptions::default());
        cfg.learners = vec![9, 3, 2];
        let mut c = Coordinator::new(cfg).unwrap();
        let mut accs = [1, 2, 3].map(|id| Acceptor::new(id, G, AcceptorState::default()));
        let out = c.start();
        assert!(settle(&mut c, &mut accs, out, 10).is_empty());
        let out = c.propose(cmd("a"), 10);
        let ballot = c.ballot();
        let mut sends = Vec::new();
        for from in [1, 2] {
            let accept = out.send.iter().find(|e| e.to == from).unwrap().msg.clone();
            let voted = accs[from as usize - 1].step(C, accept);
            for r in voted.send_after_persist {
                sends.extend(c.step(from, r.msg, 10).send);
            }
        }
        let short = PaxosMsg::Decided {
            group: G,
            instance: 1,
            ballot,
        };
        let full = PaxosMsg::Decision {
            group: G,
            instance: 1,
            ballot,
            value: accs[0].accepted(1).unwrap().1.clone(),
        };
        // The short form first, then the full one, so each form is encoded once.
        assert_eq!(
            sends,
            vec![
                Envelope { to: 2, msg: short },
                Envelope {
                    to: 9,
                    msg: full.clone()
                },
                Envelope { to: 3, msg: full },
            ]
        );
    }

    #[test]
    fn full_batches_close_without_waiting_and_pipeline_is_bounded() {
        let opts = CoordinatorOptions {
            max_batch_commands: 2,
            max_pending_commands: 100,
            max_in_flight: 2,
            batch_delay_ticks: 1000,
            ..CoordinatorOptions::default()
        };
        let mut c = Coordinator::new(config(vec![1], opts)).unwrap();
        let mut accs = [Acceptor::new(1, G, AcceptorState::default())];
        let out = c.start();
        settle(&mut c, &mut accs, out, 0);
        let mut sent = Outputs::default();
        for i in 0..9 {
            sent.extend(c.propose(Bytes::from(vec![i]), 0));
        }
        // Instance 1 = [0] (idle pipeline), instance 2 = [1, 2] (full); then the window is full.
        assert_eq!(c.in_flight_len(), 2);
        assert_eq!(c.pending_len(), 6);
        let d = settle(&mut c, &mut accs, sent, 0);
        let sizes: Vec<usize> = d.iter().map(|d| d.value.commands.len()).collect();
        assert_eq!(sizes, vec![1, 2, 2, 2, 2]);
        let all: Vec<u8> = d
            .iter()
            .flat_map(|d| d.value.commands.iter().map(|c| c[0]))
            .collect();
        assert_eq!(all, (0..9).collect::<Vec<u8>>());
    }

    #[test]
    fn timestamps_strictly_increase_even_if_the_clock_goes_back() {
        let mut c = Coordinator::new(config(vec![1], CoordinatorOptions::default())).unwrap();
        let mut accs = [Acceptor::new(1, G, AcceptorState::default())];
        let out = c.start();
        settle(&mut c, &mut accs, out, 0);
        let mut times = Vec::new();
        for wall in [500, 400, 400, 900] {
            let out = c.propose(cmd("x"), wall);
            times.extend(
                settle(&mut c, &mut accs, out, wall)
                    .into_iter()
                    .map(|d| d.value.time_ms),
            );
        }
        assert_eq!(times, vec![500, 501, 502, 900]);
    }

    #[test]
    fn idle_coordinator_decides_skips() {
        let opts = CoordinatorOptions {
            skip_after_ticks: Some(3),
            ..CoordinatorOptions::default()
        };
        let mut c = Coordinator::new(config(vec![1], opts)).unwrap();
        let mut accs = [Acceptor::new(1, G, AcceptorState::default())];
        let out = c.start();
        settle(&mut c, &mut accs, out, 0);
        let mut decided = Vec::new();
        for _ in 0..7 {
            let out = c.tick(0);
            decided.extend(settle(&mut c, &mut accs, out, 0));
        }
        assert_eq!(decided.len(), 2, "a skip every 3 ticks");
        assert!(decided.iter().all(|d| d.value.is_skip()));
        assert_eq!(decided[1].instance, 2);
    }

    #[test]
    fn phase1_recovers_votes_and_fills_gaps_with_skips() {
        // Acceptors 1..3 hold votes of an earlier coordinator (ballot 1.7):
        // instance 1 accepted by all (chosen), instance 3 by one acceptor only.
        let old = Ballot::new(1, 7);
        let v1 = Batch::new(5, vec![cmd("one")]);
        let v3 = Batch::new(6, vec![cmd("three")]);
        let mut states = vec![AcceptorState::default(); 3];
        for s in &mut states {
            s.promised = old;
            s.accepted.insert(1, (old, v1.clone()));
        }
        states[0].accepted.insert(3, (old, v3.clone()));
        let mut accs: Vec<Acceptor> = states
            .into_iter()
            .enumerate()
            .map(|(i, s)| Acceptor::new(i as NodeId + 1, G, s))
            .collect();
        let mut c = Coordinator::new(config(vec![1, 2, 3], CoordinatorOptions::default())).unwrap();
        let out = c.start();
        let d = settle(&mut c, &mut accs, out, 100);
        let by_instance: BTreeMap<Instance, Batch> =
            d.into_iter().map(|d| (d.instance, d.value)).collect();
        assert_eq!(by_instance.get(&1), Some(&v1));
        assert!(by_instance[&2].is_skip());
        assert_eq!(by_instance.get(&3), Some(&v3));
        assert_eq!(c.next_instance(), 4);
        // New batches are stamped after every recovered timestamp.
        let out = c.propose(cmd("new"), 1);
        let d = settle(&mut c, &mut accs, out, 1);
        assert_eq!(d[0].instance, 4);
        assert_eq!(d[0].value.time_ms, 7);
    }

    #[test]
    fn preempted_coordinator_prepares_again_with_a_higher_round() {
        let mut accs = [Acceptor::new(1, G, AcceptorState::default())];
        accs[0].step(
            9,
            PaxosMsg::Prepare {
                group: G,
                ballot: Ballot::new(4, 9),
                from: 1,
            },
        );
        let opts = CoordinatorOptions {
            retry_ticks: 2,
            ..CoordinatorOptions::default()
        };
        let mut c = Coordinator::new(config(vec![1], opts)).unwrap();
        let out = c.start();
        settle(&mut c, &mut accs, out, 0);
        assert!(!c.is_leading());
        assert_eq!(c.ballot(), Ballot::new(5, C));
        let mut out = c.tick(0);
        out.extend(c.tick(0));
        settle(&mut c, &mut accs, out, 0);
        assert!(c.is_leading());
    }
}
