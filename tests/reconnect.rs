//! Sessions moving between connections: setWatches / setWatches2 after a resume deliver the events
//! missed while disconnected exactly as ZooKeeper does, a resume on a second connection takes the
//! session over from the first, and an expiring session's ephemerals fire other sessions' watches
//! before any reply that shows them gone.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::raw::{self, err, event, op, Event, Frame, RawConn, Reader};
use common::{bounded, unique_path, within, Options, Server};

/// The xid Java and C clients use for setWatches (ClientCnxn.SET_WATCHES_XID).
const SET_WATCHES_XID: i32 = -8;

fn ev(kind: i32, path: &str) -> Event {
    Event {
        kind,
        state: event::STATE_SYNC_CONNECTED,
        path: path.to_string(),
    }
}

/// A session on the wire that remembers the highest zxid its replies carried (what a client sends
/// as `lastZxidSeen` and setWatches' `relativeZxid`).
struct Tracked {
    conn: RawConn,
    last_zxid: i64,
}

impl Tracked {
    async fn call(&mut self, opcode: i32, body: &[u8]) -> (Vec<Event>, raw::Reply) {
        let (events, reply) = self.conn.call(opcode, body).await;
        self.last_zxid = self.last_zxid.max(reply.zxid);
        (events, reply)
    }

    /// A request expected to succeed with no event before its reply.
    async fn ok(&mut self, opcode: i32, body: &[u8]) {
        let (events, reply) = self.call(opcode, body).await;
        assert_eq!(reply.err, err::OK, "op {opcode}");
        assert!(events.is_empty(), "unexpected events {events:?}");
    }

    /// A read that also reports the events queued for this session before its reply.
    async fn events_so_far(&mut self) -> Vec<Event> {
        let (events, reply) = self
            .call(op::EXISTS, &raw::path_watch_body("/", false))
            .await;
        assert_eq!(reply.err, err::OK);
        events
    }
}

/// Another session's write, expected to succeed.
async fn write(conn: &mut RawConn, opcode: i32, body: &[u8]) {
    let reply = conn.request(opcode, body).await;
    assert_eq!(reply.err, err::OK, "writer op {opcode}");
}

/// Sends setWatches (or setWatches2) under the clients' reserved xid and returns the events that
/// arrived before its reply.
async fn set_watches(conn: &mut RawConn, opcode: i32, body: &[u8]) -> Vec<Event> {
    conn.send_with_xid(SET_WATCHES_XID, opcode, body).await;
    let mut events = Vec::new();
    loop {
        match conn.next_frame(Duration::from_secs(15)).await {
            Some(Frame::Event(e)) => events.push(e),
            Some(Frame::Reply(r)) if r.xid == SET_WATCHES_XID => {
                assert_eq!(r.err, err::OK, "setWatches reply");
                assert!(r.body.is_empty(), "setWatches has no reply body");
                return events;
            }
            other => panic!("expected the setWatches reply, got {other:?}"),
        }
    }
}

/// Data, exist and child watches set before a disconnect are re-sent with setWatches and the
/// last zxid seen: each path changed meanwhile gets exactly the event ZooKeeper's
/// DataTree.setWatches sends (data watches first, then exist, then child, each in list order);
/// unchanged paths are watched again; watches not re-sent are gone.
#[tokio::test]
async fn set_watches_on_resume_delivers_missed_events() {
    bounded(async {
        let server = Server::start().await;
        let mut b = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("setwatches");
        write(&mut b, op::CREATE, &raw::create_body(&base, b"", 0)).await;
        let p = |name: &str| format!("{base}/{name}");
        for name in [
            "d_changed",
            "d_deleted",
            "d_same",
            "d_forgotten",
            "e_existing",
            "c_changed",
            "c_deleted",
            "c_same",
        ] {
            write(&mut b, op::CREATE, &raw::create_body(&p(name), b"0", 0)).await;
        }

        let conn = RawConn::connect(&server.addr(), 30_000).await;
        let mut a = Tracked { conn, last_zxid: 0 };
        for name in ["d_changed", "d_deleted", "d_same", "d_forgotten"] {
            a.ok(op::GET_DATA, &raw::path_watch_body(&p(name), true))
                .await;
        }
        // exists on an absent node leaves an exist watch; on a present one a data watch.
        for name in ["e_created", "e_absent"] {
            let (events, reply) = a
                .call(op::EXISTS, &raw::path_watch_body(&p(name), true))
                .await;
            assert_eq!((reply.err, events.len()), (err::NO_NODE, 0));
        }
        a.ok(op::EXISTS, &raw::path_watch_body(&p("e_existing"), true))
            .await;
        for name in ["c_changed", "c_deleted", "c_same"] {
            a.ok(op::GET_CHILDREN, &raw::path_watch_body(&p(name), true))
                .await;
        }
        let (sid, password, last_zxid) = (a.conn.session_id, a.conn.password.clone(), a.last_zxid);
        drop(a); // the connection goes, without closeSession: the session stays

        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&p("d_changed"), b"1", -1),
        )
        .await;
        write(
            &mut b,
            op::DELETE,
            &raw::path_version_body(&p("d_deleted"), -1),
        )
        .await;
        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&p("d_forgotten"), b"1", -1),
        )
        .await;
        write(
            &mut b,
            op::CREATE,
            &raw::create_body(&p("e_created"), b"", 0),
        )
        .await;
        write(
            &mut b,
            op::CREATE,
            &raw::create_body(&p("c_changed/kid"), b"", 0),
        )
        .await;
        write(
            &mut b,
            op::DELETE,
            &raw::path_version_body(&p("c_deleted"), -1),
        )
        .await;
        // A data change does not move pzxid: no child event for c_same.
        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&p("c_same"), b"1", -1),
        )
        .await;

        let conn = RawConn::resume(&server.addr(), 30_000, sid, &password).await;
        assert_eq!(conn.session_id, sid, "the session resumes");
        let mut a = Tracked { conn, last_zxid };
        let body = raw::set_watches_body(
            last_zxid,
            &[&p("d_changed"), &p("d_deleted"), &p("d_same")],
            &[&p("e_created"), &p("e_absent"), &p("e_existing")],
            &[&p("c_changed"), &p("c_deleted"), &p("c_same")],
            None,
        );
        let missed = set_watches(&mut a.conn, op::SET_WATCHES, &body).await;
        assert_eq!(
            missed,
            vec![
                ev(event::NODE_DATA_CHANGED, &p("d_changed")),
                ev(event::NODE_DELETED, &p("d_deleted")),
                ev(event::NODE_CREATED, &p("e_created")),
                // ZooKeeper answers an exist watch on a present node with NodeCreated, changed or not.
                ev(event::NODE_CREATED, &p("e_existing")),
                ev(event::NODE_CHILDREN_CHANGED, &p("c_changed")),
                ev(event::NODE_DELETED, &p("c_deleted")),
            ],
            "events for what changed after zxid {last_zxid:#x}"
        );
        assert!(a.events_so_far().await.is_empty(), "nothing more");

        // The watches that fired are spent; the others are armed again; d_forgotten's is gone.
        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&p("d_changed"), b"2", -1),
        )
        .await;
        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&p("d_forgotten"), b"2", -1),
        )
        .await;
        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&p("e_existing"), b"2", -1),
        )
        .await;
        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&p("d_same"), b"2", -1),
        )
        .await;
        write(
            &mut b,
            op::CREATE,
            &raw::create_body(&p("e_absent"), b"", 0),
        )
        .await;
        write(
            &mut b,
            op::CREATE,
            &raw::create_body(&p("c_same/kid"), b"", 0),
        )
        .await;
        write(
            &mut b,
            op::CREATE,
            &raw::create_body(&p("c_changed/kid2"), b"", 0),
        )
        .await;
        assert_eq!(
            a.events_so_far().await,
            vec![
                ev(event::NODE_DATA_CHANGED, &p("d_same")),
                ev(event::NODE_CREATED, &p("e_absent")),
                ev(event::NODE_CHILDREN_CHANGED, &p("c_same")),
            ]
        );
        a.conn.close_session().await;
    })
    .await;
}

/// A relativeZxid older than the changes makes unchanged-since-then nodes fire too (the server
/// compares mzxid / pzxid with it, nothing else); a zxid from the future arms every watch.
#[tokio::test]
async fn set_watches_compares_with_the_relative_zxid() {
    bounded(async {
        let server = Server::start().await;
        let mut b = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("relzxid");
        write(&mut b, op::CREATE, &raw::create_body(&base, b"", 0)).await;
        let node = format!("{base}/n");
        write(&mut b, op::CREATE, &raw::create_body(&node, b"", 0)).await;
        write(
            &mut b,
            op::CREATE,
            &raw::create_body(&format!("{node}/kid"), b"", 0),
        )
        .await;

        let mut a = RawConn::connect(&server.addr(), 30_000).await;
        let old = set_watches(
            &mut a,
            op::SET_WATCHES,
            &raw::set_watches_body(0, &[&node], &[], &[&node], None),
        )
        .await;
        assert_eq!(
            old,
            vec![
                ev(event::NODE_DATA_CHANGED, &node),
                ev(event::NODE_CHILDREN_CHANGED, &node),
            ]
        );
        let future = set_watches(
            &mut a,
            op::SET_WATCHES,
            &raw::set_watches_body(i64::MAX, &[&node], &[], &[&node], None),
        )
        .await;
        assert!(future.is_empty(), "{future:?}");
        write(
            &mut b,
            op::DELETE,
            &raw::path_version_body(&format!("{node}/kid"), -1),
        )
        .await;
        let (events, reply) = a.call(op::EXISTS, &raw::path_watch_body("/", false)).await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(events, vec![ev(event::NODE_CHILDREN_CHANGED, &node)]);
        a.close_session().await;
    })
    .await;
}

/// setWatches2 also re-registers persistent and persistent-recursive watches: they report nothing
/// missed (ZooKeeper only adds them) and keep firing for every later change.
#[tokio::test]
async fn set_watches2_restores_persistent_watches() {
    bounded(async {
        let server = Server::start().await;
        let mut b = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("setwatches2");
        let pers = format!("{base}/pers");
        let rec = format!("{base}/rec");
        let one = format!("{base}/one");
        for path in [&base, &pers, &rec, &one] {
            write(&mut b, op::CREATE, &raw::create_body(path, b"", 0)).await;
        }

        let conn = RawConn::connect(&server.addr(), 30_000).await;
        let mut a = Tracked { conn, last_zxid: 0 };
        a.ok(op::ADD_WATCH, &raw::path_int_body(&pers, 0)).await;
        a.ok(op::ADD_WATCH, &raw::path_int_body(&rec, 1)).await;
        a.ok(op::GET_DATA, &raw::path_watch_body(&one, true)).await;
        let (sid, password, last_zxid) = (a.conn.session_id, a.conn.password.clone(), a.last_zxid);
        drop(a);

        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&pers, b"missed", -1),
        )
        .await;
        write(
            &mut b,
            op::CREATE,
            &raw::create_body(&format!("{rec}/missed"), b"", 0),
        )
        .await;
        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&one, b"missed", -1),
        )
        .await;

        let conn = RawConn::resume(&server.addr(), 30_000, sid, &password).await;
        assert_eq!(conn.session_id, sid);
        let mut a = Tracked { conn, last_zxid };
        let body = raw::set_watches_body(last_zxid, &[&one], &[], &[], Some((&[&pers], &[&rec])));
        let missed = set_watches(&mut a.conn, op::SET_WATCHES2, &body).await;
        assert_eq!(
            missed,
            vec![ev(event::NODE_DATA_CHANGED, &one)],
            "persistent watches report no missed events"
        );

        for round in 0..2 {
            write(&mut b, op::SET_DATA, &raw::set_data_body(&pers, b"x", -1)).await;
            let kid = format!("{pers}/k{round}");
            write(&mut b, op::CREATE, &raw::create_body(&kid, b"", 0)).await;
            // A grandchild is outside a plain persistent watch.
            write(
                &mut b,
                op::CREATE,
                &raw::create_body(&format!("{kid}/g"), b"", 0),
            )
            .await;
            let deep = format!("{rec}/r{round}");
            write(&mut b, op::CREATE, &raw::create_body(&deep, b"", 0)).await;
            write(&mut b, op::SET_DATA, &raw::set_data_body(&deep, b"y", -1)).await;
            write(&mut b, op::DELETE, &raw::path_version_body(&deep, -1)).await;
            write(&mut b, op::SET_DATA, &raw::set_data_body(&one, b"z", -1)).await;
            assert_eq!(
                a.events_so_far().await,
                vec![
                    ev(event::NODE_DATA_CHANGED, &pers),
                    ev(event::NODE_CHILDREN_CHANGED, &pers),
                    ev(event::NODE_CREATED, &deep),
                    ev(event::NODE_DATA_CHANGED, &deep),
                    ev(event::NODE_DELETED, &deep),
                ],
                "round {round}"
            );
        }
        a.conn.close_session().await;
    })
    .await;
}

/// Resuming a session on a second connection while the first is open: the server closes the
/// first, the session and its ephemerals carry on over the second, and watches registered over the
/// first connection went with it.
#[tokio::test]
async fn resume_on_a_second_connection_takes_the_session_over() {
    bounded(async {
        let server = Server::start().await;
        let mut b = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("takeover");
        write(&mut b, op::CREATE, &raw::create_body(&base, b"", 0)).await;
        let watched = format!("{base}/watched");
        write(&mut b, op::CREATE, &raw::create_body(&watched, b"", 0)).await;

        let mut first = RawConn::connect(&server.addr(), 30_000).await;
        let eph = format!("{base}/eph");
        let reply = first
            .request(op::CREATE, &raw::create_body(&eph, b"mine", 1))
            .await;
        assert_eq!(reply.err, err::OK);
        let reply = first
            .request(op::GET_DATA, &raw::path_watch_body(&watched, true))
            .await;
        assert_eq!(reply.err, err::OK);

        let mut second =
            RawConn::resume(&server.addr(), 30_000, first.session_id, &first.password).await;
        assert_eq!(
            (second.session_id, second.timeout_ms),
            (first.session_id, 30_000),
            "the second connection carries the session"
        );
        assert!(
            first.closed_within(Duration::from_secs(10)).await,
            "the server closes the session's first connection"
        );

        let reply = second
            .request(op::GET_DATA, &raw::path_watch_body(&eph, false))
            .await;
        assert_eq!(reply.err, err::OK, "the ephemeral lives on");
        let mut r = Reader::new(&reply.body);
        assert_eq!(r.buffer().as_deref(), Some(&b"mine"[..]));
        assert_eq!(r.stat().ephemeral_owner, second.session_id);

        write(
            &mut b,
            op::SET_DATA,
            &raw::set_data_body(&watched, b"1", -1),
        )
        .await;
        let (events, reply) = second
            .call(op::EXISTS, &raw::path_watch_body(&eph, false))
            .await;
        assert_eq!(reply.err, err::OK);
        assert!(
            events.is_empty(),
            "the first connection's watch is not carried over: {events:?}"
        );

        let eph2 = format!("{base}/eph2");
        let reply = second
            .request(op::CREATE, &raw::create_body(&eph2, b"", 1))
            .await;
        assert_eq!(
            reply.err,
            err::OK,
            "the session works on the new connection"
        );
        let reply = second
            .request(op::GET_EPHEMERALS, &raw::path_body(&base))
            .await;
        assert_eq!(reply.err, err::OK);
        let mut owned = Reader::new(&reply.body).strings();
        owned.sort();
        assert_eq!(owned, vec![eph.clone(), eph2.clone()]);

        second.close_session().await;
        for path in [&eph, &eph2] {
            let reply = b
                .request(op::EXISTS, &raw::path_watch_body(path, false))
                .await;
            assert_eq!(reply.err, err::NO_NODE, "{path} goes with closeSession");
        }
    })
    .await;
}

/// An expiring session's ephemerals are deleted in one step: another session's data, exist and
/// child watches on them fire, and all their events arrive before the first reply of that session
/// showing any of them gone.
#[tokio::test]
async fn expiry_fires_watches_before_replies_show_it() {
    bounded(async {
        let server = Server::start_with(Options {
            tick_time_ms: 500,
            ..Options::default()
        })
        .await;
        let mut observer = RawConn::connect(&server.addr(), 10_000).await;
        let base = unique_path("expiry-order");
        write(&mut observer, op::CREATE, &raw::create_body(&base, b"", 0)).await;
        let keeper = format!("{base}/keeper");
        write(
            &mut observer,
            op::CREATE,
            &raw::create_body(&keeper, b"", 0),
        )
        .await;

        let mut owner = RawConn::connect(&server.addr(), 1000).await;
        assert_eq!(owner.timeout_ms, 1000);
        let (e1, e2) = (format!("{base}/e1"), format!("{base}/e2"));
        for path in [&e1, &e2] {
            let reply = owner
                .request(op::CREATE, &raw::create_body(path, b"", 1))
                .await;
            assert_eq!(reply.err, err::OK);
        }
        for (opcode, path) in [
            (op::GET_DATA, &e1),
            (op::EXISTS, &e2),
            (op::GET_CHILDREN, &base),
        ] {
            let reply = observer
                .request(opcode, &raw::path_watch_body(path, true))
                .await;
            assert_eq!(reply.err, err::OK);
        }
        let (sid, password) = (owner.session_id, owner.password.clone());
        drop(owner);

        let events = within(20, "the owner's session expires", async {
            let mut seen = Vec::new();
            loop {
                let (events, reply) = observer
                    .call(op::GET_CHILDREN, &raw::path_watch_body(&base, false))
                    .await;
                seen.extend(events);
                assert_eq!(reply.err, err::OK);
                let children = Reader::new(&reply.body).strings();
                if children.len() < 3 {
                    assert_eq!(children, vec!["keeper"], "both ephemerals go at once");
                    return seen;
                }
                assert!(seen.is_empty(), "events before the expiry: {seen:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let got: BTreeSet<(i32, String)> =
            events.iter().map(|e| (e.kind, e.path.clone())).collect();
        let want: BTreeSet<(i32, String)> = [
            (event::NODE_DELETED, e1.clone()),
            (event::NODE_DELETED, e2.clone()),
            (event::NODE_CHILDREN_CHANGED, base.clone()),
        ]
        .into();
        assert_eq!(got, want, "all watch events precede the reply: {events:?}");
        assert_eq!(events.len(), 3, "one event per watch: {events:?}");
        assert!(events
            .iter()
            .all(|e| e.state == event::STATE_SYNC_CONNECTED));

        let refused = RawConn::resume(&server.addr(), 1000, sid, &password).await;
        assert_eq!(refused.session_id, 0, "the expired session is gone");
        let reply = observer
            .request(op::EXISTS, &raw::path_watch_body(&keeper, false))
            .await;
        assert_eq!(reply.err, err::OK);
    })
    .await;
}
