//! A seeded deterministic simulation of three [`Member`]s (nodes 1..=3) in one or two Paxos
//! groups, merged round-robin.
//!
//! Fault model (all choices come from one splitmix64 stream seeded per run; the scenario's rates
//! are drawn from the seed too):
//! - Time advances in 1 ms steps; every live node ticks each step.
//! - Network: every message between two nodes takes a random latency (so messages reorder), may be
//!   dropped, and, except [`PaxosMsg::Forward`], may be duplicated. Links are cut and healed, one
//!   direction at a time or all links of one node (the leader, often). A message on a cut link is
//!   lost. Messages a node sends to itself are never lost (they are local calls in a driver).
//! - Disk: a [`MemVoteStore`] plus an unsynced list. A node's votes become durable only when its
//!   simulated fsync completes (random delay); only then are the `send_after_persist` messages
//!   and the `delivered` instances produced so far released, in order.
//! - Crash: the node loses its unsynced votes (an fsync in progress completes or not, at random),
//!   the messages and deliveries waiting for them, and the messages in flight to it. It restarts
//!   later from its store ([`VoteStore::load`]) and its replica's last checkpoint.
//! - Replica: the commands delivered, in order. It checkpoints at random moments (positions per
//!   group and the delivered prefix) and reports them with [`Member::checkpointed`].
//! - Clients propose unique commands (a u64) at random live nodes in random groups.
//!
//! Checked at every event: a ballot proposes one value per instance; a decided instance never
//! changes (every [`Decision`] in `decided` and
//! every [`PaxosMsg::Decision`] sent); each group is delivered in consecutive instance order; every
//! replica's delivered sequence (the checkpointed prefix plus what it delivered since its last
//! restart) is a prefix of one common merged sequence; no command is delivered twice; only
//! proposed commands are delivered.
//!
//! Liveness phase at the end of each run: heal every link, restart every node, stop drops and
//! crashes, let the groups settle, then propose more commands: every node must deliver all of them
//! within a bounded simulated time, and each group must end with exactly one leader that every
//! node follows. Commands proposed during faults may be lost (a leader that steps down drops its
//! queue; a forward to a deposed leader is dropped); they are counted and reported.
//!
//! `VOLERY_SEED=<u64>` replays one seed; `VOLERY_SIM_SEEDS=<n>` runs seeds `0..n` instead of the
//! default count.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::*;
use crate::testkit::sim_disk::SimDisk;
use crate::testkit::Rng;

/// Seeds run by default (kept small so the test stays fast in the dev profile).
const DEFAULT_SEEDS: u64 = 200;
const NODES: [NodeId; 3] = [1, 2, 3];
const GROUPS: [GroupId; 2] = [10, 20];
/// Quiet time after healing before liveness commands are proposed.
const SETTLE_MS: u64 = 1_500;
/// Time over which liveness commands are proposed.
const LIVENESS_PROPOSE_MS: u64 = 500;
/// Time after the last liveness command within which every node must deliver it.
const LIVENESS_BUDGET_MS: u64 = 3_000;

/// Rates and sizes of one run, drawn from its seed ("swarm testing").
#[derive(Debug, Clone)]
struct Scenario {
    groups: Vec<GroupId>,
    fault_ms: u64,
    latency_max_ms: u64,
    drop_ppm: u64,
    dup_ppm: u64,
    fsync_max_ms: u64,
    /// Per node and ms.
    crash_ppm: u64,
    /// Per ms: every node crashes at once.
    power_failure_ppm: u64,
    /// Per leadership won: the new leader crashes within 40 ms.
    new_leader_crash_ppm: u64,
    down_max_ms: u64,
    /// Per ms.
    partition_ppm: u64,
    heal_ppm: u64,
    /// Per ms.
    propose_ppm: u64,
    /// Per node and ms.
    checkpoint_ppm: u64,
    skew_max_ms: u64,
    /// Periodic skips of an idle coordinator (the fallback of demand-driven ones), in ticks.
    skip_after_ticks: u64,
    skip_lookahead_ms: u64,
    /// Per group, its acceptors: all nodes, or one or two (the others learn only).
    acceptors: Vec<Vec<NodeId>>,
}

impl Scenario {
    fn draw(rng: &mut Rng) -> Scenario {
        let groups = if rng.below(4) == 0 { 1 } else { 2 };
        // Some runs have slow disks and crash storms.
        let slow_disk = rng.below(4) == 0;
        let storm = rng.below(4) == 0;
        let mut sc = Scenario {
            groups: GROUPS[..groups].to_vec(),
            fault_ms: rng.range(2_000, 5_000),
            latency_max_ms: rng.range(1, 12),
            drop_ppm: rng.range(0, 100_000),
            dup_ppm: rng.range(0, 50_000),
            fsync_max_ms: rng.range(1, if slow_disk { 25 } else { 8 }),
            crash_ppm: rng.range(0, if storm { 6_000 } else { 1_000 }),
            power_failure_ppm: rng.range(0, 300),
            new_leader_crash_ppm: if rng.below(3) == 0 {
                rng.range(0, 500_000)
            } else {
                0
            },
            down_max_ms: rng.range(50, 1_500),
            partition_ppm: rng.range(0, 2_000),
            heal_ppm: rng.range(500, 3_000),
            propose_ppm: rng.range(50_000, 400_000),
            checkpoint_ppm: rng.range(1_000, 10_000),
            skew_max_ms: rng.range(0, 50),
            skip_after_ticks: if rng.percent(50) {
                5
            } else {
                rng.range(20, 200)
            },
            skip_lookahead_ms: rng.range(0, 10),
            acceptors: Vec::new(),
        };
        sc.acceptors = (0..groups)
            .map(|_| {
                if rng.percent(50) {
                    return NODES.to_vec();
                }
                let mut subset = NODES.to_vec();
                subset.remove(rng.below(3) as usize);
                if rng.percent(50) {
                    subset.remove(rng.below(2) as usize);
                }
                subset
            })
            .collect();
        sc
    }

    fn options(&self) -> MemberOptions {
        MemberOptions {
            coordinator: CoordinatorOptions {
                max_batch_commands: 4,
                max_batch_bytes: 1 << 16,
                batch_delay_ticks: 1,
                max_in_flight: 3,
                max_pending_commands: 64,
                retry_ticks: 20,
                skip_after_ticks: Some(self.skip_after_ticks),
                skip_lookahead_ms: self.skip_lookahead_ms,
            },
            heartbeat_ms: 10,
            election_ms: 80,
            startup_listen_ms: 80,
            catch_up_ms: 30,
            catch_up_batch: 16,
        }
    }
}

/// What a replica executed: the merged sequence of instances and their commands.
#[derive(Clone, Debug)]
struct Replica {
    /// Per group (in merge order), the next instance to execute.
    next: Vec<Instance>,
    /// Instances executed (an index into [`World::common`]).
    deliveries: usize,
    commands: Vec<u64>,
}

/// Released once the votes produced before it are durable.
enum Held {
    Send(Envelope),
    Deliver(Delivery),
}

struct SimNode {
    id: NodeId,
    /// `None` while crashed.
    member: Option<Member>,
    disk: SimDisk<Held>,
    replica: Replica,
    checkpoint: Replica,
    skew_ms: u64,
    fsync_max_ms: u64,
    down_until: u64,
    /// A crash scheduled for a node that just became leader.
    crash_at: Option<u64>,
}

#[derive(Debug, Default)]
struct Stats {
    delivered_msgs: u64,
    dropped: u64,
    duplicated: u64,
    crashes: u64,
    partitions: u64,
    checkpoints: u64,
    fsyncs: u64,
    leader_changes: u64,
    /// Instances stamped earlier than an instance before them in their group.
    time_regressions: u64,
    max_regression_ms: u64,
}

struct World {
    seed: u64,
    rng: Rng,
    sc: Scenario,
    opts: MemberOptions,
    now: u64,
    nodes: Vec<SimNode>,
    /// In-flight messages by (delivery time, send order).
    net: BTreeMap<(u64, u64), (NodeId, Envelope)>,
    net_seq: u64,
    /// Cut directed links (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    faults: bool,
    decided: BTreeMap<(GroupId, Instance), Batch>,
    /// The value each ballot proposed in each instance (one at most).
    proposals: BTreeMap<(GroupId, Instance, Ballot), Batch>,
    /// The one merged sequence every replica's history is a prefix of.
    common: Vec<(GroupId, Instance)>,
    common_commands: Vec<u64>,
    /// Per group, the timestamp of the last instance in `common`.
    group_time: BTreeMap<GroupId, u64>,
    delivered_at: BTreeMap<u64, usize>,
    /// Command -> proposed in the liveness phase.
    proposed: BTreeMap<u64, bool>,
    next_cmd: u64,
    stats: Stats,
}

fn encode(n: u64) -> Bytes {
    Bytes::copy_from_slice(&n.to_be_bytes())
}

fn decode(b: &Bytes) -> u64 {
    u64::from_be_bytes(b[..].try_into().expect("commands are 8 bytes"))
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let sc = Scenario::draw(&mut rng);
        let opts = sc.options();
        let empty = Replica {
            next: vec![1; sc.groups.len()],
            deliveries: 0,
            commands: Vec::new(),
        };
        let nodes = NODES
            .iter()
            .map(|&id| SimNode {
                id,
                member: None,
                disk: SimDisk::default(),
                replica: empty.clone(),
                checkpoint: empty.clone(),
                skew_ms: rng.range(0, sc.skew_max_ms),
                // One node in four has a disk several times slower than the others'. Phase 1
                // must fit in `election_ms` (80): two fsyncs and a round trip; a slower disk makes
                // its node, the lowest id alive, restart Phase 1 forever with the group leaderless.
                fsync_max_ms: if rng.below(4) == 0 {
                    (sc.fsync_max_ms * 6).min(30)
                } else {
                    sc.fsync_max_ms
                },
                down_until: 0,
                crash_at: None,
            })
            .collect();
        let mut w = World {
            seed,
            rng,
            sc,
            opts,
            now: 1_000,
            nodes,
            net: BTreeMap::new(),
            net_seq: 0,
            cut: BTreeSet::new(),
            faults: true,
            decided: BTreeMap::new(),
            proposals: BTreeMap::new(),
            common: Vec::new(),
            common_commands: Vec::new(),
            group_time: BTreeMap::new(),
            delivered_at: BTreeMap::new(),
            proposed: BTreeMap::new(),
            next_cmd: 0,
            stats: Stats::default(),
        };
        for i in 0..w.nodes.len() {
            w.restart(i);
        }
        w
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {} at {} ms: {what}\nscenario {:?}",
            self.seed, self.now, self.sc
        );
    }

    fn wall(&self, i: usize) -> u64 {
        self.now + self.nodes[i].skew_ms
    }

    // ---- invariants -------------------------------------------------------------------------

    /// A value-less decision names a ballot whose proposal is the decided value.
    fn check_decided(&mut self, group: GroupId, instance: Instance, ballot: Ballot) {
        match self.proposals.get(&(group, instance, ballot)).cloned() {
            Some(value) => self.check_decision(group, instance, &value),
            None => self.fail(format!(
                "instance {instance} of group {group} decided at {ballot:?}, never proposed"
            )),
        }
    }

    fn check_decision(&mut self, group: GroupId, instance: Instance, value: &Batch) {
        match self.decided.get(&(group, instance)) {
            Some(v) if v != value => self.fail(format!(
                "instance {instance} of group {group} decided {v:?}, now {value:?}"
            )),
            Some(_) => {}
            None => {
                self.decided.insert((group, instance), value.clone());
            }
        }
    }

    fn deliver_to_replica(&mut self, i: usize, d: Delivery) {
        let id = self.nodes[i].id;
        let Some(gi) = self.sc.groups.iter().position(|&g| g == d.group) else {
            self.fail(format!("node {id} delivered unknown group {}", d.group));
        };
        if d.instance != self.nodes[i].replica.next[gi] {
            self.fail(format!(
                "node {id} delivered instance {} of group {}, expected {}",
                d.instance, d.group, self.nodes[i].replica.next[gi]
            ));
        }
        if self.decided.get(&(d.group, d.instance)) != Some(&d.value) {
            self.fail(format!(
                "node {id} delivered ({}, {}) = {:?}, decided {:?}",
                d.group,
                d.instance,
                d.value,
                self.decided.get(&(d.group, d.instance))
            ));
        }
        let k = self.nodes[i].replica.deliveries;
        match self.common.get(k) {
            Some(&at) if at != (d.group, d.instance) => self.fail(format!(
                "node {id} delivered ({}, {}) at merged position {k}, others delivered {at:?}",
                d.group, d.instance
            )),
            Some(_) => {}
            None => {
                // Not an invariant: a pipelined batch whose vote survives a leader change keeps
                // its old stamp and may follow a newer batch. Counted; a replica that needs
                // monotonic time takes max(previous, time_ms).
                let last = self.group_time.entry(d.group).or_insert(0);
                if d.value.time_ms < *last {
                    self.stats.time_regressions += 1;
                    self.stats.max_regression_ms =
                        self.stats.max_regression_ms.max(*last - d.value.time_ms);
                }
                *last = (*last).max(d.value.time_ms);
                self.common.push((d.group, d.instance));
            }
        }
        let r = &mut self.nodes[i].replica;
        r.deliveries += 1;
        r.next[gi] += 1;
        for c in d.value.commands.iter() {
            let n = decode(c);
            let at = self.nodes[i].replica.commands.len();
            self.nodes[i].replica.commands.push(n);
            match self.common_commands.get(at) {
                Some(&m) if m != n => {
                    self.fail(format!("node {id} executed {n} at {at}, others {m}"))
                }
                Some(_) => {}
                None => {
                    if !self.proposed.contains_key(&n) {
                        self.fail(format!("command {n} delivered but never proposed"));
                    }
                    if let Some(first) = self.delivered_at.insert(n, at) {
                        self.fail(format!("command {n} delivered twice: at {first} and {at}"));
                    }
                    self.common_commands.push(n);
                }
            }
        }
    }

    // ---- network and disk -------------------------------------------------------------------

    fn send(&mut self, from: NodeId, e: Envelope) {
        if e.msg.is_vote() {
            let gi = self.sc.groups.iter().position(|&g| g == e.msg.group());
            if gi.is_none_or(|gi| {
                [from, e.to]
                    .iter()
                    .any(|v| !self.sc.acceptors[gi].contains(v))
            }) {
                self.fail(format!(
                    "{from} -> {}: {:?} involves a non-acceptor",
                    e.to, e.msg
                ));
            }
        }
        if let PaxosMsg::Decision {
            group,
            instance,
            value,
            ..
        } = &e.msg
        {
            let value = value.clone();
            self.check_decision(*group, *instance, &value);
        }
        if let PaxosMsg::Decided {
            group,
            instance,
            ballot,
        } = e.msg
        {
            self.check_decided(group, instance, ballot);
        }
        if let PaxosMsg::Accept {
            group,
            ballot,
            instance,
            value,
        } = &e.msg
        {
            match self.proposals.get(&(*group, *instance, *ballot)) {
                Some(v) if v != value => self.fail(format!(
                    "ballot {ballot:?} proposed {v:?} and {value:?} in instance {instance} of \
                     group {group}"
                )),
                Some(_) => {}
                None => {
                    self.proposals
                        .insert((*group, *instance, *ballot), value.clone());
                }
            }
        }
        let to = e.to;
        if from == to {
            self.enqueue(self.now + 1, from, e);
            return;
        }
        if self.cut.contains(&(from, to)) || (self.faults && self.rng.chance(self.sc.drop_ppm)) {
            self.stats.dropped += 1;
            return;
        }
        // Paxos messages are idempotent; a forward is not (its commands would be proposed
        // twice), so a transport must never duplicate one.
        let forward = matches!(e.msg, PaxosMsg::Forward { .. });
        if !forward && self.rng.chance(self.sc.dup_ppm) {
            self.stats.duplicated += 1;
            let at = self.now + self.rng.range(1, self.sc.latency_max_ms);
            self.enqueue(at, from, e.clone());
        }
        let at = self.now + self.rng.range(1, self.sc.latency_max_ms);
        self.enqueue(at, from, e);
    }

    fn enqueue(&mut self, at: u64, from: NodeId, e: Envelope) {
        self.net_seq += 1;
        self.net.insert((at, self.net_seq), (from, e));
    }

    /// Handles what a member returned, in the driver's order.
    fn absorb(&mut self, i: usize, out: Outputs) {
        let id = self.nodes[i].id;
        for d in &out.decided {
            self.check_decision(d.group, d.instance, &d.value);
        }
        self.stats.leader_changes += out.leader_changes.len() as u64;
        // A new leader is crashed soon after, while its first votes may still be unsynced.
        if self.faults
            && out.leader_changes.iter().any(|(_, l)| *l == Some(id))
            && self.rng.chance(self.sc.new_leader_crash_ppm)
        {
            let at = self.now + self.rng.range(0, 40);
            self.nodes[i].crash_at = Some(at);
        }
        self.nodes[i].disk.write(out.persist);
        for e in out.send {
            self.send(id, e);
        }
        let held = out
            .send_after_persist
            .into_iter()
            .map(Held::Send)
            .chain(out.delivered.into_iter().map(Held::Deliver));
        for h in self.nodes[i].disk.after_votes(held) {
            self.release(i, h);
        }
    }

    fn release(&mut self, i: usize, h: Held) {
        match h {
            Held::Send(e) => {
                let id = self.nodes[i].id;
                self.send(id, e);
            }
            Held::Deliver(d) => self.deliver_to_replica(i, d),
        }
    }

    /// Completes a due fsync: its votes are durable, and what waited for them goes out.
    fn complete_fsync(&mut self, i: usize) {
        if !self.nodes[i].disk.complete_fsync(self.now) {
            return;
        }
        self.stats.fsyncs += 1;
        while let Some(h) = self.nodes[i].disk.next_released() {
            self.release(i, h);
        }
    }

    fn start_fsync(&mut self, i: usize) {
        let delay = self.rng.range(1, self.nodes[i].fsync_max_ms);
        let n = &mut self.nodes[i];
        if n.member.is_some() {
            n.disk.start_fsync(self.now + delay);
        }
    }

    // ---- node lifecycle ---------------------------------------------------------------------

    fn crash(&mut self, i: usize) {
        let completes = self.rng.below(2) == 0;
        let n = &mut self.nodes[i];
        if n.member.is_none() {
            return;
        }
        // If the running fsync completes, nothing waiting for it left before the crash.
        n.disk.crash(completes);
        n.member = None;
        n.crash_at = None;
        n.replica = n.checkpoint.clone();
        let id = n.id;
        let down = self.rng.range(1, self.sc.down_max_ms);
        self.nodes[i].down_until = self.now + down;
        self.net.retain(|_, (_, e)| e.to != id);
        self.stats.crashes += 1;
        // Every other crash closes links the others notice ([`Member::link_down`], as the real
        // transport reports); the rest are found by silence alone.
        if self.stats.crashes.is_multiple_of(2) {
            for j in 0..self.nodes.len() {
                let out = match &mut self.nodes[j].member {
                    Some(m) if j != i => m.link_down(id),
                    _ => continue,
                };
                self.absorb(j, out);
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let n = &self.nodes[i];
        let states = self
            .sc
            .groups
            .iter()
            .map(|&g| n.disk.store.load(g).expect("memory store"))
            .collect();
        let config = MemberConfig {
            id: n.id,
            groups: self
                .sc
                .groups
                .iter()
                .zip(&self.sc.acceptors)
                .map(|(&group, acceptors)| GroupSpec {
                    group,
                    members: NODES.to_vec(),
                    acceptors: acceptors.clone(),
                })
                .collect(),
            next: n.checkpoint.next.clone(),
            options: self.opts.clone(),
        };
        let mut member = match Member::new(config, states, self.now) {
            Ok(m) => m,
            Err(e) => self.fail(format!("node {} cannot restart: {e}", n.id)),
        };
        for (gi, &g) in self.sc.groups.iter().enumerate() {
            member.checkpointed(g, n.checkpoint.next[gi]);
        }
        let n = &mut self.nodes[i];
        n.replica = n.checkpoint.clone();
        n.member = Some(member);
    }

    fn checkpoint(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(m) = n.member.as_mut() else {
            return;
        };
        n.checkpoint = n.replica.clone();
        for (gi, &g) in self.sc.groups.iter().enumerate() {
            m.checkpointed(g, n.replica.next[gi]);
        }
        self.stats.checkpoints += 1;
    }

    fn leader_of(&self, g: GroupId) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.member.as_ref().is_some_and(|m| m.is_leader(g)))
    }

    /// Cuts links: all of one node's (often the leader's), or one direction of one link.
    fn partition(&mut self) {
        self.stats.partitions += 1;
        let g = self.sc.groups[self.rng.below(self.sc.groups.len() as u64) as usize];
        let victim = match (self.rng.below(3), self.leader_of(g)) {
            (0, Some(l)) | (1, Some(l)) => NODES[l],
            _ => NODES[self.rng.below(3) as usize],
        };
        if self.rng.below(3) == 0 {
            let other = NODES[self.rng.below(3) as usize];
            if other != victim {
                self.cut.insert((victim, other));
            }
        } else {
            for &o in &NODES {
                if o != victim {
                    self.cut.insert((victim, o));
                    self.cut.insert((o, victim));
                }
            }
        }
    }

    fn propose(&mut self, liveness: bool) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let g = self.sc.groups[self.rng.below(self.sc.groups.len() as u64) as usize];
        let wall = self.wall(i);
        let now = self.now;
        let Some(m) = self.nodes[i].member.as_mut() else {
            return;
        };
        if !m.has_room(g) {
            return;
        }
        self.next_cmd += 1;
        let cmd = self.next_cmd;
        self.proposed.insert(cmd, liveness);
        let out = m.propose(g, vec![encode(cmd)], now, wall);
        self.absorb(i, out);
    }

    // ---- time -------------------------------------------------------------------------------

    /// One simulated millisecond.
    fn step(&mut self, proposing: bool, liveness: bool) {
        self.now += 1;
        let now = self.now;
        if self.faults {
            for i in 0..self.nodes.len() {
                if let Some(m) = &self.nodes[i].member {
                    // Leaders crash more often than the others.
                    let leads = self.sc.groups.iter().any(|&g| m.is_leader(g));
                    let ppm = self.sc.crash_ppm * if leads { 3 } else { 1 };
                    let due = self.nodes[i].crash_at.is_some_and(|t| t <= now);
                    if due || self.rng.chance(ppm) {
                        self.crash(i);
                    }
                } else if self.nodes[i].down_until <= now {
                    self.restart(i);
                }
            }
            if self.rng.chance(self.sc.power_failure_ppm) {
                for i in 0..self.nodes.len() {
                    self.crash(i);
                }
            }
            if self.rng.chance(self.sc.partition_ppm) {
                self.partition();
            }
            if !self.cut.is_empty() && self.rng.chance(self.sc.heal_ppm) {
                self.cut.clear();
            }
        }
        for i in 0..self.nodes.len() {
            self.complete_fsync(i);
        }
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, e) = entry.remove();
            let i = (e.to - 1) as usize;
            if self.cut.contains(&(from, e.to)) {
                self.stats.dropped += 1;
                continue;
            }
            let wall = self.wall(i);
            let Some(m) = self.nodes[i].member.as_mut() else {
                continue;
            };
            self.stats.delivered_msgs += 1;
            let out = m.step(from, e.msg, now, wall);
            self.absorb(i, out);
        }
        for i in 0..self.nodes.len() {
            let wall = self.wall(i);
            if let Some(m) = self.nodes[i].member.as_mut() {
                let out = m.tick(now, wall);
                self.absorb(i, out);
            }
        }
        if proposing && self.rng.chance(self.sc.propose_ppm) {
            self.propose(liveness);
        }
        for i in 0..self.nodes.len() {
            if self.rng.chance(self.sc.checkpoint_ppm) {
                self.checkpoint(i);
            }
            self.start_fsync(i);
        }
    }

    /// Heals everything, then requires every command proposed from here on to reach every node.
    fn liveness(&mut self) {
        self.faults = false;
        self.cut.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].member.is_none() {
                self.restart(i);
            }
        }
        for _ in 0..SETTLE_MS {
            self.step(false, false);
        }
        for _ in 0..LIVENESS_PROPOSE_MS {
            self.step(true, true);
        }
        let wanted: Vec<u64> = self
            .proposed
            .iter()
            .filter(|(_, l)| **l)
            .map(|(c, _)| *c)
            .collect();
        for _ in 0..LIVENESS_BUDGET_MS {
            if self.all_delivered(&wanted) {
                break;
            }
            self.step(false, false);
        }
        if !self.all_delivered(&wanted) {
            let missing: Vec<u64> = wanted
                .iter()
                .copied()
                .filter(|c| !self.delivered_at.contains_key(c))
                .collect();
            let short = wanted
                .iter()
                .filter(|&&c| !self.all_delivered(&[c]))
                .count();
            let positions: Vec<_> = self
                .nodes
                .iter()
                .map(|n| (n.id, n.replica.next.clone()))
                .collect();
            let leaders: Vec<_> = self
                .nodes
                .iter()
                .map(|n| {
                    let m = n.member.as_ref().expect("all up");
                    self.sc
                        .groups
                        .iter()
                        .map(|&g| m.leader(g))
                        .collect::<Vec<_>>()
                })
                .collect();
            if std::env::var_os("VOLERY_SIM_VERBOSE").is_some() {
                for n in &self.nodes {
                    let (fsync, held, produced, durable) = n.disk.state();
                    eprintln!(
                        "node {} fsync {fsync:?} held {held} produced {produced} durable {durable} \
                         member {:#?}",
                        n.id, n.member
                    );
                }
            }
            self.fail(format!(
                "liveness: {short} of {} commands not delivered everywhere (never delivered: \
                 {missing:?}); positions {positions:?}; leaders {leaders:?}",
                wanted.len()
            ));
        }
        for &g in &self.sc.groups {
            let leaders: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|n| n.member.as_ref().is_some_and(|m| m.is_leader(g)))
                .map(|n| n.id)
                .collect();
            if leaders.len() != 1 {
                self.fail(format!("group {g} ends with leaders {leaders:?}"));
            }
            for n in &self.nodes {
                let believed = n.member.as_ref().and_then(|m| m.leader(g));
                if believed != Some(leaders[0]) {
                    self.fail(format!(
                        "node {} follows {believed:?} in group {g}, the leader is {}",
                        n.id, leaders[0]
                    ));
                }
            }
        }
    }

    fn all_delivered(&self, wanted: &[u64]) -> bool {
        wanted.iter().all(|c| {
            self.delivered_at
                .get(c)
                .is_some_and(|&at| self.nodes.iter().all(|n| n.replica.commands.len() > at))
        })
    }
}

/// Totals over the seeds run.
#[derive(Debug, Default)]
struct Totals {
    seeds: u64,
    ms: u64,
    messages: u64,
    instances: u64,
    commands: u64,
    lost: u64,
    crashes: u64,
    partitions: u64,
    time_regressions: u64,
    max_regression_ms: u64,
}

fn run(seed: u64, totals: &mut Totals) {
    let mut w = World::new(seed);
    let start = w.now;
    for _ in 0..w.sc.fault_ms {
        w.step(true, false);
    }
    w.liveness();
    let lost = w
        .proposed
        .keys()
        .filter(|c| !w.delivered_at.contains_key(c))
        .count() as u64;
    totals.seeds += 1;
    totals.ms += w.now - start;
    totals.messages += w.stats.delivered_msgs;
    totals.instances += w.common.len() as u64;
    totals.commands += w.proposed.len() as u64;
    totals.lost += lost;
    totals.crashes += w.stats.crashes;
    totals.partitions += w.stats.partitions;
    totals.time_regressions += w.stats.time_regressions;
    totals.max_regression_ms = totals.max_regression_ms.max(w.stats.max_regression_ms);
    if std::env::var_os("VOLERY_SIM_VERBOSE").is_some() {
        eprintln!(
            "seed {seed}: {} ms, {} instances, {} commands ({lost} lost in faults), {:?}, {:?}",
            w.now - start,
            w.common.len(),
            w.proposed.len(),
            w.stats,
            w.sc
        );
    }
}

#[test]
fn members_agree_and_recover_under_faults() {
    let mut totals = Totals::default();
    for seed in crate::testkit::seeds(DEFAULT_SEEDS) {
        crate::testkit::replaying(seed, || run(seed, &mut totals));
    }
    eprintln!(
        "sim_member: {} seeds, {} simulated ms steps, {} messages, {} merged instances, \
         {} commands proposed ({} proposed during faults were lost), {} crashes, {} partitions, \
         {} batches stamped earlier than their predecessor in the group (at most {} ms)",
        totals.seeds,
        totals.ms,
        totals.messages,
        totals.instances,
        totals.commands,
        totals.lost,
        totals.crashes,
        totals.partitions,
        totals.time_regressions,
        totals.max_regression_ms
    );
    assert!(totals.instances > 0);
}
