"""One conformance suite for every Storage backend, plus backend-specific tests.

To add a backend: add its name to BACKENDS and a branch in `make_store`.

etcd: one throwaway etcd per test session (per xdist worker); every test gets its own key
namespace in it, so revisions are shared and start above 0 (tests compare with `base`, the
revision at the test's start). Tests that compact (compaction is global) or need an empty
store get a throwaway etcd of their own (OWN_ETCD).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

import pytest

from pyk8s.storage import open_storage
from pyk8s.storage.interface import (Event, KeyExists, KeyNotFound, KeyValue,
                                     RevisionCompacted, RevisionConflict, Storage,
                                     StorageError, StorageUnavailable)
from pyk8s.storage.etcd import EtcdStorage
from pyk8s.storage.memory import MemoryStorage
from pyk8s.storage.sqlite import SQLiteStorage
from tests.etcd_cluster import EtcdCluster

BACKENDS = ["memory", "sqlite", "etcd"]
REPO = Path(__file__).resolve().parents[2]
# Tests that get an etcd of their own: they compact, or need a store nobody wrote to.
OWN_ETCD = {"test_empty_store", "test_watch_from_zero_replays_everything",
            "test_compaction_during_replay_raises", "test_compaction",
            "test_update_after_compaction_keeps_prev_value"}


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster]:
    """One throwaway etcd member for the session (on loopback, data on tmpfs)."""
    cluster = EtcdCluster(1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def make_store(kind: str, tmp: Path, etcd: EtcdCluster | None = None,
                     **kwargs: int) -> Storage:
    if kind == "memory":
        return MemoryStorage(**kwargs)
    if kind == "sqlite":
        return await SQLiteStorage.open(str(tmp / "state.db"), **kwargs)
    if kind == "etcd":
        assert etcd is not None
        return await EtcdStorage.open(etcd.endpoints, namespace=f"/t-{uuid.uuid4().hex[:12]}",
                                      wait=10, **kwargs)
    raise AssertionError(kind)


@contextlib.asynccontextmanager
async def backend_store(request: pytest.FixtureRequest, tmp_path: Path,
                        wrap: Callable[[Storage], Storage] = lambda s: s
                        ) -> AsyncIterator[Storage]:
    """The backend `request.param` names (`wrap`ped), closed after; an etcd of its own for
    the tests in OWN_ETCD, else the session's."""
    own: EtcdCluster | None = None
    etcd: EtcdCluster | None = None
    if request.param == "etcd":
        if request.node.originalname in OWN_ETCD:
            etcd = own = EtcdCluster(1).start()
        else:
            etcd = request.getfixturevalue("etcd_server")
    s = wrap(await make_store(request.param, tmp_path, etcd))
    try:
        yield s
    finally:
        await s.close()
        if own is not None:
            own.stop()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with backend_store(request, tmp_path) as s:
        yield s


def empty_revision(store: Storage) -> int:
    """The revision of a store nobody wrote to: a new etcd starts at 1."""
    return 1 if isinstance(store, EtcdStorage) else 0


async def take(watch: AsyncIterator[Event], n: int, timeout: float = 3.0) -> list[Event]:
    """The next `n` events of `watch`."""
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await anext(watch))
    return out


async def assert_quiet(watch: AsyncIterator[Event], wait: float = 0.1) -> None:
    """No event arrives within `wait` seconds."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(watch), wait)


# -- create / get / list ------------------------------------------------------------------

async def test_create_get(store: Storage) -> None:
    kv = await store.create("/registry/pods/ns/a", b"one")
    assert kv == KeyValue("/registry/pods/ns/a", b"one", kv.mod_revision, kv.mod_revision)
    assert kv.mod_revision > 0
    assert await store.get("/registry/pods/ns/a") == kv
    assert await store.current_revision() == kv.mod_revision
    with pytest.raises(KeyExists) as ei:
        await store.create("/registry/pods/ns/a", b"two")
    assert ei.value.key == "/registry/pods/ns/a"
    assert (await store.get("/registry/pods/ns/a")).value == b"one"
    with pytest.raises(KeyNotFound):
        await store.get("/registry/pods/ns/missing")
    assert await store.current_revision() == kv.mod_revision  # failures write nothing


async def test_empty_store(store: Storage) -> None:
    empty = empty_revision(store)
    assert await store.current_revision() == empty
    assert await store.compacted_revision() == 0
    assert await store.list("/registry/") == ([], empty)


async def test_list_prefix_sorted_and_isolated(store: Storage) -> None:
    keys = ["/registry/pods/a/x", "/registry/pods/a/y", "/registry/pods/ab/x",
            "/registry/pods/b/z", "/registry/services/a/s", "/registry/pods/a/\u00e9"]
    random.Random(1).shuffle(keys)
    for k in keys:
        await store.create(k, k.encode())
    rev = await store.current_revision()

    kvs, lrev = await store.list("/registry/pods/a/")
    assert [kv.key for kv in kvs] == ["/registry/pods/a/x", "/registry/pods/a/y",
                                      "/registry/pods/a/\u00e9"]
    assert all(kv.value == kv.key.encode() for kv in kvs)
    assert lrev == rev

    kvs, _ = await store.list("/registry/pods/")
    assert [kv.key for kv in kvs] == sorted(k for k in keys if k.startswith("/registry/pods/"))
    kvs, _ = await store.list("")
    assert [kv.key for kv in kvs] == sorted(keys)
    assert await store.list("/registry/nothing/") == ([], rev)


async def test_revisions_strictly_increase(store: Storage) -> None:
    revs = [(await store.create(f"/k/{i}", b"x")).mod_revision for i in range(5)]
    revs.append((await store.guaranteed_update("/k/0", lambda kv: b"y")).mod_revision)
    deleted = await store.delete("/k/1")
    revs.append(deleted.mod_revision)
    revs.append((await store.create("/k/1", b"again")).mod_revision)
    assert all(a < b for a, b in zip(revs, revs[1:])), revs
    assert await store.current_revision() == revs[-1]
    # a re-created key starts a new life
    kv = await store.get("/k/1")
    assert kv.create_revision == kv.mod_revision == revs[-1]


async def test_concurrent_creates_with_failures(store: Storage) -> None:
    """Failing writes (KeyExists) must not fail the others, even batched together."""
    await asyncio.gather(*(store.create(f"/c/{i}", b"old") for i in range(0, 60, 3)))
    results = await asyncio.gather(*(store.create(f"/c/{i}", b"new") for i in range(60)),
                                   return_exceptions=True)
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert isinstance(r, KeyExists) and r.key == f"/c/{i}"
        else:
            assert isinstance(r, KeyValue) and r.value == b"new"
    revs = sorted(r.mod_revision for r in results if isinstance(r, KeyValue))
    assert len(set(revs)) == 40
    kvs, _ = await store.list("/c/")
    assert len(kvs) == 60


async def test_non_bytes_value_rejected_alone(store: Storage) -> None:
    results = await asyncio.gather(store.create("/t/a", b"ok"),
                                   store.create("/t/b", "text"),  # type: ignore[arg-type]
                                   store.create("/t/c", b"ok"), return_exceptions=True)
    assert isinstance(results[1], TypeError)
    assert [kv.key for kv in (await store.list("/t/"))[0]] == ["/t/a", "/t/c"]
    with pytest.raises(TypeError):
        await store.guaranteed_update("/t/a", lambda kv: "text")  # type: ignore[arg-type]


# -- guaranteed_update ---------------------------------------------------------------------

async def test_guaranteed_update(store: Storage) -> None:
    created = await store.create("/u/a", b"1")

    async def bump(kv: KeyValue) -> bytes:
        await asyncio.sleep(0)
        return str(int(kv.value) + 1).encode()

    kv = await store.guaranteed_update("/u/a", bump)
    assert kv.value == b"2" and kv.create_revision == created.mod_revision
    assert kv.mod_revision > created.mod_revision
    assert await store.get("/u/a") == kv
    kv2 = await store.guaranteed_update("/u/a", lambda cur: cur.value + b"!")  # sync fn
    assert kv2.value == b"2!"
    with pytest.raises(KeyNotFound):
        await store.guaranteed_update("/u/missing", bump)


async def test_concurrent_increments_all_land(store: Storage) -> None:
    await store.create("/u/counter", b"0")
    calls = 0

    async def incr(kv: KeyValue) -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return str(int(kv.value) + 1).encode()

    await asyncio.gather(*(store.guaranteed_update("/u/counter", incr) for _ in range(20)))
    assert (await store.get("/u/counter")).value == b"20"
    assert calls >= 20


async def test_expected_revision_conflict(store: Storage) -> None:
    kv = await store.create("/u/a", b"1")
    await store.guaranteed_update("/u/a", lambda cur: b"2")
    called = False

    def fn(cur: KeyValue) -> bytes:
        nonlocal called
        called = True
        return b"3"

    with pytest.raises(RevisionConflict):
        await store.guaranteed_update("/u/a", fn, expected_revision=kv.mod_revision)
    assert not called
    assert (await store.get("/u/a")).value == b"2"
    cur = await store.get("/u/a")
    out = await store.guaranteed_update("/u/a", fn, expected_revision=cur.mod_revision)
    assert called and out.value == b"3"


async def test_expected_revision_conflict_during_fn(store: Storage) -> None:
    """With expected_revision, a change while fn runs is a conflict, not a retry."""
    kv = await store.create("/u/a", b"1")

    async def slow(cur: KeyValue) -> bytes:
        await store.guaranteed_update("/u/a", lambda c: b"other")
        return b"mine"

    with pytest.raises(RevisionConflict):
        await store.guaranteed_update("/u/a", slow, expected_revision=kv.mod_revision)
    assert (await store.get("/u/a")).value == b"other"


async def test_update_fn_none_writes_nothing(store: Storage) -> None:
    kv = await store.create("/u/a", b"1")
    rev = await store.current_revision()
    out = await store.guaranteed_update("/u/a", lambda cur: None)
    assert out == kv
    assert await store.current_revision() == rev

    async def none(cur: KeyValue) -> None:
        return None

    assert await store.guaranteed_update("/u/a", none) == kv
    assert await store.current_revision() == rev


async def test_update_fn_raising_propagates(store: Storage) -> None:
    await store.create("/u/a", b"1")
    rev = await store.current_revision()

    class Boom(Exception):
        pass

    async def boom(cur: KeyValue) -> bytes:
        raise Boom()

    with pytest.raises(Boom):
        await store.guaranteed_update("/u/a", boom)
    assert (await store.get("/u/a")).value == b"1"
    assert await store.current_revision() == rev


# -- delete -------------------------------------------------------------------------------

async def test_delete(store: Storage) -> None:
    kv = await store.create("/d/a", b"last")
    out = await store.delete("/d/a")
    assert out.value == b"last" and out.create_revision == kv.create_revision
    assert out.mod_revision > kv.mod_revision
    assert await store.current_revision() == out.mod_revision
    with pytest.raises(KeyNotFound):
        await store.get("/d/a")
    with pytest.raises(KeyNotFound):
        await store.delete("/d/a")
    assert await store.list("/d/") == ([], out.mod_revision)


async def test_delete_expected_revision(store: Storage) -> None:
    kv = await store.create("/d/a", b"1")
    kv2 = await store.guaranteed_update("/d/a", lambda cur: b"2")
    with pytest.raises(RevisionConflict):
        await store.delete("/d/a", expected_revision=kv.mod_revision)
    assert (await store.get("/d/a")).value == b"2"
    out = await store.delete("/d/a", expected_revision=kv2.mod_revision)
    assert out.value == b"2"
    with pytest.raises(KeyNotFound):
        await store.delete("/d/a", expected_revision=kv2.mod_revision)


# -- watch --------------------------------------------------------------------------------

async def test_watch_from_current_revision_is_live_only(store: Storage) -> None:
    await store.create("/w/old", b"o")
    w = store.watch("/w/", await store.current_revision())
    await store.create("/w/new", b"n")  # written before iteration starts: still delivered
    (ev,) = await take(w, 1)
    assert (ev.type, ev.key, ev.value) == ("PUT", "/w/new", b"n")
    assert ev.is_create and ev.prev_value is None and ev.create_revision == ev.revision
    await assert_quiet(w)


async def test_watch_from_zero_replays_everything(store: Storage) -> None:
    """0 is not special: a LIST of an empty store (revision 0) + watch(0) misses nothing."""
    assert (await store.list("/w/"))[1] == empty_revision(store)
    w = store.watch("/w/", 0)
    await store.create("/w/a", b"1")
    await store.create("/w/b", b"2")
    assert [e.key for e in await take(w, 2)] == ["/w/a", "/w/b"]
    w2 = store.watch("/w/", 0)  # registered later: the same events, from history
    assert [e.key for e in await take(w2, 2)] == ["/w/a", "/w/b"]
    await assert_quiet(w2)


async def test_watch_replays_history_then_live(store: Storage) -> None:
    r1 = (await store.create("/w/a", b"a1")).mod_revision
    r2 = (await store.guaranteed_update("/w/a", lambda kv: b"a2")).mod_revision
    r3 = (await store.create("/w/b", b"b1")).mod_revision
    r4 = (await store.delete("/w/a")).mod_revision
    w = store.watch("/w/", r1)
    replayed = await take(w, 3)
    assert [(e.type, e.key, e.revision) for e in replayed] == [
        ("PUT", "/w/a", r2), ("PUT", "/w/b", r3), ("DELETE", "/w/a", r4)]
    upd, create, delete = replayed
    assert upd.value == b"a2" and upd.prev_value == b"a1" and not upd.is_create
    assert upd.create_revision == r1
    assert create.is_create and create.prev_value is None and create.create_revision == r3
    assert delete.value == b"a2" and delete.create_revision == r1
    r5 = (await store.create("/w/c", b"c1")).mod_revision
    (live,) = await take(w, 1)
    assert (live.key, live.revision) == ("/w/c", r5)
    await assert_quiet(w)
    # from just before the first write: everything
    assert [e.revision for e in await take(store.watch("/w/", r1 - 1), 5)] == [
        r1, r2, r3, r4, r5]


async def test_watch_prefix_filtering(store: Storage) -> None:
    w_hist_start = (await store.create("/registry/pods/ab/x", b"no")).mod_revision
    await store.create("/registry/pods/a/x", b"yes")
    await store.create("/registry/services/a/x", b"no")
    hist = store.watch("/registry/pods/a/", w_hist_start)
    live = store.watch("/registry/pods/a/", await store.current_revision())
    await store.create("/registry/pods/ab/y", b"no")
    await store.create("/registry/pods/a/y", b"yes")
    for w in (hist, live):
        evs = await take(w, 1 if w is live else 2)
        assert all(e.key.startswith("/registry/pods/a/") for e in evs)
        assert evs[-1].key == "/registry/pods/a/y"
        await assert_quiet(w)


async def test_watch_delete_and_update_values(store: Storage) -> None:
    w = store.watch("/w/", await store.current_revision())
    await store.create("/w/x", b"v1")
    await store.guaranteed_update("/w/x", lambda kv: b"v2")
    deleted = await store.delete("/w/x")
    c, u, d = await take(w, 3)
    assert (c.type, c.value, c.prev_value) == ("PUT", b"v1", None)
    assert (u.type, u.value, u.prev_value) == ("PUT", b"v2", b"v1")
    assert (d.type, d.value, d.revision) == ("DELETE", b"v2", deleted.mod_revision)
    assert d.prev_value == b"v2"  # DELETE: prev_value is the last value too
    assert c.create_revision == u.create_revision == d.create_revision == c.revision


async def test_watch_no_gap_no_duplicate_with_concurrent_writes(store: Storage) -> None:
    """list + watch(list revision) while writes race: every write seen exactly once."""
    n = 300
    base = await store.current_revision()

    async def writer() -> None:
        for i in range(n):
            await store.create(f"/g/{i:04d}", b"x")
            if i % 7 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    while await store.current_revision() < base + 50:
        await asyncio.sleep(0.001)
    kvs, rev = await store.list("/g/")
    w = store.watch("/g/", rev)
    await task
    seen = [kv.key for kv in kvs]
    last = rev
    async with asyncio.timeout(5):
        while len(seen) < n:
            ev = await anext(w)
            assert ev.revision > last
            last = ev.revision
            seen.append(ev.key)
    assert sorted(seen) == [f"/g/{i:04d}" for i in range(n)]
    await assert_quiet(w)


async def test_watch_many_history_chunks(store: Storage) -> None:
    """Replay longer than one history read."""
    base = await store.current_revision()
    await asyncio.gather(*(store.create(f"/h/{i}", b"x") for i in range(2500)))
    w = store.watch("/h/", base + 1)
    evs = await take(w, 2499)
    revs = [e.revision for e in evs]
    assert revs == sorted(revs) and len(set(revs)) == 2499 and revs[0] == base + 2


async def test_compaction_during_replay_raises(store: Storage) -> None:
    """History compacted away under a replaying watch ends it with RevisionCompacted."""
    base = await store.current_revision()
    await asyncio.gather(*(store.create(f"/h/{i}", b"x") for i in range(2500)))
    w = store.watch("/h/", base)
    first = await take(w, 10)  # the first history chunk is read
    assert [e.revision for e in first] == list(range(base + 1, base + 11))
    await store.compact(base + 2000)
    with pytest.raises(RevisionCompacted):
        await take(w, 2490)


@pytest.mark.parametrize("kind", BACKENDS)
async def test_slow_watcher_is_cut_off(kind: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    etcd = request.getfixturevalue("etcd_server") if kind == "etcd" else None
    s = await make_store(kind, tmp_path, etcd, watch_queue_size=5)
    try:
        slow = s.watch("/s/", await s.current_revision())
        await anext_soon(s, slow)
        for i in range(20):  # the writer never waits for the watcher
            await s.create(f"/s/{i}", b"x")
        with pytest.raises(StorageError):
            await take(slow, 20)
        fine = s.watch("/s/", await s.current_revision())  # other watchers unaffected
        await s.create("/s/after", b"x")
        assert (await take(fine, 1))[0].key == "/s/after"
    finally:
        await s.close()


async def anext_soon(s: Storage, w: AsyncIterator[Event]) -> None:
    """Consume one event so the watch is fully running."""
    await s.create("/s/first", b"x")
    await take(w, 1)


async def test_watch_ends_on_close(store: Storage) -> None:
    w = store.watch("/", 0)
    t = asyncio.create_task(anext(w))
    await asyncio.sleep(0.01)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(t, 2)


# -- compaction ---------------------------------------------------------------------------

async def test_compaction(store: Storage) -> None:
    r1 = (await store.create("/c/a", b"1")).mod_revision
    r2 = (await store.guaranteed_update("/c/a", lambda kv: b"2")).mod_revision
    r3 = (await store.create("/c/b", b"b")).mod_revision
    r4 = (await store.delete("/c/b")).mod_revision
    r5 = (await store.create("/c/c", b"c")).mod_revision
    await store.compact(r3)
    assert await store.compacted_revision() == r3
    with pytest.raises(RevisionCompacted) as ei:
        await anext(store.watch("/c/", r1))
    assert ei.value.compacted == r3
    evs = await take(store.watch("/c/", r3), 2)  # r3 itself is fine: events > r3 are kept
    assert [e.revision for e in evs] == [r4, r5]
    assert (await store.get("/c/a")) == KeyValue("/c/a", b"2", r2, r1)
    kvs, rev = await store.list("/c/")
    assert [kv.key for kv in kvs] == ["/c/a", "/c/c"] and rev == r5
    # compacting to the current revision keeps values; beyond it is clamped
    await store.compact(r5 + 100)
    assert await store.compacted_revision() == r5
    assert await store.current_revision() == r5
    assert len((await store.list("/c/"))[0]) == 2
    await store.compact(r2)  # older than already compacted: no-op
    assert await store.compacted_revision() == r5
    w = store.watch("/c/", r5)
    r6 = (await store.create("/c/d", b"d")).mod_revision
    assert (await take(w, 1))[0].revision == r6


async def test_update_after_compaction_keeps_prev_value(store: Storage) -> None:
    await store.create("/c/a", b"1")
    rev = (await store.guaranteed_update("/c/a", lambda kv: b"2")).mod_revision
    await store.compact(rev)
    await store.guaranteed_update("/c/a", lambda kv: b"3")
    (ev,) = await take(store.watch("/c/", rev), 1)
    assert (ev.value, ev.prev_value) == (b"3", b"2")


# -- SQLite only ---------------------------------------------------------------------------

async def test_sqlite_open_storage_and_reopen(tmp_path: Path) -> None:
    s = await open_storage("sqlite", str(tmp_path / "data"))
    assert isinstance(s, SQLiteStorage)
    await s.create("/r/a", b"1")
    await s.create("/r/b", b"1")
    await s.guaranteed_update("/r/a", lambda kv: b"2")
    r4 = (await s.delete("/r/b")).mod_revision
    await s.compact(2)
    await s.close()
    with pytest.raises(StorageError):
        await s.get("/r/a")

    s = await open_storage("sqlite", str(tmp_path / "data"))
    try:
        assert await s.current_revision() == r4
        assert await s.compacted_revision() == 2
        assert await s.get("/r/a") == KeyValue("/r/a", b"2", 3, 1)
        assert (await s.create("/r/c", b"1")).mod_revision == r4 + 1
        with pytest.raises(RevisionCompacted):
            await anext(s.watch("/r/", 1))
        evs = await take(s.watch("/r/", 2), 3)
        assert [(e.type, e.revision) for e in evs] == [("PUT", 3), ("DELETE", 4), ("PUT", 5)]
        # compacting everything, then reopening: the revision survives with an empty log
        await s.delete("/r/c")
        await s.compact(r4 + 2)
    finally:
        await s.close()
    s = await SQLiteStorage.open(str(tmp_path / "data" / "state.db"))
    try:
        assert await s.current_revision() == r4 + 2
        assert await s.list("/r/") == ([KeyValue("/r/a", b"2", 3, 1)], r4 + 2)
        assert (await s.create("/r/d", b"1")).mod_revision == r4 + 3
    finally:
        await s.close()


async def test_memory_open_storage() -> None:
    s = await open_storage("memory", None)
    assert isinstance(s, MemoryStorage)
    with pytest.raises(ValueError):
        await open_storage("nope", None)


_KILL_CHILD = """
import asyncio, sys
from pyk8s.storage.sqlite import SQLiteStorage

async def main(path):
    s = await SQLiteStorage.open(path)
    async def worker(w):
        n = 0
        while True:
            key = f"/k/{w}/{n}"
            await s.create(key, b"v" * 200)
            sys.stdout.write(key + "\\n")
            sys.stdout.flush()
            n += 1
    await asyncio.gather(*(worker(w) for w in range(16)))

asyncio.run(main(sys.argv[1]))
"""


async def test_sqlite_survives_kill_9(tmp_path: Path) -> None:
    """Every create acknowledged before SIGKILL is there after reopening."""
    path = str(tmp_path / "state.db")
    proc = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, path], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 10
    while len(acked) < 5000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.decode().strip())
    os.kill(proc.pid, signal.SIGKILL)
    rest, err = proc.communicate(timeout=10)
    assert len(acked) >= 5000, err.decode()
    acked += [ln for ln in rest.decode().split("\n")[:-1]]  # complete lines only
    assert proc.returncode == -signal.SIGKILL

    s = await SQLiteStorage.open(path)
    try:
        kvs, rev = await s.list("/k/")
        have = {kv.key for kv in kvs}
        missing = [k for k in acked if k not in have]
        assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {missing[:5]}"
        assert rev >= len(acked)
        assert (await s.create("/k/after", b"x")).mod_revision == rev + 1
    finally:
        await s.close()


async def test_sqlite_compaction_while_writing(tmp_path: Path) -> None:
    """Compacting thousands of log rows in small transactions while writes go on."""
    path = str(tmp_path / "state.db")
    s = await SQLiteStorage.open(path)
    try:
        await asyncio.gather(*(s.create(f"/m/{i}", b"x" * 100) for i in range(6000)))
        await asyncio.gather(*(s.guaranteed_update(f"/m/{i}", lambda kv: b"y")
                               for i in range(0, 6000, 2)))
        target = await s.current_revision()
        w = s.watch("/n/", target)
        compaction = asyncio.create_task(s.compact(target))
        interleaved = 0
        for round_ in range(10):
            await asyncio.gather(*(s.create(f"/n/{round_}/{i}", b"z") for i in range(100)))
            interleaved += not compaction.done()
        await compaction
        assert interleaved > 0  # writes completed while the compaction was running
        assert await s.compacted_revision() == target
        # a watch from the compaction target still sees every later write
        assert len({e.key for e in await take(w, 1000)}) == 1000
        with pytest.raises(RevisionCompacted):
            await anext(s.watch("/m/", target - 1))
        kvs, _ = await s.list("/")
        assert len(kvs) == 7000
        assert sum(kv.value == b"y" for kv in kvs) == 3000

        conn = sqlite3.connect(path)
        try:
            (oldest,) = conn.execute("SELECT MIN(revision) FROM log").fetchone()
            assert oldest == target + 1
        finally:
            conn.close()
        await s.compact(await s.current_revision())  # ends with wal_checkpoint(TRUNCATE)
        assert os.path.getsize(path + "-wal") == 0
    finally:
        await s.close()


async def test_sqlite_finishes_interrupted_compaction_on_open(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    s = await SQLiteStorage.open(path)
    await asyncio.gather(*(s.create(f"/i/{i}", b"x") for i in range(50)))
    await s.close()
    conn = sqlite3.connect(path)  # as if killed after recording the target, mid-compaction
    with conn:
        conn.execute("INSERT INTO meta(name, value) VALUES('compacted', 30)")
    conn.close()
    s = await SQLiteStorage.open(path)
    try:
        assert await s.compacted_revision() == 30
        assert await s.current_revision() == 50
        assert [e.revision for e in await take(s.watch("/i/", 30), 20)] == list(range(31, 51))
        assert len((await s.list("/i/"))[0]) == 50
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT MIN(revision), COUNT(*) FROM log").fetchone() == (31, 20)
    conn.close()


# -- etcd only ------------------------------------------------------------------------------

async def test_watch_with_progress_default_is_watch(tmp_path: Path) -> None:
    """Memory and SQLite: plain watch, no PROGRESS events."""
    s = MemoryStorage()
    w = s.watch_with_progress("/registry/", 0)
    await s.create("/other/x", b"1")
    await s.create("/registry/a", b"1")
    (ev,) = await take(w, 1)
    assert (ev.type, ev.key) == ("PUT", "/registry/a")


async def test_etcd_progress_events_cover_writes_outside_prefix(etcd_server: EtcdCluster) -> None:
    s = await make_store("etcd", Path("."), etcd_server)
    other = await make_store("etcd", Path("."), etcd_server)  # another client, elsewhere
    try:
        start = await s.current_revision()
        w = s.watch_with_progress("/registry/", start)
        plain = s.watch("/registry/", start)
        foreign = (await other.create("/elsewhere", b"x")).mod_revision
        (p,) = await take(w, 1)
        assert (p.type, p.key, p.revision) == ("PROGRESS", "", foreign)
        assert await s.current_revision() == foreign
        mine = (await s.create("/registry/a", b"1")).mod_revision
        (ev,) = await take(w, 1)
        assert (ev.type, ev.key, ev.revision) == ("PUT", "/registry/a", mine)
        (ev,) = await take(plain, 1)  # a plain watch sees only the prefix
        assert (ev.type, ev.revision) == ("PUT", mine)
        await assert_quiet(plain)
    finally:
        await s.close()
        await other.close()


async def test_etcd_clients_share_keys_and_revisions(etcd_server: EtcdCluster) -> None:
    """Two clients on one etcd (two API servers): one's writes reach the other's watch with
    the same revisions; CAS between them conflicts."""
    ns = f"/t-{uuid.uuid4().hex[:12]}"
    a = await EtcdStorage.open(etcd_server.endpoints, namespace=ns)
    b = await EtcdStorage.open(etcd_server.endpoints, namespace=ns)
    try:
        w = b.watch("/registry/", await b.current_revision())
        kv = await a.create("/registry/pods/ns/p", b"1")
        (ev,) = await take(w, 1)
        assert (ev.key, ev.revision, ev.value) == (kv.key, kv.mod_revision, b"1")
        assert await b.get(kv.key) == kv
        await b.guaranteed_update(kv.key, lambda cur: b"2")
        with pytest.raises(RevisionConflict):
            await a.guaranteed_update(kv.key, lambda cur: b"3",
                                      expected_revision=kv.mod_revision)
        with pytest.raises(KeyExists):
            await b.create(kv.key, b"again")
    finally:
        await a.close()
        await b.close()


async def test_etcd_unavailable_fails_fast_and_recovers() -> None:
    with EtcdCluster(1) as c:
        s = await EtcdStorage.open(c.endpoints, wait=10)
        try:
            kv = await s.create("/registry/a", b"1")
            w = s.watch("/registry/", kv.mod_revision)
            c.members[0].stop()
            with pytest.raises(StorageUnavailable):  # the watch ends with the connection
                await take(w, 1)
            calls = [s.get("/registry/a"), s.list("/registry/"), s.current_revision(),
                     s.create("/registry/b", b"1"), s.delete("/registry/a"),
                     s.guaranteed_update("/registry/a", lambda cur: b"2"), s.compact(1)]
            for call in calls:
                t = time.monotonic()
                with pytest.raises(StorageUnavailable):
                    await call
                assert time.monotonic() - t < 2.0
            c.members[0].start().wait_healthy()
            async with asyncio.timeout(10):
                while True:  # the client reconnects by itself
                    try:
                        assert await s.get("/registry/a") == kv
                        break
                    except StorageUnavailable:
                        await asyncio.sleep(0.05)
            w = s.watch("/registry/", kv.mod_revision)
            created = await s.create("/registry/b", b"1")
            assert (await take(w, 1))[0].revision == created.mod_revision
        finally:
            await s.close()


async def test_etcd_hung_member_times_out() -> None:
    """A member that accepts connections but never answers (SIGSTOP): bounded by the deadline."""
    with EtcdCluster(1) as c:
        s = await EtcdStorage.open(c.endpoints, wait=10, request_timeout=0.5)
        try:
            await s.create("/registry/a", b"1")
            c.members[0].pause()
            t = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await s.get("/registry/a")
            with pytest.raises(StorageUnavailable):
                await s.create("/registry/b", b"1")
            assert time.monotonic() - t < 2.0
        finally:
            c.members[0].resume()
            await s.close()


def test_etcd_endpoints() -> None:
    from pyk8s.storage.etcd import grpc_target, parse_endpoints, range_end
    assert parse_endpoints("http://10.0.0.1:2379, http://10.0.0.2:2379,") == [
        ("10.0.0.1", 2379), ("10.0.0.2", 2379)]
    assert parse_endpoints("10.0.0.3") == [("10.0.0.3", 2379)]
    assert grpc_target("http://127.0.0.1:1,http://127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert grpc_target("http://[::1]:2379") == "ipv6:[::1]:2379"
    assert grpc_target("http://localhost:2379").endswith(":2379")
    for bad in ("https://127.0.0.1:2379", "", "http://127.0.0.1:1,http://[::1]:2"):
        with pytest.raises(ValueError):
            grpc_target(bad)
    assert range_end(b"/registry/") == b"/registry0"
    assert range_end(b"a\xff\xff") == b"b"
    assert range_end(b"") == b"\0"


async def test_etcd_open_storage(etcd_server: EtcdCluster) -> None:
    s = await open_storage("etcd", None, etcd_servers=etcd_server.endpoints, wait=5)
    try:
        assert isinstance(s, EtcdStorage)
        assert await s.current_revision() >= 1
    finally:
        await s.close()


async def test_etcd_list_pages_at_one_revision(etcd_server: EtcdCluster,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import pyk8s.storage.etcd as etcd_mod
    monkeypatch.setattr(etcd_mod, "LIST_PAGE", 7)
    s = await make_store("etcd", Path("."), etcd_server)
    try:
        await asyncio.gather(*(s.create(f"/p/{i:03d}", b"x") for i in range(50)))
        await s.create("/q/outside", b"x")
        kvs, rev = await s.list("/p/")
        assert [kv.key for kv in kvs] == [f"/p/{i:03d}" for i in range(50)]
        assert rev == await s.current_revision()
    finally:
        await s.close()
