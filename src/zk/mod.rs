//! The ZooKeeper service as a deterministic state machine: the data tree, the session table and the
//! watch registry, changed only by [`Zk::apply`] with ordered [`Command`]s. No I/O, no clock (the time
//! comes inside the command), no randomness, and every collection whose order reaches an output is a
//! `BTreeMap`/`BTreeSet`, so two replicas fed the same commands give the same replies, notifications
//! and snapshots.
//!
//! What `apply` does is what ZooKeeper 3.8's `PrepRequestProcessor` (validation, ACLs, versions,
//! sequential names), `DataTree` (stats, ephemerals, containers, TTLs, watch triggering) and
//! `FinalRequestProcessor` (reads, reply codes) do together, in the same order of checks, so the same
//! error wins when several apply.
//!
//! # API
//! - [`Zk::new`]`(Options)`, [`Zk::restore`]`(bytes, Options)`, [`Zk::snapshot`]: replicated state only
//!   (tree, sessions with their auth ids, last zxid); watches are local to a replica and not included.
//! - [`Zk::is_write`]`(&Op)`: whether the command takes a fresh zxid (ZooKeeper: every txn, failed ones
//!   included: create*, delete, deleteContainer, setData, setACL, check, multi, reconfig,
//!   createSession, closeSession, and the node's own [`Op::DeleteContainer`]). Reads, addauth and
//!   reconnects do not.
//! - [`Zk::apply`]`(zxid, &Command) -> Applied`: `zxid` is the executor's new zxid for a write and the
//!   last zxid for anything else. [`Applied`] holds the reply error code and body exactly as ZooKeeper
//!   puts them on the wire (no body when `err != Ok`, except a multi, whose header says Ok and whose
//!   per-op results carry the error), and the watch notifications the command triggered, already
//!   matched to sessions, in the order ZooKeeper sends them (to be delivered before the reply).
//! - [`Zk::sessions`], [`Zk::last_zxid`], [`Zk::expired_containers_and_ttls`] (what ZooKeeper's
//!   `ContainerManager` would delete: order each as an [`Op::DeleteContainer`]), [`Zk::drop_watches`]
//!   (local: a connection is gone).
//!
//! # Differences from ZooKeeper by design
//! - Children and getEphemerals lists are sorted (ZooKeeper returns Java `HashSet` order).
//! - Sessions are table entries here; auth ids belong to the session and are reset to the client's
//!   `ip` id by a reconnect (in ZooKeeper they belong to the connection, and clients resend addauth).
//! - A lone `check` (opcode 13) answers the node's stat; ZooKeeper 3.8 fails to serialize its reply.
//! - addWatch answers `Response::Empty`; ZooKeeper's body is an `ErrorResponse(0)` (4 zero bytes),
//!   which the encoder has to write.
//! - Quota stats nodes are kept up to date as `DataTree` does, but not recomputed on restore
//!   (ZooKeeper recounts on load), so a restored replica never diverges from one that did not.
//! - Watch events are filtered by the node's READ ACL, as ZooKeeper does since 3.8.4.

mod acl;
mod inspect;
mod owned;
mod path;
mod snapshot;
mod tree;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use protocol::{
    perms, Acl, CreateMode, CreateRequest, ErrorCode, EventType, Id, KeeperState, MultiOp,
    MultiResult, OpCode, Request, Response, SetWatches, Stat, WatcherEvent, WatcherType,
};

pub use acl::{generate_digest, open_acl};
pub use owned::OwnedFields;
pub use path::is_valid as is_valid_path;
pub use snapshot::SnapshotError;
pub use tree::TTL_MAX;

use tree::{EphemeralType, Tree, Undo};
use watch::{Manager, Mode};

/// A session id, chosen by the front end.
pub type SessionId = i64;
/// A ZooKeeper transaction id.
pub type Zxid = i64;

/// Service options; every replica must use the same ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `zookeeper.extendedTypesEnabled`: TTL nodes. Off: creating one answers `Unimplemented`.
    pub extended_types: bool,
    /// `zookeeper.DigestAuthenticationProvider.superDigest`, `"super:<base64 sha1>"`: a digest addauth
    /// that produces exactly this id also grants the `super` id, which passes every ACL.
    pub super_digest: Option<String>,
    /// `znode.container.maxNeverUsedIntervalMs`: a container that never had a child becomes a deletion
    /// candidate this long after its last modification; 0 (the default) never.
    pub container_max_never_used_ms: i64,
}

/// One ordered command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub session: SessionId,
    pub xid: i32,
    /// Stamped once before ordering (ctime/mtime of what this command writes); never read from a clock.
    pub time_ms: i64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new session with the front end's id (an id already in the table is left as it is). Its auth
    /// ids start as `ip:<client_ip>`.
    CreateSession {
        timeout_ms: i32,
        passwd: Vec<u8>,
        client_ip: String,
    },
    /// `Ok` if the session exists and the password matches, else `SessionExpired`. Resets the auth ids
    /// to `ip:<client_ip>` and drops the session's watches (they belonged to the old connection).
    ReconnectSession { passwd: Vec<u8>, client_ip: String },
    /// Close or expiry: deletes the session's ephemerals (firing their watches, the closing session's
    /// own included), then the session and its watches.
    CloseSession,
    /// addauth: `digest` adds `digest:user:base64(sha1(user:password))` (and `super` on a superDigest
    /// match), `ip` adds the client address; any other scheme answers `AuthFailed`.
    AddAuth { scheme: String, auth: Vec<u8> },
    /// The node's own deletion of a [`Zk::expired_containers_and_ttls`] candidate (ZooKeeper's
    /// `ContainerManager`): no session or ACL check; refuses a node with children (`NotEmpty`) or a
    /// session ephemeral (`BadVersion`), and deletes anything else.
    DeleteContainer { path: String },
    /// Any other client request. A client's own deleteContainer (opcode 20) answers `BadArguments`,
    /// as in ZooKeeper, whose Prep reads the request header bytes as part of that path.
    Request(Request),
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `ReplyHeader.err`.
    pub err: ErrorCode,
    /// The reply body: `None` when ZooKeeper sends none (`err != Ok`, session commands);
    /// `Some(Response::Empty)` for a header-only success.
    pub response: Option<Response>,
    /// Watch events, each for one session, in sending order.
    pub notifications: Vec<(SessionId, WatcherEvent)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    timeout_ms: i32,
    passwd: Vec<u8>,
    client_ip: String,
    /// Invariant: no duplicates (ZooKeeper keeps a set); insertion order.
    auth: Vec<Id>,
}

impl Session {
    fn new(timeout_ms: i32, passwd: Vec<u8>, client_ip: String) -> Session {
        let auth = vec![Id {
            scheme: "ip".to_string(),
            id: client_ip.clone(),
        }];
        Session {
            timeout_ms,
            passwd,
            client_ip,
            auth,
        }
    }
}

/// A tree change whose watches fire once the command (a whole multi) has succeeded.
#[derive(Debug)]
enum Change {
    Created {
        path: String,
        acl: Vec<Acl>,
        parent: String,
        parent_acl: Vec<Acl>,
    },
    Deleted {
        path: String,
        acl: Vec<Acl>,
        parent: String,
        parent_acl: Vec<Acl>,
    },
    DataChanged {
        path: String,
        acl: Vec<Acl>,
    },
}

/// The caller of one command.
struct Caller {
    session: SessionId,
    /// Whether the session is in the table (else `SessionExpired` where Prep checks sessions).
    live: bool,
    auth: Vec<Id>,
    zxid: Zxid,
    time: i64,
}

impl Caller {
    fn check_session(&self) -> Result<(), ErrorCode> {
        if self.live {
            Ok(())
        } else {
            Err(ErrorCode::SessionExpired)
        }
    }
}

type Reply = Result<Response, ErrorCode>;

/// The replicated ZooKeeper state plus this replica's watches.
///
/// Invariant: `last_zxid` is the largest zxid any applied write carried; watches only name sessions
/// that were live when they were registered, and a closed session has none.
pub struct Zk {
    opts: Options,
    tree: Tree,
    sessions: BTreeMap<SessionId, Session>,
    last_zxid: Zxid,
    data_watches: Manager,
    child_watches: Manager,
}

impl Zk {
    pub fn new(opts: Options) -> Zk {
        Zk {
            tree: Tree::new(opts.extended_types),
            opts,
            sessions: BTreeMap::new(),
            last_zxid: 0,
            data_watches: Manager::default(),
            child_watches: Manager::default(),
        }
    }

    /// This tree is one partition of several: a recursive data watch covers other partitions'
    /// znodes, so a command only this partition sees must not change its mode. (A recursive entry
    /// among child watches never fires, so 3.8's replacement there is kept.)
    pub fn set_partitioned(&mut self) {
        self.data_watches.keep_recursive_under_standard();
    }

    /// Whether `op` takes a new zxid.
    pub fn is_write(op: &Op) -> bool {
        match op {
            Op::CreateSession { .. } | Op::CloseSession | Op::DeleteContainer { .. } => true,
            Op::ReconnectSession { .. } | Op::AddAuth { .. } => false,
            Op::Request(r) => matches!(
                r,
                Request::Create { .. }
                    | Request::Delete(_)
                    | Request::DeleteContainer(_)
                    | Request::SetData(_)
                    | Request::SetAcl(_)
                    | Request::Check(_)
                    | Request::Multi(_)
                    | Request::Reconfig(_)
                    | Request::CloseSession
            ),
        }
    }

    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Live sessions and their timeouts, by id.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, i32)> + '_ {
        self.sessions.iter().map(|(id, s)| (*id, s.timeout_ms))
    }

    pub fn has_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// The client's view of a node's stat, if it exists.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.tree.stat(path)
    }

    /// The number of znodes, the root and the reserved `/zookeeper` nodes included.
    pub fn node_count(&self) -> usize {
        self.tree.len()
    }

    /// The number of registered (session, path) watches, data and child managers together.
    pub fn watch_count(&self) -> usize {
        self.data_watches.len() + self.child_watches.len()
    }

    /// Forgets a session's watches (its connection is gone); local, not a command.
    pub fn drop_watches(&mut self, session: SessionId) {
        self.data_watches.remove_session(session);
        self.child_watches.remove_session(session);
    }

    /// `ContainerManager.getCandidates`: empty containers that have had a child (or, with
    /// `container_max_never_used_ms`, were last modified longer ago than that), and childless TTL nodes
    /// not modified for longer than their TTL. Sorted.
    pub fn expired_containers_and_ttls(&self, now_ms: i64) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        for p in self.tree.containers() {
            let Some(n) = self.tree.get(p) else { continue };
            if !n.children.is_empty() {
                continue;
            }
            let never_used = self.opts.container_max_never_used_ms;
            if n.stat.cversion > 0
                || (never_used != 0 && now_ms.wrapping_sub(n.stat.mtime) > never_used)
            {
                out.insert(p.clone());
            }
        }
        for p in self.tree.ttls() {
            let Some(n) = self.tree.get(p) else { continue };
            if !n.children.is_empty()
                || EphemeralType::of(n.stat.ephemeral_owner, self.tree.extended())
                    != EphemeralType::Ttl
            {
                continue;
            }
            let ttl = tree::ttl_of(n.stat.ephemeral_owner);
            if ttl != 0 && now_ms.wrapping_sub(n.stat.mtime) > ttl {
                out.insert(p.clone());
            }
        }
        out.into_iter().collect()
    }

    /// Applies one ordered command. Never panics on any input.
    pub fn apply(&mut self, zxid: Zxid, cmd: &Command) -> Applied {
        let session = self.sessions.get(&cmd.session);
        let caller = Caller {
            session: cmd.session,
            live: session.is_some(),
            auth: session.map(|s| s.auth.clone()).unwrap_or_default(),
            zxid,
            time: cmd.time_ms,
        };
        let mut notes = Vec::new();
        let (err, response) = match &cmd.op {
            Op::CreateSession {
                timeout_ms,
                passwd,
                client_ip,
            } => {
                self.sessions.entry(cmd.session).or_insert_with(|| {
                    Session::new(*timeout_ms, passwd.clone(), client_ip.clone())
                });
                (ErrorCode::Ok, None)
            }
            Op::ReconnectSession { passwd, client_ip } => {
                (self.reconnect(cmd.session, passwd, client_ip), None)
            }
            Op::CloseSession => split(self.close_session(&caller, &mut notes)),
            Op::AddAuth { scheme, auth } => split(self.add_auth(cmd.session, scheme, auth)),
            Op::DeleteContainer { path } => {
                let mut changes = Vec::new();
                let reply = self.delete_container(&caller, path, &mut changes);
                self.fire(changes, &mut notes);
                split(reply.map(|()| Response::Empty))
            }
            Op::Request(r) => match (r, self.request(&caller, r, &mut notes)) {
                // A write inside multiRead: the error, then an empty result list.
                (Request::MultiRead(_), Err(ErrorCode::MarshallingError)) => (
                    ErrorCode::MarshallingError,
                    Some(Response::Multi(Vec::new())),
                ),
                (_, reply) => split(reply),
            },
        };
        if Self::is_write(&cmd.op) && zxid > self.last_zxid {
            self.last_zxid = zxid;
        }
        Applied {
            err,
            response,
            notifications: notes,
        }
    }

    fn reconnect(&mut self, id: SessionId, passwd: &[u8], client_ip: &str) -> ErrorCode {
        match self.sessions.get_mut(&id) {
            Some(s) if s.passwd == passwd => {
                *s = Session::new(
                    s.timeout_ms,
                    std::mem::take(&mut s.passwd),
                    client_ip.to_string(),
                );
                self.drop_watches(id);
                ErrorCode::Ok
            }
            _ => ErrorCode::SessionExpired,
        }
    }

    fn add_auth(&mut self, id: SessionId, scheme: &str, auth: &[u8]) -> Reply {
        let super_digest = self.opts.super_digest.as_deref();
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(ErrorCode::SessionExpired);
        };
        for new in acl::authenticate(scheme, auth, &s.client_ip, super_digest)? {
            if !s.auth.contains(&new) {
                s.auth.push(new);
            }
        }
        Ok(Response::Empty)
    }

    fn close_session(
        &mut self,
        caller: &Caller,
        notes: &mut Vec<(SessionId, WatcherEvent)>,
    ) -> Reply {
        let paths: Vec<String> = self.tree.ephemerals_of(caller.session).cloned().collect();
        let mut changes = Vec::new();
        for p in paths {
            self.delete_node(&p, caller.zxid, None, &mut changes);
        }
        self.fire(changes, notes);
        self.sessions.remove(&caller.session);
        self.drop_watches(caller.session);
        Ok(Response::Empty)
    }

    fn request(
        &mut self,
        c: &Caller,
        r: &Request,
        notes: &mut Vec<(SessionId, WatcherEvent)>,
    ) -> Reply {
        let mut changes = Vec::new();
        let reply = match r {
            Request::Create { op, req } => {
                self.create(c, *op, req, None, &mut changes)
                    .map(|(path, stat)| {
                        if *op == OpCode::Create {
                            Response::Create { path }
                        } else {
                            Response::Create2 { path, stat }
                        }
                    })
            }
            Request::Delete(d) => self
                .delete(c, &d.path, d.version, None, &mut changes)
                .map(|()| Response::Empty),
            Request::DeleteContainer(_) => Err(ErrorCode::BadArguments),
            Request::SetData(s) => self
                .set_data(c, &s.path, &s.data, s.version, None, &mut changes)
                .map(Response::Stat),
            Request::SetAcl(s) => self
                .set_acl(c, &s.path, &s.acl, s.version)
                .map(Response::Stat),
            Request::Check(k) => self.check(c, &k.path, k.version).map(Response::Stat),
            Request::Multi(ops) => self.multi(c, ops, &mut changes),
            Request::MultiRead(ops) => self.multi_read(c, ops),
            Request::Reconfig(_) => Err(ErrorCode::ReconfigDisabled),
            Request::Exists(e) => self.exists(c, &e.path, e.watch),
            Request::GetData(g) => self
                .get_data(c, &g.path, g.watch)
                .map(|(data, stat)| Response::GetData { data, stat }),
            Request::GetChildren(g) => self
                .get_children(c, &g.path, g.watch)
                .map(|(children, _)| Response::GetChildren { children }),
            Request::GetChildren2(g) => self
                .get_children(c, &g.path, g.watch)
                .map(|(children, stat)| Response::GetChildren2 { children, stat }),
            Request::GetAcl(g) => self.get_acl(c, &g.path),
            Request::Sync(s) => c.check_session().map(|()| Response::Sync {
                path: s.path.clone(),
            }),
            Request::Ping => c.check_session().map(|()| Response::Empty),
            Request::GetAllChildrenNumber(g) => self.get_all_children_number(c, &g.path),
            Request::GetEphemerals(g) => self.get_ephemerals(c, &g.path),
            Request::WhoAmI => c.check_session().map(|()| Response::WhoAmI {
                client_info: acl::client_infos(&c.auth),
            }),
            Request::SetWatches(w) => c.check_session().map(|()| {
                let v1 = SetWatches {
                    persistent_watches: vec![],
                    persistent_recursive_watches: vec![],
                    ..w.clone()
                };
                self.set_watches(c.session, &v1, notes);
                Response::Empty
            }),
            Request::SetWatches2(w) => c.check_session().map(|()| {
                self.set_watches(c.session, w, notes);
                Response::Empty
            }),
            Request::AddWatch(a) => c.check_session().map(|()| {
                let mode = match a.mode {
                    protocol::AddWatchMode::Persistent => Mode::Persistent,
                    protocol::AddWatchMode::PersistentRecursive => Mode::PersistentRecursive,
                };
                self.data_watches.add(&a.path, c.session, mode);
                self.child_watches.add(&a.path, c.session, mode);
                // FinalRequestProcessor answers addWatch with an ErrorResponse body holding 0.
                Response::Error { err: 0 }
            }),
            Request::CheckWatches(w) => c.check_session().and_then(|()| {
                let (data, child) = (&self.data_watches, &self.child_watches);
                let found = match w.watcher_type {
                    WatcherType::Children => child.contains(&w.path, c.session)?,
                    WatcherType::Data => data.contains(&w.path, c.session)?,
                    WatcherType::Any => {
                        let child = child.contains(&w.path, c.session)?;
                        data.contains(&w.path, c.session)? || child
                    }
                };
                if found {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }),
            Request::RemoveWatches(w) => c.check_session().and_then(|()| {
                let removed = match w.watcher_type {
                    WatcherType::Children => self.child_watches.remove(&w.path, c.session),
                    WatcherType::Data => self.data_watches.remove(&w.path, c.session),
                    WatcherType::Any => {
                        let child = self.child_watches.remove(&w.path, c.session);
                        self.data_watches.remove(&w.path, c.session) || child
                    }
                };
                if removed {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }),
            Request::Auth(a) => self.add_auth(c.session, &a.scheme, &a.auth),
            Request::Sasl { .. } => Err(ErrorCode::AuthFailed),
            Request::CloseSession => return self.close_session(c, notes),
        };
        self.fire(changes, notes);
        reply
    }

    // ---- writes (Prep checks in ZooKeeper's order, then the DataTree change) ----

    fn create(
        &mut self,
        c: &Caller,
        op: OpCode,
        req: &CreateRequest,
        undo: Option<&mut Vec<Undo>>,
        changes: &mut Vec<Change>,
    ) -> Result<(String, Stat), ErrorCode> {
        let mode = CreateMode::from_i32(req.flags).ok_or(ErrorCode::BadArguments)?;
        if mode.is_ttl() && !self.opts.extended_types {
            return Err(ErrorCode::Unimplemented);
        }
        // Only createTTL carries a TTL; ZooKeeper uses -1 for the others.
        let ttl = if op == OpCode::CreateTtl {
            req.ttl.unwrap_or(-1)
        } else {
            -1
        };
        let ttl_owner = tree::ttl_owner(ttl);
        if mode.is_ttl() && ttl_owner.is_none()
            || !mode.is_ttl() && (ttl >= 0 || op == OpCode::CreateTtl)
        {
            return Err(ErrorCode::BadArguments);
        }
        c.check_session()?;
        let parent = path::parent_for_prep(&req.path).ok_or(ErrorCode::BadArguments)?;
        let acl = acl::fixup(&req.acl, &c.auth)?;
        let parent_node = self.tree.get(parent).ok_or(ErrorCode::NoNode)?;
        acl::check(&parent_node.acl, perms::CREATE, &c.auth)?;
        let mut path = req.path.clone();
        if mode.is_sequential() {
            path.push_str(&format!("{:010}", parent_node.stat.cversion));
        }
        if !path::is_valid(&path) {
            return Err(ErrorCode::BadArguments);
        }
        if self.tree.get(&path).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        if EphemeralType::of(parent_node.stat.ephemeral_owner, self.tree.extended())
            == EphemeralType::Normal
        {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let owner = match (op, ttl_owner) {
            (OpCode::CreateContainer, _) => tree::CONTAINER_OWNER,
            (OpCode::CreateTtl, Some(owner)) => owner,
            _ if mode.is_ephemeral() => c.session,
            _ => 0,
        };
        let parent_acl = parent_node.acl.clone();
        self.tree.create(
            &path,
            req.data.clone(),
            acl.clone(),
            owner,
            c.zxid,
            c.time,
            undo,
        );
        let stat = self.tree.stat(&path).expect("just created");
        changes.push(Change::Created {
            path: path.clone(),
            acl,
            parent: watch_parent(parent),
            parent_acl,
        });
        Ok((path, stat))
    }

    fn delete(
        &mut self,
        c: &Caller,
        path: &str,
        version: i32,
        undo: Option<&mut Vec<Undo>>,
        changes: &mut Vec<Change>,
    ) -> Result<(), ErrorCode> {
        c.check_session()?;
        let parent = prep_parent(path)?;
        let parent_node = self.tree.get(parent).ok_or(ErrorCode::NoNode)?;
        acl::check(&parent_node.acl, perms::DELETE, &c.auth)?;
        let node = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        check_version(node.stat.version, version)?;
        if !node.children.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        self.delete_node(path, c.zxid, undo, changes);
        Ok(())
    }

    /// deleteContainer: no session or ACL check; refuses nodes with children and session ephemerals.
    fn delete_container(
        &mut self,
        c: &Caller,
        path: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(), ErrorCode> {
        let parent = prep_parent(path)?;
        let node = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        if !node.children.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        if EphemeralType::of(node.stat.ephemeral_owner, self.tree.extended())
            == EphemeralType::Normal
        {
            return Err(ErrorCode::BadVersion);
        }
        self.tree.get(parent).ok_or(ErrorCode::NoNode)?;
        self.delete_node(path, c.zxid, None, changes);
        Ok(())
    }

    fn delete_node(
        &mut self,
        path: &str,
        zxid: Zxid,
        undo: Option<&mut Vec<Undo>>,
        changes: &mut Vec<Change>,
    ) {
        let parent = &path[..path.rfind('/').expect("validated")];
        let parent_acl = self
            .tree
            .get(parent)
            .map(|n| n.acl.clone())
            .unwrap_or_default();
        let node = self.tree.delete(path, zxid, undo);
        changes.push(Change::Deleted {
            path: path.to_string(),
            acl: node.acl,
            parent: watch_parent(parent),
            parent_acl,
        });
    }

    fn set_data(
        &mut self,
        c: &Caller,
        path: &str,
        data: &Option<Vec<u8>>,
        version: i32,
        undo: Option<&mut Vec<Undo>>,
        changes: &mut Vec<Change>,
    ) -> Result<Stat, ErrorCode> {
        c.check_session()?;
        if !path::is_valid(path) {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::WRITE, &c.auth)?;
        let new_version = check_version(node.stat.version, version)?;
        let acl = node.acl.clone();
        let stat = self
            .tree
            .set_data(path, data.clone(), new_version, c.zxid, c.time, undo);
        changes.push(Change::DataChanged {
            path: path.to_string(),
            acl,
        });
        Ok(stat)
    }

    fn set_acl(
        &mut self,
        c: &Caller,
        path: &str,
        acl: &[Acl],
        version: i32,
    ) -> Result<Stat, ErrorCode> {
        c.check_session()?;
        if !path::is_valid(path) {
            return Err(ErrorCode::BadArguments);
        }
        let acl = acl::fixup(acl, &c.auth)?;
        let node = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::ADMIN, &c.auth)?;
        let new_aversion = check_version(node.stat.aversion, version)?;
        Ok(self.tree.set_acl(path, acl, new_aversion))
    }

    /// check (alone or in a multi). Alone, ZooKeeper answers with a SetDataResponse whose stat it
    /// never fills; Volery sends the node's stat.
    fn check(&self, c: &Caller, path: &str, version: i32) -> Result<Stat, ErrorCode> {
        c.check_session()?;
        if !path::is_valid(path) {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::READ, &c.auth)?;
        check_version(node.stat.version, version)?;
        Ok(node.client_stat(self.tree.extended()))
    }

    /// multi: the ops run in order against the tree; on the first failure everything is rolled back,
    /// no watch fires, and the results are `Error{0}` for the ops before it, `Error{code}` for it and
    /// `Error{RuntimeInconsistency}` after it. A read op inside a multi is a `MarshallingError`.
    fn multi(&mut self, c: &Caller, ops: &[MultiOp], changes: &mut Vec<Change>) -> Reply {
        if ops
            .iter()
            .any(|o| matches!(o, MultiOp::GetChildren(_) | MultiOp::GetData(_)))
        {
            return Err(ErrorCode::MarshallingError);
        }
        let mut undo = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        let mut failure = None;
        for (i, op) in ops.iter().enumerate() {
            let u = Some(&mut undo);
            let r = match op {
                MultiOp::Create { op, req } => {
                    // ZooKeeper 3.8.0 answers every create inside a multi, create2 included, with
                    // the path only (ZOOKEEPER-4026).
                    self.create(c, *op, req, u, changes)
                        .map(|(path, _)| MultiResult::Create { path })
                }
                MultiOp::Delete(d) => self
                    .delete(c, &d.path, d.version, u, changes)
                    .map(|()| MultiResult::Delete),
                MultiOp::SetData(s) => self
                    .set_data(c, &s.path, &s.data, s.version, u, changes)
                    .map(|stat| MultiResult::SetData { stat }),
                MultiOp::Check(k) => self
                    .check(c, &k.path, k.version)
                    .map(|_| MultiResult::Check),
                MultiOp::GetChildren(_) | MultiOp::GetData(_) => unreachable!("rejected above"),
            };
            match r {
                Ok(res) => results.push(res),
                Err(e) => {
                    failure = Some((i, e));
                    break;
                }
            }
        }
        if let Some((failed, e)) = failure {
            self.tree.rollback(undo);
            changes.clear();
            results = (0..ops.len())
                .map(|i| MultiResult::Error {
                    err: match i.cmp(&failed) {
                        std::cmp::Ordering::Less => ErrorCode::Ok.as_i32(),
                        std::cmp::Ordering::Equal => e.as_i32(),
                        std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency.as_i32(),
                    },
                })
                .collect();
        }
        Ok(Response::Multi(results))
    }

    // ---- reads (FinalRequestProcessor) ----

    fn multi_read(&mut self, c: &Caller, ops: &[MultiOp]) -> Reply {
        c.check_session()?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let r = match op {
                MultiOp::GetData(g) => self
                    .get_data(c, &g.path, false)
                    .map(|(data, stat)| MultiResult::GetData { data, stat }),
                MultiOp::GetChildren(g) => self
                    .get_children(c, &g.path, false)
                    .map(|(children, _)| MultiResult::GetChildren { children }),
                _ => return Err(ErrorCode::MarshallingError),
            };
            results.push(r.unwrap_or_else(|e| MultiResult::Error { err: e.as_i32() }));
        }
        Ok(Response::Multi(results))
    }

    fn exists(&mut self, c: &Caller, path: &str, watch: bool) -> Reply {
        c.check_session()?;
        if path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        // FinalRequestProcessor does not check exists against the ACL.
        if watch {
            self.data_watches.add(path, c.session, Mode::Standard);
        }
        self.tree
            .stat(path)
            .map(Response::Stat)
            .ok_or(ErrorCode::NoNode)
    }

    fn readable(&self, c: &Caller, path: &str) -> Result<&tree::Node, ErrorCode> {
        c.check_session()?;
        let n = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&n.acl, perms::READ, &c.auth)?;
        Ok(n)
    }

    fn get_data(
        &mut self,
        c: &Caller,
        path: &str,
        watch: bool,
    ) -> Result<(Option<Vec<u8>>, Stat), ErrorCode> {
        let n = self.readable(c, path)?;
        let out = (n.data.clone(), n.client_stat(self.tree.extended()));
        if watch {
            self.data_watches.add(path, c.session, Mode::Standard);
        }
        Ok(out)
    }

    fn get_children(
        &mut self,
        c: &Caller,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Stat), ErrorCode> {
        let n = self.readable(c, path)?;
        let out = (
            n.children.iter().cloned().collect(),
            n.client_stat(self.tree.extended()),
        );
        if watch {
            self.child_watches.add(path, c.session, Mode::Standard);
        }
        Ok(out)
    }

    /// getACL needs READ or ADMIN; without ADMIN, digest ids come back as `user:x`.
    fn get_acl(&self, c: &Caller, path: &str) -> Reply {
        c.check_session()?;
        let n = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        acl::check(&n.acl, perms::READ | perms::ADMIN, &c.auth)?;
        let stat = n.client_stat(self.tree.extended());
        let acl = match acl::check(&n.acl, perms::ADMIN, &c.auth) {
            Ok(()) => n.acl.clone(),
            Err(_) => acl::mask_digests(&n.acl),
        };
        Ok(Response::GetAcl { acl, stat })
    }

    fn get_all_children_number(&self, c: &Caller, path: &str) -> Reply {
        self.readable(c, path)?;
        Ok(Response::GetAllChildrenNumber {
            total: self.tree.all_children_number(path),
        })
    }

    /// getEphemerals: the caller's ephemerals, all of them for an empty or `/` prefix (after Java's
    /// `trim`), else those starting with the prefix. Sorted.
    fn get_ephemerals(&self, c: &Caller, prefix: &str) -> Reply {
        c.check_session()?;
        let trimmed = prefix.trim_matches(|ch: char| ch <= ' ');
        let all = trimmed.is_empty() || trimmed == "/";
        let ephemerals = self
            .tree
            .ephemerals_of(c.session)
            .filter(|p| all || p.starts_with(prefix))
            .cloned()
            .collect();
        Ok(Response::GetEphemerals { ephemerals })
    }

    // ---- watches ----

    /// `DataTree.setWatches`: re-registers watches after a reconnect, or fires at once what the client
    /// missed since `relative_zxid`.
    fn set_watches(
        &mut self,
        session: SessionId,
        w: &SetWatches,
        notes: &mut Vec<(SessionId, WatcherEvent)>,
    ) {
        let rel = w.relative_zxid;
        let mut note = |ty: EventType, path: &str| notes.push((session, event(ty, path)));
        for p in &w.data_watches {
            match self.tree.get(p) {
                None => note(EventType::NodeDeleted, p),
                Some(n) if n.stat.mzxid > rel => note(EventType::NodeDataChanged, p),
                Some(_) => self.data_watches.add(p, session, Mode::Standard),
            }
        }
        for p in &w.exist_watches {
            match self.tree.get(p) {
                Some(_) => note(EventType::NodeCreated, p),
                None => self.data_watches.add(p, session, Mode::Standard),
            }
        }
        for p in &w.child_watches {
            match self.tree.get(p) {
                None => note(EventType::NodeDeleted, p),
                Some(n) if n.stat.pzxid > rel => note(EventType::NodeChildrenChanged, p),
                Some(_) => self.child_watches.add(p, session, Mode::Standard),
            }
        }
        for (paths, mode) in [
            (&w.persistent_watches, Mode::Persistent),
            (&w.persistent_recursive_watches, Mode::PersistentRecursive),
        ] {
            for p in paths {
                self.child_watches.add(p, session, mode);
                self.data_watches.add(p, session, mode);
            }
        }
    }

    /// Fires the watches of applied changes, in order (`DataTree.createNode`/`deleteNode`/`setData`).
    /// A session only receives an event if the node's ACL lets it READ (ZooKeeper 3.8.4+); a one-shot
    /// watch is consumed either way.
    fn fire(&mut self, changes: Vec<Change>, notes: &mut Vec<(SessionId, WatcherEvent)>) {
        for change in changes {
            match change {
                Change::Created {
                    path,
                    acl,
                    parent,
                    parent_acl,
                } => {
                    self.fire_data(&path, &acl, EventType::NodeCreated, notes);
                    self.fire_parent(&parent, &parent_acl, notes);
                }
                Change::Deleted {
                    path,
                    acl,
                    parent,
                    parent_acl,
                } => {
                    let data_hit = self.fire_data(&path, &acl, EventType::NodeDeleted, notes);
                    let child_hit = self.child_watches.trigger(&path, EventType::NodeDeleted);
                    let child_only = child_hit.difference(&data_hit);
                    self.deliver(child_only, &acl, EventType::NodeDeleted, &path, notes);
                    self.fire_parent(&parent, &parent_acl, notes);
                }
                Change::DataChanged { path, acl } => {
                    self.fire_data(&path, &acl, EventType::NodeDataChanged, notes);
                }
            }
        }
    }

    /// Fires the data (and exist) watches on `path`; returns the sessions they named.
    fn fire_data(
        &mut self,
        path: &str,
        acl: &[Acl],
        ty: EventType,
        notes: &mut Vec<(SessionId, WatcherEvent)>,
    ) -> BTreeSet<SessionId> {
        let hit = self.data_watches.trigger(path, ty);
        self.deliver(hit.iter(), acl, ty, path, notes);
        hit
    }

    /// Fires NodeChildrenChanged on the parent of a created or deleted node.
    fn fire_parent(
        &mut self,
        parent: &str,
        parent_acl: &[Acl],
        notes: &mut Vec<(SessionId, WatcherEvent)>,
    ) {
        let ty = EventType::NodeChildrenChanged;
        let hit = self.child_watches.trigger(parent, ty);
        self.deliver(hit.iter(), parent_acl, ty, parent, notes);
    }

    fn deliver<'a>(
        &self,
        sessions: impl Iterator<Item = &'a SessionId>,
        acl: &[Acl],
        ty: EventType,
        path: &str,
        notes: &mut Vec<(SessionId, WatcherEvent)>,
    ) {
        for s in sessions {
            let auth = self
                .sessions
                .get(s)
                .map(|x| x.auth.as_slice())
                .unwrap_or(&[]);
            if acl::check(acl, perms::READ, auth).is_ok() {
                notes.push((*s, event(ty, path)));
            }
        }
    }
}

fn split(reply: Reply) -> (ErrorCode, Option<Response>) {
    match reply {
        Ok(r) => (ErrorCode::Ok, Some(r)),
        Err(e) => (e, None),
    }
}

fn event(ty: EventType, path: &str) -> WatcherEvent {
    WatcherEvent {
        event_type: ty.as_i32(),
        state: KeeperState::SyncConnected.as_i32(),
        path: path.to_string(),
    }
}

/// The path child watches of a parent are keyed by (ZooKeeper turns the root alias `""` into `/`).
fn watch_parent(parent: &str) -> String {
    path::key(parent).to_string()
}

/// `getParentPathAndValidate`: delete and deleteContainer refuse paths without `/`, with NUL, and the
/// reserved `/`, `/zookeeper`, `/zookeeper/quota`, `/zookeeper/config`.
fn prep_parent(path: &str) -> Result<&str, ErrorCode> {
    if Tree::is_special(path) {
        return Err(ErrorCode::BadArguments);
    }
    path::parent_for_prep(path).ok_or(ErrorCode::BadArguments)
}

/// `checkAndIncVersion`: -1 matches any version; returns the next version.
fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}
