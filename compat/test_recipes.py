"""kazoo recipes driven concurrently by several sessions against the server.

Each test uses several independent KazooClient sessions (one TCP connection
each) and threads, and asserts the recipe's guarantee: mutual exclusion, a
single leader, queue order, exact counter totals, barrier release points,
and watch callbacks that observe every committed state they must observe.
"""

import threading
import time

import pytest
from kazoo.exceptions import ConnectionClosedError, LockTimeout, NoNodeError
from kazoo.recipe.cache import TreeCache, TreeEvent

CLIENTS = 4
DEADLINE = 60.0


def run_threads(targets, timeout=DEADLINE):
    """Run callables concurrently; re-raise the first failure; fail on hang."""
    errors = []

    def wrap(fn):
        def inner():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        return inner

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after %ss" % timeout
    if errors:
        raise errors[0]


def wait_until(pred, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Occupancy:
    """Counts threads inside a critical section and remembers the maximum."""

    def __init__(self):
        self.guard = threading.Lock()
        self.inside = 0
        self.max_inside = 0
        self.entries = []

    def enter(self, who):
        with self.guard:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
            self.entries.append(who)

    def leave(self):
        with self.guard:
            self.inside -= 1


# --------------------------------------------------------------------- Lock


def test_lock_mutual_exclusion(make_client, root):
    path = root + "/lock"
    clients = [make_client() for _ in range(CLIENTS)]
    occ = Occupancy()
    shared = {"value": 0}
    rounds = 5

    def worker(i):
        client = clients[i % CLIENTS]
        ident = "worker-%d" % i
        lock = client.Lock(path, ident)

        def body():
            for _ in range(rounds):
                with lock:
                    occ.enter(ident)
                    # The lock holder is the first contender in ZooKeeper's order.
                    assert lock.contenders()[0] == ident
                    v = shared["value"]
                    time.sleep(0.002)
                    shared["value"] = v + 1
                    occ.leave()

        return body

    workers = 2 * CLIENTS
    run_threads([worker(i) for i in range(workers)])
    assert occ.max_inside == 1
    assert shared["value"] == workers * rounds
    assert len(occ.entries) == workers * rounds
    # All lock nodes are gone once everybody released.
    assert clients[0].get_children(path) == []


def test_lock_blocking_timeout_and_session_close(make_client, root):
    path = root + "/lock"
    a, b = make_client(), make_client()
    lock_a = a.Lock(path, "a")
    lock_b = b.Lock(path, "b")
    assert lock_a.acquire(timeout=10)
    assert lock_b.acquire(blocking=False) is False
    with pytest.raises(LockTimeout):
        lock_b.acquire(timeout=0.3)

    got = threading.Event()

    def waiter():
        assert lock_b.acquire(timeout=20)
        got.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    wait_until(lambda: lock_a.contenders() == ["a", "b"], what="b contending")
    assert not got.wait(0.3)
    # Closing A's session deletes its ephemeral lock node: B must get the lock.
    a.stop()
    assert got.wait(15), "lock not handed over after the holder's session closed"
    t.join(5)
    assert lock_b.contenders() == ["b"]
    lock_b.release()
    assert b.get_children(path) == []


def test_semaphore_leases(make_client, root):
    path = root + "/sem"
    clients = [make_client() for _ in range(CLIENTS)]
    occ = Occupancy()

    def worker(i):
        def body():
            sem = clients[i % CLIENTS].Semaphore(path, "w%d" % i, max_leases=2)
            for _ in range(3):
                with sem:
                    occ.enter(i)
                    time.sleep(0.01)
                    occ.leave()

        return body

    run_threads([worker(i) for i in range(2 * CLIENTS)])
    assert 1 <= occ.max_inside <= 2
    assert len(occ.entries) == 2 * CLIENTS * 3


# ----------------------------------------------------------------- Election


def test_election_exactly_one_leader(make_client, root):
    path = root + "/election"
    clients = [make_client() for _ in range(CLIENTS)]
    occ = Occupancy()
    elected = []

    def candidate(i):
        def lead():
            occ.enter(i)
            elected.append(i)
            time.sleep(0.05)
            occ.leave()

        def body():
            clients[i].Election(path, "cand-%d" % i).run(lead)

        return body

    run_threads([candidate(i) for i in range(CLIENTS)])
    assert occ.max_inside == 1
    assert sorted(elected) == list(range(CLIENTS))


def test_election_failover_on_session_close(make_client, root):
    path = root + "/election"
    a, b = make_client(), make_client()
    a_leading, a_release, b_leading = threading.Event(), threading.Event(), threading.Event()

    def lead_a():
        a_leading.set()
        a_release.wait(20)

    def run_a():
        try:
            a.Election(path, "a").run(lead_a)
        except ConnectionClosedError:
            pass  # A's session was closed under it on purpose.

    ta = threading.Thread(target=run_a, daemon=True)
    ta.start()
    assert a_leading.wait(15)
    election_b = b.Election(path, "b")
    tb = threading.Thread(target=lambda: election_b.run(b_leading.set), daemon=True)
    tb.start()
    wait_until(lambda: election_b.contenders() == ["a", "b"], what="both contenders")
    assert not b_leading.wait(0.3), "b became leader while a leads"
    a.stop()
    assert b_leading.wait(15), "b not elected after the leader's session closed"
    a_release.set()
    ta.join(5)
    tb.join(5)


# -------------------------------------------------------------------- Queue


def test_queue_fifo_and_priority(make_client, root):
    path = root + "/queue"
    producers = [make_client() for _ in range(CLIENTS)]
    per_producer = 15

    def producer(i):
        def body():
            q = producers[i].Queue(path)
            for n in range(per_producer):
                q.put(("%d:%d" % (i, n)).encode(), priority=100)

        return body

    run_threads([producer(i) for i in range(CLIENTS)])
    q = producers[0].Queue(path)
    q.put(b"urgent", priority=1)
    q.put(b"late", priority=999)
    assert len(q) == CLIENTS * per_producer + 2
    got = []
    while True:
        item = q.get()
        if item is None:
            break
        got.append(item.decode())
    assert got[0] == "urgent"
    assert got[-1] == "late"
    middle = got[1:-1]
    assert len(middle) == CLIENTS * per_producer
    # Each producer's items come out in the order it put them (FIFO per session).
    for i in range(CLIENTS):
        mine = [int(x.split(":")[1]) for x in middle if x.startswith("%d:" % i)]
        assert mine == list(range(per_producer))
    assert len(q) == 0


def test_queue_concurrent_consumers_each_item_once(make_client, root):
    path = root + "/queue"
    clients = [make_client() for _ in range(CLIENTS)]
    total = 60
    q0 = clients[0].Queue(path)
    for n in range(total):
        q0.put(b"%d" % n)
    taken = [[] for _ in range(CLIENTS)]

    def consumer(i):
        def body():
            q = clients[i].Queue(path)
            while True:
                item = q.get()
                if item is None:
                    return
                taken[i].append(int(item))

        return body

    run_threads([consumer(i) for i in range(CLIENTS)])
    everything = sorted(x for t in taken for x in t)
    assert everything == list(range(total))
    for t in taken:
        assert t == sorted(t), "a consumer saw items out of FIFO order"


# ------------------------------------------------------------- LockingQueue


def test_locking_queue_exactly_once(make_client, root):
    path = root + "/lqueue"
    clients = [make_client() for _ in range(CLIENTS)]
    total = 24
    lq0 = clients[0].LockingQueue(path)
    lq0.put_all([b"%d" % n for n in range(total)], priority=50)
    lq0.put(b"first", priority=0)
    assert len(lq0) == total + 1
    consumed = [[] for _ in range(CLIENTS)]

    def consumer(i):
        def body():
            q = clients[i].LockingQueue(path)
            while True:
                item = q.get(timeout=0.5)
                if item is None:
                    return
                assert q.holds_lock()
                consumed[i].append(item)
                assert q.consume()

        return body

    run_threads([consumer(i) for i in range(CLIENTS)])
    items = [x for c in consumed for x in c]
    assert sorted(items) == sorted([b"first"] + [b"%d" % n for n in range(total)])
    assert len(lq0) == 0


def test_locking_queue_release_and_session_loss(make_client, root):
    path = root + "/lqueue"
    a, b = make_client(), make_client()
    qa, qb = a.LockingQueue(path), b.LockingQueue(path)
    qa.put(b"one")
    qa.put(b"two")
    assert qa.get(timeout=5) == b"one"
    # While A holds "one", B gets the next entry, not the locked one.
    assert qb.get(timeout=5) == b"two"
    assert qb.release()
    assert qb.get(timeout=5) == b"two"
    assert qb.consume()
    assert qb.get(timeout=0.3) is None
    # A's lock is ephemeral: closing A's session makes "one" available again.
    a.stop()
    assert qb.get(timeout=10) == b"one"
    assert qb.consume()
    assert len(qb) == 0


# ------------------------------------------------------------------ Barrier


def test_barrier_blocks_until_removed(make_client, root):
    path = root + "/barrier"
    clients = [make_client() for _ in range(CLIENTS)]
    clients[0].Barrier(path).create()
    passed = []
    removed = threading.Event()

    def waiter(i):
        def body():
            assert clients[i].Barrier(path).wait(timeout=20)
            assert removed.is_set(), "released before the barrier was removed"
            passed.append(i)

        return body

    threads_body = [waiter(i) for i in range(1, CLIENTS)]

    def remover():
        time.sleep(0.5)
        assert passed == []
        removed.set()
        clients[0].Barrier(path).remove()

    run_threads(threads_body + [remover])
    assert sorted(passed) == list(range(1, CLIENTS))
    # Waiting on a missing barrier returns at once; a present one times out.
    assert clients[1].Barrier(path).wait(timeout=1)
    clients[0].Barrier(path).create()
    assert clients[1].Barrier(path).wait(timeout=0.3) is False


def test_double_barrier_enter_and_leave(make_client, root):
    path = root + "/dbarrier"
    clients = [make_client() for _ in range(CLIENTS)]
    guard = threading.Lock()
    state = {"entered": 0, "leaving": 0}
    after_enter, after_leave = [], []

    def member(i):
        def body():
            db = clients[i].DoubleBarrier(path, CLIENTS, identifier="m%d" % i)
            time.sleep(0.05 * i)
            with guard:
                state["entered"] += 1
            db.enter()
            assert db.participating
            with guard:
                after_enter.append(state["entered"])
            time.sleep(0.05 * (CLIENTS - i))
            with guard:
                state["leaving"] += 1
            db.leave()
            with guard:
                after_leave.append(state["leaving"])

        return body

    run_threads([member(i) for i in range(CLIENTS)])
    # Nobody got through enter() before all had arrived, nor out of leave()
    # before all had started leaving.
    assert after_enter == [CLIENTS] * CLIENTS
    assert after_leave == [CLIENTS] * CLIENTS
    assert clients[0].get_children(path) == []


# ------------------------------------------------------------------ Counter


def test_counter_concurrent_increments(make_client, root):
    path = root + "/counter"
    retry = {"max_tries": -1, "delay": 0.005, "backoff": 1.2, "max_delay": 0.05}
    clients = [make_client(command_retry=retry) for _ in range(CLIENTS)]
    per_thread = 20

    def incr(i):
        def body():
            c = clients[i % CLIENTS].Counter(path)
            for _ in range(per_thread):
                c += 1
                assert c.post_value == c.pre_value + 1

        return body

    threads = 2 * CLIENTS
    run_threads([incr(i) for i in range(threads)])
    counter = clients[0].Counter(path)
    assert counter.value == threads * per_thread
    data, stat = clients[0].get(path)
    assert data == str(threads * per_thread).encode()
    assert stat.version == threads * per_thread
    counter -= 5
    assert counter.value == threads * per_thread - 5
    fc = clients[1].Counter(root + "/float", default=1.5)
    fc += 2.25
    assert fc.value == 3.75


# -------------------------------------------------------------------- Party


def test_party_membership(make_client, root):
    path = root + "/party"
    clients = [make_client() for _ in range(CLIENTS)]
    parties = [clients[i].Party(path, "member-%d" % i) for i in range(CLIENTS)]
    run_threads([p.join for p in parties])
    expected = {"member-%d" % i for i in range(CLIENTS)}
    for p in parties:
        assert set(p) == expected
        assert len(p) == CLIENTS
    shallow = [clients[i].ShallowParty(path + "-shallow", "s%d" % i) for i in range(CLIENTS)]
    run_threads([p.join for p in shallow])
    assert set(shallow[0]) == {"s%d" % i for i in range(CLIENTS)}
    parties[1].leave()
    assert set(parties[0]) == expected - {"member-1"}
    # Party members are ephemeral: a closed session leaves the party.
    clients[2].stop()
    assert set(parties[0]) == expected - {"member-1", "member-2"}
    assert len(shallow[0]) == CLIENTS - 1


# ---------------------------------------------------------------- TreeCache


def test_tree_cache_follows_concurrent_writers(make_client, root):
    path = root + "/tree"
    watcher = make_client()
    writers = [make_client() for _ in range(CLIENTS - 1)]
    watcher.ensure_path(path)
    events = []
    initialized = threading.Event()

    def listener(event):
        if event.event_type == TreeEvent.INITIALIZED:
            initialized.set()
        elif event.event_type in (TreeEvent.NODE_ADDED, TreeEvent.NODE_UPDATED, TreeEvent.NODE_REMOVED):
            events.append((event.event_type, event.event_data.path))

    cache = TreeCache(watcher, path)
    cache.listen(listener)
    cache.start()
    try:
        assert initialized.wait(15)

        def writer(i):
            def body():
                w = writers[i]
                base = "%s/w%d" % (path, i)
                w.create(base, b"v0")
                for n in range(5):
                    w.create("%s/c%d" % (base, n), b"child")
                w.set(base, b"v1")
                w.delete("%s/c0" % base)
                w.set("%s/c1" % base, b"changed")

            return body

        run_threads([writer(i) for i in range(len(writers))])

        def converged():
            for i in range(len(writers)):
                base = "%s/w%d" % (path, i)
                node = cache.get_data(base)
                if node is None or node.data != b"v1":
                    return False
                kids = cache.get_children(base)
                if kids != {"c1", "c2", "c3", "c4"}:
                    return False
                c1 = cache.get_data(base + "/c1")
                if c1 is None or c1.data != b"changed":
                    return False
                # NODE_ADDED reaches the listener after the node's data arrives, which on a
                # partitioned server may come from another partition after the parent's children.
                for node in [base] + ["%s/c%d" % (base, n) for n in range(1, 5)]:
                    if (TreeEvent.NODE_ADDED, node) not in events:
                        return False
            return True

        wait_until(converged, what="tree cache to converge")
        for i in range(len(writers)):
            base = "%s/w%d" % (path, i)
            # Every node in the final tree was announced (intermediate states
            # may legitimately be skipped: watches are one-shot).
            for node in [base] + ["%s/c%d" % (base, n) for n in range(1, 5)]:
                assert (TreeEvent.NODE_ADDED, node) in events
            # The cached data version matches the server's (TreeCache refreshes
            # a node's stat on data events, not on child events).
            data, stat = watcher.get(base)
            assert cache.get_data(base).stat.version == stat.version == 1
            assert cache.get_data(base).stat.mzxid == stat.mzxid
            assert stat.numChildren == 4 and stat.cversion == 6
        # One change at a time, each seen as its own event.
        w = writers[0]
        node = path + "/step"
        w.create(node, b"a")
        wait_until(lambda: (TreeEvent.NODE_ADDED, node) in events, what="step added")
        w.set(node, b"b")
        wait_until(lambda: (TreeEvent.NODE_UPDATED, node) in events, what="step updated")
        assert cache.get_data(node).data == b"b"
        w.delete(node)
        wait_until(lambda: (TreeEvent.NODE_REMOVED, node) in events, what="step removed")
        assert cache.get_data(node) is None
    finally:
        cache.close()


# ---------------------------------------------------------------- DataWatch


def test_data_watch_sees_changes_and_delete(make_client, root):
    path = root + "/data"
    watchers = [make_client() for _ in range(2)]
    writer = make_client()
    seen = [[] for _ in watchers]
    conds = [threading.Condition() for _ in watchers]

    for i, w in enumerate(watchers):

        def cb(data, stat, event=None, i=i):
            with conds[i]:
                seen[i].append((data, stat.version if stat else None, event.type if event else None))
                conds[i].notify_all()

        w.DataWatch(path, cb)

    for i in range(len(watchers)):
        wait_until(lambda i=i: len(seen[i]) >= 1, what="initial DataWatch call")
        assert seen[i][0] == (None, None, None)

    writer.create(path, b"v0")
    for i in range(len(watchers)):
        wait_until(lambda i=i: any(s[0] == b"v0" for s in seen[i]), what="creation seen")
    for n in range(1, 6):
        writer.set(path, b"v%d" % n)
        # Each watcher observes the latest value; versions never go backwards.
        for i in range(len(watchers)):
            wait_until(lambda i=i, n=n: seen[i][-1][0] == b"v%d" % n, what="v%d seen" % n)
    writer.delete(path)
    for i in range(len(watchers)):
        wait_until(lambda i=i: seen[i][-1][0] is None and seen[i][-1][2] == "DELETED", what="delete seen")
        versions = [v for (_d, v, _e) in seen[i] if v is not None]
        assert versions == sorted(versions)
        assert versions[-1] == 5
        types = {e for (_d, _v, e) in seen[i]}
        assert {"CREATED", "CHANGED", "DELETED"} <= types


# ------------------------------------------------------------ ChildrenWatch


def test_children_watch_concurrent_creators(make_client, root):
    path = root + "/kids"
    watcher = make_client()
    creators = [make_client() for _ in range(CLIENTS - 1)]
    watcher.ensure_path(path)
    snapshots = []
    events = []

    def cb(children, event):
        snapshots.append(sorted(children))
        if event is not None:
            events.append(event.type)

    watcher.ChildrenWatch(path, cb, send_event=True)
    wait_until(lambda: snapshots, what="initial ChildrenWatch call")
    assert snapshots[0] == []
    per = 6

    def creator(i):
        def body():
            for n in range(per):
                creators[i].create("%s/c%d-%d" % (path, i, n), b"")

        return body

    run_threads([creator(i) for i in range(len(creators))])
    expected = sorted("c%d-%d" % (i, n) for i in range(len(creators)) for n in range(per))
    wait_until(lambda: snapshots[-1] == expected, what="children to converge")
    assert set(events) == {"CHILD"}
    # Snapshots only ever grow while creators only create.
    for before, after in zip(snapshots, snapshots[1:]):
        assert set(before) <= set(after)
    # Ephemeral children vanish with their session, and the watch sees it.
    creators[0].create(path + "/eph", b"", ephemeral=True)
    wait_until(lambda: "eph" in snapshots[-1], what="ephemeral child seen")
    creators[0].stop()
    wait_until(lambda: snapshots[-1] == expected, what="ephemeral child gone")
    with pytest.raises(NoNodeError):
        watcher.get(path + "/eph")
