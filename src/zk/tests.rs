//! Behaviour tests of `Zk::apply` against ZooKeeper 3.8's rules (PrepRequestProcessor, DataTree,
//! FinalRequestProcessor, WatchManager).

use protocol::{
    perms, Acl, AddWatchMode, AddWatchRequest, CheckVersionRequest, CreateRequest, DeleteRequest,
    ErrorCode, EventType, Id, MultiOp, MultiResult, OpCode, PathRequest, PathWatchRequest,
    ReconfigRequest, Request, Response, SetAclRequest, SetDataRequest, SetWatches, Stat,
    WatcherEvent, WatcherType, WatchesRequest,
};

use super::acl::{generate_digest, open_acl};
use super::{Applied, Command, Op, Options, SessionId, Zk, Zxid};

const A: SessionId = 0x100;
const B: SessionId = 0x200;
const C: SessionId = 0x300;

/// Drives a `Zk` the way the executor does: writes take the next zxid, everything else the last
/// one; the time of zxid z is 1000 + 10·z.
struct H {
    zk: Zk,
    next: Zxid,
}

impl H {
    fn new() -> H {
        H::with(Options::default())
    }

    fn with(opts: Options) -> H {
        let mut h = H {
            zk: Zk::new(opts),
            next: 1,
        };
        for s in [A, B, C] {
            assert_eq!(
                h.op(
                    s,
                    Op::CreateSession {
                        timeout_ms: 30_000,
                        passwd: vec![s as u8],
                        client_ip: "127.0.0.1".into()
                    }
                )
                .err,
                ErrorCode::Ok
            );
        }
        h
    }

    fn time_of(z: Zxid) -> i64 {
        1000 + 10 * z
    }

    fn op(&mut self, session: SessionId, op: Op) -> Applied {
        let zxid = if Zk::is_write(&op) {
            self.next += 1;
            self.next - 1
        } else {
            self.zk.last_zxid()
        };
        let cmd = Command {
            session,
            xid: 1,
            time_ms: H::time_of(zxid),
            op,
        };
        self.zk.apply(zxid, &cmd)
    }

    fn req(&mut self, session: SessionId, r: Request) -> Applied {
        self.op(session, Op::Request(r))
    }

    #[allow(clippy::too_many_arguments)] // mirrors CreateRequest's fields
    fn create_full(
        &mut self,
        s: SessionId,
        op: OpCode,
        path: &str,
        data: &[u8],
        acl: Vec<Acl>,
        flags: i32,
        ttl: Option<i64>,
    ) -> Applied {
        let req = CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl,
            flags,
            ttl,
        };
        self.req(s, Request::Create { op, req })
    }

    fn create2(&mut self, s: SessionId, path: &str, flags: i32) -> Applied {
        self.create_full(s, OpCode::Create2, path, b"", open_acl(), flags, None)
    }

    /// Creates a persistent node and returns its path, asserting success.
    fn mk(&mut self, path: &str) -> String {
        let a = self.create_full(A, OpCode::Create, path, b"d", open_acl(), 0, None);
        assert_eq!(a.err, ErrorCode::Ok, "create {path}");
        match a.response {
            Some(Response::Create { path }) => path,
            other => panic!("{other:?}"),
        }
    }

    fn delete(&mut self, s: SessionId, path: &str, version: i32) -> ErrorCode {
        self.req(
            s,
            Request::Delete(DeleteRequest {
                path: path.into(),
                version,
            }),
        )
        .err
    }

    fn set(&mut self, s: SessionId, path: &str, data: &[u8], version: i32) -> Applied {
        self.req(
            s,
            Request::SetData(SetDataRequest {
                path: path.into(),
                data: Some(data.to_vec()),
                version,
            }),
        )
    }

    fn get(&mut self, s: SessionId, path: &str, watch: bool) -> Applied {
        self.req(
            s,
            Request::GetData(PathWatchRequest {
                path: path.into(),
                watch,
            }),
        )
    }

    fn exists(&mut self, s: SessionId, path: &str, watch: bool) -> Applied {
        self.req(
            s,
            Request::Exists(PathWatchRequest {
                path: path.into(),
                watch,
            }),
        )
    }

    fn children(&mut self, s: SessionId, path: &str, watch: bool) -> Applied {
        self.req(
            s,
            Request::GetChildren(PathWatchRequest {
                path: path.into(),
                watch,
            }),
        )
    }

    fn stat(&self, path: &str) -> Stat {
        self.zk
            .stat(path)
            .unwrap_or_else(|| panic!("{path} missing"))
    }

    fn auth(&mut self, s: SessionId, user_pass: &str) {
        let a = self.op(
            s,
            Op::AddAuth {
                scheme: "digest".into(),
                auth: user_pass.as_bytes().to_vec(),
            },
        );
        assert_eq!(a.err, ErrorCode::Ok);
    }

    fn add_watch(&mut self, s: SessionId, path: &str, mode: AddWatchMode) {
        let a = self.req(
            s,
            Request::AddWatch(AddWatchRequest {
                path: path.into(),
                mode,
            }),
        );
        assert_eq!(a.err, ErrorCode::Ok);
    }
}

fn ev(s: SessionId, ty: EventType, path: &str) -> (SessionId, WatcherEvent) {
    (
        s,
        WatcherEvent {
            event_type: ty.as_i32(),
            state: 3,
            path: path.into(),
        },
    )
}

fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
    Acl {
        perms,
        id: Id {
            scheme: scheme.into(),
            id: id.into(),
        },
    }
}

fn children_of(a: &Applied) -> Vec<String> {
    match &a.response {
        Some(Response::GetChildren { children }) => children.clone(),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- fresh tree, stats

#[test]
fn fresh_tree_matches_zookeeper() {
    let mut h = H::new();
    let root = h.stat("/");
    assert_eq!(
        (root.num_children, root.cversion, root.czxid, root.aversion),
        (1, -1, 0, 0)
    );
    let zk = h.stat("/zookeeper");
    assert_eq!((zk.num_children, zk.cversion), (2, -2));
    let config = h.stat("/zookeeper/config");
    assert_eq!(
        (config.aversion, config.num_children, config.data_length),
        (-1, 0, 0)
    );
    assert_eq!(children_of(&h.children(A, "/", false)), ["zookeeper"]);
    assert_eq!(
        children_of(&h.children(A, "/zookeeper", false)),
        ["config", "quota"]
    );
    let all = h.req(
        A,
        Request::GetAllChildrenNumber(PathRequest { path: "/".into() }),
    );
    assert_eq!(
        all.response,
        Some(Response::GetAllChildrenNumber { total: 3 })
    );
    // "" is ZooKeeper's alias of the root for reads.
    assert_eq!(h.exists(A, "", false).response, Some(Response::Stat(root)));
}

#[test]
fn create_sets_every_stat_field() {
    let mut h = H::new();
    let a = h.create2(A, "/a", 0);
    let z = h.zk.last_zxid();
    let Some(Response::Create2 { path, stat }) = a.response else {
        panic!("{a:?}")
    };
    assert_eq!(path, "/a");
    let t = H::time_of(z);
    let expected = Stat {
        czxid: z,
        mzxid: z,
        ctime: t,
        mtime: t,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 0,
        num_children: 0,
        pzxid: z,
    };
    assert_eq!(stat, expected);
    assert_eq!(h.stat("/a"), expected);
    let root = h.stat("/");
    assert_eq!(
        (root.num_children, root.cversion, root.pzxid, root.mzxid),
        (2, 0, z, 0)
    );
}

#[test]
fn plain_create_answers_only_the_path() {
    let mut h = H::new();
    let a = h.create_full(A, OpCode::Create, "/a", b"xyz", open_acl(), 0, None);
    assert_eq!(a.response, Some(Response::Create { path: "/a".into() }));
    assert_eq!(h.stat("/a").data_length, 3);
}

#[test]
fn set_data_updates_version_mzxid_mtime_only() {
    let mut h = H::new();
    h.mk("/a");
    let before = h.stat("/a");
    let a = h.set(A, "/a", b"hello", -1);
    let z = h.zk.last_zxid();
    let Some(Response::Stat(s)) = a.response else {
        panic!("{a:?}")
    };
    assert_eq!(
        s,
        Stat {
            mzxid: z,
            mtime: H::time_of(z),
            version: 1,
            data_length: 5,
            ..before
        }
    );
    assert_eq!(h.set(A, "/a", b"x", 1).err, ErrorCode::Ok);
    assert_eq!(h.set(A, "/a", b"x", 1).err, ErrorCode::BadVersion);
    assert_eq!(h.stat("/a").version, 2);
    let got = h.get(A, "/a", false);
    assert_eq!(
        got.response,
        Some(Response::GetData {
            data: Some(b"x".to_vec()),
            stat: h.stat("/a")
        })
    );
}

#[test]
fn cversion_counts_creations_and_deletions_and_pzxid_follows_children() {
    let mut h = H::new();
    h.mk("/p");
    h.mk("/p/a");
    h.mk("/p/b");
    assert_eq!(h.delete(A, "/p/a", -1), ErrorCode::Ok);
    let z = h.zk.last_zxid();
    let p = h.stat("/p");
    assert_eq!((p.cversion, p.num_children, p.pzxid), (3, 1, z));
    // setData on a child does not touch the parent.
    h.set(A, "/p/b", b"v", -1);
    assert_eq!(h.stat("/p").pzxid, z);
}

#[test]
fn sequential_suffix_comes_from_parent_creation_count() {
    let mut h = H::new();
    h.mk("/q");
    let name = |a: Applied| match a.response {
        Some(Response::Create2 { path, .. }) => path,
        other => panic!("{other:?}"),
    };
    assert_eq!(name(h.create2(A, "/q/n-", 2)), "/q/n-0000000000");
    h.mk("/q/plain");
    assert_eq!(h.delete(A, "/q/plain", -1), ErrorCode::Ok);
    // Deletions do not advance the counter, creations do.
    assert_eq!(name(h.create2(A, "/q/n-", 2)), "/q/n-0000000002");
    // A trailing slash is fine for a sequential create: the suffix makes the name.
    assert_eq!(name(h.create2(A, "/q/", 3)), "/q/0000000003");
    assert_eq!(h.create2(A, "/q/", 0).err, ErrorCode::BadArguments);
    // Under the root the counter starts at 0 although /zookeeper exists.
    assert_eq!(name(h.create2(A, "/s", 2)), "/s0000000001");
}

// ---------------------------------------------------------------- errors and paths

#[test]
fn create_errors_in_zookeeper_order() {
    let mut h = H::new();
    h.mk("/a");
    assert_eq!(h.create2(A, "/a", 0).err, ErrorCode::NodeExists);
    assert_eq!(h.create2(A, "/", 0).err, ErrorCode::NodeExists);
    assert_eq!(h.create2(A, "/missing/x", 0).err, ErrorCode::NoNode);
    // The parent lookup comes before path validation.
    assert_eq!(h.create2(A, "/missing/", 0).err, ErrorCode::NoNode);
    assert_eq!(
        h.create2(A, "/a//b", 0).err,
        ErrorCode::NoNode,
        "parent /a/ is looked up first"
    );
    for bad in ["a", "", "/a/.", "/a/..", "/a/", "/a\0", "/a/b\u{1}"] {
        assert_eq!(h.create2(A, bad, 0).err, ErrorCode::BadArguments, "{bad:?}");
    }
    assert_eq!(
        h.create2(A, "/a/b", 7).err,
        ErrorCode::BadArguments,
        "unknown mode"
    );
    let e = h.create_full(A, OpCode::Create, "/x", b"", vec![], 0, None);
    assert_eq!(e.err, ErrorCode::InvalidAcl);
    let e = h.create_full(
        A,
        OpCode::Create,
        "/x",
        b"",
        vec![acl(31, "auth", "")],
        0,
        None,
    );
    assert_eq!(e.err, ErrorCode::InvalidAcl);
    // InvalidACL is checked before the parent exists.
    let e = h.create_full(A, OpCode::Create, "/none/x", b"", vec![], 0, None);
    assert_eq!(e.err, ErrorCode::InvalidAcl);
    assert_eq!(e.response, None);
}

#[test]
fn failed_writes_still_take_a_zxid() {
    let mut h = H::new();
    let before = h.zk.last_zxid();
    assert_eq!(h.delete(A, "/nope", -1), ErrorCode::NoNode);
    assert_eq!(h.zk.last_zxid(), before + 1);
    assert_eq!(h.get(A, "/nope", false).err, ErrorCode::NoNode);
    assert_eq!(h.zk.last_zxid(), before + 1);
}

#[test]
fn delete_rules() {
    let mut h = H::new();
    h.mk("/a");
    h.mk("/a/b");
    assert_eq!(h.delete(A, "/a", -1), ErrorCode::NotEmpty);
    assert_eq!(h.delete(A, "/a/b", 5), ErrorCode::BadVersion);
    assert_eq!(h.delete(A, "/a/", -1), ErrorCode::NoNode);
    assert_eq!(h.delete(A, "/a/b", 0), ErrorCode::Ok);
    assert_eq!(h.delete(A, "/a/b", -1), ErrorCode::NoNode);
    assert_eq!(h.delete(A, "/x/y", -1), ErrorCode::NoNode);
    for reserved in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        assert_eq!(
            h.delete(A, reserved, -1),
            ErrorCode::BadArguments,
            "{reserved}"
        );
    }
    assert_eq!(h.delete(A, "a", -1), ErrorCode::BadArguments);
    assert_eq!(h.delete(A, "", -1), ErrorCode::BadArguments);
    assert_eq!(h.delete(A, "/a", -1), ErrorCode::Ok);
}

#[test]
fn reserved_nodes_are_protected_by_acl_and_open_elsewhere() {
    let mut h = H::new();
    assert_eq!(
        h.set(A, "/zookeeper/config", b"x", -1).err,
        ErrorCode::NoAuth
    );
    let e = h.req(
        A,
        Request::SetAcl(SetAclRequest {
            path: "/zookeeper/config".into(),
            acl: open_acl(),
            version: -1,
        }),
    );
    assert_eq!(e.err, ErrorCode::NoAuth);
    assert_eq!(h.get(A, "/zookeeper/config", false).err, ErrorCode::Ok);
    assert_eq!(h.set(A, "/zookeeper", b"x", -1).err, ErrorCode::Ok);
    h.mk("/zookeeper/mine");
    assert_eq!(h.delete(A, "/zookeeper/mine", -1), ErrorCode::Ok);
}

#[test]
fn writes_validate_paths_reads_do_not() {
    let mut h = H::new();
    assert_eq!(h.set(A, "/a/", b"", -1).err, ErrorCode::BadArguments);
    assert_eq!(h.get(A, "/a/", false).err, ErrorCode::NoNode);
    assert_eq!(h.exists(A, "/a\0", false).err, ErrorCode::BadArguments);
    let c = h.req(
        A,
        Request::Check(CheckVersionRequest {
            path: "//".into(),
            version: 1,
        }),
    );
    assert_eq!(c.err, ErrorCode::BadArguments);
}

#[test]
fn unknown_session_is_expired() {
    let mut h = H::new();
    let ghost = 0x999;
    assert_eq!(h.get(ghost, "/", false).err, ErrorCode::SessionExpired);
    assert_eq!(h.create2(ghost, "/a", 0).err, ErrorCode::SessionExpired);
    // TTL/mode checks come before the session check.
    assert_eq!(h.create2(ghost, "/a", 5).err, ErrorCode::Unimplemented);
    assert_eq!(h.set(ghost, "/", b"", -1).err, ErrorCode::SessionExpired);
    assert_eq!(
        h.op(
            ghost,
            Op::AddAuth {
                scheme: "digest".into(),
                auth: b"a:b".to_vec()
            }
        )
        .err,
        ErrorCode::SessionExpired
    );
}

// ---------------------------------------------------------------- ephemerals and sessions

#[test]
fn ephemerals_belong_to_their_session_and_die_with_it() {
    let mut h = H::new();
    h.mk("/e");
    let a = h.create2(A, "/e/1", 1);
    let Some(Response::Create2 { stat, .. }) = a.response else {
        panic!()
    };
    assert_eq!(stat.ephemeral_owner, A);
    h.create2(A, "/e/2", 3);
    assert_eq!(
        h.create2(A, "/e/1/child", 0).err,
        ErrorCode::NoChildrenForEphemerals
    );
    // B watches one of them and the parent's children.
    assert!(h.exists(B, "/e/1", true).err == ErrorCode::Ok);
    assert!(h.children(B, "/e", true).err == ErrorCode::Ok);
    let eph = h.req(A, Request::GetEphemerals(PathRequest { path: "/".into() }));
    assert_eq!(
        eph.response,
        Some(Response::GetEphemerals {
            ephemerals: vec!["/e/1".into(), "/e/20000000001".into()]
        })
    );
    let eph = h.req(
        A,
        Request::GetEphemerals(PathRequest {
            path: "/e/2".into(),
        }),
    );
    assert_eq!(
        eph.response,
        Some(Response::GetEphemerals {
            ephemerals: vec!["/e/20000000001".into()]
        })
    );
    let none = h.req(B, Request::GetEphemerals(PathRequest { path: "".into() }));
    assert_eq!(
        none.response,
        Some(Response::GetEphemerals { ephemerals: vec![] })
    );

    let closed = h.op(A, Op::CloseSession);
    let z = h.zk.last_zxid();
    assert_eq!(closed.err, ErrorCode::Ok);
    assert_eq!(
        closed.notifications,
        vec![
            ev(B, EventType::NodeDeleted, "/e/1"),
            ev(B, EventType::NodeChildrenChanged, "/e")
        ]
    );
    assert!(h.zk.stat("/e/1").is_none() && h.zk.stat("/e/20000000001").is_none());
    assert_eq!(h.stat("/e").pzxid, z);
    assert!(!h.zk.has_session(A));
    assert_eq!(h.get(A, "/e", false).err, ErrorCode::SessionExpired);
    assert_eq!(h.zk.sessions().map(|(s, _)| s).collect::<Vec<_>>(), [B, C]);
}

#[test]
fn reconnect_checks_password_and_resets_auth_and_watches() {
    let mut h = H::new();
    h.mk("/a");
    h.auth(A, "u:p");
    h.get(A, "/a", true);
    assert_eq!(h.zk.watch_count(), 1);
    let bad = h.op(
        A,
        Op::ReconnectSession {
            passwd: vec![9],
            client_ip: "10.0.0.1".into(),
        },
    );
    assert_eq!(bad.err, ErrorCode::SessionExpired);
    assert_eq!(h.zk.watch_count(), 1);
    let ok = h.op(
        A,
        Op::ReconnectSession {
            passwd: vec![A as u8],
            client_ip: "10.0.0.1".into(),
        },
    );
    assert_eq!((ok.err, ok.response), (ErrorCode::Ok, None));
    assert_eq!(h.zk.watch_count(), 0);
    let who = h.req(A, Request::WhoAmI);
    let Some(Response::WhoAmI { client_info }) = who.response else {
        panic!()
    };
    assert_eq!(client_info.len(), 1);
    assert_eq!(
        (
            client_info[0].auth_scheme.as_str(),
            client_info[0].user.as_str()
        ),
        ("ip", "10.0.0.1")
    );
    let gone = h.op(
        0x777,
        Op::ReconnectSession {
            passwd: vec![],
            client_ip: "1.1.1.1".into(),
        },
    );
    assert_eq!(gone.err, ErrorCode::SessionExpired);
}

#[test]
fn whoami_lists_auth_ids_once() {
    let mut h = H::new();
    h.auth(A, "bob:secret");
    h.auth(A, "bob:secret");
    let who = h.req(A, Request::WhoAmI);
    let Some(Response::WhoAmI { client_info }) = who.response else {
        panic!()
    };
    let got: Vec<(String, String)> = client_info
        .into_iter()
        .map(|c| (c.auth_scheme, c.user))
        .collect();
    assert_eq!(
        got,
        [
            ("ip".into(), "127.0.0.1".into()),
            ("digest".into(), "bob".into())
        ]
    );
    let bad = h.op(
        A,
        Op::AddAuth {
            scheme: "kerberos".into(),
            auth: vec![],
        },
    );
    assert_eq!(bad.err, ErrorCode::AuthFailed);
}

// ---------------------------------------------------------------- ACLs

#[test]
fn acl_matrix_per_operation() {
    let mut h = H::new();
    h.auth(A, "alice:pw");
    let alice = generate_digest("alice:pw");
    // /r: alice has everything, the world may only read.
    let r = h.create_full(
        A,
        OpCode::Create,
        "/r",
        b"v",
        vec![
            acl(perms::ALL, "digest", &alice),
            acl(perms::READ, "world", "anyone"),
        ],
        0,
        None,
    );
    assert_eq!(r.err, ErrorCode::Ok);
    assert_eq!(h.get(B, "/r", false).err, ErrorCode::Ok);
    assert_eq!(h.set(B, "/r", b"x", -1).err, ErrorCode::NoAuth);
    assert_eq!(h.create2(B, "/r/c", 0).err, ErrorCode::NoAuth);
    assert_eq!(h.create2(A, "/r/c", 0).err, ErrorCode::Ok);
    assert_eq!(h.delete(B, "/r/c", -1), ErrorCode::NoAuth);
    // NoAuth on the parent wins over NoNode for the child.
    assert_eq!(h.delete(B, "/r/none", -1), ErrorCode::NoAuth);
    let set_acl = |path: &str| {
        Request::SetAcl(SetAclRequest {
            path: path.into(),
            acl: open_acl(),
            version: -1,
        })
    };
    assert_eq!(h.req(B, set_acl("/r")).err, ErrorCode::NoAuth);
    // getACL: READ suffices, but digests are masked without ADMIN.
    let g = h.req(B, Request::GetAcl(PathRequest { path: "/r".into() }));
    let Some(Response::GetAcl { acl: shown, .. }) = g.response else {
        panic!("{g:?}")
    };
    assert_eq!(shown[0].id.id, "alice:x");
    let g = h.req(A, Request::GetAcl(PathRequest { path: "/r".into() }));
    let Some(Response::GetAcl { acl: shown, stat }) = g.response else {
        panic!()
    };
    assert_eq!(shown[0].id.id, alice);
    assert_eq!(stat, h.stat("/r"));
    assert_eq!(h.delete(A, "/r/c", -1), ErrorCode::Ok);
    let s = h.req(A, set_acl("/r"));
    assert_eq!(s.err, ErrorCode::Ok);
    let Some(Response::Stat(st)) = s.response else {
        panic!()
    };
    assert_eq!(st.aversion, 1);
    assert_eq!(
        h.req(
            A,
            Request::SetAcl(SetAclRequest {
                path: "/r".into(),
                acl: open_acl(),
                version: 0
            })
        )
        .err,
        ErrorCode::BadVersion
    );
}

#[test]
fn node_without_read_hides_data_children_and_counts_but_not_existence() {
    let mut h = H::new();
    h.create_full(
        A,
        OpCode::Create,
        "/w",
        b"",
        vec![acl(perms::WRITE, "world", "anyone")],
        0,
        None,
    );
    assert_eq!(h.get(A, "/w", false).err, ErrorCode::NoAuth);
    assert_eq!(h.children(A, "/w", false).err, ErrorCode::NoAuth);
    assert_eq!(h.exists(A, "/w", true).err, ErrorCode::NoAuth);
    assert_eq!(h.zk.watch_count(), 0, "no watch when exists fails on ACL");
    let n = h.req(
        A,
        Request::GetAllChildrenNumber(PathRequest { path: "/w".into() }),
    );
    assert_eq!(n.err, ErrorCode::NoAuth);
    assert_eq!(
        h.req(A, Request::GetAcl(PathRequest { path: "/w".into() }))
            .err,
        ErrorCode::NoAuth
    );
    assert_eq!(h.set(A, "/w", b"ok", -1).err, ErrorCode::Ok);
    let c = h.req(
        A,
        Request::Check(CheckVersionRequest {
            path: "/w".into(),
            version: -1,
        }),
    );
    assert_eq!(c.err, ErrorCode::NoAuth);
}

#[test]
fn auth_acl_expands_to_callers_digest_ids() {
    let mut h = H::new();
    assert_eq!(
        h.create_full(
            A,
            OpCode::Create,
            "/x",
            b"",
            vec![acl(perms::ALL, "auth", "")],
            0,
            None
        )
        .err,
        ErrorCode::InvalidAcl
    );
    h.auth(A, "u1:p");
    h.auth(A, "u2:p");
    assert_eq!(
        h.create_full(
            A,
            OpCode::Create,
            "/x",
            b"",
            vec![acl(perms::ALL, "auth", "")],
            0,
            None
        )
        .err,
        ErrorCode::Ok
    );
    let g = h.req(A, Request::GetAcl(PathRequest { path: "/x".into() }));
    let Some(Response::GetAcl { acl: shown, .. }) = g.response else {
        panic!()
    };
    assert_eq!(
        shown,
        vec![
            acl(perms::ALL, "digest", &generate_digest("u1:p")),
            acl(perms::ALL, "digest", &generate_digest("u2:p"))
        ]
    );
    h.auth(B, "u2:p");
    assert_eq!(h.get(B, "/x", false).err, ErrorCode::Ok);
    assert_eq!(h.get(C, "/x", false).err, ErrorCode::NoAuth);
}

#[test]
fn ip_acl_with_mask() {
    let mut h = H::new();
    h.create_full(
        A,
        OpCode::Create,
        "/ip",
        b"",
        vec![acl(perms::READ, "ip", "127.0.0.0/8")],
        0,
        None,
    );
    assert_eq!(h.get(A, "/ip", false).err, ErrorCode::Ok);
    h.op(
        B,
        Op::ReconnectSession {
            passwd: vec![B as u8],
            client_ip: "10.1.1.1".into(),
        },
    );
    assert_eq!(h.get(B, "/ip", false).err, ErrorCode::NoAuth);
    let bad = h.create_full(
        A,
        OpCode::Create,
        "/bad",
        b"",
        vec![acl(perms::READ, "ip", "127.0.0/8")],
        0,
        None,
    );
    assert_eq!(bad.err, ErrorCode::InvalidAcl);
}

#[test]
fn super_digest_passes_every_acl() {
    let sd = generate_digest("super:secret");
    let mut h = H::with(Options {
        super_digest: Some(sd),
        ..Options::default()
    });
    h.create_full(
        A,
        OpCode::Create,
        "/locked",
        b"",
        vec![acl(perms::READ, "digest", &generate_digest("x:y"))],
        0,
        None,
    );
    assert_eq!(h.set(B, "/locked", b"1", -1).err, ErrorCode::NoAuth);
    h.auth(B, "super:secret");
    assert_eq!(h.set(B, "/locked", b"1", -1).err, ErrorCode::Ok);
    assert_eq!(h.set(B, "/zookeeper/config", b"1", -1).err, ErrorCode::Ok);
    // The wrong password is just another digest id.
    h.auth(C, "super:wrong");
    assert_eq!(h.set(C, "/locked", b"2", -1).err, ErrorCode::NoAuth);
}

// ---------------------------------------------------------------- multi

fn mcreate(path: &str, flags: i32) -> MultiOp {
    MultiOp::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: path.into(),
            data: Some(vec![]),
            acl: open_acl(),
            flags,
            ttl: None,
        },
    }
}

fn mcreate2(path: &str) -> MultiOp {
    MultiOp::Create {
        op: OpCode::Create2,
        req: CreateRequest {
            path: path.into(),
            data: Some(vec![1]),
            acl: open_acl(),
            flags: 0,
            ttl: None,
        },
    }
}

#[test]
fn multi_success_applies_all_with_one_zxid() {
    let mut h = H::new();
    h.mk("/m");
    h.children(B, "/m", true);
    let ops = vec![
        mcreate("/m/a", 0),
        mcreate2("/m/b"),
        MultiOp::SetData(SetDataRequest {
            path: "/m/a".into(),
            data: Some(b"z".to_vec()),
            version: 0,
        }),
        MultiOp::Check(CheckVersionRequest {
            path: "/m/a".into(),
            version: 1,
        }),
        MultiOp::Delete(DeleteRequest {
            path: "/m/b".into(),
            version: 0,
        }),
        mcreate("/m/s-", 2),
    ];
    let a = h.req(A, Request::Multi(ops));
    let z = h.zk.last_zxid();
    assert_eq!(a.err, ErrorCode::Ok);
    let Some(Response::Multi(results)) = a.response else {
        panic!("{a:?}")
    };
    assert_eq!(results.len(), 6);
    assert_eq!(
        results[0],
        MultiResult::Create {
            path: "/m/a".into()
        }
    );
    let MultiResult::Create2 { path, stat } = &results[1] else {
        panic!()
    };
    assert_eq!(
        (path.as_str(), stat.czxid, stat.data_length),
        ("/m/b", z, 1)
    );
    let MultiResult::SetData { stat } = &results[2] else {
        panic!()
    };
    assert_eq!((stat.version, stat.mzxid, stat.czxid), (1, z, z));
    assert_eq!(results[3], MultiResult::Check);
    assert_eq!(results[4], MultiResult::Delete);
    assert_eq!(
        results[5],
        MultiResult::Create {
            path: "/m/s-0000000002".into()
        }
    );
    // One-shot child watch fires once, for the first change.
    assert_eq!(
        a.notifications,
        vec![ev(B, EventType::NodeChildrenChanged, "/m")]
    );
    assert_eq!(h.stat("/m").cversion, 4);
}

#[test]
fn failed_multi_changes_nothing_and_reports_zookeepers_layout() {
    let mut h = H::new();
    h.mk("/m");
    h.children(B, "/m", true);
    h.exists(B, "/m/a", true);
    let before_stat = h.stat("/m");
    let nodes = h.zk.node_count();
    let ops = vec![
        mcreate("/m/a", 0),
        mcreate("/m/s-", 2),
        MultiOp::SetData(SetDataRequest {
            path: "/m".into(),
            data: Some(vec![]),
            version: 7,
        }),
        mcreate("/m/c", 0),
    ];
    let a = h.req(A, Request::Multi(ops));
    assert_eq!(a.err, ErrorCode::Ok, "a failed multi's header says Ok");
    let codes: Vec<i32> = match a.response {
        Some(Response::Multi(r)) => r
            .into_iter()
            .map(|x| match x {
                MultiResult::Error { err } => err,
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        codes,
        [
            0,
            0,
            ErrorCode::BadVersion.as_i32(),
            ErrorCode::RuntimeInconsistency.as_i32()
        ]
    );
    assert!(a.notifications.is_empty());
    assert_eq!(h.zk.node_count(), nodes);
    assert_eq!(h.stat("/m"), before_stat);
    // The sequence counter was rolled back too (ZOOKEEPER-1624), and the watches are still armed.
    let c = h.create_full(A, OpCode::Create, "/m/a", b"", open_acl(), 0, None);
    assert_eq!(
        c.notifications,
        vec![
            ev(B, EventType::NodeCreated, "/m/a"),
            ev(B, EventType::NodeChildrenChanged, "/m")
        ]
    );
    let s = h.create_full(A, OpCode::Create, "/m/s-", b"", open_acl(), 2, None);
    assert_eq!(
        s.response,
        Some(Response::Create {
            path: "/m/s-0000000001".into()
        })
    );
}

#[test]
fn failed_multi_restores_deleted_nodes_and_data() {
    let mut h = H::new();
    h.mk("/d");
    let eph = h.create2(A, "/d/e", 1);
    assert_eq!(eph.err, ErrorCode::Ok);
    h.set(A, "/d", b"old", -1);
    let snap = h.zk.snapshot();
    let ops = vec![
        MultiOp::Delete(DeleteRequest {
            path: "/d/e".into(),
            version: -1,
        }),
        MultiOp::SetData(SetDataRequest {
            path: "/d".into(),
            data: Some(b"new".to_vec()),
            version: -1,
        }),
        MultiOp::Delete(DeleteRequest {
            path: "/d".into(),
            version: -1,
        }),
        mcreate("/d", 0),
        MultiOp::Check(CheckVersionRequest {
            path: "/nope".into(),
            version: -1,
        }),
    ];
    let a = h.req(A, Request::Multi(ops));
    let Some(Response::Multi(r)) = a.response else {
        panic!()
    };
    assert_eq!(
        r[4],
        MultiResult::Error {
            err: ErrorCode::NoNode.as_i32()
        }
    );
    // Same state apart from the zxid the failed multi consumed.
    let restored = Zk::restore(&h.zk.snapshot(), Options::default()).unwrap();
    let before = Zk::restore(&snap, Options::default()).unwrap();
    assert_eq!(restored.tree, before.tree);
    assert_eq!(restored.last_zxid(), before.last_zxid() + 1);
    let eph = h.req(A, Request::GetEphemerals(PathRequest { path: "/".into() }));
    assert_eq!(
        eph.response,
        Some(Response::GetEphemerals {
            ephemerals: vec!["/d/e".into()]
        })
    );
}

#[test]
fn multi_errors_for_each_kind_of_op() {
    let mut h = H::new();
    h.mk("/x");
    let cases: Vec<(MultiOp, ErrorCode)> = vec![
        (mcreate("/x", 0), ErrorCode::NodeExists),
        (mcreate("/none/y", 0), ErrorCode::NoNode),
        (mcreate("bad", 0), ErrorCode::BadArguments),
        (
            MultiOp::Delete(DeleteRequest {
                path: "/zookeeper".into(),
                version: -1,
            }),
            ErrorCode::BadArguments,
        ),
        (
            MultiOp::Check(CheckVersionRequest {
                path: "/x".into(),
                version: 3,
            }),
            ErrorCode::BadVersion,
        ),
    ];
    for (op, code) in cases {
        let a = h.req(A, Request::Multi(vec![op.clone()]));
        assert_eq!(
            a.response,
            Some(Response::Multi(vec![MultiResult::Error {
                err: code.as_i32()
            }])),
            "{op:?}"
        );
    }
    let empty = h.req(A, Request::Multi(vec![]));
    assert_eq!(empty.response, Some(Response::Multi(vec![])));
    let mixed = h.req(
        A,
        Request::Multi(vec![
            mcreate("/y", 0),
            MultiOp::GetData(PathWatchRequest {
                path: "/x".into(),
                watch: false,
            }),
        ]),
    );
    assert_eq!(
        (mixed.err, mixed.response),
        (ErrorCode::MarshallingError, None)
    );
    assert!(h.zk.stat("/y").is_none());
}

#[test]
fn multi_read_reports_errors_per_op() {
    let mut h = H::new();
    h.mk("/r");
    h.mk("/r/c");
    h.create_full(
        A,
        OpCode::Create,
        "/secret",
        b"",
        vec![acl(perms::WRITE, "world", "anyone")],
        0,
        None,
    );
    let ops = vec![
        MultiOp::GetData(PathWatchRequest {
            path: "/r".into(),
            watch: false,
        }),
        MultiOp::GetChildren(PathWatchRequest {
            path: "/r".into(),
            watch: false,
        }),
        MultiOp::GetData(PathWatchRequest {
            path: "/none".into(),
            watch: false,
        }),
        MultiOp::GetChildren(PathWatchRequest {
            path: "/secret".into(),
            watch: false,
        }),
    ];
    let a = h.req(A, Request::MultiRead(ops));
    assert_eq!(a.err, ErrorCode::Ok);
    let expected = vec![
        MultiResult::GetData {
            data: Some(b"d".to_vec()),
            stat: h.stat("/r"),
        },
        MultiResult::GetChildren {
            children: vec!["c".into()],
        },
        MultiResult::Error {
            err: ErrorCode::NoNode.as_i32(),
        },
        MultiResult::Error {
            err: ErrorCode::NoAuth.as_i32(),
        },
    ];
    assert_eq!(a.response, Some(Response::Multi(expected)));
    let w = h.req(A, Request::MultiRead(vec![mcreate("/z", 0)]));
    assert_eq!(w.err, ErrorCode::MarshallingError);
    assert!(!Zk::is_write(&Op::Request(Request::MultiRead(vec![]))));
}

// ---------------------------------------------------------------- watches

#[test]
fn watch_triggering_matrix() {
    let mut h = H::new();
    h.mk("/w");
    // exists on a missing node registers; creation fires NodeCreated, then the parent's child watch.
    assert_eq!(h.exists(B, "/w/n", true).err, ErrorCode::NoNode);
    h.children(C, "/w", true);
    let c = h.create_full(A, OpCode::Create, "/w/n", b"", open_acl(), 0, None);
    assert_eq!(
        c.notifications,
        vec![
            ev(B, EventType::NodeCreated, "/w/n"),
            ev(C, EventType::NodeChildrenChanged, "/w")
        ]
    );
    // getData watch: setData fires NodeDataChanged once.
    h.get(B, "/w/n", true);
    h.get(C, "/w/n", true);
    let s = h.set(A, "/w/n", b"1", -1);
    assert_eq!(
        s.notifications,
        vec![
            ev(B, EventType::NodeDataChanged, "/w/n"),
            ev(C, EventType::NodeDataChanged, "/w/n")
        ]
    );
    assert!(h.set(A, "/w/n", b"2", -1).notifications.is_empty());
    // Delete: data and child watches on the node give one NodeDeleted per session; the parent's
    // child watch gets NodeChildrenChanged.
    h.get(B, "/w/n", true);
    h.children(B, "/w/n", true);
    h.children(C, "/w/n", true);
    h.children(A, "/w", true);
    let d = h.req(
        A,
        Request::Delete(DeleteRequest {
            path: "/w/n".into(),
            version: -1,
        }),
    );
    assert_eq!(
        d.notifications,
        vec![
            ev(B, EventType::NodeDeleted, "/w/n"),
            ev(C, EventType::NodeDeleted, "/w/n"),
            ev(A, EventType::NodeChildrenChanged, "/w")
        ]
    );
    assert_eq!(h.zk.watch_count(), 0);
    // Root children: the parent of /x is reported as "/".
    h.children(B, "/", true);
    let r = h.create2(A, "/x", 0);
    assert_eq!(
        r.notifications,
        vec![ev(B, EventType::NodeChildrenChanged, "/")]
    );
    // getData/getChildren on a missing node do not register.
    assert_eq!(h.get(B, "/missing", true).err, ErrorCode::NoNode);
    assert_eq!(h.children(B, "/missing", true).err, ErrorCode::NoNode);
    assert_eq!(h.zk.watch_count(), 0);
    // setACL fires nothing.
    h.get(B, "/x", true);
    let a = h.req(
        A,
        Request::SetAcl(SetAclRequest {
            path: "/x".into(),
            acl: open_acl(),
            version: -1,
        }),
    );
    assert!(a.notifications.is_empty());
}

#[test]
fn events_are_filtered_by_the_nodes_read_acl() {
    let mut h = H::new();
    h.auth(A, "a:a");
    let mine = vec![acl(perms::ALL, "digest", &generate_digest("a:a"))];
    h.create_full(A, OpCode::Create, "/p", b"", mine.clone(), 0, None);
    h.add_watch(B, "/p", AddWatchMode::PersistentRecursive);
    h.add_watch(A, "/p", AddWatchMode::PersistentRecursive);
    let c = h.create_full(A, OpCode::Create, "/p/q", b"", mine, 0, None);
    assert_eq!(c.notifications, vec![ev(A, EventType::NodeCreated, "/p/q")]);
}

#[test]
fn persistent_watches() {
    let mut h = H::new();
    h.mk("/a");
    h.add_watch(B, "/a", AddWatchMode::Persistent);
    assert_eq!(
        h.set(A, "/a", b"1", -1).notifications,
        vec![ev(B, EventType::NodeDataChanged, "/a")]
    );
    assert_eq!(
        h.set(A, "/a", b"2", -1).notifications,
        vec![ev(B, EventType::NodeDataChanged, "/a")]
    );
    assert_eq!(
        h.create2(A, "/a/b", 0).notifications,
        vec![ev(B, EventType::NodeChildrenChanged, "/a")]
    );
    assert!(h.create2(A, "/a/b/c", 0).notifications.is_empty());
    assert!(h.set(A, "/a/b", b"", -1).notifications.is_empty());
    // Survives the node's deletion and sees its re-creation.
    h.delete(A, "/a/b/c", -1);
    h.delete(A, "/a/b", -1);
    let d = h.req(
        A,
        Request::Delete(DeleteRequest {
            path: "/a".into(),
            version: -1,
        }),
    );
    assert_eq!(d.notifications, vec![ev(B, EventType::NodeDeleted, "/a")]);
    assert_eq!(
        h.create2(A, "/a", 0).notifications,
        vec![ev(B, EventType::NodeCreated, "/a")]
    );
}

#[test]
fn persistent_recursive_watches() {
    let mut h = H::new();
    h.mk("/r");
    h.add_watch(B, "/r", AddWatchMode::PersistentRecursive);
    assert_eq!(
        h.create2(A, "/r/a", 0).notifications,
        vec![ev(B, EventType::NodeCreated, "/r/a")]
    );
    assert_eq!(
        h.create2(A, "/r/a/b", 0).notifications,
        vec![ev(B, EventType::NodeCreated, "/r/a/b")]
    );
    assert_eq!(
        h.set(A, "/r/a/b", b"x", -1).notifications,
        vec![ev(B, EventType::NodeDataChanged, "/r/a/b")]
    );
    assert_eq!(
        h.req(
            A,
            Request::Delete(DeleteRequest {
                path: "/r/a/b".into(),
                version: -1
            })
        )
        .notifications,
        vec![ev(B, EventType::NodeDeleted, "/r/a/b")]
    );
    assert!(
        h.create2(A, "/rr", 0).notifications.is_empty(),
        "a sibling with the same prefix is not a descendant"
    );
    // A one-shot child watch alongside still gets NodeChildrenChanged; the recursive one never.
    h.children(B, "/r", true);
    assert_eq!(
        h.create2(A, "/r/z", 0).notifications,
        vec![
            ev(B, EventType::NodeCreated, "/r/z"),
            ev(B, EventType::NodeChildrenChanged, "/r")
        ]
    );
    h.add_watch(C, "/", AddWatchMode::PersistentRecursive);
    assert_eq!(
        h.set(A, "/r", b"", -1).notifications,
        vec![
            ev(B, EventType::NodeDataChanged, "/r"),
            ev(C, EventType::NodeDataChanged, "/r")
        ]
    );
}

#[test]
fn set_watches_fires_missed_events_and_rearms_the_rest() {
    let mut h = H::new();
    h.mk("/same");
    h.mk("/changed");
    h.mk("/kids");
    let rel = h.zk.last_zxid();
    h.set(A, "/changed", b"new", -1);
    h.mk("/kids/k");
    h.mk("/born");
    let sw = SetWatches {
        relative_zxid: rel,
        data_watches: vec!["/same".into(), "/changed".into(), "/gone".into()],
        exist_watches: vec!["/born".into(), "/unborn".into()],
        child_watches: vec!["/same".into(), "/kids".into(), "/gone2".into()],
        persistent_watches: vec!["/p".into()],
        persistent_recursive_watches: vec!["/pr".into()],
    };
    let a = h.req(B, Request::SetWatches2(sw.clone()));
    assert_eq!((a.err, a.response), (ErrorCode::Ok, Some(Response::Empty)));
    assert_eq!(
        a.notifications,
        vec![
            ev(B, EventType::NodeDataChanged, "/changed"),
            ev(B, EventType::NodeDeleted, "/gone"),
            ev(B, EventType::NodeCreated, "/born"),
            ev(B, EventType::NodeChildrenChanged, "/kids"),
            ev(B, EventType::NodeDeleted, "/gone2"),
        ]
    );
    // Re-armed: data /same, exist /unborn, child /same, plus persistent /p and /pr in both managers.
    assert_eq!(h.zk.watch_count(), 3 + 4);
    assert_eq!(
        h.set(A, "/same", b"", -1).notifications,
        vec![ev(B, EventType::NodeDataChanged, "/same")]
    );
    assert_eq!(
        h.create2(A, "/unborn", 0).notifications,
        vec![ev(B, EventType::NodeCreated, "/unborn")]
    );
    assert_eq!(
        h.create2(A, "/pr", 0).notifications,
        vec![ev(B, EventType::NodeCreated, "/pr")]
    );
    assert_eq!(
        h.create2(A, "/pr/x", 0).notifications,
        vec![ev(B, EventType::NodeCreated, "/pr/x")]
    );
    // setWatches (v1) ignores persistent lists.
    let v1 = h.req(C, Request::SetWatches(sw));
    // Since rel, /same changed and /unborn was created too.
    assert_eq!(v1.notifications.len(), 7);
    assert!(h
        .create2(A, "/p", 0)
        .notifications
        .iter()
        .all(|(s, _)| *s == B));
}

#[test]
fn check_and_remove_watches() {
    let mut h = H::new();
    h.mk("/a");
    let check = |h: &mut H, s, ty| {
        h.req(
            s,
            Request::CheckWatches(WatchesRequest {
                path: "/a".into(),
                watcher_type: ty,
            }),
        )
        .err
    };
    let remove = |h: &mut H, s, ty| {
        h.req(
            s,
            Request::RemoveWatches(WatchesRequest {
                path: "/a".into(),
                watcher_type: ty,
            }),
        )
        .err
    };
    assert_eq!(check(&mut h, B, WatcherType::Any), ErrorCode::NoWatcher);
    h.get(B, "/a", true);
    assert_eq!(check(&mut h, B, WatcherType::Data), ErrorCode::Ok);
    assert_eq!(
        check(&mut h, B, WatcherType::Children),
        ErrorCode::NoWatcher
    );
    assert_eq!(
        remove(&mut h, B, WatcherType::Children),
        ErrorCode::NoWatcher
    );
    assert_eq!(remove(&mut h, C, WatcherType::Data), ErrorCode::NoWatcher);
    assert_eq!(remove(&mut h, B, WatcherType::Any), ErrorCode::Ok);
    assert_eq!(remove(&mut h, B, WatcherType::Any), ErrorCode::NoWatcher);
    assert!(h.set(A, "/a", b"", -1).notifications.is_empty());
    h.add_watch(B, "/a", AddWatchMode::Persistent);
    assert_eq!(remove(&mut h, B, WatcherType::Data), ErrorCode::Ok);
    assert!(h.set(A, "/a", b"", -1).notifications.is_empty());
    assert_eq!(
        h.create2(A, "/a/c", 0).notifications,
        vec![ev(B, EventType::NodeChildrenChanged, "/a")]
    );
}

#[test]
fn closing_a_session_drops_its_watches() {
    let mut h = H::new();
    h.mk("/a");
    h.get(B, "/a", true);
    h.add_watch(B, "/", AddWatchMode::PersistentRecursive);
    h.op(B, Op::CloseSession);
    assert_eq!(h.zk.watch_count(), 0);
    assert!(h.set(A, "/a", b"", -1).notifications.is_empty());
    h.get(C, "/a", true);
    h.zk.drop_watches(C);
    assert!(h.set(A, "/a", b"", -1).notifications.is_empty());
}

// ---------------------------------------------------------------- containers and TTLs

#[test]
fn containers_become_candidates_once_emptied() {
    let mut h = H::new();
    let c = h.create_full(A, OpCode::CreateContainer, "/c", b"", open_acl(), 4, None);
    let Some(Response::Create2 { stat, .. }) = c.response else {
        panic!("{c:?}")
    };
    assert_eq!(stat.ephemeral_owner, 0, "clients see 0 for containers");
    assert!(
        h.zk.expired_containers_and_ttls(i64::MAX).is_empty(),
        "never had a child"
    );
    h.mk("/c/x");
    assert!(
        h.zk.expired_containers_and_ttls(i64::MAX).is_empty(),
        "has a child"
    );
    h.delete(A, "/c/x", -1);
    assert_eq!(h.zk.expired_containers_and_ttls(0), ["/c"]);
    // A container's child cannot be ephemeral-parented; containers themselves may have children.
    let z = h.zk.last_zxid();
    let d = h.op(0, Op::DeleteContainer { path: "/c".into() });
    assert_eq!(d.err, ErrorCode::Ok);
    assert_eq!(h.zk.last_zxid(), z + 1);
    assert!(h.zk.expired_containers_and_ttls(i64::MAX).is_empty());
}

#[test]
fn container_never_used_interval() {
    let mut h = H::with(Options {
        container_max_never_used_ms: 100,
        ..Options::default()
    });
    h.create_full(A, OpCode::CreateContainer, "/c", b"", open_acl(), 4, None);
    let mtime = h.stat("/c").mtime;
    assert!(h.zk.expired_containers_and_ttls(mtime + 100).is_empty());
    assert_eq!(h.zk.expired_containers_and_ttls(mtime + 101), ["/c"]);
}

#[test]
fn delete_container_rules() {
    let mut h = H::new();
    h.mk("/p");
    h.mk("/p/c");
    h.create2(A, "/e", 1);
    let dc = |h: &mut H, p: &str| h.op(0, Op::DeleteContainer { path: p.into() }).err;
    assert_eq!(dc(&mut h, "/p"), ErrorCode::NotEmpty);
    assert_eq!(dc(&mut h, "/e"), ErrorCode::BadVersion);
    assert_eq!(dc(&mut h, "/nope"), ErrorCode::NoNode);
    assert_eq!(dc(&mut h, "/zookeeper"), ErrorCode::BadArguments);
    // Like ZooKeeper, a plain persistent node is not refused.
    assert_eq!(dc(&mut h, "/p/c"), ErrorCode::Ok);
    // A client's deleteContainer never works in ZooKeeper (its header bytes end up in the path).
    h.create_full(A, OpCode::CreateContainer, "/c", b"", open_acl(), 4, None);
    let z = h.zk.last_zxid();
    let client = h.req(
        A,
        Request::DeleteContainer(PathRequest { path: "/c".into() }),
    );
    assert_eq!(
        (client.err, client.response),
        (ErrorCode::BadArguments, None)
    );
    assert_eq!(h.zk.last_zxid(), z + 1);
    assert!(h.zk.stat("/c").is_some());
}

#[test]
fn ttl_nodes_need_extended_types() {
    let mut h = H::new();
    let t = h.create_full(A, OpCode::CreateTtl, "/t", b"", open_acl(), 5, Some(1000));
    assert_eq!(t.err, ErrorCode::Unimplemented);
    let t = h.create_full(A, OpCode::Create2, "/t", b"", open_acl(), 6, None);
    assert_eq!(t.err, ErrorCode::Unimplemented);
}

#[test]
fn ttl_nodes_validate_and_expire() {
    let mut h = H::with(Options {
        extended_types: true,
        ..Options::default()
    });
    let ttl = |h: &mut H, path: &str, flags: i32, ttl: i64| {
        h.create_full(
            A,
            OpCode::CreateTtl,
            path,
            b"",
            open_acl(),
            flags,
            Some(ttl),
        )
    };
    assert_eq!(ttl(&mut h, "/t", 5, 0).err, ErrorCode::BadArguments);
    assert_eq!(ttl(&mut h, "/t", 5, -1).err, ErrorCode::BadArguments);
    assert_eq!(
        ttl(&mut h, "/t", 5, super::TTL_MAX + 1).err,
        ErrorCode::BadArguments
    );
    assert_eq!(
        ttl(&mut h, "/t", 0, 100).err,
        ErrorCode::BadArguments,
        "TTL with a non-TTL mode"
    );
    assert_eq!(
        h.create2(A, "/t", 5).err,
        ErrorCode::BadArguments,
        "TTL mode without createTTL"
    );
    let ok = ttl(&mut h, "/t", 5, 100);
    let Some(Response::Create2 { stat, .. }) = ok.response else {
        panic!("{ok:?}")
    };
    assert_eq!(stat.ephemeral_owner, 0, "clients see 0 for TTL nodes");
    let seq = ttl(&mut h, "/s-", 6, super::TTL_MAX);
    assert!(
        matches!(seq.response, Some(Response::Create2 { ref path, .. }) if path.starts_with("/s-00"))
    );
    let mtime = h.stat("/t").mtime;
    assert!(h.zk.expired_containers_and_ttls(mtime + 100).is_empty());
    assert_eq!(h.zk.expired_containers_and_ttls(mtime + 101), ["/t"]);
    h.mk("/t/child");
    assert!(h.zk.expired_containers_and_ttls(mtime + 101).is_empty());
    // A TTL node can have children; an ephemeral cannot.
    assert_eq!(h.zk.expired_containers_and_ttls(i64::MAX).len(), 1);
}

// ---------------------------------------------------------------- other requests

#[test]
fn small_requests() {
    let mut h = H::new();
    h.mk("/a");
    h.mk("/a/b");
    h.mk("/a/b/c");
    h.mk("/ab");
    let n = h.req(
        A,
        Request::GetAllChildrenNumber(PathRequest { path: "/a".into() }),
    );
    assert_eq!(
        n.response,
        Some(Response::GetAllChildrenNumber { total: 2 })
    );
    let n = h.req(
        A,
        Request::GetAllChildrenNumber(PathRequest { path: "/".into() }),
    );
    assert_eq!(
        n.response,
        Some(Response::GetAllChildrenNumber { total: 7 })
    );
    assert_eq!(
        h.req(
            A,
            Request::GetAllChildrenNumber(PathRequest { path: "/x".into() })
        )
        .err,
        ErrorCode::NoNode
    );
    let s = h.req(
        A,
        Request::Sync(PathRequest {
            path: "/anything".into(),
        }),
    );
    assert_eq!(
        s.response,
        Some(Response::Sync {
            path: "/anything".into()
        })
    );
    assert_eq!(h.req(A, Request::Ping).response, Some(Response::Empty));
    let r = h.req(
        A,
        Request::Reconfig(ReconfigRequest {
            joining_servers: None,
            leaving_servers: None,
            new_members: None,
            cur_config_id: -1,
        }),
    );
    assert_eq!(r.err, ErrorCode::ReconfigDisabled);
    let c2 = h.req(
        A,
        Request::GetChildren2(PathWatchRequest {
            path: "/a".into(),
            watch: false,
        }),
    );
    assert_eq!(
        c2.response,
        Some(Response::GetChildren2 {
            children: vec!["b".into()],
            stat: h.stat("/a")
        })
    );
    let ex = h.exists(A, "/a/b", false);
    assert_eq!(ex.response, Some(Response::Stat(h.stat("/a/b"))));
    assert_eq!(h.exists(A, "/zz", false).response, None);
}

#[test]
fn children_are_sorted() {
    let mut h = H::new();
    h.mk("/s");
    for n in ["b", "a", "c10", "c2"] {
        h.mk(&format!("/s/{n}"));
    }
    assert_eq!(
        children_of(&h.children(A, "/s", false)),
        ["a", "b", "c10", "c2"]
    );
}

#[test]
fn quota_stats_follow_the_subtree_like_zkcli_shows() {
    // The same steps as `zkCli.sh`: create /app hello; create /app/c x; setquota -n 10 /app; ...
    let mut h = H::new();
    let data = |h: &mut H, p: &str| match h.get(A, p, false).response {
        Some(Response::GetData { data, .. }) => {
            String::from_utf8(data.unwrap_or_default()).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let put = |h: &mut H, p: &str, d: &str| {
        let a = h.create_full(A, OpCode::Create, p, d.as_bytes(), open_acl(), 0, None);
        assert_eq!(a.err, ErrorCode::Ok, "{p}");
    };
    put(&mut h, "/app", "hello");
    put(&mut h, "/app/c", "x");
    put(&mut h, "/zookeeper/quota/app", "");
    let limits = "count=10,bytes=-1=;byteHardLimit=-1;countHardLimit=-1";
    put(&mut h, "/zookeeper/quota/app/zookeeper_limits", limits);
    put(
        &mut h,
        "/zookeeper/quota/app/zookeeper_stats",
        "count=0,bytes=0",
    );
    let stats = "/zookeeper/quota/app/zookeeper_stats";
    assert_eq!(data(&mut h, stats), "count=2,bytes=6");
    let created = h.stat(stats).mzxid;
    put(&mut h, "/app/d", "yy");
    h.set(A, "/app", b"hi", -1);
    assert_eq!(data(&mut h, stats), "count=3,bytes=5");
    // A failed multi rolls the stats back too.
    let failing = vec![
        mcreate("/app/m", 0),
        MultiOp::Check(CheckVersionRequest {
            path: "/none".into(),
            version: -1,
        }),
    ];
    h.req(A, Request::Multi(failing));
    assert_eq!(data(&mut h, stats), "count=3,bytes=5");
    assert_eq!(h.delete(A, "/app/c", -1), ErrorCode::Ok);
    assert_eq!(data(&mut h, stats), "count=2,bytes=4");
    assert_eq!(
        h.stat(stats).mzxid,
        created,
        "the server's rewrites are not versioned"
    );
    assert_eq!(
        data(&mut h, "/zookeeper/quota/app/zookeeper_limits"),
        limits
    );
    // The quota survives a snapshot; removing the limits node ends the tracking.
    h.zk = Zk::restore(&h.zk.snapshot(), Options::default()).unwrap();
    put(&mut h, "/app/e", "zzz");
    assert_eq!(data(&mut h, stats), "count=3,bytes=7");
    assert_eq!(
        h.delete(A, "/zookeeper/quota/app/zookeeper_limits", -1),
        ErrorCode::Ok
    );
    put(&mut h, "/app/f", "");
    assert_eq!(data(&mut h, stats), "count=3,bytes=7");
}

// ---------------------------------------------------------------- snapshots and determinism

#[test]
fn snapshot_round_trip_preserves_replicated_state() {
    let mut h = H::with(Options {
        extended_types: true,
        ..Options::default()
    });
    h.auth(A, "u:p");
    h.mk("/a");
    h.create2(A, "/a/e", 1);
    h.create_full(A, OpCode::CreateContainer, "/c", b"", open_acl(), 4, None);
    h.create_full(A, OpCode::CreateTtl, "/t", b"", open_acl(), 5, Some(50));
    h.create_full(
        A,
        OpCode::Create,
        "/acl",
        b"",
        vec![acl(perms::ALL, "auth", "")],
        0,
        None,
    );
    h.get(B, "/a", true);
    let bytes = h.zk.snapshot();
    let opts = h.zk.options().clone();
    let restored = Zk::restore(&bytes, opts.clone()).unwrap();
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.tree, h.zk.tree);
    assert_eq!(restored.sessions, h.zk.sessions);
    assert_eq!(restored.last_zxid(), h.zk.last_zxid());
    assert_eq!(restored.watch_count(), 0, "watches are not replicated");
    assert_eq!(
        restored.expired_containers_and_ttls(i64::MAX),
        h.zk.expired_containers_and_ttls(i64::MAX)
    );
    // The restored session keeps its auth: A can still read /acl.
    let mut h2 = H {
        zk: restored,
        next: h.next,
    };
    assert_eq!(h2.get(A, "/acl", false).err, ErrorCode::Ok);
    assert_eq!(h2.get(B, "/acl", false).err, ErrorCode::NoAuth);
    h2.op(A, Op::CloseSession);
    assert!(h2.zk.stat("/a/e").is_none());
}

#[test]
fn restore_rejects_garbage() {
    assert!(matches!(
        Zk::restore(&[], Options::default()),
        Err(super::SnapshotError::Decode(_))
    ));
    assert!(matches!(
        Zk::restore(&[7, 0], Options::default()),
        Err(super::SnapshotError::Version(7) | super::SnapshotError::Decode(_))
    ));
    let mut good = Zk::new(Options::default()).snapshot();
    good.truncate(good.len() - 1);
    assert!(Zk::restore(&good, Options::default()).is_err());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const PATHS: &[&str] = &[
        "/zookeeper/quota/a",
        "/zookeeper/quota/a/zookeeper_limits",
        "/zookeeper/quota/a/zookeeper_stats",
        "/a",
        "/a/b",
        "/a/b/c",
        "/b",
        "/a/",
        "/zookeeper",
        "/",
        "bad",
        "/a/b/",
    ];
    const SESSIONS: &[SessionId] = &[1, 2, 3];

    fn path() -> impl Strategy<Value = String> {
        prop::sample::select(PATHS).prop_map(String::from)
    }

    fn acl_list() -> impl Strategy<Value = Vec<Acl>> {
        prop_oneof![
            4 => Just(open_acl()),
            1 => Just(vec![acl(perms::ALL, "auth", "")]),
            1 => Just(vec![acl(perms::READ | perms::CREATE, "world", "anyone")]),
            1 => Just(vec![acl(perms::ALL, "digest", &generate_digest("u:p"))]),
            1 => Just(vec![]),
        ]
    }

    fn create() -> impl Strategy<Value = (OpCode, CreateRequest)> {
        (
            prop::sample::select(
                &[
                    OpCode::Create,
                    OpCode::Create2,
                    OpCode::CreateContainer,
                    OpCode::CreateTtl,
                ][..],
            ),
            path(),
            0..8i32,
            acl_list(),
            prop::option::of(-1..5i64),
        )
            .prop_map(|(op, path, flags, acl, ttl)| {
                (
                    op,
                    CreateRequest {
                        path,
                        data: Some(vec![flags as u8]),
                        acl,
                        flags,
                        ttl: if op == OpCode::CreateTtl { ttl } else { None },
                    },
                )
            })
    }

    fn multi_op() -> impl Strategy<Value = MultiOp> {
        prop_oneof![
            create().prop_map(|(op, req)| MultiOp::Create { op, req }),
            (path(), -1..3i32)
                .prop_map(|(path, version)| MultiOp::Delete(DeleteRequest { path, version })),
            (path(), -1..3i32).prop_map(|(path, version)| MultiOp::SetData(SetDataRequest {
                path,
                data: Some(vec![1, 2]),
                version
            })),
            (path(), -1..3i32)
                .prop_map(|(path, version)| MultiOp::Check(CheckVersionRequest { path, version })),
        ]
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            4 => create().prop_map(|(op, req)| Request::Create { op, req }),
            2 => (path(), -1..3i32).prop_map(|(path, version)| Request::Delete(DeleteRequest { path, version })),
            2 => (path(), -1..3i32).prop_map(|(path, version)| Request::SetData(SetDataRequest { path, data: Some(vec![9]), version })),
            1 => (path(), acl_list(), -1..2i32).prop_map(|(path, acl, version)| Request::SetAcl(SetAclRequest { path, acl, version })),
            2 => (path(), any::<bool>()).prop_map(|(path, watch)| Request::GetData(PathWatchRequest { path, watch })),
            2 => (path(), any::<bool>()).prop_map(|(path, watch)| Request::Exists(PathWatchRequest { path, watch })),
            2 => (path(), any::<bool>()).prop_map(|(path, watch)| Request::GetChildren2(PathWatchRequest { path, watch })),
            1 => path().prop_map(|path| Request::GetAcl(PathRequest { path })),
            1 => path().prop_map(|path| Request::DeleteContainer(PathRequest { path })),
            1 => path().prop_map(|path| Request::GetEphemerals(PathRequest { path })),
            1 => path().prop_map(|path| Request::GetAllChildrenNumber(PathRequest { path })),
            2 => prop::collection::vec(multi_op(), 0..4).prop_map(Request::Multi),
            1 => (path(), any::<bool>()).prop_map(|(path, r)| Request::AddWatch(AddWatchRequest { path, mode: if r { AddWatchMode::PersistentRecursive } else { AddWatchMode::Persistent } })),
            1 => (path(), prop::sample::select(&[WatcherType::Data, WatcherType::Children, WatcherType::Any][..])).prop_map(|(path, watcher_type)| Request::RemoveWatches(WatchesRequest { path, watcher_type })),
            1 => (0..20i64, prop::collection::vec(path(), 0..3)).prop_map(|(relative_zxid, p)| Request::SetWatches2(SetWatches { relative_zxid, data_watches: p.clone(), exist_watches: p.clone(), child_watches: p.clone(), persistent_watches: vec![], persistent_recursive_watches: p })),
            1 => Just(Request::WhoAmI),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => request().prop_map(Op::Request),
            1 => Just(Op::CloseSession),
            1 => Just(Op::CreateSession { timeout_ms: 4000, passwd: vec![1], client_ip: "127.0.0.1".into() }),
            1 => Just(Op::ReconnectSession { passwd: vec![1], client_ip: "10.0.0.2".into() }),
            1 => path().prop_map(|path| Op::DeleteContainer { path }),
            1 => prop::sample::select(&["u:p", "v:q"][..]).prop_map(|a| Op::AddAuth { scheme: "digest".into(), auth: a.as_bytes().to_vec() }),
        ]
    }

    fn commands() -> impl Strategy<Value = Vec<(SessionId, Op)>> {
        prop::collection::vec((prop::sample::select(SESSIONS), op()), 1..60)
    }

    fn run(zk: &mut Zk, next: &mut Zxid, session: SessionId, op: &Op) -> Applied {
        let zxid = if Zk::is_write(op) {
            *next += 1;
            *next
        } else {
            zk.last_zxid()
        };
        zk.apply(
            zxid,
            &Command {
                session,
                xid: 0,
                time_ms: zxid * 7,
                op: op.clone(),
            },
        )
    }

    fn fresh() -> Zk {
        let mut zk = Zk::new(Options {
            extended_types: true,
            ..Options::default()
        });
        for s in SESSIONS {
            zk.apply(
                0,
                &Command {
                    session: *s,
                    xid: 0,
                    time_ms: 0,
                    op: Op::CreateSession {
                        timeout_ms: 4000,
                        passwd: vec![1],
                        client_ip: "127.0.0.1".into(),
                    },
                },
            );
        }
        zk
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Two replicas fed the same commands agree on every reply, notification and snapshot.
        #[test]
        fn same_commands_same_everything(cmds in commands()) {
            let (mut x, mut y) = (fresh(), fresh());
            let (mut nx, mut ny) = (0, 0);
            for (s, op) in &cmds {
                let a = run(&mut x, &mut nx, *s, op);
                let b = run(&mut y, &mut ny, *s, op);
                prop_assert_eq!(a, b);
            }
            prop_assert_eq!(x.snapshot(), y.snapshot());
        }

        /// A replica restored from a snapshot mid-way gives the same replies (watches aside) and ends
        /// in the same state; the tree invariants hold after every command.
        #[test]
        fn restore_midway_converges(cmds in commands(), cut in 0usize..60) {
            let cut = cut.min(cmds.len());
            let mut x = fresh();
            let mut nx = 0;
            let mut y_bytes = None;
            let mut replies = Vec::new();
            for (i, (s, op)) in cmds.iter().enumerate() {
                if i == cut {
                    y_bytes = Some((x.snapshot(), nx));
                }
                let a = run(&mut x, &mut nx, *s, op);
                replies.push((a.err, a.response));
                check_invariants(&x);
            }
            let (bytes, mut ny) = y_bytes.unwrap_or((x.snapshot(), nx));
            let mut y = Zk::restore(&bytes, x.options().clone()).unwrap();
            for (i, (s, op)) in cmds.iter().enumerate().skip(cut) {
                let b = run(&mut y, &mut ny, *s, op);
                let watch_dependent = matches!(op, Op::Request(Request::RemoveWatches(_) | Request::CheckWatches(_)));
                if !watch_dependent {
                    prop_assert_eq!(&replies[i], &(b.err, b.response), "command {}", i);
                }
            }
            prop_assert_eq!(x.snapshot(), y.snapshot());
        }
    }

    fn check_invariants(zk: &Zk) {
        let restored =
            Zk::restore(&zk.snapshot(), zk.options().clone()).expect("snapshot restores");
        assert_eq!(
            restored.tree, zk.tree,
            "children and indexes are derivable from the nodes"
        );
    }
}
