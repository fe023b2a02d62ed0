//! Deterministic simulation of the S-SMR engine, plus targeted scenarios.
//!
//! A toy versioned key-value service runs on k partitions (1..=4) x r replicas (1..=3). Keys are
//! hashed to partitions. Operations: `Get`/`Put` on one key (single-partition), `Txn` that reads
//! versions of several keys and, if a version condition holds, writes several keys atomically
//! (multi-partition when its keys span partitions; state exchange through facts), and `Global`,
//! sent to every partition, which reads the sum of every value and optionally bumps an epoch that
//! every partition keeps.
//!
//! Atomic multicast is modelled by one global sequence of commands: each replica receives its
//! partition's commands (the global order restricted to commands that name it) at its own pace,
//! sometimes in bursts queued without executing. Signals cross a network that delays, reorders
//! and duplicates them (no loss); replicas of a partition lag each other.
//!
//! Checked at every output: it is the next command of the replica's stream, and its zxid and
//! output equal those of a sequential execution of the global order on one unpartitioned store
//! with Lamport clocks per partition (so every replica of a partition agrees, every partition of
//! a multi-partition command agrees, and each partition's zxids increase strictly over writes).
//! At the end: every command executed everywhere (no deadlock), every replica's state equals the
//! sequential store's, no signal is left buffered and none diverged.
//!
//! `VOLERY_SEED=<u64>` replays one seed; `VOLERY_SIM_SEEDS=<n>` runs seeds `0..n`.

use crate::testkit::{mix, Rng};
use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::*;
use crate::multicast::GroupId;

const KEYS: u32 = 12;
/// The replicated epoch's key (held by every partition).
const EPOCH: u32 = u32::MAX;
const GLOBAL: GroupId = 100;
const DEFAULT_SEEDS: u64 = 2000;

fn owner(key: u32, k: u32) -> PartitionId {
    (mix(u64::from(key) + 1) % u64::from(k)) as PartitionId
}

#[derive(Clone, Debug)]
enum Op {
    Get(u32),
    Put(u32, u64),
    Txn(Txn),
    Global { bump: bool },
}

#[derive(Clone, Debug)]
struct Txn {
    reads: Vec<u32>,
    writes: Vec<u32>,
    /// Commit only if this key (one of `reads`) has this version.
    cond: Option<(u32, u32)>,
    add: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    /// value, version, mzxid
    Get(u64, u32, i64),
    /// the new version
    Put(u32),
    Txn {
        read: Vec<(u64, u32)>,
        committed: bool,
    },
    Global {
        epoch: u64,
        sum: u64,
    },
}

fn dest_of(op: &Op, k: u32) -> Vec<PartitionId> {
    let mut d: Vec<PartitionId> = match op {
        Op::Get(key) | Op::Put(key, _) => vec![owner(*key, k)],
        Op::Txn(t) => t
            .reads
            .iter()
            .chain(&t.writes)
            .map(|x| owner(*x, k))
            .collect(),
        Op::Global { .. } => (0..k).collect(),
    };
    d.sort_unstable();
    d.dedup();
    d
}

/// (value, version, mzxid)
type Entry = (u64, u32, i64);

/// One partition's state of the toy service.
struct Kv {
    partition: PartitionId,
    k: u32,
    data: BTreeMap<u32, Entry>,
    epoch: u64,
}

impl Kv {
    fn new(partition: PartitionId, k: u32) -> Kv {
        Kv {
            partition,
            k,
            data: BTreeMap::new(),
            epoch: 0,
        }
    }
    fn owns(&self, key: u32) -> bool {
        owner(key, self.k) == self.partition
    }
    fn get(&self, key: u32) -> Entry {
        assert!(
            self.owns(key),
            "partition {} read key {key} it does not own",
            self.partition
        );
        self.data.get(&key).copied().unwrap_or((0, 0, 0))
    }
    fn own_sum(&self) -> u64 {
        self.data.values().map(|e| e.0).fold(0, u64::wrapping_add)
    }
}

fn decode_txn_facts(mut b: Bytes, out: &mut BTreeMap<u32, (u64, u32)>) {
    while b.has_remaining() {
        let key = b.get_u32();
        let value = b.get_u64();
        let version = b.get_u32();
        out.insert(key, (value, version));
    }
}

impl Service for Kv {
    type Command = Op;
    type Output = Out;
    type Key = u32;

    fn dest(&self, cmd: &Op) -> Vec<PartitionId> {
        dest_of(cmd, self.k)
    }
    fn reads(&self, cmd: &Op) -> Vec<u32> {
        match cmd {
            Op::Get(key) => vec![*key],
            Op::Put(..) => vec![],
            Op::Txn(t) => t.reads.iter().copied().filter(|x| self.owns(*x)).collect(),
            Op::Global { .. } => (0..KEYS).filter(|x| self.owns(*x)).collect(),
        }
    }
    fn writes(&self, cmd: &Op) -> Vec<u32> {
        match cmd {
            Op::Get(_) => vec![],
            Op::Put(key, _) => vec![*key],
            Op::Txn(t) => t.writes.iter().copied().filter(|x| self.owns(*x)).collect(),
            Op::Global { bump } => {
                if *bump {
                    vec![EPOCH]
                } else {
                    vec![]
                }
            }
        }
    }
    fn is_write(&self, cmd: &Op) -> bool {
        match cmd {
            Op::Get(_) => false,
            Op::Put(..) => true,
            Op::Txn(t) => !t.writes.is_empty(),
            Op::Global { bump } => *bump,
        }
    }
    fn facts(&self, cmd: &Op) -> Bytes {
        let mut b = BytesMut::new();
        match cmd {
            Op::Txn(t) => {
                for key in t.reads.iter().copied().filter(|x| self.owns(*x)) {
                    let (value, version, _) = self.get(key);
                    b.put_u32(key);
                    b.put_u64(value);
                    b.put_u32(version);
                }
            }
            Op::Global { .. } => b.put_u64(self.own_sum()),
            Op::Get(_) | Op::Put(..) => {}
        }
        b.freeze()
    }
    fn execute(&mut self, cmd: &Op, zxid: i64, facts: &BTreeMap<PartitionId, Bytes>) -> Out {
        match cmd {
            Op::Get(key) => {
                let (v, ver, m) = self.get(*key);
                Out::Get(v, ver, m)
            }
            Op::Put(key, value) => {
                let version = self.get(*key).1 + 1;
                self.data.insert(*key, (*value, version, zxid));
                Out::Put(version)
            }
            Op::Txn(t) => {
                // Multi-partition: every key (own included) comes from the facts.
                let mut known = BTreeMap::new();
                for f in facts.values() {
                    decode_txn_facts(f.clone(), &mut known);
                }
                let lookup = |key: u32| -> (u64, u32) {
                    if facts.is_empty() {
                        let (v, ver, _) = self.get(key);
                        (v, ver)
                    } else {
                        *known.get(&key).expect("facts hold every key read")
                    }
                };
                let read: Vec<(u64, u32)> = t.reads.iter().map(|x| lookup(*x)).collect();
                let committed = t.cond.is_none_or(|(ck, cv)| lookup(ck).1 == cv);
                if committed {
                    let value = read.iter().map(|r| r.0).fold(t.add, u64::wrapping_add);
                    let mut own: Vec<u32> =
                        t.writes.iter().copied().filter(|x| self.owns(*x)).collect();
                    own.sort_unstable();
                    own.dedup();
                    for key in own {
                        let version = self.get(key).1 + 1;
                        self.data.insert(key, (value, version, zxid));
                    }
                }
                Out::Txn { read, committed }
            }
            Op::Global { bump } => {
                let sum = if facts.is_empty() {
                    self.own_sum()
                } else {
                    facts
                        .values()
                        .map(|f| f.clone().get_u64())
                        .fold(0, u64::wrapping_add)
                };
                if *bump {
                    self.epoch += 1;
                }
                Out::Global {
                    epoch: self.epoch,
                    sum,
                }
            }
        }
    }
}

/// The sequential reference: one unpartitioned store, Lamport clocks per partition.
struct Model {
    k: u32,
    data: BTreeMap<u32, Entry>,
    epoch: u64,
    clocks: Vec<i64>,
}

impl Model {
    fn apply(&mut self, op: &Op) -> (i64, Out) {
        let dest = dest_of(op, self.k);
        let write = match op {
            Op::Get(_) => false,
            Op::Put(..) => true,
            Op::Txn(t) => !t.writes.is_empty(),
            Op::Global { bump } => *bump,
        };
        let zxid = dest.iter().map(|p| self.clocks[*p as usize]).max().unwrap() + i64::from(write);
        for p in &dest {
            self.clocks[*p as usize] = zxid;
        }
        let get =
            |data: &BTreeMap<u32, Entry>, key: u32| data.get(&key).copied().unwrap_or((0, 0, 0));
        let out = match op {
            Op::Get(key) => {
                let (v, ver, m) = get(&self.data, *key);
                Out::Get(v, ver, m)
            }
            Op::Put(key, value) => {
                let version = get(&self.data, *key).1 + 1;
                self.data.insert(*key, (*value, version, zxid));
                Out::Put(version)
            }
            Op::Txn(t) => {
                let read: Vec<(u64, u32)> = t
                    .reads
                    .iter()
                    .map(|x| {
                        let e = get(&self.data, *x);
                        (e.0, e.1)
                    })
                    .collect();
                let committed = t.cond.is_none_or(|(ck, cv)| get(&self.data, ck).1 == cv);
                if committed {
                    let value = read.iter().map(|r| r.0).fold(t.add, u64::wrapping_add);
                    let mut ws = t.writes.clone();
                    ws.sort_unstable();
                    ws.dedup();
                    for key in ws {
                        let version = get(&self.data, key).1 + 1;
                        self.data.insert(key, (value, version, zxid));
                    }
                }
                Out::Txn { read, committed }
            }
            Op::Global { bump } => {
                if *bump {
                    self.epoch += 1;
                }
                Out::Global {
                    epoch: self.epoch,
                    sum: self.data.values().map(|e| e.0).fold(0, u64::wrapping_add),
                }
            }
        };
        (zxid, out)
    }
}

fn random_op(rng: &mut Rng) -> Op {
    let key = |rng: &mut Rng| rng.index(KEYS as usize) as u32;
    match rng.index(100) {
        0..=34 => Op::Get(key(rng)),
        35..=64 => Op::Put(key(rng), rng.next_u64() % 1000),
        65..=89 => {
            let reads: Vec<u32> = (0..1 + rng.index(4)).map(|_| key(rng)).collect();
            let writes: Vec<u32> = (0..rng.index(4)).map(|_| key(rng)).collect();
            let cond = if rng.chance(50 * 10_000) {
                Some((reads[rng.index(reads.len())], rng.index(3) as u32))
            } else {
                None
            };
            Op::Txn(Txn {
                reads,
                writes,
                cond,
                add: rng.next_u64() % 100,
            })
        }
        _ => Op::Global {
            bump: rng.chance(50 * 10_000),
        },
    }
}

struct Replica {
    partition: PartitionId,
    exec: Executor<Kv>,
    /// Position in the partition's stream of the next command to deliver.
    delivered: usize,
    /// Outputs checked so far.
    executed: usize,
    last_zxid: i64,
    speed: usize,
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    commands: u64,
    multi: u64,
    executions: u64,
    signals: u64,
    prefetched: u64,
    prefetched_behind_multi: u64,
    waits: u64,
    ignored: u64,
}

struct World {
    seed: u64,
    rng: Rng,
    k: u32,
    r: usize,
    cmds: Vec<(CmdId, Op)>,
    expected: Vec<(i64, Out)>,
    /// Per partition: indices into `cmds` of its commands, in global order.
    streams: Vec<Vec<usize>>,
    replicas: Vec<Replica>,
    /// (receiving replica, encoded signal)
    net: Vec<(usize, Bytes)>,
    /// Per multi-partition command: the (zxid, output) its first executing partition produced.
    multi_seen: BTreeMap<CmdId, (i64, Out)>,
    /// The sequential store after the whole global order.
    model: Model,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let k = 1 + rng.index(4) as u32;
        let r = 1 + rng.index(3);
        let n = 20 + rng.index(180);
        let mut model = Model {
            k,
            data: BTreeMap::new(),
            epoch: 0,
            clocks: vec![0; k as usize],
        };
        // Per group: (instance, index) of the last command; commands share batches at times.
        let mut positions: BTreeMap<GroupId, (u64, u32)> = BTreeMap::new();
        let mut cmds = Vec::new();
        let mut expected = Vec::new();
        let mut streams = vec![Vec::new(); k as usize];
        for i in 0..n {
            let op = random_op(&mut rng);
            let dest = dest_of(&op, k);
            let group = if dest.len() > 1 { GLOBAL } else { dest[0] };
            let pos = positions.entry(group).or_insert((0, 0));
            if pos.0 == 0 || !rng.chance(30 * 10_000) {
                *pos = (pos.0 + 1 + rng.index(2) as u64, 0);
            } else {
                pos.1 += 1;
            }
            for p in &dest {
                streams[*p as usize].push(i);
            }
            expected.push(model.apply(&op));
            cmds.push((CmdId::new(group, pos.0, pos.1), op));
        }
        let replicas = (0..k as usize * r)
            .map(|i| {
                let partition = (i / r) as PartitionId;
                Replica {
                    partition,
                    exec: Executor::new(partition, GLOBAL, Kv::new(partition, k)),
                    delivered: 0,
                    executed: 0,
                    last_zxid: 0,
                    speed: 1 + rng.index(8),
                }
            })
            .collect();
        World {
            seed,
            rng,
            k,
            r,
            cmds,
            expected,
            streams,
            replicas,
            net: Vec::new(),
            multi_seen: BTreeMap::new(),
            model,
        }
    }

    fn handle(&mut self, at: usize, step: Step<Out>) {
        for out in step.signals {
            assert!(out.signal.from == self.replicas[at].partition);
            for q in &out.to {
                let bytes = out.signal.encode();
                for i in 0..self.r {
                    self.net.push((*q as usize * self.r + i, bytes.clone()));
                }
            }
        }
        for e in step.outputs {
            self.check_output(at, e);
        }
    }

    fn check_output(&mut self, at: usize, e: Executed<Out>) {
        let seed = self.seed;
        let rep = &mut self.replicas[at];
        let p = rep.partition;
        let stream = &self.streams[p as usize];
        assert!(
            rep.executed < rep.delivered,
            "seed {seed}: replica {at} executed a command it was not delivered"
        );
        let idx = stream[rep.executed];
        let (id, op) = &self.cmds[idx];
        assert_eq!(
            e.id, *id,
            "seed {seed}: replica {at} (partition {p}) executed out of order"
        );
        let (zxid, out) = &self.expected[idx];
        assert_eq!(
            (e.zxid, &e.output),
            (*zxid, out),
            "seed {seed}: replica {at} (partition {p}) command {id} {op:?}: (zxid, output) \
             differs from the sequential execution"
        );
        let write = self.replicas[at].exec.service().is_write(op);
        let rep = &mut self.replicas[at];
        assert!(
            e.zxid >= rep.last_zxid && (!write || e.zxid > rep.last_zxid),
            "seed {seed}: partition {p} zxid went from {} to {} (write: {write})",
            rep.last_zxid,
            e.zxid
        );
        rep.last_zxid = e.zxid;
        rep.executed += 1;
        if dest_of(op, self.k).len() > 1 {
            let first = self
                .multi_seen
                .entry(*id)
                .or_insert_with(|| (e.zxid, e.output.clone()));
            assert_eq!(
                *first,
                (e.zxid, e.output),
                "seed {seed}: partitions disagree on multi-partition command {id}"
            );
        }
    }

    fn pick_deliverable(&mut self) -> Option<usize> {
        let weights: Vec<usize> = self
            .replicas
            .iter()
            .map(|rep| {
                if rep.delivered < self.streams[rep.partition as usize].len() {
                    rep.speed
                } else {
                    0
                }
            })
            .collect();
        let total: usize = weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut x = self.rng.index(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return Some(i);
            }
            x -= w;
        }
        unreachable!()
    }

    fn deliver_next(&mut self, at: usize, run: bool) -> bool {
        let rep = &mut self.replicas[at];
        let stream = &self.streams[rep.partition as usize];
        if rep.delivered >= stream.len() {
            return false;
        }
        let (id, op) = self.cmds[stream[rep.delivered]].clone();
        rep.delivered += 1;
        let step = if run {
            rep.exec.deliver(id, op).expect("delivery accepted")
        } else {
            let signals = rep.exec.enqueue(id, op).expect("delivery accepted");
            Step {
                signals,
                outputs: Vec::new(),
            }
        };
        self.handle(at, step);
        true
    }

    /// One random action; false when nothing but executing is left.
    fn step(&mut self) -> bool {
        let can_deliver = self.pick_deliverable();
        if can_deliver.is_none() && self.net.is_empty() {
            return false;
        }
        let roll = self.rng.index(100);
        if let (Some(at), true) = (can_deliver, roll < 45 || self.net.is_empty()) {
            if self.rng.chance(50 * 10_000) {
                self.deliver_next(at, true);
            } else {
                // A burst delivered before any of it executes.
                for _ in 0..1 + self.rng.index(4) {
                    if !self.deliver_next(at, false) {
                        break;
                    }
                }
            }
        } else if roll < 88 && !self.net.is_empty() {
            let i = self.rng.index(self.net.len());
            let (to, bytes) = if self.rng.chance(15 * 10_000) {
                self.net[i].clone()
            } else {
                self.net.swap_remove(i)
            };
            let signal = Signal::decode(bytes).expect("signals decode");
            let exec = &mut self.replicas[to].exec;
            let step = if self.rng.chance(50 * 10_000) {
                exec.on_signal(signal)
            } else {
                exec.receive(signal);
                Step::default()
            };
            self.handle(to, step);
        } else {
            let at = self.rng.index(self.replicas.len());
            let max = 1 + self.rng.index(3);
            let step = self.replicas[at].exec.run(max);
            self.handle(at, step);
        }
        true
    }

    /// Runs every replica until nothing moves; true if anything did.
    fn flush(&mut self) -> bool {
        let mut moved = false;
        for at in 0..self.replicas.len() {
            let step = self.replicas[at].exec.run(usize::MAX);
            moved |= !step.is_empty();
            self.handle(at, step);
        }
        moved
    }
}

fn run(seed: u64, totals: &mut Totals) {
    let mut w = World::new(seed);
    loop {
        while w.step() {}
        if !w.flush() {
            break;
        }
    }
    // Progress: every replica executed its whole stream, nothing is left anywhere.
    for (at, rep) in w.replicas.iter().enumerate() {
        let len = w.streams[rep.partition as usize].len();
        assert_eq!(
            rep.executed, len,
            "seed {seed}: deadlock: replica {at} of partition {} executed {} of {len} commands: {:?}",
            rep.partition, rep.executed, rep.exec
        );
        assert_eq!(rep.exec.queued(), 0);
        assert_eq!(
            rep.exec.buffered_signals(),
            0,
            "seed {seed}: replica {at} keeps stale signals"
        );
        let m = rep.exec.metrics();
        assert_eq!(
            m.signals_divergent, 0,
            "seed {seed}: replica {at}: divergent signals"
        );
        assert_eq!(m.executed as usize, len);
        // Final state: equal to the sequential store on the keys the partition owns.
        let kv = rep.exec.service();
        for key in 0..KEYS {
            if kv.owns(key) {
                assert_eq!(
                    kv.data.get(&key),
                    w.model.data.get(&key),
                    "seed {seed}: replica {at}: key {key} differs from the sequential store"
                );
            }
        }
        assert_eq!(kv.epoch, w.model.epoch, "seed {seed}: replica {at}: epoch");
        assert_eq!(
            rep.exec.clock(),
            w.model.clocks[rep.partition as usize],
            "seed {seed}: replica {at}: final clock"
        );
    }
    assert!(w.net.is_empty());
    totals.seeds += 1;
    totals.commands += w.cmds.len() as u64;
    totals.multi += w.multi_seen.len() as u64;
    for rep in &w.replicas {
        let m = rep.exec.metrics();
        totals.executions += m.executed;
        totals.signals += m.signals_sent;
        totals.prefetched += m.prefetched;
        totals.prefetched_behind_multi += m.prefetched_behind_multi;
        totals.waits += m.waits;
        totals.ignored += m.signals_ignored;
    }
}

#[test]
fn partitions_agree_with_a_sequential_execution() {
    let mut totals = Totals::default();
    for seed in crate::testkit::seeds(DEFAULT_SEEDS) {
        crate::testkit::replaying(seed, || run(seed, &mut totals));
    }
    eprintln!(
        "ssmr sim: {} seeds, {} commands ({} multi-partition), {} executions, {} signals sent \
         ({} prefetched behind queued commands, {} behind multi-partition ones), {} waits at the head, {} duplicate/stale signals \
         ignored",
        totals.seeds,
        totals.commands,
        totals.multi,
        totals.executions,
        totals.signals,
        totals.prefetched,
        totals.prefetched_behind_multi,
        totals.waits,
        totals.ignored
    );
    if totals.seeds >= 50 {
        assert!(totals.multi > 0 && totals.prefetched > 0 && totals.waits > 0);
        assert!(totals.prefetched_behind_multi > 0);
    }
}

// ---- targeted scenarios (two partitions, one replica each unless said) ----

/// Two keys owned by partitions 0 and 1 when k = 2.
fn keys_of_two() -> (u32, u32) {
    let a = (0..KEYS).find(|x| owner(*x, 2) == 0).unwrap();
    let b = (0..KEYS).find(|x| owner(*x, 2) == 1).unwrap();
    (a, b)
}

fn exec(p: PartitionId) -> Executor<Kv> {
    Executor::new(p, GLOBAL, Kv::new(p, 2))
}

fn txn(reads: Vec<u32>, writes: Vec<u32>) -> Op {
    Op::Txn(Txn {
        reads,
        writes,
        cond: None,
        add: 1,
    })
}

#[test]
fn multi_partition_waits_for_the_other_signal_and_takes_the_max_clock() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    let mut p1 = exec(1);
    // Partition 0 runs ahead: three writes.
    for i in 0..3 {
        let s = p0.deliver(CmdId::new(0, i + 1, 0), Op::Put(a, 5)).unwrap();
        assert_eq!(s.outputs[0].zxid, i as i64 + 1);
    }
    let c = CmdId::new(GLOBAL, 1, 0);
    let s0 = p0.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    assert!(s0.outputs.is_empty(), "must wait for partition 1");
    assert_eq!(s0.signals.len(), 1);
    assert_eq!(s0.signals[0].to, vec![1]);
    assert_eq!(s0.signals[0].signal.clock, 3);
    assert_eq!(p0.metrics().waits, 1);
    // A Get behind it waits too.
    assert!(p0
        .deliver(CmdId::new(0, 4, 0), Op::Get(a))
        .unwrap()
        .is_empty());
    let s1 = p1.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    let sig1 = s1.signals[0].signal.clone();
    assert_eq!(sig1.clock, 0);
    let s1 = p1.on_signal(s0.signals[0].signal.clone());
    assert_eq!(s1.outputs.len(), 1);
    assert_eq!(s1.outputs[0].zxid, 4);
    let s0 = p0.on_signal(Signal::decode(sig1.encode()).unwrap());
    assert_eq!(s0.outputs.len(), 2);
    assert_eq!((s0.outputs[0].zxid, s0.outputs[1].zxid), (4, 4));
    assert_eq!(s0.outputs[0].output, s1.outputs[0].output);
    assert_eq!(s0.outputs[1].output, Out::Get(5 + 1, 4, 4));
    assert_eq!((p0.clock(), p1.clock()), (4, 4));
    // A late duplicate is stale and costs nothing.
    p1.receive(s0_dup(c));
    assert_eq!(p1.buffered_signals(), 0);
    assert_eq!(p1.metrics().signals_ignored, 1);
}

/// The signal partition 1 sends for `c` from a fresh state (clock 0).
fn s1_signal(p1: &mut Executor<Kv>, c: CmdId, a: u32, b: u32) -> Signal {
    p1.deliver(c, txn(vec![a, b], vec![a, b])).unwrap().signals[0]
        .signal
        .clone()
}

fn s0_dup(c: CmdId) -> Signal {
    Signal {
        cmd: c,
        from: 0,
        clock: 3,
        base: None,
        facts: Bytes::new(),
    }
}

#[test]
fn early_and_duplicate_signals_are_buffered_once() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    let c = CmdId::new(GLOBAL, 7, 2);
    let sig = s1_signal(&mut exec(1), c, a, b);
    p0.receive(sig.clone());
    p0.receive(sig.clone());
    assert_eq!(p0.buffered_signals(), 1);
    assert_eq!(p0.metrics().signals_received, 1);
    assert_eq!(p0.metrics().signals_ignored, 1);
    // A different signal from the same partition: a non-deterministic service.
    p0.receive(Signal {
        clock: 9,
        ..sig.clone()
    });
    assert_eq!(p0.metrics().signals_divergent, 1);
    // From itself, or for a command outside the global group: dropped.
    p0.receive(Signal {
        from: 0,
        ..sig.clone()
    });
    p0.receive(Signal {
        cmd: CmdId::new(0, 1, 0),
        ..sig.clone()
    });
    // A clock no partition can reach: garbage.
    let later = CmdId::new(GLOBAL, 8, 0);
    for clock in [-1, i64::MAX] {
        p0.receive(Signal {
            cmd: later,
            clock,
            ..sig.clone()
        });
    }
    assert_eq!(p0.metrics().signals_ignored, 6);
    assert_eq!(p0.buffered_signals(), 1);
    let s = p0.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    assert_eq!(
        s.outputs.len(),
        1,
        "the buffered signal lets it run at once"
    );
    assert_eq!(p0.metrics().waits, 0);
    assert_eq!(p0.buffered_signals(), 0);
}

#[test]
fn prefetch_carries_the_clock_after_queued_writes() {
    let (a, b) = keys_of_two();
    let a2 = (0..KEYS).filter(|x| owner(*x, 2) == 0).nth(1).unwrap();
    let mut p0 = exec(0);
    // Two writes to another key and a read queued, not executed.
    assert!(p0
        .enqueue(CmdId::new(0, 1, 0), Op::Put(a2, 1))
        .unwrap()
        .is_empty());
    assert!(p0
        .enqueue(CmdId::new(0, 1, 1), Op::Get(a2))
        .unwrap()
        .is_empty());
    assert!(p0
        .enqueue(CmdId::new(0, 2, 0), Op::Put(a2, 2))
        .unwrap()
        .is_empty());
    let c = CmdId::new(GLOBAL, 1, 0);
    let sig = p0.enqueue(c, txn(vec![a, b], vec![b])).unwrap();
    assert_eq!(sig.len(), 1, "prefetched at delivery");
    assert_eq!(sig[0].signal.clock, 2);
    assert_eq!(p0.metrics().prefetched, 1);
    // A later multi-partition command is prefetched too, its clock relative to c's zxid (which
    // nobody knows yet); a local write queued after c counts in it.
    assert!(p0
        .enqueue(CmdId::new(0, 3, 0), Op::Put(a2, 3))
        .unwrap()
        .is_empty());
    let c2 = CmdId::new(GLOBAL, 2, 0);
    let sig2 = p0.enqueue(c2, txn(vec![a], vec![b])).unwrap();
    assert_eq!(sig2.len(), 1, "prefetched behind c");
    assert_eq!((sig2[0].signal.clock, sig2[0].signal.base), (1, Some(c)));
    let s = p0.run(usize::MAX);
    assert_eq!(s.outputs.len(), 3);
    assert!(s.signals.is_empty(), "c's and c2's signals already left");
    let s = p0.on_signal(Signal {
        cmd: c,
        from: 1,
        clock: 10,
        base: None,
        facts: exec(1).service().facts(&txn(vec![a, b], vec![b])),
    });
    assert_eq!(s.outputs.len(), 2, "c, then the local write");
    assert_eq!(s.outputs[0].zxid, 11);
    assert_eq!(s.outputs[1].zxid, 12);
    assert!(s.signals.is_empty());
    // Partition 1's signal for c2, also relative to c: 11 + 0 there, 11 + 1 here.
    let s = p0.on_signal(Signal {
        cmd: c2,
        from: 1,
        clock: 0,
        base: Some(c),
        facts: exec(1).service().facts(&txn(vec![a], vec![b])),
    });
    assert_eq!(s.outputs.len(), 1);
    assert_eq!(s.outputs[0].zxid, 13);
    assert_eq!(p0.metrics().prefetched, 2);
}

/// A relative signal whose base this replica never executed cannot be resolved: it is dropped
/// and its partition named as missing, so the driver asks for it again.
#[test]
fn a_relative_signal_with_an_unknown_base_is_asked_for_again() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    let c = CmdId::new(GLOBAL, 5, 0);
    let sig = p0.enqueue(c, txn(vec![a, b], vec![b])).unwrap();
    assert_eq!(sig.len(), 1);
    p0.receive(Signal {
        cmd: c,
        from: 1,
        clock: 0,
        base: Some(CmdId::new(GLOBAL, 4, 0)),
        facts: exec(1).service().facts(&txn(vec![a, b], vec![b])),
    });
    assert!(p0.run(usize::MAX).outputs.is_empty());
    assert_eq!(p0.waiting(), Some((c, vec![1])));
    let s = p0.on_signal(Signal {
        cmd: c,
        from: 1,
        clock: 4,
        base: None,
        facts: exec(1).service().facts(&txn(vec![a, b], vec![b])),
    });
    assert_eq!(s.outputs.len(), 1);
    assert_eq!(s.outputs[0].zxid, 5);
}

#[test]
fn a_queued_write_to_a_read_key_blocks_prefetching() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    p0.enqueue(CmdId::new(0, 1, 0), Op::Put(a, 1)).unwrap();
    let c = CmdId::new(GLOBAL, 1, 0);
    assert!(p0.enqueue(c, txn(vec![a, b], vec![])).unwrap().is_empty());
    let s = p0.run(usize::MAX);
    assert_eq!(s.outputs.len(), 1);
    assert_eq!(s.signals.len(), 1);
    let mut facts = BTreeMap::new();
    decode_txn_facts(s.signals[0].signal.facts.clone(), &mut facts);
    assert_eq!(facts.get(&a), Some(&(1, 1)), "facts sent after the write");
    assert_eq!(p0.metrics().prefetched, 0);
}

/// Only writes still queued hold a prefetch back, and a command behind a queue too long to scan
/// is not prefetched: its signal leaves at the head, with the clock it executes at.
#[test]
fn prefetching_looks_at_queued_writes_only_and_gives_up_on_a_long_queue() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    p0.enqueue(CmdId::new(0, 1, 0), Op::Put(a, 1)).unwrap();
    assert_eq!(p0.run(usize::MAX).outputs.len(), 1);
    let c = CmdId::new(GLOBAL, 1, 0);
    assert_eq!(
        p0.enqueue(c, txn(vec![a, b], vec![])).unwrap().len(),
        1,
        "an executed write holds nothing back"
    );

    let a2 = (0..KEYS).filter(|x| owner(*x, 2) == 0).nth(1).unwrap();
    let mut p0 = exec(0);
    let queued = PREFETCH_SCAN_LIMIT as u64 + 1;
    for i in 0..queued {
        p0.enqueue(CmdId::new(0, 1 + i, 0), Op::Put(a2, 1)).unwrap();
    }
    let c = CmdId::new(GLOBAL, 1, 0);
    assert!(p0.enqueue(c, txn(vec![a, b], vec![])).unwrap().is_empty());
    let s = p0.run(usize::MAX);
    assert_eq!(s.outputs.len() as u64, queued);
    assert_eq!(s.signals.len(), 1, "the signal leaves at the head");
    assert_eq!(
        s.signals[0].signal.clock, queued as i64,
        "after every queued write"
    );
    assert_eq!(p0.metrics().prefetched, 0);
}

#[test]
fn contract_violations_are_errors_and_change_nothing() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    let c = CmdId::new(GLOBAL, 5, 0);
    assert_eq!(
        p0.enqueue(CmdId::new(1, 1, 0), Op::Get(b)),
        Err(Error::NotInDest {
            id: CmdId::new(1, 1, 0),
            partition: 0
        })
    );
    assert_eq!(
        p0.enqueue(CmdId::new(0, 1, 0), txn(vec![a, b], vec![])),
        Err(Error::MultiOutsideGlobalGroup {
            id: CmdId::new(0, 1, 0),
            global: GLOBAL
        })
    );
    p0.enqueue(c, txn(vec![a, b], vec![])).unwrap();
    assert_eq!(
        p0.enqueue(CmdId::new(GLOBAL, 4, 9), txn(vec![a, b], vec![])),
        Err(Error::OutOfOrder {
            id: CmdId::new(GLOBAL, 4, 9),
            last: c
        })
    );
    assert_eq!(p0.queued(), 1);
}

#[test]
fn a_lost_signal_is_named_by_waiting_and_sent_again_from_memory() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    let mut p1 = exec(1);
    let c = CmdId::new(GLOBAL, 1, 0);
    assert_eq!(p0.waiting(), None);
    let s0 = p0.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    assert_eq!(p0.waiting(), Some((c, vec![1])));
    assert_eq!(
        p0.sent_signals_from(c, 1, 10),
        vec![s0.signals[0].clone()],
        "queued and sent"
    );
    assert!(p0.sent_signals_from(c, 0, 10).is_empty(), "not its own");
    // Partition 1 executes; its signal to partition 0 is lost.
    p1.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    let done = p1.on_signal(s0.signals[0].signal.clone());
    assert_eq!(done.outputs.len(), 1);
    assert_eq!(p0.waiting(), Some((c, vec![1])), "still waiting");
    let again = p1.sent_signals_from(c, 0, 10);
    assert_eq!(again.len(), 1, "an executed command's signal is remembered");
    assert_eq!(again[0].to, vec![0]);
    assert!(p1
        .sent_signals_from(CmdId::new(GLOBAL, 9, 0), 0, 10)
        .is_empty());
    let s = p0.on_signal(again[0].signal.clone());
    assert_eq!(s.outputs.len(), 1);
    assert_eq!(s.outputs[0].output, done.outputs[0].output);
    assert_eq!(p0.waiting(), None);
}

#[test]
fn a_replica_that_missed_a_stretch_of_signals_gets_it_in_one_answer() {
    let (a, b) = keys_of_two();
    let (mut p0, mut p1) = (exec(0), exec(1));
    let ids: Vec<CmdId> = (1..=5).map(|i| CmdId::new(GLOBAL, i, 0)).collect();
    // One replica of each partition executes all five, exchanging signals.
    let mut inflight = Vec::new();
    let mut executed = Vec::new();
    for &c in &ids {
        inflight.extend(p0.deliver(c, txn(vec![a, b], vec![a, b])).unwrap().signals);
        inflight.extend(p1.deliver(c, txn(vec![a, b], vec![a, b])).unwrap().signals);
    }
    while let Some(out) = inflight.pop() {
        let step = if out.to == vec![0] {
            p0.on_signal(out.signal)
        } else {
            p1.on_signal(out.signal)
        };
        inflight.extend(step.signals);
        if out.to == vec![1] {
            executed.extend(step.outputs);
        }
    }
    assert_eq!(executed.len(), 5);
    // A second replica of partition 0 (restarted) gets the commands but none of their signals.
    let mut late = exec(0);
    for &c in &ids {
        late.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    }
    assert_eq!(late.waiting(), Some((ids[0], vec![1])));
    let stretch = p1.sent_signals_from(ids[0], 0, 3);
    assert_eq!(
        stretch.iter().map(|s| s.signal.cmd).collect::<Vec<_>>(),
        ids[..3].to_vec(),
        "in command order, at most max"
    );
    let mut outputs = Vec::new();
    for s in stretch {
        outputs.extend(late.on_signal(s.signal).outputs);
    }
    assert_eq!(outputs.len(), 3, "three commands run on one answer");
    assert_eq!(late.waiting(), Some((ids[3], vec![1])));
    for s in p1.sent_signals_from(ids[3], 0, 3) {
        outputs.extend(late.on_signal(s.signal).outputs);
    }
    assert_eq!(late.waiting(), None);
    assert_eq!(outputs.len(), 5);
}

/// Regression (found by `sim_cluster`, seed 2, one replica per partition): a replica restarted
/// from a checkpoint taken after a multi-partition command had forgotten its signal, so a
/// replica of another partition replaying that command from an older checkpoint waited forever,
/// and held up every command after it. The checkpoint keeps the remembered signals.
#[test]
fn remembered_signals_survive_a_restart_from_a_checkpoint() {
    let (a, b) = keys_of_two();
    let mut p0 = exec(0);
    let mut p1 = exec(1);
    let c = CmdId::new(GLOBAL, 1, 0);
    let s0 = p0.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    p1.deliver(c, txn(vec![a, b], vec![a, b])).unwrap();
    assert_eq!(p1.on_signal(s0.signals[0].signal.clone()).outputs.len(), 1);
    // Partition 1 checkpoints after c and restarts; its signal to partition 0 was lost.
    let (clock, last, kept) = (p1.clock(), p1.last_multi(), p1.remembered_signals());
    assert_eq!(kept.len(), 1);
    let forgetful = Executor::resume(1, GLOBAL, p1.into_service(), clock, last);
    assert!(
        forgetful.sent_signals_from(c, 0, 10).is_empty(),
        "resume alone forgets"
    );
    let mut p1 = forgetful;
    let mut foreign = kept.clone();
    foreign[0].signal.from = 0;
    foreign[0].signal.cmd = CmdId::new(GLOBAL, 2, 0);
    p1.remember_signals(foreign);
    assert!(
        p1.remembered_signals().is_empty(),
        "only its own, executed commands"
    );
    p1.remember_signals(kept.clone());
    let again = p1.sent_signals_from(c, 0, 10);
    assert_eq!(again, kept, "kept by the checkpoint");
    assert_eq!(p0.waiting(), Some((c, vec![1])));
    assert_eq!(p0.on_signal(again[0].signal.clone()).outputs.len(), 1);
    assert_eq!(p0.waiting(), None);
}
