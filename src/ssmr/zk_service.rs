//! ZooKeeper as an S-SMR [`Service`]: the znode tree split over `k` partitions by a hash of the
//! path.
//!
//! # State per partition
//! Every partition keeps the whole hierarchy: which znodes exist, their children, ephemeral
//! owners, `cversion`, `pzxid`, `czxid`, `ctime`, ACLs and `aversion`, and the session table with
//! its auth ids. Only the partition [`partition_of`]`(path)` (the path's *owner*) keeps a znode's
//! [`OwnedFields`] (data, `version`, `mzxid`, `mtime`) up to date; the others keep whatever the
//! last command they executed on it left there.
//!
//! Invariant (what makes this work): every command that changes the hierarchy, sessions or auth
//! ids goes to every partition, and a command that only changes owned fields changes them on the
//! owner (and, when it spans partitions, on every partition of its destination, after they copied
//! the owners' values). So at the same point of the global order every partition has the same
//! hierarchy, and the owner has the same owned fields as one unpartitioned `Zk`.
//!
//! # The oracle ([`dest_of`])
//! `h(p)` is [`partition_of`]`(p, k)`; "all" is every partition, "0" partition 0.
//!
//! | command | destination | why |
//! | --- | --- | --- |
//! | createSession, reconnect, closeSession, addAuth (both forms), session expiry | all | the session table and auth ids are replicated; close deletes ephemerals anywhere; reconnect drops watches anywhere |
//! | create (any mode), delete, setACL | all | hierarchy (`cversion`, `pzxid`, children, ACL, `aversion`) |
//! | the node's own deleteContainer ([`Op::DeleteContainer`]) | all | hierarchy |
//! | getData, setData, exists, getChildren, getChildren2, getACL, check, sync, getAllChildrenNumber | `h(path)` | owned fields or watches of `path`, or hierarchy only (any partition would do) |
//! | getEphemerals | `h(prefix)` | hierarchy only |
//! | a client's deleteContainer (opcode 20) | `h(path)` | always `BadArguments` (a write that changes nothing) |
//! | multi | union of `h(path)` of its ops; all if it creates or deletes; 0 when empty | owned fields of every op's path; hierarchy |
//! | multiRead | union of `h(path)` of its ops; 0 when empty | owned fields of its getData paths |
//! | addWatch persistent | all | its events all happen on the owner, but as in 3.8 it replaces the session's recursive watch on `path`, which every partition holds |
//! | addWatch persistentRecursive | all | its events include data changes of every descendant, on their owners |
//! | setWatches, setWatches2 | all | each partition re-registers the watches it owns (below) |
//! | checkWatches | `h(path)` | the owner holds every watch on `path` |
//! | removeWatches | all | removes recursive watches everywhere; the owner's verdict is the reply |
//! | ping, whoAmI, reconfig, sasl | 0 | no tree state (reconfig always `ReconfigDisabled`) |
//!
//! # Watches
//! A watch lives on the partition that emits its events: a standard watch on `p` on `h(p)`, a
//! persistent or persistent recursive watch on every partition (only `h(p)` fires a persistent
//! one; it lives elsewhere too so that it replaces a recursive one everywhere, as 3.8 does). Each partition emits only the
//! notifications whose path it owns ([`ZkService::execute`] drops the others), so every event
//! reaches its session exactly once, from the owner of the event's path, and a partition's
//! notifications are, in order, those one unpartitioned `Zk` gives for the paths it owns.
//! setWatches is applied on each partition with its data, exist and child lists cut to the paths
//! the partition owns (the persistent and recursive lists whole); each partition then compares the
//! `mzxid`/`pzxid` it owns with `relativeZxid`.
//!
//! Known difference (the one found by the differential simulation): in ZooKeeper 3.8 a standard
//! watch (getData, exists or getChildren with `watch`, or setWatches) that a session sets on a
//! path where it holds a persistent recursive watch *replaces* the recursive one in that manager
//! (3.8 keeps one mode per session and path; 3.9 keeps both, ZOOKEEPER-4466). Here the standard
//! watch is registered on `h(path)` only, so the copies of the recursive watch on the other
//! partitions survive and keep firing for descendants those partitions own: the session gets
//! the events 3.9 would send and 3.8 would not. Reproducing 3.8 exactly would need every
//! watching read to go to all partitions (or a registry replicated by a global command); the
//! extra events are harmless to recipes, which treat an event as "look again"
//! (`known_difference_standard_watch_over_recursive_watch` pins this down).
//!
//! Caveat (Lamport zxids, not partitioning): the `relativeZxid` a client sends in setWatches is
//! the last zxid it saw, possibly from another partition whose clock ran ahead; a change made on
//! the owner after the client disconnected can carry a smaller zxid and then not be reported as
//! missed. ZooKeeper's single zxid sequence does not have this problem; the front end has to make
//! clocks catch up (e.g. order a no-op on the owner partitions at or above the client's zxid).
//!
//! # State exchange ([`ZkService::facts`])
//! For a multi-partition command, a partition's facts are the owned fields of every path the
//! command reads that it owns (delete: its path; setACL: its path, whose stat the reply carries;
//! multi and multiRead: every op's path), with "absent" for paths that do not exist, and, for
//! removeWatches, the owner's answer to "does the session hold such a watch". `execute` first
//! copies the owners' fields into the local tree ([`Zk::overwrite_owned`]), then applies the
//! command with [`Zk::apply`] at the executor's zxid, so every partition of the destination
//! computes the same reply. A fact is trusted only from the owner of its path.
//!
//! Encoding, big-endian, a sequence of entries:
//! - `1`, path (u32 length + UTF-8), then `0` (absent) or `1` followed by `version` i32, `mzxid`
//!   i64, `mtime` i64, data (i32 length, -1 for null, then the bytes);
//! - `2`, then `0` or `1`: the removeWatches verdict.
//!
//! Malformed facts (only a faulty peer sends them) never panic: the whole blob is ignored with a
//! warning, as if its partition owned none of the paths, and the command runs on the local
//! copies. The reply may then differ from the other partitions' (which the executor's
//! `signals_divergent` cannot see; the warning is the trace).
//!
//! # zxids
//! The executor's clock is the `Zk`'s `last_zxid`: [`Zk::apply`] gets the executor's zxid (for a
//! write the new Lamport zxid, for a read the partition's clock, raised to the signalled maximum
//! for a multi-partition read) and `execute` raises `last_zxid` to it ([`Zk::observe_zxid`]).
//!
//! # Not partitioned exactly
//! - Quota stats nodes (`/zookeeper/quota/.../zookeeper_stats`): a setData changes the byte count
//!   of the quota covering its path on the path's owner only, and a recount on create reads data
//!   lengths the partition does not own; with `k > 1` the stats are approximate.
//! - [`Zk::expired_containers_and_ttls`] reads `mtime` (owned): the driver must take a path's
//!   candidacy from its owner partition only.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::{CreateMode, ErrorCode, MultiOp, Request, Response, SetWatches};

use super::{PartitionId, Service};
use crate::zk::{Applied, Command, Op, OwnedFields, Zk};

/// The partition owning `path` among `k` (FNV-1a 64 of the path's bytes, modulo `k`; `""`, the
/// root's alias, hashes as `/`). The same on every machine and every run; `k == 0` reads as 1.
pub fn partition_of(path: &str, k: u32) -> PartitionId {
    let path = if path.is_empty() { "/" } else { path };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(k.max(1))) as PartitionId
}

/// The path an op of a multi or multiRead names.
fn op_path(op: &MultiOp) -> &str {
    match op {
        MultiOp::Create { req, .. } => &req.path,
        MultiOp::Delete(d) => &d.path,
        MultiOp::SetData(s) => &s.path,
        MultiOp::Check(c) => &c.path,
        MultiOp::GetChildren(g) | MultiOp::GetData(g) => &g.path,
    }
}

/// The oracle: the partitions `cmd` goes to among `k` (sorted, deduplicated, non-empty). See the
/// module's table.
pub fn dest_of(cmd: &Command, k: u32) -> Vec<PartitionId> {
    let k = k.max(1);
    let all = || (0..k).collect::<Vec<_>>();
    let one = |p: &str| vec![partition_of(p, k)];
    let union = |ops: &[MultiOp]| {
        let mut d: Vec<PartitionId> = ops.iter().map(|o| partition_of(op_path(o), k)).collect();
        if d.is_empty() {
            d.push(0);
        }
        d.sort_unstable();
        d.dedup();
        d
    };
    let r = match &cmd.op {
        Op::CreateSession { .. }
        | Op::ReconnectSession { .. }
        | Op::CloseSession
        | Op::AddAuth { .. }
        | Op::DeleteContainer { .. } => return all(),
        Op::Request(r) => r,
    };
    match r {
        Request::Create { .. }
        | Request::Delete(_)
        | Request::SetAcl(_)
        | Request::Auth(_)
        | Request::CloseSession
        | Request::SetWatches(_)
        | Request::SetWatches2(_)
        | Request::RemoveWatches(_) => all(),
        Request::AddWatch(_) => all(),
        Request::Exists(g)
        | Request::GetData(g)
        | Request::GetChildren(g)
        | Request::GetChildren2(g) => one(&g.path),
        Request::SetData(s) => one(&s.path),
        Request::Check(c) => one(&c.path),
        Request::GetAcl(p)
        | Request::Sync(p)
        | Request::GetAllChildrenNumber(p)
        | Request::GetEphemerals(p)
        | Request::DeleteContainer(p) => one(&p.path),
        Request::CheckWatches(w) => one(&w.path),
        Request::Multi(ops) => {
            if ops
                .iter()
                .any(|o| matches!(o, MultiOp::Create { .. } | MultiOp::Delete(_)))
            {
                all()
            } else {
                union(ops)
            }
        }
        Request::MultiRead(ops) => union(ops),
        Request::Ping | Request::WhoAmI | Request::Reconfig(_) | Request::Sasl { .. } => vec![0],
    }
}

/// The paths whose owned fields a multi-partition `cmd` reads (before ownership filtering).
fn fact_paths(cmd: &Command) -> Vec<&str> {
    match &cmd.op {
        Op::Request(Request::Delete(d)) => vec![&d.path],
        Op::Request(Request::SetAcl(s)) => vec![&s.path],
        Op::Request(Request::Multi(ops) | Request::MultiRead(ops)) => {
            ops.iter().map(op_path).collect()
        }
        _ => Vec::new(),
    }
}

/// What a command reads from or writes to one partition, for the executor's prefetching.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ZkKey {
    /// The owned fields of a znode this partition owns, or its absence: only commands naming the
    /// path change them.
    Node(String),
    /// Znodes whose paths are only known once the command runs (a sequential create's, a closed
    /// session's ephemerals) may appear or disappear: any fact's "absent" may change.
    Hierarchy,
    /// This partition's watch registry (the removeWatches verdict).
    Watches,
}

/// One partition's ZooKeeper state.
///
/// Invariant: `partition < partitions`; `zk.last_zxid()` is the executor's clock after every
/// executed command.
pub struct ZkService {
    zk: Zk,
    partition: PartitionId,
    partitions: u32,
}

impl ZkService {
    /// Partition `partition` of `partitions`, starting from `zk` (fresh, or restored from this
    /// partition's checkpoint). Panics if `partition >= partitions` (a configuration error).
    pub fn new(mut zk: Zk, partition: PartitionId, partitions: u32) -> ZkService {
        assert!(
            partition < partitions,
            "partition {partition} out of 0..{partitions}"
        );
        if partitions > 1 {
            zk.set_partitioned();
        }
        ZkService {
            zk,
            partition,
            partitions,
        }
    }

    pub fn zk(&self) -> &Zk {
        &self.zk
    }

    pub fn into_zk(self) -> Zk {
        self.zk
    }

    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Whether this partition owns `path`.
    pub fn owns(&self, path: &str) -> bool {
        partition_of(path, self.partitions) == self.partition
    }

    /// The setWatches this partition applies: the standard lists cut to the paths it owns,
    /// persistent and recursive ones kept whole (see the module's "Watches").
    fn own_watches(&self, w: &SetWatches) -> SetWatches {
        let own = |v: &Vec<String>| -> Vec<String> {
            v.iter().filter(|p| self.owns(p)).cloned().collect()
        };
        SetWatches {
            relative_zxid: w.relative_zxid,
            data_watches: own(&w.data_watches),
            exist_watches: own(&w.exist_watches),
            child_watches: own(&w.child_watches),
            persistent_watches: w.persistent_watches.clone(),
            persistent_recursive_watches: w.persistent_recursive_watches.clone(),
        }
    }
}

/// One decoded fact.
#[derive(Debug, PartialEq, Eq)]
enum Fact {
    Node {
        path: String,
        owned: Option<OwnedFields>,
    },
    WatchVerdict(bool),
}

const FACT_NODE: u8 = 1;
const FACT_VERDICT: u8 = 2;

fn encode_facts(facts: &[Fact]) -> Bytes {
    let mut b = BytesMut::new();
    for f in facts {
        match f {
            Fact::Node { path, owned } => {
                b.put_u8(FACT_NODE);
                b.put_u32(path.len() as u32);
                b.put_slice(path.as_bytes());
                match owned {
                    None => b.put_u8(0),
                    Some(o) => {
                        b.put_u8(1);
                        b.put_i32(o.version);
                        b.put_i64(o.mzxid);
                        b.put_i64(o.mtime);
                        match &o.data {
                            None => b.put_i32(-1),
                            Some(d) => {
                                b.put_i32(d.len() as i32);
                                b.put_slice(d);
                            }
                        }
                    }
                }
            }
            Fact::WatchVerdict(found) => {
                b.put_u8(FACT_VERDICT);
                b.put_u8(u8::from(*found));
            }
        }
    }
    b.freeze()
}

/// Decodes facts; `None` if the bytes are not exactly a sequence of well-formed entries. Every
/// length is checked against what remains before anything is read or allocated.
fn decode_facts(mut b: &[u8]) -> Option<Vec<Fact>> {
    fn bytes<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn flag(b: &mut &[u8]) -> Option<bool> {
        match bytes(b, 1)?[0] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    let mut out = Vec::new();
    while b.has_remaining() {
        match b.get_u8() {
            FACT_NODE => {
                let len = bytes(&mut b, 4)?.get_u32() as usize;
                let path = std::str::from_utf8(bytes(&mut b, len)?).ok()?.to_string();
                let owned = if flag(&mut b)? {
                    let mut fixed = bytes(&mut b, 4 + 8 + 8 + 4)?;
                    let version = fixed.get_i32();
                    let mzxid = fixed.get_i64();
                    let mtime = fixed.get_i64();
                    let data = match fixed.get_i32() {
                        -1 => None,
                        n if n >= 0 => Some(bytes(&mut b, n as usize)?.to_vec()),
                        _ => return None,
                    };
                    Some(OwnedFields {
                        data,
                        version,
                        mzxid,
                        mtime,
                    })
                } else {
                    None
                };
                out.push(Fact::Node { path, owned });
            }
            FACT_VERDICT => out.push(Fact::WatchVerdict(flag(&mut b)?)),
            _ => return None,
        }
    }
    Some(out)
}

impl Service for ZkService {
    type Command = Command;
    type Output = Applied;
    type Key = ZkKey;

    fn dest(&self, cmd: &Command) -> Vec<PartitionId> {
        dest_of(cmd, self.partitions)
    }

    fn reads(&self, cmd: &Command) -> Vec<ZkKey> {
        let mut keys: Vec<ZkKey> = fact_paths(cmd)
            .into_iter()
            .filter(|p| self.owns(p))
            .map(|p| ZkKey::Node(p.to_string()))
            .collect();
        if !keys.is_empty() {
            keys.push(ZkKey::Hierarchy);
        }
        if let Op::Request(Request::RemoveWatches(w)) = &cmd.op {
            if self.owns(&w.path) {
                keys.push(ZkKey::Watches);
            }
        }
        keys
    }

    fn writes(&self, cmd: &Command) -> Vec<ZkKey> {
        if self.partitions == 1 {
            // No command spans partitions, so nothing is prefetched: no need to track writes.
            return Vec::new();
        }
        let mut keys = Vec::new();
        let node = |p: &str, keys: &mut Vec<ZkKey>| {
            if self.owns(p) {
                keys.push(ZkKey::Node(p.to_string()));
            }
        };
        // A sequential create's path is only known when it runs: Hierarchy covers it.
        let unknown_path =
            |flags: i32| CreateMode::from_i32(flags).is_none_or(|m| m.is_sequential());
        let (hierarchy, watches) = match &cmd.op {
            Op::CreateSession { .. } | Op::AddAuth { .. } => (false, false),
            Op::ReconnectSession { .. } => (false, true),
            Op::CloseSession => (true, true),
            Op::DeleteContainer { path } => {
                node(path, &mut keys);
                (false, true)
            }
            Op::Request(r) => match r {
                Request::Create { req, .. } => {
                    node(&req.path, &mut keys);
                    (unknown_path(req.flags), true)
                }
                Request::Delete(d) => {
                    node(&d.path, &mut keys);
                    (false, true)
                }
                Request::SetData(s) => {
                    node(&s.path, &mut keys);
                    (false, true)
                }
                Request::Multi(ops) => {
                    let mut hierarchy = false;
                    for op in ops {
                        match op {
                            MultiOp::Create { req, .. } => {
                                hierarchy |= unknown_path(req.flags);
                                node(op_path(op), &mut keys);
                            }
                            MultiOp::Delete(_) => node(op_path(op), &mut keys),
                            MultiOp::SetData(_) => node(op_path(op), &mut keys),
                            _ => {}
                        }
                    }
                    (hierarchy, true)
                }
                Request::CloseSession => (true, true),
                Request::Exists(g)
                | Request::GetData(g)
                | Request::GetChildren(g)
                | Request::GetChildren2(g) => (false, g.watch),
                Request::AddWatch(_)
                | Request::SetWatches(_)
                | Request::SetWatches2(_)
                | Request::RemoveWatches(_) => (false, true),
                _ => (false, false),
            },
        };
        if hierarchy {
            keys.push(ZkKey::Hierarchy);
        }
        if watches {
            keys.push(ZkKey::Watches);
        }
        keys
    }

    fn is_write(&self, cmd: &Command) -> bool {
        Zk::is_write(&cmd.op)
    }

    fn facts(&self, cmd: &Command) -> Bytes {
        let mut facts: Vec<Fact> = fact_paths(cmd)
            .into_iter()
            .filter(|p| self.owns(p))
            .map(|p| Fact::Node {
                path: p.to_string(),
                owned: self.zk.owned_fields(p),
            })
            .collect();
        if let Op::Request(Request::RemoveWatches(w)) = &cmd.op {
            if self.owns(&w.path) {
                let found = self.zk.has_watch(&w.path, cmd.session, w.watcher_type);
                facts.push(Fact::WatchVerdict(found));
            }
        }
        encode_facts(&facts)
    }

    /// Patches the local copies of the znodes other partitions own with their facts, applies
    /// `cmd` at `zxid`, and keeps the notifications whose path this partition owns.
    fn execute(
        &mut self,
        cmd: &Command,
        zxid: i64,
        facts: &BTreeMap<PartitionId, Bytes>,
    ) -> Applied {
        let mut verdict = None;
        for (from, blob) in facts.iter().filter(|(q, _)| **q != self.partition) {
            let Some(list) = decode_facts(blob) else {
                tracing::warn!(
                    partition = self.partition,
                    from,
                    len = blob.len(),
                    "malformed facts ignored"
                );
                continue;
            };
            for fact in list {
                match fact {
                    Fact::Node {
                        path,
                        owned: Some(owned),
                    } if partition_of(&path, self.partitions) == *from => {
                        self.zk.overwrite_owned(&path, &owned);
                    }
                    Fact::WatchVerdict(found) => match &cmd.op {
                        Op::Request(Request::RemoveWatches(w))
                            if partition_of(&w.path, self.partitions) == *from =>
                        {
                            verdict = Some(found);
                        }
                        _ => {}
                    },
                    Fact::Node { .. } => {}
                }
            }
        }
        let filtered;
        let cmd = match &cmd.op {
            Op::Request(Request::SetWatches(w)) => {
                filtered = Command {
                    op: Op::Request(Request::SetWatches(self.own_watches(w))),
                    ..cmd.clone()
                };
                &filtered
            }
            Op::Request(Request::SetWatches2(w)) => {
                filtered = Command {
                    op: Op::Request(Request::SetWatches2(self.own_watches(w))),
                    ..cmd.clone()
                };
                &filtered
            }
            _ => cmd,
        };
        let mut applied = self.zk.apply(zxid, cmd);
        self.zk.observe_zxid(zxid);
        if let Some(found) = verdict {
            if matches!(applied.err, ErrorCode::Ok | ErrorCode::NoWatcher) {
                (applied.err, applied.response) = if found {
                    (ErrorCode::Ok, Some(Response::Empty))
                } else {
                    (ErrorCode::NoWatcher, None)
                };
            }
        }
        let (partition, k) = (self.partition, self.partitions);
        applied
            .notifications
            .retain(|(_, e)| partition_of(&e.path, k) == partition);
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_of_is_stable_and_spreads() {
        // FNV-1a 64 of "/" is 0xaf63a24c860189fe.
        assert_eq!(
            partition_of("/", 1 << 31),
            (0xaf63_a24c_8601_89fe_u64 % (1 << 31)) as u32
        );
        assert_eq!(partition_of("", 7), partition_of("/", 7));
        assert_eq!(partition_of("/a", 0), 0);
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[partition_of(&format!("/n{i}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 60), "{seen:?}");
    }

    fn cmd(op: Op) -> Command {
        Command {
            session: 1,
            xid: 1,
            time_ms: 0,
            op,
        }
    }

    fn req(r: Request) -> Command {
        cmd(Op::Request(r))
    }

    #[test]
    fn oracle_rows() {
        use protocol::{DeleteRequest, PathWatchRequest, SetDataRequest};
        let k = 4;
        let all = vec![0, 1, 2, 3];
        let pw = |p: &str| PathWatchRequest {
            path: p.into(),
            watch: true,
        };
        let set = |p: &str| {
            MultiOp::SetData(SetDataRequest {
                path: p.into(),
                data: None,
                version: -1,
            })
        };
        let (p, q) = ("/a", "/b");
        let (hp, hq) = (partition_of(p, k), partition_of(q, k));
        assert_ne!(hp, hq, "pick paths of different owners");
        assert_eq!(dest_of(&cmd(Op::CloseSession), k), all);
        assert_eq!(
            dest_of(
                &req(Request::Delete(DeleteRequest {
                    path: p.into(),
                    version: 1
                })),
                k
            ),
            all
        );
        assert_eq!(dest_of(&req(Request::GetData(pw(p))), k), vec![hp]);
        assert_eq!(dest_of(&req(Request::GetChildren2(pw(q))), k), vec![hq]);
        let mut both = vec![hp, hq];
        both.sort_unstable();
        assert_eq!(dest_of(&req(Request::Multi(vec![set(q), set(p)])), k), both);
        let with_delete = Request::Multi(vec![
            set(p),
            MultiOp::Delete(DeleteRequest {
                path: q.into(),
                version: -1,
            }),
        ]);
        assert_eq!(dest_of(&req(with_delete), k), all);
        assert_eq!(dest_of(&req(Request::Multi(vec![])), k), vec![0]);
        assert_eq!(dest_of(&req(Request::MultiRead(vec![])), k), vec![0]);
        assert_eq!(dest_of(&req(Request::Ping), k), vec![0]);
    }

    #[test]
    fn garbage_facts_never_panic_and_are_ignored() {
        use protocol::DeleteRequest;
        let k = 2;
        let path = (0..)
            .map(|i| format!("/n{i}"))
            .find(|p| partition_of(p, k) == 1)
            .unwrap();
        let mut s = ZkService::new(Zk::new(crate::zk::Options::default()), 0, k);
        let open = cmd(Op::CreateSession {
            timeout_ms: 10_000,
            passwd: vec![],
            client_ip: "127.0.0.1".into(),
        });
        s.execute(&open, 1, &BTreeMap::new());
        let delete = req(Request::Delete(DeleteRequest {
            path: path.clone(),
            version: 0,
        }));
        for garbage in [&b"\x01\xff\xff\xff\xff"[..], b"\x09", b"\x01\0\0\0\x02/n"] {
            let facts = BTreeMap::from([(0, Bytes::new()), (1, Bytes::copy_from_slice(garbage))]);
            let out = s.execute(&delete, 2, &facts);
            assert_eq!(out.err, ErrorCode::NoNode);
        }
        // A fact about a path the sender does not own is not trusted either.
        let mine = (0..)
            .map(|i| format!("/m{i}"))
            .find(|p| partition_of(p, k) == 0)
            .unwrap();
        let forged = encode_facts(&[Fact::Node {
            path: mine.clone(),
            owned: Some(OwnedFields {
                data: None,
                version: 9,
                mzxid: 9,
                mtime: 9,
            }),
        }]);
        s.execute(
            &delete,
            3,
            &BTreeMap::from([(0, Bytes::new()), (1, forged)]),
        );
        assert_eq!(s.zk().last_zxid(), 3);
    }

    #[test]
    fn facts_round_trip_and_garbage_is_rejected() {
        let facts = vec![
            Fact::Node {
                path: "/a".into(),
                owned: Some(OwnedFields {
                    data: Some(b"xy".to_vec()),
                    version: 3,
                    mzxid: 9,
                    mtime: 77,
                }),
            },
            Fact::Node {
                path: "/b".into(),
                owned: Some(OwnedFields {
                    data: None,
                    version: 0,
                    mzxid: 1,
                    mtime: 2,
                }),
            },
            Fact::Node {
                path: "/c".into(),
                owned: None,
            },
            Fact::WatchVerdict(true),
        ];
        let bytes = encode_facts(&facts);
        assert_eq!(decode_facts(&bytes), Some(facts));
        assert_eq!(decode_facts(&[]), Some(vec![]));
        // A prefix decodes only when it ends at an entry boundary, and then to fewer facts.
        let mut whole = 0;
        for cut in 1..bytes.len() {
            if let Some(f) = decode_facts(&bytes[..cut]) {
                assert!(f.len() < 4, "prefix {cut}");
                whole += 1;
            }
        }
        assert_eq!(whole, 3);
        for bad in [
            &[3u8][..],
            &[1, 0xff, 0xff, 0xff, 0xff],
            &[2, 7],
            &[
                1, 0, 0, 0, 1, b'/', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0xff, 0xff, 0xff, 0xfe,
            ],
            &[1, 0, 0, 0, 1, 0xff, 0],
        ] {
            assert_eq!(decode_facts(bad), None, "{bad:?}");
        }
    }
}
