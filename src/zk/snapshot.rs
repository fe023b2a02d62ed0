//! The replicated state in bytes: every znode (path, data, ACL, persisted stat) in path order, every
//! session (id, timeout, password, client address, auth ids) in id order, and the last zxid. postcard
//! encoding behind a version number. Watches are replica-local and not included.

use serde::{Deserialize, Serialize};

use protocol::{Acl, Id};

use super::tree::{Node, StatPersisted, Tree};
use super::watch::Manager;
use super::{Options, Session, SessionId, Zk, Zxid};

const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot (truncated, corrupt).
    #[error("snapshot does not decode: {0}")]
    Decode(#[from] postcard::Error),
    /// Written by an incompatible version of Volery.
    #[error("unsupported snapshot version {0}")]
    Version(u32),
    /// Decodes, but breaks a tree invariant (a node without parent, an invalid path).
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(String),
}

#[derive(Serialize, Deserialize)]
struct SnapStat {
    czxid: i64,
    mzxid: i64,
    ctime: i64,
    mtime: i64,
    version: i32,
    cversion: i32,
    aversion: i32,
    ephemeral_owner: i64,
    pzxid: i64,
}

#[derive(Serialize, Deserialize)]
struct SnapNode {
    path: String,
    data: Option<Vec<u8>>,
    /// (perms, scheme, id)
    acl: Vec<(i32, String, String)>,
    stat: SnapStat,
}

#[derive(Serialize, Deserialize)]
struct SnapSession {
    id: SessionId,
    timeout_ms: i32,
    passwd: Vec<u8>,
    client_ip: String,
    /// (scheme, id)
    auth: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    last_zxid: Zxid,
    nodes: Vec<SnapNode>,
    sessions: Vec<SnapSession>,
}

impl Zk {
    /// The replicated state; equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let nodes = self
            .tree
            .nodes()
            .map(|(path, n)| {
                let s = n.stat;
                SnapNode {
                    path: path.clone(),
                    data: n.data.clone(),
                    acl: n
                        .acl
                        .iter()
                        .map(|a| (a.perms, a.id.scheme.clone(), a.id.id.clone()))
                        .collect(),
                    stat: SnapStat {
                        czxid: s.czxid,
                        mzxid: s.mzxid,
                        ctime: s.ctime,
                        mtime: s.mtime,
                        version: s.version,
                        cversion: s.cversion,
                        aversion: s.aversion,
                        ephemeral_owner: s.ephemeral_owner,
                        pzxid: s.pzxid,
                    },
                }
            })
            .collect();
        let sessions = self
            .sessions
            .iter()
            .map(|(id, s)| SnapSession {
                id: *id,
                timeout_ms: s.timeout_ms,
                passwd: s.passwd.clone(),
                client_ip: s.client_ip.clone(),
                auth: s
                    .auth
                    .iter()
                    .map(|i| (i.scheme.clone(), i.id.clone()))
                    .collect(),
            })
            .collect();
        let snap = Snapshot {
            version: VERSION,
            last_zxid: self.last_zxid,
            nodes,
            sessions,
        };
        postcard::to_stdvec(&snap).expect("serializing to a Vec cannot fail")
    }

    /// The state a [`Zk::snapshot`] captured, with no watches.
    pub fn restore(bytes: &[u8], opts: Options) -> Result<Zk, SnapshotError> {
        let snap: Snapshot = postcard::from_bytes(bytes)?;
        if snap.version != VERSION {
            return Err(SnapshotError::Version(snap.version));
        }
        let nodes = snap.nodes.into_iter().map(|n| {
            let s = n.stat;
            let node = Node {
                data: n.data,
                acl: n
                    .acl
                    .into_iter()
                    .map(|(perms, scheme, id)| Acl {
                        perms,
                        id: Id { scheme, id },
                    })
                    .collect(),
                stat: StatPersisted {
                    czxid: s.czxid,
                    mzxid: s.mzxid,
                    ctime: s.ctime,
                    mtime: s.mtime,
                    version: s.version,
                    cversion: s.cversion,
                    aversion: s.aversion,
                    ephemeral_owner: s.ephemeral_owner,
                    pzxid: s.pzxid,
                },
                children: Default::default(),
            };
            (n.path, node)
        });
        let tree =
            Tree::from_nodes(nodes, opts.extended_types).map_err(SnapshotError::Inconsistent)?;
        let sessions = snap
            .sessions
            .into_iter()
            .map(|s| {
                let auth = s
                    .auth
                    .into_iter()
                    .map(|(scheme, id)| Id { scheme, id })
                    .collect();
                (
                    s.id,
                    Session {
                        timeout_ms: s.timeout_ms,
                        passwd: s.passwd,
                        client_ip: s.client_ip,
                        auth,
                    },
                )
            })
            .collect();
        Ok(Zk {
            opts,
            tree,
            sessions,
            last_zxid: snap.last_zxid,
            data_watches: Manager::default(),
            child_watches: Manager::default(),
        })
    }
}
