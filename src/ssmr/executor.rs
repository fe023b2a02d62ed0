//! [`Executor`]: one replica's S-SMR state machine (Algorithm 1 with Lamport zxids and state
//! prefetching). Inputs are delivered commands and received signals; outputs are signals to send
//! and executed commands. No I/O, no clock, no threads.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{CmdId, Error, PartitionId, Service, Signal};
use crate::multicast::GroupId;

/// Signals of executed multi-partition commands kept for re-sending ([`Executor::sent_signals_from`]).
pub const RESEND_MEMORY: usize = 16_384;

/// A multi-partition command delivered behind more queued commands than this is not prefetched
/// (its signal leaves at the head): bounds the scan of the queue's writes that prefetching needs.
pub const PREFETCH_SCAN_LIMIT: usize = 4096;

/// The largest clock a signal may carry; larger ones are dropped as garbage, which leaves 2^62
/// writes of headroom before a clock could overflow.
pub const MAX_CLOCK: i64 = i64::MAX / 2;

/// A signal to send to every replica of every partition in `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalOut {
    /// The other partitions of the command's destination set, sorted.
    pub to: Vec<PartitionId>,
    pub signal: Signal,
}

/// A command this replica executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed<O> {
    pub id: CmdId,
    /// The command's zxid: the partition's clock after it executed.
    pub zxid: i64,
    pub output: O,
}

/// What one input produced.
///
/// The driver sends `signals` (in any order, as soon as it can: a signal never waits for a
/// reply) and hands `outputs`, in order, to whoever replies.
#[derive(Debug, PartialEq, Eq)]
pub struct Step<O> {
    pub signals: Vec<SignalOut>,
    /// In execution order.
    pub outputs: Vec<Executed<O>>,
}

impl<O> Default for Step<O> {
    fn default() -> Self {
        Step {
            signals: Vec::new(),
            outputs: Vec::new(),
        }
    }
}

impl<O> Step<O> {
    pub fn is_empty(&self) -> bool {
        self.signals.is_empty() && self.outputs.is_empty()
    }
}

/// Counters, monotonic since the executor was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Commands executed (single- and multi-partition).
    pub executed: u64,
    /// Multi-partition commands executed.
    pub multi_partition: u64,
    /// Signals produced (one per multi-partition command, whatever the number of receivers).
    pub signals_sent: u64,
    /// Signals sent at delivery while earlier commands were still queued (state prefetching).
    pub prefetched: u64,
    /// Of those, signals sent while another multi-partition command was queued: their clock is
    /// relative to its zxid.
    pub prefetched_behind_multi: u64,
    /// Signals recorded: the first one from each other partition for each command.
    pub signals_received: u64,
    /// Signals dropped: duplicates, stale ones (command already executed), from this partition,
    /// for a command outside the global group or with a clock outside `0..=MAX_CLOCK`.
    pub signals_ignored: u64,
    /// Duplicates that differ from the first signal of their partition: a service that is not
    /// deterministic. Always 0 with a correct service.
    pub signals_divergent: u64,
    /// Multi-partition commands that reached the head of the queue before every signal they need.
    pub waits: u64,
}

/// What this replica sent for a multi-partition command: its clock (relative to `base`'s zxid
/// when `base` is set) and facts.
#[derive(Debug)]
struct Sent {
    clock: i64,
    base: Option<CmdId>,
    facts: Bytes,
}

/// A received signal's payload (its clock relative to `base`'s zxid when `base` is set).
#[derive(Debug)]
struct Received {
    clock: i64,
    base: Option<CmdId>,
    facts: Bytes,
}

/// A delivered command not yet executed.
struct Pending<S: Service> {
    id: CmdId,
    cmd: S::Command,
    /// Sorted, deduplicated, holds this partition.
    dest: Vec<PartitionId>,
    /// The keys it writes, asked of the service only when a prefetch scans the queue.
    writes: Option<Vec<S::Key>>,
    is_write: bool,
    /// Set once the signal left (at delivery when prefetched, else at the head).
    sent: Option<Sent>,
    /// The head was found waiting for signals (counted once in [`Metrics::waits`]).
    waited: bool,
}

impl<S: Service> Pending<S> {
    fn is_multi(&self) -> bool {
        self.dest.len() > 1
    }
}

/// One replica's executor for partition `partition`.
///
/// Commands execute one at a time in delivery order. A multi-partition command at the head of the
/// queue waits, without blocking anything but the commands behind it, until a signal from every
/// other partition of its destination set has arrived; later inputs resume execution.
///
/// Invariants:
/// - `clock` is the zxid of the last write this partition executed (or the clock it adopted from
///   a multi-partition command); it never decreases, and every write executed here takes a zxid
///   strictly greater than the previous one.
/// - Multi-partition commands come from the global group in strictly increasing [`CmdId`] order;
///   `received` only holds signals for commands after the last executed multi-partition command,
///   so stale and duplicate signals cost no memory. Signals for commands this replica has not
///   delivered yet are kept; there are at most as many as this replica lags behind the fastest
///   replica of its partition, times the other partitions.
/// - A prefetched signal carries exactly the clock and facts the command executes with: it is
///   sent only when no queued command writes a key it reads, and either no multi-partition
///   command is queued (the clock is then `clock` + the number of queued writes) or the last one
///   queued, `tail`, has a destination holding the command's (the clock is then `tail`'s zxid +
///   the writes queued after it, and every receiver will know `tail`'s zxid: `zxids`).
/// - `zxids` holds the zxids of the last [`RESEND_MEMORY`] multi-partition commands executed.
/// - `pending_writes` counts, per key, the queued commands that write it; `queued_writes` and
///   `queued_multi` count the queued writes and multi-partition commands.
pub struct Executor<S: Service> {
    partition: PartitionId,
    global_group: GroupId,
    service: S,
    clock: i64,
    last_multi_delivered: Option<CmdId>,
    last_multi_executed: Option<CmdId>,
    queue: VecDeque<Pending<S>>,
    queued_writes: i64,
    queued_multi: usize,
    /// The last multi-partition command queued, its destination, and the writes queued after it.
    tail: Option<(CmdId, Vec<PartitionId>, i64)>,
    zxids: BTreeMap<CmdId, i64>,
    received: BTreeMap<CmdId, BTreeMap<PartitionId, Received>>,
    /// The signals of the last [`RESEND_MEMORY`] multi-partition commands executed here.
    resend: BTreeMap<CmdId, SignalOut>,
    metrics: Metrics,
}

impl<S: Service> Executor<S> {
    /// A fresh executor for `partition`, whose multi-partition commands come from `global_group`,
    /// with clock 0.
    pub fn new(partition: PartitionId, global_group: GroupId, service: S) -> Executor<S> {
        Executor::resume(partition, global_group, service, 0, None)
    }

    /// An executor restarting from a checkpoint of `service` taken with clock `clock`, after
    /// executing the multi-partition command `last_multi` (if any).
    pub fn resume(
        partition: PartitionId,
        global_group: GroupId,
        service: S,
        clock: i64,
        last_multi: Option<CmdId>,
    ) -> Executor<S> {
        Executor {
            partition,
            global_group,
            service,
            clock,
            last_multi_delivered: last_multi,
            last_multi_executed: last_multi,
            queue: VecDeque::new(),
            queued_writes: 0,
            tail: None,
            zxids: BTreeMap::new(),
            queued_multi: 0,
            received: BTreeMap::new(),
            resend: BTreeMap::new(),
            metrics: Metrics::default(),
        }
    }

    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// The partition's clock: the last zxid it executed or adopted.
    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// The last multi-partition command executed (part of a checkpoint, with `clock`).
    pub fn last_multi(&self) -> Option<CmdId> {
        self.last_multi_executed
    }

    pub fn service(&self) -> &S {
        &self.service
    }

    pub fn into_service(self) -> S {
        self.service
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Delivered commands not yet executed.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Commands with at least one buffered signal.
    pub fn buffered_signals(&self) -> usize {
        self.received.len()
    }

    /// The multi-partition command at the head of the queue while it waits for signals, and the
    /// partitions it has no signal from yet. A driver that sees the same answer for long asks
    /// those partitions to send again (signals are lost with a broken link or a restart).
    pub fn waiting(&self) -> Option<(CmdId, Vec<PartitionId>)> {
        let head = self
            .queue
            .front()
            .filter(|h| h.is_multi() && h.sent.is_some())?;
        let got = self.received.get(&head.id);
        let missing: Vec<PartitionId> = head
            .dest
            .iter()
            .copied()
            .filter(|p| *p != self.partition && got.is_none_or(|g| !g.contains_key(p)))
            .collect();
        (!missing.is_empty()).then_some((head.id, missing))
    }

    /// The signals this replica still has for `cmd` and the multi-partition commands after it that
    /// involve partition `to`, in command order, at most `max`: what a replica that missed them
    /// (restarted, or cut off) needs to execute that stretch without asking once per command. It
    /// has a signal while its command is queued with the signal sent, and for the last
    /// [`RESEND_MEMORY`] multi-partition commands executed.
    pub fn sent_signals_from(&self, cmd: CmdId, to: PartitionId, max: usize) -> Vec<SignalOut> {
        let executed = self.resend.range(cmd..).map(|(_, s)| s.clone());
        let queued = self.queue.iter().filter(|p| p.id >= cmd).filter_map(|p| {
            let sent = p.sent.as_ref()?;
            Some(signal_out(
                self.partition,
                p.id,
                &p.dest,
                sent.clock,
                sent.base,
                sent.facts.clone(),
            ))
        });
        executed
            .chain(queued)
            .filter(|s| s.to.contains(&to))
            .take(max)
            .collect()
    }

    /// The signals kept for re-sending ([`Executor::sent_signals_from`]) of executed
    /// multi-partition commands, oldest first. A checkpoint must keep them: a replica restarted from it has
    /// executed those commands and will not signal them again, while a replica of another
    /// partition (restarted from an older checkpoint, or cut off) may still wait for them; with
    /// every replica of this partition restarted, nobody could send them any more.
    pub fn remembered_signals(&self) -> Vec<SignalOut> {
        self.resend.values().cloned().collect()
    }

    /// Restores signals a checkpoint kept ([`Executor::remembered_signals`]), after
    /// [`Executor::resume`]. Signals of other partitions or of commands after the last executed
    /// multi-partition command are ignored; at most [`RESEND_MEMORY`] are kept.
    pub fn remember_signals(&mut self, signals: impl IntoIterator<Item = SignalOut>) {
        for s in signals {
            let executed = self
                .last_multi_executed
                .is_some_and(|last| s.signal.cmd <= last);
            if s.signal.from == self.partition && executed {
                self.resend.insert(s.signal.cmd, s);
            }
        }
        while self.resend.len() > RESEND_MEMORY {
            self.resend.pop_first();
        }
    }

    /// Delivers `cmd` and executes every command that can run. See [`Executor::enqueue`].
    pub fn deliver(&mut self, id: CmdId, cmd: S::Command) -> Result<Step<S::Output>, Error> {
        let signals = self.enqueue(id, cmd)?;
        let mut step = self.run(usize::MAX);
        step.signals.splice(0..0, signals);
        Ok(step)
    }

    /// Records `signal` and executes every command that can run. See [`Executor::receive`].
    pub fn on_signal(&mut self, signal: Signal) -> Step<S::Output> {
        self.receive(signal);
        self.run(usize::MAX)
    }

    /// Delivers `cmd` without executing anything: queues it and, for a multi-partition command
    /// whose facts and clock are already known, returns its signal at once (state prefetching).
    /// A driver that delivers a batch enqueues all of it, sends the signals, then calls
    /// [`Executor::run`].
    pub fn enqueue(&mut self, id: CmdId, cmd: S::Command) -> Result<Vec<SignalOut>, Error> {
        let mut dest = self.service.dest(&cmd);
        dest.sort_unstable();
        dest.dedup();
        if dest.is_empty() {
            return Err(Error::EmptyDest { id });
        }
        if dest.binary_search(&self.partition).is_err() {
            return Err(Error::NotInDest {
                id,
                partition: self.partition,
            });
        }
        let multi = dest.len() > 1;
        let mut signals = Vec::new();
        let mut sent = None;
        if multi {
            if id.group != self.global_group {
                return Err(Error::MultiOutsideGlobalGroup {
                    id,
                    global: self.global_group,
                });
            }
            if let Some(last) = self.last_multi_delivered.filter(|last| id <= *last) {
                return Err(Error::OutOfOrder { id, last });
            }
            self.last_multi_delivered = Some(id);
            let clock = match &self.tail {
                _ if self.queued_multi == 0 => Some((self.clock + self.queued_writes, None)),
                Some((tail, tail_dest, after))
                    if dest.iter().all(|p| tail_dest.binary_search(p).is_ok()) =>
                {
                    Some((*after, Some(*tail)))
                }
                _ => None,
            };
            if let Some((clock, base)) = clock.filter(|_| self.reads_unwritten(&cmd)) {
                let facts = self.service.facts(&cmd);
                if !self.queue.is_empty() {
                    self.metrics.prefetched += 1;
                }
                if base.is_some() {
                    self.metrics.prefetched_behind_multi += 1;
                }
                self.metrics.signals_sent += 1;
                signals.push(signal_out(
                    self.partition,
                    id,
                    &dest,
                    clock,
                    base,
                    facts.clone(),
                ));
                sent = Some(Sent { clock, base, facts });
            }
            self.queued_multi += 1;
        }
        let is_write = self.service.is_write(&cmd);
        self.queued_writes += i64::from(is_write);
        if multi {
            self.tail = Some((id, dest.clone(), 0));
        } else if let Some((_, _, after)) = &mut self.tail {
            *after += i64::from(is_write);
        }
        self.queue.push_back(Pending {
            id,
            cmd,
            dest,
            writes: None,
            is_write,
            sent,
            waited: false,
        });
        Ok(signals)
    }

    /// Records a signal from another partition, without executing anything. Stale, duplicate and
    /// misaddressed signals are dropped (and counted).
    pub fn receive(&mut self, signal: Signal) {
        let stale = self
            .last_multi_executed
            .is_some_and(|last| signal.cmd <= last);
        if signal.from == self.partition
            || signal.cmd.group != self.global_group
            || stale
            || !(0..=MAX_CLOCK).contains(&signal.clock)
        {
            self.metrics.signals_ignored += 1;
            return;
        }
        let per_cmd = self.received.entry(signal.cmd).or_default();
        match per_cmd.get(&signal.from) {
            Some(first) => {
                self.metrics.signals_ignored += 1;
                // A prefetched and a plain signal state one clock in two forms.
                let clock_differs = first.base == signal.base && first.clock != signal.clock;
                if clock_differs || first.facts != signal.facts {
                    self.metrics.signals_divergent += 1;
                    tracing::warn!(
                        cmd = %signal.cmd,
                        from = signal.from,
                        first_clock = first.clock,
                        clock = signal.clock,
                        "replicas of one partition sent different signals"
                    );
                }
            }
            None => {
                self.metrics.signals_received += 1;
                per_cmd.insert(
                    signal.from,
                    Received {
                        clock: signal.clock,
                        base: signal.base,
                        facts: signal.facts,
                    },
                );
            }
        }
    }

    /// Whether no queued command writes a key `cmd` reads, so its facts are final (false when the
    /// queue is too long to scan: prefetching is only an optimisation). Each queued command's
    /// writes are asked of the service once, and only while multi-partition commands flow: a
    /// local-only load pays nothing for prefetching.
    fn reads_unwritten(&mut self, cmd: &S::Command) -> bool {
        let reads = self.service.reads(cmd);
        if reads.is_empty() {
            return true;
        }
        if self.queue.len() > PREFETCH_SCAN_LIMIT {
            return false;
        }
        let service = &self.service;
        self.queue.iter_mut().all(|p| {
            p.writes
                .get_or_insert_with(|| service.writes(&p.cmd))
                .iter()
                .all(|w| !reads.contains(w))
        })
    }

    /// Executes up to `max` queued commands, in order, stopping early at a multi-partition command
    /// still waiting for signals (whose own signal then leaves, if it has not yet).
    pub fn run(&mut self, max: usize) -> Step<S::Output> {
        let mut step = Step::default();
        while step.outputs.len() < max && self.head_can_run(&mut step.signals) {
            let head = self.queue.pop_front().expect("head_can_run saw a head");
            let executed = self.execute(head);
            step.outputs.push(executed);
        }
        step
    }

    /// Whether the head of the queue can execute now. A multi-partition head first sends its
    /// signal if it has not yet: nothing is queued ahead of it, so the clock and state are its own.
    fn head_can_run(&mut self, signals: &mut Vec<SignalOut>) -> bool {
        let Some(head) = self.queue.front_mut() else {
            return false;
        };
        if !head.is_multi() {
            return true;
        }
        if head.sent.is_none() {
            let facts = self.service.facts(&head.cmd);
            signals.push(signal_out(
                self.partition,
                head.id,
                &head.dest,
                self.clock,
                None,
                facts.clone(),
            ));
            self.metrics.signals_sent += 1;
            head.sent = Some(Sent {
                clock: self.clock,
                base: None,
                facts,
            });
        }
        let partition = self.partition;
        if let Some(got) = self.received.get_mut(&head.id) {
            // A base this replica has not executed (restarted from a later checkpoint, or a
            // sender that broke the rule) cannot be resolved: forget the signal, so `waiting`
            // names its partition and the driver asks for it again (re-sent in plain form).
            let zxids = &self.zxids;
            let before = got.len();
            got.retain(|_, r| r.base.is_none_or(|b| zxids.contains_key(&b)));
            self.metrics.signals_ignored += (before - got.len()) as u64;
        }
        let ready = self.received.get(&head.id).is_some_and(|got| {
            head.dest
                .iter()
                .all(|p| *p == partition || got.contains_key(p))
        });
        if !ready && !head.waited {
            head.waited = true;
            self.metrics.waits += 1;
        }
        ready
    }

    /// A signalled clock as a zxid: `clock` itself, or `base`'s zxid + `clock`.
    fn resolve(&self, clock: i64, base: Option<CmdId>) -> Option<i64> {
        match base {
            None => Some(clock),
            Some(b) => self.zxids.get(&b).map(|z| z + clock),
        }
    }

    /// Executes the command just taken off the head of the queue.
    fn execute(&mut self, p: Pending<S>) -> Executed<S::Output> {
        self.queued_writes -= i64::from(p.is_write);
        let step = i64::from(p.is_write);
        let (zxid, output) = if p.is_multi() {
            self.queued_multi -= 1;
            let sent = p
                .sent
                .expect("a multi-partition command signals before it executes");
            let sent_clock = self.resolve(sent.clock, sent.base);
            assert_eq!(
                sent_clock,
                Some(self.clock),
                "command {}: signalled clock differs from the clock it executes at",
                p.id
            );
            debug_assert!(
                sent.facts == self.service.facts(&p.cmd),
                "command {}: prefetched facts went stale (service reads/writes incomplete?)",
                p.id
            );
            let mut got = self.received.remove(&p.id).unwrap_or_default();
            // Everything up to this command is now stale.
            self.received = self.received.split_off(&p.id);
            self.resend.insert(
                p.id,
                signal_out(
                    self.partition,
                    p.id,
                    &p.dest,
                    self.clock,
                    None,
                    sent.facts.clone(),
                ),
            );
            if self.resend.len() > RESEND_MEMORY {
                self.resend.pop_first();
            }
            let mut facts = BTreeMap::new();
            let mut max_clock = self.clock;
            facts.insert(self.partition, sent.facts);
            for q in p.dest.iter().filter(|q| **q != self.partition) {
                let r = got.remove(q).expect("execute only once every signal is in");
                let clock = self
                    .resolve(r.clock, r.base)
                    .expect("head_can_run kept only resolvable signals");
                max_clock = max_clock.max(clock);
                facts.insert(*q, r.facts);
            }
            let zxid = max_clock + step;
            self.zxids.insert(p.id, zxid);
            if self.zxids.len() > RESEND_MEMORY {
                self.zxids.pop_first();
            }
            self.last_multi_executed = Some(p.id);
            self.metrics.multi_partition += 1;
            (zxid, self.service.execute(&p.cmd, zxid, &facts))
        } else {
            let zxid = self.clock + step;
            (zxid, self.service.execute(&p.cmd, zxid, &BTreeMap::new()))
        };
        debug_assert!(zxid >= self.clock && (!p.is_write || zxid > self.clock));
        self.clock = zxid;
        self.metrics.executed += 1;
        Executed {
            id: p.id,
            zxid,
            output,
        }
    }
}

/// The signal `from` sends for command `id` to the other partitions of `dest` (`clock` relative
/// to `base`'s zxid when `base` is set).
fn signal_out(
    from: PartitionId,
    id: CmdId,
    dest: &[PartitionId],
    clock: i64,
    base: Option<CmdId>,
    facts: Bytes,
) -> SignalOut {
    SignalOut {
        to: dest.iter().copied().filter(|p| *p != from).collect(),
        signal: Signal {
            cmd: id,
            from,
            clock,
            base,
            facts,
        },
    }
}

impl<S: Service> std::fmt::Debug for Executor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("partition", &self.partition)
            .field("clock", &self.clock)
            .field("queued", &self.queue.len())
            .field("last_multi_executed", &self.last_multi_executed)
            .field("buffered_signals", &self.received.len())
            .field("metrics", &self.metrics)
            .finish()
    }
}
