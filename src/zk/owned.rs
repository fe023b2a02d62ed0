//! What S-SMR partitioning needs from the tree (`ssmr::zk_service`): every partition keeps the whole
//! hierarchy, but only the partition that owns a znode keeps its [`OwnedFields`] up to date; a
//! command that spans partitions first copies the owners' fields into the local replica of the
//! tree. None of this changes what [`Zk::apply`] does.

use protocol::WatcherType;

use super::{SessionId, Zk, Zxid};

/// The fields of a znode that a local `setData` changes and that, under S-SMR, only the znode's
/// owner partition keeps up to date: the data, `version`, `mzxid` and `mtime` (`dataLength` is
/// the data's length). Everything else (existence, children, `cversion`, `pzxid`, `aversion`,
/// ACL, `czxid`, `ctime`, ephemeral owner) is only changed by commands every partition executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFields {
    /// `None` is jute's null buffer.
    pub data: Option<Vec<u8>>,
    pub version: i32,
    pub mzxid: Zxid,
    pub mtime: i64,
}

impl Zk {
    /// The owned fields of the node at `path`, if it exists.
    pub fn owned_fields(&self, path: &str) -> Option<OwnedFields> {
        self.tree.get(path).map(|n| OwnedFields {
            data: n.data.clone(),
            version: n.stat.version,
            mzxid: n.stat.mzxid,
            mtime: n.stat.mtime,
        })
    }

    /// Replaces the owned fields of the node at `path` with the owner's; false (and nothing
    /// changes) when the node does not exist. Quota stats nodes are not recounted: a replica that
    /// is not the owner never reports them.
    pub fn overwrite_owned(&mut self, path: &str, owned: &OwnedFields) -> bool {
        self.tree.overwrite_owned(path, owned)
    }

    /// Raises `last_zxid` to `zxid` (a Lamport clock adopted from other partitions by a
    /// multi-partition read); never lowers it.
    pub fn observe_zxid(&mut self, zxid: Zxid) {
        self.last_zxid = self.last_zxid.max(zxid);
    }

    /// Whether `session` holds a watch of this type on exactly `path` (what `removeWatches` would
    /// remove; `Any` means either kind).
    pub fn has_watch(&self, path: &str, session: SessionId, ty: WatcherType) -> bool {
        let data = || {
            self.data_watches
                .by_session()
                .get(&session)
                .is_some_and(|p| p.contains(path))
        };
        let child = || {
            self.child_watches
                .by_session()
                .get(&session)
                .is_some_and(|p| p.contains(path))
        };
        match ty {
            WatcherType::Data => data(),
            WatcherType::Children => child(),
            WatcherType::Any => data() || child(),
        }
    }

    /// Every znode's path, sorted (the root and the reserved `/zookeeper` nodes included).
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.tree.nodes().map(|(p, _)| p)
    }
}
