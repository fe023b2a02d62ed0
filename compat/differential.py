#!/usr/bin/env python3
"""Differential run: one seeded random operation sequence sent to a real Apache
ZooKeeper 3.8 standalone (started here) and to a target server; every reply and
error is compared.

The sequence is generated from the seed and from the REFERENCE's replies only,
so a given seed replays the same sequence against any target. Operations go
through kazoo's raw request layer (``client._call`` with the protocol request
objects: no retries, no client-side path normalisation), multi through the
Transaction request.

Normalisation (everything else is compared verbatim):
  * ctime/mtime are dropped;
  * czxid/mzxid/pzxid are replaced by a label naming where that zxid value was
    first seen in this run ("7.czxid"), so equal/unequal zxid relations are
    still compared but their numeric values are not;
  * ephemeralOwner is replaced by the index of the session that owns it;
  * children lists are sorted.
Watch events (data, exists and child watches set by the sequence) are recorded
raw, per session, as they arrive on the socket, and compared at checkpoints.

With --partitioned (a target that partitions the tree, such as Volery with
partitions > 1) zxids are Lamport clocks per partition: two commands that
touch different partitions may get the same zxid. The target's zxids are then
labelled from the reference's instead of by themselves: every zxid ZooKeeper
gives one command must be one zxid in the target too (equal stays equal, the
check made without --partitioned), and a czxid or pzxid (only create and delete
set them, and those go to every partition, so the value is unique) must not
be shared with any other command. What is no longer checked: that two local
commands (setData, or a multi without create/delete) on different znodes got
different zxids. Also with --partitioned, a session never sets a data watch
(getData or exists) on a path where it holds a persistent recursive watch:
ZooKeeper 3.8 then replaces the recursive watch by a one-shot one
(ZOOKEEPER-4466, fixed in 3.9); a partitioned Volery keeps the recursive watch,
as 3.9 does, because its other partitions never see that read.

ZooKeeper 3.8.0 sometimes keeps the watches of a session after the client
closed it (seen in about three runs of four with seed 453464689: every watch of
the closed session stays listed by `wchp`). Its checkWatches answers "yes" when
*any* session watches the path, so such a leaked watch makes it answer True
where a server that dropped the closed session's watches answers NoWatcher. A
ZooKeeper side's checkWatches that says True where the other side says
NoWatcher is counted as a reference leak, not a divergence, when every session
that ever asked for a watch of that type on that exact path (getData or exists
for data, getChildren for children, addWatch for both; asked, whatever the
reply) is one this run closed: then no live session can hold the watch. `wchp`
cannot decide it: it lists data watches only (seed 838288724 against a 2x3
Volery: a closed session's leaked child watch beside a live session's data
watch). A target that is not a ZooKeeper started here gets no such allowance.

Usage: differential.py [--seed N] [--ops N] [--target HOST[:PORT][,...]] [--partitioned]
With no --target a second real ZooKeeper is started, which validates the harness
itself (it must report 0 divergences).
"""

import argparse
import os
import random
import sys
import time
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.serialization import (
    CheckVersion,
    Create,
    Create2,
    Delete,
    Exists,
    GetACL,
    GetChildren,
    GetChildren2,
    GetData,
    SetACL,
    SetData,
    Sync,
    Transaction,
    Watch,
    int_struct,
    read_string,
    write_string,
)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, Id, make_digest_acl_credential

import zkutil

CALL_TIMEOUT = 15.0
SESSIONS = 4
CHECKPOINT_EVERY = 20


# ------------------------------------------------------- extra raw requests


class GetEphemerals:
    """getEphemerals (opcode 103): the session's ephemerals under a prefix."""

    type = 103

    def __init__(self, prefix):
        self.path = prefix

    def serialize(self):
        return bytearray(write_string(self.path))

    @classmethod
    def deserialize(cls, buf, offset):
        count = int_struct.unpack_from(buf, offset)[0]
        offset += int_struct.size
        out = []
        for _ in range(max(count, 0)):
            s, offset = read_string(buf, offset)
            out.append(s)
        return out


class GetAllChildrenNumber:
    """getAllChildrenNumber (opcode 104): number of descendants of a path."""

    type = 104

    def __init__(self, path):
        self.path = path

    def serialize(self):
        return bytearray(write_string(self.path))

    @classmethod
    def deserialize(cls, buf, offset):
        return int_struct.unpack_from(buf, offset)[0]


class AddWatch:
    """addWatch (opcode 106): mode 0 persistent, 1 persistent recursive."""

    type = 106

    def __init__(self, path, mode):
        self.path = path
        self.mode = mode

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.mode))

    @classmethod
    def deserialize(cls, buf, offset):
        return True


class WatchesRequest:
    """checkWatches (17) / removeWatches (18) with a watcher type
    (1 children, 2 data, 3 any)."""

    def __init__(self, opcode, path, wtype):
        self.type = opcode
        self.path = path
        self.wtype = wtype

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.wtype))

    @classmethod
    def deserialize(cls, buf, offset):
        return True


# ------------------------------------------------------------------- ACLs

PERM_READ, PERM_WRITE, PERM_CREATE, PERM_DELETE, PERM_ADMIN, PERM_ALL = 1, 2, 4, 8, 16, 31
USERS = {"u1": "pw1", "u2": "pw2"}
DIGEST = {u: make_digest_acl_credential(u, p) for u, p in USERS.items()}
WORLD = Id("world", "anyone")

ACL_CHOICES = [
    ("open", [ACL(PERM_ALL, WORLD)], 30),
    ("read-only", [ACL(PERM_READ, WORLD)], 4),
    ("no-delete", [ACL(PERM_ALL & ~PERM_DELETE, WORLD)], 3),
    ("no-create", [ACL(PERM_ALL & ~PERM_CREATE, WORLD)], 3),
    ("no-admin", [ACL(PERM_ALL & ~PERM_ADMIN, WORLD)], 2),
    ("creator-all", [ACL(PERM_ALL, Id("auth", ""))], 4),
    ("digest-u1", [ACL(PERM_ALL, Id("digest", DIGEST["u1"]))], 4),
    ("digest-u2+world-read", [ACL(PERM_ALL, Id("digest", DIGEST["u2"])), ACL(PERM_READ, WORLD)], 3),
    ("ip-local", [ACL(PERM_ALL, Id("ip", "127.0.0.1"))], 3),
    ("ip-cidr", [ACL(PERM_ALL, Id("ip", "127.0.0.0/8"))], 2),
    ("ip-other", [ACL(PERM_ALL, Id("ip", "10.11.12.13"))], 1),
    ("perms-zero", [ACL(0, WORLD)], 1),
    ("dup-entries", [ACL(PERM_READ, WORLD), ACL(PERM_ALL, WORLD)], 1),
    ("invalid-empty", [], 1),
    ("invalid-digest", [ACL(PERM_ALL, Id("digest", "nocolon"))], 1),
    ("invalid-ip", [ACL(PERM_ALL, Id("ip", "300.1.2.3"))], 1),
    ("invalid-scheme", [ACL(PERM_ALL, Id("nosuchscheme", "x"))], 1),
]


def pick_acl(rng):
    total = sum(w for _, _, w in ACL_CHOICES)
    r = rng.uniform(0, total)
    for name, acl, w in ACL_CHOICES:
        r -= w
        if r <= 0:
            return name, acl
    return ACL_CHOICES[0][0], ACL_CHOICES[0][1]


# ------------------------------------------------------------------ sides


class Side:
    """One server under comparison with its sessions and normalisation state."""

    def __init__(self, name, address, leaks_closed_watches):
        self.name = name
        self.address = address
        self.leaks_closed_watches = leaks_closed_watches  # ZooKeeper 3.8 (module doc)
        self.sessions = {}  # session index -> KazooClient
        self.session_index = {}  # session id -> session index
        self.zxid_labels = {}  # zxid value -> label
        self.events = {}  # session index -> list of (type, path)

    def open_session(self, index):
        client = KazooClient(hosts=self.address, timeout=30.0, connection_retry={"max_tries": 3})
        client.start(timeout=CALL_TIMEOUT)
        self.events[index] = []
        conn = client._connection
        original = conn._read_watch_event
        events = self.events[index]

        def recording(buffer, offset, _orig=original, _events=events):
            watch, _ = Watch.deserialize(buffer, offset)
            _events.append((watch.type, watch.path))
            return _orig(buffer, offset)

        conn._read_watch_event = recording
        self.sessions[index] = client
        self.session_index[client.client_id[0]] = index
        return client

    def close_session(self, index):
        client = self.sessions.pop(index)
        client.stop()
        client.close()

    def call(self, index, request):
        client = self.sessions[index]
        ar = client.handler.async_result()
        client._call(request, ar)
        try:
            return ar.get(timeout=CALL_TIMEOUT)
        except KazooException as e:
            return e
        except Exception as e:  # timeouts, connection loss: reported as a reply
            return e

    def add_auth(self, index, user, password):
        try:
            self.sessions[index].add_auth(scheme="digest", credential="%s:%s" % (user, password))
            return True
        except Exception as e:
            return e

    def drain_events(self, index):
        out = sorted(self.events[index])
        self.events[index].clear()
        return out

    def close_all(self):
        for index in list(self.sessions):
            try:
                self.close_session(index)
            except Exception:
                pass


def zxid_label(side, z, field, op_index):
    """The label of zxid value z on this side: where it was first seen."""
    label = side.zxid_labels.get(z)
    if label is None:
        label = "%d.%s" % (op_index, field)
        side.zxid_labels[z] = label
    return label


class Zxid:
    """A zxid-valued Stat field left raw by normalise(..., raw_zxids=True), to be
    labelled once both sides' replies are at hand (ZxidRelation)."""

    __slots__ = ("field", "value")

    def __init__(self, field, value):
        self.field, self.value = field, value

    def __repr__(self):
        return "Zxid(%s=%d)" % (self.field, self.value)


# Fields only create and delete set: commands every partition orders, so their zxid is unique.
GLOBAL_ZXID_FIELDS = ("czxid", "pzxid")


class ZxidRelation:
    """Labels the zxids of a partitioned target from the reference's (--partitioned).

    Invariant: to_target maps every reference zxid seen so far to the one target
    zxid seen at the same place; from_target is its inverse (a set: local commands
    of different partitions may share a target zxid); global holds the target
    zxids seen as czxid or pzxid, each of which has exactly one reference zxid."""

    def __init__(self, reference, target):
        self.ref, self.tgt = reference, target
        self.to_target = {}
        self.from_target = {}
        self.global_ = set()

    def label(self, ref_norm, tgt_norm, op_index):
        """Both normalised replies with every Zxid replaced by a label."""
        return self._walk(ref_norm, tgt_norm, op_index)

    def _walk(self, r, t, op_index):
        if isinstance(r, Zxid) and isinstance(t, Zxid) and r.field == t.field:
            return self._pair(r, t, op_index)
        if isinstance(r, dict) and isinstance(t, dict) and r.keys() == t.keys():
            pairs = {k: self._walk(r[k], t[k], op_index) for k in r}
            return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
        if isinstance(r, (list, tuple)) and isinstance(t, (list, tuple)) and len(r) == len(t) and type(r) is type(t):
            pairs = [self._walk(a, b, op_index) for a, b in zip(r, t)]
            return type(r)(p[0] for p in pairs), type(t)(p[1] for p in pairs)
        # Different shapes diverge anyway; each side is labelled on its own.
        return self._alone(self.ref, r, op_index), self._alone(self.tgt, t, op_index)

    def _alone(self, side, v, op_index):
        if isinstance(v, Zxid):
            return zxid_label(side, v.value, v.field, op_index)
        if isinstance(v, dict):
            return {k: self._alone(side, x, op_index) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(self._alone(side, x, op_index) for x in v)
        return v

    def _pair(self, r, t, op_index):
        label = zxid_label(self.ref, r.value, r.field, op_index)
        is_global = t.field in GLOBAL_ZXID_FIELDS
        mapped = self.to_target.get(r.value)
        if mapped is None:
            others = self.from_target.get(t.value, set())
            if others and (is_global or t.value in self.global_):
                other = zxid_label(self.ref, min(others), r.field, op_index)
                return label, "zxid %d: also %s's" % (t.value, other)
            self.to_target[r.value] = t.value
            self.from_target.setdefault(t.value, set()).add(r.value)
        elif mapped != t.value:
            return label, "zxid %d where %s was zxid %d" % (t.value, label, mapped)
        elif is_global and len(self.from_target[t.value]) > 1:
            return label, "zxid %d: a create/delete zxid shared by %d commands" % (t.value, len(self.from_target[t.value]))
        if is_global:
            self.global_.add(t.value)
        return label, label


def normalise(side, value, op_index, raw_zxids=False):
    """A comparable, JSON-like form of a reply (see module doc)."""
    if isinstance(value, ZnodeStat):
        out = {}
        for field in ("czxid", "mzxid", "pzxid"):
            z = getattr(value, field)
            out[field] = Zxid(field, z) if raw_zxids else zxid_label(side, z, field, op_index)
        owner = value.ephemeralOwner
        out["ephemeralOwner"] = (
            0 if owner == 0 else "session-%s" % side.session_index.get(owner, "unknown")
        )
        for field in ("version", "cversion", "aversion", "dataLength", "numChildren"):
            out[field] = getattr(value, field)
        return out
    if isinstance(value, BaseException):
        return {"error": type(value).__name__}
    if isinstance(value, ACL):
        return [value.perms, value.id.scheme, value.id.id]
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list) and value[0] and isinstance(value[0][0], ACL):
        return {
            "acl": [normalise(side, a, op_index, raw_zxids) for a in value[0]],
            "stat": normalise(side, value[1], op_index, raw_zxids),
        }
    if isinstance(value, (tuple, list)):
        return [normalise(side, v, op_index, raw_zxids) for v in value]
    return value


def sorted_children(value):
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return sorted(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list):
        return (sorted(value[0]), value[1])
    return value


# -------------------------------------------------------------- generator


class Model:
    """What the generator believes about the tree, learned only from the
    reference's replies (so the sequence is a function of the seed)."""

    def __init__(self, base):
        self.base = base
        self.known = {base}
        self.versions = {}  # path -> (version, aversion)
        self.ephemerals = {}  # session index -> set of paths
        self.recursive = {}  # session index -> paths with a persistent recursive watch
        self.sessions = list(range(SESSIONS))
        self.next_session = SESSIONS

    def learn_stat(self, path, stat):
        if isinstance(stat, ZnodeStat):
            self.versions[path] = (stat.version, stat.aversion)
            self.known.add(path)

    def forget(self, path):
        for p in list(self.known):
            if p == path or p.startswith(path + "/"):
                self.known.discard(p)
                self.versions.pop(p, None)


NAMES = ["a", "b", "c", "d", "e", "f"]


class Generator:
    def __init__(self, rng, model, partitioned=False):
        self.rng = rng
        self.m = model
        self.partitioned = partitioned

    def data_watch(self, s, p):
        """Whether a getData/exists sets a watch (see the module doc on --partitioned)."""
        w = self.rng.random() < 0.5
        return w and not (self.partitioned and p in self.m.recursive.get(s, ()))

    def existing(self):
        known = sorted(self.m.known)
        return self.rng.choice(known) if known else self.m.base

    def fresh(self):
        depth = self.rng.choice([1, 1, 2, 2, 3])
        parts = [self.rng.choice(NAMES) for _ in range(depth)]
        return self.m.base + "/" + "/".join(parts)

    def path(self):
        r = self.rng.random()
        if r < 0.55:
            return self.existing()
        if r < 0.97:
            return self.fresh()
        return self.bad_path()

    def mutable_path(self):
        """path() but never the base itself: creates, deletes and setACL stay
        strictly inside the run's subtree (nothing depends on the root)."""
        p = self.path()
        return self.fresh() if p == self.m.base else p

    def bad_path(self):
        b = self.m.base
        return self.rng.choice(
            ["", "relative", b + "/", b + "//a", b + "/./a", b + "/../a", b + "/a/.", b + "/a\u0000b"]
        )

    def child_path(self):
        """A (usually new) child of an existing node."""
        parent = self.existing()
        if self.rng.random() < 0.03:
            return self.bad_path()
        return parent.rstrip("/") + "/" + self.rng.choice(NAMES)

    def version(self, path):
        r = self.rng.random()
        known = self.m.versions.get(path)
        if r < 0.4 or known is None:
            return -1 if r < 0.8 else self.rng.randint(0, 5)
        if r < 0.85:
            return known[0]
        return known[0] + self.rng.choice([1, 2, -2, 100])

    def aversion(self, path):
        r = self.rng.random()
        known = self.m.versions.get(path)
        if r < 0.5 or known is None:
            return -1
        if r < 0.85:
            return known[1]
        return known[1] + 1

    def data(self):
        r = self.rng.random()
        if r < 0.05:
            return None
        if r < 0.15:
            return b""
        return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(1, 24)))

    def session(self):
        return self.rng.choice(self.m.sessions)

    def create_request(self, in_multi=False):
        path = self.child_path() if self.rng.random() < 0.8 else self.mutable_path()
        flags = self.rng.choice([0, 0, 0, 1, 1, 2, 3])
        if flags & 2 and path.startswith(self.m.base + "/") and self.rng.random() < 0.2:
            path = path + "/"  # sequential child named by the counter alone
        acl_name, acl = ("open", ACL_CHOICES[0][1]) if self.rng.random() < 0.6 else pick_acl(self.rng)
        data = self.data()
        if in_multi or self.rng.random() < 0.5:
            return Create(path, data, acl, flags), "create(%r, flags=%d, acl=%s)" % (path, flags, acl_name)
        return Create2(path, data, acl, flags), "create2(%r, flags=%d, acl=%s)" % (path, flags, acl_name)

    def multi_op(self):
        kind = self.rng.choice(["create", "create", "delete", "set", "check"])
        if kind == "create":
            return self.create_request(in_multi=True)
        path = self.mutable_path() if kind == "delete" else self.path()
        if kind == "delete":
            v = self.version(path)
            return Delete(path, v), "delete(%r, %d)" % (path, v)
        if kind == "set":
            v = self.version(path)
            return SetData(path, self.data(), v), "set(%r, %d)" % (path, v)
        v = self.version(path)
        return CheckVersion(path, v), "check(%r, %d)" % (path, v)

    def next(self):
        """(kind, session index, request or args, description)"""
        rng = self.rng
        s = self.session()
        r = rng.random()
        if r < 0.24:
            req, d = self.create_request()
            return "call", s, req, d
        if r < 0.33:
            p = self.mutable_path()
            v = self.version(p)
            return "call", s, Delete(p, v), "delete(%r, %d)" % (p, v)
        if r < 0.43:
            p = self.path()
            v = self.version(p)
            return "call", s, SetData(p, self.data(), v), "setData(%r, %d)" % (p, v)
        if r < 0.51:
            p = self.path()
            w = self.data_watch(s, p)
            return "call", s, GetData(p, noop_watcher if w else None), "getData(%r, watch=%s)" % (p, w)
        if r < 0.58:
            p = self.path()
            w = self.data_watch(s, p)
            return "call", s, Exists(p, noop_watcher if w else None), "exists(%r, watch=%s)" % (p, w)
        if r < 0.66:
            p = self.path()
            w = rng.random() < 0.5
            req = (GetChildren2 if rng.random() < 0.5 else GetChildren)(p, noop_watcher if w else None)
            return "call", s, req, "%s(%r, watch=%s)" % (type(req).__name__, p, w)
        if r < 0.70:
            p = self.path()
            return "call", s, GetACL(p), "getACL(%r)" % p
        if r < 0.74:
            p = self.mutable_path()
            name, acl = pick_acl(rng)
            v = self.aversion(p)
            return "call", s, SetACL(p, acl, v), "setACL(%r, %s, %d)" % (p, name, v)
        if r < 0.88:
            ops = [self.multi_op() for _ in range(rng.choice([0, 1, 2, 2, 3, 3, 4, 5]))]
            desc = "multi[%s]" % ", ".join(d for _, d in ops)
            return "call", s, Transaction([o for o, _ in ops]), desc
        if r < 0.90:
            p = self.path()
            return "call", s, Sync(p), "sync(%r)" % p
        if r < 0.925:
            p = self.existing() if rng.random() < 0.8 else self.m.base + "/"
            return "call", s, GetEphemerals(p), "getEphemerals(%r)" % p
        if r < 0.95:
            p = self.path()
            return "call", s, GetAllChildrenNumber(p), "getAllChildrenNumber(%r)" % p
        if r < 0.965:
            user = rng.choice(sorted(USERS))
            pw = USERS[user] if rng.random() < 0.8 else "wrong"
            return "auth", s, (user, pw), "addauth(digest, %s:%s)" % (user, pw)
        if r < 0.975:
            return "probe", s, None, "probe(/zookeeper)"
        if r < 0.98:
            return "close", s, None, "closeSession(%d)" % s
        if r < 0.988:
            p = self.path()
            mode = rng.choice([0, 1])
            return "call", s, AddWatch(p, mode), "addWatch(%r, mode=%d)" % (p, mode)
        if r < 0.996:
            p = self.path()
            opcode, wtype = rng.choice([17, 18]), rng.choice([1, 2, 3])
            name = {17: "checkWatches", 18: "removeWatches"}[opcode]
            return "call", s, WatchesRequest(opcode, p, wtype), "%s(%r, type=%d)" % (name, p, wtype)
        req, d = self.create_request()
        return "call", s, req, d


def noop_watcher(event):
    pass


# ---------------------------------------------------------------- running

LOST = {"ConnectionLoss", "ConnectionClosedError", "SessionExpiredError", "KazooTimeoutError", "Timeout", "TimeoutError"}


class TargetLost(Exception):
    """A server stopped answering: the run cannot go on meaningfully."""



TRACE = bool(os.environ.get("DIFFERENTIAL_TRACE"))


class Runner:
    def __init__(self, reference, target, seed, ops, max_report, partitioned=False):
        self.zxids = ZxidRelation(reference, target) if partitioned else None
        self.ref = reference
        self.tgt = target
        self.sides = (reference, target)
        self.seed = seed
        self.ops = ops
        self.max_report = max_report
        self.rng = random.Random(seed)
        self.base = "/differential-%s" % uuid.uuid4().hex[:10]
        self.model = Model(self.base)
        self.gen = Generator(self.rng, self.model, partitioned)
        self.watchers = {}  # (path, "data" | "child") -> session indices that asked for such a watch
        self.divergences = 0
        self.reference_leaks = 0  # checkWatches replies not compared (module doc)
        self.compared = 0
        self.lost = 0  # consecutive replies that were connection errors
        self.events_seen = 0  # watch events received from the reference
        self.outcomes = {}  # (operation kind, reference outcome) -> count
        self.op_index = 0

    def compare(self, desc, ref_reply, tgt_reply, excuse=None):
        self.compared += 1
        if ref_reply == tgt_reply:
            return True
        if excuse is not None and excuse(ref_reply, tgt_reply):
            self.reference_leaks += 1
            print("  op %d: %s: reference leak (see the module doc), not compared" % (self.op_index, desc))
            return True
        self.divergences += 1
        if self.divergences <= self.max_report:
            print("DIVERGENCE at op %d: %s" % (self.op_index, desc))
            print("  reference: %r" % (ref_reply,))
            print("  target:    %r" % (tgt_reply,))
        return False

    def both(self, fn, desc, excuse=None):
        raw = [fn(side) for side in self.sides]
        if any(type(r).__name__ in LOST for r in raw):
            self.lost += 1
            if self.lost >= 20:
                raise TargetLost("20 consecutive replies lost (connection errors); last at op %d: %s" % (self.op_index, desc))
        else:
            self.lost = 0
        raw_zxids = self.zxids is not None
        norm = [normalise(side, sorted_children(r), self.op_index, raw_zxids) for side, r in zip(self.sides, raw)]
        if raw_zxids:
            norm = self.zxids.label(norm[0], norm[1], self.op_index)
        self.compare(desc, norm[0], norm[1], excuse)
        return raw[0]

    def note_watch(self, s, req):
        """Record that session s asked for a watch (module doc: leaked watches)."""
        kinds = ()
        if isinstance(req, (GetData, Exists)) and req.watcher is not None:
            kinds = ("data",)
        elif isinstance(req, (GetChildren, GetChildren2)) and req.watcher is not None:
            kinds = ("child",)
        elif isinstance(req, AddWatch):
            kinds = ("data", "child")
        for kind in kinds:
            self.watchers.setdefault((req.path, kind), set()).add(s)

    def leaked_watch_excuse(self, req):
        """For checkWatches: a ZooKeeper side answers True where the other
        answers NoWatcher, and only closed sessions ever asked for such a watch."""
        kinds = {1: ("child",), 2: ("data",), 3: ("data", "child")}[req.wtype]
        askers = set().union(*(self.watchers.get((req.path, k), set()) for k in kinds))
        only_closed = bool(askers) and not askers & set(self.model.sessions)

        def excuse(ref_reply, tgt_reply):
            return only_closed and any(
                side.leaks_closed_watches and yes is True and no == {"error": "NoWatcherError"}
                for yes, no, side in ((ref_reply, tgt_reply, self.ref), (tgt_reply, ref_reply, self.tgt))
            )

        return excuse

    def open_session(self, index):
        for side in self.sides:
            side.open_session(index)

    def run(self):
        for i in range(SESSIONS):
            self.open_session(i)
        self.op_index = -1
        self.both(lambda side: side.call(0, Create(self.base, b"root", ACL_CHOICES[0][1], 0)), "create base")
        started = time.monotonic()
        for i in range(self.ops):
            self.op_index = i
            self.step()
            if (i + 1) % CHECKPOINT_EVERY == 0:
                self.checkpoint()
            if (i + 1) % 2000 == 0:
                print(
                    "  %d ops, %d divergences, %.1fs" % (i + 1, self.divergences, time.monotonic() - started),
                    flush=True,
                )
        self.op_index = self.ops
        self.checkpoint()
        self.final_dump()

    def step(self):
        kind, s, payload, desc = self.gen.next()
        desc = "[s%d] %s" % (s, desc)
        if TRACE:
            print("  op %d: %s" % (self.op_index, desc), flush=True)
        if kind == "call":
            excuse = None
            if isinstance(payload, WatchesRequest) and payload.type == 17:
                excuse = self.leaked_watch_excuse(payload)
            self.note_watch(s, payload)
            reply = self.both(lambda side: side.call(s, payload), desc, excuse)
            self.learn(s, payload, reply)
            self.tally(payload, reply)
        elif kind == "auth":
            self.both(lambda side: side.add_auth(s, *payload), desc)
        elif kind == "probe":
            self.both(lambda side: side.call(s, Exists("/zookeeper", None)), desc + " exists")
            self.both(lambda side: side.call(s, GetChildren("/zookeeper", None)), desc + " children")
            self.both(lambda side: side.call(s, GetACL("/zookeeper/quota")), desc + " quota acl")
        elif kind == "close":
            self.close_and_replace(s, desc)

    def close_and_replace(self, s, desc):
        owned = sorted(self.model.ephemerals.pop(s, set()))
        for side in self.sides:
            side.close_session(s)
        self.model.sessions.remove(s)
        new = self.model.next_session
        self.model.next_session += 1
        self.model.sessions.append(new)
        self.open_session(new)
        # The closed session's ephemerals are gone for everybody.
        for p in owned:
            reply = self.both(lambda side: side.call(new, Exists(p, None)), desc + " then exists(%r)" % p)
            if reply is None:
                self.model.forget(p)
        self.both(lambda side: side.call(new, GetChildren2(self.base, None)), desc + " then children(base)")

    def learn(self, s, req, reply):
        """Update the generator's model from the reference's reply."""
        m = self.model
        ok = not isinstance(reply, BaseException)
        if isinstance(req, AddWatch) and req.mode == 1 and ok:
            m.recursive.setdefault(s, set()).add(req.path)
        elif isinstance(req, WatchesRequest) and req.type == 18 and req.wtype in (2, 3) and ok:
            m.recursive.get(s, set()).discard(req.path)
        if isinstance(req, (Create, Create2)) and not isinstance(reply, BaseException):
            path = reply if isinstance(req, Create) else reply[0]
            m.known.add(path)
            m.versions[path] = (0, 0)
            if req.flags & 1:
                m.ephemerals.setdefault(s, set()).add(path)
        elif isinstance(req, Delete) and reply is True:
            m.forget(req.path)
        elif isinstance(req, (SetData, SetACL)):
            m.learn_stat(req.path, reply)
        elif isinstance(req, (GetData,)) and isinstance(reply, tuple):
            m.learn_stat(req.path, reply[1])
        elif isinstance(req, Exists):
            if reply is None:
                m.forget(req.path)
            else:
                m.learn_stat(req.path, reply)
        elif isinstance(req, GetChildren2) and isinstance(reply, tuple):
            m.learn_stat(req.path, reply[1])
            for c in reply[0]:
                m.known.add(req.path.rstrip("/") + "/" + c)
        elif isinstance(req, Transaction) and isinstance(reply, list):
            if reply and not any(isinstance(r, BaseException) for r in reply):
                for op, r in zip(req.operations, reply):
                    if isinstance(op, Create):
                        m.known.add(r)
                        m.versions[r] = (0, 0)
                        if op.flags & 1:
                            m.ephemerals.setdefault(s, set()).add(r)
                    elif isinstance(op, Delete):
                        m.forget(op.path)
                    elif isinstance(op, SetData):
                        m.learn_stat(op.path, r)
        if isinstance(reply, BaseException) and type(reply).__name__ == "NoNodeError":
            path = getattr(req, "path", None)
            if isinstance(path, str) and path in m.known and not isinstance(req, (Create, Create2)):
                m.forget(path)

    def tally(self, req, reply):
        name = type(req).__name__
        if isinstance(req, WatchesRequest):
            name = {17: "CheckWatches", 18: "RemoveWatches"}[req.type]
        if isinstance(reply, BaseException):
            outcome = type(reply).__name__
        elif isinstance(req, Transaction) and isinstance(reply, list):
            failed = [type(r).__name__ for r in reply if isinstance(r, BaseException)]
            bad = [f for f in failed if f not in ("RolledBackError", "RuntimeInconsistency")]
            outcome = ("failed:" + bad[0]) if bad else ("ok" if not failed else "failed")
        else:
            outcome = "ok"
        key = (name, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def print_outcomes(self):
        by_op = {}
        for (name, outcome), n in sorted(self.outcomes.items()):
            by_op.setdefault(name, []).append("%s=%d" % (outcome, n))
        for name in sorted(by_op):
            print("  %-22s %s" % (name, " ".join(by_op[name])))

    def checkpoint(self):
        """Read on every session (so all events caused so far have arrived on
        its socket), then compare the watch events each session received."""
        for s in list(self.model.sessions):
            self.both(lambda side: side.call(s, Exists(self.base, None)), "[s%d] checkpoint exists(base)" % s)
            ev = [side.drain_events(s) for side in self.sides]
            self.events_seen += len(ev[0])
            self.compare("[s%d] watch events since last checkpoint" % s, ev[0], ev[1])

    def final_dump(self):
        """Walk the whole subtree on both sides and compare every node."""
        s = self.model.sessions[0]
        todo = [self.base]
        seen = 0
        while todo:
            p = todo.pop()
            seen += 1
            reply = self.both(lambda side: side.call(s, GetChildren2(p, None)), "final children(%r)" % p)
            self.both(lambda side: side.call(s, GetData(p, None)), "final getData(%r)" % p)
            self.both(lambda side: side.call(s, GetACL(p)), "final getACL(%r)" % p)
            if isinstance(reply, tuple):
                todo.extend(p + "/" + c for c in reply[0])
        print("  final tree: %d znodes compared" % seen)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--target", default=None, help="HOST:PORT (or a comma separated list) of the server under test")
    ap.add_argument(
        "--partitioned",
        action="store_true",
        help="the target's zxids are per-partition Lamport clocks (see the module doc)",
    )
    ap.add_argument("--reference", default=None, help="HOST:PORT of an already running reference ZooKeeper")
    ap.add_argument("--max-report", type=int, default=10)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    print("differential: seed=%d ops=%d (replay with --seed %d)" % (seed, args.ops, seed), flush=True)

    started = []
    try:
        if args.reference:
            ref_addr = args.reference
        else:
            zk = zkutil.ZooKeeperServer(name="reference").start()
            started.append(zk)
            ref_addr = zk.address
        if args.target:
            tgt_addr = args.target
        else:
            zk2 = zkutil.ZooKeeperServer(name="target").start()
            started.append(zk2)
            tgt_addr = zk2.address
        print("differential: reference=%s (Apache ZooKeeper) target=%s" % (ref_addr, tgt_addr), flush=True)
        ref = Side("reference", ref_addr, leaks_closed_watches=True)
        tgt = Side("target", tgt_addr, leaks_closed_watches=not args.target)
        runner = Runner(ref, tgt, seed, args.ops, args.max_report, args.partitioned)
        t0 = time.monotonic()
        try:
            runner.run()
        except Exception as e:  # a server stopped answering: count it, report it
            print("differential: aborted at op %d: %s: %s" % (runner.op_index, type(e).__name__, e))
            runner.divergences += 1
        finally:
            ref.close_all()
            tgt.close_all()
        runner.print_outcomes()
        print("  watch events compared: %d" % runner.events_seen)
        if runner.reference_leaks:
            print("  checkWatches not compared (watches a server leaked from closed sessions): %d" % runner.reference_leaks)
        print(
            "differential: %d operations, %d replies compared, %d divergences in %.1fs (seed %d)"
            % (args.ops, runner.compared, runner.divergences, time.monotonic() - t0, seed)
        )
        print("%d divergences" % runner.divergences)
        return 0 if runner.divergences == 0 else 1
    finally:
        for zk in started:
            zk.stop()


if __name__ == "__main__":
    sys.exit(main())
