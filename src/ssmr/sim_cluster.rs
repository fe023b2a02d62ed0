//! A seeded deterministic simulation of a whole partitioned cluster: k partitions (1..=4) x r
//! replicas (1 or 3), each server running the real [`Member`] in its groups and an
//! [`Executor`]`<`[`ZkService`]`>` fed by the Member's deliveries, with clients whose history is
//! checked for linearizability.
//!
//! Topology: server `p * r + j + 1` is replica `j` of partition `p`. Group `g_p` has the replicas
//! of partition `p`; `g_all` has every server. Each server is a Member of `[g_p, g_all]`, merged
//! by the coordinators' timestamps (of `[g_0]` alone when k = 1). A delivered instance's commands reach the executor
//! in merged order with [`CmdId`] (group, instance, index in the batch); the executor's signals
//! travel the simulated network to every replica of the partitions named.
//!
//! Clients (2..=6), each with one request outstanding, send it to a random server. That server
//! orders a single-partition command in `g_{h(path)}` (forwarding it first, one more network hop,
//! to a replica of that partition when it is not one) and a multi-partition command in `g_all`.
//! Every replica of a destination partition that executes a command replies to its client; the
//! client takes the first reply and checks that later ones are identical. A client that hears
//! nothing for its timeout abandons the request: its outcome is unknown.
//!
//! The workload is ZooKeeper as a set of versioned registers: getData, setData (with and without
//! an expected version), check, create and delete on `2k` fixed znodes (two owned by each
//! partition), multi transactions of checks and setDatas (and sometimes a create or delete)
//! across partitions, and multiRead of several znodes.
//!
//! Fault model (every choice comes from one splitmix64 stream; the scenario's rates are drawn
//! from the seed too):
//! - Time advances in 1 ms steps; every live server ticks its Member each step. Half the runs
//!   give each server a wall clock up to 50 ms ahead (batch timestamps come from it).
//! - Network: every message between two endpoints takes a random latency (so messages reorder),
//!   may be dropped and, except client requests and Paxos forwards (a transport never repeats
//!   those: their commands would be ordered twice), duplicated. Links are cut and healed: all
//!   links of one server (often a leader's), or one direction of one link. Messages a server
//!   sends itself are never lost.
//! - Disk: acceptor votes become durable only when a simulated fsync completes; the messages and
//!   deliveries that wait for them are released then, in order (as in `multicast::sim_member`).
//! - Crash: a server loses its unsynced votes, the messages and deliveries waiting for them, its
//!   in-flight messages and its replica. It restarts later from its durable votes and its last
//!   checkpoint: the `Zk` snapshot ([`Zk::snapshot`]), the executor's clock and last
//!   multi-partition command ([`Executor::resume`]), the signals it remembers for re-sending
//!   ([`Executor::remember_signals`]) and the per-group positions; its Member resumes at those
//!   positions. Leaders crash more often than the others, new leaders sometimes within 40 ms of
//!   winning, and power failures crash every server at once. One server in five has a slow disk.
//! - Checkpoints are taken at random moments when the executor's queue is empty, and reported
//!   with [`Member::checkpointed`], which lets acceptors trim.
//! - Lost signals: a replica whose head has waited for the same partitions
//!   ([`Executor::waiting`]) for `resend_ms` asks every replica of the missing partitions to send
//!   again; a replica answers from memory with the signals of that command and the next ones
//!   ([`Executor::sent_signals_from`]), so a replica replaying an old stretch of the log gets
//!   many per request.
//!
//! Trimming is conservative, so no state transfer is modelled: acceptors trim only below the
//! lowest checkpoint every member of the group reported, and a restarted server resumes from its
//! own checkpoint, so the instances it needs are never trimmed. A Member asking for state
//! transfer (`state_needed`) fails the run.
//!
//! Checked at every step: a ballot proposes one value per instance and a decided instance never
//! changes; each replica receives each group's instances in consecutive order; every replica of
//! a partition executes the same sequence of commands with the same zxids and outputs (its
//! sequence since the last restart continues its checkpoint's prefix of one common sequence);
//! every partition of a multi-partition command computes the same zxid and output; a command is
//! ordered at one [`CmdId`] only; a replica's clock never goes back and equals its `Zk`'s
//! `last_zxid`; writes take a zxid above the clock, reads do not move it; every reply a client
//! receives for one request is identical.
//!
//! At the end: the clients' history is linearizable ([`crate::testkit::linearizability`]), each
//! request its client abandoned resolved from what the cluster did: left out when it was never
//! ordered, checked with the reply its replicas computed (returned after everything else) when
//! it was executed. That implies the clients' view, where those outcomes are unknown, is
//! linearizable too, and keeps the search small. Liveness: faults stop, links heal, every server
//! restarts; after a quiet period the clients send new requests, which must all be answered;
//! every command ordered at all must be executed by every replica of its destination partitions
//! (commands never ordered were lost in faults: counted); replicas of a partition end with equal
//! snapshots.
//!
//! `VOLERY_SEED=<u64>` replays one seed; `VOLERY_SIM_SEEDS=<n>` runs seeds `0..n` instead of the
//! default count; `VOLERY_SIM_VERBOSE` prints each seed's scenario and counters.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use protocol::{
    CheckVersionRequest, CreateRequest, DeleteRequest, ErrorCode, MultiOp, MultiResult, OpCode,
    PathWatchRequest, Request, Response, SetDataRequest,
};

use super::{dest_of, partition_of, CmdId, Executor, PartitionId, Signal, SignalOut, ZkService};
use crate::multicast::{
    Ballot, Batch, CoordinatorOptions, Delivery, Envelope, GroupId, GroupSpec, Instance, Member,
    MemberConfig, MemberOptions, NodeId, Outputs, PaxosMsg, VoteStore,
};
use crate::testkit::linearizability::{self as lin, Input, Operation, Output};
use crate::testkit::sim_disk::SimDisk;
use crate::testkit::Rng;
use crate::zk::{Command, Op, Options, SessionId, Zk};

/// Seeds run by default (kept small so the test stays within seconds in the dev profile).
const DEFAULT_SEEDS: u64 = 100;
const GLOBAL: GroupId = 100;
/// Client endpoints are numbered from here (servers from 1).
const CLIENT_BASE: u32 = 1_000;
/// Most signals sent in answer to one request for a missing signal.
const RESEND_BATCH: usize = 64;
/// Quiet time after healing before liveness requests are sent.
const SETTLE_MS: u64 = 1_000;
/// Time over which liveness requests are sent.
const LIVENESS_REQUESTS_MS: u64 = 400;
/// Time after the last liveness request within which everything must be answered and executed.
const LIVENESS_BUDGET_MS: u64 = 4_000;
/// Simulated time when a run starts.
const START_MS: u64 = 1_000;
/// History times are in nanoseconds (the checker prints seconds); one simulated ms each.
const NS_PER_MS: u64 = 1_000_000;
/// The return time of a request its client abandoned but the cluster executed: after everything.
const NEVER_RETURNED: u64 = u64::MAX - 1;

fn group_of(p: PartitionId) -> GroupId {
    10 + p
}

/// Rates and sizes of one run, drawn from its seed ("swarm testing").
#[derive(Debug, Clone)]
struct Scenario {
    partitions: u32,
    replicas: u32,
    clients: usize,
    fault_ms: u64,
    /// Each server's wall clock runs ahead of simulated time by up to this much (the merge of
    /// groups orders batches by their coordinators' clocks).
    skew_max_ms: u64,
    latency_max_ms: u64,
    drop_ppm: u64,
    dup_ppm: u64,
    fsync_max_ms: u64,
    /// Per server and ms.
    crash_ppm: u64,
    /// Per ms: every server crashes at once.
    power_failure_ppm: u64,
    /// Per leadership won: the new leader crashes within 40 ms.
    new_leader_crash_ppm: u64,
    down_max_ms: u64,
    /// Per ms.
    partition_ppm: u64,
    heal_ppm: u64,
    /// Per server and ms (taken only when the executor's queue is empty).
    checkpoint_ppm: u64,
    think_max_ms: u64,
    client_timeout_ms: u64,
    resend_ms: u64,
    /// Periodic skips of an idle coordinator (the fallback of demand-driven ones), in ticks.
    skip_after_ticks: u64,
    skip_lookahead_ms: u64,
    /// The global group's acceptors: every server, or a subset (the others learn only).
    global_acceptors: Vec<NodeId>,
}

impl Scenario {
    fn draw(rng: &mut Rng) -> Scenario {
        let partitions = [1, 2, 2, 3, 3, 4, 4][rng.index(7)];
        let replicas = if rng.percent(30) { 1 } else { 3 };
        let storm = rng.percent(20);
        let mut sc = Scenario {
            partitions,
            replicas,
            clients: 2 + rng.index(5),
            skew_max_ms: if rng.percent(50) { rng.range(0, 50) } else { 0 },
            fault_ms: rng.range(1_000, 2_500),
            latency_max_ms: rng.range(1, 10),
            drop_ppm: rng.range(0, 60_000),
            dup_ppm: rng.range(0, 40_000),
            fsync_max_ms: rng.range(1, 6),
            crash_ppm: rng.range(0, if storm { 2_000 } else { 400 }),
            power_failure_ppm: rng.range(0, 150),
            new_leader_crash_ppm: if rng.percent(30) {
                rng.range(0, 300_000)
            } else {
                0
            },
            down_max_ms: rng.range(50, 1_000),
            partition_ppm: rng.range(0, 1_500),
            heal_ppm: rng.range(500, 3_000),
            checkpoint_ppm: rng.range(1_000, 10_000),
            think_max_ms: rng.range(0, 10),
            client_timeout_ms: rng.range(250, 1_000),
            resend_ms: rng.range(20, 100),
            skip_after_ticks: if rng.percent(50) {
                5
            } else {
                rng.range(20, 200)
            },
            skip_lookahead_ms: rng.range(0, 10),
            global_acceptors: Vec::new(),
        };
        let mut acceptors: Vec<NodeId> = (1..=sc.servers()).collect();
        if rng.percent(50) {
            let keep = 1 + rng.index(acceptors.len());
            while acceptors.len() > keep {
                acceptors.remove(rng.index(acceptors.len()));
            }
        }
        sc.global_acceptors = acceptors;
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
            heartbeat_ms: 20,
            election_ms: 120,
            startup_listen_ms: 120,
            catch_up_ms: 30,
            catch_up_batch: 16,
        }
    }

    fn servers(&self) -> u32 {
        self.partitions * self.replicas
    }

    /// The Executor's global group (with one partition nothing is multi-partition).
    fn global(&self) -> GroupId {
        if self.partitions == 1 {
            group_of(0)
        } else {
            GLOBAL
        }
    }

    fn replicas_of(&self, p: PartitionId) -> impl Iterator<Item = NodeId> {
        let r = self.replicas;
        (p * r + 1)..=(p * r + r)
    }

    fn partition_of_server(&self, id: NodeId) -> PartitionId {
        (id - 1) / self.replicas
    }

    /// Whether server `id` is an acceptor of `group`, as [`Scenario::groups_of`] lays them out.
    fn is_acceptor(&self, group: GroupId, id: NodeId) -> bool {
        if self.partitions > 1 && group == GLOBAL {
            self.global_acceptors.contains(&id)
        } else {
            group == group_of(self.partition_of_server(id))
        }
    }

    /// A server's groups, in merge order, with their members.
    fn groups_of(&self, id: NodeId) -> Vec<GroupSpec> {
        let p = self.partition_of_server(id);
        let mut groups = vec![GroupSpec::all_acceptors(
            group_of(p),
            self.replicas_of(p).collect(),
        )];
        if self.partitions > 1 {
            groups.push(GroupSpec {
                group: GLOBAL,
                members: (1..=self.servers()).collect(),
                acceptors: self.global_acceptors.clone(),
            });
        }
        groups
    }
}

/// What travels between endpoints.
#[derive(Clone, Debug)]
enum Msg {
    Paxos(PaxosMsg),
    Signal(Signal),
    /// Asks a replica for the signal of `cmd` its partition sends the asker's partition.
    Resend {
        cmd: CmdId,
    },
    /// A client request (identified by its submission), or its forward to a replica of the
    /// partition that orders it.
    Submit(usize),
    Reply {
        sub: usize,
        rec: Reply,
    },
    /// A getData answered from a replica's state without ordering it (only with
    /// `World::unordered_reads`, to show the checks catch what that breaks).
    UnorderedRead {
        sub: usize,
        out: Output,
    },
}

/// What a command produced where it executed (notifications aside: each partition keeps those
/// whose path it owns).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    zxid: i64,
    err: ErrorCode,
    response: Option<Response>,
}

/// One executed command, as the partition's common sequence holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Executed {
    id: CmdId,
    sub: usize,
    reply: Reply,
}

/// A replica's durable checkpoint.
#[derive(Clone, Debug)]
struct Checkpoint {
    snapshot: Vec<u8>,
    clock: i64,
    last_multi: Option<CmdId>,
    /// Per group (merge order), the next instance to execute.
    next: Vec<Instance>,
    /// Commands executed (an index into the partition's common sequence).
    executed: usize,
    /// [`Executor::remembered_signals`].
    signals: Vec<SignalOut>,
}

/// A live server's replica: the executor and where it stands.
struct Replica {
    exec: Executor<ZkService>,
    next: Vec<Instance>,
    executed: usize,
    /// The executor's clock after the last step (it never goes back).
    clock: i64,
    /// The executor's last answer to `waiting()`, since when, and when the replica last asked
    /// for the missing signals.
    waiting: Option<((CmdId, Vec<PartitionId>), u64, u64)>,
}

/// Released once the votes produced before it are durable.
enum Held {
    Send(Envelope),
    Deliver(Delivery),
}

struct Server {
    id: NodeId,
    partition: PartitionId,
    groups: Vec<GroupId>,
    /// `None` while crashed (with `replica`).
    member: Option<Member>,
    replica: Option<Replica>,
    disk: SimDisk<Held>,
    checkpoint: Checkpoint,
    down_until: u64,
    fsync_max_ms: u64,
    /// How far the server's wall clock runs ahead of simulated time.
    skew_ms: u64,
    /// A crash scheduled for a server that just became a leader.
    crash_at: Option<u64>,
}

/// A request as the cluster sees it.
struct Submission {
    client: usize,
    cmd: Command,
    group: GroupId,
    dest: Vec<PartitionId>,
    /// Its operation in the history.
    op: usize,
    /// Sent in the liveness phase (must be answered).
    liveness: bool,
}

struct Client {
    session: SessionId,
    xid: i32,
    /// The outstanding submission and when the client gives up on it.
    pending: Option<(usize, u64)>,
    next_at: u64,
    written: u64,
    /// The last data version this client saw per key (to guess expected versions).
    versions: BTreeMap<usize, i32>,
}

#[derive(Debug, Default)]
struct Stats {
    messages: u64,
    dropped: u64,
    duplicated: u64,
    crashes: u64,
    partitions: u64,
    checkpoints: u64,
    forwards: u64,
    resend_asks: u64,
    resends: u64,
    executed: u64,
    multi_executed: u64,
    refused: u64,
    timeouts: u64,
}

struct World {
    seed: u64,
    rng: Rng,
    sc: Scenario,
    opts: MemberOptions,
    now: u64,
    servers: Vec<Server>,
    clients: Vec<Client>,
    keys: Vec<String>,
    subs: Vec<Submission>,
    history: Vec<Operation>,
    /// In-flight messages by (delivery time, send order): (from, to, message).
    net: BTreeMap<(u64, u64), (u32, u32, Msg)>,
    net_seq: u64,
    /// Cut directed links (from, to).
    cut: BTreeSet<(u32, u32)>,
    faults: bool,
    /// Clients send new requests.
    issuing: bool,
    liveness: bool,
    /// Servers answer getData from their own replica, unordered: not linearizable (a replica
    /// may lag), so the checks must fail. Off except in the test that shows they do.
    unordered_reads: bool,
    decided: BTreeMap<(GroupId, Instance), Batch>,
    /// Submissions decided in some instance, and how many of them each partition must execute.
    decided_subs: BTreeSet<usize>,
    decided_per_partition: Vec<usize>,
    proposals: BTreeMap<(GroupId, Instance, Ballot), Batch>,
    /// Per partition, the one sequence every replica's execution is a prefix of.
    common: Vec<Vec<Executed>>,
    /// What the first partition to execute a multi-partition command computed.
    multi: BTreeMap<CmdId, Reply>,
    /// Where each submission was ordered, and the other way round.
    ordered_at: BTreeMap<usize, CmdId>,
    ordered: BTreeMap<CmdId, usize>,
    /// The first reply each submission's client received.
    replies: BTreeMap<usize, Reply>,
    stats: Stats,
}

fn encode(sub: usize) -> Bytes {
    Bytes::copy_from_slice(&(sub as u64).to_be_bytes())
}

fn decode(b: &Bytes) -> usize {
    u64::from_be_bytes(b[..].try_into().expect("commands are 8 bytes")) as usize
}

/// The ZooKeeper request of a single-key operation on `path`.
fn request_of(path: &str, input: &Input) -> Request {
    let path = path.to_string();
    match input {
        Input::Get => Request::GetData(PathWatchRequest { path, watch: false }),
        Input::Set(v) => Request::SetData(SetDataRequest {
            path,
            data: Some(v.clone()),
            version: -1,
        }),
        Input::SetVersion(v, version) => Request::SetData(SetDataRequest {
            path,
            data: Some(v.clone()),
            version: *version,
        }),
        Input::Check(version) => Request::Check(CheckVersionRequest {
            path,
            version: *version,
        }),
        Input::Create(v) => Request::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path,
                data: Some(v.clone()),
                acl: crate::zk::open_acl(),
                flags: 0,
                ttl: None,
            },
        },
        Input::Delete => Request::Delete(DeleteRequest { path, version: -1 }),
        Input::Multi(ops) => Request::Multi(ops.iter().map(|(k, i)| multi_op(k, i)).collect()),
        Input::MultiRead(keys) => Request::MultiRead(
            keys.iter()
                .map(|k| {
                    MultiOp::GetData(PathWatchRequest {
                        path: k.clone(),
                        watch: false,
                    })
                })
                .collect(),
        ),
    }
}

fn multi_op(path: &str, input: &Input) -> MultiOp {
    match request_of(path, input) {
        Request::SetData(s) => MultiOp::SetData(s),
        Request::Check(c) => MultiOp::Check(c),
        Request::Create { op, req } => MultiOp::Create { op, req },
        Request::Delete(d) => MultiOp::Delete(d),
        other => unreachable!("not a multi op: {other:?}"),
    }
}

fn error_output(err: ErrorCode) -> Output {
    match err {
        ErrorCode::NoNode => Output::NoNode,
        ErrorCode::NodeExists => Output::NodeExists,
        ErrorCode::BadVersion => Output::BadVersion,
        other => Output::Other(format!("{other:?}")),
    }
}

/// The checker's view of a reply to `input`.
fn output_of(input: &Input, reply: &Reply) -> Output {
    let get = |data: &Option<Vec<u8>>, stat: &protocol::Stat| Output::GetOk {
        value: data.clone().unwrap_or_default(),
        version: stat.version,
    };
    match (input, reply.err, &reply.response) {
        (_, ErrorCode::Ok, None) => Output::Other("Ok without a body".into()),
        (_, ErrorCode::Ok, Some(r)) => match (input, r) {
            (Input::Get, Response::GetData { data, stat }) => get(data, stat),
            (Input::Set(_) | Input::SetVersion(..), Response::Stat(stat)) => Output::SetOk {
                version: stat.version,
            },
            (Input::Check(_), Response::Stat(_)) => Output::CheckOk,
            (Input::Create(_), Response::Create { .. }) => Output::Created,
            (Input::Delete, Response::Empty) => Output::Deleted,
            (Input::Multi(_), Response::Multi(results)) => {
                if let Some(index) = results
                    .iter()
                    .position(|r| matches!(r, MultiResult::Error { err } if *err != 0))
                {
                    let MultiResult::Error { err } = results[index] else {
                        unreachable!()
                    };
                    let err = ErrorCode::from_i32(err)
                        .map_or_else(|| Output::Other(format!("error {err}")), error_output);
                    return Output::MultiFailed {
                        index,
                        err: Box::new(err),
                    };
                }
                Output::MultiOk(
                    results
                        .iter()
                        .map(|r| match r {
                            MultiResult::SetData { stat } => Output::SetOk {
                                version: stat.version,
                            },
                            MultiResult::Check => Output::CheckOk,
                            MultiResult::Create { .. } => Output::Created,
                            MultiResult::Delete => Output::Deleted,
                            other => Output::Other(format!("{other:?}")),
                        })
                        .collect(),
                )
            }
            (Input::MultiRead(_), Response::Multi(results)) => Output::MultiRead(
                results
                    .iter()
                    .map(|r| match r {
                        MultiResult::GetData { data, stat } => get(data, stat),
                        MultiResult::Error { err } => ErrorCode::from_i32(*err)
                            .map_or_else(|| Output::Other(format!("error {err}")), error_output),
                        other => Output::Other(format!("{other:?}")),
                    })
                    .collect(),
            ),
            (_, other) => Output::Other(format!("{other:?}")),
        },
        (_, err, _) => error_output(err),
    }
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let sc = Scenario::draw(&mut rng);
        let opts = sc.options();
        let k = sc.partitions;
        // Two znodes owned by each partition.
        let mut keys = Vec::new();
        for p in 0..k {
            keys.extend(
                (0..)
                    .map(|i| format!("/r{i}"))
                    .filter(|path| partition_of(path, k) == p)
                    .take(2),
            );
        }
        let clients: Vec<Client> = (0..sc.clients)
            .map(|c| Client {
                session: 0x100 + c as SessionId,
                xid: 0,
                pending: None,
                next_at: 0,
                written: 0,
                versions: BTreeMap::new(),
            })
            .collect();
        // The initial state every replica starts from: the clients' sessions and the znodes.
        let mut zk = Zk::new(Options::default());
        let mut zxid = 0;
        for c in &clients {
            zxid += 1;
            zk.apply(
                zxid,
                &Command {
                    session: c.session,
                    xid: 0,
                    time_ms: 0,
                    op: Op::CreateSession {
                        timeout_ms: 30_000,
                        passwd: vec![1],
                        client_ip: "127.0.0.1".into(),
                    },
                },
            );
        }
        for key in &keys {
            zxid += 1;
            let cmd = Command {
                session: clients[0].session,
                xid: 0,
                time_ms: 0,
                op: Op::Request(request_of(key, &Input::Create(b"init".to_vec()))),
            };
            let applied = zk.apply(zxid, &cmd);
            assert_eq!(applied.err, ErrorCode::Ok, "setup create {key}");
        }
        let groups_per_server = if k == 1 { 1 } else { 2 };
        let initial = Checkpoint {
            snapshot: zk.snapshot(),
            clock: zk.last_zxid(),
            last_multi: None,
            next: vec![1; groups_per_server],
            executed: 0,
            signals: Vec::new(),
        };
        let servers = (1..=sc.servers())
            .map(|id| Server {
                id,
                partition: sc.partition_of_server(id),
                groups: sc.groups_of(id).iter().map(|g| g.group).collect(),
                member: None,
                replica: None,
                disk: SimDisk::default(),
                checkpoint: initial.clone(),
                down_until: 0,
                crash_at: None,
                skew_ms: rng.range(0, sc.skew_max_ms),
                // One server in five has a disk several times slower than the others'.
                fsync_max_ms: if rng.percent(20) {
                    sc.fsync_max_ms * 4
                } else {
                    sc.fsync_max_ms
                },
            })
            .collect();
        // The history starts with the znodes' creation, before any client request.
        let history = keys
            .iter()
            .map(|key| {
                Operation::done(
                    0,
                    key,
                    Input::Create(b"init".to_vec()),
                    0,
                    1,
                    Output::Created,
                )
            })
            .collect();
        let mut w = World {
            seed,
            rng,
            opts,
            now: START_MS,
            servers,
            clients,
            keys,
            subs: Vec::new(),
            history,
            net: BTreeMap::new(),
            net_seq: 0,
            cut: BTreeSet::new(),
            faults: true,
            issuing: true,
            liveness: false,
            unordered_reads: false,
            decided: BTreeMap::new(),
            decided_subs: BTreeSet::new(),
            decided_per_partition: vec![0; k as usize],
            proposals: BTreeMap::new(),
            common: vec![Vec::new(); k as usize],
            multi: BTreeMap::new(),
            ordered_at: BTreeMap::new(),
            ordered: BTreeMap::new(),
            replies: BTreeMap::new(),
            stats: Stats::default(),
            sc,
        };
        for i in 0..w.servers.len() {
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

    fn index(id: NodeId) -> usize {
        (id - 1) as usize
    }

    // ---- multicast invariants ---------------------------------------------------------------

    fn check_decision(&mut self, group: GroupId, instance: Instance, value: &Batch) {
        match self.decided.get(&(group, instance)) {
            Some(v) if v != value => self.fail(format!(
                "instance {instance} of group {group} decided {v:?}, now {value:?}"
            )),
            Some(_) => {}
            None => {
                self.decided.insert((group, instance), value.clone());
                for sub in value.commands.iter().map(decode) {
                    if self.decided_subs.insert(sub) {
                        for p in &self.subs[sub].dest {
                            self.decided_per_partition[*p as usize] += 1;
                        }
                    }
                }
            }
        }
    }

    fn check_paxos_sent(&mut self, msg: &PaxosMsg) {
        match msg {
            PaxosMsg::Decision {
                group,
                instance,
                value,
                ..
            } => self.check_decision(*group, *instance, value),
            PaxosMsg::Decided {
                group,
                instance,
                ballot,
            } => match self.proposals.get(&(*group, *instance, *ballot)).cloned() {
                Some(value) => self.check_decision(*group, *instance, &value),
                None => self.fail(format!(
                    "instance {instance} of group {group} decided at {ballot:?}, never proposed"
                )),
            },
            PaxosMsg::Accept {
                group,
                ballot,
                instance,
                value,
            } => match self.proposals.get(&(*group, *instance, *ballot)) {
                Some(v) if v != value => self.fail(format!(
                    "ballot {ballot:?} proposed {v:?} and {value:?} in instance {instance} of \
                     group {group}"
                )),
                Some(_) => {}
                None => {
                    self.proposals
                        .insert((*group, *instance, *ballot), value.clone());
                }
            },
            _ => {}
        }
    }

    // ---- network ----------------------------------------------------------------------------

    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        if let Msg::Paxos(m) = &msg {
            self.check_paxos_sent(m);
            if m.is_vote()
                && !(self.sc.is_acceptor(m.group(), from) && self.sc.is_acceptor(m.group(), to))
            {
                self.fail(format!("{from} -> {to}: {m:?} involves a non-acceptor"));
            }
        }
        if from == to {
            self.enqueue(self.now + 1, from, to, msg);
            return;
        }
        if self.faults && self.rng.chance(self.sc.drop_ppm) {
            self.stats.dropped += 1;
            return;
        }
        let once = matches!(msg, Msg::Submit(_) | Msg::Paxos(PaxosMsg::Forward { .. }));
        if self.faults && !once && self.rng.chance(self.sc.dup_ppm) {
            self.stats.duplicated += 1;
            let at = self.now + self.rng.range(1, self.sc.latency_max_ms);
            self.enqueue(at, from, to, msg.clone());
        }
        let at = self.now + self.rng.range(1, self.sc.latency_max_ms);
        self.enqueue(at, from, to, msg);
    }

    fn enqueue(&mut self, at: u64, from: u32, to: u32, msg: Msg) {
        self.net_seq += 1;
        self.net.insert((at, self.net_seq), (from, to, msg));
    }

    /// Sends a signal to every replica of the partitions it names.
    fn send_signal(&mut self, from: NodeId, out: SignalOut) {
        for q in out.to {
            for to in self.sc.replicas_of(q).collect::<Vec<_>>() {
                self.send(from, to, Msg::Signal(out.signal.clone()));
            }
        }
    }

    // ---- members and disks ------------------------------------------------------------------

    /// Handles what a member returned, in the driver's order.
    fn absorb(&mut self, i: usize, out: Outputs) {
        let id = self.servers[i].id;
        for d in &out.decided {
            self.check_decision(d.group, d.instance, &d.value);
        }
        if let Some((g, from)) = out.state_needed.first() {
            self.fail(format!(
                "server {id} needs state transfer in group {g} (from {from}): a log it needs \
                 was trimmed"
            ));
        }
        let won = out.leader_changes.iter().any(|(_, l)| *l == Some(id));
        if self.faults && won && self.rng.chance(self.sc.new_leader_crash_ppm) {
            self.servers[i].crash_at = Some(self.now + self.rng.range(0, 40));
        }
        self.servers[i].disk.write(out.persist);
        for e in out.send {
            self.send(id, e.to, Msg::Paxos(e.msg));
        }
        let held = out
            .send_after_persist
            .into_iter()
            .map(Held::Send)
            .chain(out.delivered.into_iter().map(Held::Deliver));
        for h in self.servers[i].disk.after_votes(held) {
            self.release(i, h);
        }
    }

    fn release(&mut self, i: usize, h: Held) {
        match h {
            Held::Send(e) => {
                let id = self.servers[i].id;
                self.send(id, e.to, Msg::Paxos(e.msg));
            }
            Held::Deliver(d) => self.deliver(i, d),
        }
    }

    fn complete_fsync(&mut self, i: usize) {
        if !self.servers[i].disk.complete_fsync(self.now) {
            return;
        }
        while let Some(h) = self.servers[i].disk.next_released() {
            self.release(i, h);
        }
    }

    fn start_fsync(&mut self, i: usize) {
        let delay = self.rng.range(1, self.servers[i].fsync_max_ms);
        let s = &mut self.servers[i];
        if s.member.is_some() {
            s.disk.start_fsync(self.now + delay);
        }
    }

    // ---- replicas ---------------------------------------------------------------------------

    /// Hands a delivered instance to the replica: every command is queued, the prefetched
    /// signals leave, then whatever can run executes.
    fn deliver(&mut self, i: usize, d: Delivery) {
        let id = self.servers[i].id;
        let Some(gi) = self.servers[i].groups.iter().position(|&g| g == d.group) else {
            self.fail(format!("server {id} delivered unknown group {}", d.group));
        };
        let expected = self.servers[i].replica.as_ref().expect("live").next[gi];
        if d.instance != expected {
            self.fail(format!(
                "server {id} delivered instance {} of group {}, expected {expected}",
                d.instance, d.group
            ));
        }
        if self.decided.get(&(d.group, d.instance)) != Some(&d.value) {
            self.fail(format!(
                "server {id} delivered ({}, {}) = {:?}, decided {:?}",
                d.group,
                d.instance,
                d.value,
                self.decided.get(&(d.group, d.instance))
            ));
        }
        let mut signals = Vec::new();
        for (index, bytes) in d.value.commands.iter().enumerate() {
            let sub = decode(bytes);
            let Some(s) = self.subs.get(sub) else {
                self.fail(format!(
                    "server {id} delivered a command never submitted: {sub}"
                ));
            };
            let cid = CmdId::new(d.group, d.instance, index as u32);
            if s.group != d.group {
                self.fail(format!(
                    "command {sub} submitted to group {} delivered in {}",
                    s.group, d.group
                ));
            }
            match self.ordered_at.get(&sub) {
                Some(at) if *at != cid => {
                    self.fail(format!("command {sub} ordered twice: at {at} and at {cid}"))
                }
                Some(_) => {}
                None => {
                    self.ordered_at.insert(sub, cid);
                    self.ordered.insert(cid, sub);
                }
            }
            if !s.dest.contains(&self.servers[i].partition) {
                continue; // g_all carries every multi-partition command; this one is not ours
            }
            let cmd = s.cmd.clone();
            let rep = self.servers[i].replica.as_mut().expect("live");
            match rep.exec.enqueue(cid, cmd) {
                Ok(s) => signals.extend(s),
                Err(e) => self.fail(format!("server {id}: executor refused {cid}: {e}")),
            }
        }
        self.servers[i].replica.as_mut().expect("live").next[gi] += 1;
        for s in signals {
            self.send_signal(id, s);
        }
        self.run(i);
    }

    /// Executes what can run at replica `i` and handles the step.
    fn run(&mut self, i: usize) {
        let rep = self.servers[i].replica.as_mut().expect("live");
        let step = rep.exec.run(usize::MAX);
        self.handle(i, step);
    }

    fn handle(&mut self, i: usize, step: super::Step<crate::zk::Applied>) {
        let id = self.servers[i].id;
        for s in step.signals {
            self.send_signal(id, s);
        }
        for ex in step.outputs {
            self.executed(i, ex);
        }
        let rep = self.servers[i].replica.as_mut().expect("live");
        let (clock, last_zxid) = (rep.exec.clock(), rep.exec.service().zk().last_zxid());
        let before = std::mem::replace(&mut rep.clock, clock);
        if clock != last_zxid || clock < before {
            self.fail(format!(
                "server {id}: executor clock {clock} (was {before}), Zk last_zxid {last_zxid}"
            ));
        }
    }

    /// Checks an executed command against the partition's common sequence and replies.
    fn executed(&mut self, i: usize, ex: super::Executed<crate::zk::Applied>) {
        let (id, p) = (self.servers[i].id, self.servers[i].partition);
        let Some(&sub) = self.ordered.get(&ex.id) else {
            self.fail(format!(
                "server {id} executed {} which was never delivered",
                ex.id
            ));
        };
        let reply = Reply {
            zxid: ex.zxid,
            err: ex.output.err,
            response: ex.output.response,
        };
        let rec = Executed {
            id: ex.id,
            sub,
            reply: reply.clone(),
        };
        let rep = self.servers[i].replica.as_mut().expect("live");
        let n = rep.executed;
        rep.executed += 1;
        match self.common[p as usize].get(n) {
            Some(first) if *first != rec => self.fail(format!(
                "server {id} of partition {p} executed {rec:?} at position {n}, another \
                 replica {first:?}"
            )),
            Some(_) => {}
            None => {
                let prev = self.common[p as usize]
                    .last()
                    .map_or(i64::MIN, |e| e.reply.zxid);
                let write = Zk::is_write(&self.subs[sub].cmd.op);
                if (write && rec.reply.zxid <= prev) || rec.reply.zxid < prev {
                    self.fail(format!(
                        "partition {p}: {} (write: {write}) took zxid {} after {prev}",
                        rec.id, rec.reply.zxid
                    ));
                }
                self.common[p as usize].push(rec);
                self.stats.executed += 1;
            }
        }
        if self.subs[sub].dest.len() > 1 {
            match self.multi.get(&ex.id) {
                Some(first) if *first != reply => self.fail(format!(
                    "multi-partition {} gave {reply:?} on partition {p}, {first:?} elsewhere",
                    ex.id
                )),
                Some(_) => {}
                None => {
                    self.multi.insert(ex.id, reply.clone());
                    self.stats.multi_executed += 1;
                }
            }
        }
        let client = CLIENT_BASE + self.subs[sub].client as u32;
        self.send(id, client, Msg::Reply { sub, rec: reply });
    }

    /// A replica whose head has waited for the same partitions for `resend_ms` asks them again.
    fn ask_for_signals(&mut self, i: usize) {
        let now = self.now;
        let resend_ms = self.sc.resend_ms;
        let id = self.servers[i].id;
        let Some(rep) = self.servers[i].replica.as_mut() else {
            return;
        };
        let Some(w) = rep.exec.waiting() else {
            rep.waiting = None;
            return;
        };
        let ask = match &mut rep.waiting {
            Some((seen, since, asked)) if *seen == w => {
                let due = now - *since >= resend_ms && now - *asked >= resend_ms;
                if due {
                    *asked = now;
                }
                due
            }
            _ => {
                rep.waiting = Some((w.clone(), now, now));
                false
            }
        };
        if ask {
            let (cmd, missing) = w;
            self.stats.resend_asks += 1;
            for q in missing {
                for to in self.sc.replicas_of(q).collect::<Vec<_>>() {
                    self.send(id, to, Msg::Resend { cmd });
                }
            }
        }
    }

    fn checkpoint(&mut self, i: usize) {
        let s = &mut self.servers[i];
        let (Some(rep), Some(m)) = (s.replica.as_ref(), s.member.as_mut()) else {
            return;
        };
        if rep.exec.queued() > 0 {
            return;
        }
        s.checkpoint = Checkpoint {
            snapshot: rep.exec.service().zk().snapshot(),
            clock: rep.exec.clock(),
            last_multi: rep.exec.last_multi(),
            next: rep.next.clone(),
            executed: rep.executed,
            signals: rep.exec.remembered_signals(),
        };
        for (g, n) in s.groups.iter().zip(&rep.next) {
            m.checkpointed(*g, *n);
        }
        self.stats.checkpoints += 1;
    }

    // ---- server lifecycle -------------------------------------------------------------------

    fn crash(&mut self, i: usize) {
        let completes = self.rng.below(2) == 0;
        let s = &mut self.servers[i];
        if s.member.is_none() {
            return;
        }
        s.disk.crash(completes);
        s.member = None;
        s.replica = None;
        s.crash_at = None;
        let id = s.id;
        let down = self.rng.range(1, self.sc.down_max_ms);
        self.servers[i].down_until = self.now + down;
        self.net.retain(|_, (_, to, _)| *to != id);
        self.stats.crashes += 1;
        // Every other crash closes links the others notice ([`Member::link_down`], as the real
        // transport reports); the rest are found by silence alone.
        if self.stats.crashes.is_multiple_of(2) {
            for j in 0..self.servers.len() {
                let out = match &mut self.servers[j].member {
                    Some(m) if j != i => m.link_down(id),
                    _ => continue,
                };
                self.absorb(j, out);
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let s = &self.servers[i];
        let specs = self.sc.groups_of(s.id);
        let states = specs
            .iter()
            .map(|g| s.disk.store.load(g.group).expect("memory store"))
            .collect();
        let cp = s.checkpoint.clone();
        let config = MemberConfig {
            id: s.id,
            groups: specs,
            next: cp.next.clone(),
            options: self.opts.clone(),
        };
        let mut member = match Member::new(config, states, self.now) {
            Ok(m) => m,
            Err(e) => self.fail(format!("server {} cannot restart: {e}", s.id)),
        };
        for (g, n) in s.groups.iter().zip(&cp.next) {
            member.checkpointed(*g, *n);
        }
        let zk = match Zk::restore(&cp.snapshot, Options::default()) {
            Ok(zk) => zk,
            Err(e) => self.fail(format!("server {}: checkpoint unreadable: {e}", s.id)),
        };
        let service = ZkService::new(zk, s.partition, self.sc.partitions);
        let mut exec = Executor::resume(
            s.partition,
            self.sc.global(),
            service,
            cp.clock,
            cp.last_multi,
        );
        exec.remember_signals(cp.signals);
        let s = &mut self.servers[i];
        s.replica = Some(Replica {
            exec,
            next: cp.next,
            executed: cp.executed,
            clock: cp.clock,
            waiting: None,
        });
        s.member = Some(member);
    }

    fn leader_of(&self, g: GroupId) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.member.as_ref().is_some_and(|m| m.is_leader(g)))
    }

    /// Cuts links: all of one server's (often a leader's, clients' links included), or one
    /// direction of one link between servers.
    fn partition(&mut self) {
        self.stats.partitions += 1;
        let n = self.servers.len() as u32;
        let g = if self.sc.partitions > 1 && self.rng.percent(50) {
            GLOBAL
        } else {
            group_of(self.rng.below(u64::from(self.sc.partitions)) as PartitionId)
        };
        let victim = match (self.rng.below(3), self.leader_of(g)) {
            (0 | 1, Some(l)) => self.servers[l].id,
            _ => 1 + self.rng.below(u64::from(n)) as u32,
        };
        if self.rng.percent(30) {
            let other = 1 + self.rng.below(u64::from(n)) as u32;
            if other != victim {
                self.cut.insert((victim, other));
            }
        } else {
            let others = (1..=n).chain((0..self.clients.len() as u32).map(|c| CLIENT_BASE + c));
            for o in others.filter(|&o| o != victim).collect::<Vec<_>>() {
                self.cut.insert((victim, o));
                self.cut.insert((o, victim));
            }
        }
    }

    // ---- clients ----------------------------------------------------------------------------

    fn key(&mut self) -> usize {
        self.rng.index(self.keys.len())
    }

    fn value(&mut self, c: usize) -> Vec<u8> {
        self.clients[c].written += 1;
        format!("c{c}.{}", self.clients[c].written).into_bytes()
    }

    /// An expected version for `key`: usually the last one this client saw.
    fn version(&mut self, c: usize, key: usize) -> i32 {
        let seen = self.clients[c].versions.get(&key).copied().unwrap_or(0);
        match self.rng.below(10) {
            0 => -1,
            1 => seen + 1,
            _ => seen,
        }
    }

    /// A conditional or plain write for a multi.
    fn multi_step(&mut self, c: usize, structural: bool) -> (String, Input) {
        let key = self.key();
        let input = match self.rng.below(if structural { 5 } else { 3 }) {
            0 => Input::Check(self.version(c, key)),
            1 => Input::Set(self.value(c)),
            2 => {
                let v = self.version(c, key);
                Input::SetVersion(self.value(c), v)
            }
            3 => Input::Create(self.value(c)),
            _ => Input::Delete,
        };
        (self.keys[key].clone(), input)
    }

    fn random_input(&mut self, c: usize) -> (String, Input) {
        let key = self.key();
        let path = self.keys[key].clone();
        let input = match self.rng.below(100) {
            0..=21 => Input::Get,
            22..=39 => Input::Set(self.value(c)),
            40..=49 => {
                let v = self.version(c, key);
                Input::SetVersion(self.value(c), v)
            }
            50..=54 => Input::Check(self.version(c, key)),
            55..=59 => Input::Create(self.value(c)),
            60..=64 => Input::Delete,
            65..=79 => {
                let n = 2 + self.rng.index(2);
                Input::Multi((0..n).map(|_| self.multi_step(c, false)).collect())
            }
            80..=84 => {
                let n = 1 + self.rng.index(3);
                Input::Multi((0..n).map(|_| self.multi_step(c, true)).collect())
            }
            _ => {
                let n = 2 + self.rng.index(2);
                Input::MultiRead(
                    (0..n)
                        .map(|_| {
                            let k = self.key();
                            self.keys[k].clone()
                        })
                        .collect(),
                )
            }
        };
        (path, input)
    }

    /// Client `c` sends a new request to a random server.
    fn issue(&mut self, c: usize) {
        let (path, input) = self.random_input(c);
        let client = &mut self.clients[c];
        client.xid += 1;
        let cmd = Command {
            session: client.session,
            xid: client.xid,
            time_ms: self.now as i64,
            op: Op::Request(request_of(&path, &input)),
        };
        let dest = dest_of(&cmd, self.sc.partitions);
        let group = if dest.len() > 1 {
            GLOBAL
        } else {
            group_of(dest[0])
        };
        let label = match &input {
            Input::Multi(_) => "multi".to_string(),
            Input::MultiRead(_) => "multiRead".to_string(),
            _ => path,
        };
        self.history
            .push(Operation::unknown(c, &label, input, self.now * NS_PER_MS));
        let sub = self.subs.len();
        self.subs.push(Submission {
            client: c,
            cmd,
            group,
            dest,
            op: self.history.len() - 1,
            liveness: self.liveness,
        });
        let timeout = if self.liveness {
            u64::MAX
        } else {
            self.now + self.sc.client_timeout_ms
        };
        self.clients[c].pending = Some((sub, timeout));
        let to = 1 + self.rng.below(self.servers.len() as u64) as u32;
        self.send(CLIENT_BASE + c as u32, to, Msg::Submit(sub));
    }

    fn on_reply(&mut self, c: usize, sub: usize, rec: Reply) {
        match self.replies.get(&sub) {
            Some(first) if *first != rec => self.fail(format!(
                "client {c} got two different replies to request {sub}: {first:?} and {rec:?}"
            )),
            Some(_) => return,
            None => {
                self.replies.insert(sub, rec.clone());
            }
        }
        if self.clients[c].pending.map(|(s, _)| s) != Some(sub) {
            return; // abandoned: its outcome stays unknown
        }
        let out = output_of(&self.history[self.subs[sub].op].input, &rec);
        self.complete(c, sub, out);
    }

    /// Client `c` got `out` for its outstanding request `sub`.
    fn complete(&mut self, c: usize, sub: usize, out: Output) {
        let op = self.subs[sub].op;
        if let (Output::SetOk { version } | Output::GetOk { version, .. }, key) =
            (&out, self.history[op].key.clone())
        {
            if let Some(k) = self.keys.iter().position(|x| *x == key) {
                self.clients[c].versions.insert(k, *version);
            }
        }
        self.history[op].ret = Some((self.now * NS_PER_MS, out));
        let think = self.rng.range(0, self.sc.think_max_ms);
        let client = &mut self.clients[c];
        client.pending = None;
        client.next_at = self.now + think;
    }

    fn clients_act(&mut self) {
        for c in 0..self.clients.len() {
            match self.clients[c].pending {
                Some((_, deadline)) if deadline <= self.now => {
                    self.stats.timeouts += 1;
                    let think = self.rng.range(0, self.sc.think_max_ms);
                    let client = &mut self.clients[c];
                    client.pending = None;
                    client.next_at = self.now + think;
                }
                None if self.issuing && self.clients[c].next_at <= self.now => self.issue(c),
                _ => {}
            }
        }
    }

    /// A server receives a client's request (or its forward): it orders it in its group, or
    /// forwards it to a replica of the partition whose group orders it.
    fn on_submit(&mut self, i: usize, sub: usize) {
        let id = self.servers[i].id;
        let group = self.subs[sub].group;
        let op = &self.history[self.subs[sub].op];
        if self.unordered_reads
            && op.input == Input::Get
            && self.subs[sub].dest == [self.servers[i].partition]
        {
            let rep = self.servers[i].replica.as_ref().expect("live");
            let out = match rep.exec.service().zk().owned_fields(&op.key) {
                Some(f) => Output::GetOk {
                    value: f.data.unwrap_or_default(),
                    version: f.version,
                },
                None => Output::NoNode,
            };
            let client = CLIENT_BASE + self.subs[sub].client as u32;
            self.send(id, client, Msg::UnorderedRead { sub, out });
            return;
        }
        if self.servers[i].groups.contains(&group) {
            let (now, wall) = (self.now, self.now + self.servers[i].skew_ms);
            let m = self.servers[i].member.as_mut().expect("live");
            if !m.has_room(group) {
                self.stats.refused += 1;
                return;
            }
            let out = m.propose(group, vec![encode(sub)], now, wall);
            self.absorb(i, out);
        } else {
            let p = self.subs[sub].dest[0];
            let replicas: Vec<NodeId> = self.sc.replicas_of(p).collect();
            let to = replicas[self.rng.index(replicas.len())];
            self.stats.forwards += 1;
            self.send(id, to, Msg::Submit(sub));
        }
    }

    fn on_resend(&mut self, i: usize, from: NodeId, cmd: CmdId) {
        let id = self.servers[i].id;
        let asker = self.sc.partition_of_server(from);
        let rep = self.servers[i].replica.as_ref().expect("live");
        for out in rep.exec.sent_signals_from(cmd, asker, RESEND_BATCH) {
            self.stats.resends += 1;
            self.send(id, from, Msg::Signal(out.signal));
        }
    }

    // ---- time -------------------------------------------------------------------------------

    /// One simulated millisecond.
    fn step(&mut self) {
        self.now += 1;
        let now = self.now;
        if self.faults {
            for i in 0..self.servers.len() {
                if let Some(m) = &self.servers[i].member {
                    let leads = self.servers[i].groups.iter().any(|&g| m.is_leader(g));
                    let ppm = self.sc.crash_ppm * if leads { 3 } else { 1 };
                    let due = self.servers[i].crash_at.is_some_and(|t| t <= now);
                    if due || self.rng.chance(ppm) {
                        self.crash(i);
                    }
                } else if self.servers[i].down_until <= now {
                    self.restart(i);
                }
            }
            if self.rng.chance(self.sc.power_failure_ppm) {
                for i in 0..self.servers.len() {
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
        for i in 0..self.servers.len() {
            self.complete_fsync(i);
        }
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, to, msg) = entry.remove();
            if self.cut.contains(&(from, to)) {
                self.stats.dropped += 1;
                continue;
            }
            self.stats.messages += 1;
            if to >= CLIENT_BASE {
                let c = (to - CLIENT_BASE) as usize;
                match msg {
                    Msg::Reply { sub, rec } => self.on_reply(c, sub, rec),
                    Msg::UnorderedRead { sub, out }
                        if self.clients[c].pending.map(|(s, _)| s) == Some(sub) =>
                    {
                        self.complete(c, sub, out)
                    }
                    _ => {}
                }
                continue;
            }
            let i = Self::index(to);
            if self.servers[i].member.is_none() {
                continue;
            }
            match msg {
                Msg::Paxos(m) => {
                    let wall = now + self.servers[i].skew_ms;
                    let member = self.servers[i].member.as_mut().expect("live");
                    let out = member.step(from, m, now, wall);
                    self.absorb(i, out);
                }
                Msg::Signal(s) => {
                    let rep = self.servers[i].replica.as_mut().expect("live");
                    rep.exec.receive(s);
                    self.run(i);
                }
                Msg::Resend { cmd } => self.on_resend(i, from, cmd),
                Msg::Submit(sub) => self.on_submit(i, sub),
                Msg::Reply { .. } | Msg::UnorderedRead { .. } => {
                    unreachable!("replies go to clients")
                }
            }
        }
        for i in 0..self.servers.len() {
            let wall = now + self.servers[i].skew_ms;
            if let Some(m) = self.servers[i].member.as_mut() {
                let out = m.tick(now, wall);
                self.absorb(i, out);
            }
        }
        for i in 0..self.servers.len() {
            self.ask_for_signals(i);
            if self.rng.chance(self.sc.checkpoint_ppm) {
                self.checkpoint(i);
            }
            self.start_fsync(i);
        }
        self.clients_act();
    }

    /// True when every liveness request was answered and every ordered command executed by
    /// every replica of its destination partitions.
    fn settled(&self) -> bool {
        let answered = self
            .clients
            .iter()
            .all(|c| c.pending.is_none_or(|(s, _)| !self.subs[s].liveness));
        answered && self.unexecuted().is_empty()
    }

    /// The history the checker gets: the clients' operations, each request its client abandoned
    /// resolved from what the cluster did. One never ordered never took effect: it is left out.
    /// One that was executed gets the reply its replicas computed, returned after everything
    /// else (the client never saw it). Returns the history and the number of abandoned requests
    /// resolved and left out.
    ///
    /// Linearizable with these outcomes implies linearizable with them unknown, so this checks
    /// at least the clients' view, and keeps the search small: an operation pending forever with
    /// an unknown outcome fits almost anywhere, one with a known outcome in few places.
    fn checked_history(&self) -> (Vec<Operation>, u64, u64) {
        let mut replies: BTreeMap<usize, &Reply> = BTreeMap::new();
        for e in self.common.iter().flatten() {
            replies.entry(e.sub).or_insert(&e.reply);
        }
        let mut history = self.history[..self.keys.len()].to_vec();
        let (mut resolved, mut dropped) = (0, 0);
        for (sub, s) in self.subs.iter().enumerate() {
            let mut op = self.history[s.op].clone();
            if op.ret.is_none() {
                let Some(reply) = replies.get(&sub) else {
                    dropped += 1;
                    continue;
                };
                op.ret = Some((NEVER_RETURNED, output_of(&op.input, reply)));
                resolved += 1;
            }
            history.push(op);
        }
        (history, resolved, dropped)
    }

    /// Servers that have not executed every decided command of their partition: (server,
    /// commands missing, commands queued).
    fn unexecuted(&self) -> Vec<(NodeId, usize, usize)> {
        let per_partition = &self.decided_per_partition;
        let mut behind = Vec::new();
        for s in &self.servers {
            let rep = s.replica.as_ref().expect("all up");
            let missing = per_partition[s.partition as usize].saturating_sub(rep.executed);
            if missing > 0 || rep.exec.queued() > 0 {
                behind.push((s.id, missing, rep.exec.queued()));
            }
        }
        behind
    }

    fn liveness(&mut self) {
        self.faults = false;
        self.issuing = false;
        self.cut.clear();
        for i in 0..self.servers.len() {
            if self.servers[i].member.is_none() {
                self.restart(i);
            }
        }
        for _ in 0..SETTLE_MS {
            self.step();
        }
        // Requests still outstanding were sent during faults: their outcome is unknown.
        for c in &mut self.clients {
            c.pending = None;
            c.next_at = 0;
        }
        self.liveness = true;
        self.issuing = true;
        for _ in 0..LIVENESS_REQUESTS_MS {
            self.step();
        }
        self.issuing = false;
        for _ in 0..LIVENESS_BUDGET_MS {
            if self.settled() {
                break;
            }
            self.step();
        }
        if !self.settled() {
            let unanswered: Vec<usize> = self
                .clients
                .iter()
                .filter_map(|c| c.pending.map(|(s, _)| s))
                .collect();
            let waiting: Vec<_> = self
                .servers
                .iter()
                .map(|s| {
                    let rep = s.replica.as_ref().expect("all up");
                    (s.id, rep.next.clone(), rep.exec.waiting())
                })
                .collect();
            let leaders: Vec<_> = self
                .servers
                .iter()
                .map(|s| {
                    let m = s.member.as_ref().expect("all up");
                    s.groups.iter().map(|&g| m.leader(g)).collect::<Vec<_>>()
                })
                .collect();
            // Who could still send the signals the waiting replicas miss.
            let mut holders = Vec::new();
            for s in &self.servers {
                let rep = s.replica.as_ref().expect("up");
                if let Some((cmd, missing)) = rep.exec.waiting() {
                    let have: Vec<NodeId> = missing
                        .iter()
                        .flat_map(|q| self.sc.replicas_of(*q))
                        .filter(|t| {
                            let r = self.servers[Self::index(*t)].replica.as_ref();
                            r.is_some_and(|r| {
                                let first = r.exec.sent_signals_from(cmd, s.partition, 1);
                                first.first().is_some_and(|o| o.signal.cmd == cmd)
                            })
                        })
                        .collect();
                    holders.push((s.id, cmd, have));
                }
            }
            let mut missing = Vec::new();
            for ((g, inst), b) in &self.decided {
                for c in b.commands.iter().map(decode) {
                    let s = &self.subs[c];
                    let everywhere = s.dest.iter().all(|p| {
                        self.sc.replicas_of(*p).all(|id| {
                            let rep = self.servers[Self::index(id)].replica.as_ref();
                            self.ordered_at.get(&c).is_some_and(|at| {
                                rep.is_some_and(|r| {
                                    let gi = self.servers[Self::index(id)]
                                        .groups
                                        .iter()
                                        .position(|x| x == &at.group)
                                        .expect("a group of the server");
                                    r.next[gi] > at.instance
                                })
                            })
                        })
                    });
                    if !everywhere {
                        missing.push((c, *g, *inst, s.dest.clone()));
                    }
                }
            }
            if std::env::var_os("VOLERY_SIM_VERBOSE").is_some() {
                for s in &self.servers {
                    eprintln!("server {} member {:#?}", s.id, s.member);
                }
            }
            self.fail(format!(
                "liveness: requests {unanswered:?} unanswered; behind (server, commands, \
                 queued): {:?}; decided commands not executed everywhere (sub, group, \
                 instance, dest): {missing:?}; positions and waits {waiting:?}; waiting \
                 replicas and who holds their signal {holders:?}; leaders {leaders:?}",
                self.unexecuted()
            ));
        }
        for p in 0..self.sc.partitions {
            let mut first: Option<(NodeId, Vec<u8>)> = None;
            for id in self.sc.replicas_of(p) {
                let rep = self.servers[Self::index(id)].replica.as_ref().expect("up");
                let snap = rep.exec.service().zk().snapshot();
                match &first {
                    Some((other, s)) if *s != snap => self.fail(format!(
                        "replicas {other} and {id} of partition {p} end in different states"
                    )),
                    Some(_) => {}
                    None => first = Some((id, snap)),
                }
            }
        }
    }
}

/// Totals over the seeds run.
#[derive(Debug, Default)]
struct Totals {
    seeds: u64,
    ms: u64,
    messages: u64,
    crashes: u64,
    partitions: u64,
    checkpoints: u64,
    executed: u64,
    multi: u64,
    requests: u64,
    lost: u64,
    operations: u64,
    /// Requests their clients abandoned that the cluster executed (checked with their replies).
    abandoned_executed: u64,
    /// Requests their clients abandoned that were never ordered (left out of the check).
    abandoned_lost: u64,
    resend_asks: u64,
    resends: u64,
    violations: u64,
}

/// What one seed's run leaves: the world after its liveness phase, the abandoned requests
/// resolved and left out, and the check of the history.
type Outcome = (World, u64, u64, Result<lin::Report, lin::CheckError>);

/// Runs one seed to the end of its liveness phase and checks the history.
fn simulate(seed: u64, unordered_reads: bool) -> Outcome {
    let mut w = World::new(seed);
    w.unordered_reads = unordered_reads;
    for _ in 0..w.sc.fault_ms {
        w.step();
    }
    w.liveness();
    let (history, resolved, dropped) = w.checked_history();
    let limits = lin::Limits {
        max_steps_per_key: std::env::var("VOLERY_LIN_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000_000),
    };
    let checked = lin::check_with(&history, limits);
    (w, resolved, dropped, checked)
}

fn run(seed: u64, totals: &mut Totals) {
    let (w, resolved, dropped, checked) = simulate(seed, false);
    let start = START_MS;
    let report = match checked {
        Ok(r) => r,
        Err(e) => {
            totals.violations += 1;
            w.fail(format!("the clients' history is not linearizable: {e}"))
        }
    };
    let lost = (w.subs.len() - w.decided_subs.len()) as u64;
    totals.seeds += 1;
    totals.ms += w.now - start;
    totals.messages += w.stats.messages;
    totals.crashes += w.stats.crashes;
    totals.partitions += w.stats.partitions;
    totals.checkpoints += w.stats.checkpoints;
    totals.executed += w.stats.executed;
    totals.multi += w.stats.multi_executed;
    totals.requests += w.subs.len() as u64;
    totals.lost += lost;
    totals.operations += report.operations as u64;
    totals.abandoned_executed += resolved;
    totals.abandoned_lost += dropped;
    totals.resend_asks += w.stats.resend_asks;
    totals.resends += w.stats.resends;
    if std::env::var_os("VOLERY_SIM_VERBOSE").is_some() {
        let answered: Vec<u64> = w
            .history
            .iter()
            .skip(w.keys.len())
            .filter_map(|o| o.ret.as_ref().map(|(t, _)| (t - o.invoke) / NS_PER_MS))
            .collect();
        eprintln!(
            "seed {seed}: mean latency {} ms over {} answered",
            answered.iter().sum::<u64>() / answered.len().max(1) as u64,
            answered.len()
        );
        eprintln!(
            "seed {seed}: {} ms, {} requests ({lost} never ordered), {} operations checked \
             ({resolved} abandoned but executed, {dropped} abandoned and lost, {} steps, {:?}), \
             {:?}, {:?}",
            w.now - start,
            w.subs.len(),
            report.operations,
            report.steps,
            report.elapsed,
            w.stats,
            w.sc
        );
    }
}

#[test]
fn partitions_stay_linearizable_under_faults() {
    let mut totals = Totals::default();
    for seed in crate::testkit::seeds(DEFAULT_SEEDS) {
        crate::testkit::replaying(seed, || run(seed, &mut totals));
    }
    eprintln!("sim_cluster: {totals:?}");
    assert!(totals.executed > 0 && totals.operations > 0);
}

/// The checks can fail: servers that answer getData from their own replica without ordering it
/// (as ZooKeeper's followers do) return stale values when they lag, and the checker says so.
#[test]
fn unordered_reads_are_caught() {
    let mut caught = 0;
    for seed in 0..20 {
        match simulate(seed, true).3 {
            Err(lin::CheckError::Violation(_)) => caught += 1,
            Err(e) => panic!("seed {seed}: {e}"),
            Ok(_) => {}
        }
    }
    eprintln!("unordered reads: {caught} of 20 seeds caught");
    assert!(caught > 0, "no stale read caught in 20 seeds");
}
