//! Durability: the server is killed with SIGKILL under load and restarted on the same data
//! directory; every write whose reply arrived must still be there.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw::{self, err, op, RawConn, Reader};
use common::{bounded, create_persistent, unique_path, within, Options, Server};
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

/// What one writer saw acknowledged, and the one write that may have been in flight at the kill.
#[derive(Default)]
struct Acked {
    /// Created paths with their data, in order.
    creates: Vec<(String, Vec<u8>)>,
    /// Last acknowledged (version, data) of the writer's counter node.
    last_set: Option<(i32, Vec<u8>)>,
    /// Data of a setData sent but not acknowledged (it may or may not have committed).
    pending_set: Option<Vec<u8>>,
}

async fn writer(client: zk::Client, base: String, id: usize, acked: Arc<Mutex<Acked>>) {
    let counter = format!("{base}/counter-{id}");
    let anyone = CreateMode::Persistent.with_acls(Acls::anyone_all());
    if client.create(&counter, b"start", &anyone).await.is_err() {
        return;
    }
    for i in 0u64.. {
        let path = format!("{base}/w{id}-{i}");
        let data = format!("writer {id} op {i} {}", "x".repeat((i % 7) as usize * 50)).into_bytes();
        if client.create(&path, &data, &anyone).await.is_err() {
            return;
        }
        acked.lock().expect("lock").creates.push((path, data));
        let value = format!("{id}:{i}").into_bytes();
        acked.lock().expect("lock").pending_set = Some(value.clone());
        match client.set_data(&counter, &value, None).await {
            Ok(stat) => {
                let mut a = acked.lock().expect("lock");
                a.last_set = Some((stat.version, value));
                a.pending_set = None;
            }
            Err(_) => return,
        }
    }
}

/// Starts `n` writers on their own sessions under `base`.
async fn start_writers(
    server: &Server,
    base: &str,
    n: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, Vec<Arc<Mutex<Acked>>>) {
    let mut tasks = Vec::new();
    let mut logs = Vec::new();
    for id in 0..n {
        let client = server.client().await;
        let acked = Arc::new(Mutex::new(Acked::default()));
        logs.push(acked.clone());
        tasks.push(tokio::spawn(writer(client, base.to_string(), id, acked)));
    }
    (tasks, logs)
}

async fn verify(client: &zk::Client, base: &str, logs: &[Arc<Mutex<Acked>>]) -> usize {
    let mut checked = 0;
    for (id, log) in logs.iter().enumerate() {
        let (creates, last_set, pending) = {
            let a = log.lock().expect("lock");
            (a.creates.clone(), a.last_set.clone(), a.pending_set.clone())
        };
        for (path, data) in &creates {
            let got = client
                .get_data(path)
                .await
                .unwrap_or_else(|e| panic!("acknowledged {path} lost: {e}"));
            assert_eq!(&got.0, data, "data of acknowledged {path}");
            checked += 1;
        }
        if let Some((version, value)) = last_set {
            let counter = format!("{base}/counter-{id}");
            let (data, stat) = client.get_data(&counter).await.expect("counter exists");
            if stat.version == version {
                assert_eq!(data, value, "{counter}: acknowledged value");
            } else {
                // Only the single unacknowledged write may have landed after the acknowledged one.
                assert_eq!(
                    stat.version,
                    version + 1,
                    "{counter}: version after restart"
                );
                assert_eq!(Some(data), pending, "{counter}: the in-flight value");
            }
            checked += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_loses_no_acknowledged_write() {
    bounded(async {
        let mut server = Server::start().await;
        let setup = server.client().await;
        let base = unique_path("durable");
        create_persistent(&setup, &base, b"").await;
        drop(setup);

        let (tasks, logs) = start_writers(&server, &base, 6).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        server.kill9();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let acked: usize = logs
            .iter()
            .map(|l| l.lock().expect("lock").creates.len())
            .sum();
        assert!(
            acked >= 20,
            "the load produced too few acknowledged writes ({acked}) to be meaningful"
        );

        server.restart().await;
        let client = server.client().await;
        let checked = verify(&client, &base, &logs).await;
        assert!(checked >= acked);
        eprintln!("verified {checked} acknowledged writes after kill -9");
    })
    .await;
}

/// Several kill/restart cycles, each under load, all on one data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill9_cycles() {
    bounded(async {
        let mut server = Server::start().await;
        let base = unique_path("cycles");
        let setup = server.client().await;
        create_persistent(&setup, &base, b"").await;
        drop(setup);
        let mut all_logs = Vec::new();
        for cycle in 0..3 {
            let cycle_base = format!("{base}/c{cycle}");
            let setup = server.client().await;
            create_persistent(&setup, &cycle_base, b"").await;
            drop(setup);
            let (tasks, logs) = start_writers(&server, &cycle_base, 3).await;
            tokio::time::sleep(Duration::from_millis(800)).await;
            server.kill9();
            for task in &tasks {
                task.abort();
            }
            for task in tasks {
                let _ = task.await;
            }
            all_logs.push((cycle_base, logs));
            server.restart().await;
        }
        let client = server.client().await;
        for (cycle_base, logs) in &all_logs {
            verify(&client, cycle_base, logs).await;
        }
    })
    .await;
}

/// Versions, child versions (hence sequence numbers) and zxids continue after a restart.
#[tokio::test]
async fn counters_survive_restart() {
    bounded(async {
        let mut server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("counters");
        create_persistent(&client, &base, b"").await;
        let seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
        for _ in 0..3 {
            client
                .create(&format!("{base}/s-"), b"", &seq)
                .await
                .expect("seq");
        }
        let set = client.set_data(&base, b"v", None).await.expect("set");
        let acl = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())];
        client.set_acl(&base, &acl, None).await.expect("set_acl");
        let (_, before) = client.get_data(&base).await.expect("get");
        drop(client);

        server.kill9();
        server.restart().await;
        let client = server.client().await;
        let (data, after) = client.get_data(&base).await.expect("get after restart");
        assert_eq!(data, b"v");
        assert_eq!(after, before, "every Stat field survives a restart");
        assert_eq!(after.mzxid, set.mzxid);
        let (stat, s) = client
            .create(&format!("{base}/s-"), b"", &seq)
            .await
            .expect("seq after restart");
        assert_eq!(s.into_i64(), 3);
        assert!(
            stat.czxid > before.pzxid,
            "zxids keep increasing after restart"
        );
        let mut children = client.list_children(&base).await.expect("children");
        children.sort();
        assert_eq!(
            children,
            [
                "s-0000000000",
                "s-0000000001",
                "s-0000000002",
                "s-0000000003"
            ]
        );
    })
    .await;
}

/// Sessions are part of the durable state: a session's ephemerals survive a server restart and
/// the session can be resumed; an abandoned one expires after its timeout.
#[tokio::test]
async fn sessions_and_ephemerals_survive_restart() {
    bounded(async {
        let mut server = Server::start_with(Options {
            tick_time_ms: 500,
            ..Options::default()
        })
        .await;
        let mut kept = RawConn::connect(&server.addr(), 6000).await;
        let mut abandoned = RawConn::connect(&server.addr(), 2000).await;
        let kept_path = unique_path("eph-kept");
        let abandoned_path = unique_path("eph-abandoned");
        for (conn, path) in [(&mut kept, &kept_path), (&mut abandoned, &abandoned_path)] {
            let reply = conn
                .request(op::CREATE, &raw::create_body(path, b"", 1))
                .await;
            assert_eq!(reply.err, err::OK);
        }
        let (sid, password) = (kept.session_id, kept.password.clone());
        drop(kept);
        drop(abandoned);

        server.kill9();
        server.restart().await;
        let mut resumed = RawConn::resume(&server.addr(), 6000, sid, &password).await;
        assert_eq!(resumed.session_id, sid, "the session survived the restart");
        let reply = resumed
            .request(op::EXISTS, &raw::path_watch_body(&kept_path, false))
            .await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(Reader::new(&reply.body).stat().ephemeral_owner, sid);

        let observer = server.client().await;
        within(20, "abandoned session expires after restart", async {
            while observer
                .check_stat(&abandoned_path)
                .await
                .expect("exists")
                .is_some()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                resumed.ping().await;
            }
        })
        .await;
        let reply = resumed
            .request(op::EXISTS, &raw::path_watch_body(&kept_path, false))
            .await;
        assert_eq!(reply.err, err::OK, "the resumed session's ephemeral stays");
        resumed.close_session().await;
    })
    .await;
}

/// A restart without load: the whole tree and ACLs come back.
#[tokio::test]
async fn tree_and_acls_survive_restart() {
    bounded(async {
        let mut server = Server::start().await;
        let client = server
            .connect(zk::Client::connector().with_auth("digest", b"dana:pw"))
            .await;
        let base = unique_path("tree");
        create_persistent(&client, &base, b"root").await;
        for i in 0..20 {
            create_persistent(&client, &format!("{base}/n{i}"), format!("{i}").as_bytes()).await;
        }
        let private = format!("{base}/private");
        client
            .create(
                &private,
                b"p",
                &CreateMode::Persistent.with_acls(Acls::creator_all()),
            )
            .await
            .expect("create");
        client
            .delete(&format!("{base}/n7"), None)
            .await
            .expect("delete");
        drop(client);

        server.kill9();
        server.restart().await;
        let anon = server.client().await;
        assert_eq!(
            anon.count_descendants_number(&base).await.expect("count"),
            20
        );
        assert_eq!(
            anon.check_stat(&format!("{base}/n7"))
                .await
                .expect("exists"),
            None
        );
        assert_eq!(
            anon.get_data(&format!("{base}/n19")).await.expect("get").0,
            b"19"
        );
        assert_eq!(
            anon.get_data(&private).await.unwrap_err(),
            zk::Error::NoAuth
        );
        let dana = server
            .connect(zk::Client::connector().with_auth("digest", b"dana:pw"))
            .await;
        assert_eq!(dana.get_data(&private).await.expect("owner reads").0, b"p");
    })
    .await;
}
