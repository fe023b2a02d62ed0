//! The znode tree as ZooKeeper's `DataTree` keeps it: nodes by full path, each with its persisted stat,
//! ACL and child names; the ephemeral, container and TTL indexes; and an undo log that lets a failed
//! multi leave no trace.

use std::collections::{BTreeMap, BTreeSet};

use protocol::{Acl, Stat};

use super::acl;
use super::path;
use super::{SessionId, Zxid};

/// `EphemeralType.CONTAINER_EPHEMERAL_OWNER`.
pub const CONTAINER_OWNER: i64 = i64::MIN;
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
const RESERVED_BITS_SHIFT: u32 = 40;
/// `EphemeralType.TTL.maxValue()`: the largest TTL in ms (about 34 years).
pub const TTL_MAX: i64 = !(EXTENDED_MASK | RESERVED_BITS_MASK);

/// `EphemeralType`: what a persisted ephemeralOwner value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralType {
    /// Owner 0: persistent.
    Void,
    /// A session id.
    Normal,
    Container,
    Ttl,
}

impl EphemeralType {
    /// `EphemeralType.get`; the TTL encoding is only recognised when extended types are enabled.
    pub fn of(owner: i64, extended: bool) -> EphemeralType {
        if extended && owner & EXTENDED_MASK == EXTENDED_MASK {
            // ZooKeeper throws for an unknown extended feature; only TTL (feature 0) exists.
            if (owner & RESERVED_BITS_MASK) >> RESERVED_BITS_SHIFT == 0 {
                return EphemeralType::Ttl;
            }
            return EphemeralType::Normal;
        }
        if owner == CONTAINER_OWNER {
            EphemeralType::Container
        } else if owner == 0 {
            EphemeralType::Void
        } else {
            EphemeralType::Normal
        }
    }
}

/// `EphemeralType.TTL.toEphemeralOwner`, or `None` when the TTL is out of (0, TTL_MAX].
pub fn ttl_owner(ttl: i64) -> Option<i64> {
    (ttl > 0 && ttl <= TTL_MAX).then_some(EXTENDED_MASK | ttl)
}

/// The TTL encoded in a TTL owner.
pub fn ttl_of(owner: i64) -> i64 {
    owner & TTL_MAX
}

/// `StatPersisted`: what ZooKeeper stores per node. `cversion` counts child creations only; clients
/// see `2 * cversion - numChildren` (creations plus deletions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatPersisted {
    pub czxid: Zxid,
    pub mzxid: Zxid,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: Zxid,
}

impl StatPersisted {
    /// `DataTree.createStat`.
    pub fn new(zxid: Zxid, time: i64, ephemeral_owner: i64) -> StatPersisted {
        StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner,
            pzxid: zxid,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `None` is the null buffer a client may send (zkCli's `create /x`); ZooKeeper keeps it apart
    /// from an empty value and returns it as null.
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub stat: StatPersisted,
    pub children: BTreeSet<String>,
}

impl Node {
    pub fn data_len(&self) -> i64 {
        self.data.as_ref().map_or(0, |d| d.len() as i64)
    }

    /// `DataNode.copyStat`: the client's view (cversion translated, container and TTL owners shown as 0).
    pub fn client_stat(&self, extended: bool) -> Stat {
        let s = &self.stat;
        let num_children = self.children.len() as i32;
        let owner = match EphemeralType::of(s.ephemeral_owner, extended) {
            EphemeralType::Normal => s.ephemeral_owner,
            _ => 0,
        };
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: s.aversion,
            ephemeral_owner: owner,
            data_length: self.data_len() as i32,
            num_children,
            pzxid: s.pzxid,
        }
    }
}

/// One step of a multi, undone in reverse order when a later step fails.
#[derive(Debug)]
pub enum Undo {
    Created {
        path: String,
        parent: String,
        parent_stat: StatPersisted,
    },
    Deleted {
        path: String,
        parent: String,
        node: Node,
        parent_stat: StatPersisted,
    },
    DataSet {
        path: String,
        data: Option<Vec<u8>>,
        stat: StatPersisted,
    },
    /// A quota stats node's data before the server rewrote it.
    QuotaData {
        path: String,
        data: Option<Vec<u8>>,
    },
    QuotaMark {
        key: String,
        was: bool,
    },
}

/// Invariant: every node but `/` has its parent in `nodes`, and its name is in the parent's
/// `children`; `ephemerals`, `containers` and `ttls` hold exactly the paths whose owner has that type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    ephemerals: BTreeMap<SessionId, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    /// Paths with a quota (`PathTrie` of `DataTree`): `/a/b` for every
    /// `/zookeeper/quota/a/b/zookeeper_limits`, normalised to its non-blank segments.
    quotas: BTreeSet<String>,
    extended: bool,
}

pub const ZOOKEEPER: &str = "/zookeeper";
pub const QUOTA: &str = "/zookeeper/quota";
pub const CONFIG: &str = "/zookeeper/config";
/// `Quotas.limitNode` and `Quotas.statNode`.
pub const QUOTA_LIMITS: &str = "zookeeper_limits";
pub const QUOTA_STATS: &str = "zookeeper_stats";

/// `PathTrie.split`: the segments of a path that are not blank after Java's `trim`.
fn quota_segments(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|s| !s.trim_matches(|c: char| c <= ' ').is_empty())
        .collect()
}

fn quota_key(path: &str) -> String {
    format!("/{}", quota_segments(path).join("/"))
}

/// `StatsTrack`: `key=value` pairs separated by `,` or `;`; a missing key reads as -1.
#[derive(Debug, Default)]
struct StatsTrack {
    stats: BTreeMap<String, i64>,
}

impl StatsTrack {
    /// `None` where ZooKeeper's parser throws.
    fn parse(data: &[u8]) -> Option<StatsTrack> {
        let text = String::from_utf8_lossy(data);
        let mut track = StatsTrack::default();
        if text.is_empty() {
            return Some(track);
        }
        // Java's Pattern("[,;]+").split: a leading separator yields one empty pair (which fails
        // below), runs of separators count once, trailing ones are dropped.
        let mut pairs: Vec<&str> = text.split([',', ';']).collect();
        while pairs.last() == Some(&"") {
            pairs.pop();
        }
        for (i, pair) in pairs.into_iter().enumerate() {
            if pair.is_empty() && i > 0 {
                continue;
            }
            let mut kv: Vec<&str> = pair.split('=').collect();
            while kv.last() == Some(&"") {
                kv.pop();
            }
            let key = kv.first()?;
            let value = kv.get(1)?;
            let value = if value.is_empty() { "-1" } else { value };
            track.stats.insert(key.to_string(), value.parse().ok()?);
        }
        Some(track)
    }

    fn get(&self, key: &str) -> i64 {
        self.stats.get(key).copied().unwrap_or(-1)
    }

    fn add(&mut self, key: &str, diff: i64) {
        let v = self.get(key).wrapping_add(diff);
        self.stats.insert(key.to_string(), v);
    }

    /// `StatsTrack.toString`: count and bytes first, then `=` and `;key=value` for the rest, sorted.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("count={},bytes={}", self.get("count"), self.get("bytes"));
        let rest: Vec<_> = self
            .stats
            .iter()
            .filter(|(k, _)| *k != "count" && *k != "bytes")
            .collect();
        if !rest.is_empty() {
            out.push('=');
            for (k, v) in rest {
                out.push_str(&format!(";{k}={v}"));
            }
        }
        out.into_bytes()
    }
}

impl Tree {
    /// A fresh tree as ZooKeeper 3.8 starts: `/`, `/zookeeper`, `/zookeeper/quota` and
    /// `/zookeeper/config` (read-only for the world, aversion -1), all other stats zero.
    pub fn new(extended: bool) -> Tree {
        let node = |acl: Vec<Acl>| Node {
            data: Some(Vec::new()),
            acl,
            stat: StatPersisted::default(),
            children: BTreeSet::new(),
        };
        let mut nodes = BTreeMap::new();
        let mut root = node(acl::open_acl());
        root.children.insert("zookeeper".to_string());
        let mut zk = node(acl::open_acl());
        zk.children.insert("quota".to_string());
        zk.children.insert("config".to_string());
        let mut config = node(acl::read_acl());
        config.stat.aversion = -1;
        nodes.insert("/".to_string(), root);
        nodes.insert(ZOOKEEPER.to_string(), zk);
        nodes.insert(QUOTA.to_string(), node(acl::open_acl()));
        nodes.insert(CONFIG.to_string(), config);
        Tree {
            nodes,
            ephemerals: BTreeMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quotas: BTreeSet::new(),
            extended,
        }
    }

    pub fn extended(&self) -> bool {
        self.extended
    }

    /// The node at `path` (`""` is the root, as in ZooKeeper).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path::key(path))
    }

    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.get(path).map(|n| n.client_stat(self.extended))
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `DataTree.isSpecialPath`.
    pub fn is_special(path: &str) -> bool {
        matches!(path, "/" | ZOOKEEPER | QUOTA | CONFIG)
    }

    pub fn ephemerals_of(&self, session: SessionId) -> impl Iterator<Item = &String> {
        self.ephemerals.get(&session).into_iter().flatten()
    }

    pub fn containers(&self) -> &BTreeSet<String> {
        &self.containers
    }

    pub fn ttls(&self) -> &BTreeSet<String> {
        &self.ttls
    }

    /// `DataTree.getAllChildrenNumber`: for `/` every node but the root (the reserved ones included),
    /// otherwise every key starting with `path + "/"`.
    pub fn all_children_number(&self, path: &str) -> i32 {
        if path == "/" {
            return (self.nodes.len() - 1) as i32;
        }
        let prefix = format!("{path}/");
        let mut n = self
            .nodes
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .count();
        if path.is_empty() {
            // ZooKeeper keys the root twice ("" and "/"); "/" starts with "" + "/".
            n += 1;
        }
        n as i32
    }

    fn index(&mut self, path: &str, owner: i64) {
        match EphemeralType::of(owner, self.extended) {
            EphemeralType::Container => {
                self.containers.insert(path.to_string());
            }
            EphemeralType::Ttl => {
                self.ttls.insert(path.to_string());
            }
            EphemeralType::Normal => {
                self.ephemerals
                    .entry(owner)
                    .or_default()
                    .insert(path.to_string());
            }
            EphemeralType::Void => {}
        }
    }

    fn unindex(&mut self, path: &str, owner: i64) {
        match EphemeralType::of(owner, self.extended) {
            EphemeralType::Container => {
                self.containers.remove(path);
            }
            EphemeralType::Ttl => {
                self.ttls.remove(path);
            }
            EphemeralType::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            EphemeralType::Void => {}
        }
    }

    /// `DataTree.createNode` for a create Prep has validated: `path` is absent, its parent exists.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        path: &str,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        owner: i64,
        zxid: Zxid,
        time: i64,
        undo: Option<&mut Vec<Undo>>,
    ) {
        let parent_key = path::key(&path[..path.rfind('/').expect("validated path")]).to_string();
        let parent = self
            .nodes
            .get_mut(&parent_key)
            .expect("Prep checked the parent exists");
        let parent_stat = parent.stat;
        let new_cversion = parent.stat.cversion.wrapping_add(1);
        if new_cversion > parent.stat.cversion {
            parent.stat.cversion = new_cversion;
            parent.stat.pzxid = zxid;
        }
        parent.children.insert(path::name(path).to_string());
        let node = Node {
            data,
            acl,
            stat: StatPersisted::new(zxid, time, owner),
            children: BTreeSet::new(),
        };
        let previous = self.nodes.insert(path.to_string(), node);
        assert!(previous.is_none(), "Prep checked {path} is absent");
        self.index(path, owner);
        let mut undo = undo;
        if let Some(u) = undo.as_deref_mut() {
            u.push(Undo::Created {
                path: path.to_string(),
                parent: parent_key.clone(),
                parent_stat,
            });
        }
        if let Some(quota_of) = parent_key.strip_prefix(QUOTA) {
            match path::name(path) {
                QUOTA_LIMITS => self.mark_quota(quota_of, true, undo.as_deref_mut()),
                QUOTA_STATS => self.recount_quota(quota_of, undo.as_deref_mut()),
                _ => {}
            }
        }
        let bytes = self.nodes[path].data_len();
        self.track_quota(path, bytes, 1, undo);
    }

    /// `DataTree.deleteNode` for a delete Prep has validated: `path` exists and has no children.
    /// Returns the removed node.
    pub fn delete(&mut self, path: &str, zxid: Zxid, undo: Option<&mut Vec<Undo>>) -> Node {
        let parent_key = path::key(&path[..path.rfind('/').expect("validated path")]).to_string();
        let parent = self
            .nodes
            .get_mut(&parent_key)
            .expect("Prep checked the parent exists");
        let parent_stat = parent.stat;
        parent.children.remove(path::name(path));
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        let node = self
            .nodes
            .remove(path)
            .expect("Prep checked the node exists");
        debug_assert!(node.children.is_empty());
        self.unindex(path, node.stat.ephemeral_owner);
        let mut undo = undo;
        if let Some(u) = undo.as_deref_mut() {
            u.push(Undo::Deleted {
                path: path.to_string(),
                parent: parent_key.clone(),
                node: node.clone(),
                parent_stat,
            });
        }
        if let Some(quota_of) = parent_key.strip_prefix(QUOTA) {
            if path::name(path) == QUOTA_LIMITS {
                self.mark_quota(quota_of, false, undo.as_deref_mut());
            }
        }
        self.track_quota(path, -node.data_len(), -1, undo);
        node
    }

    /// `DataTree.setData` with the version Prep computed.
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<Vec<u8>>,
        version: i32,
        zxid: Zxid,
        time: i64,
        undo: Option<&mut Vec<Undo>>,
    ) -> Stat {
        let extended = self.extended;
        let node = self
            .nodes
            .get_mut(path)
            .expect("Prep checked the node exists");
        let old = std::mem::replace(&mut node.data, data);
        let old_stat = node.stat;
        node.stat.mtime = time;
        node.stat.mzxid = zxid;
        node.stat.version = version;
        let stat = node.client_stat(extended);
        let diff = node.data_len() - old.as_ref().map_or(0, |d| d.len() as i64);
        let mut undo = undo;
        if let Some(u) = undo.as_deref_mut() {
            u.push(Undo::DataSet {
                path: path.to_string(),
                data: old,
                stat: old_stat,
            });
        }
        self.track_quota(path, diff, 0, undo);
        stat
    }

    /// `PathTrie.addPath`/`deletePath` for the quota of `path` (`trimQuotaPath` of a limits node's
    /// parent). ZooKeeper fails on an empty path; it is ignored here.
    fn mark_quota(&mut self, path: &str, mark: bool, undo: Option<&mut Vec<Undo>>) {
        if path.is_empty() {
            return;
        }
        let key = quota_key(path);
        let was = self.quotas.contains(&key);
        if mark {
            self.quotas.insert(key.clone());
        } else {
            self.quotas.remove(&key);
        }
        if let (Some(u), true) = (undo, was != mark) {
            u.push(Undo::QuotaMark { key, was });
        }
    }

    /// `DataTree.getMaxPrefixWithQuota`: the deepest quota path containing `path`, never `/`.
    fn quota_prefix(&self, path: &str) -> Option<String> {
        if self.quotas.is_empty() {
            return None;
        }
        let parts = quota_segments(path);
        (1..=parts.len())
            .rev()
            .map(|k| format!("/{}", parts[..k].join("/")))
            .find(|p| self.quotas.contains(p))
    }

    /// `DataTree.updateQuotaStat`: adds to the count and bytes in the stats node of the quota that
    /// covers `path`. Stats data ZooKeeper could not parse is left alone.
    fn track_quota(&mut self, path: &str, bytes: i64, count: i64, undo: Option<&mut Vec<Undo>>) {
        let Some(prefix) = self.quota_prefix(path) else {
            return;
        };
        let stats_path = format!("{QUOTA}{prefix}/{QUOTA_STATS}");
        let Some(node) = self.nodes.get_mut(&stats_path) else {
            return;
        };
        let Some(mut track) = StatsTrack::parse(node.data.as_deref().unwrap_or_default()) else {
            return;
        };
        track.add("count", count);
        track.add("bytes", bytes);
        let old = node.data.replace(track.to_bytes());
        if let Some(u) = undo {
            u.push(Undo::QuotaData {
                path: stats_path,
                data: old,
            });
        }
    }

    /// `DataTree.updateQuotaForPath`: recounts the subtree at `path` (itself included) into its
    /// stats node.
    fn recount_quota(&mut self, path: &str, undo: Option<&mut Vec<Undo>>) {
        let (count, bytes) = match self.get(path) {
            None => (0, 0),
            Some(_) if path::key(path) == "/" => (
                self.nodes.len() as i64,
                self.nodes.values().map(Node::data_len).sum(),
            ),
            Some(n) => {
                let prefix = format!("{path}/");
                self.nodes
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .fold((1, n.data_len()), |(c, b), (_, d)| {
                        (c + 1, b + d.data_len())
                    })
            }
        };
        let stats_path = format!("{QUOTA}{path}/{QUOTA_STATS}");
        let Some(node) = self.nodes.get_mut(&stats_path) else {
            return;
        };
        let mut track = StatsTrack::default();
        track.stats.insert("count".to_string(), count);
        track.stats.insert("bytes".to_string(), bytes);
        let old = node.data.replace(track.to_bytes());
        if let Some(u) = undo {
            u.push(Undo::QuotaData {
                path: stats_path,
                data: old,
            });
        }
    }

    /// Replaces a node's data, version, mzxid and mtime (see `Zk::overwrite_owned`); false when
    /// the node does not exist.
    pub fn overwrite_owned(&mut self, path: &str, owned: &super::OwnedFields) -> bool {
        let Some(node) = self.nodes.get_mut(path::key(path)) else {
            return false;
        };
        node.data.clone_from(&owned.data);
        node.stat.version = owned.version;
        node.stat.mzxid = owned.mzxid;
        node.stat.mtime = owned.mtime;
        true
    }

    /// `DataTree.setACL` with the aversion Prep computed.
    pub fn set_acl(&mut self, path: &str, acl: Vec<Acl>, aversion: i32) -> Stat {
        let extended = self.extended;
        let node = self
            .nodes
            .get_mut(path)
            .expect("Prep checked the node exists");
        node.acl = acl;
        node.stat.aversion = aversion;
        node.client_stat(extended)
    }

    /// Reverts the steps of a failed multi, newest first.
    pub fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Created {
                    path,
                    parent,
                    parent_stat,
                } => {
                    let node = self.nodes.remove(&path).expect("created node present");
                    self.unindex(&path, node.stat.ephemeral_owner);
                    let p = self.nodes.get_mut(&parent).expect("parent present");
                    p.children.remove(path::name(&path));
                    p.stat = parent_stat;
                }
                Undo::Deleted {
                    path,
                    parent,
                    node,
                    parent_stat,
                } => {
                    self.index(&path, node.stat.ephemeral_owner);
                    self.nodes.insert(path.clone(), node);
                    let p = self.nodes.get_mut(&parent).expect("parent present");
                    p.children.insert(path::name(&path).to_string());
                    p.stat = parent_stat;
                }
                Undo::DataSet { path, data, stat } => {
                    let n = self.nodes.get_mut(&path).expect("node present");
                    n.data = data;
                    n.stat = stat;
                }
                Undo::QuotaData { path, data } => {
                    self.nodes.get_mut(&path).expect("stats node present").data = data;
                }
                Undo::QuotaMark { key, was } => {
                    if was {
                        self.quotas.insert(key);
                    } else {
                        self.quotas.remove(&key);
                    }
                }
            }
        }
    }

    /// Rebuilds a tree from `(path, node)` pairs whose `children` are empty; fails with the first
    /// path whose parent is missing.
    pub fn from_nodes(
        nodes: impl IntoIterator<Item = (String, Node)>,
        extended: bool,
    ) -> Result<Tree, String> {
        let mut tree = Tree {
            nodes: nodes.into_iter().collect(),
            ephemerals: BTreeMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quotas: BTreeSet::new(),
            extended,
        };
        if !tree.nodes.contains_key("/") {
            return Err("no root".to_string());
        }
        let paths: Vec<(String, i64)> = tree
            .nodes
            .iter()
            .map(|(p, n)| (p.clone(), n.stat.ephemeral_owner))
            .collect();
        for (p, owner) in paths {
            if p == "/" {
                continue;
            }
            if !path::is_valid(&p) {
                return Err(format!("invalid path {p:?}"));
            }
            let parent = path::key(&p[..p.rfind('/').expect("valid path")]);
            match tree.nodes.get_mut(parent) {
                Some(n) => {
                    n.children.insert(path::name(&p).to_string());
                }
                None => return Err(format!("{p} has no parent")),
            }
            tree.index(&p, owner);
            // Quota marks are rebuilt; the stats nodes keep their replicated data (ZooKeeper
            // recomputes them on load, which could make a restored replica diverge).
            if path::name(&p) == QUOTA_LIMITS && parent.starts_with(QUOTA) {
                let marked = parent[QUOTA.len()..].to_string();
                tree.mark_quota(&marked, true, None);
            }
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &StatsTrack) -> String {
        String::from_utf8(t.to_bytes()).unwrap()
    }

    #[test]
    fn stats_track_reads_and_writes_like_zookeeper() {
        let limits = "count=10,bytes=-1=;byteHardLimit=-1;countHardLimit=-1";
        assert_eq!(text(&StatsTrack::parse(limits.as_bytes()).unwrap()), limits);
        assert_eq!(
            text(&StatsTrack::parse(b"count=2,bytes=6").unwrap()),
            "count=2,bytes=6"
        );
        assert_eq!(text(&StatsTrack::parse(b"").unwrap()), "count=-1,bytes=-1");
        assert_eq!(
            text(&StatsTrack::parse(b"count==5;;bytes=1,").unwrap()),
            "count=-1,bytes=1"
        );
        for bad in [&b",count=1"[..], b"count", b"count=x"] {
            assert!(StatsTrack::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn quota_keys_drop_blank_segments() {
        assert_eq!(quota_key("/a/ /b"), "/a/b");
        assert_eq!(quota_key("a"), "/a");
        assert_eq!(quota_key("/"), "/");
    }

    #[test]
    fn ephemeral_types() {
        assert_eq!(EphemeralType::of(0, true), EphemeralType::Void);
        assert_eq!(
            EphemeralType::of(CONTAINER_OWNER, false),
            EphemeralType::Container
        );
        let ttl = ttl_owner(1000).unwrap();
        assert_eq!(EphemeralType::of(ttl, true), EphemeralType::Ttl);
        assert_eq!(EphemeralType::of(ttl, false), EphemeralType::Normal);
        assert_eq!(ttl_of(ttl), 1000);
        assert_eq!(ttl_owner(0), None);
        assert_eq!(ttl_owner(TTL_MAX + 1), None);
        assert_eq!(TTL_MAX, 0xff_ffff_ffff);
        assert_eq!(
            EphemeralType::of(0x0100_0000_0000_0001, true),
            EphemeralType::Normal
        );
    }
}
