"""ZooKeeper's own command-line clients scripted against the server.

zkCli.sh (the Java client, ZooKeeperMain) is run both one command per
invocation and as a session fed on stdin; the C client cli_mt (libzookeeper_mt)
is fed on stdin. Both go through create/ls/get/set/delete/stat, error replies,
sequential and ephemeral nodes, and watches fired by a change made from
another session (a kazoo client).
"""

import os
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"
TIMEOUT = 20.0


def zkcli(server, *args):
    """One zkCli.sh invocation running a single command; returns its output."""
    out = subprocess.run(
        [ZKCLI, "-server", server, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
    ).stdout.decode(errors="replace")
    return "\n".join(line for line in out.splitlines() if "SLF4J" not in line)


def parse_stat(text):
    """zkCli's `stat` block as a dict of its `key = value` lines."""
    fields = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+) = (.*)$", line.strip())
        if m:
            fields[m.group(1)] = m.group(2)
    return fields


class Interactive:
    """A command-line client fed line by line on stdin, its output read as it
    comes (an expect-like driver)."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines = []
        self.pos = 0
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF marker
            self.cond.notify_all()

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, pattern, timeout=TIMEOUT):
        """Wait for a line matching `pattern` after the last matched one."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                while self.pos < len(self.lines):
                    line = self.lines[self.pos]
                    self.pos += 1
                    if line is None:
                        raise AssertionError("EOF while waiting for %r; output:\n%s" % (pattern, self.text()))
                    m = rx.search(line)
                    if m:
                        return m
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %r; output:\n%s" % (pattern, self.text()))
                self.cond.wait(left)

    def expect_block(self, until, timeout=TIMEOUT):
        """Collect lines from the current position up to a line matching `until`."""
        start = self.pos
        self.expect(until, timeout)
        return "\n".join(l for l in self.lines[start : self.pos] if l is not None)

    def text(self):
        return "\n".join(l for l in self.lines if l is not None)

    def close(self, quit_cmd="quit"):
        try:
            self.send(quit_cmd)
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        return self.proc.returncode


@pytest.fixture
def base(make_client):
    path = "/compat-cli-%s" % uuid.uuid4().hex[:8]
    admin = make_client()
    yield path
    admin.delete(path, recursive=True) if admin.exists(path) else None


# ------------------------------------------------------------------ zkCli.sh


def test_zkcli_one_command_per_invocation(server, base, make_client):
    kz = make_client()
    assert "Created %s" % base in zkcli(server, "create", base, "hello")
    assert kz.get(base)[0] == b"hello"
    assert re.search(r"^hello$", zkcli(server, "get", base), re.M)
    zkcli(server, "set", base, "world")
    assert kz.get(base)[0] == b"world"
    stat = parse_stat(zkcli(server, "stat", base))
    assert stat["dataVersion"] == "1"
    assert stat["dataLength"] == "5"
    assert stat["numChildren"] == "0"
    assert stat["ephemeralOwner"] == "0x0"
    assert int(stat["cZxid"], 16) == kz.exists(base).czxid
    zkcli(server, "create", base + "/child", "c")
    assert re.search(r"^\[child\]$", zkcli(server, "ls", base), re.M)
    assert "Node not empty: %s" % base in zkcli(server, "delete", base)
    assert "Node already exists: %s" % base in zkcli(server, "create", base, "again")
    zkcli(server, "delete", base + "/child")
    zkcli(server, "delete", base)
    assert kz.exists(base) is None
    assert "Node does not exist: %s" % base in zkcli(server, "get", base)


def test_zkcli_scripted_session(server, base, make_client):
    kz = make_client()
    cli = Interactive([ZKCLI, "-server", server])
    try:
        cli.expect(r"WatchedEvent state:SyncConnected type:None")
        cli.send("create %s root" % base)
        cli.expect(r"^Created %s$" % re.escape(base))
        cli.send("create %s/a alpha" % base)
        cli.expect(r"^Created %s/a$" % re.escape(base))
        cli.send("create -s %s/seq- s" % base)
        seq = cli.expect(r"^Created %s/seq-(\d{10})$" % re.escape(base)).group(1)
        # The sequence suffix is the parent's cversion before the create.
        assert seq == "0000000001"
        cli.send("create -e %s/eph e" % base)
        cli.expect(r"^Created %s/eph$" % re.escape(base))
        cli.send("ls %s" % base)
        cli.expect(r"^\[a, eph, seq-0000000001\]$")
        cli.send("get %s/a" % base)
        cli.expect(r"^alpha$")
        cli.send("set %s/a beta" % base)
        cli.send("set -v 7 %s/a gamma" % base)
        cli.expect(r"^version No is not valid : %s/a$" % re.escape(base))
        cli.send("stat %s/a" % base)
        block = cli.expect_block(r"^numChildren = ")
        st = parse_stat(block)
        assert st["dataVersion"] == "1" and st["dataLength"] == "4", block
        cli.send("stat %s/eph" % base)
        eph = parse_stat(cli.expect_block(r"^numChildren = "))
        assert eph["ephemeralOwner"] != "0x0"
        assert int(eph["ephemeralOwner"], 16) == kz.exists(base + "/eph").ephemeralOwner
        cli.send("stat %s" % base)
        parent = parse_stat(cli.expect_block(r"^numChildren = "))
        assert parent["numChildren"] == "3" and parent["cversion"] == "3"
        cli.send("get %s/missing" % base)
        cli.expect(r"^Node does not exist: %s/missing$" % re.escape(base))
        cli.send("delete %s" % base)
        cli.expect(r"^Node not empty: %s$" % re.escape(base))
        cli.send("delete -v 0 %s/a" % base)
        cli.expect(r"^version No is not valid : %s/a$" % re.escape(base))
        cli.send("delete -v 1 %s/a" % base)
        cli.send("getAcl %s" % base)
        cli.expect(r"^'world,'anyone$")
        cli.expect(r"^: cdrwa$")
        cli.send("ls %s" % base)
        cli.expect(r"^\[eph, seq-0000000001\]$")
        assert kz.get(base)[0] == b"root"
        assert kz.exists(base + "/a") is None
    finally:
        cli.close()
    # The ephemeral node went away with zkCli's session.
    assert kz.exists(base + "/eph") is None
    assert kz.get_children(base) == ["seq-0000000001"]


def test_zkcli_watches_fire(server, base, make_client):
    kz = make_client()
    kz.create(base, b"v0")
    cli = Interactive([ZKCLI, "-server", server])
    try:
        cli.expect(r"WatchedEvent state:SyncConnected type:None")
        cli.send("get -w %s" % base)
        cli.expect(r"^v0$")
        kz.set(base, b"v1")
        cli.expect(r"WatchedEvent state:SyncConnected type:NodeDataChanged path:%s$" % re.escape(base))
        cli.send("ls -w %s" % base)
        cli.expect(r"^\[\]$")
        kz.create(base + "/kid", b"k")
        cli.expect(r"WatchedEvent state:SyncConnected type:NodeChildrenChanged path:%s$" % re.escape(base))
        cli.send("stat -w %s/later" % base)
        cli.expect(r"^Node does not exist: %s/later$" % re.escape(base))
        kz.create(base + "/later", b"")
        cli.expect(r"WatchedEvent state:SyncConnected type:NodeCreated path:%s/later$" % re.escape(base))
        cli.send("get -w %s/kid" % base)
        cli.expect(r"^k$")
        kz.delete(base + "/kid")
        cli.expect(r"WatchedEvent state:SyncConnected type:NodeDeleted path:%s/kid$" % re.escape(base))
        # A watch is one-shot: a second change fires nothing new.
        kz.set(base, b"v2")
        cli.send("get %s" % base)
        cli.expect(r"^v2$")
        assert "NodeDataChanged path:%s\n" % base not in "\n".join(cli.lines[cli.pos - 1 :]) + "\n"
    finally:
        cli.close()
    assert cli.text().count("type:NodeDataChanged path:%s" % base) == 1


# -------------------------------------------------------------------- cli_mt


def cli_mt(server):
    # stdbuf: cli_mt writes with stdio, block-buffered on a pipe.
    return Interactive(["stdbuf", "-oL", "-eL", CLI_MT, server])


def test_cli_mt_crud(server, base, make_client):
    kz = make_client()
    cli = cli_mt(server)
    try:
        cli.expect(r"Watcher SESSION_EVENT state = CONNECTED_STATE")
        sid = int(cli.expect(r"Got a new session id: 0x([0-9a-f]+)").group(1), 16)
        cli.send("create %s" % base)
        cli.expect(r"^\[%s\]: rc = 0$" % re.escape(base))
        cli.expect(r"name = %s$" % re.escape(base))
        # cli_mt creates nodes with the data "new".
        assert kz.get(base)[0] == b"new"
        cli.send("create %s" % base)
        cli.expect(r"^\[%s\]: rc = -110$" % re.escape(base))  # ZNODEEXISTS
        cli.send("set %s hello" % base)
        cli.expect(r"^%s: rc = 0" % re.escape(base))
        cli.expect(r"version=1\taversion=0")
        cli.send("get %s" % base)
        cli.expect(r"^%s: rc = 0$" % re.escape(base))
        cli.expect(r"^ value_len = 5$")
        cli.expect(r"^hello$")
        cli.send("create +s %s/s-" % base)
        cli.expect(r"name = %s/s-0000000000$" % re.escape(base))
        cli.send("create +e %s/eph" % base)
        cli.expect(r"name = %s/eph$" % re.escape(base))
        assert kz.exists(base + "/eph").ephemeralOwner == sid
        cli.send("ls %s" % base)
        cli.expect(r"^%s: rc = 0$" % re.escape(base))
        kids = {cli.expect(r"^\t(\S+)$").group(1), cli.expect(r"^\t(\S+)$").group(1)}
        assert kids == {"s-0000000000", "eph"}
        cli.send("exists %s/none" % base)
        cli.expect(r"^Error -101 for %s/none$" % re.escape(base))  # ZNONODE
        cli.send("delete %s" % base)
        cli.expect(r"^%s: rc = -111$" % re.escape(base))  # ZNOTEMPTY
        cli.send("delete %s/s-0000000000" % base)
        cli.expect(r"^%s/s-0000000000: rc = 0$" % re.escape(base))
        cli.send("delete %s/none" % base)
        cli.expect(r"^%s/none: rc = -101$" % re.escape(base))
        cli.send("get %s/none" % base)
        cli.expect(r"^%s/none: rc = -101$" % re.escape(base))
        assert kz.get_children(base) == ["eph"]
    finally:
        cli.close()
    assert kz.exists(base + "/eph") is None, "cli_mt's ephemeral outlived its session"


def test_cli_mt_watches_fire(server, base, make_client):
    kz = make_client()
    kz.create(base, b"v0")
    cli = cli_mt(server)
    try:
        cli.expect(r"Watcher SESSION_EVENT state = CONNECTED_STATE")
        # cli_mt's get, ls and wexists leave a watch.
        cli.send("get %s" % base)
        cli.expect(r"^v0$")
        kz.set(base, b"v1")
        cli.expect(r"Watcher CHANGED_EVENT state = CONNECTED_STATE for path %s$" % re.escape(base))
        cli.send("ls %s" % base)
        cli.expect(r"^%s: rc = 0$" % re.escape(base))
        kz.create(base + "/kid", b"")
        cli.expect(r"Watcher CHILD_EVENT state = CONNECTED_STATE for path %s$" % re.escape(base))
        cli.send("wexists %s/later" % base)
        cli.expect(r"^Error -101 for %s/later$" % re.escape(base))  # ZNONODE
        kz.create(base + "/later", b"")
        cli.expect(r"Watcher CREATED_EVENT state = CONNECTED_STATE for path %s/later$" % re.escape(base))
        cli.send("get %s/kid" % base)
        cli.expect(r"^%s/kid: rc = 0$" % re.escape(base))
        kz.delete(base + "/kid")
        cli.expect(r"Watcher DELETED_EVENT state = CONNECTED_STATE for path %s/kid$" % re.escape(base))
    finally:
        cli.close()
    assert cli.text().count("CHANGED_EVENT state = CONNECTED_STATE for path %s\n" % base) <= 1
