//! Checkpoint and replay: with a tiny snapCount the server checkpoints its tree many times while
//! several sessions write; after kill -9 it must come back from the last checkpoint plus the log
//! after it with every acknowledged write and every Stat field as it was, and again after further
//! writes and restarts on the same data directory.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::raw::{self, err, op, MultiResult, RawConn, Reader, Stat};
use common::{bounded, unique_path, Flavor, Options, Server};

/// Commands between two checkpoints: a few hundred writes make many checkpoints.
const SNAP_COUNT: u64 = 50;
/// The largest session timeout with the default tickTime: the writers' sessions outlive restarts.
const SESSION_MS: i32 = 40_000;
const WRITERS: usize = 4;
/// Children each writer creates under its own node.
const NODES: usize = 80;

/// What one session wrote and saw acknowledged.
struct Writer {
    session_id: i64,
    password: Vec<u8>,
    /// The Stat of the last acknowledged write of each path the writer created or set.
    acked: BTreeMap<String, (Vec<u8>, Stat)>,
    /// Paths the writer deleted (acknowledged).
    deleted: Vec<String>,
    ephemerals: Vec<String>,
    /// Writes acknowledged, all kinds counted.
    writes: usize,
}

fn stat_of(reply: &raw::Reply) -> Stat {
    Reader::new(&reply.body).stat()
}

/// create2's reply: the created path (sequential suffix included) and its Stat.
fn created(reply: &raw::Reply) -> (String, Stat) {
    let mut r = Reader::new(&reply.body);
    let path = r.string().expect("created path");
    (path, r.stat())
}

async fn expect_ok(conn: &mut RawConn, opcode: i32, body: &[u8], what: &str) -> raw::Reply {
    let reply = conn.request(opcode, body).await;
    assert_eq!(reply.err, err::OK, "{what}");
    reply
}

/// One session's workload under `base/w<id>`: creates, repeated setData, deletes, sequential
/// nodes, ephemerals and a multi, each waiting for its reply.
async fn write_load(addr: String, base: String, id: usize) -> Writer {
    let mut conn = RawConn::connect(&addr, SESSION_MS).await;
    let mut w = Writer {
        session_id: conn.session_id,
        password: conn.password.clone(),
        acked: BTreeMap::new(),
        deleted: Vec::new(),
        ephemerals: Vec::new(),
        writes: 0,
    };
    let dir = format!("{base}/w{id}");
    expect_ok(
        &mut conn,
        op::CREATE,
        &raw::create_body(&dir, b"dir", 0),
        "dir",
    )
    .await;
    w.writes += 1;
    for j in 0..NODES {
        let path = format!("{dir}/n{j}");
        let data = format!("w{id} n{j} v0").into_bytes();
        let reply = expect_ok(
            &mut conn,
            op::CREATE2,
            &raw::create_body(&path, &data, 0),
            "create2",
        )
        .await;
        w.writes += 1;
        let (got, stat) = created(&reply);
        assert_eq!(got, path);
        w.acked.insert(path, (data, stat));
    }
    for j in 0..NODES {
        let path = format!("{dir}/n{j}");
        for v in 1..=(j % 3 + 1) {
            let data = format!("w{id} n{j} v{v}").into_bytes();
            let reply = expect_ok(
                &mut conn,
                op::SET_DATA,
                &raw::set_data_body(&path, &data, v as i32 - 1),
                "setData",
            )
            .await;
            w.writes += 1;
            let stat = stat_of(&reply);
            assert_eq!(stat.version, v as i32);
            w.acked.insert(path.clone(), (data, stat));
        }
    }
    for j in (0..NODES).filter(|j| j % 10 == 9) {
        let path = format!("{dir}/n{j}");
        expect_ok(
            &mut conn,
            op::DELETE,
            &raw::path_version_body(&path, -1),
            "delete",
        )
        .await;
        w.writes += 1;
        w.acked.remove(&path);
        w.deleted.push(path);
    }
    for _ in 0..5 {
        let reply = expect_ok(
            &mut conn,
            op::CREATE2,
            &raw::create_body(&format!("{dir}/seq-"), b"s", 2),
            "sequential",
        )
        .await;
        w.writes += 1;
        let (path, stat) = created(&reply);
        w.acked.insert(path, (b"s".to_vec(), stat));
    }
    for k in 0..3 {
        let path = format!("{dir}/eph{k}");
        let reply = expect_ok(
            &mut conn,
            op::CREATE2,
            &raw::create_body(&path, b"e", 1),
            "ephemeral",
        )
        .await;
        w.writes += 1;
        let (_, stat) = created(&reply);
        assert_eq!(stat.ephemeral_owner, w.session_id);
        w.acked.insert(path.clone(), (b"e".to_vec(), stat));
        w.ephemerals.push(path);
    }
    let (m1, m0) = (format!("{dir}/multi"), format!("{dir}/n0"));
    let body = raw::multi_body(&[
        (op::CREATE, raw::create_body(&m1, b"m", 0)),
        (op::SET_DATA, raw::set_data_body(&m0, b"by multi", -1)),
        (op::DELETE, raw::path_version_body(&format!("{dir}/n1"), -1)),
    ]);
    let reply = expect_ok(&mut conn, op::MULTI, &body, "multi").await;
    w.writes += 1;
    match raw::parse_multi(&reply.body).as_slice() {
        [MultiResult::Create { path }, MultiResult::SetData { stat }, MultiResult::Delete] => {
            assert_eq!(path, &m1);
            w.acked.insert(m0, (b"by multi".to_vec(), *stat));
            let n1 = format!("{dir}/n1");
            w.acked.remove(&n1);
            w.deleted.push(n1);
        }
        other => panic!("multi results {other:?}"),
    }
    if id == WRITERS - 1 {
        // This session ends before the kill: its ephemerals must stay deleted after every replay.
        conn.close_session().await;
        for path in w.ephemerals.drain(..) {
            w.acked.remove(&path);
            w.deleted.push(path);
        }
    }
    w
}

/// Every node under `root` (itself included) with its data and Stat, read over one session.
async fn dump(conn: &mut RawConn, root: &str) -> BTreeMap<String, (Vec<u8>, Stat)> {
    let mut nodes = BTreeMap::new();
    let mut todo = vec![root.to_string()];
    while let Some(path) = todo.pop() {
        let reply = expect_ok(
            conn,
            op::GET_DATA,
            &raw::path_watch_body(&path, false),
            &path,
        )
        .await;
        let mut r = Reader::new(&reply.body);
        let data = r.buffer().unwrap_or_default();
        nodes.insert(path.clone(), (data, r.stat()));
        let reply = expect_ok(
            conn,
            op::GET_CHILDREN,
            &raw::path_watch_body(&path, false),
            &path,
        )
        .await;
        for child in Reader::new(&reply.body).strings() {
            todo.push(format!("{path}/{child}"));
        }
    }
    nodes
}

/// The tree under `base` as a new session sees it.
async fn dump_fresh(server: &Server, base: &str) -> BTreeMap<String, (Vec<u8>, Stat)> {
    let mut conn = RawConn::connect(&server.addr(), 30_000).await;
    let nodes = dump(&mut conn, base).await;
    conn.close_session().await;
    nodes
}

/// Asserts two dumps are equal, naming the first difference.
fn assert_same_tree(
    got: &BTreeMap<String, (Vec<u8>, Stat)>,
    want: &BTreeMap<String, (Vec<u8>, Stat)>,
    when: &str,
) {
    for (path, node) in want {
        assert_eq!(got.get(path), Some(node), "{when}: {path}");
    }
    for path in got.keys() {
        assert!(want.contains_key(path), "{when}: unexpected {path}");
    }
}

fn checkpoints_in_log(server: &Server) -> usize {
    server.log().matches("checkpoint saved").count()
}

/// Checkpoints the server has written: Volery logs each one; ZooKeeper leaves snapshot files.
fn checkpoints_made(server: &Server) -> usize {
    match server.flavor() {
        Flavor::Volery => checkpoints_in_log(server),
        Flavor::ZooKeeper => std::fs::read_dir(server.data_dir().join("version-2"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot."))
                    .count()
            })
            .unwrap_or(0),
    }
}

/// Volery's last start line: the checkpoint instance it loaded and the highest logged instance.
fn last_start(server: &Server) -> (u64, Option<u64>) {
    let log = server.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("group starting"))
        .expect("a group starting line");
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .to_string()
    };
    let after = field("after=").parse().expect("after=<instance>");
    let highest = field("highest=");
    let highest = highest
        .strip_prefix("Some(")
        .and_then(|h| h.strip_suffix(')'))
        .map(|h| h.parse().expect("highest instance"));
    (after, highest)
}

/// Sets `path` (a leaf) until that write is known to lie after the last checkpoint, and returns
/// its data and Stat. Volery orders reads too, so nothing may be sent after this before the kill;
/// it logs each checkpoint right after the command that triggered it.
async fn leave_a_log_tail(server: &Server, conn: &mut RawConn, path: &str) -> (Vec<u8>, Stat) {
    for round in 0..3 {
        let before = checkpoints_in_log(server);
        let data = format!("tail {round}").into_bytes();
        let reply = expect_ok(
            conn,
            op::SET_DATA,
            &raw::set_data_body(path, &data, -1),
            "tail",
        )
        .await;
        let written = (data, stat_of(&reply));
        if server.flavor() != Flavor::Volery {
            return written;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if checkpoints_in_log(server) == before {
            return written;
        }
    }
    panic!("every write was followed by a checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_and_replay_restore_every_acknowledged_write() {
    bounded(async {
        let mut server = Server::start_with(Options {
            snap_count: Some(SNAP_COUNT),
            ..Options::default()
        })
        .await;
        let base = unique_path("checkpoint");
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        expect_ok(
            &mut conn,
            op::CREATE,
            &raw::create_body(&base, b"", 0),
            "base",
        )
        .await;

        let tasks: Vec<_> = (0..WRITERS)
            .map(|id| tokio::spawn(write_load(server.addr(), base.clone(), id)))
            .collect();
        let mut writers = Vec::new();
        for task in tasks {
            writers.push(task.await.expect("writer task"));
        }
        let before = dump(&mut conn, &base).await;
        let writes: usize = writers.iter().map(|w| w.writes).sum();
        assert!(before.len() > WRITERS * NODES, "{} nodes", before.len());

        // Each acknowledged Stat is the node's Stat: nothing touched those nodes afterwards.
        for w in &writers {
            for (path, acked) in &w.acked {
                assert_eq!(before.get(path), Some(acked), "acknowledged {path}");
            }
            for path in &w.deleted {
                assert!(!before.contains_key(path), "deleted {path}");
            }
            for path in &w.ephemerals {
                assert_eq!(before[path].1.ephemeral_owner, w.session_id, "{path}");
            }
        }
        let made = checkpoints_made(&server);
        assert!(
            made >= 3,
            "{writes} writes with snapCount {SNAP_COUNT} made only {made} checkpoints"
        );
        eprintln!(
            "{writes} acknowledged writes, {} nodes, {made} checkpoints",
            before.len()
        );
        drop(conn);

        // 1: the last checkpoint plus the log after it.
        server.kill9();
        server.restart().await;
        if server.flavor() == Flavor::Volery {
            let (after, _) = last_start(&server);
            assert!(after > 0, "the restart loaded a checkpoint");
        }
        let after_first = dump_fresh(&server, &base).await;
        assert_same_tree(&after_first, &before, "after the first restart");

        // The writers' sessions survived: one resumes and writes, one closes (ephemerals go).
        let (w0, w1) = (&writers[0], &writers[1]);
        let mut resumed =
            RawConn::resume(&server.addr(), SESSION_MS, w0.session_id, &w0.password).await;
        assert_eq!(
            resumed.session_id, w0.session_id,
            "writer 0's session lives"
        );
        let late_eph = format!("{base}/w0/late-eph");
        expect_ok(
            &mut resumed,
            op::CREATE,
            &raw::create_body(&late_eph, b"late", 1),
            "late ephemeral",
        )
        .await;
        for j in [2, 3, 4] {
            let path = format!("{base}/w0/n{j}");
            expect_ok(
                &mut resumed,
                op::SET_DATA,
                &raw::set_data_body(&path, b"after restart", -1),
                "set",
            )
            .await;
        }
        let closing =
            RawConn::resume(&server.addr(), SESSION_MS, w1.session_id, &w1.password).await;
        assert_eq!(
            closing.session_id, w1.session_id,
            "writer 1's session lives"
        );
        closing.close_session().await;
        let mut before_second = dump(&mut resumed, &base).await;
        let tail = format!("{base}/w0/n5");
        let written = leave_a_log_tail(&server, &mut resumed, &tail).await;
        before_second.insert(tail, written);
        for path in &w1.ephemerals {
            assert!(
                !before_second.contains_key(path),
                "{path} went with its session"
            );
        }
        assert_eq!(before_second[&late_eph].1.ephemeral_owner, w0.session_id);
        drop(resumed);

        // 2: the same checkpoint or a later one, and a log tail replayed over it.
        server.kill9();
        server.restart().await;
        if server.flavor() == Flavor::Volery {
            let (after, highest) = last_start(&server);
            eprintln!("second restart: checkpoint {after}, log up to {highest:?}");
            assert!(after > 0, "the restart loaded a checkpoint");
            assert!(
                highest.is_some_and(|h| h > after),
                "a log tail after checkpoint {after} replays (highest {highest:?})"
            );
        }
        let after_second = dump_fresh(&server, &base).await;
        assert_same_tree(&after_second, &before_second, "after the second restart");

        // 3: nothing new; replaying the same tail over the same checkpoint again changes nothing.
        server.kill9();
        server.restart().await;
        let after_third = dump_fresh(&server, &base).await;
        assert_same_tree(&after_third, &before_second, "after the third restart");
        for w in [&writers[0], &writers[2]] {
            let conn = RawConn::resume(&server.addr(), SESSION_MS, w.session_id, &w.password).await;
            assert_eq!(
                conn.session_id, w.session_id,
                "live sessions survive every restart"
            );
            conn.close_session().await;
        }
        let mut check = RawConn::connect(&server.addr(), 30_000).await;
        for path in writers[0]
            .ephemerals
            .iter()
            .chain([&late_eph])
            .chain(&writers[2].ephemerals)
        {
            let reply = check
                .request(op::EXISTS, &raw::path_watch_body(path, false))
                .await;
            assert_eq!(reply.err, err::NO_NODE, "{path} goes with closeSession");
        }
        check.close_session().await;
    })
    .await;
}
