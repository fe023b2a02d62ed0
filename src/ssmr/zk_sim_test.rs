//! Differential simulation of ZooKeeper on S-SMR: k partitions (1..=4), one replica each, each an
//! `Executor<ZkService>`, against ONE plain `Zk` applying the same global order.
//!
//! Atomic multicast is modelled by one global sequence of commands; each partition receives, at
//! its own pace, the commands whose destination holds it, in that order (multi-partition ones
//! from the global group, the others from its own group). Signals cross a network that delays,
//! reorders and duplicates them.
//!
//! The workload: three sessions, then random creates (persistent, ephemeral, sequential, both),
//! deletes and setData with and without versions, getData/exists/getChildren2 with and without
//! watches, check, multi mixing creates, deletes, setData and checks across partitions, multi of
//! setData/check only, multiRead, addWatch (persistent, recursive), checkWatches, removeWatches,
//! setWatches2, closeSession of sessions holding ephemerals and createSession again, on 20
//! paths so conflicts are frequent.
//!
//! Checked for every executed command: it is the next of its partition's stream; its err and
//! response equal the single `Zk`'s with the zxid-valued stat fields (czxid, mzxid, pzxid) zeroed,
//! which differ by design under Lamport clocks; a write's zxid exceeds the partition's previous
//! one, a read's does not go back; every partition of a multi-partition command gives the same
//! zxid; a setData's mzxid and a create2's czxid are the command's zxid; the partition's
//! notifications are exactly the single `Zk`'s for the paths it owns, in order; the `Zk`'s
//! `last_zxid` is the executor's clock. At the end: every command executed everywhere, every
//! partition has the single `Zk`'s paths and hierarchy (children, cversion, aversion, ephemeral
//! owner, ctime; czxid and pzxid equal across partitions), and each path's owner has its data,
//! version and mtime.
//!
//! `VOLERY_SEED=<u64>` replays one seed; `VOLERY_SIM_SEEDS=<n>` runs seeds `0..n`.

use std::collections::BTreeMap;

use bytes::Bytes;
use protocol::{
    AddWatchMode, AddWatchRequest, CheckVersionRequest, CreateRequest, DeleteRequest, ErrorCode,
    EventType, MultiOp, MultiResult, OpCode, PathWatchRequest, Request, Response, SetDataRequest,
    SetWatches, Stat, WatcherType, WatchesRequest,
};

use super::*;
use crate::multicast::GroupId;
use crate::testkit::Rng;
use crate::zk::{Applied, Command, Op, Options, SessionId, Zk};

const GLOBAL: GroupId = 100;
const DEFAULT_SEEDS: u64 = 1000;
const PATHS: [&str; 20] = [
    "/a", "/a/b", "/a/c", "/a/b/d", "/a/b/e", "/c", "/c/x", "/c/y", "/e", "/e/f", "/e/f/g", "/g",
    "/h", "/h/i", "/h/j", "/k", "/a/c/m", "/c/x/n", "/m", "/m/n",
];
/// The only path of persistent recursive watches: no standard watch is ever set on it, since in
/// ZooKeeper 3.8 a standard watch replaces a recursive one of the same session and path, on the
/// one partition that registers it (see the module doc of `zk_service`). Persistent watches,
/// checkWatches and removeWatches do name it.
const RECURSIVE: &str = "/";
const SESSIONS: [SessionId; 3] = [0x11, 0x22, 0x33];

fn create_session(session: SessionId) -> Op {
    Op::CreateSession {
        timeout_ms: 30_000,
        passwd: vec![session as u8],
        client_ip: "127.0.0.1".into(),
    }
}

fn path(rng: &mut Rng) -> String {
    PATHS[rng.index(PATHS.len())].to_string()
}

/// A path for a command on watches that is not a standard watch: [`RECURSIVE`] or one of [`PATHS`].
fn watch_path(rng: &mut Rng) -> String {
    if rng.chance(200_000) {
        RECURSIVE.to_string()
    } else {
        path(rng)
    }
}

fn version(rng: &mut Rng) -> i32 {
    if rng.chance(400_000) {
        -1
    } else {
        rng.index(3) as i32
    }
}

fn data(rng: &mut Rng) -> Option<Vec<u8>> {
    if rng.chance(100_000) {
        None
    } else {
        Some(vec![b'v'; rng.index(4)])
    }
}

fn create_req(rng: &mut Rng) -> CreateRequest {
    // persistent, ephemeral, sequential, ephemeral sequential
    let flags = [0, 0, 1, 2, 3][rng.index(5)];
    CreateRequest {
        path: path(rng),
        data: data(rng),
        acl: crate::zk::open_acl(),
        flags,
        ttl: None,
    }
}

fn multi_op(rng: &mut Rng, structural: bool) -> MultiOp {
    match rng.index(if structural { 4 } else { 2 }) {
        0 => MultiOp::SetData(SetDataRequest {
            path: path(rng),
            data: data(rng),
            version: version(rng),
        }),
        1 => MultiOp::Check(CheckVersionRequest {
            path: path(rng),
            version: version(rng),
        }),
        2 => MultiOp::Create {
            op: OpCode::Create,
            req: create_req(rng),
        },
        _ => MultiOp::Delete(DeleteRequest {
            path: path(rng),
            version: version(rng),
        }),
    }
}

fn watch_req(rng: &mut Rng) -> PathWatchRequest {
    PathWatchRequest {
        path: path(rng),
        watch: rng.chance(500_000),
    }
}

fn random_op(rng: &mut Rng) -> Op {
    let r = |req| Op::Request(req);
    match rng.index(100) {
        0..=17 => {
            let op = if rng.chance(500_000) {
                OpCode::Create
            } else {
                OpCode::Create2
            };
            r(Request::Create {
                op,
                req: create_req(rng),
            })
        }
        18..=27 => r(Request::Delete(DeleteRequest {
            path: path(rng),
            version: version(rng),
        })),
        28..=44 => r(Request::SetData(SetDataRequest {
            path: path(rng),
            data: data(rng),
            version: version(rng),
        })),
        45..=55 => r(Request::GetData(watch_req(rng))),
        56..=60 => r(Request::Exists(watch_req(rng))),
        61..=65 => r(Request::GetChildren2(watch_req(rng))),
        66..=69 => r(Request::Check(CheckVersionRequest {
            path: path(rng),
            version: version(rng),
        })),
        70..=79 => {
            let n = 1 + rng.index(4);
            r(Request::Multi(
                (0..n).map(|_| multi_op(rng, true)).collect(),
            ))
        }
        80..=84 => {
            let n = 1 + rng.index(3);
            r(Request::Multi(
                (0..n).map(|_| multi_op(rng, false)).collect(),
            ))
        }
        85..=87 => {
            let n = 1 + rng.index(3);
            r(Request::MultiRead(
                (0..n)
                    .map(|_| {
                        let g = PathWatchRequest {
                            path: path(rng),
                            watch: false,
                        };
                        if rng.chance(700_000) {
                            MultiOp::GetData(g)
                        } else {
                            MultiOp::GetChildren(g)
                        }
                    })
                    .collect(),
            ))
        }
        88..=89 => r(Request::AddWatch(if rng.chance(500_000) {
            AddWatchRequest {
                path: watch_path(rng),
                mode: AddWatchMode::Persistent,
            }
        } else {
            AddWatchRequest {
                path: RECURSIVE.to_string(),
                mode: AddWatchMode::PersistentRecursive,
            }
        })),
        90 => r(Request::CheckWatches(WatchesRequest {
            path: watch_path(rng),
            watcher_type: [WatcherType::Data, WatcherType::Children, WatcherType::Any]
                [rng.index(3)],
        })),
        91..=92 => r(Request::RemoveWatches(WatchesRequest {
            path: watch_path(rng),
            watcher_type: [WatcherType::Data, WatcherType::Children, WatcherType::Any]
                [rng.index(3)],
        })),
        93 => {
            let list = |rng: &mut Rng| (0..rng.index(4)).map(|_| path(rng)).collect();
            r(Request::SetWatches2(SetWatches {
                // 0 and MAX compare the same way with any zxid numbering.
                relative_zxid: if rng.chance(500_000) { 0 } else { i64::MAX },
                data_watches: list(rng),
                exist_watches: list(rng),
                child_watches: list(rng),
                persistent_watches: (0..rng.index(3)).map(|_| watch_path(rng)).collect(),
                persistent_recursive_watches: if rng.chance(300_000) {
                    vec![RECURSIVE.to_string()]
                } else {
                    vec![]
                },
            }))
        }
        94..=95 => Op::CloseSession,
        97 => r(Request::SetAcl(protocol::SetAclRequest {
            path: path(rng),
            acl: crate::zk::open_acl(),
            version: version(rng),
        })),
        96 => {
            // Stands for createSession of the command's session (reopened after a close).
            create_session(0)
        }
        _ => r(Request::GetChildren(watch_req(rng))),
    }
}

fn norm_stat(s: &Stat) -> Stat {
    Stat {
        czxid: 0,
        mzxid: 0,
        pzxid: 0,
        ..*s
    }
}

/// The reply with the zxid-valued stat fields zeroed.
fn norm(a: &Applied) -> (ErrorCode, Option<Response>) {
    let r = a.response.as_ref().map(|r| match r {
        Response::Create2 { path, stat } => Response::Create2 {
            path: path.clone(),
            stat: norm_stat(stat),
        },
        Response::Stat(s) => Response::Stat(norm_stat(s)),
        Response::GetData { data, stat } => Response::GetData {
            data: data.clone(),
            stat: norm_stat(stat),
        },
        Response::GetAcl { acl, stat } => Response::GetAcl {
            acl: acl.clone(),
            stat: norm_stat(stat),
        },
        Response::GetChildren2 { children, stat } => Response::GetChildren2 {
            children: children.clone(),
            stat: norm_stat(stat),
        },
        Response::Multi(results) => Response::Multi(
            results
                .iter()
                .map(|m| match m {
                    MultiResult::Create2 { path, stat } => MultiResult::Create2 {
                        path: path.clone(),
                        stat: norm_stat(stat),
                    },
                    MultiResult::SetData { stat } => MultiResult::SetData {
                        stat: norm_stat(stat),
                    },
                    MultiResult::GetData { data, stat } => MultiResult::GetData {
                        data: data.clone(),
                        stat: norm_stat(stat),
                    },
                    other => other.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    });
    (a.err, r)
}

#[derive(Default, Debug)]
struct Totals {
    seeds: u64,
    commands: u64,
    multi_partition: u64,
    executions: u64,
    notifications: u64,
    data_changed: u64,
    deleted: u64,
    prefetched: u64,
    prefetched_behind_multi: u64,
    waits: u64,
    errors: BTreeMap<i32, u64>,
}

struct Part {
    exec: Executor<ZkService>,
    delivered: usize,
    executed: usize,
    last_zxid: i64,
    speed: usize,
}

struct World {
    seed: u64,
    rng: Rng,
    k: u32,
    cmds: Vec<(CmdId, Command)>,
    /// The single `Zk`'s result per command.
    expected: Vec<Applied>,
    streams: Vec<Vec<usize>>,
    parts: Vec<Part>,
    /// (receiving partition, encoded signal)
    net: Vec<(usize, Bytes)>,
    multi_zxid: BTreeMap<CmdId, i64>,
    reference: Zk,
    totals: Totals,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let k = 1 + rng.index(4) as u32;
        let n = 40 + rng.index(260);
        let mut reference = Zk::new(Options::default());
        let mut next_zxid = 1;
        let mut instances: BTreeMap<GroupId, u64> = BTreeMap::new();
        let mut cmds = Vec::new();
        let mut expected = Vec::new();
        let mut streams = vec![Vec::new(); k as usize];
        for i in 0..SESSIONS.len() + n {
            let (session, op) = match SESSIONS.get(i) {
                Some(s) => (*s, create_session(*s)),
                None => {
                    let s = SESSIONS[rng.index(SESSIONS.len())];
                    // A closed session mostly comes back soon (as a client would reconnect).
                    let reopen = !reference.has_session(s) && rng.chance(500_000);
                    match random_op(&mut rng) {
                        _ if reopen => (s, create_session(s)),
                        Op::CreateSession { .. } => (s, create_session(s)),
                        op => (s, op),
                    }
                }
            };
            let cmd = Command {
                session,
                xid: i as i32,
                time_ms: 1_000 + 10 * i as i64,
                op,
            };
            let dest = dest_of(&cmd, k);
            let group = if dest.len() > 1 { GLOBAL } else { dest[0] };
            let instance = instances.entry(group).or_insert(0);
            *instance += 1;
            for p in &dest {
                streams[*p as usize].push(i);
            }
            let zxid = if Zk::is_write(&cmd.op) {
                next_zxid += 1;
                next_zxid - 1
            } else {
                reference.last_zxid()
            };
            expected.push(reference.apply(zxid, &cmd));
            cmds.push((CmdId::new(group, *instance, 0), cmd));
        }
        let parts = (0..k)
            .map(|p| Part {
                exec: Executor::new(p, GLOBAL, ZkService::new(Zk::new(Options::default()), p, k)),
                delivered: 0,
                executed: 0,
                last_zxid: 0,
                speed: 1 + rng.index(6),
            })
            .collect();
        World {
            seed,
            rng,
            k,
            cmds,
            expected,
            streams,
            parts,
            net: Vec::new(),
            multi_zxid: BTreeMap::new(),
            reference,
            totals: Totals::default(),
        }
    }

    fn handle(&mut self, at: usize, step: Step<Applied>) {
        for out in step.signals {
            assert_eq!(out.signal.from as usize, at);
            for q in &out.to {
                self.net.push((*q as usize, out.signal.encode()));
            }
        }
        for e in step.outputs {
            self.check_output(at, e);
        }
    }

    fn check_output(&mut self, at: usize, e: Executed<Applied>) {
        let seed = self.seed;
        let k = self.k;
        let part = &mut self.parts[at];
        assert!(
            part.executed < part.delivered,
            "seed {seed}: executed undelivered"
        );
        let idx = self.streams[at][part.executed];
        let (id, cmd) = &self.cmds[idx];
        assert_eq!(e.id, *id, "seed {seed}: partition {at} out of order");
        let want = &self.expected[idx];
        let ctx = || format!("seed {seed} k {k}: partition {at} command #{idx} {id} {cmd:?}");
        assert_eq!(norm(&e.output), norm(want), "{}: reply differs", ctx());
        let owned: Vec<_> = want
            .notifications
            .iter()
            .filter(|(_, ev)| partition_of(&ev.path, k) == at as u32)
            .cloned()
            .collect();
        assert_eq!(
            e.output.notifications,
            owned,
            "{}: notifications differ",
            ctx()
        );
        let write = Zk::is_write(&cmd.op);
        assert!(
            e.zxid >= part.last_zxid && (!write || e.zxid > part.last_zxid),
            "{}: zxid went from {} to {} (write: {write})",
            ctx(),
            part.last_zxid,
            e.zxid
        );
        part.last_zxid = e.zxid;
        part.executed += 1;
        assert_eq!(
            part.exec.service().zk().last_zxid(),
            part.exec.clock(),
            "{}: zk last_zxid is not the executor's clock",
            ctx()
        );
        match &e.output.response {
            Some(Response::Stat(s)) if matches!(cmd.op, Op::Request(Request::SetData(_))) => {
                assert_eq!(s.mzxid, e.zxid, "{}: setData mzxid", ctx());
            }
            Some(Response::Create2 { stat, .. }) => {
                assert_eq!(stat.czxid, e.zxid, "{}: create2 czxid", ctx());
            }
            _ => {}
        }
        if dest_of(cmd, k).len() > 1 {
            let first = *self.multi_zxid.entry(*id).or_insert(e.zxid);
            assert_eq!(first, e.zxid, "{}: partitions disagree on the zxid", ctx());
        }
        let t = &mut self.totals;
        t.executions += 1;
        t.notifications += e.output.notifications.len() as u64;
        for (_, ev) in &e.output.notifications {
            if ev.event_type == EventType::NodeDataChanged.as_i32() {
                t.data_changed += 1;
            } else if ev.event_type == EventType::NodeDeleted.as_i32() {
                t.deleted += 1;
            }
        }
        *t.errors.entry(e.output.err.as_i32()).or_default() += 1;
    }

    fn step(&mut self) -> bool {
        let deliverable: Vec<usize> = (0..self.parts.len())
            .filter(|p| self.parts[*p].delivered < self.streams[*p].len())
            .collect();
        if deliverable.is_empty() && self.net.is_empty() {
            return false;
        }
        let signal_turn =
            !self.net.is_empty() && (deliverable.is_empty() || self.rng.chance(400_000));
        if signal_turn {
            let i = self.rng.index(self.net.len());
            let (to, bytes) = if self.rng.chance(100_000) {
                self.net[i].clone() // duplicated: the original stays in flight
            } else {
                self.net.swap_remove(i)
            };
            let signal = Signal::decode(bytes).expect("own encoding decodes");
            let step = self.parts[to].exec.on_signal(signal);
            self.handle(to, step);
        } else {
            let weights: Vec<usize> = deliverable.iter().map(|p| self.parts[*p].speed).collect();
            let mut pick = self.rng.index(weights.iter().sum());
            let mut at = deliverable[0];
            for (p, w) in deliverable.iter().zip(&weights) {
                if pick < *w {
                    at = *p;
                    break;
                }
                pick -= w;
            }
            // Sometimes a burst is queued before anything runs (a delivered batch).
            let burst = if self.rng.chance(200_000) {
                1 + self.rng.index(4)
            } else {
                1
            };
            let mut signals = Vec::new();
            for _ in 0..burst {
                let part = &mut self.parts[at];
                let Some(idx) = self.streams[at].get(part.delivered).copied() else {
                    break;
                };
                let (id, cmd) = self.cmds[idx].clone();
                part.delivered += 1;
                signals.extend(part.exec.enqueue(id, cmd).expect("valid delivery"));
            }
            let mut step = self.parts[at].exec.run(usize::MAX);
            step.signals.splice(0..0, signals);
            self.handle(at, step);
        }
        true
    }

    fn finish(&mut self) {
        let seed = self.seed;
        let k = self.k;
        for (p, part) in self.parts.iter().enumerate() {
            assert_eq!(
                part.executed,
                self.streams[p].len(),
                "seed {seed}: partition {p} stuck at {} of {} ({:?})",
                part.executed,
                self.streams[p].len(),
                part.exec
            );
            assert_eq!(part.exec.buffered_signals(), 0, "seed {seed}: signals left");
            assert_eq!(part.exec.metrics().signals_divergent, 0, "seed {seed}");
            let zk = part.exec.service().zk();
            let want: Vec<&String> = self.reference.paths().collect();
            let got: Vec<&String> = zk.paths().collect();
            assert_eq!(
                got, want,
                "seed {seed} k {k}: partition {p} has other paths"
            );
            for path in want {
                let (w, g) = (self.reference.stat(path).unwrap(), zk.stat(path).unwrap());
                let hier = |s: Stat| {
                    (
                        s.ctime,
                        s.cversion,
                        s.aversion,
                        s.ephemeral_owner,
                        s.num_children,
                    )
                };
                assert_eq!(hier(g), hier(w), "seed {seed} k {k}: partition {p} {path}");
                let first = self.parts[0].exec.service().zk().stat(path).unwrap();
                assert_eq!(
                    (g.czxid, g.pzxid),
                    (first.czxid, first.pzxid),
                    "seed {seed} k {k}: partition {p} {path}: czxid/pzxid differ from partition 0"
                );
                if partition_of(path, k) == p as u32 {
                    let (wo, go) = (
                        self.reference.owned_fields(path).unwrap(),
                        zk.owned_fields(path).unwrap(),
                    );
                    assert_eq!(
                        (&go.data, go.version, go.mtime),
                        (&wo.data, wo.version, wo.mtime),
                        "seed {seed} k {k}: owner {p} of {path}"
                    );
                }
            }
            let m = part.exec.metrics();
            self.totals.prefetched += m.prefetched;
            self.totals.prefetched_behind_multi += m.prefetched_behind_multi;
            self.totals.waits += m.waits;
        }
        self.totals.seeds += 1;
        self.totals.commands += self.cmds.len() as u64;
        self.totals.multi_partition += self
            .cmds
            .iter()
            .filter(|(_, c)| dest_of(c, k).len() > 1)
            .count() as u64;
    }
}

fn run_seed(seed: u64) -> Totals {
    let mut w = World::new(seed);
    let mut steps = 0u64;
    while w.step() {
        steps += 1;
        assert!(steps < 1_000_000, "seed {seed}: no progress");
    }
    w.finish();
    w.totals
}

#[test]
fn zk_on_k_partitions_matches_one_zk() {
    let mut all = Totals::default();
    let mut per_k = [0u64; 5];
    for seed in crate::testkit::seeds(DEFAULT_SEEDS) {
        let t = crate::testkit::replaying(seed, || run_seed(seed));
        per_k[1 + Rng(seed).index(4)] += 1;
        all.seeds += t.seeds;
        all.commands += t.commands;
        all.multi_partition += t.multi_partition;
        all.executions += t.executions;
        all.notifications += t.notifications;
        all.data_changed += t.data_changed;
        all.deleted += t.deleted;
        all.prefetched += t.prefetched;
        all.prefetched_behind_multi += t.prefetched_behind_multi;
        all.waits += t.waits;
        for (e, n) in t.errors {
            *all.errors.entry(e).or_default() += n;
        }
    }
    eprintln!("zk sim: {all:?}, seeds per k {per_k:?}");
    if all.seeds >= 50 {
        assert!(per_k[1..].iter().all(|n| *n > 0), "every k ran");
        assert!(all.multi_partition > all.commands / 10, "{all:?}");
        assert!(all.data_changed > 0 && all.deleted > 0, "{all:?}");
        assert!(all.prefetched > 0 && all.waits > 0, "{all:?}");
        assert!(all.prefetched_behind_multi > 0, "{all:?}");
        for e in [
            ErrorCode::Ok,
            ErrorCode::NoNode,
            ErrorCode::BadVersion,
            ErrorCode::NodeExists,
        ] {
            assert!(all.errors.contains_key(&e.as_i32()), "no {e:?}: {all:?}");
        }
    }
}

/// k partitions driven in lockstep: each command goes to its destination, signals are handed over
/// at once. For targeted scenarios.
struct Lockstep {
    k: u32,
    execs: Vec<Executor<ZkService>>,
    instances: BTreeMap<GroupId, u64>,
    time: i64,
}

impl Lockstep {
    fn new(k: u32) -> Lockstep {
        let mut l = Lockstep {
            k,
            execs: (0..k)
                .map(|p| {
                    Executor::new(p, GLOBAL, ZkService::new(Zk::new(Options::default()), p, k))
                })
                .collect(),
            instances: BTreeMap::new(),
            time: 1_000,
        };
        for s in SESSIONS {
            l.run(s, create_session(s));
        }
        l
    }

    /// Runs one command; the outputs of the partitions that executed it, by partition.
    fn run(&mut self, session: SessionId, op: Op) -> BTreeMap<PartitionId, Executed<Applied>> {
        self.time += 10;
        let cmd = Command {
            session,
            xid: 1,
            time_ms: self.time,
            op,
        };
        let dest = dest_of(&cmd, self.k);
        let group = if dest.len() > 1 { GLOBAL } else { dest[0] };
        let instance = self.instances.entry(group).or_insert(0);
        *instance += 1;
        let id = CmdId::new(group, *instance, 0);
        let mut out = BTreeMap::new();
        let mut signals = Vec::new();
        for p in &dest {
            let step = self.execs[*p as usize].deliver(id, cmd.clone()).unwrap();
            signals.extend(step.signals);
            for e in step.outputs {
                out.insert(*p, e);
            }
        }
        for s in signals {
            for q in s.to {
                for e in self.execs[q as usize].on_signal(s.signal.clone()).outputs {
                    out.insert(q, e);
                }
            }
        }
        assert_eq!(out.len(), dest.len(), "every destination executed {cmd:?}");
        out
    }

    fn req(&mut self, session: SessionId, r: Request) -> BTreeMap<PartitionId, Executed<Applied>> {
        self.run(session, Op::Request(r))
    }

    fn create(&mut self, session: SessionId, path: &str, flags: i32) {
        let out = self.req(
            session,
            Request::Create {
                op: OpCode::Create,
                req: CreateRequest {
                    path: path.into(),
                    data: Some(b"0".to_vec()),
                    acl: crate::zk::open_acl(),
                    flags,
                    ttl: None,
                },
            },
        );
        assert!(
            out.values().all(|e| e.output.err == ErrorCode::Ok),
            "{out:?}"
        );
    }

    /// Every notification of one command, with the partition that emitted it.
    fn notes(
        out: &BTreeMap<PartitionId, Executed<Applied>>,
    ) -> Vec<(PartitionId, SessionId, i32, String)> {
        out.iter()
            .flat_map(|(p, e)| {
                e.output
                    .notifications
                    .iter()
                    .map(|(s, ev)| (*p, *s, ev.event_type, ev.path.clone()))
            })
            .collect()
    }
}

const A: SessionId = SESSIONS[0];
const B: SessionId = SESSIONS[1];

/// Two paths of different owners among `k`.
fn split_paths(k: u32) -> (String, String) {
    let p = "/w".to_string();
    let q = (0..)
        .map(|i| format!("/q{i}"))
        .find(|q| partition_of(q, k) != partition_of(&p, k))
        .unwrap();
    (p, q)
}

#[test]
fn data_watch_fires_once_on_the_owner_for_set_and_delete() {
    let k = 4;
    let mut l = Lockstep::new(k);
    let (p, _) = split_paths(k);
    let owner = partition_of(&p, k);
    l.create(A, &p, 0);
    let get = |watch| {
        Request::GetData(PathWatchRequest {
            path: p.clone(),
            watch,
        })
    };
    let out = l.req(A, get(true));
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![owner]);
    let set = l.req(
        B,
        Request::SetData(SetDataRequest {
            path: p.clone(),
            data: Some(b"1".to_vec()),
            version: 0,
        }),
    );
    let changed = EventType::NodeDataChanged.as_i32();
    assert_eq!(Lockstep::notes(&set), vec![(owner, A, changed, p.clone())]);
    // One-shot: a second setData fires nothing; a new watch then fires on delete, on the owner
    // only although every partition executes the delete.
    let set = l.req(
        B,
        Request::SetData(SetDataRequest {
            path: p.clone(),
            data: None,
            version: -1,
        }),
    );
    assert!(Lockstep::notes(&set).is_empty());
    l.req(A, get(true));
    let del = l.req(
        B,
        Request::Delete(DeleteRequest {
            path: p.clone(),
            version: 2,
        }),
    );
    assert_eq!(del.len(), k as usize);
    assert!(del.values().all(|e| e.output.err == ErrorCode::Ok));
    let deleted = EventType::NodeDeleted.as_i32();
    assert_eq!(Lockstep::notes(&del), vec![(owner, A, deleted, p.clone())]);
}

#[test]
fn delete_and_multi_use_the_owners_versions() {
    let k = 2;
    let mut l = Lockstep::new(k);
    let (p, q) = split_paths(k);
    l.create(A, &p, 0);
    l.create(A, &q, 0);
    for v in 0..3 {
        l.req(
            A,
            Request::SetData(SetDataRequest {
                path: p.clone(),
                data: Some(vec![v]),
                version: v.into(),
            }),
        );
    }
    // Only p's owner has version 3; a multi checking it from q's side must see it everywhere.
    let multi = |version| {
        Request::Multi(vec![
            MultiOp::Check(CheckVersionRequest {
                path: p.clone(),
                version,
            }),
            MultiOp::SetData(SetDataRequest {
                path: q.clone(),
                data: Some(b"x".to_vec()),
                version: 0,
            }),
        ])
    };
    let bad = l.req(B, multi(2));
    assert_eq!(bad.len(), 2);
    for e in bad.values() {
        assert_eq!(
            e.output.response,
            Some(Response::Multi(vec![
                MultiResult::Error {
                    err: ErrorCode::BadVersion.as_i32()
                },
                MultiResult::Error {
                    err: ErrorCode::RuntimeInconsistency.as_i32()
                },
            ]))
        );
    }
    let good = l.req(B, multi(3));
    let zxids: Vec<i64> = good.values().map(|e| e.zxid).collect();
    assert_eq!(zxids[0], zxids[1], "one zxid everywhere");
    let results: Vec<_> = good.values().map(|e| e.output.response.clone()).collect();
    assert_eq!(results[0], results[1]);
    assert!(
        matches!(&results[0], Some(Response::Multi(r)) if r[1] != MultiResult::Error { err: 0 })
    );
    // A delete with p's stale version on the non-owner still fails everywhere, and with the
    // owner's version succeeds everywhere.
    let del = |version| {
        Request::Delete(DeleteRequest {
            path: p.clone(),
            version,
        })
    };
    assert!(l
        .req(B, del(0))
        .values()
        .all(|e| e.output.err == ErrorCode::BadVersion));
    assert!(l
        .req(B, del(3))
        .values()
        .all(|e| e.output.err == ErrorCode::Ok));
    for e in &l.execs {
        assert!(e.service().zk().stat(&p).is_none());
        assert_eq!(e.service().zk().last_zxid(), e.clock());
    }
}

#[test]
fn remove_watches_answers_with_the_owners_verdict() {
    let k = 3;
    let mut l = Lockstep::new(k);
    let (p, _) = split_paths(k);
    l.create(A, &p, 0);
    let remove = |l: &mut Lockstep| {
        l.req(
            A,
            Request::RemoveWatches(WatchesRequest {
                path: p.clone(),
                watcher_type: WatcherType::Data,
            }),
        )
    };
    let none = remove(&mut l);
    assert!(none.values().all(|e| e.output.err == ErrorCode::NoWatcher));
    l.req(
        A,
        Request::Exists(PathWatchRequest {
            path: p.clone(),
            watch: true,
        }),
    );
    // The watch lives on the owner only, yet every partition answers Ok.
    let some = remove(&mut l);
    assert_eq!(some.len(), k as usize);
    assert!(
        some.values().all(|e| e.output.err == ErrorCode::Ok),
        "{some:?}"
    );
    assert!(remove(&mut l)
        .values()
        .all(|e| e.output.err == ErrorCode::NoWatcher));
}

/// The one ZooKeeper 3.8 behaviour this partitioning does not reproduce (module doc of
/// `zk_service`): a standard watch replaces the session's persistent recursive watch on the same
/// path on the partition that registers it only, so the other partitions keep firing the
/// recursive watch for their descendants. One `Zk` stops sending these events.
#[test]
fn known_difference_standard_watch_over_recursive_watch() {
    let k = 2;
    let mut l = Lockstep::new(k);
    let (p, _) = split_paths(k);
    l.create(A, &p, 0);
    l.req(
        A,
        Request::AddWatch(AddWatchRequest {
            path: p.clone(),
            mode: AddWatchMode::PersistentRecursive,
        }),
    );
    l.req(
        A,
        Request::GetData(PathWatchRequest {
            path: p.clone(),
            watch: true,
        }),
    );
    let child = (0..)
        .map(|i| format!("{p}/c{i}"))
        .find(|c| partition_of(c, k) != partition_of(&p, k))
        .unwrap();
    let out = l.req(
        B,
        Request::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: child.clone(),
                data: None,
                acl: crate::zk::open_acl(),
                flags: 0,
                ttl: None,
            },
        },
    );
    let created = EventType::NodeCreated.as_i32();
    // One Zk, as ZooKeeper 3.8, sends nothing here; 3.9 (ZOOKEEPER-4466) sends this event.
    let mut one = Zk::new(Options::default());
    let mut zxid = 0;
    let mut apply = |session, op| {
        zxid += 1;
        one.apply(
            zxid,
            &Command {
                session,
                xid: 1,
                time_ms: 0,
                op,
            },
        )
    };
    apply(A, create_session(A));
    apply(B, create_session(B));
    for op in [
        Request::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: p.clone(),
                data: None,
                acl: crate::zk::open_acl(),
                flags: 0,
                ttl: None,
            },
        },
        Request::AddWatch(AddWatchRequest {
            path: p.clone(),
            mode: AddWatchMode::PersistentRecursive,
        }),
        Request::GetData(PathWatchRequest {
            path: p.clone(),
            watch: true,
        }),
    ] {
        apply(A, Op::Request(op));
    }
    let single = apply(
        B,
        Op::Request(Request::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: child.clone(),
                data: None,
                acl: crate::zk::open_acl(),
                flags: 0,
                ttl: None,
            },
        }),
    );
    assert_eq!(single.err, ErrorCode::Ok);
    assert!(single.notifications.is_empty());
    assert_eq!(
        Lockstep::notes(&out),
        vec![(partition_of(&child, k), A, created, child)]
    );
}

/// As in ZooKeeper 3.8, a persistent watch replaces the session's persistent recursive watch on
/// the same path on every partition: a child created on another partition fires nothing (the
/// differential run against ZooKeeper found a partition that kept firing it).
#[test]
fn persistent_watch_replaces_recursive_watch_everywhere() {
    let k = 2;
    let mut l = Lockstep::new(k);
    let (p, _) = split_paths(k);
    l.create(A, &p, 0);
    for mode in [AddWatchMode::PersistentRecursive, AddWatchMode::Persistent] {
        let out = l.req(
            A,
            Request::AddWatch(AddWatchRequest {
                path: p.clone(),
                mode,
            }),
        );
        assert_eq!(out.len(), k as usize, "addWatch goes to every partition");
    }
    let child = (0..)
        .map(|i| format!("{p}/c{i}"))
        .find(|c| partition_of(c, k) != partition_of(&p, k))
        .unwrap();
    l.create(B, &child, 0);
    let out = l.req(
        B,
        Request::SetData(protocol::SetDataRequest {
            path: child.clone(),
            data: Some(b"1".to_vec()),
            version: -1,
        }),
    );
    assert_eq!(Lockstep::notes(&out), vec![]);
    // The persistent watch itself fires, from the owner of `p`.
    let out = l.req(
        B,
        Request::SetData(protocol::SetDataRequest {
            path: p.clone(),
            data: Some(b"1".to_vec()),
            version: -1,
        }),
    );
    assert_eq!(
        Lockstep::notes(&out),
        vec![(
            partition_of(&p, k),
            A,
            EventType::NodeDataChanged.as_i32(),
            p.clone()
        )]
    );
}

/// State prefetching behind a queued create: a create or delete of a known path blocks only the
/// facts of that path, a sequential create (whose path is known only when it runs) blocks every
/// fact, so a delete of the name it will take is not signalled with a stale "absent".
#[test]
fn a_queued_sequential_create_blocks_prefetching_the_facts_of_any_path() {
    let k = 2;
    let mut l = Lockstep::new(k);
    let seq = "/s0000000000";
    let owner = partition_of(seq, k) as usize;
    let other = (0..)
        .map(|i| format!("/o{i}"))
        .find(|p| partition_of(p, k) as usize == owner)
        .unwrap();
    l.create(A, &other, 0);
    let cmd = |i: u64, op: Request| {
        (
            CmdId::new(GLOBAL, 1_000 + i, 0),
            Command {
                session: A,
                xid: 1,
                time_ms: 5_000,
                op: Op::Request(op),
            },
        )
    };
    let create = |path: &str, flags: i32| Request::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: path.into(),
            data: None,
            acl: crate::zk::open_acl(),
            flags,
            ttl: None,
        },
    };
    let delete = |path: &str| {
        Request::Delete(DeleteRequest {
            path: path.into(),
            version: -1,
        })
    };
    let x = &mut l.execs[owner];
    // Queued behind a plain create of another path, a delete of `other` is prefetched.
    let (id, c) = cmd(1, create("/plain", 0));
    x.enqueue(id, c).unwrap();
    let (id, c) = cmd(2, delete(&other));
    assert_eq!(x.enqueue(id, c).unwrap().len(), 1, "prefetched");
    // Behind a sequential create, a delete of the name it will take waits for the head.
    let (id, c) = cmd(3, create("/s", 2));
    x.enqueue(id, c).unwrap();
    let (id, c) = cmd(4, delete(seq));
    assert!(x.enqueue(id, c).unwrap().is_empty(), "not prefetched");
}
