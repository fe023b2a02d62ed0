//! Watches against a real server process: one-shot data, exists and child watches, persistent and
//! persistent-recursive watches, removal, and delivery order relative to replies.

mod common;

use std::time::Duration;

use common::raw::{self, err, event, op, Event, RawConn};
use common::{bounded, create_persistent, unique_path, within, Server};
use futures::FutureExt;
use zk::{AddWatchMode, EventType, SessionState, WatchedEvent};
use zookeeper_client as zk;

/// How long to listen for events that must not come.
const QUIET: Duration = Duration::from_millis(700);

fn ev(kind: i32, path: &str) -> Event {
    Event {
        kind,
        state: event::STATE_SYNC_CONNECTED,
        path: path.to_string(),
    }
}

fn assert_event(got: &WatchedEvent, kind: EventType, path: &str) {
    assert_eq!(got.event_type, kind, "{got:?}");
    assert_eq!(got.path, path, "{got:?}");
    assert_eq!(got.session_state, SessionState::SyncConnected, "{got:?}");
}

async fn raw_conn(server: &Server) -> RawConn {
    RawConn::connect(&server.addr(), 30_000).await
}

#[tokio::test]
async fn data_watch_fires_once_on_change() {
    bounded(async {
        let server = Server::start().await;
        let watcher = server.client().await;
        let writer = server.client().await;
        let path = unique_path("dw");
        create_persistent(&writer, &path, b"0").await;

        let (data, _, w) = watcher.get_and_watch_data(&path).await.expect("watch");
        assert_eq!(data, b"0");
        writer.set_data(&path, b"1", None).await.expect("set");
        let got = within(10, "NodeDataChanged", w.changed()).await;
        assert_event(&got, EventType::NodeDataChanged, &path);

        // On the wire: one notification for two changes, none for a failed change.
        let mut conn = raw_conn(&server).await;
        let reply = conn
            .request(op::GET_DATA, &raw::path_watch_body(&path, true))
            .await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(
            writer.set_data(&path, b"x", Some(99)).await.unwrap_err(),
            zk::Error::BadVersion
        );
        assert!(
            conn.events_within(QUIET).await.is_empty(),
            "a failed setData fires nothing"
        );
        writer.set_data(&path, b"2", None).await.expect("set");
        writer.set_data(&path, b"3", None).await.expect("set");
        let events = conn.events_within(QUIET).await;
        assert_eq!(events, vec![ev(event::NODE_DATA_CHANGED, &path)]);
    })
    .await;
}

#[tokio::test]
async fn data_watch_fires_node_deleted() {
    bounded(async {
        let server = Server::start().await;
        let watcher = server.client().await;
        let path = unique_path("dw-del");
        create_persistent(&watcher, &path, b"").await;
        let (_, _, w) = watcher.get_and_watch_data(&path).await.expect("watch");
        let writer = server.client().await;
        writer.delete(&path, None).await.expect("delete");
        assert_event(
            &within(10, "NodeDeleted", w.changed()).await,
            EventType::NodeDeleted,
            &path,
        );

        // getData on a missing node fails and leaves no watch behind.
        let mut conn = raw_conn(&server).await;
        let reply = conn
            .request(op::GET_DATA, &raw::path_watch_body(&path, true))
            .await;
        assert_eq!(reply.err, err::NO_NODE);
        create_persistent(&writer, &path, b"").await;
        assert!(conn.events_within(QUIET).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn exists_watch_fires_created_then_data_and_deleted() {
    bounded(async {
        let server = Server::start().await;
        let watcher = server.client().await;
        let writer = server.client().await;
        let path = unique_path("ew");

        let (stat, w) = watcher
            .check_and_watch_stat(&path)
            .await
            .expect("exists watch");
        assert_eq!(stat, None);
        create_persistent(&writer, &path, b"").await;
        assert_event(
            &within(10, "NodeCreated", w.changed()).await,
            EventType::NodeCreated,
            &path,
        );

        let (stat, w) = watcher
            .check_and_watch_stat(&path)
            .await
            .expect("exists watch");
        assert!(stat.is_some());
        writer.set_data(&path, b"d", None).await.expect("set");
        assert_event(
            &within(10, "NodeDataChanged", w.changed()).await,
            EventType::NodeDataChanged,
            &path,
        );

        let (_, w) = watcher
            .check_and_watch_stat(&path)
            .await
            .expect("exists watch");
        writer.delete(&path, None).await.expect("delete");
        assert_event(
            &within(10, "NodeDeleted", w.changed()).await,
            EventType::NodeDeleted,
            &path,
        );

        // Created and deleted again: the one-shot exists watch reports only the creation.
        let mut conn = raw_conn(&server).await;
        let reply = conn
            .request(op::EXISTS, &raw::path_watch_body(&path, true))
            .await;
        assert_eq!(reply.err, err::NO_NODE);
        create_persistent(&writer, &path, b"").await;
        writer.delete(&path, None).await.expect("delete");
        assert_eq!(
            conn.events_within(QUIET).await,
            vec![ev(event::NODE_CREATED, &path)]
        );
    })
    .await;
}

#[tokio::test]
async fn child_watch_fires_on_membership_changes_only() {
    bounded(async {
        let server = Server::start().await;
        let watcher = server.client().await;
        let writer = server.client().await;
        let path = unique_path("cw");
        create_persistent(&writer, &path, b"").await;
        let kid = format!("{path}/kid");

        let (_, w) = watcher
            .list_and_watch_children(&path)
            .await
            .expect("child watch");
        create_persistent(&writer, &kid, b"").await;
        assert_event(
            &within(10, "create", w.changed()).await,
            EventType::NodeChildrenChanged,
            &path,
        );

        let (_, _, w) = watcher
            .get_and_watch_children(&path)
            .await
            .expect("child watch 2");
        writer.delete(&kid, None).await.expect("delete kid");
        assert_event(
            &within(10, "delete", w.changed()).await,
            EventType::NodeChildrenChanged,
            &path,
        );

        let (_, w) = watcher
            .list_and_watch_children(&path)
            .await
            .expect("child watch");
        writer.delete(&path, None).await.expect("delete parent");
        assert_event(
            &within(10, "parent deleted", w.changed()).await,
            EventType::NodeDeleted,
            &path,
        );

        // Data changes of the parent or a child, and grandchildren, do not fire a child watch.
        create_persistent(&writer, &path, b"").await;
        create_persistent(&writer, &kid, b"").await;
        let mut conn = raw_conn(&server).await;
        assert_eq!(
            conn.request(op::GET_CHILDREN, &raw::path_watch_body(&path, true))
                .await
                .err,
            err::OK
        );
        writer
            .set_data(&path, b"p", None)
            .await
            .expect("set parent");
        writer.set_data(&kid, b"k", None).await.expect("set kid");
        create_persistent(&writer, &format!("{kid}/grandkid"), b"").await;
        assert!(conn.events_within(QUIET).await.is_empty());
        create_persistent(&writer, &format!("{path}/kid2"), b"").await;
        writer
            .delete(&format!("{path}/kid2"), None)
            .await
            .expect("delete kid2");
        assert_eq!(
            conn.events_within(QUIET).await,
            vec![ev(event::NODE_CHILDREN_CHANGED, &path)]
        );
    })
    .await;
}

/// A node deleted while one connection holds both a data and a child watch on it yields one
/// NodeDeleted for that connection, and the parent's child watch fires too.
#[tokio::test]
async fn delete_with_data_and_child_watch_notifies_once() {
    bounded(async {
        let server = Server::start().await;
        let writer = server.client().await;
        let parent = unique_path("both");
        let node = format!("{parent}/n");
        create_persistent(&writer, &parent, b"").await;
        create_persistent(&writer, &node, b"").await;
        let mut conn = raw_conn(&server).await;
        assert_eq!(
            conn.request(op::GET_DATA, &raw::path_watch_body(&node, true))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::GET_CHILDREN2, &raw::path_watch_body(&node, true))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::EXISTS, &raw::path_watch_body(&node, true))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::GET_CHILDREN, &raw::path_watch_body(&parent, true))
                .await
                .err,
            err::OK
        );
        writer.delete(&node, None).await.expect("delete");
        let mut events = conn.events_within(QUIET).await;
        events.sort_by_key(|e| e.kind);
        assert_eq!(
            events,
            vec![
                ev(event::NODE_DELETED, &node),
                ev(event::NODE_CHILDREN_CHANGED, &parent)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn every_watching_session_is_notified() {
    bounded(async {
        let server = Server::start().await;
        let writer = server.client().await;
        let path = unique_path("many");
        create_persistent(&writer, &path, b"").await;
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut conn = raw_conn(&server).await;
            assert_eq!(
                conn.request(op::GET_DATA, &raw::path_watch_body(&path, true))
                    .await
                    .err,
                err::OK
            );
            conns.push(conn);
        }
        // The writer itself watching gets its own event as well.
        let (_, _, own) = writer.get_and_watch_data(&path).await.expect("watch");
        writer.set_data(&path, b"x", None).await.expect("set");
        assert_event(
            &within(10, "own watch", own.changed()).await,
            EventType::NodeDataChanged,
            &path,
        );
        for conn in &mut conns {
            assert_eq!(
                conn.events_within(QUIET).await,
                vec![ev(event::NODE_DATA_CHANGED, &path)]
            );
        }
    })
    .await;
}

#[tokio::test]
async fn multi_fires_the_watches_of_each_op() {
    bounded(async {
        let server = Server::start().await;
        let writer = server.client().await;
        let base = unique_path("multi-w");
        let a = format!("{base}/a");
        let b = format!("{base}/b");
        create_persistent(&writer, &base, b"").await;
        create_persistent(&writer, &a, b"").await;
        let mut conn = raw_conn(&server).await;
        assert_eq!(
            conn.request(op::GET_DATA, &raw::path_watch_body(&a, true))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::EXISTS, &raw::path_watch_body(&b, true))
                .await
                .err,
            err::NO_NODE
        );
        assert_eq!(
            conn.request(op::GET_CHILDREN, &raw::path_watch_body(&base, true))
                .await
                .err,
            err::OK
        );

        // A failed multi fires nothing.
        let anyone = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let mut m = writer.new_multi_writer();
        m.add_set_data(&a, b"1", None).expect("set");
        m.add_create(&b, b"", &anyone).expect("create");
        m.add_check_version(&a, 42).expect("check");
        assert!(m.commit().await.is_err());
        assert!(conn.events_within(QUIET).await.is_empty());

        let mut m = writer.new_multi_writer();
        m.add_set_data(&a, b"1", None).expect("set");
        m.add_create(&b, b"", &anyone).expect("create");
        m.commit().await.expect("multi");
        let mut events = conn.events_within(QUIET).await;
        events.sort_by_key(|e| e.kind);
        assert_eq!(
            events,
            vec![
                ev(event::NODE_CREATED, &b),
                ev(event::NODE_DATA_CHANGED, &a),
                ev(event::NODE_CHILDREN_CHANGED, &base)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn persistent_watch_keeps_firing_for_node_and_children() {
    bounded(async {
        let server = Server::start().await;
        let watcher = server.client().await;
        let writer = server.client().await;
        let path = unique_path("pw");
        let kid = format!("{path}/kid");
        let mut w = watcher
            .watch(&path, AddWatchMode::Persistent)
            .await
            .expect("addWatch");

        create_persistent(&writer, &path, b"").await;
        assert_event(
            &within(10, "created", w.changed()).await,
            EventType::NodeCreated,
            &path,
        );
        for i in 0..3 {
            writer
                .set_data(&path, format!("{i}").as_bytes(), None)
                .await
                .expect("set");
            assert_event(
                &within(10, "data", w.changed()).await,
                EventType::NodeDataChanged,
                &path,
            );
        }
        create_persistent(&writer, &kid, b"").await;
        assert_event(
            &within(10, "child", w.changed()).await,
            EventType::NodeChildrenChanged,
            &path,
        );
        // Neither the child's data nor grandchildren concern a non-recursive persistent watch.
        writer.set_data(&kid, b"k", None).await.expect("set kid");
        create_persistent(&writer, &format!("{kid}/g"), b"").await;
        writer
            .delete(&format!("{kid}/g"), None)
            .await
            .expect("delete g");
        writer.delete(&kid, None).await.expect("delete kid");
        assert_event(
            &within(10, "child gone", w.changed()).await,
            EventType::NodeChildrenChanged,
            &path,
        );
        writer.delete(&path, None).await.expect("delete");
        assert_event(
            &within(10, "deleted", w.changed()).await,
            EventType::NodeDeleted,
            &path,
        );
        create_persistent(&writer, &path, b"").await;
        assert_event(
            &within(10, "created again", w.changed()).await,
            EventType::NodeCreated,
            &path,
        );
        assert!(w.changed().now_or_never().is_none(), "no extra events");
    })
    .await;
}

#[tokio::test]
async fn persistent_recursive_watch_covers_the_subtree_without_child_events() {
    bounded(async {
        let server = Server::start().await;
        let writer = server.client().await;
        let path = unique_path("prw");
        create_persistent(&writer, &path, b"").await;
        let mut conn = raw_conn(&server).await;
        let reply = conn
            .request(op::ADD_WATCH, &raw::path_int_body(&path, 1))
            .await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(
            reply.body,
            vec![0, 0, 0, 0],
            "addWatch answers an ErrorResponse with code 0"
        );

        let a = format!("{path}/a");
        let ab = format!("{a}/b");
        create_persistent(&writer, &a, b"").await;
        create_persistent(&writer, &ab, b"").await;
        writer.set_data(&ab, b"1", None).await.expect("set");
        writer.set_data(&ab, b"2", None).await.expect("set");
        writer.delete(&ab, None).await.expect("delete");
        writer
            .set_data(&path, b"root", None)
            .await
            .expect("set watched node");
        // A sibling outside the subtree sharing the name prefix is not covered.
        create_persistent(&writer, &format!("{path}x"), b"").await;
        let events = conn.events_within(QUIET).await;
        assert_eq!(
            events,
            vec![
                ev(event::NODE_CREATED, &a),
                ev(event::NODE_CREATED, &ab),
                ev(event::NODE_DATA_CHANGED, &ab),
                ev(event::NODE_DATA_CHANGED, &ab),
                ev(event::NODE_DELETED, &ab),
                ev(event::NODE_DATA_CHANGED, &path),
            ]
        );

        // Through the crate as well.
        let watcher = server.client().await;
        let mut w = watcher
            .watch(&path, AddWatchMode::PersistentRecursive)
            .await
            .expect("addWatch");
        create_persistent(&writer, &ab, b"").await;
        assert_event(
            &within(10, "created", w.changed()).await,
            EventType::NodeCreated,
            &ab,
        );
        writer.delete(&ab, None).await.expect("delete");
        assert_event(
            &within(10, "deleted", w.changed()).await,
            EventType::NodeDeleted,
            &ab,
        );
    })
    .await;
}

#[tokio::test]
async fn remove_and_check_watches() {
    bounded(async {
        let server = Server::start().await;
        let writer = server.client().await;
        let path = unique_path("rw");
        create_persistent(&writer, &path, b"").await;
        let mut conn = raw_conn(&server).await;

        // Nothing registered yet.
        for kind in [1, 2, 3] {
            let reply = conn
                .request(op::CHECK_WATCHES, &raw::path_int_body(&path, kind))
                .await;
            assert_eq!(reply.err, err::NO_WATCHER, "checkWatches type {kind}");
            let reply = conn
                .request(op::REMOVE_WATCHES, &raw::path_int_body(&path, kind))
                .await;
            assert_eq!(reply.err, err::NO_WATCHER, "removeWatches type {kind}");
        }

        assert_eq!(
            conn.request(op::GET_DATA, &raw::path_watch_body(&path, true))
                .await
                .err,
            err::OK
        );
        let reply = conn
            .request(op::CHECK_WATCHES, &raw::path_int_body(&path, 1))
            .await;
        assert_eq!(reply.err, err::NO_WATCHER, "no child watch");
        assert_eq!(
            conn.request(op::CHECK_WATCHES, &raw::path_int_body(&path, 2))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::CHECK_WATCHES, &raw::path_int_body(&path, 3))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::REMOVE_WATCHES, &raw::path_int_body(&path, 1))
                .await
                .err,
            err::NO_WATCHER
        );
        assert_eq!(
            conn.request(op::REMOVE_WATCHES, &raw::path_int_body(&path, 2))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::REMOVE_WATCHES, &raw::path_int_body(&path, 2))
                .await
                .err,
            err::NO_WATCHER
        );
        writer.set_data(&path, b"x", None).await.expect("set");
        assert!(
            conn.events_within(QUIET).await.is_empty(),
            "removed data watch stays silent"
        );

        // "Any" removes data and child watches together; the node's other watchers are unaffected.
        let other = server.client().await;
        let (_, _, kept) = other.get_and_watch_data(&path).await.expect("other watch");
        assert_eq!(
            conn.request(op::GET_DATA, &raw::path_watch_body(&path, true))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::GET_CHILDREN, &raw::path_watch_body(&path, true))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::REMOVE_WATCHES, &raw::path_int_body(&path, 3))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::REMOVE_WATCHES, &raw::path_int_body(&path, 3))
                .await
                .err,
            err::NO_WATCHER
        );
        assert_eq!(
            conn.request(op::CHECK_WATCHES, &raw::path_int_body(&path, 1))
                .await
                .err,
            err::NO_WATCHER
        );
        // ZooKeeper 3.8 quirk: checkWatches for data watches asks whether *any* connection watches the
        // path's data, so the other session's watch answers for this one.
        assert_eq!(
            conn.request(op::CHECK_WATCHES, &raw::path_int_body(&path, 2))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::CHECK_WATCHES, &raw::path_int_body(&path, 3))
                .await
                .err,
            err::OK
        );
        create_persistent(&writer, &format!("{path}/kid"), b"").await;
        writer.set_data(&path, b"y", None).await.expect("set");
        assert!(conn.events_within(QUIET).await.is_empty());
        assert_event(
            &within(10, "kept watch", kept.changed()).await,
            EventType::NodeDataChanged,
            &path,
        );
        assert_eq!(
            conn.request(op::CHECK_WATCHES, &raw::path_int_body(&path, 3))
                .await
                .err,
            err::NO_WATCHER
        );

        // A persistent watch is removed with "any".
        assert_eq!(
            conn.request(op::ADD_WATCH, &raw::path_int_body(&path, 0))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::REMOVE_WATCHES, &raw::path_int_body(&path, 3))
                .await
                .err,
            err::OK
        );
        writer.set_data(&path, b"z", None).await.expect("set");
        assert!(conn.events_within(QUIET).await.is_empty());

        // Through the crate: removing a one-shot watcher succeeds.
        let watcher = server.client().await;
        let (_, _, w) = watcher.get_and_watch_data(&path).await.expect("watch");
        #[allow(deprecated)]
        w.remove().await.expect("removeWatches");
    })
    .await;
}

/// A watch event reaches the client before the reply of any later request that sees the change.
#[tokio::test]
async fn event_arrives_before_reply_reflecting_it() {
    bounded(async {
        let server = Server::start().await;
        let watcher = server.client().await;
        let writer = server.client().await;
        for round in 0..20 {
            let path = unique_path("order");
            create_persistent(&writer, &path, b"old").await;
            let (_, _, w) = watcher.get_and_watch_data(&path).await.expect("watch");
            writer.set_data(&path, b"new", None).await.expect("set");
            let (data, _) = watcher.get_data(&path).await.expect("read after set");
            assert_eq!(
                data, b"new",
                "round {round}: the write was acknowledged before this read"
            );
            let event = w.changed().now_or_never();
            let event =
                event.unwrap_or_else(|| panic!("round {round}: reply arrived before the event"));
            assert_event(&event, EventType::NodeDataChanged, &path);
        }

        // On the wire, for each watch kind.
        let mut conn = raw_conn(&server).await;
        let path = unique_path("order-raw");
        let kid = format!("{path}/k");
        assert_eq!(
            conn.request(op::EXISTS, &raw::path_watch_body(&path, true))
                .await
                .err,
            err::NO_NODE
        );
        create_persistent(&writer, &path, b"").await;
        let (events, reply) = conn
            .call(op::EXISTS, &raw::path_watch_body(&path, false))
            .await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(events, vec![ev(event::NODE_CREATED, &path)]);

        assert_eq!(
            conn.request(op::GET_CHILDREN, &raw::path_watch_body(&path, true))
                .await
                .err,
            err::OK
        );
        create_persistent(&writer, &kid, b"").await;
        let (events, reply) = conn
            .call(op::GET_CHILDREN, &raw::path_watch_body(&path, false))
            .await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(events, vec![ev(event::NODE_CHILDREN_CHANGED, &path)]);

        assert_eq!(
            conn.request(op::ADD_WATCH, &raw::path_int_body(&path, 1))
                .await
                .err,
            err::OK
        );
        writer.set_data(&kid, b"x", None).await.expect("set");
        let (events, reply) = conn.call(op::SYNC, &raw::path_body(&path)).await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(events, vec![ev(event::NODE_DATA_CHANGED, &kid)]);
    })
    .await;
}

/// A connection's own write: the event for its watch precedes the write's reply.
#[tokio::test]
async fn own_write_event_precedes_its_reply() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = raw_conn(&server).await;
        let path = unique_path("own");
        assert_eq!(
            conn.request(op::CREATE, &raw::create_body(&path, b"", 0))
                .await
                .err,
            err::OK
        );
        assert_eq!(
            conn.request(op::GET_DATA, &raw::path_watch_body(&path, true))
                .await
                .err,
            err::OK
        );
        let (events, reply) = conn
            .call(op::SET_DATA, &raw::set_data_body(&path, b"v", -1))
            .await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(events, vec![ev(event::NODE_DATA_CHANGED, &path)]);
        conn.close_session().await;
    })
    .await;
}
