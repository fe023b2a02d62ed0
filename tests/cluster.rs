//! Process-level fault tests: a 3-server cluster under a load of concurrent sessions, with the
//! leader and a follower killed with SIGKILL and restarted and the leader stopped with SIGSTOP;
//! clients on the surviving servers must keep completing operations, and the history of every
//! operation must be linearizable (which also means no acknowledged write is lost: every client
//! reads every key at the end, and those reads are part of the history).
//!
//! The same load runs against one standalone server killed and restarted (the harness and the
//! checker end to end), and against two unrelated standalone servers presented as one, where the
//! checker must find a violation.
//!
//! With `VOLERY_TEST_REFERENCE=zookeeper` the cluster is a real ZooKeeper 3.8 ensemble. ZooKeeper
//! reads are only sequentially consistent (a follower answers from its own replica), so there the
//! full history is reported, and the writes plus the final reads (each after a `sync`) must linearize.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::linearizability::{check, CheckError, History, Input, Operation, Output};
use common::{create_persistent, Flavor, Options, Server};
use volery::rng::Rng;
use zookeeper_client as zk;

/// The keys of the workload, under [`PARENT`].
const KEYS: usize = 5;
const PARENT: &str = "/lin";
/// Sessions of the load.
const CLIENTS: usize = 8;
/// One operation that takes longer is abandoned and recorded with an unknown outcome.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Session timeout asked by the load's clients (servers with tickTime=200 grant at most 4 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// Acknowledged operations every phase must complete at least.
const MIN_PROGRESS: usize = 10;
/// Client number of the setup session in the history (not a load client).
const SETUP_CLIENT: usize = 99;
/// Bound on the cluster test's body.
const CLUSTER_TEST_BOUND: Duration = Duration::from_secs(100);

fn key(k: usize) -> String {
    format!("{PARENT}/k{k}")
}

/// The outcome of a client error: `None` when the operation may or may not have taken effect.
/// `Custom` is the client's wrapper of a socket error (e.g. connection reset by a killed server).
fn classify(e: &zk::Error) -> Option<Output> {
    match e {
        zk::Error::NoNode => Some(Output::NoNode),
        zk::Error::NodeExists => Some(Output::NodeExists),
        zk::Error::ConnectionLoss
        | zk::Error::Timeout
        | zk::Error::SessionExpired
        | zk::Error::SessionMoved
        | zk::Error::ClientClosed
        | zk::Error::NoHosts
        | zk::Error::Throttled
        | zk::Error::Custom(_) => None,
        other => Some(Output::Other(other.to_string())),
    }
}

/// Runs `input` on `path` through `client`, recording it in `history`. Returns false when the
/// outcome is unknown.
async fn run_op(
    client: &zk::Client,
    history: &History,
    id: usize,
    path: &str,
    input: Input,
) -> bool {
    let op = history.invoke(id, path, input.clone());
    let anyone = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let call = async {
        match &input {
            Input::Create(v) => client
                .create(path, v, &anyone)
                .await
                .map(|_| Output::Created),
            Input::Set(v) => client
                .set_data(path, v, None)
                .await
                .map(|stat| Output::SetOk {
                    version: stat.version,
                }),
            Input::Get => client
                .get_data(path)
                .await
                .map(|(value, stat)| Output::GetOk {
                    value,
                    version: stat.version,
                }),
            Input::Delete => client.delete(path, None).await.map(|()| Output::Deleted),
            other => unreachable!("not generated here: {other:?}"),
        }
    };
    let outcome = match tokio::time::timeout(OP_TIMEOUT, call).await {
        Err(_) => None,
        Ok(Ok(out)) => Some(out),
        Ok(Err(e)) => classify(&e),
    };
    match outcome {
        Some(out) => {
            history.complete(op, out);
            true
        }
        None => false,
    }
}

/// A new session on `target` (one address, or several to fail over), retried until `give_up`.
async fn session(target: &str, give_up: &AtomicBool) -> Option<zk::Client> {
    while !give_up.load(Ordering::Relaxed) {
        let attempt = zk::Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .with_fail_eagerly()
            .connect(target);
        if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            return Some(client);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// After an unknown outcome: waits until the session is connected again (so a disconnected client
/// does not pile up operations of unknown outcome), or drops it when it has ended.
async fn settle(client: &mut Option<zk::Client>, stop: &AtomicBool) {
    let deadline = Instant::now() + SESSION_TIMEOUT * 2;
    while let Some(c) = client.as_ref() {
        match c.state() {
            zk::SessionState::SyncConnected => return,
            s if s.is_terminated() => {
                *client = None;
                return;
            }
            _ if Instant::now() > deadline => {
                *client = None;
                return;
            }
            _ if stop.load(Ordering::Relaxed) => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One load client: random operations on the keys until `stop`, then one read of every key.
async fn client_loop(
    id: usize,
    target: String,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    sync_final_reads: bool,
) {
    let mut rng = Rng(0x10ad_0000 + id as u64);
    let mut client: Option<zk::Client> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = session(&target, &stop).await;
            continue;
        }
        let c = client.as_ref().expect("connected");
        seq += 1;
        let value = format!("c{id}-{seq}").into_bytes();
        let input = match rng.below(100) {
            0..=44 => Input::Get,
            45..=89 => Input::Set(value),
            90..=94 => Input::Create(value),
            _ => Input::Delete,
        };
        let path = key(rng.below(KEYS as u64) as usize);
        if !run_op(c, &history, id, &path, input).await {
            settle(&mut client, &stop).await;
        }
    }
    // The final reads: after the faults have healed, every key once, retried until acknowledged.
    for k in 0..KEYS {
        loop {
            if abort.load(Ordering::Relaxed) {
                return;
            }
            if client.is_none() {
                client = session(&target, &abort).await;
                continue;
            }
            let c = client.as_ref().expect("connected");
            if sync_final_reads && c.sync(&key(k)).await.is_err() {
                settle(&mut client, &abort).await;
                continue;
            }
            if run_op(c, &history, id, &key(k), Input::Get).await {
                break;
            }
            settle(&mut client, &abort).await;
        }
    }
}

/// Creates the parent and the keys through `client`, recording the key creations.
async fn setup_keys(client: &zk::Client, history: &History) {
    create_persistent(client, PARENT, b"").await;
    for k in 0..KEYS {
        let input = Input::Create(format!("init-{k}").into_bytes());
        assert!(
            run_op(client, history, SETUP_CLIENT, &key(k), input).await,
            "create {}",
            key(k)
        );
    }
}

/// A running load: one task per client, each with its target and its home server (if pinned).
struct Load {
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    homes: Vec<Option<usize>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    phases: Vec<Phase>,
}

/// A stretch of the run with the servers that were up throughout it.
struct Phase {
    name: String,
    start: u64,
    end: u64,
    up: Vec<usize>,
    /// Whether the pinned clients of every server in `up` must each have made progress.
    per_server: bool,
}

impl Load {
    /// Starts one client per target: `(connect string, home server if pinned to one)`.
    ///
    /// With `sync_final_reads`, each final read follows a `sync` (ZooKeeper's way to read the
    /// latest committed state from a follower).
    fn start(
        history: Arc<History>,
        targets: Vec<(String, Option<usize>)>,
        sync_final_reads: bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let homes = targets.iter().map(|t| t.1).collect();
        let tasks = targets
            .into_iter()
            .enumerate()
            .map(|(id, (target, _))| {
                tokio::spawn(client_loop(
                    id,
                    target,
                    history.clone(),
                    stop.clone(),
                    abort.clone(),
                    sync_final_reads,
                ))
            })
            .collect();
        Load {
            history,
            stop,
            abort,
            homes,
            tasks,
            phases: Vec::new(),
        }
    }

    /// Lets the load run for `length` and records the stretch as a phase.
    async fn phase(&mut self, name: &str, length: Duration, up: &[usize], per_server: bool) {
        let start = self.history.now();
        tokio::time::sleep(length).await;
        self.phases.push(Phase {
            name: name.to_string(),
            start,
            end: self.history.now(),
            up: up.to_vec(),
            per_server,
        });
    }

    /// Stops the random operations, lets every client make its final reads (within `bound`), and
    /// returns the history.
    async fn finish(self, bound: Duration) -> Finished {
        let stopped_at = self.history.now();
        self.stop.store(true, Ordering::Relaxed);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(bound, all).await.is_err() {
            self.abort.store(true, Ordering::Relaxed);
            panic!("the clients' final reads did not all complete within {bound:?}");
        }
        Finished {
            ops: self.history.operations(),
            phases: self.phases,
            homes: self.homes,
            stopped_at,
        }
    }
}

/// A finished load.
struct Finished {
    ops: Vec<Operation>,
    phases: Vec<Phase>,
    homes: Vec<Option<usize>>,
    /// When the random operations were told to stop: only final reads are invoked after it.
    stopped_at: u64,
}

/// Asserts that every phase made progress: at least [`MIN_PROGRESS`] acknowledged operations by
/// clients pinned to servers that were up (or roaming), and, where asked, some by the clients of
/// each server that was up.
fn assert_progress(ops: &[Operation], phases: &[Phase], homes: &[Option<usize>]) {
    for phase in phases {
        let acked = |home_ok: &dyn Fn(Option<usize>) -> bool| {
            ops.iter()
                .filter(|op| op.client < homes.len() && home_ok(homes[op.client]))
                .filter(|op| {
                    matches!(&op.ret, Some((t, out))
                        if *t >= phase.start && *t < phase.end && !matches!(out, Output::Other(_)))
                })
                .count()
        };
        let total = acked(&|h| h.is_none_or(|s| phase.up.contains(&s)));
        let by_server: Vec<(usize, usize)> = phase
            .up
            .iter()
            .map(|&s| (s, acked(&|h| h == Some(s))))
            .collect();
        eprintln!(
            "phase {:<28} {:>6.2}s  acknowledged {total:>6}  by server {by_server:?}",
            phase.name,
            (phase.end - phase.start) as f64 / 1e9
        );
        assert!(
            total >= MIN_PROGRESS,
            "phase {:?}: only {total} acknowledged operations by clients of live servers",
            phase.name
        );
        if phase.per_server {
            for (s, n) in by_server {
                assert!(
                    n > 0,
                    "phase {:?}: the clients of live server {} completed nothing",
                    phase.name,
                    s + 1
                );
            }
        }
    }
}

/// Checks the history, reports its size, and asserts it linearizable and the final reads of each
/// key equal (every replica serves the same last acknowledged write) — unless a write of unknown
/// outcome on that key may still have landed between two final reads (a request abandoned by its
/// client after a timeout can be executed later; the linearizability check covers those keys).
fn assert_linearizable(ops: &[Operation], clients: usize) {
    let acked_writes = ops.iter().filter(|o| o.is_acknowledged_write()).count();
    let acked = ops.iter().filter(|o| o.ret.is_some()).count();
    let started = Instant::now();
    let result = check(ops);
    eprintln!(
        "history: {} operations, {acked} acknowledged, {acked_writes} acknowledged writes, {} of \
         unknown outcome; checked in {:?}",
        ops.len(),
        ops.len() - acked,
        started.elapsed()
    );
    match result {
        Ok(report) => eprintln!("linearizable: 0 violations ({report:?})"),
        Err(e) => panic!("{e}"),
    }
    for k in 0..KEYS {
        let path = key(k);
        let finals: Vec<&Output> = (0..clients)
            .filter_map(|c| {
                ops.iter()
                    .rev()
                    .find(|o| o.client == c && o.key == path && o.ret.is_some())
                    .and_then(|o| o.ret.as_ref().map(|(_, out)| out))
            })
            .collect();
        assert_eq!(finals.len(), clients, "every client read {path} at the end");
        let late_writes = ops
            .iter()
            .any(|o| o.key == path && o.ret.is_none() && !matches!(o.input, Input::Get));
        if late_writes {
            continue;
        }
        assert!(
            finals.windows(2).all(|w| w[0] == w[1]),
            "final reads of {path} differ: {finals:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_stay_linearizable_through_kills_restarts_and_a_pause() {
    let body = async {
        let mut cluster = Cluster::start(3).await;
        let history = Arc::new(History::new());
        {
            let setup = zk::Client::connector()
                .with_session_timeout(SESSION_TIMEOUT)
                .connect(&cluster.connect_string())
                .await
                .expect("setup session");
            setup_keys(&setup, &history).await;
        }
        // Two clients pinned to each server, two roaming over all three.
        let mut targets: Vec<(String, Option<usize>)> =
            (0..6).map(|i| (cluster.addr(i % 3), Some(i % 3))).collect();
        targets.push((cluster.connect_string(), None));
        targets.push((cluster.connect_string(), None));
        let reference = cluster.flavor() == Flavor::ZooKeeper;
        let mut load = Load::start(history, targets, reference);
        let all = [0, 1, 2];
        let others = |x: usize| -> Vec<usize> { all.iter().copied().filter(|&i| i != x).collect() };

        load.phase("steady", Duration::from_secs(2), &all, true)
            .await;

        let leader = cluster.wait_leader(Duration::from_secs(20)).await;
        eprintln!("kill -9 leader server.{}", leader + 1);
        cluster.kill9(leader);
        load.phase(
            "leader killed",
            Duration::from_secs(4),
            &others(leader),
            true,
        )
        .await;
        cluster.restart(leader).await;
        load.phase("leader restarted", Duration::from_secs(2), &all, false)
            .await;

        let now_leader = cluster.wait_leader(Duration::from_secs(20)).await;
        let follower = (0..3)
            .find(|&i| i != now_leader && i != leader)
            .expect("a follower not killed yet");
        eprintln!("kill -9 follower server.{}", follower + 1);
        cluster.kill9(follower);
        load.phase(
            "follower killed",
            Duration::from_secs(3),
            &others(follower),
            true,
        )
        .await;
        cluster.restart(follower).await;
        load.phase("follower restarted", Duration::from_secs(2), &all, false)
            .await;

        let paused = cluster.wait_leader(Duration::from_secs(20)).await;
        eprintln!("SIGSTOP leader server.{}", paused + 1);
        cluster.pause(paused);
        load.phase(
            "leader paused",
            Duration::from_secs(4),
            &others(paused),
            true,
        )
        .await;
        cluster.resume(paused);
        eprintln!("SIGCONT server.{}", paused + 1);
        load.phase("healed", Duration::from_secs(3), &all, true)
            .await;

        let end = load.finish(Duration::from_secs(30)).await;
        assert_progress(&end.ops, &end.phases, &end.homes);
        if reference {
            // ZooKeeper answers reads from the local replica: sequentially consistent, not
            // linearizable, so the full history may show stale reads. Its writes are linearizable,
            // and so are reads that follow a sync.
            match check(&end.ops) {
                Ok(_) => eprintln!("ZooKeeper: the full history happens to be linearizable"),
                Err(e) => eprintln!("ZooKeeper: reads are not linearizable, as documented:\n{e}"),
            }
            let writes_and_final_reads: Vec<Operation> = end
                .ops
                .into_iter()
                .filter(|o| o.input != Input::Get || o.invoke >= end.stopped_at)
                .collect();
            assert_linearizable(&writes_and_final_reads, CLIENTS);
        } else {
            assert_linearizable(&end.ops, CLIENTS);
        }
        drop(cluster);
    };
    tokio::time::timeout(CLUSTER_TEST_BOUND, body)
        .await
        .expect("the cluster test exceeded its time bound");
}

/// S-SMR with faults: two partitions of three replicas each (6 servers, `partitions=2`). The keys
/// spread over both partitions; a replica of each partition is killed with -9 and restarted in
/// turn, and the whole history must stay linearizable with every live server making progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partitions_of_three_stay_linearizable_through_kills() {
    if Flavor::from_env() == Flavor::ZooKeeper {
        return; // partitions are Volery's
    }
    let body = async {
        let options = common::cluster::ClusterOptions {
            partitions: Some(2),
            ..common::cluster::ClusterOptions::default()
        };
        let mut cluster = Cluster::start_with(6, options).await;
        let history = Arc::new(History::new());
        {
            let setup = zk::Client::connector()
                .with_session_timeout(SESSION_TIMEOUT)
                .connect(&cluster.connect_string())
                .await
                .expect("setup session");
            setup_keys(&setup, &history).await;
        }
        // One client pinned to each server, two roaming over all six.
        let mut targets: Vec<(String, Option<usize>)> =
            (0..6).map(|i| (cluster.addr(i), Some(i))).collect();
        targets.push((cluster.connect_string(), None));
        targets.push((cluster.connect_string(), None));
        let mut load = Load::start(history, targets, false);
        let all: Vec<usize> = (0..6).collect();
        let others = |x: usize| -> Vec<usize> { all.iter().copied().filter(|&i| i != x).collect() };
        load.phase("steady", Duration::from_secs(2), &all, true)
            .await;
        // Server 1 is a replica of partition 0, server 5 of partition 1.
        for victim in [0, 4] {
            eprintln!("kill -9 server.{}", victim + 1);
            cluster.kill9(victim);
            load.phase(
                "replica killed",
                Duration::from_secs(4),
                &others(victim),
                true,
            )
            .await;
            let began = Instant::now();
            cluster.restart(victim).await;
            eprintln!(
                "server.{} ready again after {:?}",
                victim + 1,
                began.elapsed()
            );
            load.phase("replica restarted", Duration::from_secs(2), &all, false)
                .await;
        }
        load.phase("healed", Duration::from_secs(2), &all, true)
            .await;
        let began = Instant::now();
        let end = load.finish(Duration::from_secs(30)).await;
        eprintln!("load finished after {:?}", began.elapsed());
        assert_progress(&end.ops, &end.phases, &end.homes);
        assert_linearizable(&end.ops, CLIENTS);
        drop(cluster);
    };
    // Six servers on two cores: restarts under load take longer than in the 3-server test.
    tokio::time::timeout(2 * CLUSTER_TEST_BOUND, body)
        .await
        .expect("the partitioned cluster test exceeded its time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_killed_and_restarted_under_load_stays_linearizable() {
    let body = async {
        let mut server = Server::start_with(Options {
            tick_time_ms: 200,
            ..Options::default()
        })
        .await;
        let history = Arc::new(History::new());
        setup_keys(&server.client().await, &history).await;
        let targets = (0..CLIENTS).map(|_| (server.addr(), Some(0))).collect();
        let mut load = Load::start(history, targets, false);
        load.phase("steady", Duration::from_secs(2), &[0], true)
            .await;
        server.kill9();
        load.phase("down", Duration::from_millis(500), &[], false)
            .await;
        server.restart().await;
        load.phase("restarted", Duration::from_secs(3), &[0], false)
            .await;
        let end = load.finish(Duration::from_secs(30)).await;
        assert_progress(&end.ops, &end.phases[..1], &end.homes);
        assert_progress(&end.ops, &end.phases[2..], &end.homes);
        assert_linearizable(&end.ops, CLIENTS);
    };
    tokio::time::timeout(Duration::from_secs(90), body)
        .await
        .expect("the test exceeded its time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unrelated_servers_taken_for_one_are_not_linearizable() {
    let body = async {
        let a = Server::start().await;
        let b = Server::start().await;
        let history = Arc::new(History::new());
        let (ca, cb) = (a.client().await, b.client().await);
        setup_keys(&ca, &history).await;
        // The same keys on the other server, as if it were a replica (not recorded: it is the
        // "same" create).
        create_persistent(&cb, PARENT, b"").await;
        for k in 0..KEYS {
            create_persistent(&cb, &key(k), format!("init-{k}").as_bytes()).await;
        }
        // One write acknowledged by A, then a read on B that cannot see it.
        assert!(run_op(&ca, &history, 0, &key(0), Input::Set(b"a-only".to_vec())).await);
        assert!(run_op(&cb, &history, 4, &key(0), Input::Get).await);
        drop((ca, cb));
        let targets = (0..CLIENTS)
            .map(|i| {
                if i < CLIENTS / 2 {
                    (a.addr(), Some(0))
                } else {
                    (b.addr(), Some(1))
                }
            })
            .collect();
        let mut load = Load::start(history, targets, false);
        load.phase("split", Duration::from_secs(1), &[0, 1], true)
            .await;
        let end = load.finish(Duration::from_secs(30)).await;
        let ops = end.ops;
        assert_progress(&ops, &end.phases, &end.homes);
        match check(&ops) {
            Err(CheckError::Violation(v)) => {
                eprintln!("as expected: {v}");
                assert_eq!(v.key, key(0));
            }
            other => panic!("two unrelated servers passed for one: {other:?}"),
        }
        // Without the scripted stale read, the random load alone shows it too.
        let load_only: Vec<Operation> = ops[..KEYS]
            .iter()
            .chain(&ops[KEYS + 2..])
            .cloned()
            .collect();
        assert!(load_only[KEYS..]
            .iter()
            .all(|o| o.invoke > ops[KEYS + 1].invoke));
        match check(&load_only) {
            Err(CheckError::Violation(v)) => eprintln!("load alone: {v}"),
            other => panic!("two unrelated servers under load passed for one: {other:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(90), body)
        .await
        .expect("the test exceeded its time bound");
}

/// Kills the servers it holds when dropped.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `volery start --config` with `[[servers]]` entries makes the same cluster as zoo.cfg lines:
/// a write through one server is read through another, and exactly one server leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_from_volery_toml_share_one_tree() {
    if Flavor::from_env() == Flavor::ZooKeeper {
        return; // volery.toml is Volery's own format
    }
    let dir = tempfile::tempdir().unwrap();
    let clients: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let peers: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let servers: String = (0..3)
        .map(|i| {
            format!(
                "[[servers]]\nid = {}\nhost = \"127.0.0.1\"\npeer_port = {}\nclient_port = {}\n",
                i + 1,
                peers[i],
                clients[i]
            )
        })
        .collect();
    let mut procs = Processes(Vec::new());
    for i in 0..3 {
        let data = dir.path().join(format!("s{}", i + 1));
        let toml = format!(
            "server_id = {}\ndata_dir = {:?}\ntick_time_ms = 200\n\
             four_letter_whitelist = [\"srvr\", \"mntr\"]\n[metrics]\nport = 0\n{servers}",
            i + 1,
            data.display().to_string()
        );
        let path = dir.path().join(format!("volery{}.toml", i + 1));
        std::fs::write(&path, toml).unwrap();
        let log = std::fs::File::create(dir.path().join(format!("log{}", i + 1))).unwrap();
        procs.0.push(
            std::process::Command::new(env!("CARGO_BIN_EXE_volery"))
                .arg("start")
                .arg("--config")
                .arg(&path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let connect = |port: u16| async move {
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(Ok(c)) = tokio::time::timeout(
                Duration::from_secs(2),
                zk::Client::connector().with_fail_eagerly().connect(&addr),
            )
            .await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no session on {addr}");
    };
    let first = connect(clients[0]).await;
    create_persistent(&first, "/toml", b"written via server 1").await;
    let third = connect(clients[2]).await;
    third.sync("/toml").await.unwrap();
    let (data, _) = third.get_data("/toml").await.unwrap();
    assert_eq!(data, b"written via server 1");
    let mut leaders = 0;
    for &p in &clients {
        let srvr =
            common::cluster::four_letter(&format!("127.0.0.1:{p}"), "srvr", Duration::from_secs(2))
                .await
                .expect("srvr answered");
        assert!(
            srvr.contains("Mode: leader") || srvr.contains("Mode: follower"),
            "{srvr}"
        );
        if srvr.contains("Mode: leader") {
            leaders += 1;
            let mntr = common::cluster::four_letter(
                &format!("127.0.0.1:{p}"),
                "mntr",
                Duration::from_secs(2),
            )
            .await
            .expect("mntr answered");
            assert!(mntr.contains("zk_server_state\tleader\n"), "{mntr}");
            assert!(mntr.contains("zk_followers\t2\n"), "{mntr}");
            assert!(mntr.contains("zk_synced_followers\t2\n"), "{mntr}");
        }
    }
    assert_eq!(leaders, 1, "exactly one leader");
}

/// Sessions belong to the cluster: one opened on one server resumes on another with the same
/// password, and once no server holds it, the leader expires it and its ephemeral disappears
/// everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_server_and_expires_when_no_server_holds_it() {
    use common::raw::{create_body, RawConn};
    let cluster = Cluster::start(3).await;
    cluster.wait_leader(Duration::from_secs(20)).await;
    // tickTime=200: the granted timeout is at most 20 ticks.
    let mut first = RawConn::connect(&cluster.addr(1), 2_000).await;
    assert_ne!(first.session_id, 0, "session opened");
    let created = first
        .request(1, &create_body("/cluster-eph", b"x", 1 /* EPHEMERAL */))
        .await;
    assert_eq!(created.err, 0, "ephemeral created");
    let (id, password, timeout) = (first.session_id, first.password.clone(), first.timeout_ms);
    drop(first);
    let moved = RawConn::resume(&cluster.addr(2), timeout, id, &password).await;
    assert_eq!(
        moved.session_id, id,
        "the session resumes on another server"
    );
    let observer = zk::Client::connector()
        .with_fail_eagerly()
        .connect(&cluster.addr(0))
        .await
        .expect("observer session");
    observer.sync("/").await.unwrap();
    assert!(
        observer.check_stat("/cluster-eph").await.unwrap().is_some(),
        "held by a live session"
    );
    drop(moved);
    let deadline =
        Instant::now() + Duration::from_millis(timeout as u64) * 3 + Duration::from_secs(2);
    loop {
        observer.sync("/").await.unwrap();
        if observer.check_stat("/cluster-eph").await.unwrap().is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ephemeral of an abandoned session outlived {}x its timeout",
            3
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = RawConn::resume(&cluster.addr(0), timeout, id, &password).await;
    assert_eq!(
        gone.session_id, 0,
        "the expired session is refused everywhere"
    );
}

/// A server whose disk was replaced comes back behind what every acceptor has trimmed: it fetches a
/// checkpoint from another server (state transfer), then catches up and serves the whole tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_server_installs_a_checkpoint_and_catches_up() {
    use common::cluster::ClusterOptions;
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            snap_count: Some(20),
            ..ClusterOptions::default()
        },
    )
    .await;
    cluster.wait_leader(Duration::from_secs(20)).await;
    let writer = zk::Client::connector()
        .with_fail_eagerly()
        .connect(&cluster.addr(0))
        .await
        .expect("writer session");
    create_persistent(&writer, "/st", b"").await;
    for i in 0..300 {
        let path = format!("/st/k{}", i % 10);
        if i < 10 {
            create_persistent(&writer, &path, b"0").await;
        } else {
            writer
                .set_data(&path, i.to_string().as_bytes(), None)
                .await
                .unwrap();
        }
    }
    // Let every member report its checkpoints, so the acceptors trim.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.wipe(2);
    for i in 300..340 {
        writer
            .set_data(&format!("/st/k{}", i % 10), i.to_string().as_bytes(), None)
            .await
            .unwrap();
    }
    cluster.start_again(2).await;
    let reader = zk::Client::connector()
        .with_fail_eagerly()
        .connect(&cluster.addr(2))
        .await
        .expect("reader session on the wiped server");
    reader.sync("/st").await.unwrap();
    for k in 0..10 {
        let (data, stat) = reader.get_data(&format!("/st/k{k}")).await.unwrap();
        assert_eq!(data, (330 + k).to_string().as_bytes(), "/st/k{k}");
        assert_eq!(stat.version, 33, "/st/k{k}");
    }
    if cluster.flavor() == Flavor::Volery {
        assert!(
            cluster
                .log(2)
                .contains("checkpoint installed from another replica"),
            "the wiped server caught up without a state transfer?\n{}",
            cluster.log(2)
        );
    }
}
