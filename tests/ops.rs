//! Every ZooKeeper operation against a real server process, asserting ZooKeeper 3.8's replies, error
//! codes and Stat bookkeeping. Run against the reference with `VOLERY_TEST_REFERENCE=zookeeper`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::raw::{self, err, op, MultiResult, RawConn, Reader};
use common::{bounded, create_persistent, unique_path, Options, Server};
use zk::{
    Acl, Acls, AuthId, CreateMode, Error, MultiReadResult, MultiWriteError, MultiWriteResult,
    Permission,
};
use zookeeper_client as zk;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_millis() as i64
}

fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

/// A fresh persistent node's Stat: every zxid is the creating txn's, versions 0, no owner.
#[tokio::test]
async fn create_persistent_sets_every_stat_field() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let parent = unique_path("create");
        let parent_before = create_persistent(&client, &parent, b"").await;

        let before = now_ms();
        let child = format!("{parent}/child");
        let (stat, seq) = client
            .create(
                &child,
                b"hello",
                &CreateMode::Persistent.with_acls(Acls::anyone_all()),
            )
            .await
            .expect("create child");
        assert_eq!(seq.into_i64(), -1, "non-sequential create has no sequence");
        assert!(!stat.is_invalid(), "create2 returns a stat");
        assert_eq!(stat.mzxid, stat.czxid);
        assert_eq!(stat.pzxid, stat.czxid);
        assert!(stat.czxid > parent_before.czxid);
        assert_eq!(stat.mtime, stat.ctime);
        assert!(
            stat.ctime >= before - 1000 && stat.ctime <= now_ms() + 1000,
            "ctime is wall-clock ms"
        );
        assert_eq!((stat.version, stat.cversion, stat.aversion), (0, 0, 0));
        assert_eq!(stat.ephemeral_owner, 0);
        assert_eq!(stat.data_length, 5);
        assert_eq!(stat.num_children, 0);

        let (data, read_stat) = client.get_data(&child).await.expect("get_data");
        assert_eq!(data, b"hello");
        assert_eq!(read_stat, stat, "getData stat equals create2 stat");
        assert_eq!(client.check_stat(&child).await.expect("exists"), Some(stat));

        let parent_after = client
            .check_stat(&parent)
            .await
            .expect("exists")
            .expect("parent present");
        assert_eq!(parent_after.cversion, parent_before.cversion + 1);
        assert_eq!(parent_after.num_children, 1);
        assert_eq!(
            parent_after.pzxid, stat.czxid,
            "parent pzxid is the child's create zxid"
        );
        assert_eq!(
            parent_after.mzxid, parent_before.mzxid,
            "a child create does not modify the parent's data"
        );
        assert_eq!(parent_after.version, parent_before.version);
        assert_eq!(parent_after.mtime, parent_before.mtime);

        // Empty and absent data are both a zero-length value.
        let empty = format!("{parent}/empty");
        let stat = create_persistent(&client, &empty, b"").await;
        assert_eq!(stat.data_length, 0);
        assert_eq!(client.get_data(&empty).await.expect("get").0, b"");
    })
    .await;
}

#[tokio::test]
async fn create_errors() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("create-errors");
        create_persistent(&client, &base, b"x").await;
        let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());

        assert_eq!(
            client.create(&base, b"", &persistent).await.unwrap_err(),
            Error::NodeExists
        );
        let orphan = format!("{base}/missing/child");
        assert_eq!(
            client.create(&orphan, b"", &persistent).await.unwrap_err(),
            Error::NoNode
        );

        let eph = format!("{base}/eph");
        client
            .create(
                &eph,
                b"",
                &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
            )
            .await
            .expect("ephemeral");
        let under_eph = format!("{eph}/child");
        assert_eq!(
            client
                .create(&under_eph, b"", &persistent)
                .await
                .unwrap_err(),
            Error::NoChildrenForEphemerals
        );
        let seq_under_eph = format!("{eph}/s-");
        let seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
        assert_eq!(
            client.create(&seq_under_eph, b"", &seq).await.unwrap_err(),
            Error::NoChildrenForEphemerals
        );

        // Failed creates leave the parent's child version untouched.
        let stat = client
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        assert_eq!((stat.cversion, stat.num_children), (1, 1));

        // An ACL naming the `auth` scheme needs an authenticated identity.
        let creator = CreateMode::Persistent.with_acls(Acls::creator_all());
        let guarded = format!("{base}/guarded");
        assert_eq!(
            client.create(&guarded, b"", &creator).await.unwrap_err(),
            Error::InvalidAcl
        );
        let bad_scheme = [Acl::new(Permission::ALL, AuthId::new("nosuchscheme", "x"))];
        let bad = CreateMode::Persistent.with_acls(Acls::new(&bad_scheme));
        assert_eq!(
            client.create(&guarded, b"", &bad).await.unwrap_err(),
            Error::InvalidAcl
        );
        assert_eq!(client.check_stat(&guarded).await.expect("exists"), None);
    })
    .await;
}

/// Sequence suffixes count the parent's child creations so far (deletions do not count), printed with
/// 10 digits; the client-visible cversion counts creations and deletions.
#[tokio::test]
async fn sequential_suffix_follows_parent_cversion() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("seq");
        create_persistent(&client, &base, b"").await;
        let seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
        let eseq = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());

        let prefix = format!("{base}/n-");
        let (_, s0) = client.create(&prefix, b"a", &seq).await.expect("seq 0");
        let (_, s1) = client.create(&prefix, b"b", &seq).await.expect("seq 1");
        assert_eq!((s0.into_i64(), s1.into_i64()), (0, 1));
        assert_eq!(s1.to_string(), "0000000001");

        // A plain child counts as a creation; its deletion does not move the suffix.
        create_persistent(&client, &format!("{base}/plain"), b"").await;
        let before_delete = client
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        client
            .delete(&format!("{base}/plain"), None)
            .await
            .expect("delete plain");
        let after_delete = client
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        assert_eq!(
            after_delete.cversion,
            before_delete.cversion + 1,
            "a deletion is visible in cversion"
        );
        let (stat, s3) = client
            .create(&prefix, b"", &eseq)
            .await
            .expect("ephemeral seq");
        assert_eq!(s3.into_i64(), 3);
        assert_eq!(stat.ephemeral_owner, client.session_id().0);
        let parent = client
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        assert_eq!(
            (parent.cversion, parent.num_children),
            (5, 3),
            "4 creations + 1 deletion"
        );

        // Suffixes are per parent and a bare trailing slash is a valid sequential prefix.
        let other = format!("{base}/other");
        create_persistent(&client, &other, b"").await;
        let (_, s) = client
            .create(&format!("{other}/"), b"", &seq)
            .await
            .expect("trailing slash prefix");
        assert_eq!(s.into_i64(), 0);

        let children = set(client.list_children(&base).await.expect("children"));
        let expected = set(["n-0000000000", "n-0000000001", "n-0000000003", "other"]);
        assert_eq!(children, expected);
        assert_eq!(
            client.list_children(&other).await.expect("children"),
            vec!["0000000000".to_string()]
        );
        assert_eq!(
            client
                .get_data(&format!("{base}/n-0000000001"))
                .await
                .expect("get")
                .0,
            b"b"
        );
    })
    .await;
}

#[tokio::test]
async fn ephemeral_nodes_belong_to_their_session() {
    bounded(async {
        let server = Server::start().await;
        let owner = server.client().await;
        let other = server.client().await;
        let base = unique_path("eph");
        create_persistent(&owner, &base, b"").await;
        let eph = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        let (stat, _) = owner
            .create(&format!("{base}/a"), b"1", &eph)
            .await
            .expect("create a");
        assert_eq!(stat.ephemeral_owner, owner.session_id().0);
        assert_ne!(stat.ephemeral_owner, 0);
        owner
            .create(&format!("{base}/b"), b"", &eph)
            .await
            .expect("create b");
        other
            .create(&format!("{base}/c"), b"", &eph)
            .await
            .expect("create c");

        // getEphemerals lists the caller's own ephemerals under a prefix (string prefix, not subtree).
        let mine = set(owner.list_ephemerals(&base).await.expect("ephemerals"));
        assert_eq!(mine, set([format!("{base}/a"), format!("{base}/b")]));
        let all_mine = set(owner.list_ephemerals("/").await.expect("ephemerals of /"));
        assert_eq!(all_mine, mine);
        assert_eq!(
            other.list_ephemerals(&base).await.expect("ephemerals"),
            vec![format!("{base}/c")]
        );
        assert_eq!(
            owner
                .list_ephemerals(&format!("{base}/a"))
                .await
                .expect("exact path"),
            vec![format!("{base}/a")]
        );
        assert!(owner
            .list_ephemerals("/no-such-prefix-x")
            .await
            .expect("no match")
            .is_empty());
        assert_eq!(
            other
                .get_data(&format!("{base}/a"))
                .await
                .expect("readable by others")
                .0,
            b"1"
        );
    })
    .await;
}

/// Containers carry ZooKeeper's container owner marker and are removed once emptied.
#[tokio::test]
async fn container_removed_after_last_child_goes() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("container");
        let container = CreateMode::Container.with_acls(Acls::anyone_all());
        let (stat, _) = client
            .create(&base, b"c", &container)
            .await
            .expect("create container");
        // The container marker stays server-side: clients see ephemeralOwner 0 (DataNode.copyStat).
        assert_eq!(stat.ephemeral_owner, 0);
        assert_eq!(client.check_stat(&base).await.expect("exists"), Some(stat));
        let unused = format!("{base}-unused");
        client
            .create(&unused, b"", &container)
            .await
            .expect("create unused container");

        let child = format!("{base}/child");
        create_persistent(&client, &child, b"").await;
        assert_eq!(
            client.delete(&base, None).await.unwrap_err(),
            Error::NotEmpty
        );
        client.delete(&child, None).await.expect("delete child");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while client.check_stat(&base).await.expect("exists").is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "emptied container still present"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A container that never had a child is kept.
        assert!(client.check_stat(&unused).await.expect("exists").is_some());
    })
    .await;
}

/// TTL nodes need extendedTypesEnabled and expire when childless; the TTL is not visible in the Stat.
#[tokio::test]
async fn ttl_nodes_with_extended_types() {
    bounded(async {
        let server = Server::start_with(Options {
            extended_types: true,
            ..Options::default()
        })
        .await;
        let client = server.client().await;
        let base = unique_path("ttl");
        let ttl = CreateMode::Persistent
            .with_acls(Acls::anyone_all())
            .with_ttl(Duration::from_millis(500));
        let (stat, _) = client.create(&base, b"t", &ttl).await.expect("create ttl");
        assert_eq!(stat.ephemeral_owner, 0, "the TTL marker stays server-side");
        assert_eq!(stat.version, 0);

        let seq_ttl = CreateMode::PersistentSequential
            .with_acls(Acls::anyone_all())
            .with_ttl(Duration::from_secs(3600));
        let keeper = unique_path("ttl-long");
        create_persistent(&client, &keeper, b"").await;
        let (stat, s) = client
            .create(&format!("{keeper}/s-"), b"", &seq_ttl)
            .await
            .expect("sequential ttl");
        assert_eq!(s.into_i64(), 0);
        assert_eq!(stat.ephemeral_owner, 0);

        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while client.check_stat(&base).await.expect("exists").is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expired TTL node still present"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(client
            .check_stat(&format!("{keeper}/s-0000000000"))
            .await
            .expect("exists")
            .is_some());
    })
    .await;
}

#[tokio::test]
async fn ttl_rejected_without_extended_types() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let path = unique_path("ttl-off");
        let reply = conn
            .request(op::CREATE_TTL, &raw::create_ttl_body(&path, b"", 5, 1000))
            .await;
        assert_eq!(reply.err, err::UNIMPLEMENTED);
        let reply = conn
            .request(op::EXISTS, &raw::path_watch_body(&path, false))
            .await;
        assert_eq!(reply.err, err::NO_NODE);
    })
    .await;
}

#[tokio::test]
async fn delete_checks_version_and_children() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("delete");
        create_persistent(&client, &base, b"").await;
        let node = format!("{base}/n");
        create_persistent(&client, &node, b"").await;
        create_persistent(&client, &format!("{node}/kid"), b"").await;

        assert_eq!(
            client
                .delete(&format!("{base}/nope"), None)
                .await
                .unwrap_err(),
            Error::NoNode
        );
        assert_eq!(
            client.delete(&node, None).await.unwrap_err(),
            Error::NotEmpty
        );
        client
            .delete(&format!("{node}/kid"), Some(0))
            .await
            .expect("delete kid at version 0");
        client.set_data(&node, b"v1", None).await.expect("set");
        assert_eq!(
            client.delete(&node, Some(0)).await.unwrap_err(),
            Error::BadVersion
        );
        // NoNode wins over BadVersion.
        assert_eq!(
            client
                .delete(&format!("{base}/nope"), Some(7))
                .await
                .unwrap_err(),
            Error::NoNode
        );

        let before = client
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        client
            .delete(&node, Some(1))
            .await
            .expect("delete at version 1");
        assert_eq!(client.check_stat(&node).await.expect("exists"), None);
        let after = client
            .check_stat(&base)
            .await
            .expect("exists")
            .expect("present");
        assert_eq!(after.cversion, before.cversion + 1);
        assert_eq!(after.num_children, 0);
        assert!(
            after.pzxid > before.pzxid,
            "a deletion moves the parent's pzxid"
        );
        assert_eq!(after.mzxid, before.mzxid);
        client
            .delete(&base, Some(-1))
            .await
            .expect("delete any version");
    })
    .await;
}

/// Each txn gets a zxid greater than the last; a reply's header zxid is that txn's zxid.
#[tokio::test]
async fn zxids_in_reply_headers_match_stats() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("zxid");
        let created = conn
            .request(op::CREATE2, &raw::create_body(&base, b"a", 0))
            .await;
        assert_eq!(created.err, err::OK);
        let mut r = Reader::new(&created.body);
        assert_eq!(r.string().as_deref(), Some(base.as_str()));
        let stat = r.stat();
        assert_eq!(stat.czxid, created.zxid);

        let child = format!("{base}/c");
        let c = conn
            .request(op::CREATE, &raw::create_body(&child, b"", 0))
            .await;
        assert_eq!(c.err, err::OK);
        assert_eq!(
            Reader::new(&c.body).string().as_deref(),
            Some(child.as_str()),
            "create replies the path only"
        );
        assert!(c.zxid > created.zxid);

        let set = conn
            .request(op::SET_DATA, &raw::set_data_body(&base, b"bb", 0))
            .await;
        let stat = Reader::new(&set.body).stat();
        assert_eq!(stat.mzxid, set.zxid);
        assert_eq!(
            (
                stat.version,
                stat.data_length,
                stat.cversion,
                stat.num_children
            ),
            (1, 2, 1, 1)
        );
        assert_eq!(stat.pzxid, c.zxid);

        let deleted = conn
            .request(op::DELETE, &raw::path_version_body(&child, -1))
            .await;
        assert_eq!(deleted.err, err::OK);
        assert!(deleted.body.is_empty());
        let exists = conn
            .request(op::EXISTS, &raw::path_watch_body(&base, false))
            .await;
        let stat = Reader::new(&exists.body).stat();
        assert_eq!(stat.pzxid, deleted.zxid, "pzxid is the deleting txn's zxid");
        assert_eq!(stat.cversion, 2);
        assert_eq!(
            exists.zxid, deleted.zxid,
            "a read reports the last processed zxid"
        );

        // A failed write is still a txn (an error txn) and takes a zxid.
        let failed = conn
            .request(op::SET_DATA, &raw::set_data_body(&base, b"", 99))
            .await;
        assert_eq!(failed.err, err::BAD_VERSION);
        assert!(failed.body.is_empty(), "error replies carry no body");
        assert!(failed.zxid > deleted.zxid);
        let exists = conn
            .request(op::EXISTS, &raw::path_watch_body(&base, false))
            .await;
        assert_eq!(exists.zxid, failed.zxid);
        let stat = Reader::new(&exists.body).stat();
        assert_eq!(
            (stat.version, stat.mzxid),
            (1, set.zxid),
            "the failed write changed nothing"
        );
        conn.close_session().await;
    })
    .await;
}

#[tokio::test]
async fn set_data_checks_version() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let path = unique_path("setdata");
        let created = create_persistent(&client, &path, b"v0").await;

        tokio::time::sleep(Duration::from_millis(5)).await;
        let s1 = client
            .set_data(&path, b"value-1", Some(0))
            .await
            .expect("set at version 0");
        assert_eq!(s1.version, 1);
        assert_eq!(s1.data_length, 7);
        assert!(s1.mzxid > created.mzxid);
        assert_eq!(s1.czxid, created.czxid);
        assert_eq!(s1.ctime, created.ctime);
        assert!(s1.mtime >= created.mtime);
        assert_eq!(s1.pzxid, created.pzxid, "setData does not touch pzxid");
        assert_eq!((s1.cversion, s1.aversion), (0, 0));

        assert_eq!(
            client.set_data(&path, b"x", Some(0)).await.unwrap_err(),
            Error::BadVersion
        );
        assert_eq!(
            client.set_data(&path, b"x", Some(5)).await.unwrap_err(),
            Error::BadVersion
        );
        let s2 = client
            .set_data(&path, b"", None)
            .await
            .expect("set any version");
        assert_eq!((s2.version, s2.data_length), (2, 0));
        let (data, stat) = client.get_data(&path).await.expect("get");
        assert_eq!(data, b"");
        assert_eq!(stat, s2);
        // Setting identical data still counts as a change.
        let s3 = client
            .set_data(&path, b"", Some(2))
            .await
            .expect("same data");
        assert_eq!(s3.version, 3);
        assert!(s3.mzxid > s2.mzxid);

        let missing = format!("{path}/missing");
        assert_eq!(
            client.set_data(&missing, b"", None).await.unwrap_err(),
            Error::NoNode
        );
        assert_eq!(client.get_data(&missing).await.unwrap_err(), Error::NoNode);
        assert_eq!(
            client
                .check_stat(&missing)
                .await
                .expect("exists of missing"),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn acl_get_set_and_aversion() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let path = unique_path("acl");
        let created = create_persistent(&client, &path, b"").await;

        let (acl, stat) = client.get_acl(&path).await.expect("get_acl");
        assert_eq!(acl, vec![Acl::new(Permission::ALL, AuthId::anyone())]);
        assert_eq!(stat, created);

        let read_only = [Acl::new(Permission::READ, AuthId::anyone())];
        assert_eq!(
            client
                .set_acl(&path, &read_only, Some(1))
                .await
                .unwrap_err(),
            Error::BadVersion
        );
        let stat = client
            .set_acl(&path, &read_only, Some(0))
            .await
            .expect("set_acl");
        assert_eq!(stat.aversion, 1);
        assert_eq!((stat.version, stat.cversion), (0, 0));
        assert_eq!(stat.mzxid, created.mzxid, "setACL is not a data change");
        let (acl, stat2) = client.get_acl(&path).await.expect("get_acl");
        assert_eq!(acl, read_only.to_vec());
        assert_eq!(stat2, stat);

        // With only READ, writes, creates and deletes below are refused; reads are allowed.
        assert_eq!(
            client.set_data(&path, b"x", None).await.unwrap_err(),
            Error::NoAuth
        );
        let child = format!("{path}/child");
        let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
        assert_eq!(
            client.create(&child, b"", &persistent).await.unwrap_err(),
            Error::NoAuth
        );
        assert!(client.get_data(&path).await.is_ok());
        // Changing the ACL needs ADMIN, which READ lacks.
        let all = [Acl::new(Permission::ALL, AuthId::anyone())];
        assert_eq!(
            client.set_acl(&path, &all, None).await.unwrap_err(),
            Error::NoAuth
        );

        let empty: [Acl; 0] = [];
        let other = unique_path("acl-empty");
        create_persistent(&client, &other, b"").await;
        assert_eq!(
            client.set_acl(&other, &empty, None).await.unwrap_err(),
            Error::InvalidAcl
        );
        assert_eq!(
            client
                .set_acl(&format!("{other}/x"), &all, None)
                .await
                .unwrap_err(),
            Error::NoNode
        );
        assert_eq!(
            client.get_acl(&format!("{other}/x")).await.unwrap_err(),
            Error::NoNode
        );
    })
    .await;
}

#[tokio::test]
async fn digest_auth_enforces_acls() {
    bounded(async {
        let server = Server::start().await;
        let alice = server.client().await;
        alice
            .auth("digest", b"alice:secret")
            .await
            .expect("addauth alice");
        let bob = server.client().await;
        bob.auth("digest", b"bob:other").await.expect("addauth bob");
        let anon = server.client().await;
        let alice2 = server
            .connect(zk::Client::connector().with_auth("digest", b"alice:secret"))
            .await;

        let path = unique_path("auth");
        let creator = CreateMode::Persistent.with_acls(Acls::creator_all());
        alice
            .create(&path, b"private", &creator)
            .await
            .expect("create with auth ACL");
        let (acl, _) = alice.get_acl(&path).await.expect("get_acl");
        let expected_id = common::digest("alice", "secret");
        assert_eq!(
            acl,
            vec![Acl::new(
                Permission::ALL,
                AuthId::new("digest", &expected_id)
            )]
        );

        for client in [&bob, &anon] {
            assert_eq!(client.get_data(&path).await.unwrap_err(), Error::NoAuth);
            assert_eq!(
                client.set_data(&path, b"x", None).await.unwrap_err(),
                Error::NoAuth
            );
            assert_eq!(
                client.list_children(&path).await.unwrap_err(),
                Error::NoAuth
            );
            // exists is not ACL-checked; getACL needs READ or ADMIN.
            assert!(client.check_stat(&path).await.expect("exists").is_some());
            assert_eq!(client.get_acl(&path).await.unwrap_err(), Error::NoAuth);
        }
        assert_eq!(
            alice2.get_data(&path).await.expect("same identity").0,
            b"private"
        );
        alice2
            .set_data(&path, b"changed", None)
            .await
            .expect("same identity writes");

        // A digest ACL written directly: bob may read only.
        let shared = unique_path("auth-shared");
        let bob_id = common::digest("bob", "other");
        let acls = [
            Acl::new(Permission::ALL, AuthId::new("digest", &expected_id)),
            Acl::new(Permission::READ, AuthId::new("digest", &bob_id)),
        ];
        alice
            .create(
                &shared,
                b"s",
                &CreateMode::Persistent.with_acls(Acls::new(&acls)),
            )
            .await
            .expect("create");
        assert_eq!(bob.get_data(&shared).await.expect("bob reads").0, b"s");
        assert_eq!(
            bob.set_data(&shared, b"x", None).await.unwrap_err(),
            Error::NoAuth
        );
        assert_eq!(anon.get_data(&shared).await.unwrap_err(), Error::NoAuth);

        // Deleting a child needs DELETE on the parent, not on the child.
        let open_child = format!("{shared}/open");
        let anyone = CreateMode::Persistent.with_acls(Acls::anyone_all());
        alice
            .create(&open_child, b"", &anyone)
            .await
            .expect("create child");
        assert_eq!(
            bob.delete(&open_child, None).await.unwrap_err(),
            Error::NoAuth
        );
        alice
            .delete(&open_child, None)
            .await
            .expect("alice deletes");
    })
    .await;
}

#[tokio::test]
async fn super_digest_bypasses_acls() {
    bounded(async {
        let options = Options {
            super_digest: Some(common::digest("super", "test")),
            ..Options::default()
        };
        let server = Server::start_with(options).await;
        let alice = server
            .connect(zk::Client::connector().with_auth("digest", b"alice:pw"))
            .await;
        let path = unique_path("super");
        alice
            .create(
                &path,
                b"secret",
                &CreateMode::Persistent.with_acls(Acls::creator_all()),
            )
            .await
            .expect("create");
        let anon = server.client().await;
        assert_eq!(anon.get_data(&path).await.unwrap_err(), Error::NoAuth);
        let root = server
            .connect(zk::Client::connector().with_auth("digest", b"super:test"))
            .await;
        assert_eq!(
            root.get_data(&path).await.expect("super reads").0,
            b"secret"
        );
        root.set_data(&path, b"overwritten", None)
            .await
            .expect("super writes");
        let wrong = server
            .connect(zk::Client::connector().with_auth("digest", b"super:wrong"))
            .await;
        assert_eq!(wrong.get_data(&path).await.unwrap_err(), Error::NoAuth);
    })
    .await;
}

#[tokio::test]
async fn unknown_auth_scheme_fails_the_session() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let mut body = raw::Jute::new();
        body.i32(0).string("nosuchscheme").buffer(b"x");
        conn.send_with_xid(-4, op::AUTH, body.bytes()).await;
        match conn.next_frame(Duration::from_secs(10)).await {
            Some(raw::Frame::Reply(r)) => {
                assert_eq!((r.xid, r.err), (-4, err::AUTH_FAILED));
            }
            other => panic!("expected AuthFailed reply, got {other:?}"),
        }
        assert!(
            conn.closed_within(Duration::from_secs(10)).await,
            "server closes the connection after AuthFailed"
        );
    })
    .await;
}

#[tokio::test]
async fn children_and_children2() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("children");
        create_persistent(&client, &base, b"parent").await;
        for name in ["b", "a", "c"] {
            create_persistent(&client, &format!("{base}/{name}"), b"").await;
        }
        create_persistent(&client, &format!("{base}/a/grandchild"), b"").await;

        let names = client.list_children(&base).await.expect("getChildren");
        assert_eq!(set(names.clone()), set(["a", "b", "c"]));
        assert_eq!(names.len(), 3);
        let (names2, stat) = client.get_children(&base).await.expect("getChildren2");
        assert_eq!(set(names2), set(["a", "b", "c"]));
        assert_eq!(Some(stat), client.check_stat(&base).await.expect("exists"));
        assert_eq!(
            (stat.num_children, stat.cversion, stat.data_length),
            (3, 3, 6)
        );

        assert!(client
            .list_children(&format!("{base}/b"))
            .await
            .expect("leaf")
            .is_empty());
        assert_eq!(
            client
                .list_children(&format!("{base}/none"))
                .await
                .unwrap_err(),
            Error::NoNode
        );
        assert_eq!(
            client
                .get_children(&format!("{base}/none"))
                .await
                .unwrap_err(),
            Error::NoNode
        );

        assert_eq!(
            client
                .count_descendants_number(&base)
                .await
                .expect("getAllChildrenNumber"),
            4
        );
        assert_eq!(
            client
                .count_descendants_number(&format!("{base}/a"))
                .await
                .expect("count"),
            1
        );
        assert_eq!(
            client
                .count_descendants_number(&format!("{base}/c"))
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            client
                .count_descendants_number(&format!("{base}/none"))
                .await
                .unwrap_err(),
            Error::NoNode
        );
    })
    .await;
}

#[tokio::test]
async fn root_and_system_nodes() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let root = client
            .check_stat("/")
            .await
            .expect("exists /")
            .expect("root exists");
        assert_eq!((root.czxid, root.version, root.ephemeral_owner), (0, 0, 0));
        let children = client.list_children("/").await.expect("ls /");
        assert_eq!(children, vec!["zookeeper".to_string()]);
        assert!(client
            .check_stat("/zookeeper")
            .await
            .expect("exists")
            .is_some());
        assert!(client
            .check_stat("/zookeeper/quota")
            .await
            .expect("exists")
            .is_some());
        assert_eq!(
            client.get_acl("/").await.expect("acl").0,
            vec![Acl::new(Permission::ALL, AuthId::anyone())]
        );
        assert_eq!(client.get_data("/").await.expect("get /").0, b"");
    })
    .await;
}

const OK: i32 = err::OK;
const BAD: i32 = err::BAD_ARGUMENTS;
const NONODE: i32 = err::NO_NODE;
const EXISTS: i32 = err::NODE_EXISTS;

/// One path and ZooKeeper 3.8's answer to create, getData, exists, setData, delete, getChildren and
/// sync on it. `{P}` stands for an existing node. Writes validate the path (create only after
/// finding the parent, delete only after finding the node); reads look the path up as given, and
/// exists alone rejects a NUL; sync never fails.
const PATH_TABLE: &[(&str, [i32; 7])] = &[
    ("", [BAD, OK, OK, BAD, BAD, OK, OK]), // "" is the root's key in the tree
    ("a", [BAD, NONODE, NONODE, BAD, BAD, NONODE, OK]),
    ("/", [EXISTS, OK, OK, OK, BAD, OK, OK]),
    ("/zookeeper", [EXISTS, OK, OK, OK, BAD, OK, OK]),
    ("/zookeeper/quota", [EXISTS, OK, OK, OK, BAD, OK, OK]),
    ("/.", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("/..", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("/a\u{0}b", [BAD, NONODE, BAD, BAD, BAD, NONODE, OK]),
    ("/a\u{1}b", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    (
        "/a\u{f8ff}b",
        [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK],
    ),
    ("{P}/", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("{P}//b", [NONODE, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("{P}/./b", [NONODE, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    (
        "{P}/../b",
        [NONODE, NONODE, NONODE, BAD, NONODE, NONODE, OK],
    ),
    ("{P}/.", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("{P}/..", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("{P}/b/", [NONODE, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("{P}/\u{0}", [BAD, NONODE, BAD, BAD, BAD, NONODE, OK]),
    ("{P}/\u{7f}", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    ("{P}/\u{9f}", [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK]),
    (
        "{P}/\u{fff0}",
        [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK],
    ),
    (
        "{P}/\u{ffff}",
        [BAD, NONODE, NONODE, BAD, NONODE, NONODE, OK],
    ),
    // Valid names: dots inside a name and spaces are fine (create first, then the rest see it).
    ("{P}/ok.", [OK, OK, OK, OK, OK, NONODE, OK]),
    ("{P}/a b", [OK, OK, OK, OK, OK, NONODE, OK]),
];

/// Path validation and lookup errors, sent raw because the crate refuses bad paths locally.
#[tokio::test]
async fn path_validation_matches_zookeeper() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("paths");
        assert_eq!(conn.request(op::CREATE, &raw::create_body(&base, b"", 0)).await.err, err::OK);
        for (row, (template, expected)) in PATH_TABLE.iter().enumerate() {
            let path = template.replace("{P}", &base);
            let got = [
                conn.request(op::CREATE, &raw::create_body(&path, b"", 0)).await.err,
                conn.request(op::GET_DATA, &raw::path_watch_body(&path, false)).await.err,
                conn.request(op::EXISTS, &raw::path_watch_body(&path, false)).await.err,
                conn.request(op::SET_DATA, &raw::set_data_body(&path, b"", -1)).await.err,
                conn.request(op::DELETE, &raw::path_version_body(&path, -1)).await.err,
                conn.request(op::GET_CHILDREN, &raw::path_watch_body(&path, false)).await.err,
                conn.request(op::SYNC, &raw::path_body(&path)).await.err,
            ];
            assert_eq!(
                &got, expected,
                "row {row} {template:?}: [create, getData, exists, setData, delete, getChildren, sync]"
            );
        }
        // A sequential create's path is validated after the suffix is appended: "{P}/" is fine.
        let reply = conn.request(op::CREATE, &raw::create_body(&format!("{base}/"), b"", 2)).await;
        assert_eq!(reply.err, err::OK);
        let expected_suffix = 2; // "ok." and "a b" were created before
        assert_eq!(Reader::new(&reply.body).string(), Some(format!("{base}/{expected_suffix:010}")));
        conn.close_session().await;
    })
    .await;
}

#[tokio::test]
async fn multi_commits_all_ops_with_per_op_results() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("multi");
        create_persistent(&client, &base, b"v0").await;
        let gone = format!("{base}/gone");
        create_persistent(&client, &gone, b"").await;

        let mut writer = client.new_multi_writer();
        let anyone = CreateMode::Persistent.with_acls(Acls::anyone_all());
        writer.add_check_version(&base, 0).expect("check");
        writer
            .add_create(&format!("{base}/new"), b"n", &anyone)
            .expect("create");
        writer.add_set_data(&base, b"v1", Some(0)).expect("set");
        writer
            .add_check_version(&base, 1)
            .expect("check sees the earlier set");
        writer.add_delete(&gone, Some(0)).expect("delete");
        let seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
        writer
            .add_create(&format!("{base}/s-"), b"", &seq)
            .expect("sequential create");
        let results = writer.commit().await.expect("multi commits");
        assert_eq!(results.len(), 6);
        assert_eq!(results[0], MultiWriteResult::Check);
        let MultiWriteResult::Create {
            path,
            stat: created,
        } = &results[1]
        else {
            panic!("{:?}", results[1])
        };
        assert_eq!(path, &format!("{base}/new"));
        let MultiWriteResult::SetData { stat: set_stat } = &results[2] else {
            panic!("{:?}", results[2])
        };
        assert_eq!(results[3], MultiWriteResult::Check);
        assert_eq!(results[4], MultiWriteResult::Delete);
        let MultiWriteResult::Create { path: seq_path, .. } = &results[5] else {
            panic!("{:?}", results[5])
        };
        // Child creations under the parent so far: gone, new → suffix 2 (the deletion does not count).
        assert_eq!(seq_path, &format!("{base}/s-0000000002"));
        // ZooKeeper 3.8 answers a create inside multi with the path only (ZOOKEEPER-4026).
        assert!(
            created.is_invalid(),
            "no stat for a create inside multi: {created:?}"
        );

        // All ops of one multi share one zxid.
        assert_eq!(set_stat.version, 1);
        let (data, stat) = client.get_data(&base).await.expect("get");
        assert_eq!(data, b"v1");
        assert_eq!(stat.mzxid, set_stat.mzxid);
        assert_eq!(stat.pzxid, set_stat.mzxid);
        let new_stat = client
            .check_stat(&format!("{base}/new"))
            .await
            .expect("exists")
            .expect("created");
        assert_eq!(new_stat.czxid, set_stat.mzxid);
        assert_eq!((stat.cversion, stat.num_children), (4, 2));
        assert_eq!(client.check_stat(&gone).await.expect("exists"), None);
    })
    .await;
}

#[tokio::test]
async fn failed_multi_changes_nothing() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("multi-fail");
        let before = create_persistent(&client, &base, b"v0").await;

        let anyone = CreateMode::Persistent.with_acls(Acls::anyone_all());
        let mut writer = client.new_multi_writer();
        writer
            .add_create(&format!("{base}/a"), b"", &anyone)
            .expect("create");
        writer.add_set_data(&base, b"v1", None).expect("set");
        writer
            .add_check_version(&base, 0)
            .expect("check fails: version is 1 after the set");
        writer
            .add_create(&format!("{base}/b"), b"", &anyone)
            .expect("create");
        let failure = writer.commit().await.unwrap_err();
        assert_eq!(
            failure,
            MultiWriteError::OperationFailed {
                index: 2,
                source: Error::BadVersion
            }
        );

        assert_eq!(
            client
                .check_stat(&format!("{base}/a"))
                .await
                .expect("exists"),
            None
        );
        let (data, stat) = client.get_data(&base).await.expect("get");
        assert_eq!(data, b"v0");
        assert_eq!(stat, before, "nothing of a failed multi is applied");

        let mut writer = client.new_multi_writer();
        writer
            .add_check_version(&format!("{base}/missing"), 0)
            .expect("check");
        let failure = writer.commit().await.unwrap_err();
        assert_eq!(
            failure,
            MultiWriteError::OperationFailed {
                index: 0,
                source: Error::NoNode
            }
        );

        let mut writer = client.new_multi_writer();
        writer
            .add_create(&format!("{base}/x"), b"", &anyone)
            .expect("create");
        writer
            .add_create(&format!("{base}/x"), b"", &anyone)
            .expect("create again");
        let failure = writer.commit().await.unwrap_err();
        assert_eq!(
            failure,
            MultiWriteError::OperationFailed {
                index: 1,
                source: Error::NodeExists
            }
        );
        assert_eq!(
            client
                .check_stat(&format!("{base}/x"))
                .await
                .expect("exists"),
            None
        );
    })
    .await;
}

/// The wire layout of a failed multi: ok ops report 0, the failing op its code, later ops -2.
#[tokio::test]
async fn failed_multi_wire_results() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("multi-wire");
        assert_eq!(
            conn.request(op::CREATE, &raw::create_body(&base, b"", 0))
                .await
                .err,
            err::OK
        );
        let zxid_before = conn
            .request(op::EXISTS, &raw::path_watch_body(&base, false))
            .await
            .zxid;

        let ops = vec![
            (op::CREATE, raw::create_body(&format!("{base}/a"), b"", 0)),
            (
                op::DELETE,
                raw::path_version_body(&format!("{base}/missing"), -1),
            ),
            (op::SET_DATA, raw::set_data_body(&base, b"x", -1)),
        ];
        let reply = conn.request(op::MULTI, &raw::multi_body(&ops)).await;
        assert_eq!(
            reply.err,
            err::OK,
            "a failed multi still has a zero reply header error"
        );
        let results = raw::parse_multi(&reply.body);
        assert_eq!(
            results,
            vec![
                MultiResult::Error { err: err::OK },
                MultiResult::Error { err: err::NO_NODE },
                MultiResult::Error {
                    err: err::RUNTIME_INCONSISTENCY
                },
            ]
        );

        let ops = vec![
            (op::CREATE, raw::create_body(&format!("{base}/a"), b"", 0)),
            (
                op::CREATE2,
                raw::create_body(&format!("{base}/b"), b"bb", 0),
            ),
            (op::CHECK, raw::path_version_body(&base, 0)),
            (op::SET_DATA, raw::set_data_body(&base, b"x", 0)),
            (op::DELETE, raw::path_version_body(&format!("{base}/a"), 0)),
        ];
        let reply = conn.request(op::MULTI, &raw::multi_body(&ops)).await;
        assert_eq!(reply.err, err::OK);
        assert!(reply.zxid > zxid_before);
        let results = raw::parse_multi(&reply.body);
        assert_eq!(results.len(), 5);
        assert_eq!(
            results[0],
            MultiResult::Create {
                path: format!("{base}/a")
            }
        );
        // create2 inside multi is answered like create: header type 1, path only (ZOOKEEPER-4026).
        assert_eq!(
            results[1],
            MultiResult::Create {
                path: format!("{base}/b")
            }
        );
        assert_eq!(results[2], MultiResult::Check);
        let MultiResult::SetData { stat } = &results[3] else {
            panic!("{:?}", results[3])
        };
        assert_eq!(
            (stat.version, stat.mzxid, stat.num_children, stat.cversion),
            (1, reply.zxid, 2, 2)
        );
        assert_eq!(results[4], MultiResult::Delete);

        // An empty multi succeeds with no results.
        let reply = conn.request(op::MULTI, &raw::multi_body(&[])).await;
        assert_eq!(reply.err, err::OK);
        assert!(raw::parse_multi(&reply.body).is_empty());
        conn.close_session().await;
    })
    .await;
}

#[tokio::test]
async fn multi_read_returns_per_op_results() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let base = unique_path("multiread");
        let stat = create_persistent(&client, &base, b"data").await;
        create_persistent(&client, &format!("{base}/k"), b"").await;

        let mut reader = client.new_multi_reader();
        reader.add_get_data(&base).expect("get");
        reader.add_get_children(&base).expect("children");
        reader
            .add_get_data(&format!("{base}/missing"))
            .expect("get missing");
        reader
            .add_get_children(&format!("{base}/k"))
            .expect("children of leaf");
        let results = reader.commit().await.expect("multiRead");
        assert_eq!(results.len(), 4);
        let MultiReadResult::Data { data, stat: read } = &results[0] else {
            panic!("{:?}", results[0])
        };
        assert_eq!(data, b"data");
        assert_eq!(read.czxid, stat.czxid);
        assert_eq!(read.num_children, 1);
        let MultiReadResult::Children { children } = &results[1] else {
            panic!("{:?}", results[1])
        };
        assert_eq!(children, &vec!["k".to_string()]);
        let MultiReadResult::Error { err } = &results[2] else {
            panic!("{:?}", results[2])
        };
        assert_eq!(err, &Error::NoNode);
        let MultiReadResult::Children { children } = &results[3] else {
            panic!("{:?}", results[3])
        };
        assert!(children.is_empty());
    })
    .await;
}

/// Reads inside multi and writes inside multiRead are refused as a whole with MarshallingError;
/// the connection stays usable.
#[tokio::test]
async fn multi_kinds_do_not_mix() {
    bounded(async {
        let server = Server::start().await;
        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let base = unique_path("mix");
        assert_eq!(
            conn.request(op::CREATE, &raw::create_body(&base, b"", 0))
                .await
                .err,
            err::OK
        );
        let ops = vec![(op::GET_DATA, raw::path_watch_body(&base, false))];
        let reply = conn.request(op::MULTI, &raw::multi_body(&ops)).await;
        assert_eq!(reply.err, err::MARSHALLING_ERROR, "getData inside multi");
        assert!(reply.body.is_empty());

        let child = format!("{base}/c");
        let ops = vec![(op::CREATE, raw::create_body(&child, b"", 0))];
        let reply = conn.request(op::MULTI_READ, &raw::multi_body(&ops)).await;
        assert_eq!(reply.err, err::MARSHALLING_ERROR, "create inside multiRead");
        assert!(
            raw::parse_multi(&reply.body).is_empty(),
            "an empty result list follows"
        );

        assert_eq!(
            conn.request(op::EXISTS, &raw::path_watch_body(&child, false))
                .await
                .err,
            err::NO_NODE
        );
        conn.close_session().await;
    })
    .await;
}

#[tokio::test]
async fn sync_returns_the_path() {
    bounded(async {
        let server = Server::start().await;
        let client = server.client().await;
        let path = unique_path("sync");
        create_persistent(&client, &path, b"").await;
        client.sync(&path).await.expect("sync existing");
        client
            .sync(&format!("{path}/absent"))
            .await
            .expect("sync does not check existence");
        client.sync("/").await.expect("sync root");

        let mut conn = RawConn::connect(&server.addr(), 30_000).await;
        let reply = conn.request(op::SYNC, &raw::path_body(&path)).await;
        assert_eq!(reply.err, err::OK);
        assert_eq!(Reader::new(&reply.body).string(), Some(path.clone()));
        conn.close_session().await;
    })
    .await;
}

#[tokio::test]
async fn who_am_i_lists_identities() {
    bounded(async {
        let server = Server::start().await;
        let client = server
            .connect(zk::Client::connector().with_auth("digest", b"carol:pw"))
            .await;
        let users = client.list_auth_users().await.expect("whoAmI");
        let pairs: BTreeSet<(String, String)> = users
            .iter()
            .map(|u| (u.scheme().to_string(), u.user().to_string()))
            .collect();
        assert!(
            pairs.contains(&("digest".to_string(), "carol".to_string())),
            "{pairs:?}"
        );
        assert!(
            pairs.contains(&("ip".to_string(), "127.0.0.1".to_string())),
            "{pairs:?}"
        );
    })
    .await;
}

#[test]
fn digest_matches_zookeeper_tool() {
    // `java org.apache.zookeeper.server.auth.DigestAuthenticationProvider super:test`
    assert_eq!(
        common::digest("super", "test"),
        "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
    );
}
