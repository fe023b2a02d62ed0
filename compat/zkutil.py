"""Shared helpers for the compat suites: free ports, a real Apache ZooKeeper 3.8
standalone server started from the Debian packages, and readiness probes.

Invariant: every server started here listens on 127.0.0.1 only, lives in its own
temporary directory, and is stopped (process group killed, directory removed)
by ``stop()`` or on leaving the ``with`` block.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
ZK_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"


def free_port():
    """A TCP port on 127.0.0.1 that was free when asked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct TCP ports on 127.0.0.1 that were free when asked (all held open while
    choosing, so none is handed out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def split_hostport(hostport):
    host, _, port = hostport.rpartition(":")
    return host or "127.0.0.1", int(port)


def zk_handshake(host, port, timeout=2.0):
    """True when the server at host:port answers a ZooKeeper ConnectRequest
    with a ConnectResponse carrying a non-zero session id (the session is
    closed again right away)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            # ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId,
            # passwd (buffer), readOnly (bool).
            body = struct.pack(">iqiqi", 0, 0, 10000, 0, 16) + b"\0" * 16 + b"\0"
            s.sendall(struct.pack(">i", len(body)) + body)
            hdr = _recv_exact(s, 4)
            (length,) = struct.unpack(">i", hdr)
            if length < 20 or length > 4096:
                return False
            resp = _recv_exact(s, length)
            _proto, _timeout, session_id = struct.unpack(">iiq", resp[:16])
            if session_id == 0:
                return False
            # closeSession: RequestHeader(xid=1, type=-11).
            s.sendall(struct.pack(">iii", 8, 1, -11))
            try:
                _recv_exact(s, 4)
            except OSError:
                pass
            return True
    except (OSError, struct.error):
        return False


def four_letter(host, port, command, timeout=5.0):
    """The text a server answers to a four letter word, or None when it
    refuses (not whitelisted) or cannot be reached."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(command.encode())
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
    except OSError:
        return None
    text = out.decode(errors="replace")
    if "is not executed because it is not in the whitelist" in text:
        return None
    return text


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def wait_ready(host, port, timeout=60.0, proc=None):
    """Block until host:port answers a ZooKeeper handshake; raise on timeout
    or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server process exited with %s" % proc.returncode)
        if zk_handshake(host, port, timeout=1.0):
            return
        time.sleep(0.2)
    raise RuntimeError("server %s:%d not ready after %ss" % (host, port, timeout))


class ZooKeeperServer:
    """A real Apache ZooKeeper 3.8 standalone server (Debian package)."""

    def __init__(self, port=None, extra_conf=None, name="zk"):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra_conf = extra_conf or {}
        self.name = name
        self.dir = None
        self.proc = None
        self.log = None

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def start(self, timeout=60.0):
        self.dir = tempfile.mkdtemp(prefix="compat-%s-" % self.name)
        data = os.path.join(self.dir, "data")
        os.mkdir(data)
        conf = {
            "tickTime": "2000",
            "initLimit": "10",
            "syncLimit": "5",
            "dataDir": data,
            "clientPort": str(self.port),
            "clientPortAddress": self.host,
            "admin.enableServer": "false",
        }
        conf.update(self.extra_conf)
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            for k, v in conf.items():
                f.write("%s=%s\n" % (k, v))
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(
            ["java", "-Xmx512m", "-cp", ZK_CLASSPATH, ZK_MAIN, cfg],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_ready(self.host, self.port, timeout=timeout, proc=self.proc)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    # `python zkutil.py serve PORT`: run a ZooKeeper in the foreground until
    # SIGTERM/SIGINT (used by run.sh --zookeeper); prints "ready HOST:PORT".
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        server = ZooKeeperServer(port=int(sys.argv[2]), name="serve")
        stop = {"now": False}

        def _on_signal(*_):
            stop["now"] = True

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        server.start()
        print("ready %s" % server.address, flush=True)
        try:
            while not stop["now"] and server.proc.poll() is None:
                time.sleep(0.2)
        finally:
            server.stop()
    else:
        print("usage: zkutil.py serve PORT", file=sys.stderr)
        sys.exit(2)
