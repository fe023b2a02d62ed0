"""pytest fixtures shared by the client suites.

The server under test comes from the environment variable COMPAT_SERVER
(HOST:PORT). When it is unset, a real Apache ZooKeeper 3.8 is started for the
session so the suites can be run on their own.
"""

import os
import uuid

import pytest
from kazoo.client import KazooClient

import zkutil


@pytest.fixture(scope="session")
def server():
    addr = os.environ.get("COMPAT_SERVER")
    if addr:
        yield addr
        return
    with zkutil.ZooKeeperServer(name="pytest") as zk:
        yield zk.address


@pytest.fixture
def make_client(server):
    """Factory of started KazooClients; every client is stopped at teardown."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("timeout", 10.0)
        client = KazooClient(hosts=server, **kwargs)
        client.start(timeout=15)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            client.stop()
            client.close()
        except Exception:
            pass


@pytest.fixture
def root(make_client, request):
    """A fresh, unique znode path for one test (created, removed afterwards)."""
    path = "/compat/%s-%s" % (request.node.name, uuid.uuid4().hex[:8])
    admin = make_client()
    admin.ensure_path(path)
    yield path
    try:
        admin.delete(path, recursive=True)
    except Exception:
        pass
