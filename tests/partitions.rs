//! A partitioned cluster (S-SMR, `partitions=k`) against real `volery` processes: every server
//! serves the whole tree, whichever partition a path hashes to; multi spans partitions
//! atomically; watches fire across partitions; sessions and ephemerals are cluster-wide.
//!
//! Volery only (ZooKeeper has no partitions): the tests return at once under
//! `VOLERY_TEST_REFERENCE=zookeeper`.

mod common;

use std::time::Duration;

use common::cluster::{four_letter, Cluster, ClusterOptions};
use common::{bounded, create_persistent, within, Flavor};
use volery::ssmr::partition_of;
use zookeeper_client as zk;

/// `n` paths under `base` whose owner is partition `p` of `k`.
fn paths_of(base: &str, p: u32, k: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{base}/n{i}"))
        .filter(|path| partition_of(path, k) == p)
        .take(n)
        .collect()
}

async fn client(addr: &str) -> zk::Client {
    for _ in 0..100 {
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_secs(3),
            zk::Client::connector().with_fail_eagerly().connect(addr),
        )
        .await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no session on {addr}");
}

async fn partitioned(servers: usize, k: u32) -> Option<Cluster> {
    if Flavor::from_env() == Flavor::ZooKeeper {
        return None;
    }
    let options = ClusterOptions {
        partitions: Some(k),
        ..ClusterOptions::default()
    };
    Some(Cluster::start_with(servers, options).await)
}

/// Two partitions of one replica each: writes through either server, reads through the other,
/// children and versions agree, multi across partitions is all-or-nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partitions_serve_one_tree() {
    let Some(cluster) = partitioned(2, 2).await else {
        return;
    };
    bounded(async {
        let a = client(&cluster.addr(0)).await;
        let b = client(&cluster.addr(1)).await;
        create_persistent(&a, "/t", b"").await;
        let p0 = paths_of("/t", 0, 2, 10);
        let p1 = paths_of("/t", 1, 2, 10);
        for (i, path) in p0.iter().chain(&p1).enumerate() {
            let writer = if i % 2 == 0 { &a } else { &b };
            create_persistent(writer, path, format!("v{i}").as_bytes()).await;
        }
        for (i, path) in p0.iter().chain(&p1).enumerate() {
            let reader = if i % 2 == 0 { &b } else { &a };
            let (data, stat) = reader.get_data(path).await.expect("read");
            assert_eq!(data, format!("v{i}").as_bytes(), "{path}");
            assert_eq!(stat.version, 0);
        }
        let mut children = a.list_children("/t").await.unwrap();
        children.sort();
        let mut expected: Vec<String> = p0
            .iter()
            .chain(&p1)
            .map(|p| p.trim_start_matches("/t/").to_string())
            .collect();
        expected.sort();
        assert_eq!(children, expected);
        let (_, parent) = b.get_data("/t").await.unwrap();
        assert_eq!(parent.num_children, 20);
        assert_eq!(parent.cversion, 20);

        // setData through one server, version seen through the other.
        let stat = b.set_data(&p0[0], b"x", Some(0)).await.expect("set");
        assert_eq!(stat.version, 1);
        let (_, seen) = a.get_data(&p0[0]).await.unwrap();
        assert_eq!(seen.version, 1);
        assert!(matches!(
            a.set_data(&p0[0], b"y", Some(0)).await,
            Err(zk::Error::BadVersion)
        ));

        // A multi over both partitions: a failed check on one side aborts the write on the other.
        let mut w = a.new_multi_writer();
        w.add_set_data(&p0[1], b"m", None).unwrap();
        w.add_check_version(&p1[1], 5).unwrap();
        assert!(w.commit().await.is_err(), "the check fails");
        let (data, stat) = b.get_data(&p0[1]).await.unwrap();
        assert_eq!((data.as_slice(), stat.version), (b"v1".as_slice(), 0));
        let mut w = b.new_multi_writer();
        w.add_set_data(&p0[1], b"m0", Some(0)).unwrap();
        w.add_set_data(&p1[1], b"m1", Some(0)).unwrap();
        w.add_check_version(&p1[2], 0).unwrap();
        w.commit().await.expect("multi over two partitions");
        assert_eq!(a.get_data(&p0[1]).await.unwrap().0, b"m0");
        assert_eq!(a.get_data(&p1[1]).await.unwrap().0, b"m1");

        // delete with a version owned by another partition than some servers: state exchange.
        assert!(matches!(
            a.delete(&p1[3], Some(7)).await,
            Err(zk::Error::BadVersion)
        ));
        a.delete(&p1[3], Some(0)).await.expect("delete");
        assert!(b.check_stat(&p1[3]).await.unwrap().is_none());

        // Sequential creates through both servers share one counter (the parent's cversion).
        create_persistent(&a, "/q", b"").await;
        let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        let mut names = Vec::new();
        for i in 0..6 {
            let c = if i % 2 == 0 { &a } else { &b };
            let (_, s) = c.create("/q/s-", b"", &seq).await.unwrap();
            names.push(s.into_i64());
        }
        assert_eq!(names, (0..6).collect::<Vec<_>>());

        // mntr shows the S-SMR traffic: creates came through the global group and exchanged
        // signals; the partitions' own groups carried the setData and the multi.
        for i in 0..2 {
            let mntr = four_letter(&cluster.addr(i), "mntr", Duration::from_secs(3))
                .await
                .expect("mntr");
            let value = |key: &str| -> u64 {
                mntr.lines()
                    .find_map(|l| l.strip_prefix(&format!("zk_{key}\t")))
                    .unwrap_or_else(|| panic!("no {key} in mntr: {mntr}"))
                    .parse()
                    .expect("a count")
            };
            assert!(value("global_commands_delivered") >= 28, "{mntr}");
            assert!(
                value("global_instances_delivered") > value("global_skips_delivered"),
                "{mntr}"
            );
            assert!(value("local_commands_delivered") >= 1, "{mntr}");
            assert!(value("signals_sent") >= 28, "{mntr}");
            assert!(value("signals_received") >= 28, "{mntr}");
            assert!(
                value("signal_frames_sent") <= value("signals_sent"),
                "{mntr}"
            );
        }
    })
    .await;
}

/// Watches registered through one server fire for changes made through the other, whichever
/// partition owns the path, and a session's ephemerals on every partition go when it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_ephemerals_cross_partitions() {
    let Some(cluster) = partitioned(2, 2).await else {
        return;
    };
    bounded(async {
        let a = client(&cluster.addr(0)).await;
        let b = client(&cluster.addr(1)).await;
        create_persistent(&a, "/w", b"").await;
        for p in 0..2 {
            let path = paths_of("/w", p, 2, 1).remove(0);
            create_persistent(&b, &path, b"").await;
            let (_, _, w) = a.get_and_watch_data(&path).await.unwrap();
            b.set_data(&path, b"changed", None).await.unwrap();
            let ev = within(10, "NodeDataChanged", w.changed()).await;
            assert_eq!(ev.event_type, zk::EventType::NodeDataChanged, "{path}");
            assert_eq!(ev.path, path);
            // The child watch of the parent lives on the parent's owner.
            let (_, _, cw) = a.get_and_watch_children("/w").await.unwrap();
            b.delete(&path, None).await.unwrap();
            let ev = within(10, "NodeChildrenChanged", cw.changed()).await;
            assert_eq!(ev.event_type, zk::EventType::NodeChildrenChanged);
        }

        let c = client(&cluster.addr(1)).await;
        let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        let mine: Vec<String> = (0..2)
            .map(|p| paths_of("/w/e", p, 2, 1).remove(0))
            .collect();
        create_persistent(&a, "/w/e", b"").await;
        for path in &mine {
            c.create(path, b"", &eph).await.unwrap();
        }
        let owner = c.session_id();
        for path in &mine {
            let (_, stat) = a.get_data(path).await.unwrap();
            assert_eq!(stat.ephemeral_owner, owner.0);
        }
        let (_, _, gone) = a.get_and_watch_children("/w/e").await.unwrap();
        drop(c);
        within(10, "children of /w/e change", gone.changed()).await;
        for _ in 0..50 {
            if a.list_children("/w/e").await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(a.list_children("/w/e").await.unwrap().is_empty());
        assert!(b.list_children("/w/e").await.unwrap().is_empty());
    })
    .await;
}

/// A session's pipelined requests keep their order when they alternate between the global group
/// and the server's own partition, where a request may go before the global ones ahead of it are
/// answered: each one sees the effects of those before it, replies keep xid order, and the event
/// of a watch set by a reply still held behind a global one's comes after that reply (a client
/// drops an event for a watch it does not know yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_keep_order_between_groups() {
    let Some(cluster) = partitioned(2, 2).await else {
        return;
    };
    bounded(async {
        let a = client(&cluster.addr(0)).await;
        create_persistent(&a, "/p", b"").await;
        let own = paths_of("/p", 0, 2, 40);
        let other = paths_of("/p", 1, 2, 1).remove(0);
        create_persistent(&a, &other, b"").await;
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        for path in &own {
            let created = a.create(path, b"v0", &persistent);
            let watched = a.get_and_watch_data(path);
            let set = a.set_data(path, b"v1", Some(0));
            let elsewhere = a.set_data(&other, b"x", None);
            let deleted = a.delete(path, Some(1));
            let gone = a.check_stat(path);
            let (created, watched, set, elsewhere, deleted, gone) =
                tokio::join!(created, watched, set, elsewhere, deleted, gone);
            created.unwrap_or_else(|e| panic!("create {path}: {e}"));
            let (data, stat, watcher) = watched.unwrap_or_else(|e| panic!("get {path}: {e}"));
            assert_eq!(
                (data.as_slice(), stat.version),
                (b"v0".as_slice(), 0),
                "{path}"
            );
            assert_eq!(set.unwrap().version, 1, "{path}");
            elsewhere.unwrap();
            deleted.unwrap_or_else(|e| panic!("delete {path}: {e}"));
            assert!(gone.unwrap().is_none(), "{path} still there");
            let ev = within(
                10,
                "NodeDataChanged of the watch set in the pipeline",
                watcher.changed(),
            )
            .await;
            assert_eq!(ev.event_type, zk::EventType::NodeDataChanged, "{path}");
            assert_eq!(ev.path, *path);
        }
    })
    .await;
}

/// A server holding votes of the global group refuses to start with another acceptor set for it,
/// and says why: a quorum of the new set might miss every vote of an old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_global_acceptor_set_is_refused() {
    let Some(mut cluster) = partitioned(2, 2).await else {
        return;
    };
    bounded(async {
        let a = client(&cluster.addr(0)).await;
        create_persistent(&a, "/voted", b"").await;
    })
    .await;
    let cfg = cluster.cfg_path(1);
    let original = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{original}globalAcceptors=2\n")).unwrap();
    let (status, log) = cluster.restart_expecting_exit(1, Duration::from_secs(30));
    let status = status.expect("the server refuses to start");
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("votes were cast with acceptors [1, 2]") && log.contains("names [2]"),
        "{log}"
    );
    std::fs::write(&cfg, original).unwrap();
    cluster.restart(1).await;
    bounded(async {
        let b = client(&cluster.addr(1)).await;
        assert!(b.check_stat("/voted").await.unwrap().is_some());
    })
    .await;
}
