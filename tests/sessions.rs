//! Sessions against a real server process: timeout negotiation, resume with id and password,
//! expiry after a silent or dropped connection, explicit close, and connection limits.

mod common;

use std::time::Duration;

use common::raw::{self, err, event, op, Event, RawConn, Reader};
use common::{bounded, create_persistent, unique_path, within, Options, Server};
use zk::{Acls, CreateMode, EventType};
use zookeeper_client as zk;

/// tickTime for session tests: timeouts are bounded to [1 s, 10 s].
const TICK_MS: u32 = 500;

fn fast_ticks() -> Options {
    Options {
        tick_time_ms: TICK_MS,
        ..Options::default()
    }
}

async fn create_ephemeral_raw(conn: &mut RawConn, path: &str) {
    let reply = conn
        .request(op::CREATE, &raw::create_body(path, b"e", 1))
        .await;
    assert_eq!(reply.err, err::OK, "create ephemeral {path}");
}

async fn owner_of(conn: &mut RawConn, path: &str) -> Option<i64> {
    let reply = conn
        .request(op::EXISTS, &raw::path_watch_body(path, false))
        .await;
    match reply.err {
        err::OK => Some(Reader::new(&reply.body).stat().ephemeral_owner),
        err::NO_NODE => None,
        other => panic!("exists {path}: error {other}"),
    }
}

#[tokio::test]
async fn session_timeout_is_negotiated_within_tick_bounds() {
    bounded(async {
        let server = Server::start_with(fast_ticks()).await;
        let min = 2 * TICK_MS as i32;
        let max = 20 * TICK_MS as i32;
        for (asked, granted) in [
            (1, min),
            (min - 1, min),
            (min, min),
            (3000, 3000),
            (max, max),
            (max + 1, max),
            (600_000, max),
        ] {
            let conn = RawConn::connect(&server.addr(), asked).await;
            assert_ne!(conn.session_id, 0);
            assert_eq!(
                conn.password.len(),
                16,
                "ZooKeeper session passwords are 16 bytes"
            );
            assert_eq!(conn.timeout_ms, granted, "asked {asked}");
            conn.close_session().await;
        }
        let client = server
            .connect(zk::Client::connector().with_session_timeout(Duration::from_millis(4000)))
            .await;
        assert_eq!(client.session_timeout(), Duration::from_millis(4000));
    })
    .await;
}

#[tokio::test]
async fn sessions_get_distinct_ids() {
    bounded(async {
        let server = Server::start().await;
        let a = server.client().await;
        let b = server.client().await;
        assert_ne!(a.session_id(), b.session_id());
        assert_ne!(a.session_id().0, 0);
    })
    .await;
}

#[tokio::test]
async fn resume_with_id_and_password_keeps_ephemerals() {
    bounded(async {
        let server = Server::start().await;
        let observer = server.client().await;
        let path = unique_path("resume");
        let connector = || zk::Client::connector().with_session_timeout(Duration::from_secs(20));

        let first = server.connect(connector().with_detached()).await;
        let id = first.session_id();
        let (stat, _) = first
            .create(
                &path,
                b"mine",
                &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
            )
            .await
            .expect("create");
        assert_eq!(stat.ephemeral_owner, id.0);
        let session = first.session().clone();
        drop(first); // detached: the connection closes without closeSession

        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            observer.check_stat(&path).await.expect("exists").is_some(),
            "the session outlives its connection"
        );

        let resumed = server.connect(connector().with_session(session)).await;
        assert_eq!(resumed.session_id(), id);
        assert_eq!(
            resumed.list_ephemerals(&path).await.expect("ephemerals"),
            vec![path.clone()]
        );
        let (data, stat) = resumed.get_data(&path).await.expect("get");
        assert_eq!(
            (data.as_slice(), stat.ephemeral_owner),
            (&b"mine"[..], id.0)
        );
        resumed.delete(&path, None).await.expect("owner deletes");

        // The same on the wire, with the password as returned by the server.
        let mut conn = RawConn::connect(&server.addr(), 20_000).await;
        let raw_path = unique_path("resume-raw");
        create_ephemeral_raw(&mut conn, &raw_path).await;
        let (sid, password, timeout) = (conn.session_id, conn.password.clone(), conn.timeout_ms);
        drop(conn);
        let mut again = RawConn::resume(&server.addr(), 20_000, sid, &password).await;
        assert_eq!(
            (again.session_id, again.password.clone(), again.timeout_ms),
            (sid, password, timeout)
        );
        assert_eq!(owner_of(&mut again, &raw_path).await, Some(sid));
        again.close_session().await;
    })
    .await;
}

#[tokio::test]
async fn resume_with_wrong_password_is_refused() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 20_000).await;
        let path = unique_path("badpw");
        create_ephemeral_raw(&mut conn, &path).await;
        let mut wrong = conn.password.clone();
        wrong[0] ^= 0xff;
        let mut refused = RawConn::resume(&server.addr(), 20_000, conn.session_id, &wrong).await;
        assert_eq!(refused.session_id, 0, "refused: session id 0");
        assert_eq!(refused.timeout_ms, 0, "refused: timeout 0");
        assert!(
            refused.closed_within(Duration::from_secs(10)).await,
            "server closes a refused connection"
        );
        // ZooKeeper drops the session's current connection before checking the password...
        assert!(
            conn.closed_within(Duration::from_secs(10)).await,
            "the session's old connection is closed"
        );
        // ...but the session itself lives on and resumes with the right password.
        let mut resumed =
            RawConn::resume(&server.addr(), 20_000, conn.session_id, &conn.password).await;
        assert_eq!(resumed.session_id, conn.session_id);
        assert_eq!(owner_of(&mut resumed, &path).await, Some(conn.session_id));
        resumed.close_session().await;
    })
    .await;
}

/// Closing the connection without closeSession: the session expires after its timeout, its
/// ephemerals go, other sessions' watches fire, and resuming it is refused.
#[tokio::test]
async fn dropped_connection_expires_session() {
    bounded(async {
        let server = Server::start_with(fast_ticks()).await;
        let observer = server.client().await;
        let base = unique_path("expire");
        create_persistent(&observer, &base, b"").await;
        let eph = format!("{base}/eph");

        let mut conn = RawConn::connect(&server.addr(), 1000).await;
        assert_eq!(conn.timeout_ms, 1000);
        create_ephemeral_raw(&mut conn, &eph).await;
        let (sid, password) = (conn.session_id, conn.password.clone());
        let (_, exists_watch) = observer
            .check_and_watch_stat(&eph)
            .await
            .expect("exists watch");
        let (_, child_watch) = observer
            .list_and_watch_children(&base)
            .await
            .expect("child watch");
        let before = observer
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        drop(conn);

        let got = within(15, "NodeDeleted after expiry", exists_watch.changed()).await;
        assert_eq!(
            (got.event_type, got.path.as_str()),
            (EventType::NodeDeleted, eph.as_str())
        );
        let got = within(5, "NodeChildrenChanged after expiry", child_watch.changed()).await;
        assert_eq!(
            (got.event_type, got.path.as_str()),
            (EventType::NodeChildrenChanged, base.as_str())
        );
        assert_eq!(observer.check_stat(&eph).await.expect("exists"), None);
        let after = observer
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        assert_eq!(after.cversion, before.cversion + 1);

        let refused = RawConn::resume(&server.addr(), 1000, sid, &password).await;
        assert_eq!(
            refused.session_id, 0,
            "an expired session cannot be resumed"
        );
    })
    .await;
}

/// A connection that stays open but sends nothing expires too, and the server closes it.
#[tokio::test]
async fn silent_connection_expires_and_is_closed() {
    bounded(async {
        let server = Server::start_with(fast_ticks()).await;
        let mut conn = RawConn::connect(&server.addr(), 1000).await;
        let path = unique_path("silent");
        create_ephemeral_raw(&mut conn, &path).await;
        assert!(
            conn.closed_within(Duration::from_secs(15)).await,
            "server closes an expired session's connection"
        );
        let mut other = RawConn::connect(&server.addr(), 10_000).await;
        assert_eq!(owner_of(&mut other, &path).await, None);
        other.close_session().await;
    })
    .await;
}

#[tokio::test]
async fn pings_keep_a_session_alive() {
    bounded(async {
        let server = Server::start_with(fast_ticks()).await;
        let mut conn = RawConn::connect(&server.addr(), 1000).await;
        let path = unique_path("ping");
        create_ephemeral_raw(&mut conn, &path).await;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(conn.ping().await.is_empty());
        }
        assert_eq!(owner_of(&mut conn, &path).await, Some(conn.session_id));
        conn.close_session().await;
    })
    .await;
}

/// closeSession removes the session's ephemerals before its reply.
#[tokio::test]
async fn close_session_deletes_ephemerals_at_once() {
    bounded(async {
        let server = Server::start().await;
        let mut watcher = RawConn::connect(&server.addr(), 20_000).await;
        let base = unique_path("close");
        assert_eq!(
            watcher
                .request(op::CREATE, &raw::create_body(&base, b"", 0))
                .await
                .err,
            err::OK
        );
        let mut conn = RawConn::connect(&server.addr(), 20_000).await;
        let (sid, password) = (conn.session_id, conn.password.clone());
        let a = format!("{base}/a");
        let b = format!("{base}/b");
        create_ephemeral_raw(&mut conn, &a).await;
        create_ephemeral_raw(&mut conn, &b).await;
        assert_eq!(
            watcher
                .request(op::EXISTS, &raw::path_watch_body(&a, true))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            watcher
                .request(op::GET_CHILDREN, &raw::path_watch_body(&base, true))
                .await
                .err,
            err::OK
        );

        conn.close_session().await;
        let (mut events, reply) = watcher
            .call(op::GET_CHILDREN, &raw::path_watch_body(&base, false))
            .await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(
            Reader::new(&reply.body).strings(),
            Vec::<String>::new(),
            "ephemerals gone before the reply"
        );
        events.sort_by_key(|e| e.kind);
        let expected = vec![
            Event {
                kind: event::NODE_DELETED,
                state: event::STATE_SYNC_CONNECTED,
                path: a.clone(),
            },
            Event {
                kind: event::NODE_CHILDREN_CHANGED,
                state: event::STATE_SYNC_CONNECTED,
                path: base.clone(),
            },
        ];
        assert_eq!(events, expected);

        let refused = RawConn::resume(&server.addr(), 20_000, sid, &password).await;
        assert_eq!(refused.session_id, 0, "a closed session cannot be resumed");
        watcher.close_session().await;

        // The crate closes its session when the last handle drops.
        let client = server.client().await;
        let path = unique_path("close-crate");
        client
            .create(
                &path,
                b"",
                &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
            )
            .await
            .expect("create");
        let observer = server.client().await;
        let (_, w) = observer.check_and_watch_stat(&path).await.expect("watch");
        drop(client);
        let got = within(5, "NodeDeleted after close", w.changed()).await;
        assert_eq!(got.event_type, EventType::NodeDeleted);
    })
    .await;
}

/// Requests of one session are answered in order, xids echoed.
#[tokio::test]
async fn replies_follow_request_order() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 20_000).await;
        let base = unique_path("pipeline");
        let mut xids = Vec::new();
        xids.push(
            conn.send(op::CREATE, &raw::create_body(&base, b"", 0))
                .await,
        );
        for i in 0..50 {
            let body = if i % 2 == 0 {
                raw::create_body(&format!("{base}/n{i}"), b"", 0)
            } else {
                raw::path_watch_body(&format!("{base}/n{}", i - 1), false)
            };
            let op = if i % 2 == 0 { op::CREATE } else { op::EXISTS };
            xids.push(conn.send(op, &body).await);
        }
        for expected in xids {
            match conn.next_frame(Duration::from_secs(15)).await {
                Some(raw::Frame::Reply(r)) => {
                    assert_eq!(r.xid, expected);
                    assert_eq!(r.err, err::OK, "xid {expected}");
                }
                other => panic!("expected reply {expected}, got {other:?}"),
            }
        }
        conn.close_session().await;
    })
    .await;
}

/// Opens a session, retrying while the server still counts connections that are closing.
async fn connect_when_slot_free(server: &Server) -> RawConn {
    within(10, "a connection slot frees up", async {
        loop {
            if let Some(conn) = RawConn::try_resume(&server.addr(), 20_000, 0, &[0; 16]).await {
                return conn;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

#[tokio::test]
async fn max_client_connections_per_address() {
    bounded(async {
        let server = Server::start_with(Options {
            max_client_cnxns: Some(2),
            ..Options::default()
        })
        .await;
        // The readiness probe's connection may still be closing: wait for the slots.
        let first = connect_when_slot_free(&server).await;
        let second = connect_when_slot_free(&server).await;
        let third = RawConn::try_resume(&server.addr(), 20_000, 0, &[0; 16]).await;
        assert!(
            third.is_none(),
            "a third connection from 127.0.0.1 is closed without a session"
        );
        first.close_session().await;
        second.close_session().await;
        let fourth = connect_when_slot_free(&server).await;
        assert_ne!(fourth.session_id, 0);
    })
    .await;
}
